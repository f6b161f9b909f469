// MLA decode attention over a latent KV cache, absorbed projections; see mla_attention.hpp.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "masep/kernels/mla_attention.hpp"

namespace masep::kernels {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kKl = kMlaLatentDim;   // latent width (V columns)
constexpr int kDr = kMlaRopeDim;     // rope width
constexpr int kDk = kKl + kDr;       // score width (576)
constexpr int kRowChunks = kDk / 8;  // 16-byte chunks per cache row (72)
constexpr int kRowBytes = kDk * 2;   // 1152
constexpr int kLatChunks = kKl / 8;  // chunks of the latent part (64)
constexpr int kWarps = 8;            // warps per block
constexpr int kThreads = kWarps * 32;
static_assert(kRowChunks % 8 == 0, "the row swizzle permutes chunks within groups of 8");

struct MlaArgs {
  const bf16* q_lat;
  std::int64_t q_lat_ss, q_lat_hs;
  const bf16* q_rope;
  std::int64_t q_rope_ss, q_rope_hs;
  const bf16* c_new;
  std::int64_t c_new_stride;
  const bf16* r_new;
  std::int64_t r_new_stride;
  bf16* cache;
  const std::int32_t* kv_lens;
  bf16* out;
  std::int64_t out_ss, out_hs;
  float* lse;
  float* ws_acc;  // [batch, heads, splits, kKl] unnormalised partial outputs
  float* ws_m;    // [batch, heads, splits] running max, log2 domain
  float* ws_l;    // [batch, heads, splits] sum of exp2
  int batch, heads, head_blocks, max_kv_len, splits;
  float scale_log2;  // scale * log2(e)
};

using detail::cp_async16;
using detail::cp_async_commit;
using detail::cp_async_wait;
using detail::ldmatrix_x4;
using detail::ldmatrix_x4_trans;
using detail::mma_bf16;
using detail::pack_bf16x2;

// Shared memory of one block: Q [HB rows][1152 B], STAGES KV tiles [TT rows][1152 B] (both
// with 16-byte chunk c of row r at chunk c ^ (r & 7), so ldmatrix's 8 rows hit different
// banks), P [HB rows][TT bf16 + 8 pad], the per-warp row statistics [TS][HB] fp32.
template <int RG, int TT, int STAGES>
struct MlaShape {
  static constexpr int kHB = 16 * RG;        // query heads per block
  static constexpr int kTS = kWarps / RG;    // token slices (QK) = column slices (PV)
  static constexpr int kTPW = TT / kTS;      // tokens per warp in Q K^T
  static constexpr int kNT = kTPW / 8;       // mma n-tiles per warp in Q K^T
  static constexpr int kCPW = kKl / kTS;     // latent columns per warp in P V
  static constexpr int kNC = kCPW / 8;       // mma n-tiles per warp in P V
  static constexpr int kPRow = TT * 2 + 16;  // bytes per P row (padded: no bank conflicts)
  static constexpr int kQBytes = kHB * kRowBytes;
  static constexpr int kTileBytes = TT * kRowBytes;
  static constexpr int kPBytes = kHB * kPRow;
  static constexpr int kRedBytes = kTS * kHB * 4;
  static constexpr int kSmem = kQBytes + STAGES * kTileBytes + kPBytes + kRedBytes;
  static_assert(kTPW % 8 == 0 && kNT >= 1, "a warp's token slice must be whole n-tiles");
  static_assert(kNC % 2 == 0, "P V takes n-tiles in pairs");
  static_assert(TT % 16 == 0 && STAGES >= 2, "tile of whole k-steps, >= 2 stages");
};

// One block per (sequence, split, head block); see mla_attention.hpp. Warp w takes row group
// rg = w % RG (16 heads) and slice ts = w / RG: tokens [ts * TPW, +TPW) of each tile in Q K^T,
// latent columns [ts * CPW, +CPW) in P V, so the rows' online-softmax state (m, alpha) is the
// same in every warp of a row group and O never leaves registers.
template <int RG, int TT, int STAGES>
__global__ void __launch_bounds__(kThreads, 1) mla_attention_kernel(const MlaArgs a) {
  using S = MlaShape<RG, TT, STAGES>;
  constexpr int kHB = S::kHB;
  extern __shared__ __align__(128) unsigned char smem[];
  const unsigned sbase = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const unsigned sq = sbase;
  const unsigned skv = sbase + S::kQBytes;
  const unsigned sp = skv + STAGES * S::kTileBytes;
  unsigned char* sp_ptr = smem + S::kQBytes + STAGES * S::kTileBytes;
  float* red = reinterpret_cast<float*>(sp_ptr + S::kPBytes);  // [TS][HB]

  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;
  const int g = lane >> 2;
  const int t4 = lane & 3;
  const int rg = warp % RG;
  const int ts = warp / RG;

  int item = blockIdx.x;
  const int hb = item % a.head_blocks;
  item /= a.head_blocks;
  const int s = item % a.splits;
  const int b = item / a.splits;
  if (b >= a.batch) return;
  const int head0 = hb * kHB;

  const bool append = a.c_new != nullptr;
  const int len_old = a.kv_lens[b];
  const int len = len_old + (append ? 1 : 0);
  if (len_old < 0 || len > a.max_kv_len || len < 1) {
    // Bad length: NaN output. One split: this block writes it; else the reduce kernel does.
    if (a.splits == 1) {
      for (int idx = threadIdx.x; idx < kHB * kKl; idx += kThreads) {
        const int h = head0 + idx / kKl;
        if (h >= a.heads) break;
        a.out[b * a.out_ss + h * a.out_hs + idx % kKl] = __float2bfloat16(NAN);
        if (a.lse != nullptr && idx % kKl == 0) a.lse[std::int64_t{b} * a.heads + h] = NAN;
      }
    }
    return;
  }
  // Splits are whole tiles (trailing splits may be empty).
  const int chunk = ((len + a.splits - 1) / a.splits + TT - 1) / TT * TT;
  const int start = min(len, s * chunk);
  const int end = min(len, start + chunk);
  const int ntiles = (end - start + TT - 1) / TT;

  const bf16* seq_cache = a.cache + std::int64_t{b} * a.max_kv_len * kDk;
  const bf16* cnew = append ? a.c_new + b * a.c_new_stride : seq_cache;
  const bf16* rnew = append ? a.r_new + b * a.r_new_stride : seq_cache;

  // Q of the block's heads (zero rows past num_heads), in the first commit group.
  for (int c = threadIdx.x; c < kHB * kRowChunks; c += kThreads) {
    const int r = c / kRowChunks;
    const int ch = c % kRowChunks;
    const int h = head0 + r;
    const bool ok = h < a.heads;
    const int hh = ok ? h : 0;
    const bf16* src = ch < kLatChunks
                          ? a.q_lat + b * a.q_lat_ss + hh * a.q_lat_hs + ch * 8
                          : a.q_rope + b * a.q_rope_ss + hh * a.q_rope_hs + (ch - kLatChunks) * 8;
    cp_async16(sq + r * kRowBytes + ((ch ^ (r & 7)) << 4), src, ok);
  }
  auto load_tile = [&](int stage, int t0) {
    const unsigned dst0 = skv + stage * S::kTileBytes;
#pragma unroll
    for (int i = 0; i < TT * kRowChunks / kThreads; ++i) {
      const int c = threadIdx.x + i * kThreads;
      const int row = c / kRowChunks;
      const int ch = c % kRowChunks;
      const int t = t0 + row;
      const bool valid = t < end;
      const bool is_new = append && t == len_old;
      const bf16* src = is_new ? (ch < kLatChunks ? cnew + ch * 8 : rnew + (ch - kLatChunks) * 8)
                               : seq_cache + std::int64_t{valid ? t : 0} * kDk + ch * 8;
      cp_async16(dst0 + row * kRowBytes + ((ch ^ (row & 7)) << 4), src, valid);
    }
  };
#pragma unroll
  for (int i = 0; i < STAGES - 1; ++i) {
    if (i < ntiles) load_tile(i, start + i * TT);
    cp_async_commit();
  }

  float o[S::kNC][4];
#pragma unroll
  for (int n = 0; n < S::kNC; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY;  // rows g and g + 8 of the row group, log2 domain
  float l0 = 0.f, l1 = 0.f;              // this thread's part of the rows' sums
  const int row_g = rg * 16 + g;         // block row of this thread's first row

  // ldmatrix addresses of the A operands (Q, P): lanes 0-7 rows 0-7, 8-15 rows 8-15, k lo;
  // 16-31 the same rows, k hi.
  const int a_row = rg * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
  const int a_hi = lane >> 4;

  for (int it = 0; it < ntiles; ++it) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // tile `it` (and Q) visible; everyone is done with tile it - 1 and P
    {
      const int nx = it + STAGES - 1;
      if (nx < ntiles) load_tile(nx % STAGES, start + nx * TT);
      cp_async_commit();
    }
    const unsigned kv = skv + (it % STAGES) * S::kTileBytes;
    const int t_base = start + it * TT;

    // S = Q K^T over the 576-wide rows: this warp's 16 heads x TPW tokens.
    float sc[S::kNT][4];
#pragma unroll
    for (int nt = 0; nt < S::kNT; ++nt) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
#pragma unroll(S::kNT >= 4 ? 2 : 6)
    for (int kp = 0; kp < kRowChunks / 4; ++kp) {  // two k-steps (32 elements) at a time
      unsigned qa0[4], qa1[4];
      ldmatrix_x4(qa0, sq + a_row * kRowBytes + (((4 * kp + a_hi) ^ (a_row & 7)) << 4));
      ldmatrix_x4(qa1, sq + a_row * kRowBytes + (((4 * kp + 2 + a_hi) ^ (a_row & 7)) << 4));
#pragma unroll
      for (int nt = 0; nt < S::kNT; ++nt) {
        const int row = ts * S::kTPW + nt * 8 + (lane & 7);
        const int ch = 4 * kp + (lane >> 3);
        unsigned r[4];
        ldmatrix_x4(r, kv + row * kRowBytes + ((ch ^ (row & 7)) << 4));
        mma_bf16(sc[nt], qa0, r[0], r[1]);
        mma_bf16(sc[nt], qa1, r[2], r[3]);
      }
    }
    // Scale, mask, the tile's row maxima across the row group's warps.
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < S::kNT; ++nt) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const bool valid = t_base + ts * S::kTPW + nt * 8 + 2 * t4 + j < end;
        sc[nt][j] = valid ? sc[nt][j] * a.scale_log2 : -INFINITY;
        sc[nt][2 + j] = valid ? sc[nt][2 + j] * a.scale_log2 : -INFINITY;
        mx0 = fmaxf(mx0, sc[nt][j]);
        mx1 = fmaxf(mx1, sc[nt][2 + j]);
      }
    }
#pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, x));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, x));
    }
    if (t4 == 0) {
      red[ts * kHB + row_g] = mx0;
      red[ts * kHB + row_g + 8] = mx1;
    }
    __syncthreads();
#pragma unroll
    for (int w = 0; w < S::kTS; ++w) {
      mx0 = fmaxf(mx0, red[w * kHB + row_g]);
      mx1 = fmaxf(mx1, red[w * kHB + row_g + 8]);
    }
    const float mn0 = fmaxf(m0, mx0);
    const float mn1 = fmaxf(m1, mx1);
    const float ref0 = mn0 == -INFINITY ? 0.f : mn0;  // all masked so far: exp2 gives 0
    const float ref1 = mn1 == -INFINITY ? 0.f : mn1;
    const float al0 = exp2f(m0 - ref0);
    const float al1 = exp2f(m1 - ref1);
    m0 = mn0;
    m1 = mn1;
    // P (bf16) of this warp's tokens into shared memory for every warp of the row group.
#pragma unroll
    for (int nt = 0; nt < S::kNT; ++nt) {
      const float p0 = exp2f(sc[nt][0] - ref0);
      const float p1 = exp2f(sc[nt][1] - ref0);
      const float p2 = exp2f(sc[nt][2] - ref1);
      const float p3 = exp2f(sc[nt][3] - ref1);
      l0 = l0 * (nt == 0 ? al0 : 1.f) + p0 + p1;
      l1 = l1 * (nt == 0 ? al1 : 1.f) + p2 + p3;
      const int col = (ts * S::kTPW + nt * 8 + 2 * t4) * 2;
      *reinterpret_cast<unsigned*>(sp_ptr + row_g * S::kPRow + col) = pack_bf16x2(p0, p1);
      *reinterpret_cast<unsigned*>(sp_ptr + (row_g + 8) * S::kPRow + col) = pack_bf16x2(p2, p3);
    }
