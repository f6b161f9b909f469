// Decode attention (flash-decoding): one query token per sequence, MHA and GQA, head_dim 64
// or 128, variable KV lengths, split-KV with a reduce pass. The launch also appends the new
// token's K and V to the cache.
//
// KV cache layout ("head-major, per-sequence contiguous"), for K and V separately:
//   cache[seq][kv_head][slot][d], seq < batch, kv_head < num_kv_heads,
//   slot < max_kv_len (capacity), d < head_dim
//   element index = ((seq * num_kv_heads + kv_head) * max_kv_len + slot) * head_dim + d
// so one (sequence, kv head) is a contiguous [max_kv_len, head_dim] block that a warp streams
// with 16-byte loads.
//
// Lengths: kv_lens[b] (device int32) is the number of tokens already in the cache for
// sequence b BEFORE this step. The launch writes k_new/v_new of sequence b to slot
// kv_lens[b] and attends over kv_lens[b] + 1 tokens (slots 0..kv_lens[b]). It does NOT
// modify kv_lens: call launch_advance_kv_lens() after the step (or keep lengths on the host
// and upload them). Requires kv_lens[b] < max_kv_len (checked on the device: a sequence
// whose cache is full writes NaN into its output rather than overrunning memory).
//
// Split-KV: each (sequence, kv head) is cut into num_splits chunks of about
// ceil((kv_lens[b]+1) / num_splits) tokens; a block (tensor-core kernel, the default) or a
// warp (CUDA-core kernel) per (seq, kv head, split) computes a partial softmax for the GQA
// group's query heads (num_heads / num_kv_heads) into the workspace, and a reduce kernel
// merges the splits (skipped by the tensor-core kernel when num_splits == 1). Choose
// num_splits with decode_attention_num_splits(); size the workspace with
// decode_attention_workspace_bytes().
//
// Numerics: scores and softmax in fp32 (exp2 with log2(e)-scaled logits), output bf16.
#pragma once

#include "masep/kernels/attention_config.hpp"
#include "masep/kernels/status.hpp"
#include "masep/kernels/types.hpp"

namespace masep::kernels {

struct DecodeAttentionParams {
  // Query: [batch, num_heads, head_dim]; row of sequence b starts at q + b * q_stride.
  const bf16* q = nullptr;
  std::int64_t q_stride = 0;  // elements between sequences; 0 means num_heads * head_dim
  // New token's K and V: [batch, num_kv_heads, head_dim] with the same stride rule, so the
  // caller may point into a fused QKV projection output. Null k_new/v_new: append nothing
  // and attend over kv_lens[b] tokens only (must then be >= 1).
  const bf16* k_new = nullptr;
  const bf16* v_new = nullptr;
  std::int64_t kv_new_stride = 0;  // elements between sequences; 0 means num_kv_heads*head_dim
  // Caches in the layout above; written at slot kv_lens[b] when k_new/v_new are given.
  bf16* k_cache = nullptr;
  bf16* v_cache = nullptr;
  const std::int32_t* kv_lens = nullptr;  // device [batch], tokens before this step
  // Output [batch, num_heads, head_dim], contiguous.
  bf16* out = nullptr;
  // Optional log-sum-exp of the scaled scores, natural log, [batch, num_heads] fp32, for
  // merging with other partial attentions (sequence parallelism). Null: not written.
  float* lse = nullptr;
  // Workspace of decode_attention_workspace_bytes(batch, num_heads, head_dim, num_splits)
  // bytes, device memory, 16-byte aligned; contents need no initialisation unless
  // an experiment needs it (fused_merge, dynamic_splits: attention_experiment.hpp).
  void* workspace = nullptr;
  std::size_t workspace_bytes = 0;

