// masep sim [SCENARIO]: simulate one scenario, print its metrics table (or --json), and
// optionally write a Chrome/Perfetto trace.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/limits.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/output_file.hpp"
#include "masep/plan/trace.hpp"
#include "masep/sim/fault_run.hpp"
#include "plot.hpp"
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
    if (!run.fidelity_note.empty()) std::printf("%-9s %s\n", "fidelity", run.fidelity_note.c_str());
    std::printf("\n");
  }
  print_metrics_summary(m, s.plan.kind == plan::PlanKind::kColocated);
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

// The per-step TPOT timeline of a run with faults: CSV or JSON by the file's extension.
void write_timeline(const std::string& path, const sim::FaultRunResult& r) {
  std::ostringstream text;
  if (std::filesystem::path(path).extension() == ".json") {
    sim::write_fault_json(text, r);
  } else {
    sim::write_fault_csv(text, r);
  }
  plan::write_output_file(path, "timeline", text.str());
}

void plot_timeline(const std::string& path, const plan::Scenario& s, const sim::FaultRunResult& r) {
  std::vector<std::vector<std::string>> table = {{"step", "tpot_ms", "run", "status"}};
  for (const auto& f : r.steps) {
    table.push_back(
        {std::to_string(f.step), fmt::format("{:.6g}", f.tpot_ms), "with faults", "ok"});
  }
  for (const auto& f : r.steps) {
    table.push_back({std::to_string(f.step), fmt::format("{:.6g}", r.baseline_tpot_ms),
                     "fault-free mean", "ok"});
  }
  const std::filesystem::path p(path);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  std::filesystem::create_directories(dir);
  Sweep sw;
  sw.name = "faults";
  SweepPlot pl;
  pl.name = p.stem().string();
  pl.title = fmt::format("TPOT per decode step: {}", s.name);
  pl.x = "step";
  pl.y = {"tpot_ms"};
  pl.series = "run";
  sw.plots.push_back(pl);
  std::string note;
  for (const auto& img : make_plots(dir, sw, table, &note)) std::printf("plot: %s\n", img.c_str());
  if (!note.empty()) std::fprintf(stderr, "masep sim: %s\n", note.c_str());
}

void print_fault_report(const plan::Scenario& s, const sim::FaultRunResult& r,
                        const sim::FaultParams& fp) {
  for (const auto& [k, v] : describe(s)) std::printf("%-9s %s\n", k.c_str(), v.c_str());
  const auto& ft = s.fault_tolerance;
  std::printf(
      "%-9s kv_copies %d, standby GPUs %d, on_kv_loss %s, on_expert_loss %s, "
      "restore_experts %s\n",
      "redundancy", ft.kv_copies, ft.standby_gpus, plan::to_string(ft.on_kv_loss),
      plan::to_string(ft.on_expert_loss), plan::to_string(ft.restore_experts));
  std::printf(
      "%-9s %.1f ms (heartbeat %.0f ms x %.0f misses, op timeout %.0f ms); communicator "
      "rebuild %.0f ms; host re-load %.0f GB/s\n\n",
      "detection", sim::detection_ns(fp) / 1e6, fp.heartbeat_interval_ns / 1e6, fp.heartbeat_misses,
      fp.op_timeout_ns / 1e6, fp.comm_rebuild_ns / 1e6, fp.host_load_GBps);
  for (const auto& e : r.events) {
    std::printf("step %d at %.3f ms: %s\n", e.step, e.at_ns / 1e6, e.what.c_str());
    std::printf("  wasted %.3f ms, detection %.3f ms, recovery %.3f ms (%lld ops)\n",
                e.wasted_ns / 1e6, e.detect_ns / 1e6, e.recovery_ns / 1e6,
                static_cast<long long>(e.recovery_ops));
    for (const auto& line : e.remap) std::printf("  %s\n", line.c_str());
  }
  std::printf(
      "\nTPOT              before %.3f ms   fault step %.3f ms   after %.3f ms   "
      "(fault-free mean %.3f ms)\n",
      r.tpot_before_ms, r.tpot_fault_ms, r.tpot_after_ms, r.baseline_tpot_ms);
  std::printf("throughput after  %s tokens/s\n", group_thousands(r.tokens_per_s_after).c_str());
  std::printf(
      "tokens            %lld offered, %lld served, %lld lost, %lld re-computed, "
      "%.0f degraded token-expert pairs\n",
      static_cast<long long>(r.tokens_offered), static_cast<long long>(r.tokens_served),
      static_cast<long long>(r.tokens_lost), static_cast<long long>(r.tokens_recomputed),
      r.degraded_pairs);
  std::printf(
      "availability      %.2f %% of tokens served, %.2f %% uptime (time not in an "
      "outage)\n",
      100 * r.availability, 100 * r.uptime);
  std::printf("makespan          %.3f ms (fault-free %.3f ms)\n", r.makespan_ns / 1e6,
              r.baseline_makespan_ns / 1e6);
  std::printf("GPUs              %d in the plan + %d standby\n", r.plan_gpus, r.standby_gpus);
}

}  // namespace

