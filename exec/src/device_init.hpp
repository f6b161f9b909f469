// Seeded data generation on the GPU (weights, KV cache, activations). Private to exec/.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace masep::exec::detail {

/// p[i] = bf16((2·u(seed, i) − 1) · scale), u a splitmix64 hash of (seed, i) mapped to [0, 1).
void fill_hash_bf16(void* p, int64_t elements, uint64_t seed, float scale, cudaStream_t stream);

}  // namespace masep::exec::detail
