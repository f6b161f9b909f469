// Decode-attention variants that were measured and lost to the default path on H100/H200
// (docs/kernels.md, docs/notes/kernels-history.md), kept so that the kernel bench can re-measure
// them on a new card and the GPU tests keep them correct — but out of the launch API the
// executor and the profiler use (attention.hpp). Each field is additive: a default-constructed
// DecodeAttentionExperiment launches exactly what launch_decode_attention(p, stream) does.
#pragma once

#include <cstddef>
#include <cstdint>

#include "masep/kernels/attention.hpp"

namespace masep::kernels {

struct DecodeAttentionExperiment {
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

/// check_decode_attention with the experiment's fields checked too.
void check_decode_attention(const DecodeAttentionParams& p, const DecodeAttentionExperiment& x);

/// launch_decode_attention with the experiment's variants.
Status launch_decode_attention(const DecodeAttentionParams& p, const DecodeAttentionExperiment& x,
                               cudaStream_t stream);

}  // namespace masep::kernels