#pragma unroll
    for (int n = 0; n < S::kNC; ++n) {
      o[n][0] *= al0;
      o[n][1] *= al0;
      o[n][2] *= al1;
      o[n][3] *= al1;
    }
    __syncthreads();  // P visible
    // O += P V: this warp's 16 heads x CPW latent columns, V = the tile's c_kv part.
#pragma unroll
    for (int ks = 0; ks < TT / 16; ++ks) {
      unsigned pa[4];
      ldmatrix_x4(pa, sp + a_row * S::kPRow + (ks * 16 + a_hi * 8) * 2);
      const int row = ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
      const unsigned vrow = kv + row * kRowBytes;
#pragma unroll
      for (int np = 0; np < S::kNC / 2; ++np) {
        const int ch = ts * (S::kCPW / 8) + 2 * np + (lane >> 4);
        unsigned r[4];
        ldmatrix_x4_trans(r, vrow + ((ch ^ (row & 7)) << 4));
        mma_bf16(o[2 * np], pa, r[0], r[1]);
        mma_bf16(o[2 * np + 1], pa, r[2], r[3]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // statistics buffer free; every read of the new token's slot done

  // Append the new token: the split holding slot len_old, head block 0 (the other head blocks
  // took that row from c_kv_new / k_rope_new, never from the cache).
  if (append && hb == 0 && len_old >= start && len_old < end) {
    bf16* dst = a.cache + (std::int64_t{b} * a.max_kv_len + len_old) * kDk;
    for (int ch = threadIdx.x; ch < kRowChunks; ch += kThreads) {
      const uint4 v = ch < kLatChunks ? detail::ldg16(cnew + ch * 8)
                                      : detail::ldg16(rnew + (ch - kLatChunks) * 8);
      *reinterpret_cast<uint4*>(dst + ch * 8) = v;
    }
  }

  // Row sums over the row group's warps (every warp's part is relative to the same max).
#pragma unroll
  for (int x = 1; x <= 2; x <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, x);
    l1 += __shfl_xor_sync(0xffffffffu, l1, x);
  }
  if (t4 == 0) {
    red[ts * kHB + row_g] = l0;
    red[ts * kHB + row_g + 8] = l1;
  }
  __syncthreads();
  float L0 = 0.f, L1 = 0.f;
#pragma unroll
  for (int w = 0; w < S::kTS; ++w) {
    L0 += red[w * kHB + row_g];
    L1 += red[w * kHB + row_g + 8];
  }
  const int h0 = head0 + row_g;
  const int h1 = h0 + 8;
  const int col0 = ts * S::kCPW + 2 * t4;
  if (a.splits == 1) {  // the whole softmax: normalised output
    const float inv0 = 1.f / L0;
    const float inv1 = 1.f / L1;
    if (h0 < a.heads) {
      bf16* dst = a.out + b * a.out_ss + h0 * a.out_hs + col0;
#pragma unroll
      for (int n = 0; n < S::kNC; ++n) {
        *reinterpret_cast<__nv_bfloat162*>(dst + n * 8) =
            __floats2bfloat162_rn(o[n][0] * inv0, o[n][1] * inv0);
      }
      if (a.lse != nullptr && ts == 0 && t4 == 0) {
        a.lse[std::int64_t{b} * a.heads + h0] = (m0 + log2f(L0)) / kLog2e;
      }
    }
    if (h1 < a.heads) {
      bf16* dst = a.out + b * a.out_ss + h1 * a.out_hs + col0;
#pragma unroll
      for (int n = 0; n < S::kNC; ++n) {
        *reinterpret_cast<__nv_bfloat162*>(dst + n * 8) =
            __floats2bfloat162_rn(o[n][2] * inv1, o[n][3] * inv1);
      }
      if (a.lse != nullptr && ts == 0 && t4 == 0) {
        a.lse[std::int64_t{b} * a.heads + h1] = (m1 + log2f(L1)) / kLog2e;
      }
    }
    return;
  }
  // Partial of this split (an empty split writes m = -inf, l = 0, zeros).
  if (h0 < a.heads) {
    const std::int64_t row = (std::int64_t{b} * a.heads + h0) * a.splits + s;
    float* dst = a.ws_acc + row * kKl + col0;
#pragma unroll
    for (int n = 0; n < S::kNC; ++n) {
      *reinterpret_cast<float2*>(dst + n * 8) = make_float2(o[n][0], o[n][1]);
    }
    if (ts == 0 && t4 == 0) {
      a.ws_m[row] = m0;
      a.ws_l[row] = L0;
    }
  }
  if (h1 < a.heads) {
    const std::int64_t row = (std::int64_t{b} * a.heads + h1) * a.splits + s;
    float* dst = a.ws_acc + row * kKl + col0;
#pragma unroll
    for (int n = 0; n < S::kNC; ++n) {
      *reinterpret_cast<float2*>(dst + n * 8) = make_float2(o[n][2], o[n][3]);
    }
    if (ts == 0 && t4 == 0) {
      a.ws_m[row] = m1;
      a.ws_l[row] = L1;
    }
  }
}

// One warp per (sequence, head): merges the splits' partials; lane i takes float4 columns
// 4 i + 128 j.
__global__ void mla_attention_reduce_kernel(const MlaArgs a) {
  const int lane = threadIdx.x & 31;
  const int item = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (item >= a.batch * a.heads) return;
  const int b = item / a.heads;
  const int h = item % a.heads;
  const int len_old = a.kv_lens[b];
  const int len = len_old + (a.c_new != nullptr ? 1 : 0);
  const bool bad = len_old < 0 || len > a.max_kv_len || len < 1;
  const std::int64_t base = static_cast<std::int64_t>(item) * a.splits;
  float mx = -INFINITY;
  for (int s = 0; s < a.splits; ++s) mx = fmaxf(mx, a.ws_m[base + s]);
  constexpr int kPer = kKl / 128;  // float4s per lane
  float4 acc[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) acc[j] = make_float4(0.f, 0.f, 0.f, 0.f);
  float L = 0.f;
  if (!bad) {
    for (int s = 0; s < a.splits; ++s) {
      const float ms = a.ws_m[base + s];
      if (ms == -INFINITY) continue;  // empty split
      const float f = exp2f(ms - mx);
      L += a.ws_l[base + s] * f;
      const float4* src = reinterpret_cast<const float4*>(a.ws_acc + (base + s) * kKl);
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const float4 v = src[lane + 32 * j];
        acc[j].x += v.x * f;
        acc[j].y += v.y * f;
        acc[j].z += v.z * f;
        acc[j].w += v.w * f;
      }
    }
  }
  const float inv = bad ? NAN : 1.f / L;
  bf16* dst = a.out + b * a.out_ss + h * a.out_hs;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const __nv_bfloat162 lo = __floats2bfloat162_rn(acc[j].x * inv, acc[j].y * inv);
    const __nv_bfloat162 hi = __floats2bfloat162_rn(acc[j].z * inv, acc[j].w * inv);
    uint2 u;
    u.x = *reinterpret_cast<const unsigned*>(&lo);
    u.y = *reinterpret_cast<const unsigned*>(&hi);
    *reinterpret_cast<uint2*>(dst + 4 * (lane + 32 * j)) = u;
  }
  if (a.lse != nullptr && lane == 0) a.lse[item] = bad ? NAN : (mx + log2f(L)) / kLog2e;
}

