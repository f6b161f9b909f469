// The executor's load-balancing path on the CPU: see rebalance.hpp.
#include "masep/exec/rebalance.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "masep/plan/expert_load.hpp"
#include "masep/plan/placement.hpp"

namespace masep::exec {

std::vector<WeightMove> weight_moves(const plan::ExpertPlacement& prev,
                                     const plan::ExpertPlacement& next) {
  std::vector<WeightMove> out;
  std::vector<int64_t> sent;
  for (size_t e = 0; e < next.holders.size() && e < prev.holders.size(); ++e) {
    const auto& old = prev.holders[e];
    for (int g : next.holders[e]) {
      if (std::find(old.begin(), old.end(), g) != old.end()) continue;
      int src = old.front();
      for (int o : old) {
        if (static_cast<size_t>(std::max(o, src)) >= sent.size()) {
          sent.resize(static_cast<size_t>(std::max(o, src)) + 1, 0);
        }
        if (sent[static_cast<size_t>(o)] < sent[static_cast<size_t>(src)]) src = o;
      }
      if (static_cast<size_t>(src) >= sent.size()) sent.resize(static_cast<size_t>(src) + 1, 0);
      sent[static_cast<size_t>(src)]++;
      out.push_back({static_cast<int32_t>(e), src, g});
    }
  }
  return out;
}

Replacement replace_from_router_counts(const plan::Scenario& s,
                                       const plan::ExpertPlacement& current,
                                       const std::vector<std::vector<int64_t>>& counts, int steps,
                                       int first_step, int compile_steps,
                                       const plan::CompileOptions& base,
                                       const PlanOptions& options) {
  if (s.plan.balance.policy == plan::BalancePolicy::kStatic) {
    throw std::invalid_argument("replace_from_router_counts: plan.balance.policy is static");
  }
  const int layers = s.model.layers, experts = s.model.experts;
  if (static_cast<int>(counts.size()) != layers) {
    throw std::invalid_argument(fmt::format(
        "router counts: {} layers, model {} has {}", counts.size(), s.model.name, layers));
  }
  plan::ExpertLoad load;
  load.layers = layers;
  load.experts = experts;
  load.steps = std::max(1, steps);
  load.micro_batches = s.plan.micro_batches;
  for (int l = 0; l < layers; ++l) {
    if (static_cast<int>(counts[static_cast<size_t>(l)].size()) != experts) {
      throw std::invalid_argument(fmt::format("router counts: layer {} has {} experts, model {}",
                                              l, counts[static_cast<size_t>(l)].size(), experts));
    }
    for (int64_t c : counts[static_cast<size_t>(l)]) {
      if (c < 0) throw std::invalid_argument(fmt::format("router counts: layer {} negative", l));
      load.tokens.push_back(static_cast<double>(c));
    }
  }
  Replacement r;
  r.placement = plan::keep_in_place(current, plan::balance_experts(s, load.per_launch()),
                                    plan::expert_gpu_count(s));
  r.moves = weight_moves(current, r.placement);
  plan::CompileOptions co = base;
  co.first_step = first_step;
  co.steps = compile_steps;
  co.placement = &r.placement;
  r.program = plan::compile(s, co);
  for (int rank = 0; rank < r.program.rank_count(); ++rank) {
    r.ranks.push_back(build_rank_plan(r.program, rank, options));
  }
  return r;
}

}  // namespace masep::exec
