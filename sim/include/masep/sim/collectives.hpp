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
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"

namespace masep::sim {

enum class CollAlgorithm : uint8_t { kRing, kTree, kHierarchical, kAllToAll };

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

}  // namespace masep::sim
