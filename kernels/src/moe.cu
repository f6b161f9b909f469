// MoE routing kernels: router top-k, permute (plan + gather) and combine; see router.hpp and
// permute.hpp.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "common.cuh"
#include "masep/kernels/launch_config.hpp"
#include "masep/kernels/permute.hpp"
#include "masep/kernels/router.hpp"

namespace masep::kernels {
namespace {

using detail::ldg16;
using detail::pack8;
using detail::unpack8;

constexpr int kMaxExperts = 256;
constexpr int kPerLane = kMaxExperts / 32;
constexpr int kRouterWarps = kRouterWideThreads / 32;
constexpr int kPlanSmemIds = 8192;  // 32 KB of shared memory

// Warps loop over tokens; per-expert counts are gathered in shared memory and added to the
// global counts once per block (single-block launches write them directly).
template <typename T>
__global__ void __launch_bounds__(kRouterWarps * 32)
    router_kernel(const T* logits, int tokens, int num_experts, int k, bool renormalize,
                  std::int32_t* topk_ids, float* topk_weights, std::int32_t* counts,
                  bool single_block) {
  __shared__ int s_counts[kMaxExperts];
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) s_counts[e] = 0;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  for (int t = blockIdx.x * kRouterWarps + warp; t < tokens; t += gridDim.x * kRouterWarps) {
    float v[kPerLane];
    const T* row = logits + static_cast<std::int64_t>(t) * num_experts;
    float mx = -INFINITY;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int e = i * 32 + lane;
      v[i] = e < num_experts ? static_cast<float>(row[e]) : -INFINITY;
      mx = fmaxf(mx, v[i]);
    }
    mx = detail::warp_max(mx);
    float sum = 0.f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      if (i * 32 + lane < num_experts) sum += __expf(v[i] - mx);
    }
    sum = detail::warp_sum(sum);
    unsigned taken = 0;  // bit i: v[i] already chosen
    float sel_sum = 0.f;
    float my_w = 0.f;
    int my_id = 0;
    for (int j = 0; j < k; ++j) {
      float best = -INFINITY;
      int best_e = 0x7fffffff;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int e = i * 32 + lane;
        if (e < num_experts && !(taken & (1u << i)) && (v[i] > best)) {
          best = v[i];
          best_e = e;
        }
      }
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
        if (ob > best || (ob == best && oe < best_e)) {
          best = ob;
          best_e = oe;
        }
      }
      if ((best_e & 31) == lane) taken |= 1u << (best_e >> 5);
      const float p = __expf(best - mx) / sum;
      sel_sum += p;
      if (lane == j) {
        my_w = p;
        my_id = best_e;
      }
    }
    if (lane < k) {
      const std::int64_t at = static_cast<std::int64_t>(t) * k + lane;
      topk_ids[at] = my_id;
      topk_weights[at] = renormalize ? my_w / sel_sum : my_w;
      if (counts) atomicAdd(&s_counts[my_id], 1);
    }
  }
  if (counts) {
    __syncthreads();
    for (int e = threadIdx.x; e < num_experts; e += blockDim.x) {
      if (single_block) {
        counts[e] = s_counts[e];
      } else if (s_counts[e]) {
        atomicAdd(&counts[e], s_counts[e]);
      }
    }
  }
}

