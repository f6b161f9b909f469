#include <algorithm>

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include "device_init.hpp"
#include "masep/plan/seeded_hash.hpp"

namespace masep::exec::detail {

namespace {

__device__ __forceinline__ uint64_t mix(uint64_t x) { return plan::splitmix64(x); }

__device__ __forceinline__ float unit_sym(uint64_t h) {
  const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
  return 2.0f * u - 1.0f;
}

int blocks_for(int64_t n, int threads) {
  const int64_t want = (n + threads - 1) / threads;
  return static_cast<int>(want < 65536 ? (want > 0 ? want : 1) : 65536);
}

__global__ void fill_hash_bf16_kernel(__nv_bfloat16* p, int64_t n, uint64_t seed, float scale,
                                      float shift) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(i)));
    p[i] = __float2bfloat16(shift + unit_sym(h) * scale);
  }
}

// e4m3 bytes of u·448 (u the same hash as fill_hash_bf16_kernel's), then every 128 × 128
// block's scale scale/448: values uniform in ± scale, rounded to e4m3.
__global__ void fill_hash_fp8_block_kernel(uint8_t* p, int64_t rows, int64_t cols, uint64_t seed,
                                           float scale) {
  const int64_t n = rows * cols;
  const int64_t nscales = ((rows + 127) / 128) * ((cols + 127) / 128);
  float* scales = reinterpret_cast<float*>(p + n);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n + nscales;
       i += stride) {
    if (i < n) {
      const uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(i)));
      p[i] = __nv_cvt_float_to_fp8(unit_sym(h) * 448.f, __NV_SATFINITE, __NV_E4M3);
    } else {
      scales[i - n] = scale / 448.f;
    }
  }
}

__global__ void fill_rows_kernel(__nv_bfloat16* p, int64_t rows, int64_t cols, int64_t first_row,
                                 uint64_t seed, float scale) {
  const int64_t n = rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t r = i / cols, c = i % cols;
    const uint64_t h = mix(mix(seed ^ mix(static_cast<uint64_t>(first_row + r))) ^ c);
    p[i] = __float2bfloat16(unit_sym(h) * scale);
  }
}

__global__ void fill_kv_kernel(__nv_bfloat16* p, int batch, int heads, int max_len, int hd,
                               int64_t first_seq, uint64_t seed, float scale) {
  const int64_t n = static_cast<int64_t>(batch) * heads * max_len * hd;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t d = i % hd;
    const int64_t pos = (i / hd) % max_len;
    const int64_t hh = (i / (static_cast<int64_t>(hd) * max_len)) % heads;
    const int64_t b = i / (static_cast<int64_t>(hd) * max_len * heads);
    uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(first_seq + b)));
    h = mix(h ^ static_cast<uint64_t>(hh));
    h = mix(h ^ static_cast<uint64_t>(pos));
    h = mix(h ^ static_cast<uint64_t>(d));
    p[i] = __float2bfloat16(unit_sym(h) * scale);
  }
}

// One warp per token: the lanes read the token's logits together (coalesced), a warp max, then
// lanes 0..k-1 weight the Program's experts. (One thread per token looping over the experts
// was latency-bound: 27 µs for 64 tokens × 128 experts on an H100, more than the router.)
__global__ void forced_route_kernel(const __nv_bfloat16* logits, int tokens, int experts, int k,
                                    const int32_t* orig, const int32_t* slot,
                                    const int32_t* slot_counts, int slots, int32_t* ids,
                                    float* weights, int32_t* counts) {
  const int gtid = blockIdx.x * blockDim.x + threadIdx.x;
  for (int s = gtid; s < slots; s += gridDim.x * blockDim.x) counts[s] = slot_counts[s];
  const int lane = threadIdx.x & 31;
  const int warps = (gridDim.x * blockDim.x) >> 5;
  for (int t = gtid >> 5; t < tokens; t += warps) {
    const __nv_bfloat16* row = logits + static_cast<int64_t>(t) * experts;
    float mx = -INFINITY;
    for (int e = lane; e < experts; e += 32) mx = fmaxf(mx, __bfloat162float(row[e]));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0;
    for (int j = lane; j < k; j += 32) sum += __expf(__bfloat162float(row[orig[t * k + j]]) - mx);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    for (int j = lane; j < k; j += 32) {
      weights[t * k + j] = __expf(__bfloat162float(row[orig[t * k + j]]) - mx) / sum;
      ids[t * k + j] = slot[t * k + j];
    }
  }
}

__global__ void map_route_kernel(int32_t* ids, int n, const int32_t* expert_slot, int slots,
                                 int32_t* counts) {
  for (int s = threadIdx.x; s < slots; s += blockDim.x) counts[s] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const int32_t s = expert_slot[ids[i]];
    ids[i] = s;
    atomicAdd(&counts[s], 1);
  }
}

__global__ void gather_rows_kernel(int4* out, const int4* a, const int4* b, const int32_t* map,
                                   int64_t rows, int64_t vec_cols) {
  const int64_t n = rows * vec_cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t r = i / vec_cols, c = i % vec_cols;
    const int32_t m = map[r];
    out[i] = m >= 0 ? a[m * vec_cols + c] : b[(-static_cast<int64_t>(m) - 1) * vec_cols + c];
  }
}

