// Expert load statistics (issue 17): tokens routed to each (layer, expert) over a window of
// decode steps, as the balancer (balancer.hpp) reads them. From a compiled Program's routing
// samples (what the simulator runs; the executor's router counts have the same shape), from
// the sampler directly (what a window of steps will route, without compiling it), or the
// expectation of a routing distribution (an offline profile).
#pragma once

#include <cstdint>
#include <vector>

#include "masep/plan/program.hpp"
#include "masep/plan/scenario.hpp"

namespace masep::plan {

/// Tokens per (layer, expert), summed over `steps` decode steps and all micro-batches.
/// Plain data, owned by value.
struct ExpertLoad {
  int32_t layers = 0, experts = 0;
  int32_t steps = 0;            ///< decode steps summed
  int32_t micro_batches = 1;    ///< MoE launches per (step, layer)
  std::vector<double> tokens;   ///< [layer · experts + expert]

  double at(int layer, int expert) const {
    return tokens[static_cast<size_t>(layer) * experts + expert];
  }
  /// Mean tokens an expert receives in one MoE launch (one (step, layer, micro-batch)), over
  /// the layers: Σ_layers tokens / (layers · steps · micro_batches). Indexed by expert.
  std::vector<double> per_launch() const;
  /// max / mean over experts of per_launch() (1 = even; 0 when there is no load).
  double imbalance() const;
};

/// Load of steps [first_step, first_step + steps) of a compiled Program (its RoutingSample
/// counts). Steps outside the Program contribute nothing; `steps` counts the requested ones.
ExpertLoad expert_load(const Program& p, int first_step, int steps);

/// The same load, sampled exactly as plan::compile samples it (same seed, same streams)
/// without compiling: equal to expert_load(compile(s), first_step, steps) for the steps the
/// compile covers. Costs batch · top_k draws per (step, layer).
ExpertLoad sampled_expert_load(const Scenario& s, int first_step, int steps,
                               bool per_sequence_routing = false);

/// The expected load of one decode step under the routing distribution in force at `step`
/// (an offline profile): batch · top_k · p_e per layer.
ExpertLoad expected_expert_load(const Scenario& s, int step);

}  // namespace masep::plan
