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

Options)";

}  // namespace

int cmd_predict(const Args& args) {
  std::string scenario = "paper", calibration;
  std::vector<std::string> sets;
  bool allow_mismatch = false;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")(
      "set", po::value(&sets)->composing(), "override a scenario field, KEY=VALUE (repeatable)")(
      "calibration", po::value(&calibration),
      "calibration YAML for both the simulator and the predictor; default: datasheet rates")(
      "allow-mismatch", po::bool_switch(&allow_mismatch),
      "accept a calibration measured on another GPU model than the topology's");
  po::options_description hidden;
  hidden.add_options()("scenario", po::value(&scenario));
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (auto rc = parse_command_line("predict", args, opts, vm, &hidden, &pos)) return *rc;

  sim::SimOptions so;
  so.calibration = calibration;
  so.allow_calibration_mismatch = allow_mismatch;
  // The whole run (not streamed): prediction_error compares every op of the Program with its
  // simulated time, and a streamed run keeps only the Program's header.
  RunOptions ro;
  ro.stream = false;
  const SimRun run = run_scenario(scenario, sets, so, ro);
  // The predictor's constants are the run's (defaults, then a calibration's comm latencies).
  std::vector<std::pair<std::string, double>> overrides;
  std::optional<plan::Calibration> cal;
  if (!calibration.empty()) {
    cal = plan::load_calibration(calibration);
    overrides = sim::calibrated_comm_params(*cal);
  }
  const sim::SimParams sp = sim::resolve_params(overrides);
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
  const plan::TimePredictor tp = cal ? plan::TimePredictor(run.scenario.topology, *cal, pp)
                                     : plan::TimePredictor(run.scenario.topology, pp);
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