const char* first_problem(const MlaAttentionParams& p) {
  if (p.batch <= 0) return "batch must be positive";
  if (p.num_heads <= 0) return "num_heads must be positive";
  if (p.max_kv_len <= 0) return "max_kv_len must be positive";
  if (p.num_splits <= 0) return "num_splits must be positive";
  if (p.tile_tokens != 0 && p.tile_tokens != 32 && p.tile_tokens != 64) {
    return "tile_tokens must be 0, 32 or 64";
  }
  if (!(p.scale > 0.f) || !std::isfinite(p.scale)) return "scale must be positive and finite";
  if (!p.q_lat || !p.q_rope || !p.kv_cache || !p.kv_lens || !p.out) {
    return "null pointer (q_lat, q_rope, kv_cache, kv_lens and out are required)";
  }
  if ((p.c_kv_new == nullptr) != (p.k_rope_new == nullptr)) {
    return "c_kv_new and k_rope_new must both be set or null";
  }
  if (p.num_splits > 1) {
    if (p.workspace == nullptr) return "null workspace with num_splits > 1";
    if (p.workspace_bytes < mla_attention_workspace_bytes(p.batch, p.num_heads, p.num_splits)) {
      return "workspace too small";
    }
    if (!detail::aligned16(p.workspace)) return "workspace must be 16-byte aligned";
  }
  const std::int64_t strides[] = {p.q_lat_seq_stride,   p.q_lat_head_stride, p.q_rope_seq_stride,
                                  p.q_rope_head_stride, p.c_kv_new_stride,   p.k_rope_new_stride,
                                  p.out_seq_stride,     p.out_head_stride};
  for (std::int64_t s : strides) {
    if (s < 0 || s % 8 != 0) return "strides must be non-negative multiples of 8 elements";
  }
  if (!detail::aligned16(p.q_lat) || !detail::aligned16(p.q_rope) ||
      !detail::aligned16(p.kv_cache) || !detail::aligned16(p.out) ||
      (p.c_kv_new && (!detail::aligned16(p.c_kv_new) || !detail::aligned16(p.k_rope_new)))) {
    return "pointers must be 16-byte aligned";
  }
  return nullptr;
}

