// RMSNorm (+ fused residual add), RoPE and FFN activations; see norm.hpp, rope.hpp,
// activation.hpp.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "common.cuh"
#include "masep/kernels/activation.hpp"
#include "masep/kernels/norm.hpp"
#include "masep/kernels/rope.hpp"

namespace masep::kernels {
namespace {

using detail::ldg16;
using detail::pack8;
using detail::unpack8;

constexpr int kNormThreads = 256;

__device__ float block_sum(float v) {
  __shared__ float part[kNormThreads / 32];
  v = detail::warp_sum(v);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
  __syncthreads();
  float t = 0.f;
#pragma unroll
  for (int i = 0; i < kNormThreads / 32; ++i) t += part[i];
  return t;
}

// One block per token. The row is read once into registers (up to kMaxVec vectors per
// thread, i.e. hidden <= 8*256*kMaxVec = 16384) and re-read from memory beyond that.
template <bool kResidual>
__global__ void __launch_bounds__(kNormThreads)
    rmsnorm_kernel(bf16* residual, const bf16* x, const bf16* weight, bf16* out, int hidden,
                   float eps) {
  constexpr int kMaxVec = 8;
  const int nvec = hidden / 8;
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * hidden;
  float vals[kMaxVec][8];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kMaxVec; ++j) {
    const int v = threadIdx.x + j * kNormThreads;
    if (v < nvec) {
      unpack8(ldg16(x + row + v * 8), vals[j]);
      if constexpr (kResidual) {
        float r[8];
        unpack8(*reinterpret_cast<const uint4*>(residual + row + v * 8), r);
#pragma unroll
        for (int i = 0; i < 8; ++i) vals[j][i] += r[i];
        const uint4 packed = pack8(vals[j]);
        *reinterpret_cast<uint4*>(residual + row + v * 8) = packed;
        unpack8(packed, vals[j]);  // normalise the bf16-rounded sum, as stored
      }
#pragma unroll
      for (int i = 0; i < 8; ++i) ss = fmaf(vals[j][i], vals[j][i], ss);
    }
  }
  for (int v = threadIdx.x + kMaxVec * kNormThreads; v < nvec; v += kNormThreads) {
    float f[8];
    unpack8(kResidual ? *reinterpret_cast<const uint4*>(residual + row + v * 8)
                      : ldg16(x + row + v * 8),
            f);
    if constexpr (kResidual) {
      float xv[8];
      unpack8(ldg16(x + row + v * 8), xv);
#pragma unroll
      for (int i = 0; i < 8; ++i) f[i] += xv[i];
      const uint4 packed = pack8(f);
      *reinterpret_cast<uint4*>(residual + row + v * 8) = packed;
      unpack8(packed, f);
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) ss = fmaf(f[i], f[i], ss);
  }
  const float inv = rsqrtf(block_sum(ss) / hidden + eps);
#pragma unroll
  for (int j = 0; j < kMaxVec; ++j) {
    const int v = threadIdx.x + j * kNormThreads;
    if (v < nvec) {
      float w[8], o[8];
      unpack8(ldg16(weight + v * 8), w);
#pragma unroll
      for (int i = 0; i < 8; ++i) o[i] = vals[j][i] * inv * w[i];
      *reinterpret_cast<uint4*>(out + row + v * 8) = pack8(o);
    }
  }
  for (int v = threadIdx.x + kMaxVec * kNormThreads; v < nvec; v += kNormThreads) {
    float f[8], w[8], o[8];
    unpack8(kResidual ? *reinterpret_cast<const uint4*>(residual + row + v * 8)
                      : ldg16(x + row + v * 8),
            f);
    unpack8(ldg16(weight + v * 8), w);
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i] = f[i] * inv * w[i];
    *reinterpret_cast<uint4*>(out + row + v * 8) = pack8(o);
  }
}

// One thread per rotation pair (token, head, i < head_dim/2), q heads then k heads.
__global__ void rope_kernel(const RopeParams p, std::int64_t q_stride, std::int64_t k_stride,
                            float log2_theta) {
  const int half = p.head_dim / 2;
  const int heads = p.num_heads + (p.k ? p.num_kv_heads : 0);
  const std::int64_t total = std::int64_t{p.tokens} * heads * half;
  for (std::int64_t idx = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += std::int64_t{gridDim.x} * blockDim.x) {
    const int i = static_cast<int>(idx % half);
    const int h = static_cast<int>((idx / half) % heads);
    const int t = static_cast<int>(idx / (std::int64_t{half} * heads));
    bf16* v = h < p.num_heads ? p.q + t * q_stride + h * p.head_dim
                              : p.k + t * k_stride + (h - p.num_heads) * p.head_dim;
    const float inv_freq = exp2f(-2.f * i / p.head_dim * log2_theta);
    float sn, cs;
    sincosf(static_cast<float>(p.positions[t]) * inv_freq, &sn, &cs);
    const float x1 = __bfloat162float(v[i]);
    const float x2 = __bfloat162float(v[i + half]);
    v[i] = __float2bfloat16_rn(x1 * cs - x2 * sn);
    v[i + half] = __float2bfloat16_rn(x2 * cs + x1 * sn);
  }
}

__device__ __forceinline__ float silu(float x) { return x / (1.f + __expf(-x)); }

__device__ __forceinline__ float gelu_tanh(float x) {
  const float c = 0.7978845608028654f;
  return 0.5f * x * (1.f + tanhf(c * (x + 0.044715f * x * x * x)));
}

