// Split-KV decode attention (flash-decoding) for bf16 caches; see attention.hpp.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <stdexcept>
#include <string>

#include <cooperative_groups.h>

#include "common.cuh"
#include "masep/kernels/attention.hpp"
#include "masep/kernels/attention_experiment.hpp"

namespace masep::kernels {
namespace {

using detail::ldg16;
using detail::unpack8;

constexpr int kWarpsPerBlock = 4;
constexpr float kLog2e = 1.4426950408889634f;

// Programmatic dependent launch (sm_90): the split kernels let the reduce kernel launch
// while they run; the reduce kernel waits for their completion (and memory) before reading
// the workspace. No-ops on sm_80 and when the reduce is launched without the attribute.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
// Global timer in ns (diagnostic stamps).
__device__ __forceinline__ std::uint64_t globaltimer_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// Four floats times `scale` as four bf16 in one 8-byte store (p 8-byte aligned).
__device__ __forceinline__ void store_bf16x4(bf16* p, float4 v, float scale) {
  const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x * scale, v.y * scale);
  const __nv_bfloat162 hi = __floats2bfloat162_rn(v.z * scale, v.w * scale);
  uint2 u;
  u.x = *reinterpret_cast<const unsigned*>(&lo);
  u.y = *reinterpret_cast<const unsigned*>(&hi);
  *reinterpret_cast<uint2*>(p) = u;
}
// A relaxed, gpu-scope load: may race with a write of the predecessor kernel before the
// programmatic wait (used for a prefetch hint only); never cached in L1.
__device__ __forceinline__ int ld_relaxed_gpu(const std::int32_t* p) {
  int v;
  asm volatile("ld.relaxed.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
// Bulk prefetch of `bytes` (multiple of 16, 16-byte aligned) into L2 (sm_90; no-op below).
__device__ __forceinline__ void prefetch_l2_bulk(const void* p, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(bytes) : "memory");
#endif
}

// Split cluster barrier (sm_90): arrive (release: this thread's earlier writes, DSMEM
// included, become visible to the threads that complete the matching wait) and wait
// (acquire). Each thread alternates arrive and wait; a block may exit after its last arrive.
__device__ __forceinline__ __attribute__((unused)) void cluster_arrive_release() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_arrive_relaxed() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait_acquire() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}

// mbarrier and remote asynchronous stores (sm_90; never executed below): rank 1 of a pair
// sends its partial into rank 0's shared memory with st.async, each store counting its bytes
// on an mbarrier there; rank 0 waits on that mbarrier alone (no cluster barrier round trip).
// Addresses are 32-bit shared-window addresses.
__device__ __forceinline__ void mbar_init_expect(unsigned bar, unsigned bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "mbarrier.init.shared::cta.b64 [%0], 1;\n"
      "mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n"
      "fence.mbarrier_init.release.cluster;\n" ::"r"(bar),
      "r"(bytes)
      : "memory");
#endif
}
__device__ __forceinline__ void mbar_wait_parity(unsigned bar, unsigned parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n.reg .pred p;\nMASEP_MBAR_WAIT_%=:\n"
      "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra MASEP_MBAR_WAIT_%=;\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
#endif
}
__device__ __forceinline__ unsigned mapa_shared(unsigned addr, unsigned rank) {
  unsigned r = addr;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(addr), "r"(rank));
#endif
  return r;
}
__device__ __forceinline__ void st_async_v4(unsigned addr, float4 v, unsigned bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, "
      "[%5];" ::"r"(addr),
      "r"(__float_as_uint(v.x)), "r"(__float_as_uint(v.y)), "r"(__float_as_uint(v.z)),
      "r"(__float_as_uint(v.w)), "r"(bar)
      : "memory");
#endif
}
__device__ __forceinline__ void st_async_f32(unsigned addr, float v, unsigned bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];" ::"r"(addr),
      "r"(__float_as_uint(v)), "r"(bar)
      : "memory");
#endif
}

// Address of `p` in the shared memory of cluster block `rank` (sm_90; p itself below).
template <class T>
__device__ __forceinline__ T* dsmem_of_rank(T* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().map_shared_rank(p, rank);
#else
  (void)rank;
  return p;
#endif
}

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
  // Tensor-core kernel with one split: write the normalised output (and lse) directly and
  // skip the reduce kernel. Null: write the workspace.
  bf16* direct_out;
  float* direct_lse;
  // Tensor-core kernel, num_splits > 1, fused_merge: counters [batch][kv_head][subgroup] in
  // the workspace header (zero between launches); the last block of each group to finish
  // merges the splits into merge_out/merge_lse. Null: the reduce kernel merges.
  unsigned* merge_counters;
  bf16* merge_out;
  float* merge_lse;
  // Tensor-core kernel, dynamic_splits: tile counters [batch][kv_head][subgroup] in the
  // workspace header (zero between launches). Null: static splits.
  unsigned* tile_counters;
  // Tensor-core kernel: tiles of K/V prefetched into L2 at block start (before the
  // programmatic wait), 0 = none; trace stamps (null: none); host side: launch with the
  // programmatic-serialization attribute.
  int prefetch_tiles;
  std::uint64_t* trace;
  bool pdl_launch;
  bool rotate;  // static splits: block i starts at its tile (7 i) mod tiles, then wraps
  bool pair;    // host side: cluster merge, 2 splits, static tiles, >= 4 TB/s card: PAIR kernel
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
  pdl_launch_dependents();
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

// ---- tensor-core split kernel (sm_80+) ------------------------------------------------
// One block of kTcWarps warps per (sequence, kv head, sub-group of up to 16 query heads,
// split). The block streams its split in tiles of kTcTile tokens: all threads copy the K and
// V rows of a tile into shared memory with 16-byte cp.async (zero-filled past the split end;
// the new token's row comes from k_new/v_new), STAGES tiles deep, so the next tiles' loads
// are in flight while the current one is computed. Warp w takes tokens [16w, 16w+16) of each
// tile: S = Q K^T (16 heads x 16 tokens, the group's heads in the rows, padded with zero
// rows) and O += P V with mma.sync m16n8k16 bf16, fp32 accumulators; one online softmax per
// warp; the warps' partials are merged through shared memory at the end and written in the
// same workspace format as the CUDA-core kernel, so the reduce kernel is shared.
// Shared-memory rows are swizzled (16-byte chunk c of token row r stored at chunk c ^ (r & 7))
// so that ldmatrix reads 8 rows without bank conflicts.
constexpr int kTcDefaultWarps = 4;             // warps per block unless block_warps says
constexpr int kTcTile = 16 * kTcDefaultWarps;  // tokens per tile of the default block
static_assert(kTcTile == kDecodeAttentionTileTokens, "attention_config.hpp sizes splits by it");
constexpr int kTcRows = kDecodeAttentionBlockHeads;  // query heads per block (mma M)

using detail::cp_async16;
using detail::cp_async_commit;
using detail::cp_async_wait;
using detail::ldmatrix_x4;
using detail::ldmatrix_x4_trans;
using detail::mma_bf16;
using detail::pack_bf16x2;

template <int HD, int STAGES, int WARPS>
constexpr int tc_smem_bytes() {
  return STAGES * 2 * 16 * WARPS * HD * 2;
}

// PAIR kernel: tiles split 0 copies before the length is known (see the kernel).
constexpr int kPairSpecTiles = 2;

// How the splits of the tensor-core kernel are merged (template argument MODE).
constexpr int kMergeWorkspace = 0;    // workspace partials + reduce kernel (or direct, 1 split)
constexpr int kMergeFused = 1;        // last block of the group merges (atomic counter)
constexpr int kMergeCluster = 2;      // the splits form a cluster and merge through DSMEM (sm_90)
constexpr int kMaxClusterSplits = 8;  // portable cluster size

