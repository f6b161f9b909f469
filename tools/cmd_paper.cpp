// masep paper: the paper's experiment simulated, beside the paper's reported figures.
// Nothing here is tuned to the paper: the scenarios are scenarios/paper.yaml,
// scenarios/paper-colocated.yaml and the sweep scenarios/sweeps/paper-scaling.yaml, each
// stating its assumptions; this command only runs them and prints both columns.
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "commands.hpp"
#include "progress.hpp"
#include "sweep.hpp"
#include "table.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

// The paper's reported figures (see docs/paper.md).
constexpr double kPaperTpotMs = 1.82, kPaperBaseTpotMs = 2.76;
constexpr double kPaperTps = 13289, kPaperBaseTps = 8696;
constexpr double kPaperUtil = 0.897, kPaperBaseUtil = 0.712;
constexpr double kPaperScaling16 = 0.87;

constexpr const char* kUsage = R"(usage: masep paper [options]

Simulates the MA-separation paper's experiment and prints it beside the paper's figures:
  paper            scenarios/paper.yaml: 16 x A100-80GB, 12 attention : 4 MoE GPUs
  paper-colocated  scenarios/paper-colocated.yaml: the co-located baseline (plan assumed)
  paper-scaling    scenarios/sweeps/paper-scaling.yaml: 3:1 MA separation and the baseline
                   at 4, 8, 12, 16 GPUs (batch grows with GPUs: weak scaling)
Paper: TPOT 1.82 vs 2.76 ms; 13,289 vs 8,696 tokens/s; GPU utilisation 89.7% vs 71.2%;
87% scaling efficiency at 16 GPUs (reported for both weak and strong scaling here).
scaling efficiency = (tokens/s at N GPUs / N) / (tokens/s at 4 GPUs / 4).
GPU utilisation = mean over GPUs of compute-stream busy time / wall time (the paper does
not define its utilisation; see docs/paper.md).
Every assumption is stated in those files and docs/paper.md; nothing is fitted to the paper.

options)";

const PointResult* find_point(const Sweep& sw, const std::vector<PointResult>& res,
                              const std::string& kind, int gpus) {
  for (size_t i = 0; i < res.size(); ++i) {
    if (res[i].ok && res[i].plan_kind == kind && res[i].gpus == gpus) return &res[i];
  }
  (void)sw;
  return nullptr;
}

std::string pct(double v) { return fmt::format("{:.1f}%", 100 * v); }

}  // namespace

