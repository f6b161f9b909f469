// Element-wise FFN activations, bf16 in/out, fp32 math.
//
// SwiGLU: in is [rows, 2*ffn] with each row laid out as [gate(ffn) | up(ffn)] (the layout
//   ExpertFfn's fused gate_up GEMM produces); out[r][i] = silu(gate[r][i]) * up[r][i],
//   silu(x) = x / (1 + exp(-x)); out is [rows, ffn].
// GELU (tanh approximation): out[r][i] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
//   in and out are [rows, ffn]; out may alias in.
// ffn must be a multiple of 8; pointers 16-byte aligned. Row strides are the dense ones.
#pragma once

#include "masep/kernels/status.hpp"
#include "masep/kernels/types.hpp"

namespace masep::kernels {

enum class Activation { kSwiGLU = 0, kGELU = 1 };

Status launch_swiglu(const bf16* in, bf16* out, std::int64_t rows, int ffn, cudaStream_t stream);
Status launch_gelu(const bf16* in, bf16* out, std::int64_t rows, int ffn, cudaStream_t stream);

}  // namespace masep::kernels
