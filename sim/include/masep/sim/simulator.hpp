// The simulator's public entry point: run a Program on a modelled cluster and get per-op
// timings and metrics. Deterministic: integer nanoseconds, events ordered by (time, seq).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"
#include "masep/plan/scenario.hpp"
#include "masep/plan/timeline.hpp"
#include "masep/topology/topology.hpp"

namespace masep::sim {

/// Knobs of one simulation. Every field has a documented default.
struct SimOptions {
  /// Path of a calibration YAML (measured efficiency tables); empty = datasheet defaults.
  std::string calibration;
  /// Fraction by which a running communication kernel slows concurrent compute on the same
  /// GPU (0 = no interference).
  double comm_interference = 0.0;
  /// All-reduce algorithm: "ring", "tree", "hierarchical" (intra-node reduce-scatter,
  /// inter-node all-reduce, intra-node all-gather) or "auto" (hierarchical across nodes,
  /// ring inside one).
  std::string allreduce_algorithm = "auto";
};

/// Everything one run produced. Owned by value.
struct SimResult {
  plan::Timeline timeline;         ///< per-op start/end (source "sim"), indexed by OpId
  uint64_t events = 0;             ///< discrete events processed
};

/// Simulates `program` on `topo` (GPU specs come from topo.spec().gpu; plan rank r runs on
/// topology GPU program.ranks[r].gpu). Throws std::runtime_error before simulating when the
/// program cannot run on the topology (e.g. a rank maps to a GPU the topology lacks).
SimResult simulate(const plan::Program& program, const topology::Topology& topo,
                   const SimOptions& options = {});

}  // namespace masep::sim
