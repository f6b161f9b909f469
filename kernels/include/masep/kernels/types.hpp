// Element types shared by the kernel launchers.
//
// Activations, weights and the KV cache are bf16 (`masep::kernels::bf16`, CUDA's
// __nv_bfloat16: 1 sign, 8 exponent, 7 mantissa bits); every kernel accumulates in fp32.
// All pointers passed to launchers are device pointers owned by the caller unless a header
// says otherwise; launchers never allocate or free.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace masep::kernels {

using bf16 = __nv_bfloat16;

/// Run-time element type, for the few launchers that accept more than one input type.
enum class DType { kF32 = 0, kBF16 = 1 };

}  // namespace masep::kernels