int cmd_paper(const Args& args) {
  int jobs = 0;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")("json", "print the figures as JSON")(
      "jobs,j", po::value(&jobs)->default_value(0), "worker threads (0 = all cores)");
  po::variables_map vm;
  if (auto rc = parse_command_line("paper", args, opts, vm)) return *rc;
  const bool json = vm.count("json") > 0;

  // The two headline scenarios as a two-point sweep, then the scaling sweep.
  Sweep head;
  head.name = "paper";
  head.origin = "builtin";
  head.points = {SweepPoint{"paper", {}}, SweepPoint{"paper-colocated", {}}};
  const Sweep scaling = load_sweep("paper-scaling");
  Sweep all = scaling;
  all.points.insert(all.points.begin(), head.points.begin(), head.points.end());

  Progress progress("masep paper: simulating");
  auto res =
      run_sweep(all, sim::SimOptions{}, jobs, {}, json ? nullptr : &Progress::callback, &progress);
  const PointResult ma = res[0];
  const PointResult base = res[1];
  std::vector<PointResult> sres(res.begin() + 2, res.end());
  fill_scaling_efficiency(sres);
  for (const auto* r : {&ma, &base}) {
    if (!r->ok) throw std::runtime_error("paper scenario failed: " + r->error);
  }
  const PointResult* ma16 = find_point(scaling, sres, "ma_separation", 16);
  const PointResult* co16 = find_point(scaling, sres, "colocated", 16);
  // The paper does not say whether its scaling is weak or strong: also run the same points
  // at the fixed batch of 24 (strong scaling) and report both.
  auto strong = run_sweep(scaling, sim::SimOptions{}, jobs, {"workload.batch=24"});
  fill_scaling_efficiency(strong);
  const PointResult* ma16s = find_point(scaling, strong, "ma_separation", 16);
  const PointResult* co16s = find_point(scaling, strong, "colocated", 16);

  if (json) {
    nlohmann::ordered_json j;
    auto side = [](const PointResult& r, double tpot, double tps, double util) {
      nlohmann::ordered_json s;
      s["simulated"] = {{"tpot_ms", r.metrics.tpot_mean_ms},
                        {"tpot_p99_ms", r.metrics.tpot_p99_ms},
                        {"tokens_per_s", r.metrics.tokens_per_s},
                        {"gpu_utilisation", r.metrics.mean_utilisation},
                        {"gpus", r.gpus},
                        {"batch", r.batch}};
      s["paper"] = {{"tpot_ms", tpot}, {"tokens_per_s", tps}, {"gpu_utilisation", util}};
      return s;
    };
    j["ma_separation"] = side(ma, kPaperTpotMs, kPaperTps, kPaperUtil);
    j["colocated"] = side(base, kPaperBaseTpotMs, kPaperBaseTps, kPaperBaseUtil);
    nlohmann::ordered_json sc = nlohmann::ordered_json::array();
    for (size_t i = 0; i < sres.size(); ++i) {
      const auto& r = sres[i];
      nlohmann::ordered_json e;
      e["plan"] = r.plan_kind;
      e["gpus"] = r.gpus;
      e["ok"] = r.ok;
      if (r.ok) {
        e["batch"] = r.batch;
        e["tpot_ms"] = r.metrics.tpot_mean_ms;
        e["tokens_per_s"] = r.metrics.tokens_per_s;
        e["scaling_efficiency"] = r.scaling_efficiency;
      } else {
        e["error"] = r.error;
      }
      sc.push_back(e);
    }
    j["scaling"] = sc;
    j["scaling_efficiency_16"] = {
        {"simulated_ma_separation",
         ma16 ? nlohmann::json(ma16->scaling_efficiency) : nlohmann::json()},
        {"simulated_colocated", co16 ? nlohmann::json(co16->scaling_efficiency) : nlohmann::json()},
        {"paper", kPaperScaling16}};
    std::cout << j.dump(2) << "\n";
    return 0;
  }

  std::printf(
      "The MA-separation paper's experiment, simulated (16 x A100-80GB, paper-moe model)\n");
  std::printf(
      "Assumptions: scenarios/paper.yaml, paper-colocated.yaml, sweeps/paper-scaling.yaml;"
      " docs/paper.md.\n\n");
  Table t;
  t.column("", Table::kLeft);
  t.column("MA sep. 12:4 sim");
  t.column("paper");
  t.column("co-located sim");
  t.column("paper ");
  t.column("speed-up sim");
  t.column("paper  ");
  const auto& m = ma.metrics;
  const auto& b = base.metrics;
  t.row({"TPOT (ms)", fmt::format("{:.3f}", m.tpot_mean_ms), fmt::format("{:.2f}", kPaperTpotMs),
         fmt::format("{:.3f}", b.tpot_mean_ms), fmt::format("{:.2f}", kPaperBaseTpotMs),
         fmt::format("{:.2f}x", b.tpot_mean_ms / m.tpot_mean_ms),
         fmt::format("{:.2f}x", kPaperBaseTpotMs / kPaperTpotMs)});
  t.row({"tokens/s", fmt::format("{:.0f}", m.tokens_per_s), fmt::format("{:.0f}", kPaperTps),
         fmt::format("{:.0f}", b.tokens_per_s), fmt::format("{:.0f}", kPaperBaseTps),
         fmt::format("{:.2f}x", m.tokens_per_s / b.tokens_per_s),
         fmt::format("{:.2f}x", kPaperTps / kPaperBaseTps)});
  t.row({"GPU utilisation", pct(m.mean_utilisation), pct(kPaperUtil), pct(b.mean_utilisation),
         pct(kPaperBaseUtil), "", ""});
  t.row({"TPOT p99 (ms)", fmt::format("{:.3f}", m.tpot_p99_ms), "-",
         fmt::format("{:.3f}", b.tpot_p99_ms), "-", "", ""});
  t.print(stdout, 0);

  std::printf("\nScaling (weak: batch 6 per 4 GPUs; efficiency = (TPS_N/N) / (TPS_4/4))\n");
  Table s;
  s.column("plan", Table::kLeft);
  s.column("GPUs");
  s.column("batch");
  s.column("TPOT ms");
  s.column("tokens/s");
  s.column("efficiency");
  for (size_t i = 0; i < sres.size(); ++i) {
    const auto& r = sres[i];
    std::string label;
    for (const auto& [k, v] : scaling.points[i].overrides) {
      if (k == "label") label = v;
    }
    if (r.ok) {
      s.row({label, std::to_string(r.gpus), std::to_string(r.batch),
             fmt::format("{:.3f}", r.metrics.tpot_mean_ms),
             fmt::format("{:.0f}", r.metrics.tokens_per_s), pct(r.scaling_efficiency)});
    } else {
      s.row({label, "", "", "", "", "error: " + r.error.substr(0, 60)});
    }
  }
  s.print(stdout, 0);
  auto eff = [](const PointResult* r) {
    return r ? pct(r->scaling_efficiency) : std::string("n/a");
  };
  std::printf(
      "\nscaling efficiency at 16 GPUs (paper: %s for MA separation; weak or strong not stated)\n"
      "  weak (batch 6 per 4 GPUs, the sweep above): MA separation %s, co-located %s\n"
      "  strong (batch 24 at every size):             MA separation %s, co-located %s\n",
      pct(kPaperScaling16).c_str(), eff(ma16).c_str(), eff(co16).c_str(), eff(ma16s).c_str(),
      eff(co16s).c_str());
  return 0;
}

}  // namespace masep::tools
