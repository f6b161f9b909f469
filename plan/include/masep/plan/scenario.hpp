// A Scenario is everything one what-if run needs: a model, a cluster, a parallel plan and a
// workload. These are plain validated structs: plan/'s loader builds them from YAML (with
// file/line/key errors) and nothing past plan/ ever sees YAML. Units are in the field names
// or comments; sizes are counts of elements, tokens or GPUs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "masep/models/model.hpp"
#include "masep/plan/faults.hpp"
#include "masep/topology/topology.hpp"

namespace masep::plan {

struct RoutingTrace;  // routing_trace.hpp

/// How experts are laid onto the MoE GPUs when no explicit map is given.
enum class Placement {
  kRoundRobin,  ///< expert e on MoE GPU e mod G (then replicas on the following GPUs)
  kContiguous,  ///< experts split into G equal contiguous blocks
  kExplicit,    ///< `expert_map` lists the GPUs of each expert
};

/// One attention replica when the replicas differ (plan.attention.replicas given as a list):
/// its own head and sequence split and, optionally, its share of the batch.
struct AttentionReplica {
  int head_parallel = 1;
  int sequence_parallel = 1;
  /// Relative share of the batch (a weight, not sequences); 0 = not given, the replicas then
  /// share the batch in proportion to their GPUs (head_parallel × sequence_parallel). Either
  /// every replica gives one or none does.
  int batch_share = 0;
  int gpus() const { return head_parallel * sequence_parallel; }
};

/// Attention side of MA separation. The attention GPUs form `replicas` groups of
/// head_parallel × sequence_parallel GPUs; each group serves batch / replicas sequences
/// (data parallel), splits heads head_parallel ways and each sequence's KV cache
/// sequence_parallel ways. gpus == replicas · head_parallel · sequence_parallel.
///
/// Replicas of unequal size (`replica_list` non-empty, from plan.attention.replicas written as
/// a list): replica r has replica_list[r].head_parallel × sequence_parallel GPUs, the replicas'
/// GPUs follow each other in rank order, and gpus is their sum; `replicas` is the list's
/// length and head_parallel / sequence_parallel are unused (1). Replica r serves its share
/// of the batch: batch_share weights, or its GPU count by default (batch_split.hpp).
struct AttentionPlan {
  int gpus = 0;
  int head_parallel = 1;
  int sequence_parallel = 1;
  int replicas = 1;
  std::vector<AttentionReplica> replica_list;  ///< empty = every replica as above

