// Permute tokens into an expert-contiguous buffer, and the inverse combine.
//
// An "assignment" a = t*k + j is token t's j-th routed expert topk_ids[a] (router.hpp).
//
// launch_permute (one fused kernel when tokens*k <= 4096 and num_experts <= 256, else two:
// a plan kernel, then a row gather; the results are identical):
//   expert_offsets[e] = sum of expert_counts[e'] for e' < e, expert_offsets[E] = tokens*k
//     (int32 [E+1], written by the launch)
//   assignments of expert e get rows row_base(e) + 0, 1, ... in increasing a (stable, so
//   the result is deterministic), where row_base(e) = expert_offsets[e] when capacity == 0,
//   and e*capacity when capacity > 0 (fixed-capacity layout for batched GEMMs: rows of
//   expert e are [e*capacity, e*capacity + min(count_e, capacity)); assignments beyond
//   capacity are dropped: their permuted_row is -1 and combine skips them; rows of the
//   buffer not assigned are left unwritten).
//   permuted_row[a]      = destination row of assignment a (int32 [tokens*k])
//   source_token[r]      = t for every written row r (int32 [rows], rows = tokens*k or
//                          E*capacity; unwritten rows are set to -1)
//   permuted_x[r][:]     = x[source_token[r]][:]  (bf16 [rows, hidden])
//   expert_counts must be the router's counts for these topk_ids.
//
// launch_combine:
//   out[t][:] = (residual ? residual[t][:] : 0) + sum_j w[t][j] *
//   expert_out[permuted_row[t*k+j]][:] summed in fp32 in increasing j (deterministic, no atomics),
//   rounded once to bf16. out may alias residual.
//
// hidden must be a multiple of 8; x/permuted_x/expert_out/out 16-byte aligned. Limits:
// num_experts <= 1024.
#pragma once

#include "masep/kernels/status.hpp"
#include "masep/kernels/types.hpp"

namespace masep::kernels {

struct PermuteParams {
  const bf16* x = nullptr;                      // [tokens, hidden]
  const std::int32_t* topk_ids = nullptr;       // [tokens, k]
  const std::int32_t* expert_counts = nullptr;  // [num_experts]
  bf16* permuted_x = nullptr;                   // [rows, hidden]
  std::int32_t* permuted_row = nullptr;         // [tokens*k]
  std::int32_t* source_token = nullptr;         // [rows]
  std::int32_t* expert_offsets = nullptr;       // [num_experts + 1]
  int tokens = 0;
  int hidden = 0;
  int num_experts = 0;
  int k = 0;
  int capacity = 0;  // 0: packed layout; > 0: fixed rows per expert
};

struct CombineParams {
  const bf16* expert_out = nullptr;            // [rows, hidden]
  const std::int32_t* permuted_row = nullptr;  // [tokens*k], -1 = dropped
  const float* topk_weights = nullptr;         // [tokens, k]
  const bf16* residual = nullptr;              // optional [tokens, hidden]
  bf16* out = nullptr;                         // [tokens, hidden]
  int tokens = 0;
  int hidden = 0;
  int k = 0;
};

/// Rows of permuted_x / source_token the permute writes into: tokens*k (packed) or
/// num_experts*capacity.
inline std::int64_t permuted_rows(int tokens, int k, int num_experts, int capacity) {
  return capacity > 0 ? std::int64_t{num_experts} * capacity : std::int64_t{tokens} * k;
}

void check_permute(const PermuteParams& p);  // throws std::invalid_argument
void check_combine(const CombineParams& p);  // throws std::invalid_argument
Status launch_permute(const PermuteParams& p, cudaStream_t stream);
Status launch_combine(const CombineParams& p, cudaStream_t stream);

}  // namespace masep::kernels
