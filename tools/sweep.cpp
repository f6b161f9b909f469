// Sweep files: parsing, expansion, parallel runs (oneTBB) and the results table.
#include "sweep.hpp"

#include <fmt/format.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

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

[[noreturn]] void fail(const std::string& origin, const YAML::Node& n, const std::string& key,
                       const std::string& msg) {
  const auto mark = n.Mark();
  const bool has = n.IsDefined() && mark.line >= 0;
  throw plan::InputError(origin, has ? mark.line + 1 : 0, has ? mark.column + 1 : 0, key, msg);
}

// A YAML value as override text: scalars as written, sequences and maps in flow style.
std::string value_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter e;
  e.SetMapFormat(YAML::Flow);
  e.SetSeqFormat(YAML::Flow);
  e << n;
  return e.c_str();
}

std::string scalar(const std::string& origin, const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) fail(origin, n, key, "expected a scalar");
  return n.Scalar();
}

// Resolves a scenario reference: a path relative to the sweep file's directory if such a
// file exists, else the text as given (a built-in name or a path from the working dir).
std::string resolve(const std::string& origin, const std::string& ref) {
  if (origin.rfind("builtin:", 0) == 0) return ref;
  const fs::path rel = fs::path(origin).parent_path() / ref;
  std::error_code ec;
  if (!fs::path(ref).is_absolute() && fs::is_regular_file(rel, ec)) return rel.string();
  return ref;
}

using Overrides = std::vector<std::pair<std::string, std::string>>;

Overrides read_overrides(const std::string& origin, const YAML::Node& map, const std::string& key,
                         std::string* scenario, std::string* label) {
  if (!map.IsMap()) fail(origin, map, key, "expected a mapping of key.path: value");
  Overrides out;
  for (const auto& kv : map) {
    const std::string k = kv.first.as<std::string>();
    if (scenario && k == "scenario") {
      *scenario = scalar(origin, kv.second, key + ".scenario");
    } else if (label && k == "label") {
      *label = scalar(origin, kv.second, key + ".label");
    } else {
      if (kv.second.IsNull()) fail(origin, kv.second, key + "." + k, "missing value");
      out.emplace_back(k, value_text(kv.second));
    }
  }
  return out;
}