// Opt-in shared memory per block of the current device in bytes (0 if unknown).
std::size_t device_smem_optin() {
  int dev = 0, bytes = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return static_cast<std::size_t>(bytes);
}

template <int RG, int TT, int STAGES>
bool launch_block(const MlaArgs& a, cudaStream_t stream) {
  constexpr int kSmem = MlaShape<RG, TT, STAGES>::kSmem;
  auto kernel = mla_attention_kernel<RG, TT, STAGES>;
  // Raise the dynamic shared-memory limit once per device.
  constexpr int kMaxDevices = 64;
  static std::atomic<bool> done[kMaxDevices];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev < 0 || dev >= kMaxDevices || !done[dev].load(std::memory_order_acquire)) {
    if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem) !=
        cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    if (dev >= 0 && dev < kMaxDevices) done[dev].store(true, std::memory_order_release);
  }
  const std::int64_t blocks = std::int64_t{a.batch} * a.splits * a.head_blocks;
  kernel<<<static_cast<unsigned>(blocks), kThreads, kSmem, stream>>>(a);
  return cudaGetLastError() == cudaSuccess;
}

}  // namespace

void check_mla_attention(const MlaAttentionParams& p) {
  if (const char* why = first_problem(p)) {
    throw std::invalid_argument(std::string("mla attention: ") + why);
  }
}