// FUSED: the in-kernel split merge (a.merge_counters set). A separate instantiation, so the
// default kernel compiles exactly as without it (with the merge tail in the same kernel,
// ptxas gave the head_dim-128 kernel 168 registers and 20 bytes of spills instead of 220 and
// none).
// EXT: the opt-in programmatic wait, L2 prefetch and trace stamps (a separate instantiation,
// so the default kernels compile exactly as without them).
// PAIR (cluster merge, 2 splits, static tiles; chosen on cards with >= 4 TB/s peak memory
// bandwidth, the H200): the new token appended at the start, the first tiles' copies issued
// before Q is loaded, and the pair merge (rank 1 writes its partial into rank 0's shared
// memory and exits; rank 0 merges alone). A separate instantiation, so the other kernels
// compile exactly as before it (measured on the H200 only, docs/kernels.md).
template <int HD, int STAGES, int WARPS, int MODE, bool DYN, bool EXT, bool PAIR = false>
__global__ void __launch_bounds__(WARPS * 32) decode_attention_mma_kernel(const SplitArgs a) {
  constexpr bool FUSED = MODE == kMergeFused;
  constexpr bool CLUSTER = MODE == kMergeCluster;
  constexpr int kTile = 16 * WARPS;           // tokens per tile
  constexpr int kChunks = HD / 8;             // 16-byte chunks per token row
  constexpr int kTileBytes = kTile * HD * 2;  // one of K or V, one stage
  constexpr int kKSteps = HD / 16;            // mma k-steps over head_dim
  constexpr int kNTiles = HD / 8;             // mma n-tiles over head_dim (P.V)
  static_assert(kTcRows * WARPS * (HD + 8) * 4 + 2 * kTcRows * WARPS * 4 +
                        (CLUSTER ? kTcRows * HD * 4 + 2 * kTcRows * 4 : 0) <=
                    tc_smem_bytes<HD, STAGES, WARPS>(),
                "merge buffers must fit in the pipeline's shared memory");
  extern __shared__ __align__(128) unsigned char smem[];
  const unsigned smem_base = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  pdl_launch_dependents();
  const int warp = threadIdx.x >> 5;
  const int lane = threadIdx.x & 31;

  int item = blockIdx.x;
  const int s = item % a.splits;
  item /= a.splits;
  const int sg = item % a.subgroups;
  item /= a.subgroups;
  const int kvh = item % a.num_kv_heads;
  const int b = item / a.num_kv_heads;
  if (b >= a.batch) return;

  const int group = a.num_heads / a.num_kv_heads;
  const int head0 = kvh * group + sg * kTcRows;
  const int rows = min(kTcRows, group - sg * kTcRows);

  const bool append = a.k_new != nullptr;
  if constexpr (EXT && !DYN) {
    if (a.trace != nullptr && threadIdx.x == 0) a.trace[8 * blockIdx.x] = globaltimer_ns();
    // L2 prefetch of this block's first tiles, before the programmatic wait: the length read
    // here may be stale (the predecessor may still be writing it); it only steers a prefetch
    // hint, clamped to the cache, so results do not depend on it. Lane i takes tile i.
    if (a.prefetch_tiles > 0 && warp == 0 && lane < a.prefetch_tiles) {
      const int sl = min(max(ld_relaxed_gpu(a.kv_lens + b) + (append ? 1 : 0), 0), a.max_kv_len);
      const int sc = ((sl + a.splits - 1) / a.splits + kTile - 1) / kTile * kTile;
      const int st = min(sl, s * sc);
      const int en = min(sl, st + sc);
      const int t0 = st + lane * kTile;
      if (t0 < en) {
        const std::int64_t off = ((static_cast<std::int64_t>(b) * a.num_kv_heads + kvh) *
                                      static_cast<std::int64_t>(a.max_kv_len) +
                                  t0) *
                                 HD;
        const unsigned bytes = static_cast<unsigned>(min(kTile, en - t0)) * HD * 2;
        prefetch_l2_bulk(a.k_cache + off, bytes);
        prefetch_l2_bulk(a.v_cache + off, bytes);
      }
    }
  }
  int len_old;
  if constexpr (EXT) {
    pdl_wait();  // no-op unless launched as a programmatic dependent
    if (a.trace != nullptr && threadIdx.x == 0) a.trace[8 * blockIdx.x + 1] = globaltimer_ns();
    len_old = __ldcg(a.kv_lens + b);
  } else {
    len_old = a.kv_lens[b];
  }
  // PAIR (plain launch, static tiles), split 0: its first tiles start at token 0 whatever the
  // length, so the copies of its first kSpec tiles (cache rows that exist) are issued before
  // the length arrives, one commit group per tile as in the prologue. They are kept when they
  // are what the prologue would load (all rows below the length, the new token not among
  // them, the tiles inside split 0); otherwise each thread waits for its own copies and the
  // prologue loads the tiles again into the same places (same thread per chunk).
  constexpr int kSpec = STAGES - 1 < kPairSpecTiles ? STAGES - 1 : kPairSpecTiles;
  [[maybe_unused]] bool spec0 = false;
  if constexpr (PAIR && !DYN && !EXT) {
    if (s == 0) {
      const std::int64_t off0 = (static_cast<std::int64_t>(b) * a.num_kv_heads + kvh) *
                                static_cast<std::int64_t>(a.max_kv_len) * HD;
#pragma unroll
      for (int t = 0; t < kSpec; ++t) {
#pragma unroll
        for (int i = 0; i < kTile * kChunks / (WARPS * 32); ++i) {
          const int c = threadIdx.x + i * WARPS * 32;
          const int row = c / kChunks;
          const int ch = c % kChunks;
          const int tok = t * kTile + row;
          const bool valid = tok < a.max_kv_len;
          const std::int64_t off = off0 + static_cast<std::int64_t>(valid ? tok : 0) * HD + ch * 8;
          const unsigned dst =
              smem_base + t * 2 * kTileBytes + row * (HD * 2) + ((ch ^ (row & 7)) << 4);
          cp_async16(dst, a.k_cache + off, valid);
          cp_async16(dst + kTileBytes, a.v_cache + off, valid);
        }
        cp_async_commit();
      }
      spec0 = true;
    }
  }
  const int len = len_old + (append ? 1 : 0);
  if (len_old < 0 || len > a.max_kv_len || len < 1) {  // full cache: NaN output
    if constexpr (PAIR && !DYN && !EXT) {
      if (spec0) cp_async_wait<0>();  // no copy may land after the block has exited
    }
    // Direct (one split) or fused merge: split 0 writes NaN (all splits of the group see
    // the same length, so none of them touches the merge counter); else the reduce does.
    bf16* nan_out = a.direct_out;
    float* nan_lse = a.direct_lse;
    if constexpr (FUSED || CLUSTER) {
      nan_out = s == 0 ? a.merge_out : nullptr;
      nan_lse = a.merge_lse;
    }
    if (nan_out != nullptr) {
      const std::int64_t row0 = static_cast<std::int64_t>(b) * a.num_heads + head0;
      for (int idx = threadIdx.x; idx < rows * HD; idx += WARPS * 32) {
        nan_out[row0 * HD + idx] = __float2bfloat16(NAN);
        if (nan_lse != nullptr && idx % HD == 0) nan_lse[row0 + idx / HD] = NAN;
      }
    }
    return;
  }
  // Two-split cluster merge: rank 1 writes its partial into rank 0's shared memory at the
  // end, which needs rank 0 to have started (the programming guide's rule before any DSMEM
  // access); this arrive, waited for just before that access, gives it without a stall.
  [[maybe_unused]] const bool pair = PAIR && CLUSTER && a.splits == 2;
  // PAIR: rank 0's mbarrier for rank 1's partial (after the partial's buffers, past the
  // pipeline's), initialised with the bytes rank 1 will send (rows x HD floats, m and l)
  // before the start's arrive, so rank 1 (which waits for that phase before sending) sees it.
  [[maybe_unused]] const unsigned pair_off = STAGES * 2 * kTileBytes + (DYN ? 64 : 0);
  [[maybe_unused]] const unsigned pair_bar =
      smem_base + pair_off + (kTcRows * HD + 2 * kTcRows) * 4;
  if constexpr (CLUSTER) {
    if (pair) {
      if (s == 0 && threadIdx.x == 0) {
        mbar_init_expect(pair_bar, static_cast<unsigned>(rows * (HD + 2) * 4));
      }
      cluster_arrive_relaxed();
    }
  }
  // Split chunks are whole tiles (trailing splits may be empty).
  // Static splits: split s takes tiles [s * chunk, s * chunk + chunk) / kTile.
  const int chunk = ((len + a.splits - 1) / a.splits + kTile - 1) / kTile * kTile;
  const int start = min(len, s * chunk);
  const int end = min(len, start + chunk);
  const int ntiles = (end - start + kTile - 1) / kTile;
  // Dynamic tiles (DYN): the group's blocks claim its tiles from a counter in the workspace
  // header, so a block that streams faster takes more of them. Thread 0 claims STAGES tiles
  // ahead into a ring in shared memory (after the pipeline's buffers); every block stops at
  // its first failed claim, so the group makes exactly total_tiles + splits claims and
  // atomicInc's wrap at that count leaves the counter at zero for the next launch.
  const int total_tiles = (len + kTile - 1) / kTile;
  int* ring = reinterpret_cast<int*>(smem + STAGES * 2 * kTileBytes);
  constexpr int kRing = 8;
  static_assert(kRing >= STAGES + 1, "claim ring too small");
  bool claiming = true;  // thread 0: no failed claim yet
  auto claim = [&]() -> int {
    if (!claiming) return -1;
    const unsigned v = atomicInc(
        a.tile_counters + (static_cast<std::int64_t>(b) * a.num_kv_heads + kvh) * a.subgroups + sg,
        static_cast<unsigned>(total_tiles + a.splits - 1));
    if (v >= static_cast<unsigned>(total_tiles)) {
      claiming = false;
      return -1;
    }
    return static_cast<int>(v) * kTile;
  };
  // First token of the c-th tile this block processes, or -1: no more tiles.
  auto tile_begin = [&](int c) -> int {
    if constexpr (DYN) {
      return ring[c % kRing];
    } else if constexpr (EXT) {
      if (c >= ntiles) return -1;
      const int rot = a.rotate ? static_cast<int>((blockIdx.x * 7u) % ntiles) : 0;
      const int r = c + rot;
      return start + (r >= ntiles ? r - ntiles : r) * kTile;
    } else {
      return c < ntiles ? start + c * kTile : -1;
    }
  };

  const std::int64_t cache_off = (static_cast<std::int64_t>(b) * a.num_kv_heads + kvh) *
                                 static_cast<std::int64_t>(a.max_kv_len) * HD;
  const bf16* kbase = a.k_cache + cache_off;
  const bf16* vbase = a.v_cache + cache_off;
  const std::int64_t new_off = b * a.kv_new_stride + kvh * HD;
  const bf16* knew = append ? a.k_new + new_off : kbase;
  const bf16* vnew = append ? a.v_new + new_off : vbase;

  auto load_tile = [&](int stage, int t_begin) {
    const unsigned ks = smem_base + stage * 2 * kTileBytes;
    const unsigned vs = ks + kTileBytes;
#pragma unroll
    for (int i = 0; i < kTile * kChunks / (WARPS * 32); ++i) {
      const int c = threadIdx.x + i * WARPS * 32;
      const int row = c / kChunks;
      const int ch = c % kChunks;
      const int t = t_begin + row;
      const bool valid = t < len;  // tiles never cross a split end below len
      const bool is_new = append && t == len_old;
      const std::int64_t off = static_cast<std::int64_t>(valid ? t : 0) * HD + ch * 8;
      const bf16* kp = is_new ? knew + ch * 8 : kbase + off;
      const bf16* vp = is_new ? vnew + ch * 8 : vbase + off;
      const unsigned dst = row * (HD * 2) + ((ch ^ (row & 7)) << 4);
      cp_async16(ks + dst, kp, valid);
      cp_async16(vs + dst, vp, valid);
    }
  };

  // PAIR: the first tiles' copies are issued before anything that does not feed them (the
  // new token's copy, Q), so the DRAM starts as early as the length allows.
  const int g = lane >> 2;
  const int t4 = lane & 3;
  // Q as mma A fragments (rows = query heads, zero past the group), kept in registers.
  unsigned qa[kKSteps][4];
  auto load_q = [&]() {
    const bf16* q0 = a.q + b * a.q_stride + static_cast<std::int64_t>(head0 + g) * HD + 2 * t4;
    const bf16* q1 = q0 + 8 * HD;
    const bool ok0 = g < rows;
    const bool ok1 = g + 8 < rows;
#pragma unroll
    for (int k = 0; k < kKSteps; ++k) {
      qa[k][0] = ok0 ? __ldg(reinterpret_cast<const unsigned*>(q0 + k * 16)) : 0u;
      qa[k][1] = ok1 ? __ldg(reinterpret_cast<const unsigned*>(q1 + k * 16)) : 0u;
      qa[k][2] = ok0 ? __ldg(reinterpret_cast<const unsigned*>(q0 + k * 16 + 8)) : 0u;
      qa[k][3] = ok1 ? __ldg(reinterpret_cast<const unsigned*>(q1 + k * 16 + 8)) : 0u;
    }
  };
  if constexpr (!PAIR) load_q();

  float o[kNTiles][4];
#pragma unroll
  for (int n = 0; n < kNTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY;  // rows g and g + 8, log2 domain
  float l0 = 0.f, l1 = 0.f;              // this thread's part of the row sums

  if constexpr (DYN) {
    if (threadIdx.x == 0) {
      for (int c = 0; c < STAGES; ++c) ring[c] = claim();
    }
    __syncthreads();
  }
  // PAIR (static splits): the block whose split holds slot len_old (sub-group 0) appends the
  // new token at the start: its loads are issued here, the stores after the prologue's
  // copies. No block of this launch reads that slot from the cache (tiles take it from
  // k_new/v_new). Otherwise it is appended after the loop.
  [[maybe_unused]] uint4 new_row{};
  [[maybe_unused]] bool new_row_mine = false;
  if constexpr (PAIR && !DYN) {
    if (append && sg == 0 && len_old >= start && len_old < end && threadIdx.x < 2 * kChunks) {
      const int ch = threadIdx.x % kChunks;
      new_row = ldg16((threadIdx.x < kChunks ? knew : vnew) + ch * 8);
      new_row_mine = true;
    }
  }
#pragma unroll
  for (int i = 0; i < STAGES - 1; ++i) {
    const int tb = tile_begin(i);
    if constexpr (PAIR && !DYN && !EXT) {
      if (i < kSpec && spec0) {
        // Split 0's first kSpec tiles are in flight: kept iff split 0 has them, every row is
        // below the length and none is the new token (which comes from k_new/v_new); else
        // loaded again.
        if (len_old >= kSpec * kTile && ntiles >= kSpec) continue;  // committed at the start
        if (i == 0) cp_async_wait<0>();
      }
    }
    if (tb >= 0) load_tile(i, tb);
    cp_async_commit();
  }
  if constexpr (PAIR && !DYN) {
    if (new_row_mine) {
      const int ch = threadIdx.x % kChunks;
      const std::int64_t at = cache_off + static_cast<std::int64_t>(len_old) * HD + ch * 8;
      *reinterpret_cast<uint4*>((threadIdx.x < kChunks ? a.k_cache : a.v_cache) + at) = new_row;
    }
  }
  if constexpr (PAIR) load_q();
  bool holds_new = false;  // this block processed the tile holding slot len_old
  for (int it = 0;; ++it) {
    const int tb = tile_begin(it);
    if (tb < 0) break;  // uniform: the ring entry was written before an earlier barrier
    holds_new = holds_new || (len_old >= tb && len_old < tb + kTile);
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // tile `it` visible to all; everyone is done with tile it - 1
    if constexpr (EXT) {
      if (it == 0 && a.trace != nullptr && threadIdx.x == 0) {
        a.trace[8 * blockIdx.x + 2] = globaltimer_ns();
      }
    }
    if constexpr (DYN) {
      if (threadIdx.x == 0) ring[(it + STAGES) % kRing] = claim();
    }
    {
      const int nx = it + STAGES - 1;
      const int nb = tile_begin(nx);
      if (nb >= 0) load_tile(nx % STAGES, nb);
      cp_async_commit();
    }
    const unsigned ks = smem_base + (it % STAGES) * 2 * kTileBytes;
    const unsigned vs = ks + kTileBytes;
    const int tok_base = warp * 16;  // this warp's 16 tokens within the tile

    // S = Q K^T: two n-tiles of 8 tokens.
    float sc[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
      const int row = tok_base + nt * 8 + (lane & 7);
#pragma unroll
      for (int kp = 0; kp < kKSteps / 2; ++kp) {
        const int ch = kp * 4 + (lane >> 3);
        unsigned r[4];
        ldmatrix_x4(r, ks + row * (HD * 2) + ((ch ^ (row & 7)) << 4));
        mma_bf16(sc[nt], qa[2 * kp], r[0], r[1]);
        mma_bf16(sc[nt], qa[2 * kp + 1], r[2], r[3]);
      }
    }
    // Scale, mask, online softmax (rows g and g + 8; a row's 16 tokens sit in one quad).
    const int t_first = tb + tok_base + 2 * t4;
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const bool valid = t_first + nt * 8 + j < len;
        sc[nt][j] = valid ? sc[nt][j] * a.scale_log2 : -INFINITY;
        sc[nt][2 + j] = valid ? sc[nt][2 + j] * a.scale_log2 : -INFINITY;
        mx0 = fmaxf(mx0, sc[nt][j]);
        mx1 = fmaxf(mx1, sc[nt][2 + j]);
      }
    }
#pragma unroll
    for (int o2 = 1; o2 <= 2; o2 <<= 1) {
      mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o2));
    }
    const float mn0 = fmaxf(m0, mx0);
    const float mn1 = fmaxf(m1, mx1);
    const float ref0 = mn0 == -INFINITY ? 0.f : mn0;  // all masked so far: exp2 gives 0
    const float ref1 = mn1 == -INFINITY ? 0.f : mn1;
    const float al0 = exp2f(m0 - ref0);
    const float al1 = exp2f(m1 - ref1);
    m0 = mn0;
    m1 = mn1;
    float p[2][4];
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      p[nt][0] = exp2f(sc[nt][0] - ref0);
      p[nt][1] = exp2f(sc[nt][1] - ref0);
      p[nt][2] = exp2f(sc[nt][2] - ref1);
      p[nt][3] = exp2f(sc[nt][3] - ref1);
    }
    l0 = l0 * al0 + (p[0][0] + p[0][1] + p[1][0] + p[1][1]);
    l1 = l1 * al1 + (p[0][2] + p[0][3] + p[1][2] + p[1][3]);
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) {
      o[n][0] *= al0;
      o[n][1] *= al0;
      o[n][2] *= al1;
      o[n][3] *= al1;
    }
    // P as the A fragment of P V (the S accumulator layout is the A layout).
    const unsigned pa[4] = {pack_bf16x2(p[0][0], p[0][1]), pack_bf16x2(p[0][2], p[0][3]),
                            pack_bf16x2(p[1][0], p[1][1]), pack_bf16x2(p[1][2], p[1][3])};
    {
      const int mi = lane >> 3;
      const int row = tok_base + (mi & 1) * 8 + (lane & 7);
#pragma unroll
      for (int np = 0; np < kNTiles / 2; ++np) {
        const int ch = 2 * np + (mi >> 1);
        unsigned r[4];
        ldmatrix_x4_trans(r, vs + row * (HD * 2) + ((ch ^ (row & 7)) << 4));
        mma_bf16(o[2 * np], pa, r[0], r[1]);
        mma_bf16(o[2 * np + 1], pa, r[2], r[3]);
      }
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // pipeline buffers free for the merge
  [[maybe_unused]] long long clk3 =
      0;  // EXT: SM clock at stamp 3 (sub-phase cycles in stamps 5..7)
  if constexpr (EXT) {
    if (a.trace != nullptr && threadIdx.x == 0) a.trace[8 * blockIdx.x + 3] = globaltimer_ns();
    clk3 = clock64();
  }

  // Append the new token: exactly one block (the split holding slot len_old, sub-group 0);
  // PAIR with static splits appended it at the start.
  if ((DYN || !PAIR) && append && sg == 0 && holds_new) {
    const std::int64_t at = cache_off + static_cast<std::int64_t>(len_old) * HD;
    for (int c = threadIdx.x; c < 2 * kChunks; c += WARPS * 32) {
      const int ch = c % kChunks;
      if (c < kChunks) {
        *reinterpret_cast<uint4*>(a.k_cache + at + ch * 8) = ldg16(knew + ch * 8);
      } else {
        *reinterpret_cast<uint4*>(a.v_cache + at + ch * 8) = ldg16(vnew + ch * 8);
      }
    }
  }

  // Merge the warps' partials through shared memory. Only the group's real rows are stored
  // (Mixtral fills 4 of the 16 mma rows), with a padded row stride (HD + 8 floats) so the 8
  // rows of one float2 store fall on different banks (with HD floats they all hit the same 8).
#pragma unroll
  for (int o2 = 1; o2 <= 2; o2 <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, o2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, o2);
  }
  constexpr int kSo = HD + 8;                    // row stride of sm_o (floats)
  constexpr int kQuads = HD / 4;                 // float4 items per row
  float* sm_o = reinterpret_cast<float*>(smem);  // [warp][16 rows][kSo]
  float* sm_m = sm_o + WARPS * kTcRows * kSo;    // [warp][16 rows]
  float* sm_l = sm_m + WARPS * kTcRows;          // [warp][16 rows]
  float* part_o = sm_l + WARPS * kTcRows;        // CLUSTER: [16 rows][HD], the block's partial
  float* part_m = part_o + kTcRows * HD;         // CLUSTER: [16 rows]
  float* part_l = part_m + kTcRows;              // CLUSTER: [16 rows]
  // Two-split cluster: rank 1's partial, written by rank 1 into rank 0's shared memory past
  // the pipeline's buffers (free while rank 0 still streams). [16 rows][HD], m[16], l[16].
  float* pair_o = reinterpret_cast<float*>(smem + STAGES * 2 * kTileBytes + (DYN ? 64 : 0));
  float* pair_m = pair_o + kTcRows * HD;
  float* pair_l = pair_m + kTcRows;
  {
    float* w0 = sm_o + (warp * kTcRows + g) * kSo + 2 * t4;
    float* w1 = w0 + 8 * kSo;
    if (g < rows) {
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        *reinterpret_cast<float2*>(w0 + n * 8) = make_float2(o[n][0], o[n][1]);
      }
    }
    if (g + 8 < rows) {
#pragma unroll
      for (int n = 0; n < kNTiles; ++n) {
        *reinterpret_cast<float2*>(w1 + n * 8) = make_float2(o[n][2], o[n][3]);
      }
    }
    if (t4 == 0) {
      sm_m[warp * kTcRows + g] = m0;
      sm_m[warp * kTcRows + g + 8] = m1;
      sm_l[warp * kTcRows + g] = l0;
      sm_l[warp * kTcRows + g + 8] = l1;
    }
  }
  __syncthreads();
  // Rank 1 of a pair sends into rank 0's shared memory: rank 0 must have started and
  // initialised its mbarrier (its arrive at the start; long since done).
  [[maybe_unused]] unsigned remote_o = 0;
  [[maybe_unused]] unsigned remote_bar = 0;
  if constexpr (CLUSTER) {
    if (pair && s == 1) {
      cluster_wait_acquire();
      remote_o = mapa_shared(smem_base + pair_off, 0);
      remote_bar = mapa_shared(pair_bar, 0);
    }
  }
  [[maybe_unused]] bool pair_ready = false;  // rank 0: rank 1's partial has arrived
  // One float4 of one row per thread and step: every warp's value loaded before any is used.
  for (int idx = threadIdx.x; idx < rows * kQuads; idx += WARPS * 32) {
    const int r = idx / kQuads;
    const int d = (idx % kQuads) * 4;
    float mw[WARPS];
    float lw[WARPS];
    float4 ow[WARPS];
#pragma unroll
    for (int w = 0; w < WARPS; ++w) {
      mw[w] = sm_m[w * kTcRows + r];
      lw[w] = sm_l[w * kTcRows + r];
      ow[w] = *reinterpret_cast<const float4*>(sm_o + (w * kTcRows + r) * kSo + d);
    }
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) mx = fmaxf(mx, mw[w]);
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    float L = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) {
      const float f = mw[w] == -INFINITY ? 0.f : exp2f(mw[w] - mx);
      acc.x += ow[w].x * f;
      acc.y += ow[w].y * f;
      acc.z += ow[w].z * f;
      acc.w += ow[w].w * f;
      L += lw[w] * f;
    }
    if constexpr (CLUSTER) {
      if (pair) {
        if (s == 1) {
          // Into rank 0's pair_o / pair_m / pair_l, counted on its mbarrier.
          st_async_v4(remote_o + (r * HD + d) * 4, acc, remote_bar);
          if (d == 0) {
            st_async_f32(remote_o + (kTcRows * HD + r) * 4, mx, remote_bar);
            st_async_f32(remote_o + (kTcRows * HD + kTcRows + r) * 4, L, remote_bar);
          }
          continue;
        }
        // Rank 0: wait for rank 1's partial, merge it with this block's (in registers) and
        // write the output.
        if (!pair_ready) {
          if constexpr (EXT) {
            if (a.trace != nullptr && threadIdx.x == 0) {
              a.trace[8 * blockIdx.x + 5] = clock64() - clk3;
            }
          }
          mbar_wait_parity(pair_bar, 0);
          pair_ready = true;
          if constexpr (EXT) {
            if (a.trace != nullptr && threadIdx.x == 0) {
              a.trace[8 * blockIdx.x + 6] = clock64() - clk3;
            }
          }
        }
        const float mb = pair_m[r];
        const float lb = pair_l[r];
        const float4 ob = *reinterpret_cast<const float4*>(pair_o + r * HD + d);
        const float mt = fmaxf(mx, mb);
        const float fa = mx == -INFINITY ? 0.f : exp2f(mx - mt);
        const float fb = mb == -INFINITY ? 0.f : exp2f(mb - mt);
        const float4 o2 = make_float4(acc.x * fa + ob.x * fb, acc.y * fa + ob.y * fb,
                                      acc.z * fa + ob.z * fb, acc.w * fa + ob.w * fb);
        const float L2 = L * fa + lb * fb;
        const std::int64_t hrow = static_cast<std::int64_t>(b) * a.num_heads + head0 + r;
        store_bf16x4(a.merge_out + hrow * HD + d, o2, 1.f / L2);
        if (a.merge_lse != nullptr && d == 0) a.merge_lse[hrow] = (mt + log2f(L2)) / kLog2e;
        continue;
      }
      // This block's partial, read by the cluster's blocks below.
      *reinterpret_cast<float4*>(part_o + r * HD + d) = acc;
      if (d == 0) {
        part_m[r] = mx;
        part_l[r] = L;
      }
      continue;
    }
    if (a.direct_out != nullptr) {  // one split: this is the whole softmax
      const std::int64_t row = static_cast<std::int64_t>(b) * a.num_heads + head0 + r;
      const float inv = 1.f / L;
      store_bf16x4(a.direct_out + row * HD + d, acc, inv);
      if (a.direct_lse != nullptr && d == 0) a.direct_lse[row] = (mx + log2f(L)) / kLog2e;
      continue;
    }
    const std::int64_t row =
        (static_cast<std::int64_t>(b) * a.num_heads + head0 + r) * a.splits + s;
    *reinterpret_cast<float4*>(a.ws_acc + row * HD + d) = acc;
    if (d == 0) {
      a.ws_m[row] = mx;
      a.ws_l[row] = L;
    }
  }
  if constexpr (CLUSTER) {
    // Cluster merge (sm_90): the splits of this (sequence, kv head, sub-group) are the blocks
    // of one thread-block cluster (rank = split). After the barrier every block merges a
    // contiguous 1/splits share of the rows x HD/4 float4 items, reading all blocks' partials
    // through distributed shared memory, all ranks' loads issued before any is used; the
    // second barrier keeps each block's shared memory alive until the others have read it.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (pair) {
      // Two splits: rank 1 has sent its partial into rank 0's shared memory (st.async, counted
      // on rank 0's mbarrier) and exits; rank 0 has merged both partials above and exits.
      if constexpr (EXT) {
        if (a.trace != nullptr && threadIdx.x == 0) {
          if (s == 1) {
            a.trace[8 * blockIdx.x + 5] = 0;
            a.trace[8 * blockIdx.x + 6] = 0;
            a.trace[8 * blockIdx.x + 7] = 0;
          } else {
            a.trace[8 * blockIdx.x + 7] = clock64() - clk3;
          }
          a.trace[8 * blockIdx.x + 4] = globaltimer_ns();
        }
      }
      return;
    }
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    if constexpr (EXT) {
      if (a.trace != nullptr && threadIdx.x == 0) a.trace[8 * blockIdx.x + 5] = clock64() - clk3;
    }
    cluster.sync();
    if constexpr (EXT) {
      if (a.trace != nullptr && threadIdx.x == 0) a.trace[8 * blockIdx.x + 6] = clock64() - clk3;
    }
    const int nsp = static_cast<int>(cluster.num_blocks());
    const int rank = static_cast<int>(cluster.block_rank());
    const int items = rows * kQuads;
    const int share = (items + nsp - 1) / nsp;
    const int i_end = min(items, (rank + 1) * share);
    for (int idx = rank * share + threadIdx.x; idx < i_end; idx += WARPS * 32) {
      const int r = idx / kQuads;
      const int d = (idx % kQuads) * 4;
      float ms[kMaxClusterSplits];
      float ls[kMaxClusterSplits];
      float4 os[kMaxClusterSplits];
#pragma unroll
      for (int j = 0; j < kMaxClusterSplits; ++j) {
        if (j < nsp) {
          ms[j] = *cluster.map_shared_rank(part_m + r, j);
          ls[j] = *cluster.map_shared_rank(part_l + r, j);
          os[j] = *reinterpret_cast<const float4*>(cluster.map_shared_rank(part_o + r * HD + d, j));
        } else {
          ms[j] = -INFINITY;
          ls[j] = 0.f;
          os[j] = make_float4(0.f, 0.f, 0.f, 0.f);
        }
      }
      float mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < kMaxClusterSplits; ++j) mx = fmaxf(mx, ms[j]);
      float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
      float L = 0.f;
