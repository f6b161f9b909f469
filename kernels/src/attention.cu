// Split-KV decode attention (flash-decoding) for bf16 caches; see attention.hpp.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "masep/kernels/attention.hpp"

namespace masep::kernels {
namespace {

using detail::ldg16;
using detail::unpack8;

constexpr int kWarpsPerBlock = 4;
constexpr float kLog2e = 1.4426950408889634f;

struct SplitArgs {
  const bf16* q;
  std::int64_t q_stride;
  const bf16* k_new;
  const bf16* v_new;
  std::int64_t kv_new_stride;
  bf16* k_cache;
  bf16* v_cache;
  const std::int32_t* kv_lens;
  float* ws_acc;  // [batch, num_heads, splits, head_dim] unnormalised
  float* ws_m;    // [batch, num_heads, splits] running max, log2 domain
  float* ws_l;    // [batch, num_heads, splits] sum of exp2
  int batch, num_heads, num_kv_heads, max_kv_len, splits, subgroups;
  float scale_log2;  // scale * log2(e)
};

// One warp per (sequence, kv head, query sub-group of GT heads, split). Each lane owns DPL
// consecutive dims of one token row (DPL/8 16-byte loads); a warp step covers TPW tokens.
// DPL 16 (fewer lanes per token) cuts the cross-lane score reductions and the redundant
// softmax work per token, which is what bounds the GQA variants; MHA uses DPL 8.
template <int HD, int GT, int U, int DPL>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    decode_attention_split_kernel(const SplitArgs a) {
  constexpr int kLanesPerToken = HD / DPL;
  constexpr int kTPW = 32 / kLanesPerToken;
  constexpr int NV = DPL / 8;
  const int lane = threadIdx.x & 31;
  int item = blockIdx.x * kWarpsPerBlock + (threadIdx.x >> 5);
  const int s = item % a.splits;
  item /= a.splits;
  const int sg = item % a.subgroups;
  item /= a.subgroups;
  const int kvh = item % a.num_kv_heads;
  const int b = item / a.num_kv_heads;
  if (b >= a.batch) return;

  const bool append = a.k_new != nullptr;
  const int len_old = a.kv_lens[b];
  const int len = len_old + (append ? 1 : 0);
  if (len_old < 0 || len > a.max_kv_len || len < 1) return;  // reduce writes NaN
  const int chunk = (len + a.splits - 1) / a.splits;
  const int start = min(len, s * chunk);
  const int end = min(len, start + chunk);

  const int sub = lane / kLanesPerToken;
  const int dl = lane % kLanesPerToken;
  const int group = a.num_heads / a.num_kv_heads;
  const int head0 = kvh * group + sg * GT;

  float q[GT][DPL];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      float t[8];
      unpack8(ldg16(a.q + b * a.q_stride + (head0 + g) * HD + dl * DPL + v * 8), t);
#pragma unroll
      for (int i = 0; i < 8; ++i) q[g][v * 8 + i] = t[i] * a.scale_log2;
    }
  }
  float m[GT], l[GT], acc[GT][DPL];
#pragma unroll
  for (int g = 0; g < GT; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.f;
#pragma unroll
    for (int i = 0; i < DPL; ++i) acc[g][i] = 0.f;
  }

  const std::int64_t cache_off =
      (static_cast<std::int64_t>(b) * a.num_kv_heads + kvh) * a.max_kv_len * HD + dl * DPL;
  const bf16* kbase = a.k_cache + cache_off;
  const bf16* vbase = a.v_cache + cache_off;
  const std::int64_t new_off = b * a.kv_new_stride + kvh * HD + dl * DPL;
  const bf16* knew = append ? a.k_new + new_off : nullptr;
  const bf16* vnew = append ? a.v_new + new_off : nullptr;

