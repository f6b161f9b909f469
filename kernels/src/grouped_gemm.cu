// Grouped decode GEMM; see grouped_gemm.hpp.
#include <algorithm>
#include <atomic>

#include "common.cuh"
#include "masep/kernels/grouped_gemm.hpp"

namespace masep::kernels {
namespace {

constexpr int kWarps = 4;    // warps per block
constexpr int kChunk = 256;  // elements of k one warp covers per load (32 lanes × 8)

__device__ __forceinline__ uint4 ld_stream16(const bf16* p) {
  // Weights are read once per launch: keep them out of L1 (L2 still serves a second pass).
  return __ldcs(reinterpret_cast<const uint4*>(p));
}

// Sums V values (V a power of two, ≤ 32) across the warp with V − 1 + (5 − log2 V) shuffles
// instead of 5·V: each butterfly step sends half of the lane's remaining values to its
// partner and keeps the other half. Afterwards v[0] of lane l holds the warp's sum of value
// l >> (5 − log2 V).
template <int V>
__device__ __forceinline__ void warp_reduce_scatter(float (&v)[V], int lane) {
  int n = V;
#pragma unroll
  for (int s = 16; s >= 1; s >>= 1) {
    if (n > 1) {
      const int half = n / 2;
      const bool upper = (lane & s) != 0;
#pragma unroll
      for (int i = 0; i < V / 2; ++i) {
        if (i < half) {
          const float send = upper ? v[i] : v[i + half];
          const float keep = upper ? v[i + half] : v[i];
          v[i] = keep + __shfl_xor_sync(0xffffffffu, send, s);
        }
      }
      n = half;
    } else {
      v[0] += __shfl_xor_sync(0xffffffffu, v[0], s);
    }
  }
}

template <int V>
constexpr int log2_of() {
  int l = 0;
  while ((1 << l) < V) ++l;
  return l;
}

// One warp: C consecutive output columns of group blockIdx.y (compacted to non-empty
// groups) for all of the group's rows, R rows per pass over the C weight rows. C weight loads
// are in flight per lane; each 16-byte load of x serves C columns.
template <int R, int C>
__global__ void __launch_bounds__(kWarps * 32)
    grouped_gemm_kernel(const GroupedGemmArgs a, const bf16* __restrict__ x,
                        bf16* __restrict__ y) {
  constexpr int V = R * C;
  static_assert(V <= 32 && (V & (V - 1)) == 0, "R·C must be a power of two ≤ 32");
  const int g = blockIdx.y;
  const int row0 = a.row_offset[g];
  const int rows = a.row_offset[g + 1] - row0;
  const int lane = threadIdx.x & 31;
  const int col0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * C;
  if (col0 >= a.n) return;
  const int k = a.k;
  const bf16* w = static_cast<const bf16*>(a.w_base) + a.w_offset[g] + static_cast<std::int64_t>(col0) * k;
  for (int r0 = 0; r0 < rows; r0 += R) {
    const int nr = min(R, rows - r0);
    const bf16* xg = x + static_cast<std::int64_t>(row0 + r0) * k;
    float acc[V];
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] = 0.f;
    for (int kk = lane * 8; kk < k; kk += kChunk) {
      float wf[C][8];
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const uint4 wv = col0 + c < a.n ? ld_stream16(w + static_cast<std::int64_t>(c) * k + kk)
                                        : make_uint4(0, 0, 0, 0);
        detail::unpack8(wv, wf[c]);
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r < nr) {
          float xf[8];
          detail::unpack8(detail::ldg16(xg + static_cast<std::int64_t>(r) * k + kk), xf);
#pragma unroll
          for (int c = 0; c < C; ++c) {
#pragma unroll
            for (int i = 0; i < 8; ++i) acc[c * R + r] = fmaf(wf[c][i], xf[i], acc[c * R + r]);
          }
        }
      }
    }
    warp_reduce_scatter<V>(acc, lane);
    constexpr int kShift = 5 - log2_of<V>();
    const int idx = lane >> kShift;  // value c·R + r of this lane
    const int c = idx / R, r = idx % R;
    if ((lane & ((1 << kShift) - 1)) == 0 && r < nr && col0 + c < a.n) {
      y[static_cast<std::int64_t>(row0 + r0 + r) * a.n + col0 + c] = __float2bfloat16(acc[0]);
    }
  }
}