#pragma unroll
      for (int j = 0; j < kMaxClusterSplits; ++j) {
        // An empty split has m = -inf, l = 0 and a zero partial: weight 0.
        const float f = ms[j] == -INFINITY ? 0.f : exp2f(ms[j] - mx);
        acc.x += os[j].x * f;
        acc.y += os[j].y * f;
        acc.z += os[j].z * f;
        acc.w += os[j].w * f;
        L += ls[j] * f;
      }
      const std::int64_t hrow = static_cast<std::int64_t>(b) * a.num_heads + head0 + r;
      store_bf16x4(a.merge_out + hrow * HD + d, acc, 1.f / L);
      if (a.merge_lse != nullptr && d == 0) a.merge_lse[hrow] = (mx + log2f(L)) / kLog2e;
    }
    if constexpr (EXT) {
      if (a.trace != nullptr && threadIdx.x == 0) a.trace[8 * blockIdx.x + 7] = clock64() - clk3;
    }
    cluster.sync();
#else
    __trap();  // never launched below sm_90
#endif
  }
  if constexpr (FUSED) {
    // Fused merge: the last block of this (sequence, kv head, sub-group) to arrive merges all
    // splits. Classic threadfence pattern: every thread's partial is made visible device-wide
    // before thread 0 counts the block in; atomicInc wraps the counter back to 0 on the last
    // arrival, so it is zero again for the next launch.
    // The flag lives in the dynamic shared memory (its merge buffers are no longer read after
    // the barrier below): a static __shared__ variable would push the head_dim-64, 3-stage
    // kernel past the 48 KB a launch gets without the opt-in attribute (measured: launch
    // failure).
    unsigned* s_last = reinterpret_cast<unsigned*>(smem);
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      const unsigned prev =
          atomicInc(a.merge_counters +
                        (static_cast<std::int64_t>(b) * a.num_kv_heads + kvh) * a.subgroups + sg,
                    static_cast<unsigned>(a.splits - 1));
      *s_last = prev == static_cast<unsigned>(a.splits - 1) ? 1u : 0u;
    }
    __syncthreads();
    if (*s_last == 0u) return;
    __threadfence();
    for (int idx = threadIdx.x; idx < rows * HD; idx += WARPS * 32) {
      const int r = idx / HD;
      const int d = idx % HD;
      const std::int64_t hrow = static_cast<std::int64_t>(b) * a.num_heads + head0 + r;
      const std::int64_t base = hrow * a.splits;
      float mx = -INFINITY;
      for (int sp = 0; sp < a.splits; ++sp) mx = fmaxf(mx, __ldcg(a.ws_m + base + sp));
      float acc = 0.f, L = 0.f;
      for (int sp = 0; sp < a.splits; ++sp) {
        const float ms = __ldcg(a.ws_m + base + sp);
        if (ms == -INFINITY) continue;
        const float f = exp2f(ms - mx);
        L += __ldcg(a.ws_l + base + sp) * f;
        acc += __ldcg(a.ws_acc + (base + sp) * HD + d) * f;
      }
      a.merge_out[hrow * HD + d] = __float2bfloat16(acc / L);
      if (a.merge_lse != nullptr && d == 0) a.merge_lse[hrow] = (mx + log2f(L)) / kLog2e;
    }
  }
  if constexpr (EXT) {
    if (a.trace != nullptr && threadIdx.x == 0) a.trace[8 * blockIdx.x + 4] = globaltimer_ns();
  }
}

