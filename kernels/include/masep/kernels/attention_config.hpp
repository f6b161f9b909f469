// Host-side sizing of the decode-attention kernel (kernels/src/attention.cu): how many KV
// splits a launch uses and how much workspace it needs. Pure functions with no CUDA headers
// (library masep_kernels_ref), so the executor's CPU lowering (exec/lower) and its unit tests
// size launches exactly as the kernel expects, on any machine. Beside launch_config.hpp (the
// router's grid).
#pragma once

#include <cstddef>

namespace masep::kernels {

/// Counters in the workspace header (the first kDecodeAttentionMergeCounters * 4 bytes of
/// every decode-attention workspace, at a fixed offset so launches of different shapes can
/// share one workspace).
inline constexpr int kDecodeAttentionMergeCounters = 4096;

/// Tokens per tile of the default tensor-core block (16 tokens per warp × 4 warps); a split
/// holds at least one tile.
inline constexpr int kDecodeAttentionTileTokens = 64;

/// Query heads per tensor-core block (the mma's M).
inline constexpr int kDecodeAttentionBlockHeads = 16;

/// Streaming rate of one 8-warp tensor-core block (one per SM, 1 MB of K/V, direct output),
/// measured on the H100 and the H200 (2026-11-27, docs/kernels.md): about 40-45 GB/s.
inline constexpr double kDecodeAttentionBlockGBps = 44.0;

/// Bytes of workspace a launch with these sizes needs (a header of merge counters, then
/// partial outputs and softmax stats in fp32).
std::size_t decode_attention_workspace_bytes(int batch, int num_heads, int head_dim,
                                             int num_splits);

/// The split count of a split-KV decode launch from its wave cost: `items` blocks per split,
/// `slots` blocks resident at once, time ~ waves x (tiles of `tile_tokens` per block + 1), the
/// +1 standing for a block's fixed cost (pipeline fill, merge, workspace write); splits are at
/// least one tile, 1..64, ties go to fewer splits. Used by decode attention (64-token tiles)
/// and MLA attention (mla_attention_config.hpp).
int wave_cost_num_splits(long items, int max_context, long slots, int tile_tokens);

/// A split count for the default (tensor-core) kernel, assuming head_dim 128 and at most 16
/// query heads per kv head; prefer the overload below, which knows the head counts. Chosen
/// from a cost model over `sm_count` SMs (waves of resident blocks x 64-token tiles per
/// split), splits of at least 64 tokens of `max_context`, at most 64.
int decode_attention_num_splits(int batch, int num_kv_heads, int max_context, int sm_count);

/// A split count for the kernel that launch_decode_attention() picks by default (the
/// tensor-core kernel): the same cost model with (batch x kv heads x ceil(group / 16)) blocks
/// per split and the resident blocks per SM of this head_dim (2 for 128, 4 for 64).
int decode_attention_num_splits(int batch, int num_heads, int num_kv_heads, int head_dim,
                                int max_context, int sm_count);

/// The 6-argument split count, refined with the device's peak memory bandwidth in GB/s (see
/// decode_attention_peak_memory_GBps): one split (no merge; the launch then runs 8-warp
/// blocks, see block_warps) when the one-split launch has at most sm_count / 2 blocks and
/// those blocks, each streaming kDecodeAttentionBlockGBps, reach 80% of the peak; else the
/// 6-argument model (also for a peak of 0: unknown). Measured: Mixtral b=8 ctx=2048 (64 blocks) on
/// the H100 (3.35 TB/s peak) one split 27.3 us vs two 28.4 us; on the H200 (4.9 TB/s) 23.9 vs 22.2
/// us, and this rule keeps two there. Pure function.
int decode_attention_num_splits(int batch, int num_heads, int num_kv_heads, int head_dim,
                                int max_context, int sm_count, double peak_memory_GBps);

}  // namespace masep::kernels