// ---- tensor-core variant (more than 2 rows) --------------------------------------------------
//
// One warp: a 16-column × (8·NT)-row output tile of group blockIdx.y with mma.m16n8k16 (bf16
// in, fp32 accumulate): A = 16 weight rows × 16 k (row-major: W's own layout), B = 16 k × 8
// token rows. The k order inside a 32-wide k block is permuted the same way for A and B (a
// dot product does not care), so that each lane loads 16 contiguous bytes: lane (g, t) =
// (lane / 4, lane % 4) reads k [8t, 8t + 8) of weight rows g and g + 8 and of token row g of
// each n tile; mma step 0 takes elements 0-3 of those 8, step 1 elements 4-7. kUnrollTc k
// blocks are loaded before they are used (2·kUnrollTc 16-byte weight loads in flight per
// lane). Rows beyond the group's are zeros in B and are not stored.
constexpr int kUnrollTc = 4;

__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], uint32_t a0, uint32_t a1,
                                               uint32_t a2, uint32_t a3, uint32_t b0,
                                               uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Tile mapping of the tensor-core variants. KS == 1: 4 warps and 4 column tiles of 16 per
// block, every warp the whole k. KS > 1 (launches with few blocks, e.g. one group: an
// attention projection with FP8 weights): KS warps per block share one 16-column tile, warp w
// takes k [w·kc, (w + 1)·kc) (kc a multiple of 128, so FP8 scale blocks and the bf16 unroll
// stay whole), and the partial sums meet in shared memory (tc_store).
template <int KS>
struct TcTile {
  int col0, k_begin, k_end;
  __device__ __forceinline__ TcTile(int k) {
    const int warp = threadIdx.x >> 5;
    if (KS == 1) {
      col0 = (blockIdx.x * kWarps + warp) * 16;
      k_begin = 0;
      k_end = k;
    } else {
      col0 = blockIdx.x * 16;
      const int kc = (k + KS * 128 - 1) / (KS * 128) * 128;
      k_begin = min(k, warp * kc);
      k_end = min(k, k_begin + kc);
    }
  }
};

// Stores a warp's tile (acc[j]: c0, c1 = column col0 + gi, token rows r0 + 8j + 2t, +1; c2, c3 =
// column + 8). KS > 1: warps 1..KS-1 leave their partials in `red` and warp 0 adds them and
// stores; every warp of the block must call it (two barriers).
template <int NT, int KS>
__device__ __forceinline__ void tc_store(float (&acc)[NT][4], float* red, int r0, int rows,
                                         int row0, int col0, int n, bf16* __restrict__ y) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gi = lane >> 2, t = lane & 3;
  if (KS > 1) {
    if (warp > 0) {
#pragma unroll
      for (int j = 0; j < NT; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) red[(((warp - 1) * NT + j) * 4 + e) * 32 + lane] = acc[j][e];
      }
    }
    __syncthreads();
    if (warp == 0) {
      for (int w = 1; w < KS; ++w) {
#pragma unroll
        for (int j = 0; j < NT; ++j) {
#pragma unroll
          for (int e = 0; e < 4; ++e) acc[j][e] += red[(((w - 1) * NT + j) * 4 + e) * 32 + lane];
        }
      }
    }
    __syncthreads();
    if (warp != 0) return;
  }
#pragma unroll
  for (int j = 0; j < NT; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = r0 + 8 * j + 2 * t + (e & 1);
      const int col = col0 + gi + (e >= 2 ? 8 : 0);
      if (r < rows && col < n) {
        y[static_cast<std::int64_t>(row0 + r) * n + col] = __float2bfloat16(acc[j][e]);
      }
    }
  }
}