int cmd_sim(const Args& args) {
  std::string scenario = "paper";
  std::vector<std::string> sets;
  std::string trace_path, calibration, algorithm = "auto", network = "auto";
  std::string coll_model = "auto", nccl_algo = "auto", nccl_proto = "auto", fidelity = "exact";
  int approx_layers = 6;
  bool allow_mismatch = false;
  int steps = 0, window = 0, window_layers = 0;
  std::vector<std::string> faults, fault_params;
  std::string timeline_path, plot_path;
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
      "fidelity", po::value(&fidelity)->default_value("exact"),
      "exact (every layer of every step simulated; the default) or approx (layer sampling: "
      "the dense layers and --approx-layers MoE layers simulated per step, the step time "
      "extrapolated to all layers; error in docs/simulator-model.md; the header says what "
      "was approximated)")("approx-layers", po::value(&approx_layers)->default_value(6),
                           "--fidelity approx: MoE layers simulated per step (>= 3)")(
      "quiet,q", "print only the summary lines (no header, no per-GPU table)")(
      "fault", po::value(&faults)->composing(),
      "inject a fault (repeatable; appended to the scenario's faults:), KEY=VALUE pairs, e.g. "
      "kind=gpu,gpu=3,step=10 or kind=straggler,gpu=5,speed=0.5,step=4,steps=8 "
      "(docs/fault-tolerance.md)")(
      "fault-param", po::value(&fault_params)->composing(),
      "detection / recovery parameter NAME=VALUE (repeatable), e.g. fault_op_timeout_ns=5e8")(
      "timeline", po::value(&timeline_path),
      "runs with faults: write the per-step TPOT timeline to FILE (.csv, or .json with events)")(
      "plot", po::value(&plot_path),
      "runs with faults: plot TPOT per step to FILE.png / .svg (gnuplot)")(
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
  if (fidelity != "exact" && fidelity != "approx") {
    std::fprintf(stderr, "masep sim: --fidelity must be exact or approx (got '%s')\n",
                 fidelity.c_str());
    return 2;
  }
  if (approx_layers < 3) {
    std::fprintf(stderr, "masep sim: --approx-layers must be >= 3\n");
    return 2;
  }
  RunOptions ro;
  ro.approx_moe_layers = fidelity == "approx" ? approx_layers : 0;
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

  for (const auto& f : faults) sets.push_back(fault_override(f));
  {
    const plan::Scenario fs = plan::load_scenario(scenario, sets);
    if (!fs.faults.empty()) {
      if (ro.approx_moe_layers > 0) {
        std::fprintf(stderr,
                     "masep sim: --fidelity approx does not run faults (runs with "
                     "faults simulate every layer)\n");
        return 2;
      }
      std::vector<std::pair<std::string, double>> fpo;
      for (const auto& kv : fault_params) {
        const auto eq = kv.find('=');
        char* end = nullptr;
        const double v = eq == std::string::npos ? 0 : std::strtod(kv.c_str() + eq + 1, &end);
        if (eq == std::string::npos || end == kv.c_str() + eq + 1 || *end != '\0') {
          std::fprintf(stderr, "masep sim: --fault-param '%s': expected NAME=NUMBER\n", kv.c_str());
          return 2;
        }
        fpo.emplace_back(kv.substr(0, eq), v);
      }
      const sim::FaultParams fp = sim::resolve_fault_params(fpo);
      check_fits_in_memory(fs);
      const sim::FaultRunResult r = sim::simulate_faults(fs, so, fp);
      if (!timeline_path.empty()) write_timeline(timeline_path, r);
      if (vm.count("json")) {
        sim::write_fault_json(std::cout, r);
        std::cout.flush();
      } else {
        print_fault_report(fs, r, fp);
      }
      if (!plot_path.empty()) plot_timeline(plot_path, fs, r);
      return 0;
    }
    if (!timeline_path.empty() || !plot_path.empty() || !fault_params.empty()) {
      std::fprintf(stderr,
                   "masep sim: --timeline, --plot and --fault-param apply to runs with faults "
                   "(the scenario has no faults:; add --fault)\n");
      return 2;
    }
  }
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
  if (vm.count("json") && !run.fidelity_note.empty()) {
    std::fprintf(stderr, "masep sim: fidelity %s\n", run.fidelity_note.c_str());
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
