// Attention-side load balancing (issue 17): which sequences each attention replica (and
// micro-batch) decodes. The compiler cuts the batch into R × B contiguous chunks (R replicas,
// B micro-batches; chunk c = mb · R + r, sizes part(batch, R·B, c)), and a chunk's attention
// time grows with the KV tokens of its sequences, so with a wide context distribution the
// replica that drew the long sequences sets the step. plan.balance.attention:
//
//   static     sequence j sits at position j (the workload's sampled order), as before.
//   predicted  the chunk sizes stay (tokens per attention rank, the MoE side and the
//              micro-batch shape are unchanged); which sequences fill them is chosen by the
//              predicted attention time of each chunk (TimePredictor::attention_ns with the
//              plan's local head shape and the chunk's largest KV shard), at the sequences'
//              mean length over the run (context + (decode_steps + 1) / 2):
//              (1) longest first, each sequence to the chunk with room whose predicted time
//                  after taking it is least (ties: lower chunk);
//              (2) while a swap of two sequences between the slowest chunk and another
//                  lowers the larger of the two chunks' predicted times, the best such swap
//                  among, for each sequence of the slowest chunk, the other chunk's two
//                  sequences nearest the length that would even the pair (at most
//                  min(batch, 256) rounds, O(batch · log batch) each).
//              Every sequence grows one token per step, so every chunk of a size gains the
//              same KV per step and the assignment stays balanced as contexts grow: it is
//              made once (re-assigning would move KV caches for no predicted gain in this
//              workload model, which has no sequences finishing or arriving).
//
// The result is an order of the workload's sequences (position → sampled sequence); the
// compiler, the fault remapper and the executor read context lengths in that order
// (placed_context_lengths), so every back end sees the same assignment.
//
// Units: ns (double), tokens. Deterministic: ties go to the lower index. CPU-only.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "masep/plan/scenario.hpp"
#include "masep/plan/time_predictor.hpp"

namespace masep::plan {

/// Predicted attention time of one chunk for the balancer: its sequence count and the KV
/// tokens of its largest sequence-parallel shard, ns. Owned by the caller; must be
/// deterministic.
struct AttentionChunkCost {
  const TimePredictor* tp = nullptr;
  int32_t heads = 1, kv_heads = 1, head_dim = 1;  ///< local head shape of one attention GPU
  int sequence_parallel = 1;                      ///< KV shards per sequence
  int dtype_bytes = 2;                            ///< KV / activation element size
  /// Predicted time of a chunk of `sequences` sequences of lengths summing to `kv_tokens`,
  /// on one GPU of its replica: its KV shard taken as ceil(kv_tokens / sp) (part() splits
  /// each sequence within one token).
  double operator()(int64_t sequences, int64_t kv_tokens) const;
};

/// The chunk cost of scenario `s` (its plan's head_parallel / sequence_parallel, or the
/// co-located tensor_parallel) under predictor `tp` (kept by pointer).
AttentionChunkCost attention_chunk_cost(const Scenario& s, const TimePredictor& tp);

/// Sizes of the compiler's R × B chunks in chunk order (c = mb · R + r).
std::vector<int64_t> attention_chunk_sizes(const Scenario& s);

/// Assigns sequences of lengths `lengths` to chunks of sizes `chunk_sizes` (Σ = lengths'
/// size) as the predicted policy does, minimising the largest predicted chunk time. Returns
/// order[position] = sequence index, positions chunk by chunk, each chunk's sequences in
/// ascending index. Throws std::invalid_argument when the sizes do not add up or are negative.
std::vector<int32_t> assign_sequences(std::span<const int64_t> lengths,
                                      std::span<const int64_t> chunk_sizes,
                                      const AttentionChunkCost& cost);

/// The position → sampled-sequence order of scenario `s`: identity for static, else
/// assign_sequences at the mean lengths over the run with the scenario's datasheet predictor.
std::vector<int32_t> sequence_order(const Scenario& s);

/// The context lengths the compiler uses, position by position:
/// sample_context_lengths(s.workload) permuted by sequence_order(s).
std::vector<int32_t> placed_context_lengths(const Scenario& s);

/// One way to split an attention replica's t GPUs: head_parallel × sequence_parallel = t.
struct AttentionSplit {
  int head_parallel = 1, sequence_parallel = 1;
  /// Predicted busy time of the busiest attention GPU in the first decode step: Σ
  /// TimePredictor::op_ns of its ops (compute and communication, no overlap), ns.
  double predicted_ns = 0;
};

/// Every head × sequence split of scenario `s`'s MA attention replicas (t = head_parallel ·
/// sequence_parallel GPUs each, replicas unchanged) that the plan allows (validate_scenario
/// accepts it: head_parallel divides the heads, ...), by ascending head_parallel, each with
/// its predicted time (one decode step compiled). Empty for a co-located plan. The split to
/// choose by predicted time is the one with the least predicted_ns (best_attention_split).
std::vector<AttentionSplit> attention_splits(const Scenario& s, const TimePredictor& tp);
/// Index of the least predicted_ns in `splits` (ties: the lower head_parallel); −1 if empty.
int best_attention_split(const std::vector<AttentionSplit>& splits);

/// Predicted attention time of every chunk for the given per-position lengths, ns.
std::vector<double> chunk_attention_ns(std::span<const int64_t> lengths_by_position,
                                       std::span<const int64_t> chunk_sizes,
                                       const AttentionChunkCost& cost);

}  // namespace masep::plan
