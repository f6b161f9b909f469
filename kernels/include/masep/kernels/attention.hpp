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
  // fused_merge is set (see there).
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
  // Tensor-core kernel: shared-memory stages of the K/V pipeline (2, 3 or 4); 0 = default (3).
  // Since 2026-11-27 (additive): on cards with >= 4 TB/s peak memory bandwidth (the H200), the
  // default 2-split cluster launch (split_merge 0, head_dim 128, 4 warps) uses 4, and every
  // 2-split cluster launch with head_dim 128 and static tiles appends the new token at the
  // kernel's start and merges the pair without DSMEM loads (measured, docs/kernels.md).
  int pipeline_stages = 0;
  // In-kernel split merge (additive; false keeps the earlier behaviour). True promises that
  // the workspace was zeroed once by decode_attention_workspace_init() after allocation and
  // that since then only decode-attention launches (one at a time, any shapes) have used it.
  // The tensor-core kernel with num_splits > 1 then merges the splits itself: the last block
  // of each (sequence, kv head, head group) to finish, found with an atomic counter in the
  // workspace's header, merges the others' partials and writes `out`/`lse`, and resets its
  // counter to zero (atomicInc wrap), so the workspace stays valid for the next launch; no
  // reduce kernel is launched. Falls back to the reduce kernel when batch x kv_heads x
  // ceil(group / 16) exceeds kDecodeAttentionMergeCounters or the CUDA-core kernel runs.
  // A launch aborted mid-way (device error) may leave counters non-zero: re-initialise.
  // Measured slower than the reduce kernel for GQA on an H200 (docs/kernels.md); keep it off
  // unless a measurement on your shapes says otherwise.
  bool fused_merge = false;
  // Tensor-core kernel: warps per block, 4 or 8 (tiles of 16 x warps tokens, so splits are
  // whole 64- or 128-token tiles); 0 = default: 8 on sm_90 devices with the shared memory
  // for it when num_splits == 1 and the launch has at most one block per two SMs (measured faster
  // there on the H100 and the H200: Mixtral b=8 ctx=2048 27.3 vs 31.6 us and 23.9 vs 30.1 us;
  // b=8 ctx=8192 92.8 vs 111.7 and 77.7 vs 106.2 us), else 4. 8 warps need pipeline_stages <= 3 and
  // 2 x stages x 128 x head_dim x 2 bytes of shared memory per block (192 KB at head_dim 128
  // and 3 stages: sm_90 only; kLaunchFailed where the device has less).
  int block_warps = 0;
  // Tensor-core kernel with num_splits > 1: how the splits are merged (fused_merge, when it
  // applies, takes precedence):
  //   0 = default: 2 on sm_90 when num_splits == 2 and the launch has at most one block per
  //       SM (batch x num_kv_heads x ceil(group / 16) x 2 <= SMs), else 1 (measured,
  //       docs/kernels.md);
  //   1 = partials in the workspace, then the reduce kernel;
  //   2 = the splits of each (sequence, kv head, 16-head sub-group) run as one thread-block
  //       cluster and merge through distributed shared memory, no reduce kernel, workspace
  //       unused (sm_90 and num_splits <= 8; otherwise 1 is used).
  int split_merge = 0;
  // Tensor-core kernel with num_splits > 1: dynamic tiles (additive; false keeps the static
  // splits). The num_splits blocks of each (sequence, kv head, 16-head sub-group) claim its
  // tiles one at a time from a counter in the workspace header instead of each taking a fixed
  // 1/num_splits, so blocks that stream faster take more tiles and all finish together. Same
  // promise as fused_merge (workspace zeroed once by decode_attention_workspace_init(), then
  // only decode-attention launches); the counters return to zero by themselves. Which block
  // sums which tiles depends on timing, so results may differ between launches in the last
  // bits (not bit-reproducible). Excludes fused_merge; pipeline_stages 0 or 3. Falls back to
  // static splits beyond kDecodeAttentionMergeCounters groups.
  bool dynamic_splits = false;
  // Tensor-core kernel: programmatic dependent launch (sm_90; additive). The kernel waits
  // (griddepcontrol.wait) for the previous kernel in the stream to complete before it reads
  // anything, so it is correct after any predecessor; launched with
  // cudaLaunchAttributeProgrammaticStreamSerialization, its blocks are dispatched while the
  // predecessor still runs (if that one triggers early, as this kernel does at its start), which
  // hides the launch and block start-up, and lets the L2 prefetch below run before the wait.
  //   0 = default: off (measured slower on an H200, docs/notes/kernels-history.md "Where the
  //       time of the small launch goes": its blocks are placed on the SMs while the
  //       predecessor still holds them, two on some SMs, and the launch ends later);
  //       1 = off; 2 = on (sm_90; a plain launch where the driver refuses it). Needs
  //       pipeline_stages 0 or 3 and neither fused_merge nor dynamic_splits (checked).
  int programmatic_launch = 0;
  // Tensor-core kernel: 64/128-token tiles of K and V each block prefetches into L2 at its
  // start with cp.async.bulk.prefetch (sm_90; ignored below), before the programmatic wait.
  // The length used for it is read before the wait (it may be stale then; a prefetch does not
  // change results, and it is clamped to the cache). -1 = default (none: 1-16 tiles measured
  // slower on an H200, docs/kernels.md), 0 = none, 1..16 tiles. Same restrictions as above.
  int l2_prefetch_tiles = -1;
  // Diagnostics (tensor-core kernel): if set, thread 0 of every block writes 8 %globaltimer
  // stamps (ns) at trace[8 * blockIdx.x + i]: 0 entry, 1 after the programmatic wait, 2 first
  // tile in shared memory, 3 last tile computed, 4 output written (merge done); with the
  // cluster merge 5..7 are SM cycles (clock64) from stamp 3 to: the warp merge done, past the
  // first cluster barrier, the cluster merge and output done (else 5..7 unused).
  // Device memory of 8 x (blocks of the launch) words; null: nothing written. Runs a separate
  // kernel instantiation (same restrictions as above); the default kernels have no stamps.
  std::uint64_t* trace = nullptr;
  // Tensor-core kernel, static splits: each block walks its split's tiles starting at tile
  // (7 x blockIdx) mod tiles and wrapping around, so the blocks' concurrent reads sit at
  // different offsets of their (256-KB-aligned) regions instead of in lockstep (additive; false
  // keeps the in-order walk). Results differ from the in-order walk in the last bits. Measured
  // slower on an H200 (docs/kernels.md); same restrictions as programmatic_launch.
  bool rotate_tiles = false;
};

/// Zeroes the workspace header that `fused_merge` needs (once, after allocation; `bytes` is
/// the workspace size, at least decode_attention_workspace_bytes(...) of the launches that
/// will use it). Asynchronous on `stream`. kInvalidArgument for a null or too small workspace.
Status decode_attention_workspace_init(void* workspace, std::size_t bytes, cudaStream_t stream);

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
