// MoE router: logits -> softmax -> top-k experts with (optionally renormalised) weights,
// plus per-expert token counts.
//
//   p[t][e] = softmax_e(logits[t][e])                     (fp32)
//   topk_ids[t][j], j < k: the k experts with the largest p, in descending order of p;
//                          ties go to the lower expert index (deterministic)
//   topk_weights[t][j] = p[t][topk_ids[t][j]] / (renormalize ? sum_j' p[t][topk_ids[t][j']] : 1)
//   expert_counts[e] = number of (t, j) with topk_ids[t][j] == e
//
// logits: [tokens, num_experts] contiguous, fp32 or bf16 (logits_dtype). Outputs:
// topk_ids int32 [tokens, k], topk_weights fp32 [tokens, k], expert_counts int32
// [num_experts] (zeroed by the launch itself, then accumulated). Limits: num_experts <= 256,
// 1 <= k <= 8, k <= num_experts. Grid: router_launch_config() in launch_config.hpp (one
// thread per token for <= 32 experts, else one warp per token).
#pragma once

#include "masep/kernels/status.hpp"
#include "masep/kernels/types.hpp"

namespace masep::kernels {

struct RouterParams {
  const void* logits = nullptr;
  DType logits_dtype = DType::kF32;
  std::int32_t* topk_ids = nullptr;
  float* topk_weights = nullptr;
  std::int32_t* expert_counts = nullptr;  // may be null: counts not produced
  int tokens = 0;
  int num_experts = 0;
  int k = 0;
  bool renormalize = true;
};

void check_router(const RouterParams& p);  // throws std::invalid_argument
Status launch_router_topk(const RouterParams& p, cudaStream_t stream);

}  // namespace masep::kernels
