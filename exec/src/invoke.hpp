// One way to issue each launch the executor and the profiler share (private to exec/): the
// profiler times exactly the call the rank runner makes, with the same arguments derived the
// same way (calibration measures what the executor runs). Each function issues one call on
// the handle's / caller's stream and checks it (GpuError on failure).
#pragma once

#include <cublas_v2.h>

#include <cstdint>

#include "masep/exec/check.hpp"
#include "masep/kernels/attention.hpp"

namespace masep::exec::detail {

/// Row-major C[m×n] = X[m×k] · W[n×k]ᵀ in bf16 with fp32 compute (cublasGemmEx, default
/// algorithm): column-major Cᵀ = Wᵀ(op T) · Xᵀ. Weights are [n, k] row-major, as the lowering
/// lays them out. Nothing is issued when a dimension is 0.
inline void gemm_bf16(cublasHandle_t h, const void* w, const void* x, void* c, int64_t m, int64_t n,
                      int64_t k) {
  if (m <= 0 || n <= 0 || k <= 0) return;
  const float alpha = 1.f, beta = 0.f;
  MASEP_CUBLAS_CHECK(cublasGemmEx(
      h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
      &alpha, w, CUDA_R_16BF, static_cast<int>(k), x, CUDA_R_16BF, static_cast<int>(k), &beta, c,
      CUDA_R_16BF, static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/// The decode-attention parameters of one launch on the executor's fused QKV rows
/// ([batch][(heads + 2·kv_heads)·head_dim] bf16: q, then k, then v of the new token): q and,
/// when `append_kv`, the new token's k/v are strided views into `qkv`; the caches are
/// [batch][kv_heads][max_kv_len][head_dim]; `kv_lens` holds the tokens cached before this
/// step. Pure host code: fills the struct, launches nothing.
inline kernels::DecodeAttentionParams fused_qkv_attention(
    const kernels::bf16* qkv, int batch, int heads, int kv_heads, int head_dim, bool append_kv,
    kernels::bf16* k_cache, kernels::bf16* v_cache, const int32_t* kv_lens, int max_kv_len,
    kernels::bf16* out, void* workspace, size_t workspace_bytes, int num_splits) {
  kernels::DecodeAttentionParams ap;
  const int64_t cols = static_cast<int64_t>(heads + 2 * kv_heads) * head_dim;
  ap.q = qkv;
  ap.q_stride = cols;
  if (append_kv) {
    ap.k_new = qkv + static_cast<int64_t>(heads) * head_dim;
    ap.v_new = qkv + static_cast<int64_t>(heads + kv_heads) * head_dim;
    ap.kv_new_stride = cols;
  }
  ap.k_cache = k_cache;
  ap.v_cache = v_cache;
  ap.kv_lens = kv_lens;
  ap.out = out;
  ap.workspace = workspace;
  ap.workspace_bytes = workspace_bytes;
  ap.batch = batch;
  ap.num_heads = heads;
  ap.num_kv_heads = kv_heads;
  ap.head_dim = head_dim;
  ap.max_kv_len = max_kv_len;
  ap.num_splits = num_splits;
  return ap;
}

}  // namespace masep::exec::detail