template <int NT, int KS>
__global__ void __launch_bounds__(256)
    grouped_gemm_tc_kernel(const GroupedGemmArgs a, const bf16* __restrict__ x,
                           bf16* __restrict__ y) {
  __shared__ float red[KS > 1 ? (KS - 1) * NT * 4 * 32 : 1];
  const int g = blockIdx.y;
  const int row0 = a.row_offset[g];
  const int rows = a.row_offset[g + 1] - row0;
  const int lane = threadIdx.x & 31;
  const int gi = lane >> 2, t = lane & 3;
  const TcTile<KS> tile(a.k);
  const int col0 = tile.col0, k_begin = tile.k_begin, k_end = tile.k_end;
  if (col0 >= a.n) return;  // uniform across the block when KS > 1
  const int k = a.k;
  const bool lo_ok = col0 + gi < a.n, hi_ok = col0 + gi + 8 < a.n;
  const bf16* wlo =
      static_cast<const bf16*>(a.w_base) + a.w_offset[g] + static_cast<std::int64_t>(col0 + gi) * k;
  const bf16* whi = wlo + static_cast<std::int64_t>(8) * k;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  for (int r0 = 0; r0 < rows; r0 += 8 * NT) {
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    // Token row of this lane in n tile j: r0 + 8j + gi (zeros past the group's rows).
    const bf16* xr[NT];
    bool xok[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int r = r0 + 8 * j + gi;
      xok[j] = r < rows;
      xr[j] = x + static_cast<std::int64_t>(row0 + (xok[j] ? r : 0)) * k;
    }
    for (int kb = k_begin; kb < k_end; kb += 32 * kUnrollTc) {
      uint4 wl[kUnrollTc], wh[kUnrollTc];
#pragma unroll
      for (int u = 0; u < kUnrollTc; ++u) {
        const int kk = kb + 32 * u + 8 * t;
        const bool in = kk < k_end;  // k % 8 == 0: a lane's 8 elements are all in or all out
        wl[u] = in && lo_ok ? ld_stream16(wlo + kk) : zero;
        wh[u] = in && hi_ok ? ld_stream16(whi + kk) : zero;
      }
#pragma unroll
      for (int u = 0; u < kUnrollTc; ++u) {
        const int kk = kb + 32 * u + 8 * t;
        if (kb + 32 * u >= k_end) break;
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const uint4 xv = xok[j] && kk < k_end ? detail::ldg16(xr[j] + kk) : zero;
          mma_bf16_16816(acc[j], wl[u].x, wh[u].x, wl[u].y, wh[u].y, xv.x, xv.y);
          mma_bf16_16816(acc[j], wl[u].z, wh[u].z, wl[u].w, wh[u].w, xv.z, xv.w);
        }
      }
    }
    tc_store<NT, KS>(acc, red, r0, rows, row0, col0, a.n, y);
  }
}


