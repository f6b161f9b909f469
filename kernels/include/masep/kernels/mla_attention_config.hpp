// Host-side sizing of the MLA decode-attention kernel (kernels/src/mla_attention.cu): how many
// query heads one block takes, how many KV splits a launch uses and how much workspace it
// needs. Pure functions with no CUDA headers (library masep_kernels_ref), so the executor's
// CPU lowering and its unit tests size launches exactly as the kernel expects, on any machine.
// Beside attention_config.hpp (the MHA/GQA kernel's sizing).
#pragma once

#include <cstddef>

namespace masep::kernels {

/// Latent (kv_lora_rank) and rope widths the kernel is compiled for (DeepSeek-V2/V3, Kimi K2).
inline constexpr int kMlaLatentDim = 512;
inline constexpr int kMlaRopeDim = 64;

/// Query heads per block: 16 x (1, 2 or 4) row groups of the mma's M = 16. A launch with
/// `num_heads` heads uses blocks of min(64, num_heads rounded up to 16) heads.
int mla_attention_block_heads(int num_heads);

/// Tokens per KV tile of the block that mla_attention_block_heads(num_heads) picks (a split
/// holds whole tiles): 64 for blocks of 16 or 32 heads, 32 for blocks of 64 heads.
int mla_attention_tile_tokens(int num_heads);

/// Bytes of workspace a launch with these sizes needs (partial outputs, kMlaLatentDim fp32 per
/// (sequence, head, split), then the running max and sum per row; 0 when num_splits == 1: the
/// kernel then writes the output itself).
std::size_t mla_attention_workspace_bytes(int batch, int num_heads, int num_splits);

/// A split count from a cost model over `sm_count` SMs (one block per SM resident: the
/// kernel's shared memory allows no more): waves of batch x head blocks x splits blocks times
/// (tiles per split + 1), splits of at least one tile of `max_context` tokens, at most 64; ties
/// go to fewer splits. Pure function.
int mla_attention_num_splits(int batch, int num_heads, int max_context, int sm_count);

}  // namespace masep::kernels
