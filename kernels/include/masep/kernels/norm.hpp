// RMSNorm over the hidden dimension, optionally fused with the residual add.
//
//   launch_rmsnorm:           out[t] = x[t] / rms(x[t]) * weight
//   launch_add_rmsnorm:       residual[t] += x[t]   (in place, rounded to bf16)
//                             out[t] = residual[t] / rms(residual[t]) * weight
// where rms(v) = sqrt(mean(v^2) + eps), computed in fp32. Tensors are [tokens, hidden]
// contiguous bf16, weight is [hidden]. hidden must be a multiple of 8 (16-byte vectors),
// pointers 16-byte aligned. out may alias x (launch_rmsnorm) but not residual.
// One block per token.
#pragma once

#include "masep/kernels/status.hpp"
#include "masep/kernels/types.hpp"

namespace masep::kernels {

Status launch_rmsnorm(const bf16* x, const bf16* weight, bf16* out, int tokens, int hidden,
                      float eps, cudaStream_t stream);

Status launch_add_rmsnorm(bf16* residual, const bf16* x, const bf16* weight, bf16* out, int tokens,
                          int hidden, float eps, cudaStream_t stream);

/// Throws std::invalid_argument for non-positive sizes, hidden % 8 != 0, null pointers.
void check_rmsnorm(const void* x, const void* weight, const void* out, int tokens, int hidden);

}  // namespace masep::kernels
