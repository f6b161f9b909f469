// Memory per GPU of a plan: weights, KV cache, activations and communication buffers, in
// bytes, checked against each GPU's HBM.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/scenario.hpp"

namespace masep::plan {

/// Bytes one plan rank needs, by part.
struct MemoryBreakdown {
  int32_t rank = 0;              ///< plan rank
  int64_t weights = 0;           ///< attention and/or expert weights held
  int64_t kv_cache = 0;          ///< KV cache for the sequences held, at the last step
  int64_t activations = 0;       ///< peak live activations of one layer (all micro-batches)
  int64_t comm_buffers = 0;      ///< send/recv and collective staging buffers
  int64_t total() const { return weights + kv_cache + activations + comm_buffers; }
};

/// Computes the breakdown for every plan rank (rank order of the Program).
std::vector<MemoryBreakdown> plan_memory(const Scenario& s);

/// Throws InfeasiblePlan with a per-rank table when any rank exceeds the GPU's HBM.
void check_memory(const Scenario& s, const std::vector<MemoryBreakdown>& mem);

}  // namespace masep::plan
