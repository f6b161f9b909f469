// masep search SCENARIO: the best plans for a GPU budget and a TPOT SLO (tools/search.hpp).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/input_file.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/seeded_hash.hpp"
#include "plot.hpp"
#include "progress.hpp"
#include "search.hpp"
#include "sim_run.hpp"
#include "sweep.hpp"
#include "sweep_shard.hpp"
#include "table.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

constexpr const char* kUsage = R"(usage: masep search [SCENARIO] [options]

Finds the plans with the most tokens/s per GPU for SCENARIO's model, cluster and workload on
a budget of GPUs, among those meeting a TPOT SLO. It enumerates co-located plans
(tensor_parallel, expert_tensor_parallel, expert_replicas, placement, micro_batches) and
MA-separation plans (attention:MoE split, replicas x head_parallel x sequence_parallel,
expert_tensor_parallel, expert_replicas, placement, micro_batches) that use exactly --gpus GPUs, rejects invalid ones with the
scenario loader's own validation, prunes with the exact memory check and a floor on TPOT
(roofline per GPU and along the critical path; against the SLO and against the top plans
found so far), and simulates the rest in
parallel. Prints the candidate counts, the top plans with their bottleneck, and the speed-up
of the best MA plan over the best co-located plan. Reference: docs/search.md.

Beyond one process: --out DIR records every candidate's floor and simulation in
DIR/records as they finish, so a rerun resumes; --shard I/N (or a Slurm job array's / MPI
launcher's rank, as masep sweep takes them) computes only the candidates i with i % N == I,
and `masep search ... --merge --out DIR` joins the shards into the output a single process
gives, byte for byte. With --map, every search of the map records under DIR/c<context>-g<gpus>-
b<batch>, a shard takes its share of every search, and --merge prints the map.

SCENARIO   built-in name or YAML path (default: paper); its own plan is replaced

options)";

// Pareto frontier per kind over simulated candidates: lower TPOT and higher tokens/s/GPU.
std::vector<int> pareto(const SearchResult& r, plan::PlanKind kind) {
  std::vector<int> pts;
  for (size_t i = 0; i < r.results.size(); ++i) {
    if (r.results[i].status == CandidateStatus::kSimulated && r.candidates[i].kind == kind) {
      pts.push_back(static_cast<int>(i));
    }
  }
  std::sort(pts.begin(), pts.end(), [&](int a, int b) {
    const auto& x = r.results[static_cast<size_t>(a)];
    const auto& y = r.results[static_cast<size_t>(b)];
    if (x.metrics.tpot_mean_ms != y.metrics.tpot_mean_ms)
      return x.metrics.tpot_mean_ms < y.metrics.tpot_mean_ms;
    if (x.tokens_per_s_per_gpu != y.tokens_per_s_per_gpu)
      return x.tokens_per_s_per_gpu > y.tokens_per_s_per_gpu;
    return a < b;
  });
  std::vector<int> out;
  double best = -1;
  for (int i : pts) {
    const double v = r.results[static_cast<size_t>(i)].tokens_per_s_per_gpu;
    if (v > best) {
      out.push_back(i);
      best = v;
    }
  }
  return out;
}

}  // namespace

// `masep search --map`: one search per (context, GPU budget, batch); the best of each plan kind
// and the speed-up of MA separation over co-location, as a table, map.csv and plots.
//
// Beyond one process (MapRecords): with --out DIR every search of the map records its
// candidates under DIR/c<context>-g<gpus>-b<batch>/records (its own key, as a single
// search's --out), so a rerun resumes; with --shard I/N each search computes only its
// candidates i % N == I (every shard takes a share of every search, so the large budgets are
// split too) and prints its counts, and --merge joins each search's records with
// merge_search: the table, map.csv and plots are those of one process, byte for byte.
struct MapRecords {
  std::string out_dir;   ///< "" = no records
  bool merge = false;    ///< join the records instead of running
  std::string sim_text;  ///< simulator options for search_key
};