// ---- FP8 block-scaled weights (W8A16) -------------------------------------------------------
//
// Four e4m3 bytes → two bf16x2 registers (bytes 0,1 → lo; 2,3 → hi), exact, in 4 operations
// a pair: a byte permute puts each byte in the upper half of a 16-bit lane (its sign is then
// the bf16 sign bit), a shift moves the 7 exponent|mantissa bits to bf16 bits 4-10, which is
// the bf16 of value · 2^-120 (a subnormal e4m3 becomes a subnormal bf16), and one bf16x2
// multiply by 2^120 (subnormals supported) restores the value. An e4m3 value has at most 4
// significant bits, so the bf16 is exact.
__device__ __forceinline__ uint32_t fp8x2_to_bf16x2(uint32_t w, uint32_t sel) {
  const uint32_t t = __byte_perm(w, 0u, sel);  // [0, b_lo, 0, b_hi]
  const uint32_t v = (t & 0x80008000u) | ((t >> 4) & 0x07f007f0u);
  __nv_bfloat162 h = *reinterpret_cast<const __nv_bfloat162*>(&v);
  const uint32_t k2p120 = 0x7b807b80u;  // bf16 2^120 in both halves
  h = __hmul2(h, *reinterpret_cast<const __nv_bfloat162*>(&k2p120));
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ void fp8x4_to_bf16x2(uint32_t w, uint32_t& lo, uint32_t& hi) {
  lo = fp8x2_to_bf16x2(w, 0x1404u);
  hi = fp8x2_to_bf16x2(w, 0x3424u);
}

__device__ __forceinline__ const float* fp8_scales(const uint8_t* w, int n, int k) {
  return reinterpret_cast<const float*>(w + static_cast<std::int64_t>(n) * k);
}

constexpr int kChunk8 = 512;  // elements of k one warp covers per load (32 lanes × 16 e4m3)

// CUDA cores, R rows × C columns per warp as grouped_gemm_kernel; each lane loads 16 e4m3
// weights of each of its C columns per chunk (one 128-wide scale block: 16 divides 128 and
// every lane starts at a multiple of 16), sums their products with its R rows in fp32 and adds
// the sum times the block's scale.
template <int R, int C>
__global__ void __launch_bounds__(kWarps * 32)
    grouped_gemm_fp8_kernel(const GroupedGemmArgs a, const bf16* __restrict__ x,
                            bf16* __restrict__ y) {
  constexpr int V = R * C;
  static_assert(V <= 32 && (V & (V - 1)) == 0, "R·C must be a power of two ≤ 32");
  const int g = blockIdx.y;
  const int row0 = a.row_offset[g];
  const int rows = a.row_offset[g + 1] - row0;
  const int lane = threadIdx.x & 31;
  const int col0 = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * C;
  if (col0 >= a.n) return;
  const int k = a.k;
  const int kblocks = (k + kFp8ScaleBlock - 1) / kFp8ScaleBlock;
  const uint8_t* wg = static_cast<const uint8_t*>(a.w_base) + a.w_offset[g];
  const float* srow = fp8_scales(wg, a.n, k) + (col0 / kFp8ScaleBlock) * kblocks;
  const uint8_t* w = wg + static_cast<std::int64_t>(col0) * k;
  for (int r0 = 0; r0 < rows; r0 += R) {
    const int nr = min(R, rows - r0);
    const bf16* xg = x + static_cast<std::int64_t>(row0 + r0) * k;
    float acc[V];
#pragma unroll
    for (int i = 0; i < V; ++i) acc[i] = 0.f;
    for (int kk = lane * 16; kk < k; kk += kChunk8) {
      float wf[C][16];
#pragma unroll
      for (int c = 0; c < C; ++c) {
        const uint4 wv = col0 + c < a.n
                             ? __ldcs(reinterpret_cast<const uint4*>(w + static_cast<std::int64_t>(c) * k + kk))
                             : make_uint4(0, 0, 0, 0);
        uint4 b0, b1;  // the 16 weights as bf16
        fp8x4_to_bf16x2(wv.x, b0.x, b0.y);
        fp8x4_to_bf16x2(wv.y, b0.z, b0.w);
        fp8x4_to_bf16x2(wv.z, b1.x, b1.y);
        fp8x4_to_bf16x2(wv.w, b1.z, b1.w);
        detail::unpack8(b0, *reinterpret_cast<float(*)[8]>(&wf[c][0]));
        detail::unpack8(b1, *reinterpret_cast<float(*)[8]>(&wf[c][8]));
      }
      const float sc = __ldg(srow + kk / kFp8ScaleBlock);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r < nr) {
          float xf[16];
          detail::unpack8(detail::ldg16(xg + static_cast<std::int64_t>(r) * k + kk),
                          *reinterpret_cast<float(*)[8]>(&xf[0]));
          detail::unpack8(detail::ldg16(xg + static_cast<std::int64_t>(r) * k + kk + 8),
                          *reinterpret_cast<float(*)[8]>(&xf[8]));
#pragma unroll
          for (int c = 0; c < C; ++c) {
            float p = 0.f;
#pragma unroll
            for (int i = 0; i < 16; ++i) p = fmaf(wf[c][i], xf[i], p);
            acc[c * R + r] = fmaf(p, sc, acc[c * R + r]);
          }
        }
      }
    }
    warp_reduce_scatter<V>(acc, lane);
    constexpr int kShift = 5 - log2_of<V>();
    const int idx = lane >> kShift;
    const int c = idx / R, r = idx % R;
    if ((lane & ((1 << kShift) - 1)) == 0 && r < nr && col0 + c < a.n) {
      y[static_cast<std::int64_t>(row0 + r0 + r) * a.n + col0 + c] = __float2bfloat16(acc[0]);
    }
  }
}

