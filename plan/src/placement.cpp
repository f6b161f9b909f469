#include "masep/plan/placement.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace masep::plan {

namespace {

struct PlacementInput {
  int gpus = 0;  // placement units: expert GPUs, or expert groups (expert tensor parallelism)
  int tp = 1;    // GPUs per unit
  Placement policy = Placement::kRoundRobin;
  int replicas = 1;
  const std::vector<std::vector<int>>* explicit_map = nullptr;
  std::string key;  // "plan.moe" or "plan.colocated"
};

PlacementInput input_of(const Scenario& s) {
  PlacementInput in;
  if (s.plan.kind == PlanKind::kMaSeparation) {
    in.tp = std::max(1, s.plan.moe.expert_tensor_parallel);
    in.gpus = s.plan.moe.gpus / in.tp;
    in.policy = s.plan.moe.placement;
    in.replicas = s.plan.moe.expert_replicas;
    in.explicit_map = &s.plan.moe.expert_map;
    in.key = "plan.moe";
  } else {
    in.tp = std::max(1, s.plan.colocated.expert_tensor_parallel);
    in.gpus = s.plan.colocated.gpus / in.tp;
    in.policy = s.plan.colocated.placement;
    in.replicas = s.plan.colocated.expert_replicas;
    in.key = "plan.colocated";
  }
  return in;
}

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

}  // namespace

int expert_gpu_count(const Scenario& s) {
  const PlacementInput in = input_of(s);
  return in.gpus * in.tp;
}

int expert_group_count(const Scenario& s) { return input_of(s).gpus; }

int expert_tensor_parallel(const Scenario& s) { return input_of(s).tp; }

std::vector<std::vector<int>> expert_gpus(const Scenario& s) {
  const PlacementInput in = input_of(s);
  const int experts = s.model.experts;
  const int g = in.gpus;
  if (g <= 0) fail(in.key + ".gpus: must be positive, got " + std::to_string(g));
  if (experts <= 0) fail("model.experts: must be positive, got " + std::to_string(experts));

  std::vector<std::vector<int>> out(static_cast<size_t>(experts));
  if (in.policy == Placement::kExplicit) {
    if (in.explicit_map == nullptr) {
      fail(in.key + ".placement: explicit placement needs an expert_map (MA separation only)");
    }
    const auto& map = *in.explicit_map;
    if (static_cast<int>(map.size()) != experts) {
      fail(in.key + ".expert_map: lists " + std::to_string(map.size()) + " experts, model has " +
           std::to_string(experts));
    }
    for (int e = 0; e < experts; ++e) {
      const std::string key = in.key + ".expert_map[" + std::to_string(e) + "]";
      if (map[e].empty()) fail(key + ": expert " + std::to_string(e) + " is on no GPU");
      std::vector<bool> seen(static_cast<size_t>(g), false);
      for (int gpu : map[e]) {
        if (gpu < 0 || gpu >= g) {
          fail(key + ": " + std::to_string(gpu) + " out of range 0.." + std::to_string(g - 1));
        }
        if (seen[gpu]) fail(key + ": GPU " + std::to_string(gpu) + " listed twice");
        seen[gpu] = true;
        out[e].push_back(gpu);
      }
    }
    return out;
  }

  if (in.replicas < 1) {
    fail(in.key + ".expert_replicas: must be positive, got " + std::to_string(in.replicas));
  }
  if (in.replicas > g) {
    fail(in.key + ".expert_replicas: " + std::to_string(in.replicas) + " exceeds " +
         std::to_string(g) + " MoE GPUs");
  }
  for (int e = 0; e < experts; ++e) {
    const int primary = in.policy == Placement::kRoundRobin
                            ? e % g
                            : static_cast<int>(static_cast<int64_t>(e) * g / experts);
    for (int r = 0; r < in.replicas; ++r) out[e].push_back((primary + r) % g);
  }
  return out;
}

std::vector<std::vector<int>> gpu_experts(const std::vector<std::vector<int>>& expert_gpus,
                                          int gpu_count) {
  std::vector<std::vector<int>> out(static_cast<size_t>(gpu_count < 0 ? 0 : gpu_count));
  for (size_t e = 0; e < expert_gpus.size(); ++e) {
    for (int gpu : expert_gpus[e]) {
      if (gpu < 0 || gpu >= gpu_count) {
        throw std::out_of_range("expert " + std::to_string(e) + " on GPU " + std::to_string(gpu) +
                                " of " + std::to_string(gpu_count));
      }
      out[gpu].push_back(static_cast<int>(e));  // e ascending, so each list is sorted
    }
  }
  return out;
}

std::vector<int> expert_slots(const Scenario& s) {
  const int g = expert_gpu_count(s);
  if (s.plan.balance.policy != BalancePolicy::kStatic && g > 0) {
    return std::vector<int>(static_cast<size_t>(g),
                            (s.model.experts + s.plan.balance.redundant_experts) / g);
  }
  std::vector<int> out;
  for (const auto& held : gpu_experts(s)) out.push_back(static_cast<int>(held.size()));
  return out;
}

std::vector<std::vector<int>> gpu_experts(const Scenario& s) {
  const PlacementInput in = input_of(s);
  const auto per_unit = gpu_experts(expert_gpus(s), in.gpus);
  if (in.tp == 1) return per_unit;
  std::vector<std::vector<int>> out;
  out.reserve(per_unit.size() * static_cast<size_t>(in.tp));
  for (const auto& held : per_unit) {
    for (int j = 0; j < in.tp; ++j) out.push_back(held);  // every GPU of the group
  }
  return out;
}

}  // namespace masep::plan
