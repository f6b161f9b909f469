// The simulator's public entry point: run a Program on a modelled cluster and get per-op
// timings and metrics. Deterministic: integer nanoseconds, events ordered by (time, seq).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "masep/plan/program.hpp"
#include "masep/plan/program_chunk.hpp"
#include "masep/plan/scenario.hpp"
#include "masep/plan/timeline.hpp"
#include "masep/topology/topology.hpp"

namespace masep::sim {

class ComputeModel;
class Platform;

/// Knobs of one simulation. Every field has a documented default.
struct SimOptions {
  /// Path of a calibration YAML (measured efficiency tables); empty = datasheet defaults.
  std::string calibration;
  /// Accept a calibration measured on another GPU model than the topology's (else an error;
  /// calibrated_model.hpp check_calibration_gpu). The warning then leads calibration_summary.
  bool allow_calibration_mismatch = false;
  /// Fraction by which a running communication kernel slows concurrent compute on the same
  /// GPU (0 = no interference).
  double comm_interference = 0.0;
  /// All-reduce algorithm: "ring", "tree", "hierarchical" (intra-node reduce-scatter,
  /// inter-node all-reduce, intra-node all-gather) or "auto" (hierarchical across nodes,
  /// ring inside one).
  std::string allreduce_algorithm = "auto";
  /// How collectives are timed (docs/simulator-model.md, "Collective algorithms"):
  ///   "nccl"   NCCL's own tuning model (nccl_model.hpp) picks algorithm and protocol and
  ///            gives latency and bandwidth; one phase of flows on the links the call loads,
  ///            scaled to that time on idle links, shares links max-min with other traffic.
  ///   "phases" the pre-NCCL-model algorithms (allreduce_algorithm) at the links' raw rate
  ///            after a per-kind alpha_*_ns.
  ///   "auto"   (default) "nccl" when `topology` is known (simulate(program, topo) sets
  ///            it) and allreduce_algorithm is "auto"; otherwise "phases".
  /// A calibration's comm table, where it has the collective, times it instead of either.
  std::string collective_model = "auto";
  /// NCCL_ALGO / NCCL_PROTO-like what-ifs for the "nccl" model, in NCCL's list syntax
  /// ("ring", "ring,tree", "^nvls"; "auto" = NCCL's defaults). See NcclSelection.
  std::string nccl_algo = "auto";
  std::string nccl_proto = "auto";
  /// The cluster description the NCCL model reads (fabric, NVLS, SHARP NICs, GPU compute
  /// capability). simulate(program, topo) points it at topo.spec() when null; with a
  /// hand-made Platform, null means the "phases" model under "auto". Not owned; must
  /// outlive the call.
  const topology::TopologySpec* topology = nullptr;
  /// Overrides of the cost-model parameters by name (see parameters.hpp for the table of
  /// names, units and defaults), applied after `comm_interference`, in order. An unknown name
  /// or an out-of-range value throws std::invalid_argument.
  std::vector<std::pair<std::string, double>> params;
  /// Compute cost model to use instead of the roofline built from the GPU spec and `params`
  /// (e.g. a calibrated table). Null = RooflineModel. Shared, read-only.
  std::shared_ptr<const ComputeModel> compute_model;
  /// Called from the simulating thread about every 2^18 events and once at the end with
  /// (ops finished, ops in the program), for progress bars on long runs. Empty = none.
  std::function<void(int64_t done, int64_t total)> progress;
  /// Wraps the compute model the run settled on (roofline, calibrated or `compute_model`),
  /// e.g. to slow a straggler GPU or to time recovery work (fault_run.hpp). Empty = none.
  std::function<std::shared_ptr<const ComputeModel>(std::shared_ptr<const ComputeModel>)>
      wrap_compute_model;
};

/// Everything one run produced. Owned by value.
struct SimResult {
  plan::Timeline timeline;  ///< per-op start/end (source "sim"), indexed by OpId
  uint64_t events = 0;      ///< discrete events processed
  /// With SimOptions::calibration: one line counting compute ops by how the calibration
  /// timed them (exact, interpolated, extrapolated, nearest-shape, roofline); else empty.
  std::string calibration_summary;
  /// The network tier that ran: "flow" (per-flow max-min) or "fluid" (network_model.hpp,
  /// fluid_network.hpp), and, when parameter network_tier = 2 (auto) chose it, why.
  std::string network_tier = "flow";
  std::string network_note;
  int64_t ops = 0;  ///< ops simulated (the timeline is empty after simulate_stream)
};

/// Simulates `program` on `topo` (GPU specs come from topo.spec().gpu; plan rank r runs on
/// topology GPU program.ranks[r].gpu). Throws std::runtime_error before simulating when the
/// program cannot run on the topology (e.g. a rank maps to a GPU the topology lacks).
SimResult simulate(const plan::Program& program, const topology::Topology& topo,
                   const SimOptions& options = {});

/// Streaming (simulate_stream): the chunks of a Program (program_chunk.hpp), in order.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  /// Fills `out` with the next chunk; false when the last one has been handed out.
  virtual bool next(plan::ProgramChunk& out) = 0;
  /// Chunks still to come (for progress estimates).
  virtual int remaining() const = 0;
};

/// Streaming: receives each chunk once all its ops have run, in order, with their timings
/// (t[i] for c.ops[i], on the run's time base); the chunk is freed after the call.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  virtual void done(const plan::ProgramChunk& c, std::span<const plan::OpTiming> t) = 0;
};

/// Thrown by simulate_stream when the streamed run could differ from simulate() of the whole
/// Program: an op of a later chunk that would have become ready before its chunk was loaded
/// (e.g. a rank with no op on a stream for a whole chunk), or network tier auto, decided on
/// the first chunk, meeting a later exchange that would have decided otherwise. Nothing of
/// the run is valid then; run the whole Program instead.
class StreamNotExact : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Simulates a Program handed over chunk by chunk (plan::ProgramStream): the same timings,
/// event count and network tier as simulate() of the whole Program, with memory bounded by
/// the chunks in flight (the engine loads a chunk just before an op could need it and hands
/// each finished chunk to `sink`). `header` is the Program without ops (ranks, groups).
/// SimResult::timeline has no ops (they went to the sink) but its source, device and
/// makespan. Not supported with SimOptions::calibration (std::invalid_argument). Throws
/// StreamNotExact (see above) and what simulate() throws.
SimResult simulate_stream(const plan::Program& header, ChunkSource& source, ChunkSink& sink,
                          const topology::Topology& topo, const SimOptions& options = {});

/// The same on a Platform (the simulator's view of links and routes; see platform.hpp), for
/// hand-made clusters in tests and benchmarks. simulate(program, topo) builds
/// Platform::from_topology(topo) and calls this.
SimResult simulate(const plan::Program& program, const Platform& platform,
                   const SimOptions& options = {});

/// simulate_stream on a Platform (simulate_stream(header, ..., topo) builds it).
SimResult simulate_stream(const plan::Program& header, ChunkSource& source, ChunkSink& sink,
                          const Platform& platform, const SimOptions& options = {});

}  // namespace masep::sim
