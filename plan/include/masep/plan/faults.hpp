// Fault tolerance of a scenario (issue 18): the redundancy a plan keeps (KV copies of the
// attention replicas, standby GPUs, what happens to an expert or a sequence with no surviving
// copy) and the faults injected into a simulated run (a GPU, a NIC or a network link failing
// at a decode step or a time, for good or for a while, and stragglers: a GPU at x% speed).
// Plain validated structs: plan/'s loader builds them from the scenario's `fault_tolerance:`
// and `faults:` sections (docs/fault-tolerance.md documents every key); a scenario without
// those sections has the defaults below and runs exactly as before.
#pragma once

#include <string>
#include <vector>

namespace masep::plan {

/// What a sequence whose KV cache has no surviving copy becomes.
enum class KvLossPolicy {
  kFail,       ///< refuse the scenario before the run (names what would be lost); the default
  kReprefill,  ///< a surviving replica re-computes its KV cache (prefill of context + tokens)
  kDrop,       ///< the sequence is dropped: its remaining tokens are lost
};

/// What an expert whose every copy is lost becomes.
enum class ExpertLossPolicy {
  kFail,     ///< refuse the scenario before the run; the default
  kReload,   ///< its weights are re-loaded onto a surviving MoE GPU from host memory
  kReroute,  ///< its tokens go to their next-best expert instead (degraded token-expert pairs)
};

/// How lost copies of experts that still have a surviving copy (and a standby GPU's experts)
/// are re-created.
enum class WeightSource {
  kNone,  ///< not re-created: the surviving copies take the load (failover only)
  kPeer,  ///< copied over the network from a surviving GPU that holds the expert
  kHost,  ///< re-loaded from the new holder's host memory (PCIe)
};

/// The redundancy a plan keeps and its policies (`fault_tolerance:` in a scenario).
struct FaultTolerance {
  /// Copies of every sequence's KV cache (1 = none; 2 = the paper's 2x attention redundancy:
  /// each attention replica mirrors its new KV entries every step onto the other replicas,
  /// striped so that a lost replica's sequences spread evenly over the survivors).
  int kv_copies = 1;
  KvLossPolicy on_kv_loss = KvLossPolicy::kFail;
  ExpertLossPolicy on_expert_loss = ExpertLossPolicy::kFail;
  /// Re-creating lost copies of still-available experts (and filling a standby MoE GPU).
  WeightSource restore_experts = WeightSource::kNone;
  /// Spare GPUs the plan keeps idle: the lowest-numbered topology GPUs the plan does not use.
  /// A standby takes the place of a failed GPU (same role, rebuilt KV or re-loaded weights).
  int standby_gpus = 0;
  /// The standby GPUs by name, set by remap() for a degraded plan (the spares still unused);
  /// empty = the lowest-numbered unused GPUs, standby_gpus of them. Not read from YAML.
  std::vector<int> standby_list;
};

enum class FaultKind {
  kGpu,        ///< a GPU dies (all its state is lost)
  kNic,        ///< a NIC of a node fails: its GPUs send through a sibling NIC (PXN) or, with
               ///< none left on the node, are cut off from other nodes (treated as failed)
  kLink,       ///< the cable from a NIC to the network switch: same effect as kNic
  kStraggler,  ///< a GPU computes at `speed` (0 < speed < 1) of its normal rate
};
const char* to_string(FaultKind k);
const char* to_string(KvLossPolicy p);
const char* to_string(ExpertLossPolicy p);
const char* to_string(WeightSource s);

/// One injected fault (`faults:` item). Exactly one of `step` / `at_ms` is set (>= 0).
struct FaultSpec {
  FaultKind kind = FaultKind::kGpu;
  int gpu = -1;        ///< kGpu, kStraggler: topology GPU index
  int node = -1;       ///< kNic, kLink: node index
  int nic = -1;        ///< kNic, kLink: index into topology.nics (the node's NICs)
  int step = -1;       ///< decode step at whose start the fault happens
  double at_ms = -1;   ///< or: simulated time (ms from run start) at which it happens
  int steps = 0;       ///< how many steps it lasts; 0 = for the rest of the run
  double speed = 1.0;  ///< kStraggler: compute rate as a fraction of normal, (0, 1)
  /// Key path of the item for messages, e.g. "faults[1]".
  std::string key;
};

/// Whether a scenario asks for anything fault-related (the simulator's fault path, which
/// `masep exec` refuses).
bool has_fault_features(const FaultTolerance& ft, const std::vector<FaultSpec>& faults);

}  // namespace masep::plan
