// The executor's load-balancing path on the CPU (issue 17): the router's counts of a run →
// the balancer (plan::placement_from_router_counts) → a new expert placement → the expert
// weight copies that placement needs → the Program recompiled with it (plan::compile, by the
// caller: nothing in exec/ takes a Scenario) and every rank's launch plan re-lowered.
// Plain C++ (no CUDA): built in every tree and unit-tested in the CPU and sanitizer trees.
// Moving the weights with NCCL between steps is the GPU side's part (not built yet: a
// Program with expert_move ops is refused by the lowering).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <vector>

#include "masep/exec/launch_plan.hpp"
#include "masep/plan/balancer.hpp"
#include "masep/plan/program.hpp"

namespace masep::exec {

/// One expert copy to create: expert `expert`'s weights (all layers) from MoE-local GPU
/// `src` (a holder in the old placement) to `dst` (a holder in the new one).
struct WeightMove {
  int32_t expert = 0, src = 0, dst = 0;
  bool operator==(const WeightMove&) const = default;
};

/// A re-placement and everything re-lowered for it. Owned by value.
struct Replacement {
  plan::ExpertPlacement placement;  ///< the new placement (GPUs relabelled to keep experts)
  std::vector<WeightMove> moves;    ///< copies to create, by expert then destination
  plan::Program program;            ///< compiled with `placement` (CompileOptions::placement)
  std::vector<RankPlan> ranks;      ///< build_rank_plan of every rank of `program`
};

/// A re-placement and everything re-lowered for it: `next` (e.g.
/// plan::placement_from_router_counts of the run's router counts) replacing `current`, the
/// weight copies it needs, and every rank of `program` — which the caller compiled with
/// CompileOptions::placement = &next for the steps to come — lowered with `options`. Throws
/// std::invalid_argument when the Program places another number of experts.
Replacement relower_for_placement(const plan::ExpertPlacement& current, plan::ExpertPlacement next,
                                  plan::Program program, const PlanOptions& options = {});

/// Tokens routed to each expert in one (layer, micro-batch) under real gating, from every
/// attention rank's slot counts (counts[a][slot], as route_sizes reads them): slot
/// lay.slot_base[g] + l is expert p.ranks[lay.moe_base + g].experts[l]. Throws
/// std::invalid_argument when the counts do not match the layout.
std::vector<int64_t> expert_counts_from_slots(const plan::Program& p, const GatingLayout& lay,
                                              const std::vector<std::vector<int32_t>>& counts);

/// The CPU writer of routing traces from a run's router counts (`masep exec --routing real`):
/// per (step, layer) tokens per expert, summed over micro-batches, written as a routing
/// trace of counts records (plan/routing_trace.hpp) that `workload.routing: {kind: trace,
/// file: F}` replays in the simulator and the executor. Owns its counts.
class RoutingTraceRecorder {
 public:
  /// Throws std::invalid_argument for non-positive sizes.
  RoutingTraceRecorder(int experts, int top_k, int batch, int layers);
  /// Adds one (layer, micro-batch)'s expert counts to (step, layer).
  void add(int step, int layer, const std::vector<int64_t>& expert_counts);
  /// counts()[step · layers + layer][expert]; empty for (step, layer) never added.
  const std::vector<std::vector<int64_t>>& counts() const { return counts_; }
  /// Writes the trace (steps 0 .. the last step added). Throws std::invalid_argument when a
  /// recorded (step, layer) does not sum to batch · top_k (a micro-batch missing).
  void write(std::ostream& out) const;

 private:
  int experts_, top_k_, batch_, layers_;
  std::vector<std::vector<int64_t>> counts_;
};

/// The copies `next` needs that `prev` lacks: for each (expert, new holder) not an old
/// holder, the old holder that sends it (the one sending least so far; ties: lower index).
std::vector<WeightMove> weight_moves(const plan::ExpertPlacement& prev,
                                     const plan::ExpertPlacement& next);

}  // namespace masep::exec
