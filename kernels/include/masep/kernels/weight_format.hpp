// How a weight matrix [n, k] (nn.Linear layout: n output rows of k inputs) is stored in
// device memory, and its size in bytes. Plain C++ (no CUDA types), so the executor's CPU
// lowering sizes its weight arena with the same rule the kernels read.
//
//   kBF16      n·k bf16 values, row-major.
//   kFP8Block  n·k e4m3 bytes (row-major), then fp32 scales [ceil(n/128), ceil(k/128)]
//              (row-major) at byte n·k: W[o][i] = e4m3(o, i) × scale[o/128][i/128]
//              (DeepSeek-V3's weight_scale_inv layout), padded to 16 bytes.
#pragma once

#include <cstdint>

namespace masep::kernels {

/// The storage of one weight matrix (see the file comment).
enum class WeightFormat : std::uint8_t {
  kBF16,      ///< bf16 [n, k]
  kFP8Block,  ///< e4m3 [n, k] bytes, then fp32 scales per 128 × 128 block
};

/// Rows and columns of one FP8 scale block.
inline constexpr int kFp8ScaleBlock = 128;

/// Bytes of one weight matrix [n, k] in format f, rounded up to 16 bytes so that the next
/// matrix stays 16-byte aligned.
constexpr std::int64_t weight_bytes(WeightFormat f, std::int64_t n, std::int64_t k) {
  const std::int64_t b = kFp8ScaleBlock;
  const std::int64_t bytes =
      f == WeightFormat::kFP8Block ? n * k + ((n + b - 1) / b) * ((k + b - 1) / b) * 4 : n * k * 2;
  return (bytes + 15) / 16 * 16;
}

}  // namespace masep::kernels
