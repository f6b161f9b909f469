// Memory per GPU of a plan: weights, KV cache, activations and communication buffers, in
// bytes, checked against each GPU's HBM. The formulas (upper bounds where the real figure
// depends on routing) are written out in plan/src/memory.cpp. Every GPU of a topology has
// the same GpuSpec, so capacity is topology.gpu.hbm_bytes() for every rank.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"
#include "masep/plan/scenario.hpp"

namespace masep::plan {

/// Bytes one plan rank needs, by part.
struct MemoryBreakdown {
  int32_t rank = 0;          ///< plan rank
  int64_t weights = 0;       ///< attention and/or expert weights held
  int64_t kv_cache = 0;      ///< KV cache for the sequences held, at the last step
  int64_t activations = 0;   ///< peak live activations of one layer (all micro-batches)
  int64_t comm_buffers = 0;  ///< send/recv and collective staging buffers
  const char* role = "";     ///< "attention", "moe" or "colocated" (static string)
  int64_t total() const { return weights + kv_cache + activations + comm_buffers; }
};

/// Computes the breakdown for every plan rank (rank order of the Program).
std::vector<MemoryBreakdown> plan_memory(const Scenario& s);

/// Throws InfeasiblePlan with a per-rank table when any rank exceeds the GPU's HBM.
void check_memory(const Scenario& s, const std::vector<MemoryBreakdown>& mem);

/// The per-rank table (rank, role, weights, KV, activations, buffers, total, HBM; GiB with
/// one decimal), ranks over capacity marked. Large plans: ranks with identical breakdowns
/// and role are folded into one row ("4-15"). For `masep plan` and check_memory's message.
std::string memory_table(const Scenario& s, const std::vector<MemoryBreakdown>& mem);

/// The ProgramTarget of scenario `s` (compile() sets Program::target with it): its origin, plan
/// kind, GPU datasheet, GPUs per node and the per-rank totals of `mem` (plan_memory(s)).
ProgramTarget plan_target(const Scenario& s, const std::vector<MemoryBreakdown>& mem);

/// The same, computing plan_memory(s); memory_bytes stays empty when that throws.
ProgramTarget plan_target(const Scenario& s);

}  // namespace masep::plan
