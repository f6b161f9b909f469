// masep sweep SWEEP.yaml: run a grid of scenarios in parallel; CSV and plots out.
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.hpp"
#include "masep/plan/seeded_hash.hpp"
#include "commands.hpp"
#include "plot.hpp"
#include "progress.hpp"
#include "sweep.hpp"
#include "sweep_shard.hpp"
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

Resumable and shardable: every finished point is recorded at once in DIR/points/<i>.json
(with a key of the sweep, its options and this masep build; a record of anything else is an
error, never reused). A rerun skips the points already recorded (--fresh recomputes them).
--shard I/N runs only the points p with p % N == I; under a Slurm job array
(SLURM_ARRAY_TASK_ID/COUNT/MIN) or an MPI launcher (mpirun -np N: OMPI_COMM_WORLD_RANK/SIZE,
PMI_RANK/SIZE) the shard is taken from the environment. Whichever process finds every point
recorded writes results.csv (byte-identical to a single-process run); plots are drawn by a
single-process run or by `masep sweep SWEEP --merge --out DIR` after the shards.
docs/sweep.md has a Slurm job-array script.

options)";

}  // namespace

int cmd_sweep(const Args& args) {
  std::string sweep_name, out_dir, calibration, algorithm, network = "auto", shard_flag;
  std::vector<std::string> sets;
  int jobs = 0, approx_layers = 6;
  std::string fidelity = "exact";
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
      "fidelity", po::value(&fidelity)->default_value("exact"),
      "exact or approx (layer sampling, as masep sim --fidelity; ~10x faster on 61-layer "
      "models, error in docs/simulator-model.md)")(
      "approx-layers", po::value(&approx_layers)->default_value(6),
      "--fidelity approx: MoE layers simulated per step (>= 3)")(
      "shard", po::value(&shard_flag),
      "run only shard I/N of the points (I/N, or auto: from a Slurm job array or MPI launcher)")(
      "merge", "run nothing: join the recorded points of DIR into results.csv and plots")(
      "fresh", "recompute every point (delete DIR/points first; not with shards)")(
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
  if ((fidelity != "exact" && fidelity != "approx") || approx_layers < 3) {
    std::fprintf(stderr, "masep sweep: --fidelity must be exact or approx, --approx-layers >= 3\n");
    return 2;
  }
  const int approx = fidelity == "approx" ? approx_layers : 0;
  const Sweep sweep = load_sweep(sweep_name);
  if (out_dir.empty()) out_dir = sweep.out_dir;
  const bool merge = vm.count("merge") > 0;
  ShardSpec shard;
  try {
    shard = parse_shard(merge ? std::string("0/1") : shard_flag,
                        [](const char* n) -> const char* { return std::getenv(n); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "masep sweep: %s\n", e.what());
    return 2;
  }
  if (vm.count("fresh") && (shard.count > 1 || merge)) {
    std::fprintf(stderr,
                 "masep sweep: --fresh deletes every recorded point; with shards or --merge, "
                 "remove %s/points once before starting instead\n",
                 out_dir.c_str());
    return 2;
  }
  std::filesystem::create_directories(out_dir);

  sim::SimOptions so;
  so.calibration = calibration;
  so.allreduce_algorithm = algorithm;
  // Explicit only: else the scenario's simulator.network (or auto) applies (run_scenario).
  if (!vm["network"].defaulted()) so.params.push_back(network_tier_param(network));
  // What changes results besides the points: the options and the calibration's content.
  std::string options = fmt::format("algorithm={} network={} calibration={}", algorithm, network,
                                    calibration);
  if (approx > 0) options += fmt::format(" fidelity=approx approx_layers={}", approx);
  if (!calibration.empty()) {
    std::ifstream in(calibration, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    options += fmt::format(" calibration_hash={:016x}", plan::fnv1a64(text.str()));
  }
  const std::string key = sweep_key(sweep, sets, options, running_binary_id());
  const int n = static_cast<int>(sweep.points.size());
  if (vm.count("fresh")) {
    std::filesystem::remove_all(std::filesystem::path(out_dir) / "points");
  }
  // Points already recorded (this shard's from an interrupted run, or other shards').
  std::vector<PointResult> results(static_cast<size_t>(n));
  std::vector<char> present(static_cast<size_t>(n), 0);
  auto read_records = [&] {
    for (int i = 0; i < n; ++i) {
      if (present[static_cast<size_t>(i)]) continue;
      if (auto r = read_point_record(out_dir, i, key)) {
        results[static_cast<size_t>(i)] = std::move(*r);
        present[static_cast<size_t>(i)] = 1;
      }
    }
  };
  read_records();
  int resumed = 0, to_run = 0;
  std::vector<char> todo(static_cast<size_t>(n), 0);
  for (int i = 0; i < n; ++i) {
    if (!shard.owns(i)) continue;
    if (present[static_cast<size_t>(i)]) {
      ++resumed;
    } else if (!merge) {
      todo[static_cast<size_t>(i)] = 1;
      ++to_run;
    }
  }
  if (shard.count > 1) {
    std::printf("shard %d/%d (%s): %d of %d points, %d already recorded\n", shard.index,
                shard.count, shard.source.c_str(), to_run + resumed, n, resumed);
  } else if (resumed > 0 && !merge) {
    std::printf("resumed: %d of %d points already recorded in %s/points (--fresh recomputes)\n",
                resumed, n, out_dir.c_str());
  }
  int ran_ok = 0;
  if (to_run > 0) {
    Progress progress(fmt::format("sweep {}", sweep.name));
    auto ran = run_sweep(
        sweep, so, jobs, sets, &Progress::callback, &progress, &todo,
        [&](int i, const PointResult& r) { write_point_record(out_dir, i, key, r); }, approx);
    for (int i = 0; i < n; ++i) {
      if (!todo[static_cast<size_t>(i)]) continue;
      ran_ok += ran[static_cast<size_t>(i)].ok;
      results[static_cast<size_t>(i)] = std::move(ran[static_cast<size_t>(i)]);
      present[static_cast<size_t>(i)] = 1;
    }
  }
  read_records();  // other shards may have finished meanwhile
  int missing = 0;
  std::string first_missing;
  for (int i = 0; i < n; ++i) {
    if (present[static_cast<size_t>(i)]) continue;
    if (++missing <= 8) first_missing += (first_missing.empty() ? "" : ", ") + std::to_string(i);
  }
  if (missing > 0) {
    if (merge) {
      std::fprintf(stderr,
                   "masep sweep --merge: %d of %d points are not recorded in %s/points (points "
                   "%s%s): run the missing shards first\n",
                   missing, n, out_dir.c_str(), first_missing.c_str(), missing > 8 ? ", ..." : "");
      return 1;
    }
    std::printf(
        "%d of %d points recorded in %s/points; results.csv is written by the process that "
        "records the last point (or: masep sweep %s --merge --out %s)\n",
        n - missing, n, out_dir.c_str(), sweep_name.c_str(), out_dir.c_str());
    return to_run > 0 && ran_ok == 0 ? 1 : 0;
  }
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
  // A shard that completed the sweep leaves the plots to --merge or a single-process run
  // (several shards finishing together must not draw the same files at once).
  if (!vm.count("no-plots") && shard.count == 1) {
    std::string note;
    const auto images = make_plots(out_dir, sweep, table, &note);
    if (!note.empty()) std::fprintf(stderr, "masep sweep: %s\n", note.c_str());
    for (const auto& img : images) std::printf("plot:    %s\n", img.c_str());
  }
  return ok > 0 ? 0 : 1;
}

}  // namespace masep::tools
