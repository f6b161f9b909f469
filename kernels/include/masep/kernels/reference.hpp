// CPU references for every kernel in masep/kernels/, in plain C++ (no CUDA), so that the GPU
// tests can compare against them and their own unit tests run on any machine. They follow
// the same layouts and formulas as the launcher headers (attention.hpp, mla_attention.hpp,
// norm.hpp, rope.hpp, router.hpp, permute.hpp, activation.hpp, expert_ffn.hpp); each function
// says where it rounds to bf16 so the GPU results can be compared with bf16-level tolerances.
// Library: masep_kernels_ref. All data are host std::vectors owned by the caller.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace masep::kernels::ref {

/// bf16 emulated on the CPU: the upper 16 bits of an IEEE fp32, round-to-nearest-even on
/// conversion (NaN stays NaN). Bit-compatible with CUDA's __nv_bfloat16.
struct Bf16 {
  std::uint16_t bits = 0;
};

inline float to_float(Bf16 v) {
  std::uint32_t u = std::uint32_t{v.bits} << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline Bf16 to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    return Bf16{static_cast<std::uint16_t>((u >> 16) | 0x0040u)};  // quiet NaN
  }
  u += 0x7fffu + ((u >> 16) & 1u);
  return Bf16{static_cast<std::uint16_t>(u >> 16)};
}

/// Rounds through bf16 (what a GPU store of an fp32 value to bf16 does).
inline float round_bf16(float f) { return to_float(to_bf16(f)); }

std::vector<Bf16> to_bf16(const std::vector<float>& v);
std::vector<float> to_float(const std::vector<Bf16>& v);

/// Decode attention, attention.hpp semantics. Caches use the head-major layout
/// [batch][num_kv_heads][max_kv_len][head_dim] and are modified in place (the new K/V
/// appended at slot kv_lens[b] when k_new/v_new are non-empty). q: [batch, num_heads,
/// head_dim]; k_new/v_new: [batch, num_kv_heads, head_dim] or empty. Returns out [batch,
/// num_heads, head_dim] as fp32 (unrounded); lse (natural log) when lse != nullptr.
/// scale 0 means 1/sqrt(head_dim).
std::vector<float> decode_attention(const std::vector<Bf16>& q, const std::vector<Bf16>& k_new,
                                    const std::vector<Bf16>& v_new, std::vector<Bf16>& k_cache,
                                    std::vector<Bf16>& v_cache,
                                    const std::vector<std::int32_t>& kv_lens, int num_heads,
                                    int num_kv_heads, int head_dim, int max_kv_len, float scale,
                                    std::vector<float>* lse = nullptr);

/// MLA decode attention with absorbed projections, mla_attention.hpp semantics, for any
/// latent width `kl` and rope width `dr` (the kernel: 512 and 64). kv_cache [batch][max_kv_len]
/// [kl + dr] (c_kv then k_rope per token) is modified in place: c_kv_new [batch, kl] |
/// k_rope_new [batch, dr] appended at slot kv_lens[b] when they are non-empty. q_lat [batch,
/// num_heads, kl], q_rope [batch, num_heads, dr]. score = scale * (q_lat . c_kv + q_rope .
/// k_rope) (scale > 0, required); returns out [batch, num_heads, kl] = softmax . c_kv as fp32
/// (double accumulation, unrounded); lse (natural log) when lse != nullptr.
std::vector<float> mla_decode_attention(
    const std::vector<Bf16>& q_lat, const std::vector<Bf16>& q_rope,
    const std::vector<Bf16>& c_kv_new, const std::vector<Bf16>& k_rope_new,
    std::vector<Bf16>& kv_cache, const std::vector<std::int32_t>& kv_lens, int num_heads, int kl,
    int dr, int max_kv_len, float scale, std::vector<float>* lse = nullptr);

/// RMSNorm: out = x / sqrt(mean(x^2) + eps) * weight, fp32, unrounded. x: [tokens, hidden].
std::vector<float> rmsnorm(const std::vector<Bf16>& x, const std::vector<Bf16>& weight, int tokens,
                           int hidden, float eps);

