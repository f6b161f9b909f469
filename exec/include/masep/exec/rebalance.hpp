// The executor's load-balancing path on the CPU (issue 17): the router's counts of a run →
// the balancer (plan/balancer.hpp) → a new expert placement → the expert weight copies that
// placement needs → the Program recompiled with it and every rank's launch plan re-lowered.
// Plain C++ (no CUDA): built in every tree and unit-tested in the CPU and sanitizer trees.
// Moving the weights with NCCL between steps is the GPU side's part (not built yet: a
// Program with expert_move ops is refused by the lowering).
#pragma once

#include <cstdint>
#include <vector>

#include "masep/exec/launch_plan.hpp"
#include "masep/plan/balancer.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/program.hpp"
#include "masep/plan/scenario.hpp"

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

/// Router counts of one run window → a re-placement under s.plan.balance's policy.
/// `counts[layer][expert]` are tokens routed (e.g. summed real-gating counts);
/// `steps` the decode steps they cover; `current` the placement the run used. Compiles
/// steps [first_step, first_step + compile_steps) of `s` with the new placement (`base`'s other
/// options kept) and lowers every rank with `options`. Throws std::invalid_argument when the
/// counts do not match the model (layers × experts) or the policy is static.
Replacement replace_from_router_counts(const plan::Scenario& s,
                                       const plan::ExpertPlacement& current,
                                       const std::vector<std::vector<int64_t>>& counts, int steps,
                                       int first_step, int compile_steps,
                                       const plan::CompileOptions& base = {},
                                       const PlanOptions& options = {});

/// The copies `next` needs that `prev` lacks: for each (expert, new holder) not an old
/// holder, the old holder that sends it (the one sending least so far; ties: lower index).
std::vector<WeightMove> weight_moves(const plan::ExpertPlacement& prev,
                                     const plan::ExpertPlacement& next);

}  // namespace masep::exec