// One warp per (sequence, query head): merges the splits.
template <int HD>
__global__ void decode_attention_reduce_kernel(const float* ws_acc, const float* ws_m,
                                               const float* ws_l, const std::int32_t* kv_lens,
                                               bool append, int max_kv_len, int batch,
                                               int num_heads, int splits, bf16* out, float* lse) {
  constexpr int kPer = HD / 32;
  pdl_wait();
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
// Workspace header: the fused-merge counters, at offset 0 whatever the launch's shape.
constexpr std::size_t kHeaderBytes = (kDecodeAttentionMergeCounters * 4 + 255) / 256 * 256;

// The launch API's params and the measured-and-lost variants in one value (the code below
// reads both by field name).
struct FullParams : DecodeAttentionParams, DecodeAttentionExperiment {};

const char* first_problem(const FullParams& p) {
  if (p.batch <= 0) return "batch must be positive";
  if (p.num_heads <= 0 || p.num_kv_heads <= 0) return "head counts must be positive";
  if (p.num_heads % p.num_kv_heads != 0) return "num_heads must be a multiple of num_kv_heads";
  if (p.head_dim != 64 && p.head_dim != 128) return "head_dim must be 64 or 128";
  if (p.max_kv_len <= 0) return "max_kv_len must be positive";
  if (p.num_splits <= 0) return "num_splits must be positive";
  if (p.kernel_variant < 0 || p.kernel_variant > 2) return "kernel_variant must be 0, 1 or 2";
  if (p.pipeline_stages != 0 && (p.pipeline_stages < 2 || p.pipeline_stages > 4)) {
    return "pipeline_stages must be 0, 2, 3 or 4";
  }
  if (p.block_warps != 0 && p.block_warps != 4 && p.block_warps != 8) {
    return "block_warps must be 0, 4 or 8";
  }
  if (p.block_warps == 8 && p.pipeline_stages == 4) {
    return "block_warps 8 allows pipeline_stages 2 or 3";
  }
  if (p.split_merge < 0 || p.split_merge > 2) return "split_merge must be 0, 1 or 2";
  if (p.programmatic_launch < 0 || p.programmatic_launch > 2) {
    return "programmatic_launch must be 0, 1 or 2";
  }
  if (p.l2_prefetch_tiles < -1 || p.l2_prefetch_tiles > 16) {
    return "l2_prefetch_tiles must be -1 (default) or 0..16";
  }
  if ((p.programmatic_launch == 2 || p.l2_prefetch_tiles > 0 || p.trace != nullptr ||
       p.rotate_tiles) &&
      ((p.pipeline_stages != 0 && p.pipeline_stages != 3) || p.fused_merge || p.dynamic_splits)) {
    return "programmatic_launch, l2_prefetch_tiles, trace and rotate_tiles need "
           "pipeline_stages 0 or 3 and neither fused_merge nor dynamic_splits";
  }
  if (p.dynamic_splits && p.fused_merge) return "dynamic_splits and fused_merge exclude each other";
  if (p.dynamic_splits && p.pipeline_stages != 0 && p.pipeline_stages != 3) {
    return "dynamic_splits needs pipeline_stages 0 or 3";
  }
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

template <int HD, int STAGES, int WARPS, int MODE, bool DYN = false, bool EXT = false,
          bool PAIR = false>
bool launch_mma(const SplitArgs& a, cudaStream_t stream) {
  // DYN: the claim ring (8 ints) after the pipeline's buffers.
  // PAIR: rank 1's partial after them (see the kernel).
  constexpr int kSmem = tc_smem_bytes<HD, STAGES, WARPS>() + (DYN ? 64 : 0) +
                        (PAIR ? kTcRows * HD * 4 + 2 * kTcRows * 4 + 16 : 0);
  auto kernel = decode_attention_mma_kernel<HD, STAGES, WARPS, MODE, DYN, EXT, PAIR>;
  if constexpr (kSmem > 48 * 1024) {
    // Raise the dynamic shared-memory limit once per device.
    constexpr int kMaxDevices = 64;
    static std::atomic<bool> done[kMaxDevices];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (dev < 0 || dev >= kMaxDevices || !done[dev].load(std::memory_order_acquire)) {
      if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem) !=
          cudaSuccess) {
        return false;
      }
      if (dev >= 0 && dev < kMaxDevices) done[dev].store(true, std::memory_order_release);
    }
  }
  const std::int64_t blocks = std::int64_t{a.batch} * a.num_kv_heads * a.subgroups * a.splits;
  if (MODE != kMergeCluster && !a.pdl_launch) {
    kernel<<<static_cast<unsigned>(blocks), WARPS * 32, kSmem, stream>>>(a);
    return true;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(blocks));
  cfg.blockDim = dim3(WARPS * 32);
  cfg.dynamicSmemBytes = kSmem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (MODE == kMergeCluster) {
    // One cluster per (sequence, kv head, sub-group): its `splits` consecutive blocks.
    attr[n].id = cudaLaunchAttributeClusterDimension;
    attr[n].val.clusterDim.x = static_cast<unsigned>(a.splits);
    attr[n].val.clusterDim.y = 1;
    attr[n].val.clusterDim.z = 1;
    ++n;
  }
  if (a.pdl_launch) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  cfg.attrs = attr;
  cfg.numAttrs = n;
  cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, a);
  if (err != cudaSuccess && a.pdl_launch) {  // programmatic launch refused: launch it plainly
    (void)cudaGetLastError();
    cfg.numAttrs = n - 1;
    if (cfg.numAttrs == 0) {
      kernel<<<static_cast<unsigned>(blocks), WARPS * 32, kSmem, stream>>>(a);
      return true;
    }
    err = cudaLaunchKernelEx(&cfg, kernel, a);
  }
  return err == cudaSuccess;
}

