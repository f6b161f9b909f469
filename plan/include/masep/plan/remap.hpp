// Re-mapping after failures (issue 18): given an MA-separation scenario and a set of failed
// GPUs, which standby takes over which GPU, which attention replica serves the sequences of a
// lost one (and whether their KV caches survive, must be re-built or re-computed, or are
// lost), which copy of an expert takes over, which experts are re-loaded (from a peer or host
// memory) or re-routed, and the plan that runs afterwards. CUDA-free and deterministic: the
// simulator uses it to build recovery work and the degraded plan; the executor can use it to
// re-map ranks after ncclCommShrink.
//
// Rules (docs/fault-tolerance.md):
// - Standby GPUs (FaultTolerance::standby_gpus: the lowest-numbered topology GPUs the plan
//   does not use, minus failed ones) replace failed GPUs in plan order: attention replicas
//   first (replica order, GPUs in group order), then MoE GPUs. A replaced attention GPU gets
//   its KV shard back from the sequences' mirrors (kv_copies 2) or by re-prefill; a replaced
//   MoE GPU gets its experts from a surviving copy (peer) or host memory.
// - Without a standby, an attention replica with a failed GPU is lost (its other GPUs idle).
//   With kv_copies 2, sequence j of replica r (in the replica's order) is mirrored on the
//   (j mod )-th other replica (ascending, r skipped): a surviving mirror serves it with
//   its KV intact (migrated); else KvLossPolicy decides (re-prefill on a survivor, drop, fail).
// - Without a standby, a failed MoE GPU leaves the plan; its experts fail over to their
//   surviving copies (restore_experts re-creates the lost copy on the surviving MoE GPU with
//   the fewest experts); an expert with no copy follows ExpertLossPolicy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/scenario.hpp"

namespace masep::plan {

/// The GPUs of an MA-separation plan by role (topology GPU indices).
struct PlanGpus {
  int group_size = 1;                      ///< GPUs per attention replica
  std::vector<std::vector<int>> replicas;  ///< [replica][index in group] -> GPU
  std::vector<int> moe;                    ///< [MoE-local index] -> GPU
  std::vector<std::vector<int>> holders;   ///< [expert] -> MoE-local indices holding it
  std::vector<int> standby;                ///< spare GPUs, in the order they are taken
  std::vector<int64_t> replica_sequences;  ///< sequences each replica serves (all micro-batches)
  /// Whether `gpu` runs attention or experts in the plan.
  bool uses(int gpu) const;
};

/// The plan's GPUs. Throws std::invalid_argument for a co-located plan (not supported).
PlanGpus plan_gpus(const Scenario& s);

/// One weight copy re-created during recovery.
struct WeightLoad {
  int expert = 0;
  int dst_gpu = 0;    ///< new holder (topology GPU)
  int src_gpu = -1;   ///< surviving holder it is copied from; -1 = host memory of dst_gpu
  int64_t bytes = 0;  ///< the expert's weights (all layers)
};

/// KV bytes copied from a mirror to a GPU that replaced a failed attention GPU.
struct KvCopy {
  int src_gpu = 0;
  int dst_gpu = 0;
  int64_t bytes = 0;
};

/// Re-prefill work: `tokens` KV entries of `sequences` sequences re-computed on an attention
/// replica of the degraded plan (index into its replicas).
struct Reprefill {
  int replica = 0;
  int64_t sequences = 0;
  int64_t tokens = 0;
};

/// Where one sequence of a lost attention replica goes, or how a repaired replica gets back
/// a sequence's KV without a mirror (replica indices of the failed plan).
struct SequenceMove {
  enum How { kMirror, kReprefill, kDropped };
  int64_t sequence = 0;  ///< global sequence index
  int from_replica = 0;
  int to_replica = -1;  ///< -1 when dropped
  How how = kMirror;
};

/// The outcome of a set of failures.
struct Remap {
  std::vector<int> failed;                        ///< topology GPUs, ascending
  std::vector<std::pair<int, int>> replacements;  ///< (failed GPU, standby that takes over)
  std::vector<int> lost_replicas;                 ///< original replica indices lost
  int64_t sequences_migrated = 0;                 ///< served by a mirror replica, KV intact
  int64_t sequences_reprefilled = 0;              ///< KV re-computed on a survivor
  int64_t sequences_dropped = 0;                  ///< gone (their remaining tokens are lost)
  int64_t reprefill_tokens = 0;       ///< KV entries re-computed (summed over sequences)
  std::vector<int> failover_experts;  ///< experts that lost a copy but still have one
  std::vector<int> reloaded_experts;  ///< experts with no surviving copy, re-loaded from host
  std::vector<int> rerouted_experts;  ///< experts with no surviving copy, tokens re-routed
  std::vector<WeightLoad> weight_loads;
  std::vector<KvCopy> kv_copies;
  std::vector<Reprefill> reprefills;
  /// Every sequence that changes replica or loses its KV, in (replica, sequence) order. The
  /// simulator's degraded plan spreads the batch evenly over the survivors (the same load per
  /// replica as these moves, up to the sequences' order); an executor follows the moves.
  std::vector<SequenceMove> moves;
  /// GPUs of the degraded plan that were not in the failed plan's communicators' rank lists
  /// (standbys taking over), and those left idle (survivors of a lost replica).
  std::vector<int> joined, idle;
  /// What the policies cannot cover (each a sentence); empty = the faults are survived.
  std::vector<std::string> losses;
  /// The plan after recovery (faults cleared; no KV mirror if one replica is left).
  Scenario degraded;

  bool covered() const { return losses.empty(); }
  /// One line per fact, for reports ("GPU 3 -> standby 16 (KV from mirrors: 1.2 GB)").
  std::vector<std::string> describe() const;
};

/// Re-maps `s` after `failed_gpus` (topology GPUs; any order, duplicates ignored, GPUs the
/// plan does not use ignored) fail at the start of decode step `step` (KV sizes: context +
/// step tokens per sequence). Never throws for losses (they are listed in Remap::losses);
/// throws std::invalid_argument for a co-located plan.
Remap remap(const Scenario& s, const std::vector<int>& failed_gpus, int step);

/// Topology GPUs a set of failed NICs cuts off from other nodes: those whose NIC failed on a
/// node with no working NIC left (with one left, they send through it: PXN). `failed_nics`
/// holds (node, nic) pairs.
std::vector<int> gpus_cut_off(const topology::TopologySpec& t,
                              const std::vector<std::pair<int, int>>& failed_nics);

/// Checks the scenario's `faults:` and `fault_tolerance:` against its plan and topology; throws
/// InputError with the key path (the loader maps it to file and line): a fault on a GPU the
/// plan does not use, a NIC that does not exist, a step past the run, a co-located plan, and a
/// plan whose redundancy cannot cover the faults taken together (the message says what is
/// lost). Called by the loader after validate_scenario.
void validate_faults(const Scenario& s);

}  // namespace masep::plan