// Few experts (<= 32): one thread per token, logits in registers, no shuffles; counts in
// shared memory (single block writes them directly, otherwise atomically added).
// Threads loop over tokens with a stride of the whole grid (router_launch_config: one block
// of at most kRouterSmallMaxThreads threads for up to 1024 tokens).
template <typename T>
__global__ void __launch_bounds__(kRouterSmallMaxThreads)
    router_small_kernel(const T* logits, int tokens, int num_experts, int k, bool renormalize,
                        std::int32_t* topk_ids, float* topk_weights, std::int32_t* counts,
                        bool single_block) {
  __shared__ int s_counts[32];
  if (threadIdx.x < 32) s_counts[threadIdx.x] = 0;
  __syncthreads();
  for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < tokens; t += gridDim.x * blockDim.x) {
    float v[32];
    const T* row = logits + static_cast<std::int64_t>(t) * num_experts;
    float mx = -INFINITY;
#pragma unroll
    for (int e = 0; e < 32; ++e) {
      v[e] = e < num_experts ? static_cast<float>(row[e]) : -INFINITY;
      mx = fmaxf(mx, v[e]);
    }
    float sum = 0.f;
#pragma unroll
    for (int e = 0; e < 32; ++e) {
      if (e < num_experts) sum += __expf(v[e] - mx);
    }
    unsigned taken = 0;
    int ids[8];
    float ps[8];
    float sel = 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < k) {
        float best = -INFINITY;
        int be = -1;  // first untaken expert, then strictly larger logits (ties: lower index)
#pragma unroll
        for (int e = 0; e < 32; ++e) {
          if (e < num_experts && !(taken & (1u << e)) && (be < 0 || v[e] > best)) {
            best = v[e];
            be = e;
          }
        }
        taken |= 1u << be;
        ids[j] = be;
        ps[j] = __expf(best - mx) / sum;
        sel += ps[j];
      }
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (j < k) {
        const std::int64_t at = static_cast<std::int64_t>(t) * k + j;
        topk_ids[at] = ids[j];
        topk_weights[at] = renormalize ? ps[j] / sel : ps[j];
        if (counts) atomicAdd(&s_counts[ids[j]], 1);
      }
    }
  }
  if (counts) {
    __syncthreads();
    if (threadIdx.x < num_experts) {
      if (single_block) {
        counts[threadIdx.x] = s_counts[threadIdx.x];
      } else if (s_counts[threadIdx.x]) {
        atomicAdd(&counts[threadIdx.x], s_counts[threadIdx.x]);
      }
    }
  }
}

// One warp per expert: offset from the counts, then a stable rank of every assignment of
// this expert by walking topk_ids in order with warp ballots.
__global__ void permute_plan_kernel(const std::int32_t* topk_ids, const std::int32_t* counts, int n,
                                    int k, int num_experts, int capacity,
                                    std::int32_t* permuted_row, std::int32_t* source_token,
                                    std::int32_t* offsets) {
  // The assignments' expert ids are staged in shared memory once per block (all loads in
  // flight together) instead of each warp walking global memory serially.
  __shared__ std::int32_t s_ids[kPlanSmemIds];
  for (int i = threadIdx.x; i < min(n, kPlanSmemIds); i += blockDim.x) s_ids[i] = topk_ids[i];
  __syncthreads();
  const int lane = threadIdx.x & 31;
  const int e = blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
  if (e >= num_experts) return;
  int off = 0;
  for (int i = lane; i < e; i += 32) off += counts[i];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) off += __shfl_xor_sync(0xffffffffu, off, o);
  if (lane == 0) {
    offsets[e] = off;
    if (e == num_experts - 1) offsets[num_experts] = off + counts[e];
  }
  const int base = capacity > 0 ? e * capacity : off;
  int running = 0;
  for (int a0 = 0; a0 < n; a0 += 32) {
    const int a = a0 + lane;
    const int id = a < n ? (a < kPlanSmemIds ? s_ids[a] : topk_ids[a]) : -1;
    const bool mine = id == e;
    const unsigned mask = __ballot_sync(0xffffffffu, mine);
    if (mine) {
      const int rank = running + __popc(mask & ((1u << lane) - 1u));
      if (capacity > 0 && rank >= capacity) {
        permuted_row[a] = -1;
      } else {
        permuted_row[a] = base + rank;
        source_token[base + rank] = a / k;
      }
    }
    running += __popc(mask);
  }
  if (capacity > 0) {
    for (int r = min(running, capacity) + lane; r < capacity; r += 32) source_token[base + r] = -1;
  }
}