// Whether the current device has programmatic dependent launch (compute capability >= 9),
// cached per device.
bool device_supports_pdl() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached[kMaxDevices];  // 0 unknown, 1 no, 2 yes
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (dev >= 0 && dev < kMaxDevices) {
    const int c = cached[dev].load(std::memory_order_relaxed);
    if (c != 0) return c == 2;
  }
  int major = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    return false;
  }
  if (dev >= 0 && dev < kMaxDevices) cached[dev].store(major >= 9 ? 2 : 1);
  return major >= 9;
}

template <int HD, int STAGES>
bool launch_mma_stages(const SplitArgs& a, int warps, int mode, cudaStream_t stream) {
  if (a.pdl_launch || a.prefetch_tiles > 0 || a.trace != nullptr || a.rotate) {
    // Programmatic launch / L2 prefetch / trace / rotated tile order: 3 stages, static splits, no
    // fused merge (checked earlier).
    if constexpr (STAGES != 3) {
      return false;
    } else {
      if (a.tile_counters != nullptr || mode == kMergeFused) return false;
      const bool cl = mode == kMergeCluster;
      if (warps == 8) {
        if constexpr (HD == 128) {
          if (cl && a.pair)
            return launch_mma<HD, 3, 8, kMergeCluster, false, true, true>(a, stream);
        }
        return cl ? launch_mma<HD, 3, 8, kMergeCluster, false, true>(a, stream)
                  : launch_mma<HD, 3, 8, kMergeWorkspace, false, true>(a, stream);
      }
      if constexpr (HD == 128) {
        if (cl && a.pair) return launch_mma<HD, 3, 4, kMergeCluster, false, true, true>(a, stream);
      }
      return cl ? launch_mma<HD, 3, 4, kMergeCluster, false, true>(a, stream)
                : launch_mma<HD, 3, 4, kMergeWorkspace, false, true>(a, stream);
    }
  }
  if (a.tile_counters != nullptr) {  // dynamic tiles: 3 stages only (checked earlier)
    if constexpr (STAGES != 3) {
      return false;
    } else {
      const bool cl = mode == kMergeCluster;
      if (warps == 8) {
        return cl ? launch_mma<HD, 3, 8, kMergeCluster, true>(a, stream)
                  : launch_mma<HD, 3, 8, kMergeWorkspace, true>(a, stream);
      }
      return cl ? launch_mma<HD, 3, 4, kMergeCluster, true>(a, stream)
                : launch_mma<HD, 3, 4, kMergeWorkspace, true>(a, stream);
    }
  }
  if (warps == 8) {
    if constexpr (STAGES == 4) {
      return false;  // 4 x 64 KB of tiles: more than an SM's shared memory (checked earlier)
    } else {
      if constexpr (HD == 128) {
        if (mode == kMergeCluster && a.pair) {
          return launch_mma<HD, STAGES, 8, kMergeCluster, false, false, true>(a, stream);
        }
      }
      return mode == kMergeCluster ? launch_mma<HD, STAGES, 8, kMergeCluster>(a, stream)
                                   : launch_mma<HD, STAGES, 8, kMergeWorkspace>(a, stream);
    }
  }
  switch (mode) {
    case kMergeFused:
      return launch_mma<HD, STAGES, 4, kMergeFused>(a, stream);
    case kMergeCluster:
      if constexpr (HD == 128) {
        if (a.pair) return launch_mma<HD, STAGES, 4, kMergeCluster, false, false, true>(a, stream);
      }
      return launch_mma<HD, STAGES, 4, kMergeCluster>(a, stream);
    default:
      return launch_mma<HD, STAGES, 4, kMergeWorkspace>(a, stream);
  }
}

