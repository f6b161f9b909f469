// masep predict [SCENARIO]: the time predictor (plan/time_predictor.hpp) against the
// simulator, per op kind and role, on one compiled scenario (issue 17).
#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/plan/calibration.hpp"
#include "masep/plan/compare.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/prediction_error.hpp"
#include "masep/plan/time_predictor.hpp"
#include "masep/sim/calibrated_model.hpp"
#include "masep/sim/parameters.hpp"
#include "sim_run.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

constexpr const char* kUsage = R"(usage: masep predict [SCENARIO] [options]

Compiles SCENARIO (default: paper), simulates it, and predicts every op's time with the
time predictor (plan/time_predictor.hpp: shapes and bytes, calibration tables or datasheet
roofline; transfers on idle links). Prints the error (predicted - simulated) / simulated per
op kind and per op role: median, median and 90th percentile of |error|, totals, and the
host time of one prediction. Communication ops count from the moment all their partners had
started (waiting is not transfer time).

With --measured TRACE (a trace `masep exec --trace` wrote for SCENARIO with the same --set
options), the reference is that measured run instead of the simulator: the scenario is
compiled (not simulated), every op of the trace is joined to the Program's op of the same
id (names and ranks must agree), and the predictor (--calibration tables, or the datasheet
roofline) is compared with the measured op times. Calibrate on one run's tables and validate
on another run's trace for an out-of-sample figure (docs/load-balancing.md). --launch graph
is for traces of `masep exec --launch graph`: a calibrated prediction then adds the
calibration's launch.event_gap_ns per launch (back-to-back kernels in a graph) instead of
launch.event_overhead_ns (an eager launch between two events).

Options)";

}  // namespace

int cmd_predict(const Args& args) {
  std::string scenario = "paper", calibration, measured, launch = "eager";
  std::vector<std::string> sets;
  bool allow_mismatch = false;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")(
      "set", po::value(&sets)->composing(), "override a scenario field, KEY=VALUE (repeatable)")(
      "calibration", po::value(&calibration),
      "calibration YAML for both the simulator and the predictor; default: datasheet rates")(
      "allow-mismatch", po::bool_switch(&allow_mismatch),
      "accept a calibration measured on another GPU model than the topology's")(
      "measured", po::value(&measured),
      "compare with this measured trace (masep exec --trace) instead of the simulator")(
      "launch", po::value(&launch),
      "with --measured: how the trace's run launched, eager (default) or graph");
  po::options_description hidden;
  hidden.add_options()("scenario", po::value(&scenario));
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (auto rc = parse_command_line("predict", args, opts, vm, &hidden, &pos)) return *rc;

  if (launch != "eager" && launch != "graph") {
    std::fprintf(stderr, "masep predict: --launch must be eager or graph, not '%s'\n",
                 launch.c_str());
    return 2;
  }
  if (launch == "graph" && measured.empty()) {
    std::fprintf(stderr, "masep predict: --launch graph needs --measured\n");
    return 2;
  }
  std::optional<plan::Calibration> cal;
  if (!calibration.empty()) cal = plan::load_calibration(calibration);
  if (cal && launch == "graph") cal->launch.event_overhead_ns = cal->launch.event_gap_ns;
  // The predictor's constants: defaults, then a calibration's communication latencies.
  const auto predictor = [&](const topology::TopologySpec& topo) {
    const sim::SimParams sp = sim::resolve_params(
        cal ? sim::calibrated_comm_params(*cal) : std::vector<std::pair<std::string, double>>{});
    plan::PredictorParams pp;
    pp.launch_overhead_ns = sp.launch_overhead_ns;
    pp.eff_flops_gemm = sp.eff_flops_gemm;
    pp.eff_hbm_gemm = sp.eff_hbm_gemm;
    pp.eff_flops_attention = sp.eff_flops_attention;
    pp.eff_hbm_attention = sp.eff_hbm_attention;
    pp.eff_flops_elementwise = sp.eff_flops_elementwise;
    pp.eff_hbm_elementwise = sp.eff_hbm_elementwise;
    pp.alpha_sendrecv_ns = sp.alpha_sendrecv_ns;
    pp.alpha_allreduce_ns = sp.alpha_allreduce_ns;
    pp.alpha_allgather_ns = sp.alpha_allgather_ns;
    pp.alpha_reducescatter_ns = sp.alpha_reducescatter_ns;
    pp.alpha_alltoall_ns = sp.alpha_alltoall_ns;
    return cal ? plan::TimePredictor(topo, *cal, pp) : plan::TimePredictor(topo, pp);
  };
  if (!measured.empty()) {
    const plan::Scenario s = plan::load_scenario(scenario, sets);
    const plan::Program program = plan::compile(s);
    const plan::LoadedTrace trace = plan::read_trace_file(measured);
    if (cal && !allow_mismatch && !cal->device.empty() && !trace.device.empty() &&
        cal->device != trace.device) {
      throw std::invalid_argument("--calibration " + calibration + " was measured on " +
                                  cal->device + ", the trace on " + trace.device +
                                  " (--allow-mismatch to compare anyway)");
    }
    const plan::Timeline t = plan::timeline_from_trace(program, trace);
    const plan::TimePredictor tp = predictor(s.topology);
    const plan::PredictionError e = plan::prediction_error(program, t, tp);
    std::printf("scenario %s: %zu ops, %zu measured (%s, %s, %s launches); predictor %s\n\n",
                s.name.c_str(), program.ops.size(), trace.ops.size(), measured.c_str(),
                trace.device.empty() ? "device not named" : trace.device.c_str(), launch.c_str(),
                calibration.empty() ? "datasheet roofline" : calibration.c_str());
    plan::write_prediction_error_text(std::cout, e);
    double pred = 0, run = 0;
    for (const auto& r : e.by_kind) pred += r.predicted_ms, run += r.run_ms;
    std::printf("\nall ops: predicted %.3f ms, measured %.3f ms (%+.2f %%), %d steps\n", pred, run,
                run > 0 ? (pred - run) / run * 100 : 0.0, program.steps);
    return 0;
  }

  sim::SimOptions so;
  so.calibration = calibration;
  so.allow_calibration_mismatch = allow_mismatch;
  // The whole run (not streamed): prediction_error compares every op of the Program with its
  // simulated time, and a streamed run keeps only the Program's header.
  RunOptions ro;
  ro.stream = false;
  const SimRun run = run_scenario(scenario, sets, so, ro);
  const plan::TimePredictor tp = predictor(run.scenario.topology);
  const plan::PredictionError e = plan::prediction_error(run.program, run.result.timeline, tp);
  std::printf("scenario %s: %zu ops, %s; predictor %s\n\n", run.scenario.name.c_str(),
              run.program.ops.size(),
              calibration.empty() ? "datasheet roofline" : calibration.c_str(),
              tp.calibrated() ? "calibrated" : "roofline");
  plan::write_prediction_error_text(std::cout, e);
  std::cout << fmt::format("\nhost time per prediction: {:.0f} ns (mean over all ops)\n",
                           e.mean_predict_ns);
  return 0;
}

}  // namespace masep::tools
