// Expert load balancing (issue 17): which MoE GPUs hold which experts, with redundant copies,
// and which copy serves the tokens of each attention rank. Policies (plan.balance.policy):
//
//   static     plan/placement.hpp's placement (round robin, contiguous, explicit); a token of
//              attention rank a goes to holders[a mod copies].
//   eplb       DeepSeek's EPLB, re-stated: every GPU has S = (experts + redundant) / GPUs
//              slots. Hierarchical when expert_groups divides evenly over the MoE GPUs' nodes:
//              groups are packed onto nodes by token load (balanced packing: heaviest first,
//              to the lightest node with room), each node replicates its experts into its
//              slots (each next copy to the expert with the most tokens per copy), then packs
//              the copies (tokens / copies each) onto its GPUs the same way. Otherwise global:
//              one node, one group. Token counts are the cost; a replicated expert's tokens
//              split evenly (holders[a mod copies]). A GPU never holds two copies of one
//              expert (packing skips GPUs that already hold it while another has room).
//   predicted  masep's: the cost of an expert copy is its predicted time for the tokens it
//              gets in one launch (TimePredictor::expert_ns, with the chance that it gets
//              none: (1 − e^−t) · expert_ns(max(t, 1)) for t mean tokens), so in memory-bound
//              decode an expert costs its weight bytes whether it gets 1 token or 20; each
//              routed row also costs its dispatch and return (row_ns). A launch's predicted
//              step = the slowest GPU's expert time + the slowest GPU's exchange time
//              (dispatch and return are group calls: one slow GPU holds up every rank).
//              (1) Copies per expert: each redundant slot to the expert whose copies'
//              exchange time most exceeds their compute (none where weights dominate).
//              (2) Copies heaviest first on the GPU with the least predicted time that has
//              room and lacks the expert (at most ceil(copies / GPUs) each at first).
//              (3) While slots remain, the copy that shortens the predicted step (or puts
//              fewer GPUs at its compute maximum) is added; none if no copy helps (a copy
//              adds a weight read where it lands). Tokens of a replicated expert go,
//              attention rank by attention rank, to the copy whose GPU would finish first,
//              or evenly, whichever predicts the shorter step (ExpertPlacement::route).
//
// GPU indices are MoE-local (placement.hpp). Deterministic: ties go to the lower index.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/scenario.hpp"
#include "masep/plan/time_predictor.hpp"

namespace masep::plan {

/// A placement and its routing. Owned by value.
struct ExpertPlacement {
  /// holders[e]: MoE-local GPUs holding expert e, ascending, at least one.
  std::vector<std::vector<int>> holders;
  /// route[a][e]: the MoE-local GPU serving expert e for attention rank a (one of
  /// holders[e]); empty = holders[e][a mod holders[e].size()].
  std::vector<std::vector<int32_t>> route;

