// Sweep files: parsing, expansion, parallel runs (oneTBB) and the results table.
#include "sweep.hpp"

#include <fmt/format.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "masep/models/embedded.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/input_file.hpp"
#include "masep/plan/output_file.hpp"
#include "sim_run.hpp"

namespace masep::tools {

std::span<const masep::EmbeddedFile> builtin_sweep_files();  // generated (tools/CMakeLists)

namespace {

namespace fs = std::filesystem;

// Plot columns must exist in the results table (known only here, where it is built).
Sweep checked(Sweep sw) {
  const auto header = results_table(sw, {}).front();
  for (size_t i = 0; i < sw.plots.size(); ++i) {
    const auto& pl = sw.plots[i];
    std::vector<std::string> cols = pl.y;
    cols.push_back(pl.x);
    if (!pl.series.empty()) cols.push_back(pl.series);
    for (const auto& c : cols) {
      if (std::find(header.begin(), header.end(), c) == header.end()) {
        throw plan::InputError(sw.origin, pl.line, pl.column, fmt::format("output.plots[{}]", i),
                               fmt::format("'{}' is not a results.csv column", c));
      }
    }
  }
  return sw;
}

std::string fmt_num(double v) {
  if (!std::isfinite(v)) return "";
  return fmt::format("{:.6g}", v);
}

}  // namespace

std::vector<std::string> builtin_sweep_names() {
  std::vector<std::string> names;
  for (const auto& f : builtin_sweep_files()) names.emplace_back(f.name);
  return names;
}

Sweep load_sweep(const std::string& name_or_path) {
  if (plan::input_exists(name_or_path)) {
    return checked(
        plan::parse_sweep(plan::read_input_file(name_or_path, "sweep", plan::kMaxYamlInputBytes),
                          name_or_path == "-" ? "<stdin>" : name_or_path));
  }
  for (const auto& f : builtin_sweep_files()) {
    if (name_or_path == f.name) return checked(plan::parse_sweep(f.text, f.origin));
  }
  throw plan::InputError(name_or_path, 0, 0, "",
                         fmt::format("no such file, and not a built-in sweep ({})",
                                     fmt::join(builtin_sweep_names(), ", ")));
}

std::vector<PointResult> run_sweep(const Sweep& sweep, const sim::SimOptions& options, int jobs,
                                   const std::vector<std::string>& extra, ProgressFn progress,
                                   void* ctx, const std::vector<char>* only,
                                   const PointFn& on_point, int approx_moe_layers) {
  const int n = static_cast<int>(sweep.points.size());
  std::vector<PointResult> results(static_cast<size_t>(n));
  std::vector<int> todo;
  for (int i = 0; i < n; ++i) {
    if (only == nullptr || (static_cast<size_t>(i) < only->size() && (*only)[static_cast<size_t>(i)])) {
      todo.push_back(i);
    }
  }
  const int total = static_cast<int>(todo.size());
  std::mutex mu;
  int done = 0;
  auto run_one = [&](int i) {
    const auto& pt = sweep.points[static_cast<size_t>(i)];
    std::vector<std::string> ov = sweep.fixed;
    for (const auto& [k, v] : pt.overrides) {
      if (k != "label") ov.push_back(k + "=" + v);
    }
    ov.insert(ov.end(), extra.begin(), extra.end());
    PointResult& r = results[static_cast<size_t>(i)];
    try {
      RunOptions ro;
      ro.approx_moe_layers = approx_moe_layers;
      SimRun run = run_scenario(pt.scenario, ov, options, ro);
      r.plan_kind = plan::to_string(run.scenario.plan.kind);
      r.gpus = plan_gpus(run.scenario);
      r.attention_gpus = attention_gpus(run.scenario);
      r.moe_gpus = moe_gpus(run.scenario);
      r.batch = run.scenario.workload.batch;
      r.events = run.result.events;
      r.metrics = std::move(run.metrics);
      r.metrics.ranks.clear();
      r.ok = true;
    } catch (const std::exception& e) {
      std::string msg = e.what();
      std::replace(msg.begin(), msg.end(), '\n', ' ');
      r.error = msg;
    }
    std::lock_guard<std::mutex> lock(mu);
    if (on_point) on_point(i, r);
    if (progress) progress(ctx, ++done, total);
  };
  const int threads = jobs > 0 ? jobs : tbb::this_task_arena::max_concurrency();
  tbb::task_arena arena(threads);
  arena.execute([&] {
    tbb::parallel_for(0, total, [&](int t) { run_one(todo[static_cast<size_t>(t)]); });
  });
  return results;
}

void fill_scaling_efficiency(std::vector<PointResult>& results) {
  std::map<std::string, const PointResult*> base;
  for (const auto& r : results) {
    if (!r.ok || r.gpus <= 0 || r.metrics.tokens_per_s <= 0) continue;
    auto [it, fresh] = base.emplace(r.plan_kind, &r);
    if (!fresh && r.gpus < it->second->gpus) it->second = &r;
  }
  for (auto& r : results) {
    r.scaling_efficiency = 0;
    if (!r.ok || r.gpus <= 0) continue;
    auto it = base.find(r.plan_kind);
    if (it == base.end()) continue;
    const PointResult& b = *it->second;
    r.scaling_efficiency = (r.metrics.tokens_per_s / r.gpus) / (b.metrics.tokens_per_s / b.gpus);
  }
}

std::vector<std::vector<std::string>> results_table(const Sweep& sweep,
                                                    const std::vector<PointResult>& results) {
  std::vector<std::vector<std::string>> t;
  std::vector<std::string> header = {"point", "scenario"};
  header.insert(header.end(), sweep.columns.begin(), sweep.columns.end());
  for (const char* c : {"plan",
                        "gpus",
                        "attention_gpus",
                        "moe_gpus",
                        "ratio",
                        "batch",
                        "status",
                        "tpot_mean_ms",
                        "tpot_p50_ms",
                        "tpot_p99_ms",
                        "tokens_per_s",
                        "tokens_per_s_per_gpu",
                        "scaling_efficiency",
                        "mean_utilisation",
                        "attention_idle_ms",
                        "moe_idle_ms",
                        "exposed_comm_ms",
                        "makespan_ms",
                        "events",
                        "error"}) {
    header.emplace_back(c);
  }
  t.push_back(header);
  for (size_t i = 0; i < results.size() && i < sweep.points.size(); ++i) {
    const auto& p = sweep.points[i];
    const auto& r = results[i];
    const auto& m = r.metrics;
    std::vector<std::string> row = {std::to_string(i), p.scenario};
    for (const auto& col : sweep.columns) {
      std::string v;
      for (const auto& [k, val] : p.overrides) {
        if (k == col) v = val;
      }
      row.push_back(v);
    }
    if (!r.ok) {
      row.insert(row.end(), {"", "", "", "", "", "", "error"});
      row.resize(header.size() - 1);
      row.push_back(r.error);
    } else {
      const bool ma = r.moe_gpus > 0;
      row.insert(row.end(), {r.plan_kind,
                             std::to_string(r.gpus),
                             std::to_string(r.attention_gpus),
                             std::to_string(r.moe_gpus),
                             ma ? fmt_num(static_cast<double>(r.attention_gpus) / r.moe_gpus) : "",
                             std::to_string(r.batch),
                             "ok",
                             fmt_num(m.tpot_mean_ms),
                             fmt_num(m.tpot_p50_ms),
                             fmt_num(m.tpot_p99_ms),
                             fmt_num(m.tokens_per_s),
                             fmt_num(r.gpus > 0 ? m.tokens_per_s / r.gpus : NAN),
                             r.scaling_efficiency > 0 ? fmt_num(r.scaling_efficiency) : "",
                             fmt_num(m.mean_utilisation),
                             fmt_num(m.attention_idle_ns / 1e6),
                             fmt_num(m.moe_idle_ns / 1e6),
                             fmt_num(m.exposed_comm_ns / 1e6),
                             fmt_num(m.makespan_ns / 1e6),
                             std::to_string(r.events),
                             ""});
    }
    t.push_back(std::move(row));
  }
  return t;
}

void write_csv(const std::string& path, const std::vector<std::vector<std::string>>& table) {
  std::string text;
  for (const auto& row : table) {
    for (size_t c = 0; c < row.size(); ++c) {
      if (c) text += ',';
      const std::string& v = row[c];
      if (v.find_first_of(",\"\n\r") != std::string::npos) {
        text += '"';
        for (char ch : v) {
          if (ch == '"') text += '"';
          text += ch;
        }
        text += '"';
      } else {
        text += v;
      }
    }
    text += '\n';
  }
  plan::write_output_file(path, "sweep results", text);
}

}  // namespace masep::tools