  for (int t0 = start; t0 < end; t0 += kTPW * U) {
    uint4 kr[U][NV], vr[U][NV];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int t = t0 + u * kTPW + sub;
      const bool is_new = append && t == len_old;
      const bf16* kp = is_new ? knew : kbase + static_cast<std::int64_t>(t) * HD;
      const bf16* vp = is_new ? vnew : vbase + static_cast<std::int64_t>(t) * HD;
#pragma unroll
      for (int v = 0; v < NV; ++v) {
        if (t < end) {
          kr[u][v] = ldg16(kp + v * 8);
          vr[u][v] = ldg16(vp + v * 8);
        } else {
          kr[u][v] = make_uint4(0, 0, 0, 0);
          vr[u][v] = make_uint4(0, 0, 0, 0);
        }
      }
    }
    float sc[U][GT];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      float kf[DPL];
#pragma unroll
      for (int v = 0; v < NV; ++v) {
        float t[8];
        unpack8(kr[u][v], t);
#pragma unroll
        for (int i = 0; i < 8; ++i) kf[v * 8 + i] = t[i];
      }
#pragma unroll
      for (int g = 0; g < GT; ++g) {
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < DPL; ++i) d = fmaf(q[g][i], kf[i], d);
#pragma unroll
        for (int o = kLanesPerToken / 2; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
        sc[u][g] = (t0 + u * kTPW + sub < end) ? d : -INFINITY;
      }
    }
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      float mx = m[g];
#pragma unroll
      for (int u = 0; u < U; ++u) mx = fmaxf(mx, sc[u][g]);
      if (mx == -INFINITY) continue;
      const float f = exp2f(m[g] - mx);
      l[g] *= f;
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[g][i] *= f;
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const float p = exp2f(sc[u][g] - mx);
        l[g] += p;
#pragma unroll
        for (int v = 0; v < NV; ++v) {
          float vf[8];
          unpack8(vr[u][v], vf);
#pragma unroll
          for (int i = 0; i < 8; ++i) acc[g][v * 8 + i] = fmaf(p, vf[i], acc[g][v * 8 + i]);
        }
      }
      m[g] = mx;
    }
  }

  // Append the new token: exactly one warp (the split holding slot len_old, sub-group 0)
  // writes it; nobody reads that slot from the cache in this launch.
  if (append && sg == 0 && len_old >= start && len_old < end && sub == 0) {
    const std::int64_t at = static_cast<std::int64_t>(len_old) * HD;
#pragma unroll
    for (int v = 0; v < NV; ++v) {
      *reinterpret_cast<uint4*>(a.k_cache + cache_off + at + v * 8) = ldg16(knew + v * 8);
      *reinterpret_cast<uint4*>(a.v_cache + cache_off + at + v * 8) = ldg16(vnew + v * 8);
    }
  }

  // Merge the token sub-groups of the warp.
#pragma unroll
  for (int o = 16; o >= kLanesPerToken; o >>= 1) {
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      const float mo = __shfl_xor_sync(0xffffffffu, m[g], o);
      const float lo = __shfl_xor_sync(0xffffffffu, l[g], o);
      const float mx = fmaxf(m[g], mo);
      const float f1 = mx == -INFINITY ? 0.f : exp2f(m[g] - mx);
      const float f2 = mx == -INFINITY ? 0.f : exp2f(mo - mx);
      l[g] = l[g] * f1 + lo * f2;
#pragma unroll
      for (int i = 0; i < DPL; ++i) {
        const float ao = __shfl_xor_sync(0xffffffffu, acc[g][i], o);
        acc[g][i] = acc[g][i] * f1 + ao * f2;
      }
      m[g] = mx;
    }
  }
  if (sub == 0) {
#pragma unroll
    for (int g = 0; g < GT; ++g) {
      const std::int64_t row =
          (static_cast<std::int64_t>(b) * a.num_heads + head0 + g) * a.splits + s;
      float4* dst = reinterpret_cast<float4*>(a.ws_acc + row * HD + dl * DPL);
#pragma unroll
      for (int i = 0; i < DPL / 4; ++i) {
        dst[i] =
            make_float4(acc[g][4 * i], acc[g][4 * i + 1], acc[g][4 * i + 2], acc[g][4 * i + 3]);
      }
      if (dl == 0) {
        a.ws_m[row] = m[g];
        a.ws_l[row] = l[g];
      }
    }
  }
}

// One warp per (sequence, query head): merges the splits.
template <int HD>
__global__ void decode_attention_reduce_kernel(const float* ws_acc, const float* ws_m,
                                               const float* ws_l, const std::int32_t* kv_lens,
                                               bool append, int max_kv_len, int batch,
                                               int num_heads, int splits, bf16* out, float* lse) {
  constexpr int kPer = HD / 32;
  const int lane = threadIdx.x & 31;
  const int item = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (item >= batch * num_heads) return;
  const int b = item / num_heads;
  const int len = kv_lens[b] + (append ? 1 : 0);
  const bool bad = kv_lens[b] < 0 || len > max_kv_len || len < 1;
  const std::int64_t base = static_cast<std::int64_t>(item) * splits;
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, ws_m[base + s]);
  float L = 0.f, o[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) o[i] = 0.f;
  if (!bad) {
    for (int s = 0; s < splits; ++s) {
      const float ms = ws_m[base + s];
      if (ms == -INFINITY) continue;
      const float f = exp2f(ms - mx);
      L += ws_l[base + s] * f;
#pragma unroll
      for (int i = 0; i < kPer; ++i) o[i] += ws_acc[(base + s) * HD + lane * kPer + i] * f;
    }
  }
  const float inv = bad ? NAN : 1.f / L;
  bf16* dst = out + static_cast<std::int64_t>(item) * HD + lane * kPer;
