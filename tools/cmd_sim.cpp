// masep sim [SCENARIO]: simulate one scenario, print its metrics table (or --json), and
// optionally write a Chrome/Perfetto trace.
#include <fmt/format.h>

#include <chrono>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/plan/limits.hpp"
#include "masep/plan/trace.hpp"
#include "progress.hpp"
#include "sim_run.hpp"
#include "table.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

constexpr const char* kUsage = R"(usage: masep sim [SCENARIO] [options]

Simulates a scenario on its modelled cluster (discrete-event, integer nanoseconds,
deterministic) and prints its metrics.

SCENARIO   a built-in scenario name (masep list), a scenario YAML file or - (stdin);
           default: "paper" (the paper's 16 x A100, 12:4 MA separation)

Metrics (one definition shared with the executor, plan/src/metrics.cpp):
  TPOT           time per output token: per decode step, the end of the step's last op minus
                 the end of the previous step's last op (step 0 from run start); mean, p50,
                 p99 (nearest rank) over steps
  tokens/s       batch x steps / makespan
  utilisation    per GPU: compute-stream busy time / makespan
  transfer       a send/recv or collective transfers from the moment all its partners have
                 posted it (the later of send and recv; the last member of a collective)
                 to its end; before that the GPU only waits ("wait ms", counted as idle)
  idle           per GPU: makespan minus the union of its compute and transfer intervals
                 (summed per side: attention GPUs, MoE GPUs)
  exposed comm   per GPU: transfer time not overlapped by compute (summed over GPUs)
  step HBM/FLOPs per GPU: totals of its ops / steps
  floor          roofline floor of one step on that GPU: max(HBM bytes / HBM GB/s,
                 FLOPs / dense bf16 peak) at datasheet rates
  step/floor     mean TPOT / floor: how far the step is from that GPU's physical limit

options)";

void print_table(const SimRun& run, bool quiet) {
  const auto& m = run.metrics;
  const auto& s = run.scenario;
  if (!quiet) {
    for (const auto& [k, v] : describe(s)) std::printf("%-9s %s\n", k.c_str(), v.c_str());
    const double events = static_cast<double>(run.result.events);
    if (run.streamed) {
      std::printf(
          "%-9s %s events, %s ops, %d steps: compiled and simulated in windows of %lld "
          "layer%s in %.2f s (%.1f M events/s)\n",
          "simulated", group_thousands(events).c_str(),
          group_thousands(static_cast<double>(run.ops)).c_str(), m.steps,
          static_cast<long long>(run.window_layers), run.window_layers == 1 ? "" : "s",
          run.simulate_s, run.simulate_s > 0 ? events / run.simulate_s / 1e6 : 0.0);
    } else {
      std::printf(
          "%-9s %s events, %s ops, %d steps: compiled in %.2f s, simulated in %.2f s "
          "(%.1f M events/s)\n",
          "simulated", group_thousands(events).c_str(),
          group_thousands(static_cast<double>(run.ops)).c_str(), m.steps, run.compile_s,
          run.simulate_s, run.simulate_s > 0 ? events / run.simulate_s / 1e6 : 0.0);
    }
    std::printf("%-9s %s%s%s\n", "network",
                run.result.network_tier == "fluid" ? "fluid (each phase timed from link loads)"
                                                   : "flow (per-flow max-min)",
                run.result.network_note.empty() ? "" : "; ", run.result.network_note.c_str());
    std::printf("\n");
  }
  print_metrics_summary(m, s);
  if (quiet) return;

  std::printf("\nper GPU (one decode step = HBM bytes and FLOPs / steps)%s\n",
              m.memory_available ? "" : "  [memory: not available, plan_memory() failed]");
  Table t;
  t.column("rank");
  t.column("gpu");
  t.column("role / label", Table::kLeft);
  t.column("util %");
  t.column("busy ms");
  t.column("exposed ms");
  t.column("idle ms");
  t.column("wait ms");
  t.column("memory GiB");
  t.column("step HBM");
  t.column("step FLOPs");
  t.column("floor µs");
  t.column("step/floor");
  const int gpn = s.topology.gpus_per_node;
  for (const auto& r : m.ranks) {
    const int gpu = run.program.ranks[static_cast<size_t>(r.rank)].gpu;
    t.row({std::to_string(r.rank), fmt::format("n{}.{}", gpu / gpn, gpu % gpn), r.label,
           fmt::format("{:.1f}", 100 * r.utilisation),
           fmt::format("{:.3f}", r.compute_busy_ns / 1e6),
           fmt::format("{:.3f}", r.exposed_comm_ns / 1e6), fmt::format("{:.3f}", r.idle_ns / 1e6),
           fmt::format("{:.3f}", r.comm_wait_ns / 1e6),
           m.memory_available ? fmt::format("{:.1f}", r.memory_bytes / double(1ull << 30)) : "n/a",
           human_bytes(static_cast<double>(r.step_hbm_bytes)), human_flops(r.step_flops),
           fmt::format("{:.1f}", r.roofline_floor_ns / 1e3),
           r.roofline_floor_ns > 0
               ? fmt::format("{:.2f}x", m.tpot_mean_ms * 1e6 / r.roofline_floor_ns)
               : "-"});
  }
  t.print(stdout, 0);
}

}  // namespace