// Tensor cores, as grouped_gemm_tc_kernel with e4m3 weights: a warp computes 16 output
// columns (inside one 128-row scale block: col0 is a multiple of 16) × 8·NT rows. k runs in
// 128-wide scale blocks of two 64-wide sub-blocks; lane (gi, t) loads 16 e4m3 bytes (k
// [16t, 16t + 16) of the sub-block) of weight rows gi and gi + 8 and 2 × 16 bytes of its token
// row, and mma step s ∈ 0..3 takes elements 4s..4s+3 of those 16 (the same permutation of k
// for A and B). Each scale block's products accumulate in fp32 apart and are added times the
// block's scale.
template <int NT, int KS>
__global__ void __launch_bounds__(256)
    grouped_gemm_fp8_tc_kernel(const GroupedGemmArgs a, const bf16* __restrict__ x,
                               bf16* __restrict__ y) {
  __shared__ float red[KS > 1 ? (KS - 1) * NT * 4 * 32 : 1];
  const int g = blockIdx.y;
  const int row0 = a.row_offset[g];
  const int rows = a.row_offset[g + 1] - row0;
  const int lane = threadIdx.x & 31;
  const int gi = lane >> 2, t = lane & 3;
  const TcTile<KS> tile(a.k);
  const int col0 = tile.col0, k_begin = tile.k_begin, k_end = tile.k_end;
  if (col0 >= a.n) return;  // uniform across the block when KS > 1
  const int k = a.k;
  const int kblocks = (k + kFp8ScaleBlock - 1) / kFp8ScaleBlock;
  const bool lo_ok = col0 + gi < a.n, hi_ok = col0 + gi + 8 < a.n;
  const uint8_t* wg = static_cast<const uint8_t*>(a.w_base) + a.w_offset[g];
  const float* srow = fp8_scales(wg, a.n, k) + (col0 / kFp8ScaleBlock) * kblocks;
  const uint8_t* wlo = wg + static_cast<std::int64_t>(col0 + gi) * k;
  const uint8_t* whi = wlo + static_cast<std::int64_t>(8) * k;
  const uint4 zero = make_uint4(0, 0, 0, 0);
  for (int r0 = 0; r0 < rows; r0 += 8 * NT) {
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    const bf16* xr[NT];
    bool xok[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      const int r = r0 + 8 * j + gi;
      xok[j] = r < rows;
      xr[j] = x + static_cast<std::int64_t>(row0 + (xok[j] ? r : 0)) * k;
    }
    for (int kb = k_begin; kb < k_end; kb += kFp8ScaleBlock) {
      // Both sub-blocks' weights in flight before any is used (4 16-byte loads per lane).
      uint4 wl[2], wh[2];
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int kk = kb + 64 * u + 16 * t;
        const bool in = kk < k_end;  // k % 16 == 0: a lane's 16 elements are all in or all out
        wl[u] = in && lo_ok ? __ldcs(reinterpret_cast<const uint4*>(wlo + kk)) : zero;
        wh[u] = in && hi_ok ? __ldcs(reinterpret_cast<const uint4*>(whi + kk)) : zero;
      }
      const float sc = __ldg(srow + kb / kFp8ScaleBlock);
      float part[NT][4];
#pragma unroll
      for (int j = 0; j < NT; ++j) part[j][0] = part[j][1] = part[j][2] = part[j][3] = 0.f;
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int kk = kb + 64 * u + 16 * t;
        if (kb + 64 * u >= k_end) break;
        const uint32_t wlw[4] = {wl[u].x, wl[u].y, wl[u].z, wl[u].w};
        const uint32_t whw[4] = {wh[u].x, wh[u].y, wh[u].z, wh[u].w};
        uint32_t a0[4], a1[4], a2[4], a3[4];
#pragma unroll
        for (int s = 0; s < 4; ++s) {
          fp8x4_to_bf16x2(wlw[s], a0[s], a2[s]);
          fp8x4_to_bf16x2(whw[s], a1[s], a3[s]);
        }
#pragma unroll
        for (int j = 0; j < NT; ++j) {
          const bool ok = xok[j] && kk < k_end;
          const uint4 xa = ok ? detail::ldg16(xr[j] + kk) : zero;
          const uint4 xb = ok ? detail::ldg16(xr[j] + kk + 8) : zero;
          mma_bf16_16816(part[j], a0[0], a1[0], a2[0], a3[0], xa.x, xa.y);
          mma_bf16_16816(part[j], a0[1], a1[1], a2[1], a3[1], xa.z, xa.w);
          mma_bf16_16816(part[j], a0[2], a1[2], a2[2], a3[2], xb.x, xb.y);
          mma_bf16_16816(part[j], a0[3], a1[3], a2[3], a3[3], xb.z, xb.w);
        }
      }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[j][e] = fmaf(part[j][e], sc, acc[j][e]);
      }
    }
    tc_store<NT, KS>(acc, red, r0, rows, row0, col0, a.n, y);
  }
}

