// Expert placement: which MoE GPUs hold which routed experts. One function used by the plan
// compiler (where to send tokens), memory feasibility (weights per GPU) and the balancer.
//
// GPU indices here are *MoE-local*: 0 .. G-1 over the MoE GPUs of an MA-separation plan
// (plan rank = attention.gpus + local index), or over all GPUs of a co-located plan (plan
// rank = local index). Shared experts are not part of the placement: every MoE GPU (every
// GPU of a co-located plan) holds all of them.
//
// Policies (G = MoE GPUs, R = expert_replicas, E = routed experts):
//   kRoundRobin  expert e on GPUs (e + r) mod G, r = 0 .. R-1
//   kContiguous  expert e in block b = floor(e·G / E) (G near-equal contiguous blocks), its
//                replicas on GPUs (b + r) mod G, r = 0 .. R-1
//   kExplicit    MoePlan::expert_map as given (MA separation only)
// Example: E = 16, G = 4, R = 1, round robin: GPU 0 holds experts {0, 4, 8, 12}.
//
// Expert tensor parallelism (expert_tensor_parallel t > 1, scenario.hpp): the policies place
// experts on the G / t expert groups (group k = MoE-local GPUs k·t .. k·t + t − 1) instead of
// on single GPUs; expert_gpus() then returns group indices, and gpu_experts(s) / expert_slots()
// list every GPU of a group with the group's experts (each GPU holding 1/t of each).
#pragma once

#include <vector>

#include "masep/plan/scenario.hpp"

namespace masep::plan {

/// Number of GPUs that hold routed experts: moe.gpus (MA separation) or colocated.gpus.
int expert_gpu_count(const Scenario& s);

/// Placement units: expert_gpu_count / expert_tensor_parallel (= the GPU count without expert
/// tensor parallelism).
int expert_group_count(const Scenario& s);

/// GPUs each expert's FFN is split over (plan.moe or plan.colocated expert_tensor_parallel).
int expert_tensor_parallel(const Scenario& s);

/// For each routed expert e (0 .. experts-1), the placement units (MoE-local GPU indices, or
/// expert groups when expert_tensor_parallel > 1) holding it: first the primary, then its
/// replicas, without duplicates. Throws std::invalid_argument (key
/// path relative to the scenario, e.g. "plan.moe.expert_replicas: 5 exceeds 4 MoE GPUs")
/// when experts cannot be placed.
std::vector<std::vector<int>> expert_gpus(const Scenario& s);

/// Routed expert copies each MoE-local GPU has room for: the static placement's count, or
/// with load balancing (plan.balance) (experts + redundant_experts) / GPUs on every GPU (the
/// balancer never exceeds it; memory is checked against it).
std::vector<int> expert_slots(const Scenario& s);

/// The inverse: for each MoE-local GPU, the routed experts it holds (a slice of each with
/// expert tensor parallelism), ascending.
std::vector<std::vector<int>> gpu_experts(const Scenario& s);

/// The inverse of a given expert → GPUs map over `gpu_count` GPUs (experts ascending).
std::vector<std::vector<int>> gpu_experts(const std::vector<std::vector<int>>& expert_gpus,
                                          int gpu_count);

}  // namespace masep::plan