// Multiprocessors of the current device, cached per device (0 if unknown).
int device_sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached[kMaxDevices];  // 0 unknown
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  if (dev >= 0 && dev < kMaxDevices) {
    const int c = cached[dev].load(std::memory_order_relaxed);
    if (c != 0) return c;
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) return 0;
  if (dev >= 0 && dev < kMaxDevices) cached[dev].store(sms, std::memory_order_relaxed);
  return sms;
}

// Opt-in shared memory per block of the current device in bytes, cached per device.
std::size_t device_smem_optin() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached[kMaxDevices];  // 0 unknown
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  if (dev >= 0 && dev < kMaxDevices) {
    const int c = cached[dev].load(std::memory_order_relaxed);
    if (c != 0) return static_cast<std::size_t>(c);
  }
  int bytes = 0;
  if (cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    return 0;
  }
  if (dev >= 0 && dev < kMaxDevices) cached[dev].store(bytes, std::memory_order_relaxed);
  return static_cast<std::size_t>(bytes);
}

// Peak memory bandwidth of the current device in GB/s (clock x bus width), cached per device
// (0 if unknown).
int device_peak_GBps() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached[kMaxDevices];  // 0 unknown
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  if (dev >= 0 && dev < kMaxDevices) {
    const int c = cached[dev].load(std::memory_order_relaxed);
    if (c != 0) return c;
  }
  const int v = static_cast<int>(decode_attention_peak_memory_GBps());
  if (dev >= 0 && dev < kMaxDevices && v > 0) cached[dev].store(v, std::memory_order_relaxed);
  return v;
}