/// Fused residual + RMSNorm: residual += x (rounded to bf16, in place), then
/// rmsnorm(residual). Returns the normalised output (fp32, unrounded).
std::vector<float> add_rmsnorm(std::vector<Bf16>& residual, const std::vector<Bf16>& x,
                               const std::vector<Bf16>& weight, int tokens, int hidden, float eps);

/// RoPE (rope.hpp) on a dense [tokens, heads, head_dim] tensor; returns fp32, unrounded.
std::vector<float> rope(const std::vector<Bf16>& x, const std::vector<std::int32_t>& positions,
                        int tokens, int heads, int head_dim, float theta);

/// Router (router.hpp). logits as fp32 (convert bf16 logits with to_float first).
struct RouterResult {
  std::vector<std::int32_t> topk_ids;       // [tokens, k]
  std::vector<float> topk_weights;          // [tokens, k]
  std::vector<std::int32_t> expert_counts;  // [num_experts]
};
RouterResult router_topk(const std::vector<float>& logits, int tokens, int num_experts, int k,
                         bool renormalize);

/// Permute plan and gather (permute.hpp). permuted_x rows not written are left as
/// Bf16{0x7fc0} (NaN), source_token as -1.
struct PermuteResult {
  std::vector<Bf16> permuted_x;              // [rows, hidden]
  std::vector<std::int32_t> permuted_row;    // [tokens*k]
  std::vector<std::int32_t> source_token;    // [rows]
  std::vector<std::int32_t> expert_offsets;  // [num_experts + 1]
};
PermuteResult permute(const std::vector<Bf16>& x, const std::vector<std::int32_t>& topk_ids,
                      int tokens, int hidden, int num_experts, int k, int capacity);

/// Combine (permute.hpp); residual may be empty. Returns fp32, unrounded.
std::vector<float> combine(const std::vector<Bf16>& expert_out,
                           const std::vector<std::int32_t>& permuted_row,
                           const std::vector<float>& topk_weights,
                           const std::vector<Bf16>& residual, int tokens, int hidden, int k);

/// SwiGLU on [rows, 2*ffn] ([gate | up] per row) -> [rows, ffn]; GELU (tanh) on [rows, ffn].
/// fp32, unrounded.
std::vector<float> swiglu(const std::vector<Bf16>& in, std::int64_t rows, int ffn);
std::vector<float> gelu(const std::vector<Bf16>& in, std::int64_t rows, int ffn);

/// Expert FFN (expert_ffn.hpp) on packed rows with offsets [E+1]; swiglu=false means GELU.
/// The intermediate h and act(h) are rounded to bf16 like the GPU path. Returns fp32,
/// unrounded [rows, hidden].
std::vector<float> expert_ffn(const std::vector<Bf16>& x, const std::vector<Bf16>& w_up,
                              const std::vector<Bf16>& w_down,
                              const std::vector<std::int32_t>& expert_offsets, int num_experts,
                              int hidden, int ffn, bool swiglu);

/// Grouped GEMM (grouped_gemm.hpp): for each group g, rows [row_offsets[g], row_offsets[g+1])
/// of x [rows, k] times W_g [n, k] (at element w_offsets[g] of w) transposed. fp32, unrounded
/// [rows, n].
std::vector<float> grouped_gemm(const std::vector<Bf16>& x, const std::vector<Bf16>& w,
                                const std::vector<std::int64_t>& w_offsets,
                                const std::vector<std::int32_t>& row_offsets, int n, int k);

/// The value of an e4m3 byte (sign, 4 exponent bits with bias 7, 3 mantissa bits; subnormals
/// below 2^-6). The NaN codes 0x7f/0xff read as ±480, as the kernels do.
float fp8_e4m3_to_float(std::uint8_t b);

/// Grouped GEMM with kFP8Block weights (grouped_gemm.hpp): W_g at byte w_offsets[g] of `w`,
/// n·k e4m3 bytes then fp32 scales [ceil(n/128), ceil(k/128)]; W[o][i] = e4m3 × its block's
/// scale. fp32, unrounded [rows, n].
std::vector<float> grouped_gemm_fp8(const std::vector<Bf16>& x, const std::vector<std::uint8_t>& w,
                                    const std::vector<std::int64_t>& w_offsets,
                                    const std::vector<std::int32_t>& row_offsets, int n, int k);

}  // namespace masep::kernels::ref
