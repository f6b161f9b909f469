// Host-side sizing of decode attention (attention_config.hpp). Plain C++: no CUDA.
#include "masep/kernels/attention_config.hpp"

#include <algorithm>

namespace masep::kernels {

namespace {

std::size_t align256(std::size_t n) { return (n + 255) / 256 * 256; }
// Workspace header: the fused-merge counters, at offset 0 whatever the launch's shape.
constexpr std::size_t kHeaderBytes = (kDecodeAttentionMergeCounters * 4 + 255) / 256 * 256;

// Split count for the tensor-core kernel from a small cost model: `items` blocks per split,
// `slots` blocks resident at once; time ~ waves * (64-token tiles per block + 1), the +1
// standing for a block's fixed cost (pipeline fill, merge, workspace write). Splits are at
// least one tile; ties go to fewer splits. Measured on the H100 (docs/kernels.md): for
// Mixtral b=8 ctx=8192 the model's 4 splits were the fastest of 2..64.
int tc_num_splits(long items, int max_context, long slots) {
  return wave_cost_num_splits(items, max_context, slots, kDecodeAttentionTileTokens);
}

// "Slots" per SM in the cost model. Two head_dim-128 blocks fit per SM (shared memory:
// 3 stages x 2 x 64 tokens x 256 bytes), but the H100 sweeps showed one long block per SM
// streaming as fast as two half-length ones (b=8 ctx=8192 GQA: 2 splits 93 us, 4 splits
// 96 us; MHA b=1 ctx=8192: 4 splits 50 us, 8 splits 52 us), so a slot is an SM (two for
// head_dim 64, whose blocks are half the size).
int tc_blocks_per_sm(int head_dim) { return head_dim == 64 ? 2 : 1; }

}  // namespace

int wave_cost_num_splits(long items, int max_context, long slots, int tile_tokens) {
  items = std::max(1L, items);
  slots = std::max(1L, slots);
  const long tile = std::max(1, tile_tokens);
  const long ctx = std::max(1, max_context);
  int best = 1;
  long best_cost = -1;
  for (int s = 1; s <= 64; ++s) {
    const long chunk = (ctx + s - 1) / s;
    if (s > 1 && chunk < tile) break;
    const long tiles = (chunk + tile - 1) / tile;
    const long waves = (items * s + slots - 1) / slots;
    const long cost = waves * (tiles + 1);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best = s;
    }
  }
  return best;
}

std::size_t decode_attention_workspace_bytes(int batch, int num_heads, int head_dim,
                                             int num_splits) {
  const std::size_t rows = std::size_t(batch) * num_heads * num_splits;
  return kHeaderBytes + align256(rows * head_dim * sizeof(float)) +
         2 * align256(rows * sizeof(float));
}

int decode_attention_num_splits(int batch, int num_kv_heads, int max_context, int sm_count) {
  // The default kernel is the tensor-core one; without the head counts, assume groups of at
  // most 16 query heads per kv head and head_dim 128.
  return tc_num_splits(long{batch} * num_kv_heads, max_context,
                       long{std::max(1, sm_count)} * tc_blocks_per_sm(128));
}

int decode_attention_num_splits(int batch, int num_heads, int num_kv_heads, int head_dim,
                                int max_context, int sm_count) {
  const long group = num_kv_heads > 0 ? std::max(1, num_heads / num_kv_heads) : 1;
  const long items = long{batch} * num_kv_heads *
                     ((group + kDecodeAttentionBlockHeads - 1) / kDecodeAttentionBlockHeads);
  return tc_num_splits(items, max_context,
                       long{std::max(1, sm_count)} * tc_blocks_per_sm(head_dim));
}

int decode_attention_num_splits(int batch, int num_heads, int num_kv_heads, int head_dim,
                                int max_context, int sm_count, double peak_memory_GBps) {
  const int model =
      decode_attention_num_splits(batch, num_heads, num_kv_heads, head_dim, max_context, sm_count);
  const long group = num_kv_heads > 0 ? std::max(1, num_heads / num_kv_heads) : 1;
  const long blocks = long{batch} * num_kv_heads *
                      ((group + kDecodeAttentionBlockHeads - 1) / kDecodeAttentionBlockHeads);
  if (model > 1 && blocks > 0 && peak_memory_GBps > 0.0 && 2 * blocks <= sm_count &&
      blocks * kDecodeAttentionBlockGBps >= 0.8 * peak_memory_GBps) {
    return 1;
  }
  return model;
}

}  // namespace masep::kernels
