// masep sweep SWEEP.yaml: run a grid of scenarios in parallel; CSV and plots out.
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "cli.hpp"
#include "commands.hpp"
#include "plot.hpp"
#include "progress.hpp"
#include "sweep.hpp"
#include "table.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

constexpr const char* kUsage = R"(usage: masep sweep SWEEP [options]

Runs every point of a sweep (a base scenario plus a grid or list of `key.path: value`
overrides; format in docs/sweep.md) through the simulator in parallel threads, then writes
  DIR/results.csv      one row per point: the override values, plan and GPU counts,
                       TPOT mean/p50/p99 (ms), tokens/s, tokens/s per GPU, scaling efficiency,
                       mean utilisation, attention/MoE idle and exposed comm (ms, summed over
                       GPUs), or status "error" and the error text for a point that cannot run
  DIR/<plot>.png/.svg  the sweep's plots, drawn by gnuplot (skipped with a note if gnuplot is
                       missing); DIR/<plot>.dat and .gp hold the data and script
and prints a summary table. An infeasible point is recorded, not fatal; the exit code is
non-zero only when no point ran.

scaling_efficiency = (tokens/s / GPUs) / (tokens/s / GPUs of the point with the fewest GPUs
of the same plan kind).

SWEEP      a sweep file, - (stdin), or a built-in sweep name (paper-scaling, paper-ratio)

options)";

}  // namespace

int cmd_sweep(const Args& args) {
  std::string sweep_name, out_dir, calibration, algorithm, network = "auto";
  std::vector<std::string> sets;
  int jobs = 0;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")("jobs,j", po::value(&jobs)->default_value(0),
                                                 "worker threads (0 = all cores)")(
      "out,o", po::value(&out_dir),
      "output directory (default: the sweep's output.dir, else "
      "sweep-out/<name>)")(
      "set", po::value(&sets)->composing(),
      "extra override KEY=VALUE applied to every point after its own (repeatable)")(
      "calibration", po::value(&calibration), "calibration YAML for the simulator")(
      "algorithm", po::value(&algorithm)->default_value("auto"),
      "all-reduce algorithm: ring, tree, hierarchical or auto")(
      "network", po::value(&network)->default_value("auto"), kNetworkHelp)(
      "no-plots", "write CSV only")("quiet,q", "no summary table");
  po::options_description hidden;
  hidden.add_options()("sweep", po::value(&sweep_name));
  po::positional_options_description pos;
  pos.add("sweep", 1);
  po::variables_map vm;
  if (auto rc = parse_command_line("sweep", args, opts, vm, &hidden, &pos)) return *rc;
  if (sweep_name.empty()) {
    std::fprintf(stderr, "masep sweep: missing SWEEP (a sweep file; see masep sweep --help)\n");
    return 2;
  }
  if (jobs < 0) {
    std::fprintf(stderr, "masep sweep: --jobs must be >= 0\n");
    return 2;
  }
  const Sweep sweep = load_sweep(sweep_name);
  if (out_dir.empty()) out_dir = sweep.out_dir;
  std::filesystem::create_directories(out_dir);

  sim::SimOptions so;
  so.calibration = calibration;
  so.allreduce_algorithm = algorithm;
  // Explicit only: else the scenario's simulator.network (or auto) applies (run_scenario).
  if (!vm["network"].defaulted()) so.params.push_back(network_tier_param(network));
  Progress progress(fmt::format("sweep {}", sweep.name));
  auto results = run_sweep(sweep, so, jobs, sets, &Progress::callback, &progress);
  fill_scaling_efficiency(results);
  const auto table = results_table(sweep, results);
  const std::string csv = (std::filesystem::path(out_dir) / "results.csv").string();
  write_csv(csv, table);

  int ok = 0;
  for (const auto& r : results) ok += r.ok;
  if (!vm.count("quiet")) {
    Table t;
    t.column("#");
    for (const auto& c : sweep.columns)
      t.column(c.rfind("plan.", 0) == 0 ? c.substr(5) : c, Table::kLeft);
    t.column("GPUs");
    t.column("TPOT ms");
    t.column("p99 ms");
    t.column("tokens/s");
    t.column("scaling");
    t.column("util %");
    t.column("status", Table::kLeft);
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      std::vector<std::string> row = {std::to_string(i)};
      for (const auto& c : sweep.columns) {
        std::string v;
        for (const auto& [k, val] : sweep.points[i].overrides) {
          if (k == c) v = val;
        }
        row.push_back(v);
      }
      if (r.ok) {
        row.insert(
            row.end(),
            {std::to_string(r.gpus), fmt::format("{:.3f}", r.metrics.tpot_mean_ms),
             fmt::format("{:.3f}", r.metrics.tpot_p99_ms),
             fmt::format("{:.0f}", r.metrics.tokens_per_s),
             r.scaling_efficiency > 0 ? fmt::format("{:.1f}%", 100 * r.scaling_efficiency) : "",
             fmt::format("{:.1f}", 100 * r.metrics.mean_utilisation), "ok"});
      } else {
        std::string e = r.error.size() > 70 ? r.error.substr(0, 67) + "..." : r.error;
        row.insert(row.end(), {"", "", "", "", "", "", "error: " + e});
      }
      t.row(std::move(row));
    }
    std::printf("sweep %s (%s): %d points, %d ran, %d failed\n", sweep.name.c_str(),
                sweep.origin.c_str(), static_cast<int>(results.size()), ok,
                static_cast<int>(results.size()) - ok);
    t.print(stdout);
  }
  std::printf("results: %s\n", csv.c_str());
  if (!vm.count("no-plots")) {
    std::string note;
    const auto images = make_plots(out_dir, sweep, table, &note);
    if (!note.empty()) std::fprintf(stderr, "masep sweep: %s\n", note.c_str());
    for (const auto& img : images) std::printf("plot:    %s\n", img.c_str());
  }
  return ok > 0 ? 0 : 1;
}

}  // namespace masep::tools
