// How the batch's sequences are split over the data-parallel attention replicas and the
// micro-batches: the one partition the compiler, the memory check, the expert-load sampler
// and the fault re-mapping all use. Chunks are ordered micro-batch first, then replica
// (chunk c = mb · replicas + r), and are contiguous runs of global sequence indices: chunk c
// starts at floor(batch · W_c / W), where W_c is the weight of the chunks before c and W the
// weight of all (every micro-batch holds each replica once, with the replica's weight). With
// equal weights that is batch · c / chunks (32 over 3 replicas: 10, 11, 11).
#pragma once

#include <cstdint>
#include <vector>

#include "masep/plan/scenario.hpp"

namespace masep::plan {

/// A batch split into replicas × micro_batches chunks of contiguous sequences. Value type.
struct BatchSplit {
  int replicas = 0;
  int micro_batches = 0;
  /// boundaries[c]: first sequence of chunk c (c = mb · replicas + r); boundaries[chunks] =
  /// the batch.
  std::vector<int64_t> boundaries;

  /// First global sequence of (replica r, micro-batch mb).
  int64_t first(int r, int mb) const { return boundaries[index(r, mb)]; }
  /// Sequences of (replica r, micro-batch mb).
  int64_t size(int r, int mb) const { return boundaries[index(r, mb) + 1] - first(r, mb); }
  /// Sequences of replica r over all micro-batches.
  int64_t replica_sequences(int r) const;
  /// The fewest sequences of any chunk.
  int64_t smallest_chunk() const;

 private:
  size_t index(int r, int mb) const {
    return static_cast<size_t>(mb) * static_cast<size_t>(replicas) + static_cast<size_t>(r);
  }
};

/// Splits `batch` sequences over weights.size() replicas (weights > 0, relative) and
/// `micro_batches` micro-batches as described above. Throws std::invalid_argument on a
/// negative batch, no replica, a weight <= 0 or micro_batches <= 0.
BatchSplit split_batch(int64_t batch, int micro_batches, const std::vector<int64_t>& weights);

/// The plan's replica weights: MA separation with listed replicas (AttentionPlan::replica_list)
/// their batch_share, or their GPU counts when none is given; otherwise one per replica (equal
/// shares; co-located: gpus / tensor_parallel replicas).
std::vector<int64_t> replica_weights(const PlanSpec& p);

/// The scenario's split: split_batch(workload.batch, plan.micro_batches, replica_weights(plan)).
BatchSplit split_batch(const Scenario& s);

}  // namespace masep::plan
