// Expert FFN through cuBLAS; see expert_ffn.hpp.
#include <algorithm>
#include <stdexcept>

#include "common.cuh"
#include "masep/kernels/expert_ffn.hpp"

namespace masep::kernels {
namespace {

std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }

int up_width(const ExpertFfnShape& s) {
  return s.activation == Activation::kSwiGLU ? 2 * s.ffn : s.ffn;
}

bool valid(const ExpertFfnShape& s) {
  return s.num_experts > 0 && s.hidden > 0 && s.ffn > 0 && s.hidden % 8 == 0 && s.ffn % 8 == 0;
}

// Row-major Y[n, m] = X[n, k] @ W[m, k]^T in cuBLAS's column-major terms:
// Y^T (m x n) = W (m x k, stored as k x m column-major, so op = T) * X^T (k x n).
cublasStatus_t gemm_tn(cublasHandle_t h, int m, int n, int k, const bf16* w, const bf16* x,
                       bf16* y) {
  const float alpha = 1.f, beta = 0.f;
  return cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w, CUDA_R_16BF, k, x,
                      CUDA_R_16BF, k, &beta, y, CUDA_R_16BF, m, CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t gemm_tn_batched(cublasHandle_t h, int m, int n, int k, const bf16* w, const bf16* x,
                               bf16* y, int batch) {
  const float alpha = 1.f, beta = 0.f;
  return cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w, CUDA_R_16BF, k,
                                    std::int64_t{m} * k, x, CUDA_R_16BF, k, std::int64_t{n} * k,
                                    &beta, y, CUDA_R_16BF, m, std::int64_t{n} * m, batch,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

Status activate(const ExpertFfnShape& s, const bf16* h, bf16* a, std::int64_t rows,
                cudaStream_t stream) {
  return s.activation == Activation::kSwiGLU ? launch_swiglu(h, a, rows, s.ffn, stream)
                                             : launch_gelu(h, a, rows, s.ffn, stream);
}

}  // namespace

std::size_t expert_ffn_workspace_bytes(const ExpertFfnShape& s, std::int64_t max_rows) {
  const std::size_t rows = static_cast<std::size_t>(std::max<std::int64_t>(max_rows, 1));
  std::size_t bytes = align256(rows * up_width(s) * sizeof(bf16));
  if (s.activation == Activation::kSwiGLU) bytes += align256(rows * s.ffn * sizeof(bf16));
  return bytes;
}

void check_expert_ffn(const ExpertFfnShape& s) {
  if (!valid(s)) {
    throw std::invalid_argument(
        "expert FFN: num_experts, hidden, ffn must be positive; hidden and ffn multiples of 8");
  }
}

Status run_expert_ffn(cublasHandle_t handle, cudaStream_t stream, const ExpertFfnShape& s,
                      const ExpertFfnWeights& w, const bf16* x, bf16* out,
                      const std::int32_t* host_expert_offsets, void* workspace,
                      std::size_t workspace_bytes) {
  if (!valid(s) || !handle || !w.w_up || !w.w_down || !x || !out || !host_expert_offsets ||
      !workspace) {
    return Status::kInvalidArgument;
  }
  const std::int64_t rows = host_expert_offsets[s.num_experts];
  if (rows <= 0) return Status::kOk;
  if (workspace_bytes < expert_ffn_workspace_bytes(s, rows)) return Status::kInvalidArgument;
  if (cublasSetStream(handle, stream) != CUBLAS_STATUS_SUCCESS) return Status::kLaunchFailed;
  const int up = up_width(s);
  bf16* h = static_cast<bf16*>(workspace);
  bf16* a = s.activation == Activation::kSwiGLU
                ? reinterpret_cast<bf16*>(static_cast<char*>(workspace) +
                                          align256(rows * up * sizeof(bf16)))
                : h;
  for (int e = 0; e < s.num_experts; ++e) {
    const int off = host_expert_offsets[e];
    const int n = host_expert_offsets[e + 1] - off;
    if (n < 0) return Status::kInvalidArgument;
    if (n == 0) continue;
    if (gemm_tn(handle, up, n, s.hidden, w.w_up + std::int64_t{e} * up * s.hidden,
                x + std::int64_t{off} * s.hidden,
                h + std::int64_t{off} * up) != CUBLAS_STATUS_SUCCESS) {
      return Status::kLaunchFailed;
    }
  }
  if (Status st = activate(s, h, a, rows, stream); st != Status::kOk) return st;
  for (int e = 0; e < s.num_experts; ++e) {
    const int off = host_expert_offsets[e];
    const int n = host_expert_offsets[e + 1] - off;
    if (n == 0) continue;
    if (gemm_tn(handle, s.hidden, n, s.ffn, w.w_down + std::int64_t{e} * s.hidden * s.ffn,
                a + std::int64_t{off} * s.ffn,
                out + std::int64_t{off} * s.hidden) != CUBLAS_STATUS_SUCCESS) {
      return Status::kLaunchFailed;
    }
  }
  return Status::kOk;
}

Status run_expert_ffn_uniform(cublasHandle_t handle, cudaStream_t stream, const ExpertFfnShape& s,
                              const ExpertFfnWeights& w, const bf16* x, bf16* out, int capacity,
                              void* workspace, std::size_t workspace_bytes) {
  if (!valid(s) || !handle || !w.w_up || !w.w_down || !x || !out || capacity <= 0 || !workspace) {
    return Status::kInvalidArgument;
  }
  const std::int64_t rows = std::int64_t{s.num_experts} * capacity;
  if (workspace_bytes < expert_ffn_workspace_bytes(s, rows)) return Status::kInvalidArgument;
  if (cublasSetStream(handle, stream) != CUBLAS_STATUS_SUCCESS) return Status::kLaunchFailed;
  const int up = up_width(s);
  bf16* h = static_cast<bf16*>(workspace);
  bf16* a = s.activation == Activation::kSwiGLU
                ? reinterpret_cast<bf16*>(static_cast<char*>(workspace) +
                                          align256(rows * up * sizeof(bf16)))
                : h;
  if (gemm_tn_batched(handle, up, capacity, s.hidden, w.w_up, x, h, s.num_experts) !=
      CUBLAS_STATUS_SUCCESS) {
    return Status::kLaunchFailed;
  }
  if (Status st = activate(s, h, a, rows, stream); st != Status::kOk) return st;
  if (gemm_tn_batched(handle, s.hidden, capacity, s.ffn, w.w_down, a, out, s.num_experts) !=
      CUBLAS_STATUS_SUCCESS) {
    return Status::kLaunchFailed;
  }
  return Status::kOk;
}

}  // namespace masep::kernels
