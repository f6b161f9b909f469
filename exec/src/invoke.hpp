// One way to issue each launch the executor and the profiler share (private to exec/): the
// profiler times exactly the call the rank runner makes, with the same arguments derived the
// same way (calibration measures what the executor runs). Each function issues one call on
// the handle's / caller's stream and checks it (GpuError on failure).
#pragma once

#include <cublas_v2.h>

#include <cmath>
#include <cstdint>

#include "masep/exec/check.hpp"
#include "masep/kernels/attention.hpp"
#include "masep/kernels/mla_attention.hpp"

namespace masep::exec::detail {

/// Row-major C[m×n] = X[m×k] · W[n×k]ᵀ (+ C when `accumulate`: cuBLAS beta = 1) in bf16 with
/// fp32 compute (cublasGemmEx, default algorithm): column-major Cᵀ = Wᵀ(op T) · Xᵀ. Weights are
/// [n, k] row-major, as the lowering lays them out. Nothing is issued when a dimension is 0.
inline void gemm_bf16(cublasHandle_t h, const void* w, const void* x, void* c, int64_t m, int64_t n,
                      int64_t k, bool accumulate = false) {
  if (m <= 0 || n <= 0 || k <= 0) return;
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  MASEP_CUBLAS_CHECK(cublasGemmEx(
      h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
      &alpha, w, CUDA_R_16BF, static_cast<int>(k), x, CUDA_R_16BF, static_cast<int>(k), &beta, c,
      CUDA_R_16BF, static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/// `batch` row-major GEMMs C_i[m×n] = X_i[m×k] · W_i[n×k]ᵀ in one cublasGemmStridedBatchedEx
/// (bf16, fp32 compute): X_i at x + i·x_stride with row stride ldx, C_i at c + i·c_stride with
/// row stride ldc, W_i at w + i·w_stride (rows of k, contiguous); strides in elements. The
/// MLA absorbed projections (one GEMM per head on strided views of the query and the latent
/// outputs). Nothing is issued when a dimension is 0.
inline void gemm_bf16_strided_batched(cublasHandle_t h, const void* w, int64_t w_stride,
                                      const void* x, int64_t ldx, int64_t x_stride, void* c,
                                      int64_t ldc, int64_t c_stride, int64_t m, int64_t n,
                                      int64_t k, int64_t batch) {
  if (m <= 0 || n <= 0 || k <= 0 || batch <= 0) return;
  const float alpha = 1.f, beta = 0.f;
  MASEP_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      h, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k),
      &alpha, w, CUDA_R_16BF, static_cast<int>(k), w_stride, x, CUDA_R_16BF,
      static_cast<int>(ldx), x_stride, &beta, c, CUDA_R_16BF, static_cast<int>(ldc), c_stride,
      static_cast<int>(batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/// The MLA decode-attention parameters of one executor launch (launch_plan.hpp, "MLA"):
/// absorbed queries head-major [heads][batch][kl] in `q_lat`; the query rows
/// [batch][heads·dn | heads·dr] in `q` (q_rope of head h at column heads·dn + h·dr); the new
/// token's c_kv [batch][kl] and k_rope [batch][dr] (appended when `append_kv`); the latent
/// cache [batch][max_kv_len][kl + dr]; output [batch][heads][kl]. Softmax scale
/// 1/sqrt(dn + dr). Pure host code: fills the struct, launches nothing.
inline kernels::MlaAttentionParams mla_attention_params(
    const kernels::bf16* q_lat, const kernels::bf16* q, const kernels::bf16* c_kv_new,
    const kernels::bf16* k_rope_new, bool append_kv, kernels::bf16* cache, const int32_t* kv_lens,
    int max_kv_len, kernels::bf16* out, void* workspace, size_t workspace_bytes, int batch,
    int heads, int dn, int dr, int num_splits) {
  kernels::MlaAttentionParams mp;
  mp.q_lat = q_lat;
  mp.q_lat_seq_stride = kernels::kMlaLatentDim;
  mp.q_lat_head_stride = static_cast<int64_t>(batch) * kernels::kMlaLatentDim;
  mp.q_rope = q + static_cast<int64_t>(heads) * dn;
  mp.q_rope_seq_stride = static_cast<int64_t>(heads) * (dn + dr);
  mp.q_rope_head_stride = dr;
  if (append_kv) {
    mp.c_kv_new = c_kv_new;
    mp.k_rope_new = k_rope_new;
  }
  mp.kv_cache = cache;
  mp.kv_lens = kv_lens;
  mp.out = out;
  mp.workspace = workspace;
  mp.workspace_bytes = workspace_bytes;
  mp.batch = batch;
  mp.num_heads = heads;
  mp.max_kv_len = max_kv_len;
  mp.num_splits = num_splits;
  mp.scale = 1.f / std::sqrt(static_cast<float>(dn + dr));
  return mp;
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
