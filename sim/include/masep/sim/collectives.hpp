// Collective algorithms: how one collective call decomposes into phases of point-to-point
// flows. A phase's flows start together (each after its own route latency); the next phase
// starts when every flow of the previous one has been delivered. The simulator times a
// collective as
//   alpha(kind) + Σ_phases ( coll_phase_overhead_ns + max over the phase's flows of
//                            (route latency + bytes at the flow's max-min rate) ).
// Reduction arithmetic is not modelled (NCCL fuses it into the copy kernels).
//
// S below is Collective::bytes, the per-rank buffer as nccl-tests counts "size" (all-gather:
// the output; reduce-scatter and all-reduce: the input; all-to-all: what one rank sends).
//   ring all-reduce        2(n-1) phases; rank i sends S/n to ring successor i+1
//   tree all-reduce        binary tree (heap order over the ring order): D = floor(log2 n)
//                          reduce phases (deepest level first, each child sends S to its
//                          parent) then D broadcast phases (parent sends S to each child):
//                          2·D phases, a simple non-pipelined tree.
//   hierarchical all-red.  g GPUs per node in k nodes (every node the same g, else ring):
//                          g-1 intra-node ring reduce-scatter phases of S/g, then 2(k-1)
//                          inter-node ring phases of S/(g·k) among GPUs with the same local
//                          position, then g-1 intra-node ring all-gather phases of S/g.
//   all-gather, reduce-sc. n-1 ring phases of S/n.
//   all-to-all             1 phase: every ordered pair i != j sends matrix[i][j] bytes
//                          (Collective::matrix, group order) or S/n when there is no matrix.
// The ring order is the members sorted by topology GPU index (node-major), so a ring
// crosses each node boundary once. A group of one member has no phases (alpha only).
//
// kNccl (SimOptions::collective_model "nccl", the default on a topology): NCCL's own tuning
// model (nccl_model.hpp) picks the algorithm and protocol and gives the call's time
// T = latency + S / bandwidth. The simulator realises it as ONE phase of flows on the
// links the call loads, so that contention with other traffic still goes through the
// max-min network model:
//   all-reduce, all-gather,  every member sends weight (g-1)/g spread evenly over the other
//   reduce-scatter           members of its node (g = members on that node) and weight 1/g to
//                            the member at its local position on the next node (a ring's
//                            channels, one crossing per NIC); one node: weight 1 spread.
//   all-to-all               the matrix (or S/n per pair) as in the phases model.
// Every flow's bytes are its weight × `flow_scale`, chosen so that on an idle network the
// busiest link (load / capacity) finishes after exactly S / bandwidth; the alpha is NCCL's
// latency + the call overhead − the largest route latency of the phase (not below 0). So a
// collective alone on idle links takes NCCL's model time plus the call overhead; sharing
// links with other flows slows it by max-min.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"
#include "masep/sim/nccl_model.hpp"

namespace masep::sim {

enum class CollAlgorithm : uint8_t { kRing, kTree, kHierarchical, kAllToAll, kNccl };

/// Parses SimOptions::allreduce_algorithm ("ring", "tree", "hierarchical", "auto").
/// Throws std::invalid_argument for anything else. "auto" sets `is_auto` (and returns kRing).
CollAlgorithm parse_allreduce_algorithm(const std::string& name, bool& is_auto);

/// One flow of a phase, between topology GPUs.
struct PhaseFlow {
  int src_gpu = 0;
  int dst_gpu = 0;
  double bytes = 0;
};

/// How one collective call runs: members, bytes and algorithm. Holds pointers into data
/// owned by the caller (the member GPU list and the Program's matrix), which must outlive it.
struct CollectivePlan {
  plan::OpKind kind = plan::OpKind::kAllReduce;
  CollAlgorithm algorithm = CollAlgorithm::kRing;
  const std::vector<int>* ring_gpus = nullptr;   ///< members sorted by GPU index
  const std::vector<int>* group_gpus = nullptr;  ///< members in group order (all-to-all)
  const std::vector<std::vector<int64_t>>* matrix = nullptr;  ///< all-to-all bytes or null
  double bytes = 0;                                           ///< S
  int gpus_per_node = 1;                                      ///< topology's, for hierarchical
  // Hierarchical shape (filled by make_collective_plan): g per node, k nodes.
  int hier_g = 0, hier_k = 0;
  // kNccl (filled by apply_nccl_model): bytes per unit of pattern weight, the call's alpha
  // in ns (-1 = the simulator's per-kind alpha parameter) and NCCL's choice.
  double flow_scale = 1;
  int64_t alpha_ns = -1;
  NcclChoice nccl;

  /// Number of phases.
  int phases() const;
  /// Appends the flows of phase `p` (0-based) to `out` (not cleared), in a fixed order.
  void phase_flows(int p, std::vector<PhaseFlow>& out) const;
};

/// Builds the plan of collective `kind` over the members. For all-reduce, `algorithm` is
/// used, or with `is_auto` hierarchical when the members span more than one node, else ring.
/// Hierarchical falls back to ring when nodes hold different member counts.
CollectivePlan make_collective_plan(plan::OpKind kind, const std::vector<int>& ring_gpus,
                                    const std::vector<int>& group_gpus,
                                    const std::vector<std::vector<int64_t>>* matrix, double bytes,
                                    int gpus_per_node, CollAlgorithm algorithm, bool is_auto);

class Platform;

/// Turns `plan` (any kind) into a kNccl plan timed by `model` on `platform`: NCCL's choice for
/// plan.kind and plan.bytes, the flow pattern above, flow_scale from the idle-network busiest
/// link and alpha_ns = latency + call_overhead_ns − largest route latency (>= 0, ceil to ns).
/// A one-member plan keeps no phases (alpha = call_overhead_ns). Throws what
/// NcclModel::choose throws.
void apply_nccl_model(CollectivePlan& plan, const NcclModel& model, const Platform& platform,
                      double call_overhead_ns);

}  // namespace masep::sim
