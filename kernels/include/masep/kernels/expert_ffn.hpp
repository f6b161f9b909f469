// Expert FFN for many experts at once, through cuBLAS (no hand-written GEMM).
//
// Weights (bf16, PyTorch nn.Linear layout [out_features, in_features], row-major, experts
// stacked):
//   w_up:   SwiGLU: [E, 2*ffn, hidden], rows 0..ffn-1 = gate, ffn..2ffn-1 = up
//           GELU:   [E, ffn, hidden]
//   w_down: [E, hidden, ffn]
// Input x: expert-contiguous rows [rows, hidden] (the permute output); output out
// [rows, hidden]. For expert e:
//   h = x_e @ w_up[e]^T  -> act(h) -> out_e = act(h) @ w_down[e]^T
// with fp32 accumulation in cuBLAS (CUBLAS_COMPUTE_32F), bf16 intermediates. The activation
// is a separate kernel (activation.hpp): cuBLAS(Lt) has no epilogue for SwiGLU's
// gate*up pairing.
//
// Two entry points:
//  - run_expert_ffn: packed rows, expert e owns rows [offsets[e], offsets[e+1]); offsets are
//    HOST int32 [E+1] (cuBLAS needs GEMM sizes on the host: copy the permute's
//    expert_offsets back, or use the Program's forced routing). Experts with no rows are
//    skipped. One cublasGemmEx per (expert with rows, GEMM) — see docs/kernels.md for why.
//  - run_expert_ffn_uniform: fixed capacity layout (permute with capacity > 0): expert e
//    owns rows [e*capacity, (e+1)*capacity); one strided-batched GEMM per projection over
//    all experts; no host sync needed (CUDA-graph friendly). Rows beyond an expert's count
//    hold stale data and produce stale outputs that combine never reads.
//
// Ownership: the caller owns the cuBLAS handle (the runner calls cublasSetStream(handle,
// stream) and leaves it set), the weights, x, out and the workspace (device memory of
// expert_ffn_workspace_bytes(); it holds the [rows, 2*ffn] and [rows, ffn] intermediates).
#pragma once

#include <cublas_v2.h>

#include "masep/kernels/activation.hpp"
#include "masep/kernels/status.hpp"
#include "masep/kernels/types.hpp"

namespace masep::kernels {

struct ExpertFfnShape {
  int num_experts = 0;
  int hidden = 0;
  int ffn = 0;  // expert FFN width (intermediate size)
  Activation activation = Activation::kSwiGLU;
};

struct ExpertFfnWeights {
  const bf16* w_up = nullptr;    // see layout above
  const bf16* w_down = nullptr;  // [E, hidden, ffn]
};

/// Workspace bytes for up to max_rows rows (packed rows, or num_experts*capacity).
std::size_t expert_ffn_workspace_bytes(const ExpertFfnShape& s, std::int64_t max_rows);

/// Throws std::invalid_argument for non-positive sizes or hidden/ffn not multiples of 8.
void check_expert_ffn(const ExpertFfnShape& s);

Status run_expert_ffn(cublasHandle_t handle, cudaStream_t stream, const ExpertFfnShape& s,
                      const ExpertFfnWeights& w, const bf16* x, bf16* out,
                      const std::int32_t* host_expert_offsets, void* workspace,
                      std::size_t workspace_bytes);

Status run_expert_ffn_uniform(cublasHandle_t handle, cudaStream_t stream, const ExpertFfnShape& s,
                              const ExpertFfnWeights& w, const bf16* x, bf16* out, int capacity,
                              void* workspace, std::size_t workspace_bytes);

}  // namespace masep::kernels