// Multiprocessors of the current device (cached per device).
int sm_count() {
  static std::atomic<int> per_device[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 132;
  int n = per_device[dev].load(std::memory_order_relaxed);
  if (n == 0) {
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) {
      n = 132;
    }
    per_device[dev].store(n, std::memory_order_relaxed);
  }
  return n;
}

// Warps per column tile: 1 (4 tiles per block) unless the launch would have fewer than two
// blocks per multiprocessor and k holds at least 8 blocks of 128, then kSplitK warps split k.
constexpr int kSplitK = 8;

template <int NT, int KS>
Status launch_tc_ks(const GroupedGemmArgs& c, const bf16* x, bf16* y, cudaStream_t stream) {
  const int cols_per_block = KS == 1 ? kWarps * 16 : 16;
  const int threads = KS == 1 ? kWarps * 32 : KS * 32;
  const dim3 grid((c.n + cols_per_block - 1) / cols_per_block, c.groups);
  if (c.format == WeightFormat::kFP8Block) {
    grouped_gemm_fp8_tc_kernel<NT, KS><<<grid, threads, 0, stream>>>(c, x, y);
  } else {
    grouped_gemm_tc_kernel<NT, KS><<<grid, threads, 0, stream>>>(c, x, y);
  }
  return detail::launch_status();
}

template <int NT>
Status launch_tc(const GroupedGemmArgs& c, const bf16* x, bf16* y, cudaStream_t stream) {
  const std::int64_t blocks = (c.n + kWarps * 16 - 1) / (kWarps * 16) * std::int64_t{c.groups};
  if (blocks < 2 * sm_count() && c.k >= kSplitK * 128) {
    return launch_tc_ks<NT, kSplitK>(c, x, y, stream);
  }
  return launch_tc_ks<NT, 1>(c, x, y, stream);
}