  /// The GPU serving expert e for attention rank a.
  int gpu_for(int a, int e) const;
  bool operator==(const ExpertPlacement&) const = default;
};

/// The sizes a balancer works with.
struct BalanceProblem {
  int gpus = 0;             ///< MoE GPUs
  int slots_per_gpu = 0;    ///< expert copies one GPU holds (memory)
  int nodes = 1;            ///< nodes the MoE GPUs span (gpus divisible by nodes)
  int expert_groups = 1;    ///< eplb: contiguous expert groups
  int attention_ranks = 1;  ///< ranks that route tokens (route granularity)
  std::vector<double> load; ///< mean tokens per expert per MoE launch (ExpertLoad::per_launch)
  /// predicted: time one routed row adds to its MoE GPU's launch in the dispatch and return
  /// exchanges (2 · hidden · dtype bytes over the attention→MoE link), ns; 0 = compute only.
  double row_ns = 0;
  /// Co-located plan: attention rank a is MoE GPU a, and its rows for its own experts stay
  /// local (no exchange time).
  bool colocated = false;
};

/// The problem of scenario `s` for a load: slots (experts + redundant) / GPUs, MoE GPU nodes
/// from the topology and plan.gpu_ranks.
BalanceProblem balance_problem(const Scenario& s, std::vector<double> load);

/// The static placement (expert_gpus(s)), default routing.
ExpertPlacement static_placement(const Scenario& s);
/// DeepSeek-style EPLB on token counts. Throws std::invalid_argument when the slots cannot
/// hold every expert or do not divide evenly.
ExpertPlacement eplb_placement(const BalanceProblem& b);
/// masep's predicted-time placement for model `m`.
ExpertPlacement predicted_placement(const BalanceProblem& b, const TimePredictor& tp,
                                    const models::Model& m);
/// The policy of s.plan.balance for `load` (per_launch mean tokens per expert), with the
/// scenario's datasheet predictor.
ExpertPlacement balance_experts(const Scenario& s, const std::vector<double>& load);

/// First decode step of the placement epoch containing `step`: 0 without re-balancing, else
/// the last multiple of plan.balance.rebalance_every at or before it.
int placement_epoch_start(const Scenario& s, int step);

/// The placement in force at decode step `step`: static_placement for the static policy;
/// else balanced on the expected load of step 0 (an offline profile) until the first
/// re-placement, and at each later epoch start k·K on the load sampled over steps
/// [k·K − K, k·K) (what the routers counted; sampled_expert_load), GPUs relabelled to keep
/// as many experts in place as possible (fewer moves). Depends only on the scenario and the
/// step, so compile windows agree. Throws like balance_experts.
ExpertPlacement placement_at_step(const Scenario& s, int step, bool per_sequence_routing = false);

/// The placement that follows `prev` at epoch start `start` (a multiple of rebalance_every):
/// the policy's placement for the load sampled over [start − K, start), GPUs relabelled by
/// keep_in_place. The predicted policy re-places only when it pays: when the predicted gain
/// (max predicted MoE GPU time, old placement minus new, under the new load, times the MoE
/// launches of the next K steps) exceeds the predicted time of the moves (the most expert
/// bytes one GPU receives, all layers, over the MoE GPUs' link); otherwise it keeps `prev`
/// whole (no moves). eplb re-places every time, as DeepSeek's periodic EPLB does.
ExpertPlacement next_placement(const Scenario& s, const ExpertPlacement& prev, int start,
                               bool per_sequence_routing = false);

/// Router counts of one run window → the placement that follows `current` under
/// s.plan.balance's policy (the executor's balancing path, exec/rebalance.hpp):
/// `counts[layer][expert]` are tokens routed (e.g. summed real-gating counts) over `steps`
/// decode steps; GPUs relabelled by keep_in_place. Throws std::invalid_argument when the
/// counts do not match the model (layers × experts), a count is negative or the policy is
/// static.
ExpertPlacement placement_from_router_counts(const Scenario& s, const ExpertPlacement& current,
                                             const std::vector<std::vector<int64_t>>& counts,
                                             int steps);

/// Relabels the GPUs of `next` (a permutation of 0..gpus−1, greedy by overlap) so that it
/// keeps as many of `prev`'s (GPU, expert) pairs as it can; routes follow.
ExpertPlacement keep_in_place(const ExpertPlacement& prev, ExpertPlacement next, int gpus);

/// Predicted expert time (Σ of the copies' costs, the predicted policy's cost function) of
/// every MoE GPU for `load` under placement `pl`, ns per MoE launch.
std::vector<double> predicted_gpu_ns(const ExpertPlacement& pl, const BalanceProblem& b,
                                     const TimePredictor& tp, const models::Model& m);
/// Tokens per MoE launch every GPU receives under `pl` (load split by the routing).
std::vector<double> gpu_tokens(const ExpertPlacement& pl, const BalanceProblem& b);
/// max / mean of a per-GPU vector (1 = even; 0 for an empty or all-zero vector).
double max_over_mean(const std::vector<double>& v);

/// Throws std::logic_error unless `pl` is valid for `b`: every expert on 1..gpus distinct
/// GPUs in range, at most slots_per_gpu experts per GPU, routes (if any) name holders.
void check_placement(const ExpertPlacement& pl, const BalanceProblem& b);

}  // namespace masep::plan
