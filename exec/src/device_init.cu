#include <cuda_bf16.h>

#include "device_init.hpp"

namespace masep::exec::detail {

namespace {

__device__ __forceinline__ uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

__global__ void fill_hash_bf16_kernel(__nv_bfloat16* p, int64_t n, uint64_t seed, float scale) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const uint64_t h = mix(seed ^ mix(static_cast<uint64_t>(i)));
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
    p[i] = __float2bfloat16((2.0f * u - 1.0f) * scale);
  }
}

}  // namespace

void fill_hash_bf16(void* p, int64_t elements, uint64_t seed, float scale, cudaStream_t stream) {
  if (elements <= 0) return;
  const int threads = 256;
  const int64_t want = (elements + threads - 1) / threads;
  const int blocks = static_cast<int>(want < 65536 ? want : 65536);
  fill_hash_bf16_kernel<<<blocks, threads, 0, stream>>>(static_cast<__nv_bfloat16*>(p), elements,
                                                        seed, scale);
}

}  // namespace masep::exec::detail
