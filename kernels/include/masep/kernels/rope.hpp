// Rotary position embedding, NeoX / Llama "rotate half" form, applied in place.
//
// For each token t at position pos = positions[t] and each head, for i < head_dim/2:
//   inv_freq_i = theta^(-2i/head_dim), angle = pos * inv_freq_i (fp32)
//   x1 = v[i], x2 = v[i + head_dim/2]
//   v[i]              = x1*cos(angle) - x2*sin(angle)
//   v[i + head_dim/2] = x2*cos(angle) + x1*sin(angle)
// q is [tokens, num_heads, head_dim] with row stride q_stride (elements between tokens;
// 0 means num_heads*head_dim); k is [tokens, num_kv_heads, head_dim] with k_stride (0 means
// num_kv_heads*head_dim), so both may point into a fused QKV buffer. k may be null.
// positions: device int32 [tokens]. head_dim even, <= 256.
#pragma once

#include "masep/kernels/status.hpp"
#include "masep/kernels/types.hpp"

namespace masep::kernels {

struct RopeParams {
  bf16* q = nullptr;
  std::int64_t q_stride = 0;
  bf16* k = nullptr;  // optional
  std::int64_t k_stride = 0;
  const std::int32_t* positions = nullptr;
  int tokens = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float theta = 10000.f;
};

void check_rope(const RopeParams& p);  // throws std::invalid_argument
Status launch_rope(const RopeParams& p, cudaStream_t stream);

}  // namespace masep::kernels
