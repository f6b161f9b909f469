// masep compare SIM_TRACE MEASURED_TRACE: how far the simulator's prediction is from a
// measurement of the same Program (join on op id; plan/src/compare.cpp does the work).
#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/plan/compare.hpp"
#include "masep/plan/output_file.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

constexpr const char* kUsage = R"(usage: masep compare SIM_TRACE MEASURED_TRACE [options]

Compares a simulated trace (masep sim --trace) with a measured one (masep exec --trace) of
the same scenario, seed and steps. Ops are joined on their Program op id (args.op); the
error of an op is (simulated - measured) / measured, so +10% means the simulator predicted
10% too long. Prints, per op kind, the median error, the 90th percentile of |error|, total
simulated and measured time, the worst ops (id, rank, name, step, layer, micro-batch), and
the TPOT error (mean decode-step time). Different op sets are an error (counts are listed).

With --out DIR it also writes:
  DIR/compare.txt     the report above
  DIR/compare.json    the same as JSON
  DIR/merged.json     Perfetto trace with "sim: rank R" and "measured: rank R" side by side
  DIR/step.svg        the two timelines of one decode step overlaid (--step; default middle)

Options)";

}  // namespace

int cmd_compare(const Args& args) {
  std::string sim_path, meas_path, out_dir;
  int step = -1, worst = 5;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")("out", po::value(&out_dir),
                                                 "write report, JSON, merged trace and SVG to DIR")(
      "step", po::value(&step), "decode step drawn in step.svg (default: the middle step)")(
      "worst", po::value(&worst)->default_value(5), "worst ops listed per kind")(
      "json", "print the comparison as JSON instead of the text report");
  po::options_description hidden;
  hidden.add_options()("sim", po::value(&sim_path))("measured", po::value(&meas_path));
  po::positional_options_description pos;
  pos.add("sim", 1).add("measured", 1);
  po::variables_map vm;
  if (auto rc = parse_command_line("compare", args, opts, vm, &hidden, &pos)) return *rc;
  if (sim_path.empty() || meas_path.empty()) {
    std::fprintf(stderr, "masep compare: needs SIM_TRACE and MEASURED_TRACE (see --help)\n");
    return 2;
  }
  if (worst < 0) {
    std::fprintf(stderr, "masep compare: --worst must be >= 0\n");
    return 2;
  }
  const plan::LoadedTrace sim = plan::read_trace_file(sim_path);
  const plan::LoadedTrace meas = plan::read_trace_file(meas_path);
  const plan::Comparison c = plan::compare_traces(sim, meas, worst);
  if (vm.count("json")) {
    plan::write_comparison_json(std::cout, c);
  } else {
    plan::write_comparison_text(std::cout, c);
  }
  if (!out_dir.empty()) {
    std::filesystem::create_directories(out_dir);
    const std::filesystem::path d(out_dir);
    plan::write_output_file((d / "compare.txt").string(), "comparison report",
                            [&](std::ostream& o) { plan::write_comparison_text(o, c); });
    plan::write_output_file((d / "compare.json").string(), "comparison report",
                            [&](std::ostream& o) { plan::write_comparison_json(o, c); });
    plan::write_merged_trace((d / "merged.json").string(), sim, meas);
    plan::write_overlay_svg((d / "step.svg").string(), sim, meas, step);
    if (!vm.count("json")) {
      std::printf("\nwritten: %s/{compare.txt, compare.json, merged.json, step.svg}\n",
                  out_dir.c_str());
    }
  }
  return 0;
}

}  // namespace masep::tools