#pragma unroll
  for (int i = 0; i < kPer; i += 2) {
    *reinterpret_cast<__nv_bfloat162*>(dst + i) = __floats2bfloat162_rn(o[i] * inv, o[i + 1] * inv);
  }
  if (lse != nullptr && lane == 0) lse[item] = bad ? NAN : (mx + log2f(L)) / kLog2e;
}

__global__ void advance_kv_lens_kernel(std::int32_t* kv_lens, int batch) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < batch) kv_lens[i] += 1;
}

std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }

const char* first_problem(const DecodeAttentionParams& p) {
  if (p.batch <= 0) return "batch must be positive";
  if (p.num_heads <= 0 || p.num_kv_heads <= 0) return "head counts must be positive";
  if (p.num_heads % p.num_kv_heads != 0) return "num_heads must be a multiple of num_kv_heads";
  if (p.head_dim != 64 && p.head_dim != 128) return "head_dim must be 64 or 128";
  if (p.max_kv_len <= 0) return "max_kv_len must be positive";
  if (p.num_splits <= 0) return "num_splits must be positive";
  if (p.group_tile != 0 &&
      ((p.group_tile != 1 && p.group_tile != 2 && p.group_tile != 4 && p.group_tile != 8) ||
       (p.num_heads / p.num_kv_heads) % p.group_tile != 0)) {
    return "group_tile must be 0 or one of 1, 2, 4, 8 dividing the group size";
  }
  if (!p.q || !p.k_cache || !p.v_cache || !p.kv_lens || !p.out || !p.workspace) {
    return "null pointer (q, k_cache, v_cache, kv_lens, out and workspace are required)";
  }
  if ((p.k_new == nullptr) != (p.v_new == nullptr))
    return "k_new and v_new must both be set or null";
  if (p.workspace_bytes <
      decode_attention_workspace_bytes(p.batch, p.num_heads, p.head_dim, p.num_splits)) {
    return "workspace too small";
  }
  const std::int64_t q_stride = p.q_stride ? p.q_stride : std::int64_t{p.num_heads} * p.head_dim;
  const std::int64_t kv_stride =
      p.kv_new_stride ? p.kv_new_stride : std::int64_t{p.num_kv_heads} * p.head_dim;
  if (q_stride % 8 != 0 || kv_stride % 8 != 0) return "strides must be multiples of 8 elements";
  if (!detail::aligned16(p.q) || !detail::aligned16(p.k_cache) || !detail::aligned16(p.v_cache) ||
      !detail::aligned16(p.out) || !detail::aligned16(p.workspace) ||
      (p.k_new && (!detail::aligned16(p.k_new) || !detail::aligned16(p.v_new)))) {
    return "pointers must be 16-byte aligned";
  }
  return nullptr;
}

template <int HD, int GT>
void launch_split(const SplitArgs& a, cudaStream_t stream) {
  const std::int64_t items = std::int64_t{a.batch} * a.num_kv_heads * a.subgroups * a.splits;
  const unsigned blocks = static_cast<unsigned>((items + kWarpsPerBlock - 1) / kWarpsPerBlock);
  if constexpr (GT == 1) {
    decode_attention_split_kernel<HD, 1, 4, 8><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(a);
  } else {
    // GT 8 keeps 8 dims a lane: q and acc would not fit in registers with 16.
    constexpr int DPL = GT >= 8 ? 8 : 16;
    decode_attention_split_kernel<HD, GT, 2, DPL><<<blocks, kWarpsPerBlock * 32, 0, stream>>>(a);
  }
}

template <int HD>
void launch_split_hd(const SplitArgs& a, int gt, cudaStream_t stream) {
  switch (gt) {
    case 8:
      launch_split<HD, 8>(a, stream);
      break;
    case 4:
      launch_split<HD, 4>(a, stream);
      break;
    case 2:
      launch_split<HD, 2>(a, stream);
      break;
    default:
      launch_split<HD, 1>(a, stream);
      break;
  }
}

}  // namespace