  /// Whether the replicas are given one by one (they may differ in size or batch share).
  bool per_replica() const { return !replica_list.empty(); }
  /// Replica r's split (the common one when the replicas are not listed; batch_share 0).
  AttentionReplica replica(int r) const {
    return per_replica() ? replica_list[static_cast<size_t>(r)]
                         : AttentionReplica{head_parallel, sequence_parallel, 0};
  }
};

/// MoE side: which GPUs hold which experts. Every expert lives on `expert_replicas` GPUs;
/// a token routed to a replicated expert goes to one replica, chosen deterministically by
/// the source attention GPU (so load spreads evenly).
///
/// Expert tensor parallelism (EP × TP): with expert_tensor_parallel t > 1 the MoE GPUs form
/// gpus / t expert groups of t consecutive MoE-local GPUs (group k = k·t .. k·t + t − 1).
/// Placement and replicas apply to groups instead of GPUs; every GPU of a group holds the
/// group's experts (and the shared experts), each expert's FFN split t ways: GPU j of the
/// group has columns j·F/t .. (j+1)·F/t − 1 of gate/up and the same rows of down (F =
/// expert_ffn). A token row goes to all t GPUs of its expert's group; their partial down
/// outputs are summed by a reduce-scatter inside the group before the return (compiler.hpp).
struct MoePlan {
  int gpus = 0;
  Placement placement = Placement::kRoundRobin;
  int expert_replicas = 1;
  int expert_tensor_parallel = 1;  ///< t: GPUs each expert's FFN is split over
  /// For kExplicit: expert_map[e] = MoE-local GPU indices (0 .. gpus-1) holding expert e.
  std::vector<std::vector<int>> expert_map;
};

enum class PlanKind {
  kMaSeparation,  ///< attention and experts on disjoint GPU groups (the paper's design)
  kColocated,     ///< tensor-parallel attention + expert-parallel MoE on the same GPUs
};
const char* to_string(PlanKind k);
/// The YAML spelling of a placement (plan.moe.placement): round_robin, contiguous, explicit.
const char* to_string(Placement p);

/// The co-located baseline: all `gpus` run attention (groups of `tensor_parallel` GPUs,
/// gpus / tensor_parallel data-parallel replicas) and all hold experts (expert parallel;
/// with expert_tensor_parallel t > 1, in expert groups of t GPUs as for MoePlan). gpt-fast's
/// Mixtral is gpus = tensor_parallel = expert_tensor_parallel: every GPU holds 1/t of every
/// expert.
struct ColocatedPlan {
  int gpus = 0;
  int tensor_parallel = 1;
  Placement placement = Placement::kRoundRobin;
  int expert_replicas = 1;
  int expert_tensor_parallel = 1;  ///< t: GPUs each expert's FFN is split over
};

/// Expert load balancing (issue 17; plan/balancer.hpp has the algorithms). Applies to the
/// MoE GPUs of either plan kind (plan.balance in YAML).
enum class BalancePolicy {
  kStatic,     ///< the placement above (round robin, contiguous, explicit); the default
  kEplb,       ///< DeepSeek EPLB style: replicate and pack by token counts
  kPredicted,  ///< masep's: replicate and place by predicted expert time
};
const char* to_string(BalancePolicy p);

/// Attention-side balancing (plan/attention_balance.hpp): which sequences each attention
/// replica and micro-batch decodes.
enum class AttentionBalance {
  kStatic,     ///< the workload's order, cut into contiguous chunks; the default
  kPredicted,  ///< sequences assigned to the chunks by predicted attention time
};
const char* to_string(AttentionBalance a);

struct BalanceSpec {
  BalancePolicy policy = BalancePolicy::kStatic;
  /// Attention side: which sequences fill each attention replica's chunks (independent of
  /// `policy`).
  AttentionBalance attention = AttentionBalance::kStatic;
  /// Extra expert copies over all MoE GPUs (eplb, predicted): every MoE GPU gets
  /// (experts + redundant_experts) / GPUs slots, which must divide evenly.
  int redundant_experts = 0;
  /// eplb: experts form this many contiguous groups (DeepSeek-V3: 8); groups are packed to
  /// nodes first when they divide evenly over the MoE GPUs' nodes (hierarchical), else the
  /// global policy runs.
  int expert_groups = 1;
  /// Re-place every this many decode steps from the routing of the previous ones (0: place
  /// once, before step 0). Moved expert weights are transfers in the Program.
  int rebalance_every = 0;
};

/// How the expert exchange — dispatch to the MoE GPUs and return to the attention GPUs —
/// moves rows (plan.expert_exchange in YAML; docs/schema.md).
enum class ExchangeMode {
  /// One NCCL group call of sends and receives per rank and direction; one row per
  /// token·expert pair (the default; what masep exec runs).
  kNccl,
  /// DeepEP's normal kernels: one RDMA copy per token and destination node, to the GPU there
  /// with the sender's local index, then NVLink forwarding to the token's GPUs on that node;
  /// one row per token and destination GPU (its experts' outputs summed there before the
  /// return, which runs the stages in reverse). The kernels occupy comm_sms SMs while they run;
  /// not CUDA-graph capturable (the host waits for the receive counts). Simulated only.
  kHierarchical,
  /// DeepEP's low-latency kernels: one message per token·expert pair straight to the expert's
  /// GPU (no forwarding), captured in a CUDA graph, receiving through a hook that occupies no
  /// SMs. Simulated only.
  kLowLatency,
};
/// The YAML spelling: nccl, hierarchical, low_latency.
const char* to_string(ExchangeMode m);

struct ExpertExchange {
  ExchangeMode mode = ExchangeMode::kNccl;
  /// SMs the exchange kernels occupy on each GPU while a dispatch or return runs there (compute
  /// on that GPU then runs at (sm_count − comm_sms) / sm_count of its speed); -1 = the mode's
  /// default (sms()).
  int comm_sms = -1;
  /// comm_sms, or the mode's default: hierarchical 20 (DeepSeek-V3 report, section 3.2.2: 20
  /// of the H800's 132 SMs for its all-to-all kernels), nccl and low_latency 0 (NCCL's own
  /// SM use is the simulator's comm_resident_interference; the low-latency receive hook
  /// occupies none).
  int sms() const;
};

struct PlanSpec {
  PlanKind kind = PlanKind::kMaSeparation;
  AttentionPlan attention;   ///< kMaSeparation only
  MoePlan moe;               ///< kMaSeparation only
  ColocatedPlan colocated;   ///< kColocated only
  BalanceSpec balance;       ///< expert load balancing (default: static placement)
  ExpertExchange expert_exchange;  ///< how dispatch and return move rows (default: NCCL)
  int micro_batches = 1;     ///< the batch is split into this many ping-pong micro-batches
  /// GPU ranks used, in order: attention GPUs first, then MoE GPUs (MA separation), or the
  /// co-located GPUs. Empty = the first N ranks of the topology.
  std::vector<int> gpu_ranks;