template <int R, int C>
Status launch(const GroupedGemmArgs& c, const bf16* x, bf16* y, cudaStream_t stream) {
  const int cols_per_block = kWarps * C;
  const dim3 grid((c.n + cols_per_block - 1) / cols_per_block, c.groups);
  if (c.format == WeightFormat::kFP8Block) {
    grouped_gemm_fp8_kernel<R, C><<<grid, kWarps * 32, 0, stream>>>(c, x, y);
  } else {
    grouped_gemm_kernel<R, C><<<grid, kWarps * 32, 0, stream>>>(c, x, y);
  }
  return detail::launch_status();
}

}  // namespace

int grouped_gemm_max_rows(std::int64_t n, std::int64_t k) {
  return n * k * static_cast<std::int64_t>(sizeof(bf16)) <= kGroupedGemmSmallExpertBytes ? 64 : 2;
}

bool grouped_gemm_preferred(int max_rows, std::int64_t n, std::int64_t k) {
  return max_rows <= grouped_gemm_max_rows(n, k);
}

Status launch_grouped_gemm(const GroupedGemmArgs& a, const bf16* x, bf16* y, cudaStream_t stream) {
  const bool fp8 = a.format == WeightFormat::kFP8Block;
  if (a.format != WeightFormat::kBF16 && !fp8) return Status::kInvalidArgument;
  // Offsets that keep every 16-byte load aligned: 8 bf16 elements or 16 e4m3 bytes.
  const int align = fp8 ? 16 : 8;
  if (a.groups < 0 || a.groups > kGroupedGemmMaxGroups || a.n <= 0 || a.k <= 0 ||
      a.k % align != 0 || !a.w_base || !x || !y || !detail::aligned16(a.w_base) ||
      !detail::aligned16(x)) {
    return Status::kInvalidArgument;
  }
  // Compact to the groups that have rows (an idle expert costs no block at all) and find
  // the largest group, which picks the rows kept in registers per pass.
  GroupedGemmArgs c;
  c.w_base = a.w_base;
  c.format = a.format;
  c.n = a.n;
  c.k = a.k;
  int max_rows = 0;
  for (int g = 0; g < a.groups; ++g) {
    const int rows = a.row_offset[g + 1] - a.row_offset[g];
    if (rows < 0 || a.w_offset[g] < 0 || a.w_offset[g] % align != 0) {
      return Status::kInvalidArgument;
    }
    if (rows == 0) continue;
    c.w_offset[c.groups] = a.w_offset[g];
    c.row_offset[c.groups] = a.row_offset[g];
    c.row_offset[c.groups + 1] = a.row_offset[g + 1];
    ++c.groups;
    max_rows = std::max(max_rows, rows);
  }
  if (c.groups == 0) return Status::kOk;
  // 1-2 rows: CUDA cores (at the copy bandwidth, H100: 101-105%); more: tensor cores, whose
  // 8-row tiles cost nothing extra in a weight-bound launch.
  if (c.format == WeightFormat::kFP8Block) {
    // FP8: CUDA cores for one row when every lane has 16 weights in every 512-wide chunk
    // (H100: 100-105% of copy); otherwise tensor cores (two CUDA-core rows, or k = 768, left
    // lanes idle or decoded twice: 57-79%).
    if (max_rows == 1 && c.k % kChunk8 == 0) return launch<1, 4>(c, x, y, stream);
  } else {
    if (max_rows == 1) return launch<1, 4>(c, x, y, stream);
    if (max_rows == 2) return launch<2, 4>(c, x, y, stream);
  }
  if (max_rows <= 8) return launch_tc<1>(c, x, y, stream);
  if (max_rows <= 16) return launch_tc<2>(c, x, y, stream);
  // FP8 launches also carry the attention projections (one group of every token of the
  // batch): a 64-row tile halves their weight passes from 33 rows.
  if (c.format == WeightFormat::kFP8Block && max_rows > 32) return launch_tc<8>(c, x, y, stream);
  return launch_tc<4>(c, x, y, stream);
}

}  // namespace masep::kernels