std::size_t decode_attention_workspace_bytes(int batch, int num_heads, int head_dim,
                                             int num_splits) {
  const std::size_t rows = std::size_t(batch) * num_heads * num_splits;
  return align256(rows * head_dim * sizeof(float)) + 2 * align256(rows * sizeof(float));
}

int decode_attention_num_splits(int batch, int num_kv_heads, int max_context, int sm_count) {
  const long items = std::max(1L, long{batch} * num_kv_heads);
  const long target_warps = long{std::max(1, sm_count)} * 32;  // ~half the resident warps
  long splits = (target_warps + items - 1) / items;
  const long by_len = std::max(1L, (long{max_context} + 127) / 128);  // >= 128 tokens a split
  splits = std::min({splits, by_len, 64L});
  return static_cast<int>(std::max(1L, splits));
}

void check_decode_attention(const DecodeAttentionParams& p) {
  if (const char* why = first_problem(p)) {
    throw std::invalid_argument(std::string("decode attention: ") + why);
  }
}

Status launch_decode_attention(const DecodeAttentionParams& p, cudaStream_t stream) {
  if (first_problem(p) != nullptr) return Status::kInvalidArgument;
  const int group = p.num_heads / p.num_kv_heads;
  const int gt = p.group_tile > 0 ? p.group_tile
                 : group % 8 == 0 ? 8
                 : group % 4 == 0 ? 4
                 : group % 2 == 0 ? 2
                                  : 1;
  const std::size_t rows = std::size_t(p.batch) * p.num_heads * p.num_splits;
  char* ws = static_cast<char*>(p.workspace);
  SplitArgs a{};
  a.q = p.q;
  a.q_stride = p.q_stride ? p.q_stride : std::int64_t{p.num_heads} * p.head_dim;
  a.k_new = p.k_new;
  a.v_new = p.v_new;
  a.kv_new_stride = p.kv_new_stride ? p.kv_new_stride : std::int64_t{p.num_kv_heads} * p.head_dim;
  a.k_cache = p.k_cache;
  a.v_cache = p.v_cache;
  a.kv_lens = p.kv_lens;
  a.ws_acc = reinterpret_cast<float*>(ws);
  a.ws_m = reinterpret_cast<float*>(ws + align256(rows * p.head_dim * sizeof(float)));
  a.ws_l = reinterpret_cast<float*>(ws + align256(rows * p.head_dim * sizeof(float)) +
                                    align256(rows * sizeof(float)));
  a.batch = p.batch;
  a.num_heads = p.num_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.max_kv_len = p.max_kv_len;
  a.splits = p.num_splits;
  a.subgroups = group / gt;
  const float scale = p.scale != 0.f ? p.scale : 1.f / std::sqrt(static_cast<float>(p.head_dim));
  a.scale_log2 = scale * kLog2e;
  if (p.head_dim == 128) {
    launch_split_hd<128>(a, gt, stream);
  } else {
    launch_split_hd<64>(a, gt, stream);
  }
  if (cudaGetLastError() != cudaSuccess) return Status::kLaunchFailed;
  const int items = p.batch * p.num_heads;
  const int warps_per_block = 4;
  const unsigned blocks = static_cast<unsigned>((items + warps_per_block - 1) / warps_per_block);
  if (p.head_dim == 128) {
    decode_attention_reduce_kernel<128><<<blocks, warps_per_block * 32, 0, stream>>>(
        a.ws_acc, a.ws_m, a.ws_l, p.kv_lens, p.k_new != nullptr, p.max_kv_len, p.batch, p.num_heads,
        p.num_splits, p.out, p.lse);
  } else {
    decode_attention_reduce_kernel<64><<<blocks, warps_per_block * 32, 0, stream>>>(
        a.ws_acc, a.ws_m, a.ws_l, p.kv_lens, p.k_new != nullptr, p.max_kv_len, p.batch, p.num_heads,
        p.num_splits, p.out, p.lse);
  }
  return detail::launch_status();
}

Status launch_advance_kv_lens(std::int32_t* kv_lens, int batch, cudaStream_t stream) {
  if (kv_lens == nullptr || batch <= 0) return Status::kInvalidArgument;
  advance_kv_lens_kernel<<<(batch + 255) / 256, 256, 0, stream>>>(kv_lens, batch);
  return detail::launch_status();
}

}  // namespace masep::kernels
