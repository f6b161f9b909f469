// Grouped decode GEMM: one launch computes Y_g = X_g · W_gᵀ for every group g (an expert's
// rows) when each group has few rows — the memory-bound decode regime where an expert costs
// its weight bytes whatever its row count. Every weight row is streamed once per pass (16-byte
// loads that bypass L1) and no per-expert cuBLAS call (with its host cost and its tiles sized
// for large GEMMs) is issued; groups with no rows read nothing. Two variants, by the largest
// group: 1-2 rows on CUDA cores (a warp multiplies 4 weight rows with the rows held in
// registers and reduces its partial sums with a warp reduce-scatter), more rows on tensor
// cores (mma.m16n8k16: a warp computes 16 output columns × 8, 16 or 32 rows, k permuted
// within 32-element blocks so every lane loads 16 contiguous bytes).
//
// Layout (row-major bf16, fp32 accumulation, output rounded once to bf16):
//   X: [rows, k], group g owns rows [row_offset[g], row_offset[g+1])  (packed, as permute
//      writes them); W_g: [n, k] at w_base + w_offset[g] (elements), nn.Linear layout;
//   Y: [rows, n], same row order as X.
// Requirements: k a multiple of 8, X, Y row starts and every W_g 16-byte aligned (k % 8 == 0
// and w_offset[g] % 8 == 0 with 16-byte aligned bases), groups <= kGroupedGemmMaxGroups.
//
// FP8 weights (WeightFormat::kFP8Block, W8A16): W_g is stored as n·k e4m3 bytes followed at
// byte n·k by its fp32 block scales [ceil(n/128), ceil(k/128)] (row-major; DeepSeek-V3's
// weight_scale_inv layout): W[o][i] = e4m3(o, i) × scale[o/128][i/128]. w_offset[g] is then
// in bytes and must be a multiple of 16, and k a multiple of 16. Each e4m3 byte is decoded
// exactly (subnormals included; the NaN codes 0x7f/0xff are not expected in weights and read
// as ±480), products and sums in fp32 (the tensor-core variant multiplies exact bf16 copies
// of the e4m3 values and applies each 128-wide k block's scale to its fp32 partial sums), so
// results match ref::grouped_gemm_fp8 to fp32 summation order. Half the weight bytes of
// bf16: the decode regime's cost halves.
// Cost: a group with r rows reads its weights ceil(r / 32) times; callers use
// grouped_gemm_preferred() to choose between this launch and one cuBLAS GEMM per group.
//
// The argument block travels as a kernel parameter (no device table, no host sync): the
// launch is CUDA-graph capturable, and a new routing only changes the parameter block.
// Ownership: the caller owns all device memory; nothing is allocated here.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "masep/kernels/status.hpp"
#include "masep/kernels/types.hpp"
#include "masep/kernels/weight_format.hpp"

namespace masep::kernels {

/// Most groups (local experts) one launch takes: 256 keeps the parameter block under the
/// 4 KiB kernel-parameter limit of every CUDA version.
inline constexpr int kGroupedGemmMaxGroups = 256;

/// Rows of one group one weight pass serves (the tensor-core variant's widest tile); a
/// group with more rows reads its weights ceil(rows / 32) times (FP8 weights: 64 rows per
/// pass from 33 rows, kGroupedGemmRowsPerPassFp8).
inline constexpr int kGroupedGemmRowsPerPass = 32;
inline constexpr int kGroupedGemmRowsPerPassFp8 = 64;

/// Group weights up to this size count as small experts for grouped_gemm_max_rows().
inline constexpr std::int64_t kGroupedGemmSmallExpertBytes = std::int64_t{64} << 20;

/// The groups of one launch. Plain data; pointers are device pointers the caller owns.
struct GroupedGemmArgs {
  const void* w_base = nullptr;                             ///< base of all groups' weights
  WeightFormat format = WeightFormat::kBF16;                ///< how every W_g is stored
                                                            ///< (weight_format.hpp)
  std::int64_t w_offset[kGroupedGemmMaxGroups] = {};        ///< W_g at w_base + w_offset[g]
                                                            ///< (elements: bf16; bytes: fp8)
  std::int32_t row_offset[kGroupedGemmMaxGroups + 1] = {};  ///< packed rows, [groups + 1]
  int groups = 0;  ///< number of groups (≤ kGroupedGemmMaxGroups)
  int n = 0;       ///< output columns (rows of each W_g)
  int k = 0;       ///< input columns (multiple of 8)
};

/// The largest group (rows) for which the executor prefers this launch to one cuBLAS GEMM per
/// group, for group weights [n, k] (bf16). Measured on an H100 (docs/kernels.md): groups of
/// small experts (≤ kGroupedGemmSmallExpertBytes, e.g. Qwen3-30B-A3B's 6 MB) 64 rows — one
/// cuBLAS call per expert is launch-bound there, 12-31% of copy bandwidth against 35-105%;
/// larger experts (the paper's 117-235 MB) 2 rows — the CUDA-core variant beats cuBLAS (104%
/// vs 90-98%), the tensor-core one trails it from 4 rows (77% vs 90% at 4 rows).
int grouped_gemm_max_rows(std::int64_t n, std::int64_t k);

/// Whether the executor uses this launch for groups of weights [n, k] whose largest group has
/// `max_rows` rows: max_rows <= grouped_gemm_max_rows(n, k). FP8 weights always use it (the
/// executor has no other FP8 path).
bool grouped_gemm_preferred(int max_rows, std::int64_t n, std::int64_t k);

/// Y = grouped X · W_gᵀ on `stream`. kInvalidArgument for bad sizes, alignment or more than
/// kGroupedGemmMaxGroups groups; kOk with nothing launched when there are no rows.
Status launch_grouped_gemm(const GroupedGemmArgs& a, const bf16* x, bf16* y, cudaStream_t stream);

}  // namespace masep::kernels