Status launch_mla_attention(const MlaAttentionParams& p, cudaStream_t stream) {
  if (first_problem(p) != nullptr) return Status::kInvalidArgument;
  MlaArgs a{};
  a.q_lat = p.q_lat;
  a.q_lat_hs = p.q_lat_head_stride ? p.q_lat_head_stride : kKl;
  a.q_lat_ss = p.q_lat_seq_stride ? p.q_lat_seq_stride : std::int64_t{p.num_heads} * kKl;
  a.q_rope = p.q_rope;
  a.q_rope_hs = p.q_rope_head_stride ? p.q_rope_head_stride : kDr;
  a.q_rope_ss = p.q_rope_seq_stride ? p.q_rope_seq_stride : std::int64_t{p.num_heads} * kDr;
  a.c_new = p.c_kv_new;
  a.c_new_stride = p.c_kv_new_stride ? p.c_kv_new_stride : kKl;
  a.r_new = p.k_rope_new;
  a.r_new_stride = p.k_rope_new_stride ? p.k_rope_new_stride : kDr;
  a.cache = p.kv_cache;
  a.kv_lens = p.kv_lens;
  a.out = p.out;
  a.out_hs = p.out_head_stride ? p.out_head_stride : kKl;
  a.out_ss = p.out_seq_stride ? p.out_seq_stride : std::int64_t{p.num_heads} * kKl;
  a.lse = p.lse;
  if (p.num_splits > 1) {
    const std::size_t rows = std::size_t(p.batch) * p.num_heads * p.num_splits;
    const std::size_t acc_bytes = (rows * kKl * sizeof(float) + 255) / 256 * 256;
    const std::size_t stat_bytes = (rows * sizeof(float) + 255) / 256 * 256;
    char* ws = static_cast<char*>(p.workspace);
    a.ws_acc = reinterpret_cast<float*>(ws);
    a.ws_m = reinterpret_cast<float*>(ws + acc_bytes);
    a.ws_l = reinterpret_cast<float*>(ws + acc_bytes + stat_bytes);
  }
  a.batch = p.batch;
  a.heads = p.num_heads;
  a.max_kv_len = p.max_kv_len;
  a.splits = p.num_splits;
  a.scale_log2 = p.scale * kLog2e;
  const int hb = mla_attention_block_heads(p.num_heads);
  a.head_blocks = (p.num_heads + hb - 1) / hb;
  // The sm_90 blocks (mla_attention_config.hpp); where the device's opt-in shared memory is
  // smaller (sm_80: 163 KB), 32-token tiles of 32/64-head blocks, fewer stages.
  // tile_tokens 32 / 64 force the tile (see mla_attention.hpp).
  const std::size_t optin = device_smem_optin();
  const int tile = p.tile_tokens;
  bool ok = false;
  if (hb == 64 && tile == 64) {
    ok = launch_block<4, 64, 2>(a, stream);
  } else if (hb <= 32 && tile == 32) {
    a.head_blocks = (p.num_heads + 31) / 32;
    ok = launch_block<2, 32, 3>(a, stream);
  } else if (hb == 16 && (tile == 64 || optin >= std::size_t(MlaShape<1, 64, 2>::kSmem))) {
    ok = launch_block<1, 64, 2>(a, stream);
  } else if (hb <= 32 && (tile == 64 || optin >= std::size_t(MlaShape<2, 64, 2>::kSmem))) {
    a.head_blocks = (p.num_heads + 31) / 32;
    ok = launch_block<2, 64, 2>(a, stream);
  } else if (hb <= 32) {
    a.head_blocks = (p.num_heads + 31) / 32;
    ok = launch_block<2, 32, 3>(a, stream);
  } else if (optin >= std::size_t(MlaShape<4, 32, 3>::kSmem)) {
    ok = launch_block<4, 32, 3>(a, stream);
  } else {
    ok = launch_block<4, 32, 2>(a, stream);
  }
  if (!ok) return Status::kLaunchFailed;
  if (p.num_splits == 1) return Status::kOk;
  const int items = p.batch * p.num_heads;
  constexpr int kReduceWarps = 4;
  mla_attention_reduce_kernel<<<(items + kReduceWarps - 1) / kReduceWarps, kReduceWarps * 32, 0,
                                stream>>>(a);
  return detail::launch_status();
}

}  // namespace masep::kernels