int cmd_sim(const Args& args) {
  std::string scenario = "paper";
  std::vector<std::string> sets;
  std::string trace_path, calibration, algorithm = "auto", network = "auto";
  std::string coll_model = "auto", nccl_algo = "auto", nccl_proto = "auto";
  bool allow_mismatch = false;
  int steps = 0, window = 0, window_layers = 0;
  double interference = 0;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")(
      "set", po::value(&sets)->composing(),
      "override a scenario field, KEY=VALUE (repeatable), e.g. --set workload.batch=64 "
      "--set plan.attention.gpus=8")("json", "print all metrics as JSON on stdout (no table)")(
      "trace", po::value(&trace_path),
      "write a Chrome/Perfetto trace (JSON) to FILE; open it at ui.perfetto.dev")(
      "steps", po::value(&steps),
      "decode steps to simulate (same as --set workload.decode_steps=N); default: the "
      "scenario's")("calibration", po::value(&calibration),
                    "calibration YAML (measured efficiency tables); default: datasheet rates")(
      "algorithm", po::value(&algorithm)->default_value("auto"),
      "phases model's all-reduce algorithm: ring, tree, hierarchical or auto (anything but "
      "auto selects the phases model)")(
      "collective-model", po::value(&coll_model)->default_value("auto"),
      "collective timing: nccl (NCCL's tuning model, the default), phases, or auto")(
      "nccl-algo", po::value(&nccl_algo)->default_value("auto"),
      "NCCL_ALGO-like restriction for the nccl model, e.g. ring or ^nvls")(
      "allow-mismatch", po::bool_switch(&allow_mismatch),
      "accept a calibration measured on another GPU model than the topology's (a warning; "
      "else an error)")("nccl-proto", po::value(&nccl_proto)->default_value("auto"),
                        "NCCL_PROTO-like restriction for the nccl model, e.g. Simple or ^LL")(
      "interference", po::value(&interference)->default_value(0.0),
      "fraction by which running communication slows concurrent compute on a GPU")(
      "network", po::value(&network)->default_value("auto"), kNetworkHelp)(
      "quiet,q", "print only the summary lines (no header, no per-GPU table)")(
      "window", po::value(&window),
      "decode steps compiled and simulated at a time (memory is bounded by a few windows; "
      "results are identical for any window); default: one step, or fewer layers where a "
      "step has many ops (about 200,000 ops per window)")(
      "window-layers", po::value(&window_layers),
      "decoder layers compiled and simulated at a time (instead of --window)")(
      "whole-run",
      "compile the whole run, then simulate it at once (the reference path; also taken with "
      "--calibration)");
  po::options_description hidden;
  hidden.add_options()("scenario", po::value(&scenario));
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (auto rc = parse_command_line("sim", args, opts, vm, &hidden, &pos)) return *rc;
  if (vm.count("steps")) {
    if (steps <= 0 || steps > plan::kMaxDecodeSteps) {
      std::fprintf(stderr, "masep sim: --steps must be in 1..%lld\n",
                   static_cast<long long>(plan::kMaxDecodeSteps));
      return 2;
    }
    sets.push_back(fmt::format("workload.decode_steps={}", steps));
  }
  if ((vm.count("window") && window < 1) || (vm.count("window-layers") && window_layers < 1)) {
    std::fprintf(stderr, "masep sim: --window and --window-layers must be >= 1\n");
    return 2;
  }
  RunOptions ro;
  ro.stream = vm.count("whole-run") == 0;
  ro.window_steps = window;
  ro.window_layers = window_layers;
  ro.trace_path = trace_path;
  sim::SimOptions so;
  so.calibration = calibration;
  so.allreduce_algorithm = algorithm;
  so.collective_model = coll_model;
  so.allow_calibration_mismatch = allow_mismatch;
  so.nccl_algo = nccl_algo;
  so.nccl_proto = nccl_proto;
  so.comm_interference = interference;
  // Explicit only: else the scenario's simulator.network (or auto) applies (run_scenario).
  if (!vm["network"].defaulted()) so.params.push_back(network_tier_param(network));
  // A bar on stderr once a run has taken 2 s (short runs print nothing extra).
  Progress bar("masep sim: ops simulated");
  const auto started = std::chrono::steady_clock::now();
  bool shown = false;
  so.progress = [&](int64_t done, int64_t total) {
    if (!shown && std::chrono::steady_clock::now() - started < std::chrono::seconds(2)) return;
    shown = true;
    bar.update(done, total);
  };

  const SimRun run = run_scenario(scenario, sets, so, ro);
  if (!run.stream_note.empty()) {
    std::fprintf(stderr, "masep sim: simulated the whole run at once (%s)\n",
                 run.stream_note.c_str());
  }
  // Never silent about calibration coverage (extrapolated / uncalibrated ops): on stderr so
  // --json output stays one object.
  if (!run.result.calibration_summary.empty()) {
    std::fprintf(stderr, "%s\n", run.result.calibration_summary.c_str());
  }
  if (vm.count("json")) {
    plan::write_metrics_json(std::cout, run.metrics);
    std::cout.flush();
  } else {
    print_table(run, vm.count("quiet") > 0);
    if (!trace_path.empty()) std::printf("\ntrace written to %s\n", trace_path.c_str());
  }
  return 0;
}

}  // namespace masep::tools