// Small batches (tokens*k <= kFusedMaxAssign, E <= 256): plan and gather in one launch.
// Every block stages all expert ids and the counts in shared memory and derives the expert
// offsets itself; then each warp takes assignments a (grid-strided), ranks a among the
// earlier assignments of its expert with ballots (the same stable order as the plan kernel)
// and copies token a/k's row to its destination. Block 0 writes expert_offsets and the -1
// of unfilled fixed-capacity rows. One launch instead of two dependent ones.
constexpr int kFusedMaxAssign = 4096;
constexpr int kFusedMaxExperts = 256;
constexpr int kFusedWarps = 8;

__global__ void __launch_bounds__(kFusedWarps * 32)
    permute_fused_kernel(const bf16* x, const std::int32_t* topk_ids, const std::int32_t* counts,
                         int n, int k, int num_experts, int capacity, int hidden, bf16* permuted_x,
                         std::int32_t* permuted_row, std::int32_t* source_token,
                         std::int32_t* offsets) {
  __shared__ std::int32_t s_ids[kFusedMaxAssign];
  __shared__ std::int32_t s_cnt[kFusedMaxExperts];
  __shared__ std::int32_t s_off[kFusedMaxExperts + 1];
  for (int i = threadIdx.x; i < n; i += blockDim.x) s_ids[i] = topk_ids[i];
  for (int e = threadIdx.x; e < num_experts; e += blockDim.x) s_cnt[e] = counts[e];
  __syncthreads();
  for (int e = threadIdx.x; e <= num_experts; e += blockDim.x) {
    int off = 0;
    for (int i = 0; i < e; ++i) off += s_cnt[i];
    s_off[e] = off;
  }
  __syncthreads();
  if (blockIdx.x == 0) {
    for (int e = threadIdx.x; e <= num_experts; e += blockDim.x) offsets[e] = s_off[e];
    if (capacity > 0) {
      for (int e = 0; e < num_experts; ++e) {
        for (int r = min(s_cnt[e], capacity) + threadIdx.x; r < capacity; r += blockDim.x) {
          source_token[std::int64_t{e} * capacity + r] = -1;
        }
      }
    }
  }
  const int lane = threadIdx.x & 31;
  const int nvec = hidden / 8;
  for (int a = blockIdx.x * kFusedWarps + (threadIdx.x >> 5); a < n; a += gridDim.x * kFusedWarps) {
    const int e = s_ids[a];
    if (e < 0 || e >= num_experts) continue;
    int rank = 0;
    for (int c0 = 0; c0 < a; c0 += 32) {
      const int i = c0 + lane;
      rank += __popc(__ballot_sync(0xffffffffu, i < a && s_ids[i] == e));
    }
    const int base = capacity > 0 ? e * capacity : s_off[e];
    if (capacity > 0 && rank >= capacity) {
      if (lane == 0) permuted_row[a] = -1;
      continue;
    }
    const int row = base + rank;
    const int t = a / k;
    if (lane == 0) {
      permuted_row[a] = row;
      source_token[row] = t;
    }
    const bf16* src = x + static_cast<std::int64_t>(t) * hidden;
    bf16* dst = permuted_x + static_cast<std::int64_t>(row) * hidden;
    for (int v = lane; v < nvec; v += 32) {
      *reinterpret_cast<uint4*>(dst + v * 8) = ldg16(src + v * 8);
    }
  }
}

// One thread per 16-byte vector of a destination row.
__global__ void permute_gather_kernel(const bf16* x, const std::int32_t* source_token,
                                      bf16* permuted_x, std::int64_t rows, int hidden) {
  const int nvec = hidden / 8;
  const std::int64_t total = rows * nvec;
  for (std::int64_t idx = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t r = idx / nvec;
    const int v = static_cast<int>(idx % nvec);
    const int t = source_token[r];
    if (t < 0) continue;
    *reinterpret_cast<uint4*>(permuted_x + r * hidden + v * 8) =
        ldg16(x + static_cast<std::int64_t>(t) * hidden + v * 8);
  }
}

