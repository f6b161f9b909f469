// One simulation from a scenario name or file to metrics: load (with overrides), compile,
// simulate, compute metrics. Shared by `masep sim`, `masep sweep` and `masep paper` so they
// run exactly the same pipeline. Also one-line descriptions of a scenario's parts for the
// headers those commands print.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "masep/plan/metrics.hpp"
#include "masep/plan/program.hpp"
#include "masep/plan/scenario.hpp"
#include "masep/plan/trace.hpp"
#include "masep/sim/simulator.hpp"

namespace masep::tools {

/// How run_scenario compiles and simulates. Streaming (the default) compiles `window_steps`
/// decode steps at a time (plan::ProgramStream), simulates them as they come
/// (sim::simulate_stream) and folds metrics and the trace chunk by chunk, so memory is
/// bounded by a few windows; its outputs are byte-identical to the whole-run path's (tests:
/// StreamIdentical), which compiles the whole Program and simulates it at once and stays the
/// reference. Runs with a calibration, and runs where streaming could differ
/// (sim::StreamNotExact: then run again whole, SimRun::stream_note says why), take the
/// whole-run path.
struct RunOptions {
  bool stream = true;  ///< false: the whole-run path
  /// Decode steps per window (>= 1); 0 = automatic: one step, or fewer layers where a step
  /// has many ops (about 200,000 ops per window, from GPUs x micro-batches x layers).
  int window_steps = 0;
  int window_layers = 0;  ///< > 0: windows of this many decoder layers instead of steps
  /// Compile the next window on a second thread while the current one is simulated, for
  /// windows of about `prefetch_min_ops` ops or more (12 x GPUs x micro-batches x layers).
  bool prefetch = true;
  double prefetch_min_ops = 100000;
  /// Write the Chrome/Perfetto trace here (plan::write_trace's bytes); empty = none.
  std::string trace_path;
  /// > 0: the approximate tier (approx_run.hpp, `--fidelity approx`): simulate this many MoE
  /// layers per step and extrapolate to the model's layers; 0 = exact (the default).
  int approx_moe_layers = 0;
};

/// Everything one simulated run produced. Owned by value.
struct SimRun {
  plan::Scenario scenario;
  /// The whole Program (whole-run path) or its header (streamed: ranks, groups, no ops).
  plan::Program program;
  bool streamed = false;
  int64_t window_layers = 0;  ///< streamed: (step, layer) pairs per window
  std::string stream_note;    ///< why a run asked to stream ran whole (empty otherwise)
  /// With RunOptions::approx_moe_layers: what the approximate tier did (LayerSampling::note;
  /// "approx: ..." or why the run is exact); empty for exact runs.
  std::string fidelity_note;
  int64_t ops = 0;            ///< ops simulated
  sim::SimResult result;
  plan::RunMetrics metrics;
  // Host wall times in seconds, for the user (never in outputs that must be deterministic).
  double compile_s = 0;   ///< plan::compile
  double simulate_s = 0;  ///< sim::simulate (the engine run, incl. its preparation pass)
};

/// Loads `name_or_path` with `overrides`, compiles, simulates with `options` and computes
/// the metrics. Throws the libraries' errors (InputError, InfeasiblePlan, std::runtime_error).
SimRun run_scenario(const std::string& name_or_path, const std::vector<std::string>& overrides,
                    const sim::SimOptions& options, const RunOptions& run_options = {});

/// `options` with the scenario's simulator settings (Scenario::simulator) put first, so that
/// what the command line set (later in SimOptions::params) wins: the network tier of
/// `simulator.network`, or auto when the scenario sets none.
sim::SimOptions with_scenario_settings(const plan::Scenario& s, const sim::SimOptions& options);

/// (label, text) lines describing scenario, model, plan, workload and cluster.
std::vector<std::pair<std::string, std::string>> describe(const plan::Scenario& s);

/// Throws std::runtime_error (naming the steps, ops per step, estimated and available GB, and
/// how many steps would fit) when compiling and simulating the whole scenario would need more
/// than 90% of `available_bytes` (0 = MASEP_SIM_MEMORY_LIMIT_GB if set, else the tightest of
/// MemAvailable, RLIMIT_AS and the cgroup's memory.max) of host memory. Ops per step are
/// bounded arithmetically from the scenario first (layers x micro-batches x (GPUs x 64 +
/// 4 x attention-MoE pairs)); one step is compiled to count them exactly only when that bound
/// fits, else one layer is compiled and scaled, else the bound is used: nothing large is
/// allocated before the check.
/// `steps_held` (> 0, may be a fraction): only that many decode steps are in memory at once
/// (streaming); 0 = all. The per-step bound counts at most one transfer per row (token,
/// expert) of a micro-batch.
void check_fits_in_memory(const plan::Scenario& s, double available_bytes = 0,
                          double steps_held = 0);

/// Same for a topology alone (~2 KB per GPU), before it is built
/// (`masep collective`).
void check_topology_fits(const topology::TopologySpec& t, double available_bytes = 0);

/// GPUs the plan uses, and attention / MoE GPU counts (0 / 0 for a co-located plan).
int plan_gpus(const plan::Scenario& s);
int attention_gpus(const plan::Scenario& s);
int moe_gpus(const plan::Scenario& s);

/// Prints the run summary both `masep sim` and `masep exec` show above their per-GPU tables:
/// TPOT (mean, p50, p99), throughput, mean utilisation, idle time per side, exposed
/// communication. One definition, so simulated and measured tables read the same.
/// `colocated`: the plan is co-located (names the attention side "co-located").
void print_metrics_summary(const plan::RunMetrics& m, bool colocated);

/// "1,234,567" style thousands separators for a rounded value.
std::string group_thousands(double v);
/// Bytes with a decimal unit (B, kB, MB, GB; 1 kB = 1000 B), 3 significant-ish digits.
std::string human_bytes(double bytes);
/// FLOPs with a decimal unit (FLOP, kFLOP, MFLOP, GFLOP, TFLOP).
std::string human_flops(double flops);

}  // namespace masep::tools