template <int HD>
bool launch_mma_hd(const SplitArgs& a, int stages, int warps, int mode, cudaStream_t stream) {
  switch (stages) {
    case 2:
      return launch_mma_stages<HD, 2>(a, warps, mode, stream);
    case 4:
      return launch_mma_stages<HD, 4>(a, warps, mode, stream);
    default:
      return launch_mma_stages<HD, 3>(a, warps, mode, stream);
  }
}

}  // namespace

Status decode_attention_workspace_init(void* workspace, std::size_t bytes, cudaStream_t stream) {
  if (workspace == nullptr || bytes < kHeaderBytes) return Status::kInvalidArgument;
  if (cudaMemsetAsync(workspace, 0, kHeaderBytes, stream) != cudaSuccess) {
    return Status::kLaunchFailed;
  }
  return Status::kOk;
}

namespace {

// Peak memory bandwidth (GB/s) from which 2-split cluster launches with head_dim 128 run the
// PAIR kernel, and the default one (4 warps) 4 pipeline stages: the H200 (4.8 TB/s) does; the
// H100 (3.35 TB/s) keeps the earlier kernels and 3 stages.
constexpr int kPairFourStagesGBps = 4000;

}  // namespace

double decode_attention_peak_memory_GBps() {
  int dev = 0, khz = 0, bits = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0.0;
  }
  return 2.0 * khz * 1e3 * (bits / 8.0) / 1e9;
}

void check_decode_attention(const DecodeAttentionParams& p, const DecodeAttentionExperiment& x) {
  if (const char* why = first_problem(FullParams{p, x})) {
    throw std::invalid_argument(std::string("decode attention: ") + why);
  }
}

void check_decode_attention(const DecodeAttentionParams& p) {
  check_decode_attention(p, DecodeAttentionExperiment{});
}

Status launch_decode_attention(const DecodeAttentionParams& p, cudaStream_t stream) {
  return launch_decode_attention(p, DecodeAttentionExperiment{}, stream);
}