__global__ void combine_kernel(const CombineParams p) {
  const int nvec = p.hidden / 8;
  const std::int64_t total = std::int64_t{p.tokens} * nvec;
  for (std::int64_t idx = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += std::int64_t{gridDim.x} * blockDim.x) {
    const std::int64_t t = idx / nvec;
    const int v = static_cast<int>(idx % nvec);
    float acc[8];
    if (p.residual) {
      unpack8(*reinterpret_cast<const uint4*>(p.residual + t * p.hidden + v * 8), acc);
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = 0.f;
    }
    for (int j = 0; j < p.k; ++j) {
      const int row = p.permuted_row[t * p.k + j];
      if (row < 0) continue;
      const float w = p.topk_weights[t * p.k + j];
      float e[8];
      unpack8(ldg16(p.expert_out + static_cast<std::int64_t>(row) * p.hidden + v * 8), e);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[i] = fmaf(w, e[i], acc[i]);
    }
    *reinterpret_cast<uint4*>(p.out + t * p.hidden + v * 8) = pack8(acc);
  }
}

unsigned grid_for(std::int64_t work, int threads) {
  const std::int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(
      std::min<std::int64_t>(std::max<std::int64_t>(blocks, 1), 65535 * 8));
}

const char* router_problem(const RouterParams& p) {
  if (p.tokens <= 0 || p.num_experts <= 0) return "tokens and num_experts must be positive";
  if (p.num_experts > kMaxExperts) return "num_experts must be <= 256";
  if (p.k < 1 || p.k > 8 || p.k > p.num_experts) return "k must be in [1, min(8, num_experts)]";
  if (!p.logits || !p.topk_ids || !p.topk_weights) return "null pointer";
  return nullptr;
}

const char* permute_problem(const PermuteParams& p) {
  if (p.tokens <= 0 || p.hidden <= 0 || p.num_experts <= 0 || p.k <= 0) {
    return "sizes must be positive";
  }
  if (p.num_experts > 1024) return "num_experts must be <= 1024";
  if (p.hidden % 8 != 0) return "hidden must be a multiple of 8";
  if (p.capacity < 0) return "capacity must be >= 0";
  if (!p.x || !p.topk_ids || !p.expert_counts || !p.permuted_x || !p.permuted_row ||
      !p.source_token || !p.expert_offsets) {
    return "null pointer";
  }
  if (!detail::aligned16(p.x) || !detail::aligned16(p.permuted_x))
    return "x and permuted_x must be 16-byte aligned";
  return nullptr;
}

const char* combine_problem(const CombineParams& p) {
  if (p.tokens <= 0 || p.hidden <= 0 || p.k <= 0) return "sizes must be positive";
  if (p.hidden % 8 != 0) return "hidden must be a multiple of 8";
  if (!p.expert_out || !p.permuted_row || !p.topk_weights || !p.out) return "null pointer";
  if (!detail::aligned16(p.expert_out) || !detail::aligned16(p.out) ||
      (p.residual && !detail::aligned16(p.residual))) {
    return "tensors must be 16-byte aligned";
  }
  return nullptr;
}

}  // namespace

void check_router(const RouterParams& p) {
  if (const char* why = router_problem(p))
    throw std::invalid_argument(std::string("router: ") + why);
}
void check_permute(const PermuteParams& p) {
  if (const char* why = permute_problem(p))
    throw std::invalid_argument(std::string("permute: ") + why);
}
void check_combine(const CombineParams& p) {
  if (const char* why = combine_problem(p))
    throw std::invalid_argument(std::string("combine: ") + why);
}