  int batch = 0;
  int num_heads = 0;     // query heads
  int num_kv_heads = 0;  // divides num_heads; any group size num_heads/num_kv_heads
  int head_dim = 0;      // 64 or 128
  int max_kv_len = 0;    // cache capacity per (sequence, kv head), in tokens
  int num_splits = 1;    // >= 1
  float scale = 0.f;     // softmax scale; 0 means 1/sqrt(head_dim)
  // Query heads one warp handles per KV read (1, 2, 4 or 8, dividing the group size) in the
  // CUDA-core kernel; 0 picks the default. A non-zero tile selects the CUDA-core kernel.
  int group_tile = 0;
  // Which split kernel runs (additive; the default keeps every earlier call valid):
  //   0 = automatic: the tensor-core kernel unless group_tile != 0 (then the CUDA-core one);
  //   1 = CUDA-core kernel (one warp per (seq, kv head, head tile, split), fp32 FMAs);
  //   2 = tensor-core kernel (one 4-warp block per (seq, kv head, 16 query heads, split):
  //       64-token K/V tiles staged in shared memory by cp.async, `pipeline_stages` deep,
  //       shared by the group's query heads; Q.K^T and P.V on mma.sync m16n8k16 bf16 with
  //       fp32 accumulation; P is rounded to bf16 for the P.V product). Its splits are
  //       whole 64-token tiles (ceil(len / num_splits) rounded up to 64; trailing splits may
  //       be empty). With num_splits == 1 it writes `out`/`lse` itself and the reduce kernel
  //       is not launched (the workspace is then unused).
  int kernel_variant = 0;
  // Variants measured and left out of the default path (fused in-kernel merge, dynamic tiles,
  // programmatic launch, L2 prefetch, tile rotation, timestamps) are set through
  // attention_experiment.hpp, for the kernel bench and the GPU tests.
  // Tensor-core kernel: shared-memory stages of the K/V pipeline (2, 3 or 4); 0 = default (3).
  // Since 2026-11-27 (additive): on cards with >= 4 TB/s peak memory bandwidth (the H200), the
  // default 2-split cluster launch (split_merge 0, head_dim 128, 4 warps) uses 4, and every
  // 2-split cluster launch with head_dim 128 and static tiles appends the new token at the
  // kernel's start and merges the pair without DSMEM loads (measured, docs/kernels.md).
  int pipeline_stages = 0;
  // Tensor-core kernel: warps per block, 4 or 8 (tiles of 16 x warps tokens, so splits are
  // whole 64- or 128-token tiles); 0 = default: 8 on sm_90 devices with the shared memory
  // for it when num_splits == 1 and the launch has at most one block per two SMs (measured faster
  // there on the H100 and the H200: Mixtral b=8 ctx=2048 27.3 vs 31.6 us and 23.9 vs 30.1 us;
  // b=8 ctx=8192 92.8 vs 111.7 and 77.7 vs 106.2 us), else 4. 8 warps need pipeline_stages <= 3 and
  // 2 x stages x 128 x head_dim x 2 bytes of shared memory per block (192 KB at head_dim 128
  // and 3 stages: sm_90 only; kLaunchFailed where the device has less).
  int block_warps = 0;
  // Tensor-core kernel with num_splits > 1: how the splits are merged (an experiment's
  // fused_merge, when it applies, takes precedence):
  //   0 = default: 2 on sm_90 when num_splits == 2 and the launch has at most one block per
  //       SM (batch x num_kv_heads x ceil(group / 16) x 2 <= SMs), else 1 (measured,
  //       docs/kernels.md);
  //   1 = partials in the workspace, then the reduce kernel;
  //   2 = the splits of each (sequence, kv head, 16-head sub-group) run as one thread-block
  //       cluster and merge through distributed shared memory, no reduce kernel, workspace
  //       unused (sm_90 and num_splits <= 8; otherwise 1 is used).
  int split_merge = 0;
};

/// Peak memory bandwidth of the current device in GB/s from its memory clock and bus width
/// (2 transfers a clock); 0 if the attributes cannot be read.
double decode_attention_peak_memory_GBps();

/// Throws std::invalid_argument naming the first bad field (null pointers, head_dim not 64
/// or 128, num_heads not a multiple of num_kv_heads, too small a workspace, ...).
void check_decode_attention(const DecodeAttentionParams& p);

/// Appends k_new/v_new, attends, writes out (and lse). Returns kInvalidArgument for the
/// same conditions check_decode_attention() reports (without throwing), kUnsupported for a
/// head_dim/group size without a compiled variant, kLaunchFailed if a launch fails.
Status launch_decode_attention(const DecodeAttentionParams& p, cudaStream_t stream);

/// kv_lens[b] += 1 for b < batch (after a step that appended a token).
Status launch_advance_kv_lens(std::int32_t* kv_lens, int batch, cudaStream_t stream);

}  // namespace masep::kernels