int search_map(const std::string& scenario, const plan::Scenario& base, const SearchOptions& so0,
               const SearchSpace& space0, const std::vector<int>& gpu_list,
               std::vector<int> batches, std::vector<int> contexts, const std::string& out_dir,
               bool per_gpu, const MapRecords& rec) {
  if (batches.empty()) batches = {base.workload.batch};
  if (contexts.empty()) contexts = {base.workload.context};
  const ShardSpec& shard = so0.shard;
  if (shard.count > 1) {
    // A shard of every search: records only, no table (the merge prints it).
    int total = 0, mine = 0, simulated = 0, ran = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int c : contexts) {
      for (int g : gpu_list) {
        for (int b0 : batches) {
          const int b = per_gpu ? b0 * g : b0;
          SearchOptions so = so0;
          so.overrides.push_back(fmt::format("workload.context={}", c));
          SearchSpace sp = space0;
          sp.gpus = g;
          sp.batches = {b};
          sp.ma_separation = space0.ma_separation && g >= 2;
          so.out_dir =
              (std::filesystem::path(rec.out_dir) / fmt::format("c{}-g{}-b{}", c, g, b)).string();
          so.key = search_key(sp, so, rec.sim_text, running_binary_id());
          const SearchResult r = run_search(sp, so);
          for (const auto& x : r.results) mine += x.status != CandidateStatus::kOtherShard;
          total += r.enumerated;
          simulated += r.simulated;
          ran += r.ran;
          std::fprintf(
              stderr,
              "masep search --map shard %d/%d: context %d, %d GPUs, batch %d: %d "
              "simulated (%.1f s)\n",
              shard.index, shard.count, c, g, b, r.simulated,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
      }
    }
    std::printf(
        "search --map shard %d/%d (%s): %zu searches, %d of %d candidates, %d simulated (%d run "
        "now); records in %s\n",
        shard.index, shard.count, shard.source.c_str(),
        contexts.size() * gpu_list.size() * batches.size(), mine, total, simulated, ran,
        rec.out_dir.c_str());
    std::printf(
        "when every shard has finished: masep search with the same options and --merge --out %s\n",
        rec.out_dir.c_str());
    return 0;
  }
  int missing = 0;
  std::string first_missing;
  std::vector<std::vector<std::string>> table = {
      {"context", "gpus", "batch", "best_colocated", "colocated_tokens_per_s_per_gpu",
       "colocated_tpot_ms", "best_ma", "ma_tokens_per_s_per_gpu", "ma_tpot_ms", "speedup",
       "status"}};
  std::printf("where MA separation pays: %s, model %s on %s; speed-up = tokens/s per GPU of the "
              "best MA plan / the best co-located plan on the same GPUs (>1: MA pays)\n",
              scenario.c_str(), base.model.name.c_str(), base.topology.name.c_str());
  const auto t0 = std::chrono::steady_clock::now();
  for (int c : contexts) {
    Table t;
    t.column("GPUs");
    for (int b : batches)
      t.column(per_gpu ? fmt::format("batch {}/GPU", b) : fmt::format("batch {}", b));
    for (int g : gpu_list) {
      std::vector<std::string> row = {std::to_string(g)};
      for (int b0 : batches) {
        const int b = per_gpu ? b0 * g : b0;
        SearchOptions so = so0;
        so.overrides.push_back(fmt::format("workload.context={}", c));
        SearchSpace sp = space0;
        sp.gpus = g;
        sp.batches = {b};
        sp.ma_separation = space0.ma_separation && g >= 2;
        std::string cell = "-", status = "ok";
        std::vector<std::string> line = {std::to_string(c), std::to_string(g), std::to_string(b)};
        try {
          if (!rec.out_dir.empty()) {
            so.out_dir =
                (std::filesystem::path(rec.out_dir) / fmt::format("c{}-g{}-b{}", c, g, b)).string();
            so.key = search_key(sp, so, rec.sim_text, running_binary_id());
          }
          const SearchResult r = rec.merge ? merge_search(sp, so) : run_search(sp, so);
          if (!r.missing.empty()) {
            if (missing++ == 0) first_missing = so.out_dir;
            throw std::runtime_error("records missing");
          }
          auto best = [&](int i) -> std::vector<std::string> {
            if (i < 0) return {"", "", ""};
            const auto& x = r.results[static_cast<size_t>(i)];
            return {r.candidates[static_cast<size_t>(i)].label(),
                    fmt::format("{:.6g}", x.tokens_per_s_per_gpu),
                    fmt::format("{:.6g}", x.metrics.tpot_mean_ms)};
          };
          const auto co = best(r.best_colocated), ma = best(r.best_ma);
          line.insert(line.end(), co.begin(), co.end());
          line.insert(line.end(), ma.begin(), ma.end());
          if (r.best_colocated >= 0 && r.best_ma >= 0) {
            const double sp_up = r.results[static_cast<size_t>(r.best_ma)].tokens_per_s_per_gpu /
                                 r.results[static_cast<size_t>(r.best_colocated)].tokens_per_s_per_gpu;
            line.push_back(fmt::format("{:.4g}", sp_up));
            cell = fmt::format("{:.2f}x", sp_up);
          } else {
            line.push_back("");
            cell = r.best_ma >= 0 ? "MA only" : r.best_colocated >= 0 ? "co only" : "none fits";
            status = cell;
          }
        } catch (const std::exception& e) {
          line.resize(9);
          line.push_back("");
          status = std::string("error: ") + e.what();
          cell = "error";
        }
        line.push_back(status);
        std::fprintf(stderr, "masep search --map: context %d, %d GPUs, batch %d: %s (%.1f s)\n", c,
                     g, b, cell.c_str(),
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        table.push_back(std::move(line));
        row.push_back(cell);
      }
      t.row(std::move(row));
    }
    std::printf("\ncontext %d\n", c);
    t.print(stdout);
  }
  std::fprintf(stderr, "masep search --map: %zu searches in %.1f s\n", table.size() - 1,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  if (missing > 0) {
    std::fprintf(stderr,
                 "masep search --map --merge: %d of %zu searches are not completely recorded "
                 "(the first: %s/records): run the missing shards first\n",
                 missing, table.size() - 1, first_missing.c_str());
    return 1;
  }
  if (!out_dir.empty()) {
    std::filesystem::create_directories(out_dir);
    const std::string csv = (std::filesystem::path(out_dir) / "map.csv").string();
    write_csv(csv, table);
    std::printf("csv: %s\n", csv.c_str());
    // One heat map per context: GPUs (rows) x batch (columns), the speed-up in each cell.
    std::vector<std::string> xl, yl;
    for (int b : batches) xl.push_back(per_gpu ? fmt::format("{}/GPU", b) : std::to_string(b));
    for (int g : gpu_list) yl.push_back(std::to_string(g));
    size_t row = 1;
    for (int c : contexts) {
      std::vector<std::vector<double>> v(gpu_list.size(), std::vector<double>(batches.size(), NAN));
      for (size_t gi = 0; gi < gpu_list.size(); ++gi) {
        for (size_t bi = 0; bi < batches.size(); ++bi, ++row) {
          const std::string& cell = table[row][9];
          if (!cell.empty()) v[gi][bi] = std::stod(cell);
        }
      }
      std::string note;
      for (const auto& img : make_heatmap(
               out_dir, fmt::format("map-context{}", c),
               fmt::format("MA separation / co-location, tokens/s per GPU: {} on {}, context {}",
                           base.model.name, base.topology.name, c),
               per_gpu ? "batch (sequences per GPU)" : "batch (sequences)", "GPUs", xl, yl, v, 1.0,
               &note)) {
        std::printf("plot: %s\n", img.c_str());
      }
      if (!note.empty()) std::fprintf(stderr, "masep search: %s\n", note.c_str());
    }
  }
  return 0;
}

int cmd_search(const Args& args) {
  std::string scenario = "paper", csv, out_yaml, plot, calibration, algorithm, network = "auto";
  std::vector<std::string> sets;
  std::vector<int> batches, map_gpus, map_contexts;
  std::string map_out, out_dir, shard_flag;
  int gpus = 0, jobs = 0, top = 10, steps = 0, max_mb = 4, max_er = 0, wave = 16;
  int moe_layers = 0, ma_step = 1, max_sp = 0, max_etp = 0;
  std::string placement = "both";
  double tpot_ms = 0;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")(
      "set", po::value(&sets)->composing(),
      "override KEY=VALUE on the scenario, as masep sim takes it (repeatable)")(
      "gpus", po::value(&gpus),
      "GPU budget: every candidate uses exactly this many "
      "(default: all GPUs of the topology)")("tpot-ms", po::value(&tpot_ms),
                                             "SLO: mean TPOT at most this many ms (default: none)")(
      "batch", po::value(&batches)->multitoken(),
      "workload.batch values to try with every plan, e.g. --batch 8 16 32 (default: the "
      "scenario's batch)")(
      "top", po::value(&top)->default_value(10),
      "plans to list; the exact top N of each plan kind survives the bound pruning")(
      "steps", po::value(&steps),
      "decode steps to simulate per candidate (default: the "
      "scenario's workload.decode_steps)")(
      "max-micro-batches", po::value(&max_mb)->default_value(4), "micro_batches 1..N")(
      "max-expert-replicas", po::value(&max_er)->default_value(0),
      "expert_replicas 1..N (0 = up to the expert groups)")(
      "max-expert-tp", po::value(&max_etp)->default_value(0),
      "expert_tensor_parallel: the divisors of the expert GPUs up to N (0 = any, 1 = whole "
      "experts only)")("no-colocated", "skip co-located plans")(
      "no-ma", "skip MA-separation plans")("jobs,j", po::value(&jobs)->default_value(0),
                                           "worker threads (0 = all cores)")(
      "wave", po::value(&wave)->default_value(16),
      "candidates simulated between updates of the bound (fixed, so results do not depend "
      "on --jobs)")("csv", po::value(&csv), "write every candidate with its status and metrics")(
      "out-yaml", po::value(&out_yaml), "write the winning plan as a scenario YAML for masep sim")(
      "plot", po::value(&plot),
      "Pareto frontier (tokens/s/GPU vs TPOT) per plan kind: writes PLOT.png/.svg/.dat/.gp "
      "(gnuplot)")("calibration", po::value(&calibration), "calibration YAML for the simulator")(
      "algorithm", po::value(&algorithm)->default_value("auto"),
      "all-reduce algorithm: ring, tree, hierarchical or auto")(
      "network", po::value(&network)->default_value("auto"), kNetworkHelp)(
      "map", po::value(&map_gpus)->multitoken(),
      "where MA separation pays: search every GPU budget listed (e.g. --map 2 4 8 16) x every "
      "--batch x every --map-context, and print the speed-up of the best MA plan over the best "
      "co-located plan on the same GPUs (tokens/s per GPU); with --map-out DIR also map.csv and "
      "one plot per context")("map-context", po::value(&map_contexts)->multitoken(),
                              "with --map: workload.context values (default: the scenario's)")(
      "map-out", po::value(&map_out), "with --map: folder for map.csv and the plots")(
      "batch-per-gpu", "with --map: --batch values are sequences per GPU (batch = B x GPUs)")(
      "out", po::value(&out_dir),
      "record every candidate's floor and simulation in DIR/records as they finish; a rerun "
      "with the same inputs resumes from them")(
      "shard", po::value(&shard_flag),
      "compute only the candidates i with i % N == I (I/N, or auto: a Slurm job array's or an "
      "MPI launcher's rank); needs --out; join with --merge")(
      "merge", "run nothing: join the records in --out DIR (all shards) and print the result")(
      "fresh", "delete DIR/records first (not with shards or --merge)")(
      "moe-layers", po::value(&moe_layers)->default_value(0),
      "compile and simulate every candidate with only N MoE layers (plus the dense ones) and "
      "extrapolate floor and TPOT to the model's depth (0 = all layers); memory is checked at "
      "full depth")(
      "ma-step", po::value(&ma_step)->default_value(1),
      "MA separation: attention GPU counts that are multiples of N only (e.g. 8: whole nodes)")(
      "max-sequence-parallel", po::value(&max_sp)->default_value(0),
      "MA separation: sequence_parallel 1..N (0 = any)")(
      "placement", po::value(&placement)->default_value("both"),
      "expert placements to try: round_robin, contiguous or both")(
      "model-splits",
      "enumerate only tensor/head-parallel degrees that divide the model's heads and KV heads "
      "(the others are invalid anyway; saves a load each, and changes the counts)");
  po::options_description hidden;
  hidden.add_options()("scenario", po::value(&scenario));
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (auto rc = parse_command_line("search", args, opts, vm, &hidden, &pos)) return *rc;

  auto bad = [](const char* opt, const std::string& msg) {
    throw plan::InputError("", 0, 0, opt, msg);
  };
  if (vm.count("gpus") && gpus < 1) bad("--gpus", fmt::format("must be >= 1, got {}", gpus));
  if (vm.count("tpot-ms") && !(tpot_ms > 0)) {
    bad("--tpot-ms", fmt::format("must be a positive number of ms, got {}", tpot_ms));
  }
  if (top < 1) bad("--top", fmt::format("must be >= 1, got {}", top));
  if (vm.count("steps") && steps < 1) bad("--steps", fmt::format("must be >= 1, got {}", steps));
  for (const auto& o : sets) {
    if (o.rfind("plan=", 0) == 0 || o.rfind("plan.", 0) == 0) {
      bad("--set", fmt::format("'{}': the search chooses the plan; set the model, topology or "
                               "workload only",
                               o));
    }
  }
  for (int b : batches) {
    if (b < 1) bad("--batch", fmt::format("must be >= 1, got {}", b));
  }
  if (max_mb < 1) bad("--max-micro-batches", fmt::format("must be >= 1, got {}", max_mb));
  if (max_er < 0) bad("--max-expert-replicas", fmt::format("must be >= 0, got {}", max_er));
  if (max_etp < 0) bad("--max-expert-tp", fmt::format("must be >= 0, got {}", max_etp));
  if (jobs < 0) bad("--jobs", fmt::format("must be >= 0, got {}", jobs));
  if (wave < 1) bad("--wave", fmt::format("must be >= 1, got {}", wave));
  if (moe_layers < 0) bad("--moe-layers", fmt::format("must be >= 0, got {}", moe_layers));
  if (ma_step < 1) bad("--ma-step", fmt::format("must be >= 1, got {}", ma_step));
  if (max_sp < 0) bad("--max-sequence-parallel", fmt::format("must be >= 0, got {}", max_sp));
  if (placement != "both" && placement != "round_robin" && placement != "contiguous") {
    bad("--placement", fmt::format("'{}': expected round_robin, contiguous or both", placement));
  }
  if (vm.count("no-colocated") && vm.count("no-ma")) {
    bad("--no-ma", "with --no-colocated nothing is left to search");
  }

  const bool merge = vm.count("merge") > 0;
  if (merge && out_dir.empty()) bad("--merge", "needs --out DIR (where the shards recorded)");
  ShardSpec shard;
  if (!shard_flag.empty() || (!out_dir.empty() && !merge)) {
    try {
      shard = parse_shard(shard_flag, [](const char* v) -> const char* { return std::getenv(v); });
    } catch (const std::invalid_argument& e) {
      bad("--shard", e.what());
    }
  }
  if (shard.count > 1 && out_dir.empty()) {
    bad("--shard", fmt::format("{}: a shard needs --out DIR for its records", shard.source));
  }
  if (merge && !shard_flag.empty()) bad("--merge", "joins every shard; leave out --shard");
  if (vm.count("fresh") && (out_dir.empty() || merge || shard.count > 1)) {
    bad("--fresh",
        "deletes --out DIR/records; not with shards or --merge (remove it once "
        "before starting them)");
  }

  SearchOptions so;
  so.base = scenario;
  so.overrides = sets;
  if (steps > 0) so.overrides.push_back(fmt::format("workload.decode_steps={}", steps));
  so.tpot_slo_ms = tpot_ms;
  so.top_k = top;
  so.wave = wave;
  so.jobs = jobs;
  so.moe_layers = moe_layers;
  so.sim.calibration = calibration;
  so.sim.allreduce_algorithm = algorithm;
  // Explicit only: else the scenario's simulator.network (or auto) applies (run_scenario).
  if (!vm["network"].defaulted()) so.sim.params.push_back(network_tier_param(network));
  so.shard = shard;
  so.out_dir = out_dir;

  std::vector<std::string> probe = so.overrides;
  probe.emplace_back(kProbePlan);
  const plan::Scenario base = plan::load_scenario(scenario, probe);
  const int have = base.topology.nodes * base.topology.gpus_per_node;
  if (gpus == 0) gpus = have;
  if (gpus > have) {
    bad("--gpus", fmt::format("{} GPUs, but topology {} has {}", gpus, base.topology.name, have));
  }
  SearchSpace space;
  space.gpus = gpus;
  space.max_micro_batches = max_mb;
  space.batches = batches;
  space.max_expert_replicas = max_er;
  space.max_expert_tensor_parallel = max_etp;
  space.colocated = !vm.count("no-colocated");
  space.ma_separation = !vm.count("no-ma");
  space.ma_step = ma_step;
  space.max_sequence_parallel = max_sp;
  space.round_robin = placement != "contiguous";
  space.contiguous = placement != "round_robin";
  if (vm.count("model-splits")) {
    space.heads = base.model.heads;
    space.kv_heads = base.model.kv_heads;
    space.expert_ffn = base.model.expert_ffn;
    if (base.model.shared_experts > 0) space.shared_expert_ffn = base.model.shared_ffn();
  }
  // What changes results besides the space: the simulator options and the calibration.
  std::string sim_text;
  if (!out_dir.empty()) {
    sim_text = fmt::format("algorithm={} network={} calibration={}", algorithm,
                           vm["network"].defaulted() ? "scenario" : network, calibration);
    if (!calibration.empty()) {
      sim_text += fmt::format(
          " calibration_hash={:016x}",
          plan::fnv1a64(plan::read_input_file(calibration, "calibration", uint64_t{1} << 30)));
    }
  }
  if (!map_gpus.empty()) {
    for (int g : map_gpus) {
      if (g < 1 || g > have) {
        bad("--map", fmt::format("{} GPUs: need 1..{} (topology {})", g, have, base.topology.name));
      }
    }
    for (int c : map_contexts) {
      if (c < 1) bad("--map-context", fmt::format("must be >= 1, got {}", c));
    }
    if (vm.count("fresh")) {
      bad("--fresh", "is for one search; with --map remove the --out folder once instead");
    }
    MapRecords rec;
    rec.out_dir = out_dir;
    rec.merge = merge;
    rec.sim_text = sim_text;
    return search_map(scenario, base, so, space, map_gpus, batches, map_contexts, map_out,
                      vm.count("batch-per-gpu") > 0, rec);
  }

  if (!out_dir.empty()) {
    so.key = search_key(space, so, sim_text, running_binary_id());
    if (vm.count("fresh")) std::filesystem::remove_all(std::filesystem::path(out_dir) / "records");
  }
  std::map<std::string, std::unique_ptr<Progress>> bars;
  so.progress = [&](const char* phase, int64_t done, int64_t total) {
    auto& p = bars[phase];
    if (!p) p = std::make_unique<Progress>(fmt::format("search: {}", phase));
    p->update(done, total);
  };

  const auto t0 = std::chrono::steady_clock::now();
  const SearchResult r = merge ? merge_search(space, so) : run_search(space, so);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!out_dir.empty() && r.resumed > 0 && !merge) {
    std::fprintf(stderr, "masep search: %d candidates read back from %s/records\n", r.resumed,
                 out_dir.c_str());
  }
  if (shard.count > 1) {
    int mine = 0;
    for (const auto& x : r.results) mine += x.status != CandidateStatus::kOtherShard;
    std::printf(
        "search shard %d/%d (%s): %d of %d candidates: %d invalid, %d pruned by memory, %d "
        "pruned by bound, %d simulated (%d run now), %d failed; records in %s/records\n",
        shard.index, shard.count, shard.source.c_str(), mine, r.enumerated, r.invalid,
        r.pruned_memory, r.pruned_bound, r.simulated, r.ran, r.failed, out_dir.c_str());
    std::printf(
        "when every shard has finished: masep search with the same options and --merge "
        "--out %s\n",
        out_dir.c_str());
    return 0;
  }
  if (!r.missing.empty()) {
    std::string first;
    for (size_t j = 0; j < r.missing.size() && j < 8; ++j) {
      first += (j ? ", " : "") + std::to_string(r.missing[j]);
    }
    std::fprintf(stderr,
                 "masep search --merge: %zu of %d candidates are not recorded in %s/records "
                 "(candidates %s%s): run the missing shards first\n",
                 r.missing.size(), r.enumerated, out_dir.c_str(), first.c_str(),
                 r.missing.size() > 8 ? ", ..." : "");
    return 1;
  }
  if (r.dropped > 0) {
    std::fprintf(stderr,
                 "masep search: %d simulations beyond the final bound are reported as pruned "
                 "(so that the output does not depend on the order or the shards)\n",
                 r.dropped);
  }

  const auto& w = base.workload;
  std::string batch_text = std::to_string(w.batch);
  if (!batches.empty()) batch_text = fmt::format("{}", fmt::join(batches, "/"));
  std::printf("search: %s on %s, %d GPUs, model %s, batch %s, %s, %d decode steps, SLO %s\n",
              base.name.c_str(), base.topology.name.c_str(), gpus, base.model.name.c_str(),
              batch_text.c_str(),
              w.context_kind == plan::ContextKind::kFixed
                  ? fmt::format("context {}", w.context).c_str()
                  : fmt::format("context {}..{}", w.context_min, w.context_max).c_str(),
              w.decode_steps, tpot_ms > 0 ? fmt::format("TPOT <= {} ms", tpot_ms).c_str() : "none");
  int bound_slo = 0, bound_best = 0;
  for (const auto& x : r.results) {
    bound_slo += x.status == CandidateStatus::kBoundSlo;
    bound_best += x.status == CandidateStatus::kBoundBest;
  }
  std::printf(
      "candidates: %d enumerated, %d invalid, %d pruned by memory, %d pruned by bound (%d floor "
      "over the SLO, %d below the top %d), %d simulated, %d failed\n",
      r.enumerated, r.invalid, r.pruned_memory, r.pruned_bound, bound_slo, bound_best, top,
      r.simulated, r.failed);
  std::fprintf(stderr, "masep search: %d candidates in %.1f s wall (%d simulated)\n", r.enumerated,
               wall, r.simulated);
  if (r.floor_violations > 0) {
    std::fprintf(stderr,
                 "masep search: warning: %d simulated plans ran faster than their roofline "
                 "floor; the bound pruning may have dropped plans (a calibration with "
                 "efficiencies above 1?)\n",
                 r.floor_violations);
  }

  if (!csv.empty()) write_csv(csv, search_table(r));
  if (r.failed > 0) {
    std::string first;
    for (const auto& x : r.results) {
      if (x.status == CandidateStatus::kFailed) {
        first = x.error;
        break;
      }
    }
    // Every simulation failing is an input error of the simulator options (e.g. --algorithm,
    // --calibration), not a property of the plans.
    if (r.simulated == 0) {
      throw std::runtime_error(
          fmt::format("every simulation failed ({} plans); the first: {}", r.failed, first));
    }
    std::fprintf(stderr, "masep search: %d simulations failed; the first: %s\n", r.failed,
                 first.c_str());
  }

  if (r.ranking.empty()) {
    double lowest = std::numeric_limits<double>::infinity();
    int at = -1;
    for (size_t i = 0; i < r.results.size(); ++i) {
      const auto& x = r.results[i];
      if (x.status == CandidateStatus::kSimulated && x.metrics.tpot_mean_ms < lowest) {
        lowest = x.metrics.tpot_mean_ms;
        at = static_cast<int>(i);
      }
    }
    std::printf("no simulated plan meets the SLO%s\n",
                at >= 0 ? fmt::format("; the lowest TPOT simulated is {:.3f} ms ({})", lowest,
                                      r.candidates[static_cast<size_t>(at)].label())
                              .c_str()
                        : "");
    if (!csv.empty()) std::printf("csv: %s\n", csv.c_str());
    return 1;
  }

  Table t;
  t.column("#");
  t.column("plan", Table::kLeft);
  t.column("TPOT ms");
  t.column("floor ms");
  t.column("tokens/s/GPU");
  t.column("batch");
  t.column("bottleneck", Table::kLeft);
  const size_t shown = std::min(r.ranking.size(), static_cast<size_t>(top));
  for (size_t j = 0; j < shown; ++j) {
    const int i = r.ranking[j];
    const auto& c = r.candidates[static_cast<size_t>(i)];
    const auto& x = r.results[static_cast<size_t>(i)];
    t.row({std::to_string(j + 1), c.label(), fmt::format("{:.3f}", x.metrics.tpot_mean_ms),
           fmt::format("{:.3f}", x.floor_ms), fmt::format("{:.0f}", x.tokens_per_s_per_gpu),
           std::to_string(x.batch), bottleneck(c, x.metrics, gpus)});
  }
  std::printf("top %zu plans by tokens/s per GPU%s:\n", shown,
              tpot_ms > 0 ? " (meeting the SLO)" : "");
  t.print(stdout);

  auto describe_best = [&](const char* what, int i) {
    if (i < 0) {
      std::printf("best %-18s none meets the SLO\n", what);
      return;
    }
    const auto& x = r.results[static_cast<size_t>(i)];
    std::printf("best %-18s %s: TPOT %.3f ms, %.0f tokens/s/GPU\n", what,
                r.candidates[static_cast<size_t>(i)].label().c_str(), x.metrics.tpot_mean_ms,
                x.tokens_per_s_per_gpu);
  };
  describe_best("co-located:", r.best_colocated);
  describe_best("MA separation:", r.best_ma);
  if (r.best_colocated >= 0 && r.best_ma >= 0) {
    const double s = r.results[static_cast<size_t>(r.best_ma)].tokens_per_s_per_gpu /
                     r.results[static_cast<size_t>(r.best_colocated)].tokens_per_s_per_gpu;
    if (s > 1) {
      std::printf("MA separation wins on %d GPUs: %.2fx the tokens/s per GPU of co-location\n",
                  gpus, s);
    } else {
      std::printf(
          "co-location wins on %d GPUs: the best MA plan reaches %.2fx its tokens/s per GPU\n",
          gpus, s);
    }
  }

  const int winner = r.ranking.front();
  const auto& wc = r.candidates[static_cast<size_t>(winner)];
  if (!out_yaml.empty()) {
    std::vector<std::string> ov = so.overrides;
    if (wc.batch > 0) ov.push_back(fmt::format("workload.batch={}", wc.batch));
    const std::string text = scenario_yaml(scenario, ov, wc.plan_yaml, base.name + "-search-best");
    const std::string tmp = out_yaml + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      f << text;
      if (!f) throw std::runtime_error(fmt::format("cannot write '{}'", out_yaml));
    }
    std::filesystem::rename(tmp, out_yaml);
    // Self-check: the file loads and reproduces the winner's TPOT.
    const SimRun again = run_scenario(out_yaml, {}, so.sim);
    const double want = r.results[static_cast<size_t>(winner)].metrics.tpot_mean_ms;
    if (moe_layers > 0 && moe_layers < base.model.moe_layers()) {
      // Extrapolated: the full-depth run is the check of the extrapolation, not of equality.
      std::printf(
          "winner: %s (masep sim %s, all %d layers: TPOT %.3f ms; extrapolated from "
          "%d MoE layers: %.3f ms, %+.1f%%)\n",
          out_yaml.c_str(), out_yaml.c_str(), base.model.layers, again.metrics.tpot_mean_ms,
          moe_layers, want,
          100.0 * (want - again.metrics.tpot_mean_ms) / again.metrics.tpot_mean_ms);
    } else if (again.metrics.tpot_mean_ms != want) {
      throw std::runtime_error(fmt::format(
          "'{}' simulates to TPOT {} ms, but the search measured {} ms for the same plan", out_yaml,
          again.metrics.tpot_mean_ms, want));
    } else {
      std::printf("winner: %s (masep sim %s reproduces TPOT %.3f ms)\n", out_yaml.c_str(),
                  out_yaml.c_str(), want);
    }
  }
  if (!csv.empty()) std::printf("csv: %s\n", csv.c_str());
  if (!plot.empty()) {
    std::vector<std::vector<std::string>> table = {
        {"plan", "tpot_mean_ms", "tokens_per_s_per_gpu", "status"}};
    for (auto kind : {plan::PlanKind::kColocated, plan::PlanKind::kMaSeparation}) {
      for (int i : pareto(r, kind)) {
        const auto& x = r.results[static_cast<size_t>(i)];
        table.push_back({kind == plan::PlanKind::kColocated ? "co-located" : "MA separation",
                         fmt::format("{:.6g}", x.metrics.tpot_mean_ms),
                         fmt::format("{:.6g}", x.tokens_per_s_per_gpu), "ok"});
      }
    }
    const std::filesystem::path p(plot);
    const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
    std::filesystem::create_directories(dir);
    Sweep sw;
    sw.name = "search";
    SweepPlot pl;
    pl.name = p.filename().string();
    pl.title = fmt::format("Pareto frontier: {} on {} GPUs", base.name, gpus);
    pl.x = "tpot_mean_ms";
    pl.y = {"tokens_per_s_per_gpu"};
    pl.series = "plan";
    sw.plots.push_back(pl);
    std::string note;
    for (const auto& img : make_plots(dir, sw, table, &note))
      std::printf("plot: %s\n", img.c_str());
    if (!note.empty()) std::fprintf(stderr, "masep search: %s\n", note.c_str());
  }
  return 0;
}

}  // namespace masep::tools