Status launch_router_topk(const RouterParams& p, cudaStream_t stream) {
  if (router_problem(p)) return Status::kInvalidArgument;
  const LaunchConfig cfg = router_launch_config(p.tokens, p.num_experts);
  const bool one = cfg.single_block;
  const unsigned nb = static_cast<unsigned>(cfg.blocks);
  const int threads = cfg.threads;
  if (p.num_experts <= 32) {
    if (!one && p.expert_counts &&
        cudaMemsetAsync(p.expert_counts, 0, sizeof(std::int32_t) * p.num_experts, stream) !=
            cudaSuccess) {
      return Status::kLaunchFailed;
    }
    if (p.logits_dtype == DType::kF32) {
      router_small_kernel<float><<<nb, threads, 0, stream>>>(
          static_cast<const float*>(p.logits), p.tokens, p.num_experts, p.k, p.renormalize,
          p.topk_ids, p.topk_weights, p.expert_counts, one);
    } else {
      router_small_kernel<bf16><<<nb, threads, 0, stream>>>(
          static_cast<const bf16*>(p.logits), p.tokens, p.num_experts, p.k, p.renormalize,
          p.topk_ids, p.topk_weights, p.expert_counts, one);
    }
    return detail::launch_status();
  }
  const bool single = one;
  const unsigned blocks = nb;
  if (!single && p.expert_counts) {
    if (cudaMemsetAsync(p.expert_counts, 0, sizeof(std::int32_t) * p.num_experts, stream) !=
        cudaSuccess) {
      return Status::kLaunchFailed;
    }
  }
  if (p.logits_dtype == DType::kF32) {
    router_kernel<float><<<blocks, threads, 0, stream>>>(
        static_cast<const float*>(p.logits), p.tokens, p.num_experts, p.k, p.renormalize,
        p.topk_ids, p.topk_weights, p.expert_counts, single);
  } else {
    router_kernel<bf16><<<blocks, threads, 0, stream>>>(
        static_cast<const bf16*>(p.logits), p.tokens, p.num_experts, p.k, p.renormalize, p.topk_ids,
        p.topk_weights, p.expert_counts, single);
  }
  return detail::launch_status();
}

Status launch_permute(const PermuteParams& p, cudaStream_t stream) {
  if (permute_problem(p)) return Status::kInvalidArgument;
  const int n = p.tokens * p.k;
  if (n <= kFusedMaxAssign && p.num_experts <= kFusedMaxExperts) {
    const int blocks = std::min((n + kFusedWarps - 1) / kFusedWarps, 1024);
    permute_fused_kernel<<<blocks, kFusedWarps * 32, 0, stream>>>(
        p.x, p.topk_ids, p.expert_counts, n, p.k, p.num_experts, p.capacity, p.hidden, p.permuted_x,
        p.permuted_row, p.source_token, p.expert_offsets);
    return detail::launch_status();
  }
  const int warps = std::min(32, p.num_experts);
  permute_plan_kernel<<<(p.num_experts + warps - 1) / warps, warps * 32, 0, stream>>>(
      p.topk_ids, p.expert_counts, n, p.k, p.num_experts, p.capacity, p.permuted_row,
      p.source_token, p.expert_offsets);
  if (cudaGetLastError() != cudaSuccess) return Status::kLaunchFailed;
  const std::int64_t rows = permuted_rows(p.tokens, p.k, p.num_experts, p.capacity);
  permute_gather_kernel<<<grid_for(rows * (p.hidden / 8), 256), 256, 0, stream>>>(
      p.x, p.source_token, p.permuted_x, rows, p.hidden);
  return detail::launch_status();
}

Status launch_combine(const CombineParams& p, cudaStream_t stream) {
  if (combine_problem(p)) return Status::kInvalidArgument;
  combine_kernel<<<grid_for(std::int64_t{p.tokens} * (p.hidden / 8), 256), 256, 0, stream>>>(p);
  return detail::launch_status();
}

}  // namespace masep::kernels