Status launch_decode_attention(const DecodeAttentionParams& pp, const DecodeAttentionExperiment& x,
                               cudaStream_t stream) {
  const FullParams p{pp, x};
  if (first_problem(p) != nullptr) return Status::kInvalidArgument;
  const int group = p.num_heads / p.num_kv_heads;
  const int gt = p.group_tile > 0 ? p.group_tile
                 : group % 8 == 0 ? 8
                 : group % 4 == 0 ? 4
                 : group % 2 == 0 ? 2
                                  : 1;
  const std::size_t rows = std::size_t(p.batch) * p.num_heads * p.num_splits;
  char* ws = static_cast<char*>(p.workspace) + kHeaderBytes;
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
  const float scale = p.scale != 0.f ? p.scale : 1.f / std::sqrt(static_cast<float>(p.head_dim));
  a.scale_log2 = scale * kLog2e;
  const bool tensor_cores = p.kernel_variant == 2 || (p.kernel_variant == 0 && p.group_tile == 0);
  const bool direct = tensor_cores && p.num_splits == 1;
  a.direct_out = direct ? p.out : nullptr;
  a.direct_lse = direct ? p.lse : nullptr;
  bool fused = false;
  if (tensor_cores) {
    a.subgroups = (group + kTcRows - 1) / kTcRows;
    int stages = p.pipeline_stages ? p.pipeline_stages : 3;
    int warps = p.block_warps ? p.block_warps : kTcDefaultWarps;
    if (p.block_warps == 0 && direct && stages <= 3) {
      // One split with at most one block per two SMs: 8-warp blocks stream faster (measured
      // on the H100 and the H200, see attention.hpp), where the shared memory allows them.
      const std::int64_t blocks = std::int64_t{p.batch} * p.num_kv_heads * a.subgroups;
      const std::size_t need = std::size_t(stages) * 2 * 128 * p.head_dim * 2;
      if (device_supports_pdl() && 2 * blocks <= device_sm_count() && need <= device_smem_optin()) {
        warps = 8;  // sm_90 (not measured on sm_80)
      }
    }
    int mode = kMergeWorkspace;
    bool pair_default = false;  // the default 2-split cluster launch
    if (!direct) {
      if (p.fused_merge && warps == 4 &&
          std::int64_t{p.batch} * p.num_kv_heads * a.subgroups <= kDecodeAttentionMergeCounters) {
        mode = kMergeFused;
        a.merge_counters = static_cast<unsigned*>(p.workspace);
      } else if (p.split_merge == 2 && p.num_splits <= kMaxClusterSplits && device_supports_pdl()) {
        mode = kMergeCluster;
      } else if (p.split_merge == 0 && p.num_splits == 2 && device_supports_pdl()) {
        // Default: the cluster merge where it was measured faster (H200, docs/kernels.md):
        // 2 splits and one wave of at most one block per SM (Mixtral b=8 ctx=2048/8192:
        // -0.3..-0.5 us). With more splits (4: +8 us) or many waves (MHA b=128 ctx=8192:
        // +0.5%) the reduce kernel was faster.
        const std::int64_t blocks =
            std::int64_t{p.batch} * p.num_kv_heads * a.subgroups * p.num_splits;
        if (blocks <= device_sm_count()) {
          mode = kMergeCluster;
          pair_default = true;
        }
      }
    }
    if (p.dynamic_splits && !direct &&
        std::int64_t{p.batch} * p.num_kv_heads * a.subgroups <= kDecodeAttentionMergeCounters) {
      a.tile_counters = static_cast<unsigned*>(p.workspace);
    }
    // Programmatic launch and L2 prefetch (sm_90). Defaults: off (see attention.hpp).
    const bool sm90 = device_supports_pdl();
    a.pdl_launch = sm90 && p.programmatic_launch == 2;
    a.prefetch_tiles = sm90 && p.l2_prefetch_tiles > 0 ? p.l2_prefetch_tiles : 0;
    a.trace = p.trace;
    a.rotate = p.rotate_tiles && a.tile_counters == nullptr;
    // Default 2-split cluster launch on a card with >= 4 TB/s peak memory bandwidth (the
    // H200; not the H100), head_dim 128: 4 pipeline stages (measured, docs/kernels.md). Not with
    // the options that need 3 stages (programmatic launch, prefetch, trace, rotation, dynamic).
    if (pair_default && p.pipeline_stages == 0 && warps == 4 && p.head_dim == 128 &&
        !a.pdl_launch && a.prefetch_tiles == 0 && a.trace == nullptr && !a.rotate &&
        a.tile_counters == nullptr && device_peak_GBps() >= kPairFourStagesGBps) {
      stages = 4;
    }
    // Two-split cluster launches with static tiles and head_dim 128 on a >= 4 TB/s card: the
    // PAIR kernel (early append, early first copies, pair merge; measured on the H200).
    a.pair = mode == kMergeCluster && p.num_splits == 2 && p.head_dim == 128 &&
             a.tile_counters == nullptr && device_peak_GBps() >= kPairFourStagesGBps;
    fused = mode != kMergeWorkspace;
    if (fused) {
      a.merge_out = p.out;
      a.merge_lse = p.lse;
    }
    const bool ok = p.head_dim == 128 ? launch_mma_hd<128>(a, stages, warps, mode, stream)
                                      : launch_mma_hd<64>(a, stages, warps, mode, stream);
    if (!ok) return Status::kLaunchFailed;
  } else {
    a.subgroups = group / gt;
    if (p.head_dim == 128) {
      launch_split_hd<128>(a, gt, stream);
    } else {
      launch_split_hd<64>(a, gt, stream);
    }
  }
  if (cudaGetLastError() != cudaSuccess) return Status::kLaunchFailed;
  if (direct || fused) return Status::kOk;  // the split kernel wrote out (and lse)
  const int items = p.batch * p.num_heads;
  const int warps_per_block = 4;
  const unsigned blocks = static_cast<unsigned>((items + warps_per_block - 1) / warps_per_block);
  // The reduce is launched as a programmatic dependent of the split kernel on sm_90, so its
  // launch overlaps the split kernel's tail (it waits for the split kernel's results).
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(warps_per_block * 32);
  cfg.dynamicSmemBytes = 0;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = device_supports_pdl() ? 1 : 0;
  const bool append = p.k_new != nullptr;
  auto launch_reduce = [&]() {
    return p.head_dim == 128
               ? cudaLaunchKernelEx(&cfg, decode_attention_reduce_kernel<128>,
                                    static_cast<const float*>(a.ws_acc),
                                    static_cast<const float*>(a.ws_m),
                                    static_cast<const float*>(a.ws_l), p.kv_lens, append,
                                    p.max_kv_len, p.batch, p.num_heads, p.num_splits, p.out, p.lse)
               : cudaLaunchKernelEx(&cfg, decode_attention_reduce_kernel<64>,
                                    static_cast<const float*>(a.ws_acc),
                                    static_cast<const float*>(a.ws_m),
                                    static_cast<const float*>(a.ws_l), p.kv_lens, append,
                                    p.max_kv_len, p.batch, p.num_heads, p.num_splits, p.out, p.lse);
  };
  cudaError_t err = launch_reduce();
  if (err != cudaSuccess && cfg.numAttrs == 1) {  // PDL refused: launch it plainly
    (void)cudaGetLastError();
    cfg.numAttrs = 0;
    err = launch_reduce();
  }
  if (err != cudaSuccess) return Status::kLaunchFailed;
  return detail::launch_status();
}

Status launch_advance_kv_lens(std::int32_t* kv_lens, int batch, cudaStream_t stream) {
  if (kv_lens == nullptr || batch <= 0) return Status::kInvalidArgument;
  advance_kv_lens_kernel<<<(batch + 255) / 256, 256, 0, stream>>>(kv_lens, batch);
  return detail::launch_status();
}

}  // namespace masep::kernels
