// Launch configurations of kernels whose grid depends on the problem size, as pure functions
// (no CUDA headers), so that the CPU unit tests can check them without a GPU.
#pragma once

namespace masep::kernels {

/// Grid of one launch: `blocks` x `threads`. `single_block`: the whole problem is handled by
/// one block, which then writes per-expert counts directly (no memset, no atomics to global).
struct LaunchConfig {
  int blocks = 0;
  int threads = 0;
  bool single_block = false;
};

/// Largest block of the router's few-experts kernel (<= 32 experts, one thread per token).
/// The kernel is compiled with __launch_bounds__ of this value, so ptxas keeps its registers
/// within 65536 / kRouterSmallMaxThreads per thread and every launch of it fits on an SM.
/// (Before, the single-block path launched tokens rounded up to 32 threads with no bound:
/// 1024 threads x 70 registers > 65536, so 1024 tokens failed to launch.)
inline constexpr int kRouterSmallMaxThreads = 512;
/// Threads per block of the router's few-experts kernel when several blocks are launched.
inline constexpr int kRouterSmallMultiThreads = 256;
/// Tokens up to which the router's many-experts kernel runs as one block.
inline constexpr int kRouterSingleBlockTokens = 1024;
/// Tokens up to which the few-experts kernel runs as one block (one pass of its threads).
/// Measured on an H200 (docs/kernels.md): 1024 tokens as one 512-thread block (two passes)
/// took 11.3 us, 2048 tokens on 8 blocks 6.5 us, so beyond one pass it uses several blocks.
inline constexpr int kRouterSmallSingleBlockTokens = kRouterSmallMaxThreads;
/// Threads per block of the router's many-experts kernel (one warp per token; compiled with
/// __launch_bounds__ of this value).
inline constexpr int kRouterWideThreads = 1024;

/// Cap on the router's grid (its kernels loop over tokens with a stride of the grid).
inline constexpr int kRouterMaxBlocks = 65535 * 8;

/// Grid of launch_router_topk() for `tokens` > 0 and `num_experts` in [1, 256]. The
/// few-experts kernel (num_experts <= 32) loops over tokens with a stride of the whole grid;
/// it runs as one block up to kRouterSmallSingleBlockTokens tokens, the many-experts kernel up
/// to kRouterSingleBlockTokens.
constexpr LaunchConfig router_launch_config(int tokens, int num_experts) {
  LaunchConfig c;
  c.single_block =
      tokens <= (num_experts <= 32 ? kRouterSmallSingleBlockTokens : kRouterSingleBlockTokens);
  if (num_experts <= 32) {
    if (c.single_block) {
      const int rounded = (tokens + 31) / 32 * 32;
      c.threads = rounded < kRouterSmallMaxThreads ? rounded : kRouterSmallMaxThreads;
      c.blocks = 1;
    } else {
      c.threads = kRouterSmallMultiThreads;
      c.blocks = (tokens + c.threads - 1) / c.threads;
    }
  } else {
    c.threads = kRouterWideThreads;
    // The many-experts kernel's warps loop over tokens; 4 tokens a warp per block.
    const int per_block = kRouterWideThreads / 32 * 4;
    c.blocks = c.single_block ? 1 : (tokens + per_block - 1) / per_block;
  }
  // Both kernels loop over tokens, so the grid may be capped.
  if (c.blocks > kRouterMaxBlocks) c.blocks = kRouterMaxBlocks;
  return c;
}

}  // namespace masep::kernels