Sweep parse_sweep(const std::string& text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw plan::InputError(origin, e.mark.line + 1, e.mark.column + 1, "", e.msg);
  }
  if (!root.IsMap()) fail(origin, root, "", "a sweep file is a mapping (see docs/sweep.md)");
  static const std::set<std::string> kKeys = {"name",   "description", "base",  "set",
                                              "points", "grid",        "output"};
  for (const auto& kv : root) {
    const auto k = kv.first.as<std::string>();
    if (!kKeys.count(k)) {
      fail(origin, kv.first, k,
           "unknown key (allowed: name, description, base, set, points, grid, output)");
    }
  }
  Sweep sw;
  sw.origin = origin;
  if (!root["name"]) fail(origin, root, "name", "missing key");
  sw.name = scalar(origin, root["name"], "name");
  // The name becomes the folder sweep-out/<name>: it must not leave sweep-out/.
  if (sw.name.empty() || sw.name == "." || sw.name == ".." ||
      sw.name.find_first_not_of(
          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          std::string::npos) {
    fail(origin, root["name"], "name",
         fmt::format("'{}': use letters, digits, '.', '-' and '_' only (it names the folder "
                     "sweep-out/<name>)",
                     sw.name));
  }
  if (root["description"]) sw.description = scalar(origin, root["description"], "description");
  const std::string base = root["base"] ? scalar(origin, root["base"], "base") : "";
  if (root["set"]) {
    for (const auto& [k, v] : read_overrides(origin, root["set"], "set", nullptr, nullptr)) {
      sw.fixed.push_back(k + "=" + v);
    }
  }

  // Explicit points (or one empty point), each with its scenario and optional label.
  struct Raw {
    std::string scenario, label;
    Overrides overrides;
  };
  std::vector<Raw> raws;
  bool labels = false;
  if (root["points"]) {
    const auto pts = root["points"];
    if (!pts.IsSequence() || pts.size() == 0) {
      fail(origin, pts, "points", "expected a non-empty list of mappings");
    }
    for (size_t i = 0; i < pts.size(); ++i) {
      Raw r;
      r.scenario = base;
      const std::string key = fmt::format("points[{}]", i);
      r.overrides = read_overrides(origin, pts[i], key, &r.scenario, &r.label);
      if (r.scenario.empty()) fail(origin, pts[i], key, "no `scenario:` and no top-level `base:`");
      labels |= !r.label.empty();
      raws.push_back(std::move(r));
    }
  } else {
    if (base.empty()) fail(origin, root, "base", "missing key (or give `points:` with scenarios)");
    raws.push_back(Raw{base, "", {}});
  }

  // Grid: cartesian product, first key slowest.
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;
  if (root["grid"]) {
    const auto g = root["grid"];
    if (!g.IsMap()) fail(origin, g, "grid", "expected a mapping of key.path: [values]");
    for (const auto& kv : g) {
      const auto k = kv.first.as<std::string>();
      if (!kv.second.IsSequence() || kv.second.size() == 0) {
        fail(origin, kv.second, "grid." + k, "expected a non-empty list of values");
      }
      std::vector<std::string> values;
      for (const auto& v : kv.second) values.push_back(value_text(v));
      grid.emplace_back(k, std::move(values));
    }
  }
  // Points = explicit points x grid cells, counted without wrapping before anything is built.
  constexpr size_t kMaxPoints = 100000;
  size_t points = raws.size();
  std::string sizes = std::to_string(raws.size());
  for (const auto& [k, v] : grid) sizes += " x " + std::to_string(v.size());
  for (const auto& [k, v] : grid) {
    if (points > kMaxPoints / v.size()) {
      fail(origin, root["grid"], "grid",
           fmt::format("{} points: more than {} (the product overflows or exceeds the cap)", sizes,
                       kMaxPoints));
    }
    points *= v.size();
  }
  if (points > kMaxPoints) {
    fail(origin, root["grid"] ? root["grid"] : root["points"], root["grid"] ? "grid" : "points",
         fmt::format("{} = {} points: more than {}", sizes, points, kMaxPoints));
  }
  const size_t cells = points / raws.size();
  for (const auto& r : raws) {
    for (size_t c = 0; c < cells; ++c) {
      SweepPoint p;
      p.scenario = resolve(origin, r.scenario);
      if (labels) p.overrides.emplace_back("label", r.label);
      for (const auto& o : r.overrides) p.overrides.push_back(o);
      size_t rest = c;
      std::vector<std::string> picked(grid.size());
      for (size_t gi = grid.size(); gi-- > 0;) {
        picked[gi] = grid[gi].second[rest % grid[gi].second.size()];
        rest /= grid[gi].second.size();
      }
      for (size_t gi = 0; gi < grid.size(); ++gi)
        p.overrides.emplace_back(grid[gi].first, picked[gi]);
      sw.points.push_back(std::move(p));
    }
  }
  // Columns: every override key, in first-seen order.
  for (const auto& p : sw.points) {
    for (const auto& [k, v] : p.overrides) {
      if (std::find(sw.columns.begin(), sw.columns.end(), k) == sw.columns.end()) {
        sw.columns.push_back(k);
      }
    }
  }

  sw.out_dir = "sweep-out/" + sw.name;
  if (const auto out = root["output"]) {
    if (!out.IsMap()) fail(origin, out, "output", "expected a mapping");
    for (const auto& kv : out) {
      const auto k = kv.first.as<std::string>();
      if (k != "dir" && k != "plots")
        fail(origin, kv.first, "output." + k, "unknown key (dir, plots)");
    }
    if (out["dir"]) sw.out_dir = scalar(origin, out["dir"], "output.dir");
    if (const auto plots = out["plots"]) {
      if (!plots.IsSequence()) fail(origin, plots, "output.plots", "expected a list");
      for (size_t i = 0; i < plots.size(); ++i) {
        const auto pn = plots[i];
        const std::string key = fmt::format("output.plots[{}]", i);
        if (!pn.IsMap()) fail(origin, pn, key, "expected a mapping");
        SweepPlot pl;
        for (const auto& kv : pn) {
          const auto k = kv.first.as<std::string>();
          const auto& v = kv.second;
          if (k == "name")
            pl.name = scalar(origin, v, key + ".name");
          else if (k == "title")
            pl.title = scalar(origin, v, key + ".title");
          else if (k == "x")
            pl.x = scalar(origin, v, key + ".x");
          else if (k == "series")
            pl.series = scalar(origin, v, key + ".series");
          else if (k == "logx")
            pl.logx = v.as<bool>(false);
          else if (k == "y") {
            if (v.IsScalar())
              pl.y.push_back(v.Scalar());
            else if (v.IsSequence())
              for (const auto& y : v) pl.y.push_back(scalar(origin, y, key + ".y"));
            else
              fail(origin, v, key + ".y", "expected a column or a list of columns");
          } else {
            fail(origin, kv.first, key + "." + k, "unknown key (name, title, x, y, series, logx)");
          }
        }
        if (pl.name.empty() || pl.x.empty() || pl.y.empty()) {
          fail(origin, pn, key, "a plot needs name, x and y");
        }
        if (pl.y.size() > 2)
          fail(origin, pn, key + ".y", "at most two y columns (left, right axis)");
        for (char c : pl.name) {
          if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
            fail(origin, pn, key + ".name", "use letters, digits, '-' and '_' only");
          }
        }
        sw.plots.push_back(std::move(pl));
      }
    }
  }
  // Plot columns must exist in the results table.
  const Sweep probe = sw;
  const auto header = results_table(probe, {}).front();
  for (size_t i = 0; i < sw.plots.size(); ++i) {
    const auto& pl = sw.plots[i];
    std::vector<std::string> cols = pl.y;
    cols.push_back(pl.x);
    if (!pl.series.empty()) cols.push_back(pl.series);
    for (const auto& c : cols) {
      if (std::find(header.begin(), header.end(), c) == header.end()) {
        fail(origin, root["output"]["plots"][i], fmt::format("output.plots[{}]", i),
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
    return parse_sweep(plan::read_input_file(name_or_path, "sweep", plan::kMaxYamlInputBytes),
                       name_or_path == "-" ? "<stdin>" : name_or_path);
  }
  for (const auto& f : builtin_sweep_files()) {
    if (name_or_path == f.name) return parse_sweep(f.text, f.origin);
  }
  throw plan::InputError(name_or_path, 0, 0, "",
                         fmt::format("no such file, and not a built-in sweep ({})",
                                     fmt::join(builtin_sweep_names(), ", ")));
}

std::vector<PointResult> run_sweep(const Sweep& sweep, const sim::SimOptions& options, int jobs,
                                   const std::vector<std::string>& extra, ProgressFn progress,
                                   void* ctx) {
  const int n = static_cast<int>(sweep.points.size());
  std::vector<PointResult> results(static_cast<size_t>(n));
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
      SimRun run = run_scenario(pt.scenario, ov, options);
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
    if (progress) {
      std::lock_guard<std::mutex> lock(mu);
      progress(ctx, ++done, n);
    }
  };
  const int threads = jobs > 0 ? jobs : tbb::this_task_arena::max_concurrency();
  tbb::task_arena arena(threads);
  arena.execute([&] { tbb::parallel_for(0, n, [&](int i) { run_one(i); }); });
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