__global__ void scatter_rows_kernel(const int4* in, int4* a, int4* b, const int32_t* map,
                                    int64_t rows, int64_t vec_cols) {
  const int64_t n = rows * vec_cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t r = i / vec_cols, c = i % vec_cols;
    const int32_t m = map[r];
    if (m >= 0) {
      a[m * vec_cols + c] = in[i];
    } else {
      b[(-static_cast<int64_t>(m) - 1) * vec_cols + c] = in[i];
    }
  }
}

}  // namespace

void fill_hash_bf16(void* p, int64_t elements, uint64_t seed, float scale, cudaStream_t stream) {
  fill_hash_bf16_shifted(p, elements, seed, scale, 0.0f, stream);
}

void fill_hash_bf16_shifted(void* p, int64_t elements, uint64_t seed, float scale, float shift,
                            cudaStream_t stream) {
  if (elements <= 0) return;
  fill_hash_bf16_kernel<<<blocks_for(elements, 256), 256, 0, stream>>>(
      static_cast<__nv_bfloat16*>(p), elements, seed, scale, shift);
}

void fill_hash_fp8_block(void* p, int64_t rows, int64_t cols, uint64_t seed, float scale,
                         cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  fill_hash_fp8_block_kernel<<<blocks_for(rows * cols, 256), 256, 0, stream>>>(
      static_cast<uint8_t*>(p), rows, cols, seed, scale);
}

void fill_rows_bf16(void* p, int64_t rows, int64_t cols, int64_t first_row, uint64_t seed,
                    float scale, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  fill_rows_kernel<<<blocks_for(rows * cols, 256), 256, 0, stream>>>(
      static_cast<__nv_bfloat16*>(p), rows, cols, first_row, seed, scale);
}

void fill_kv_bf16(void* p, int batch, int kv_heads, int max_len, int head_dim, int64_t first_seq,
                  uint64_t seed, float scale, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(batch) * kv_heads * max_len * head_dim;
  if (n <= 0) return;
  fill_kv_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(
      static_cast<__nv_bfloat16*>(p), batch, kv_heads, max_len, head_dim, first_seq, seed, scale);
}

void apply_forced_route(const void* logits_bf16, int tokens, int experts, int k,
                        const int32_t* orig_ids, const int32_t* slot_ids,
                        const int32_t* slot_counts, int slots, int32_t* topk_ids,
                        float* topk_weights, int32_t* counts, cudaStream_t stream) {
  if (tokens <= 0 && slots <= 0) return;
  // A warp per token (4 per block); at least enough threads for the slot counts' loop.
  const int64_t threads = std::max<int64_t>(static_cast<int64_t>(tokens) * 32, slots);
  forced_route_kernel<<<static_cast<int>(std::min<int64_t>((threads + 127) / 128, 65535)), 128, 0,
                        stream>>>(
      static_cast<const __nv_bfloat16*>(logits_bf16), tokens, experts, k, orig_ids, slot_ids,
      slot_counts, slots, topk_ids, topk_weights, counts);
}

void map_route_to_slots(int32_t* ids, int n, const int32_t* expert_slot, int slots, int32_t* counts,
                        cudaStream_t stream) {
  if (n <= 0 && slots <= 0) return;
  map_route_kernel<<<1, 256, 0, stream>>>(ids, n, expert_slot, slots, counts);
}

void gather_rows_bf16(void* out, const void* a, const void* b, const int32_t* map, int64_t rows,
                      int64_t cols, cudaStream_t stream) {
  if (rows <= 0) return;
  const int64_t vc = cols / 8;
  gather_rows_kernel<<<blocks_for(rows * vc, 256), 256, 0, stream>>>(
      static_cast<int4*>(out), static_cast<const int4*>(a), static_cast<const int4*>(b), map, rows,
      vc);
}

void scatter_rows_bf16(const void* in, void* a, void* b, const int32_t* map, int64_t rows,
                       int64_t cols, cudaStream_t stream) {
  if (rows <= 0) return;
  const int64_t vc = cols / 8;
  scatter_rows_kernel<<<blocks_for(rows * vc, 256), 256, 0, stream>>>(
      static_cast<const int4*>(in), static_cast<int4*>(a), static_cast<int4*>(b), map, rows, vc);
}

namespace {

__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void timer_mark_kernel(unsigned long long* slot) { *slot = global_ns(); }

__global__ void timer_stretch_kernel(const unsigned long long* slot, double factor) {
  const unsigned long long start = *slot;
  const unsigned long long now = global_ns();
  const unsigned long long until =
      start + static_cast<unsigned long long>(static_cast<double>(now - start) * factor);
  while (global_ns() < until) __nanosleep(500);
}

}  // namespace

void straggler_mark(uint64_t* slot, cudaStream_t stream) {
  timer_mark_kernel<<<1, 1, 0, stream>>>(reinterpret_cast<unsigned long long*>(slot));
}

void straggler_stretch(const uint64_t* slot, double speed, cudaStream_t stream) {
  timer_stretch_kernel<<<1, 1, 0, stream>>>(reinterpret_cast<const unsigned long long*>(slot),
                                            1.0 / speed);
}

}  // namespace masep::exec::detail
