#include "masep/plan/batch_split.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace masep::plan {

int64_t BatchSplit::replica_sequences(int r) const {
  int64_t n = 0;
  for (int mb = 0; mb < micro_batches; ++mb) n += size(r, mb);
  return n;
}

int64_t BatchSplit::smallest_chunk() const {
  int64_t least = boundaries.size() > 1 ? boundaries[1] - boundaries[0] : 0;
  for (size_t c = 1; c + 1 < boundaries.size(); ++c) {
    least = std::min(least, boundaries[c + 1] - boundaries[c]);
  }
  return least;
}

BatchSplit split_batch(int64_t batch, int micro_batches, const std::vector<int64_t>& weights) {
  if (batch < 0 || micro_batches <= 0 || weights.empty()) {
    throw std::invalid_argument("split_batch: needs a batch >= 0, micro_batches > 0 and a replica");
  }
  // Sums and products in 128 bits: batch (2^24) · micro-batches (2^10) · weights (GPU counts
  // up to 2^20 each) can pass 2^63.
  __extension__ typedef __int128 Wide;  // a GCC/Clang type; __extension__: no pedantic warning
  Wide per_mb = 0;
  for (int64_t w : weights) {
    if (w <= 0) throw std::invalid_argument("split_batch: replica weight " + std::to_string(w));
    per_mb += w;
  }
  BatchSplit s;
  s.replicas = static_cast<int>(weights.size());
  s.micro_batches = micro_batches;
  const Wide total = per_mb * micro_batches;
  s.boundaries.reserve(static_cast<size_t>(s.replicas) * micro_batches + 1);
  Wide before = 0;  // weight of the chunks before this one
  for (int mb = 0; mb < micro_batches; ++mb) {
    for (int64_t w : weights) {
      s.boundaries.push_back(static_cast<int64_t>(Wide{batch} * before / total));
      before += w;
    }
  }
  s.boundaries.push_back(batch);
  return s;
}

std::vector<int64_t> replica_weights(const PlanSpec& p) {
  if (p.kind == PlanKind::kMaSeparation) {
    const AttentionPlan& a = p.attention;
    if (!a.per_replica()) {
      return std::vector<int64_t>(static_cast<size_t>(std::max(0, a.replicas)), 1);
    }
    const bool shares = std::any_of(a.replica_list.begin(), a.replica_list.end(),
                                    [](const AttentionReplica& r) { return r.batch_share > 0; });
    std::vector<int64_t> w;
    w.reserve(a.replica_list.size());
    for (const AttentionReplica& r : a.replica_list) {
      w.push_back(shares ? r.batch_share
                         : static_cast<int64_t>(r.head_parallel) * r.sequence_parallel);
    }
    return w;
  }
  const ColocatedPlan& c = p.colocated;
  return std::vector<int64_t>(
      static_cast<size_t>(std::max(0, c.gpus / std::max(1, c.tensor_parallel))), 1);
}

BatchSplit split_batch(const Scenario& s) {
  return split_batch(s.workload.batch, s.plan.micro_batches, replica_weights(s.plan));
}

}  // namespace masep::plan