__global__ void swiglu_kernel(const bf16* in, bf16* out, std::int64_t rows, int ffn) {
  const int nvec = ffn / 8;
  const std::int64_t total = rows * nvec;
  for (std::int64_t idx = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t r = idx / nvec;
    const int v = static_cast<int>(idx % nvec);
    float g[8], u[8], o[8];
    unpack8(ldg16(in + r * 2 * ffn + v * 8), g);
    unpack8(ldg16(in + r * 2 * ffn + ffn + v * 8), u);
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i] = silu(g[i]) * u[i];
    *reinterpret_cast<uint4*>(out + r * ffn + v * 8) = pack8(o);
  }
}

__global__ void gelu_kernel(const bf16* in, bf16* out, std::int64_t nvec) {
  for (std::int64_t idx = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; idx < nvec;
       idx += std::int64_t{gridDim.x} * blockDim.x) {
    float f[8];
    unpack8(*reinterpret_cast<const uint4*>(in + idx * 8), f);
#pragma unroll
    for (int i = 0; i < 8; ++i) f[i] = gelu_tanh(f[i]);
    *reinterpret_cast<uint4*>(out + idx * 8) = pack8(f);
  }
}

unsigned grid_for(std::int64_t work, int threads) {
  const std::int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(
      std::min<std::int64_t>(std::max<std::int64_t>(blocks, 1), 65535 * 8));
}

}  // namespace

void check_rmsnorm(const void* x, const void* weight, const void* out, int tokens, int hidden) {
  if (tokens <= 0 || hidden <= 0) throw std::invalid_argument("rmsnorm: sizes must be positive");
  if (hidden % 8 != 0) throw std::invalid_argument("rmsnorm: hidden must be a multiple of 8");
  if (!x || !weight || !out) throw std::invalid_argument("rmsnorm: null pointer");
  if (!detail::aligned16(x) || !detail::aligned16(weight) || !detail::aligned16(out)) {
    throw std::invalid_argument("rmsnorm: pointers must be 16-byte aligned");
  }
}

Status launch_rmsnorm(const bf16* x, const bf16* weight, bf16* out, int tokens, int hidden,
                      float eps, cudaStream_t stream) {
  if (tokens <= 0 || hidden <= 0 || hidden % 8 != 0 || !x || !weight || !out) {
    return Status::kInvalidArgument;
  }
  rmsnorm_kernel<false><<<tokens, kNormThreads, 0, stream>>>(nullptr, x, weight, out, hidden, eps);
  return detail::launch_status();
}

Status launch_add_rmsnorm(bf16* residual, const bf16* x, const bf16* weight, bf16* out, int tokens,
                          int hidden, float eps, cudaStream_t stream) {
  if (tokens <= 0 || hidden <= 0 || hidden % 8 != 0 || !residual || !x || !weight || !out) {
    return Status::kInvalidArgument;
  }
  rmsnorm_kernel<true><<<tokens, kNormThreads, 0, stream>>>(residual, x, weight, out, hidden, eps);
  return detail::launch_status();
}

void check_rope(const RopeParams& p) {
  if (p.tokens <= 0 || p.num_heads <= 0 || p.head_dim <= 0 || (p.k && p.num_kv_heads <= 0)) {
    throw std::invalid_argument("rope: sizes must be positive");
  }
  if (p.head_dim % 2 != 0 || p.head_dim > 256) {
    throw std::invalid_argument("rope: head_dim must be even and <= 256");
  }
  if (!p.q || !p.positions) throw std::invalid_argument("rope: q and positions are required");
  if (p.theta <= 0.f) throw std::invalid_argument("rope: theta must be positive");
}

Status launch_rope(const RopeParams& p, cudaStream_t stream) {
  if (p.tokens <= 0 || p.num_heads <= 0 || p.head_dim <= 0 || p.head_dim % 2 != 0 ||
      p.head_dim > 256 || !p.q || !p.positions || p.theta <= 0.f || (p.k && p.num_kv_heads <= 0)) {
    return Status::kInvalidArgument;
  }
  const std::int64_t q_stride = p.q_stride ? p.q_stride : std::int64_t{p.num_heads} * p.head_dim;
  const std::int64_t k_stride = p.k_stride ? p.k_stride : std::int64_t{p.num_kv_heads} * p.head_dim;
  const int heads = p.num_heads + (p.k ? p.num_kv_heads : 0);
  const std::int64_t total = std::int64_t{p.tokens} * heads * (p.head_dim / 2);
  rope_kernel<<<grid_for(total, 256), 256, 0, stream>>>(p, q_stride, k_stride, std::log2(p.theta));
  return detail::launch_status();
}

Status launch_swiglu(const bf16* in, bf16* out, std::int64_t rows, int ffn, cudaStream_t stream) {
  if (rows <= 0 || ffn <= 0 || ffn % 8 != 0 || !in || !out) return Status::kInvalidArgument;
  swiglu_kernel<<<grid_for(rows * (ffn / 8), 256), 256, 0, stream>>>(in, out, rows, ffn);
  return detail::launch_status();
}

Status launch_gelu(const bf16* in, bf16* out, std::int64_t rows, int ffn, cudaStream_t stream) {
  if (rows <= 0 || ffn <= 0 || ffn % 8 != 0 || !in || !out) return Status::kInvalidArgument;
  gelu_kernel<<<grid_for(rows * (ffn / 8), 256), 256, 0, stream>>>(in, out, rows * (ffn / 8));
  return detail::launch_status();
}

}  // namespace masep::kernels