  int total_gpus() const;
  /// The expert tensor parallelism of the plan's MoE GPUs (moe or colocated), 1 = none.
  int expert_tensor_parallel() const;
};

/// How many tokens each expert receives.
enum class RoutingKind {
  kUniform,   ///< every expert equally likely
  kZipf,      ///< expert i (after a seeded shuffle) has weight 1 / (i+1)^zipf_skew
  kExplicit,  ///< `expert_weights` (one per expert, normalised)
  kTrace,     ///< a routing trace file replayed step by step (routing_trace.hpp)
};

struct Routing {
  RoutingKind kind = RoutingKind::kUniform;
  double zipf_skew = 1.0;
  std::vector<double> expert_weights;
  /// kZipf: the hot experts change every this many decode steps (the seeded shuffle is
  /// re-drawn per phase floor(step / drift_every); phase 0 is the undrifted one); 0 = never.
  int drift_every = 0;
  /// kTrace: the file (as resolved against the scenario's folder) and its parsed contents,
  /// shared by copies of the scenario (immutable).
  std::string trace_file;
  std::shared_ptr<const RoutingTrace> trace;
};

/// Context lengths of the sequences when decoding starts.
enum class ContextKind {
  kFixed,    ///< every sequence has `context` tokens
  kUniform,  ///< uniform integer in [context_min, context_max], seeded
};

struct Workload {
  int batch = 0;                 ///< concurrent sequences, each decodes one token per step
  ContextKind context_kind = ContextKind::kFixed;
  int context = 0;               ///< tokens already in each KV cache (kFixed)
  int context_min = 0;           ///< kUniform bounds, inclusive
  int context_max = 0;
  int decode_steps = 1;          ///< decode steps to run
  Routing routing;
  uint64_t seed = 1;             ///< seeds context lengths and routing
};

/// How a scenario asks to be simulated (the optional `simulator:` section). An option given
/// on the command line (masep sim/sweep/search --network) wins over it.
struct SimulatorSettings {
  /// Network tier: "flow", "fluid" or "auto" (`simulator.network`); empty = not set (the
  /// commands then take auto).
  std::string network;
};

/// One what-if: model + cluster + plan + workload (+ simulator settings). `origin` names where it
/// came from (a file path or "builtin:<name>") for messages.
struct Scenario {
  std::string name;
  std::string description;
  std::string origin;
  models::Model model;
  topology::TopologySpec topology;
  PlanSpec plan;
  Workload workload;
  FaultTolerance fault_tolerance;  ///< redundancy and loss policies (faults.hpp)
  std::vector<FaultSpec> faults;   ///< injected faults, ordered as written (faults.hpp)
  SimulatorSettings simulator;
};

}  // namespace masep::plan
