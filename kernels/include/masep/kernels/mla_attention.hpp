// Multi-head Latent Attention (MLA) decode with absorbed projections (DeepSeek-V2/V3): one
// query token per sequence, `num_heads` query heads that all attend over ONE latent KV stream
// per sequence. A cache entry is the token's compressed KV latent c_kv (kMlaLatentDim = 512
// wide, kv_lora_rank) followed by its rotary key part k_rope (kMlaRopeDim = 64), bf16. With
// the up-projections absorbed (q_lat_h = q_nope_h . W_UK_h, done before this kernel; the
// output is multiplied by W_UV_h after it):
//   score_h(t) = scale * (q_lat_h . c_kv(t) + q_rope_h . k_rope(t))
//   out_h      = sum_t softmax_t(score_h) * c_kv(t)               (kMlaLatentDim wide)
// The launch also appends the new token's c_kv | k_rope to the cache.
//
// KV cache layout ("token-major, per-sequence contiguous"):
//   cache[seq][slot][e], seq < batch, slot < max_kv_len (capacity), e < 576 (c_kv then k_rope)
//   element index = (seq * max_kv_len + slot) * 576 + e
// so one sequence is a contiguous [max_kv_len, 576] block (1152 bytes a token).
//
// Lengths (as attention.hpp): kv_lens[b] (device int32) is the number of tokens in the cache
// for sequence b BEFORE this step. With c_kv_new/k_rope_new given, the launch writes them to
// slot kv_lens[b] and attends over kv_lens[b] + 1 tokens; with both null it attends over
// kv_lens[b] tokens (then >= 1). kv_lens is not modified (launch_advance_kv_lens() in
// attention.hpp advances it). A sequence whose cache is full (or whose length is out of range)
// gets NaN output rather than a write past its cache.
//
// Kernel: one 8-warp block per (sequence, block of 16/32/64 query heads, KV split); the head
// block's Q (latent and rope parts) sits in shared memory; the block streams its split of the
// cache in tiles of 64 (32 for 64-head blocks) tokens with cp.async, double/triple buffered,
// and every tile is read from memory once for all the block's heads: S = Q K^T over the
// 576-wide rows and O += P V over the 512 latent columns (V is the c_kv part of the same
// tile) on mma.sync m16n8k16 bf16 with fp32 accumulation; online softmax in fp32 (exp2 with
// log2(e)-scaled logits); P rounded to bf16 for P V. The head blocks of one (sequence, split)
// are adjacent in the grid so they read the tile from L2 together. With num_splits > 1 each
// block writes an unnormalised partial to the workspace and a reduce kernel (one warp per
// (sequence, head)) merges the splits; with one split the block writes `out` directly.
// Choose num_splits with mla_attention_num_splits() and size the workspace with
// mla_attention_workspace_bytes() (mla_attention_config.hpp). Shared memory is about 170-190
// KB a block: sm_90 (H100/H200) or sm_80 (A100) opt-in sizes; kLaunchFailed where the device
// has less.
#pragma once

#include "masep/kernels/mla_attention_config.hpp"
#include "masep/kernels/status.hpp"
#include "masep/kernels/types.hpp"

namespace masep::kernels {

struct MlaAttentionParams {
  // Query, latent part: element (b, h, e < 512) at q_lat + b * q_lat_seq_stride +
  // h * q_lat_head_stride + e. Strides in elements; 0 means contiguous [batch, heads, 512].
  // (The absorbed-K grouped GEMM writes head-major rows [heads][batch][512]: seq stride 512,
  // head stride batch * 512.)
  const bf16* q_lat = nullptr;
  std::int64_t q_lat_seq_stride = 0;
  std::int64_t q_lat_head_stride = 0;
  // Query, rope part: element (b, h, e < 64) at q_rope + b * q_rope_seq_stride +
  // h * q_rope_head_stride + e; 0 strides mean contiguous [batch, heads, 64].
  const bf16* q_rope = nullptr;
  std::int64_t q_rope_seq_stride = 0;
  std::int64_t q_rope_head_stride = 0;
  // New token's c_kv [batch, 512] and k_rope [batch, 64], row b at ptr + b * stride (0: the
  // width), so the caller may point into the fused down-projection output. Both null: append
  // nothing.
  const bf16* c_kv_new = nullptr;
  std::int64_t c_kv_new_stride = 0;
  const bf16* k_rope_new = nullptr;
  std::int64_t k_rope_new_stride = 0;
  bf16* kv_cache = nullptr;               // layout above; written at slot kv_lens[b]
  const std::int32_t* kv_lens = nullptr;  // device [batch], tokens before this step
  // Output: element (b, h, e < 512) at out + b * out_seq_stride + h * out_head_stride + e;
  // 0 strides mean contiguous [batch, heads, 512].
  bf16* out = nullptr;
  std::int64_t out_seq_stride = 0;
  std::int64_t out_head_stride = 0;
  // Optional log-sum-exp of the scaled scores, natural log, [batch, heads] fp32. Null: none.
  float* lse = nullptr;
  // Workspace of mla_attention_workspace_bytes(batch, num_heads, num_splits) bytes (device
  // memory, 16-byte aligned, no initialisation); may be null when that is 0 (one split).
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;

  int batch = 0;
  int num_heads = 0;   // query heads of this rank (any count >= 1)
  int max_kv_len = 0;  // cache capacity per sequence, in tokens
  int num_splits = 1;  // >= 1
  float scale = 0.f;   // softmax scale, required (> 0): 1/sqrt(qk_nope + qk_rope) x mscale
  // Tokens per KV tile (additive; 0 keeps the default): 0 = the default (mla_attention_config.hpp:
  // 64 for 16/32-head blocks, 32 with 3 stages for 64-head blocks); 64 = 64-token tiles for
  // every block (64-head blocks: 2 stages, ~226 KB of shared memory: Q is re-read from shared
  // memory once per tile, so longer tiles read it less often); 32 = 32-token tiles, 3 stages
  // (16-head blocks then run as 32-head blocks). Splits stay whole tiles of the size used.
  // kLaunchFailed where the device lacks the shared memory.
  int tile_tokens = 0;
};

/// Throws std::invalid_argument naming the first bad field (null pointers, strides not
/// multiples of 8 elements, unaligned pointers, scale <= 0, too small a workspace, ...).
void check_mla_attention(const MlaAttentionParams& p);

/// Appends c_kv_new | k_rope_new, attends, writes out (and lse). kInvalidArgument for the
/// conditions check_mla_attention() reports (without throwing), kLaunchFailed if a launch
/// fails (e.g. the device lacks the shared memory).
Status launch_mla_attention(const MlaAttentionParams& p, cudaStream_t stream);

}  // namespace masep::kernels
