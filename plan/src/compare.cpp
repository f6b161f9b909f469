// Simulated vs measured traces: join on op id, error statistics by op kind, TPOT error, a
// merged Perfetto trace and an SVG of one decode step. Traces are read with nlohmann-json (a
// DOM is fine here: compare reads two traces once, unlike the streaming trace writer).
#include "masep/plan/compare.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "masep/plan/errors.hpp"
#include "masep/plan/input_file.hpp"
#include "masep/plan/output_file.hpp"
#include "masep/plan/time_ns.hpp"

namespace masep::plan {
namespace {

using nlohmann::json;

// Typed, checked access to one trace event; errors name the file, the event and the key
// ("t.json: traceEvents[12].dur (op 5): -3 is negative").
struct EventReader {
  const std::string& path;
  size_t index;
  const json& event;

  [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
    std::string where = fmt::format("traceEvents[{}].{}", index, key);
    if (event.contains("args") && event["args"].is_object() && event["args"].contains("op") &&
        key != "args.op") {
      where += fmt::format(" (op {})", event["args"]["op"].dump());
    }
    throw InputError(path, 0, 0, where, msg);
  }
  const json& get(const json& obj, const std::string& key) const {
    const std::string leaf = key.substr(key.rfind('.') + 1);
    if (!obj.contains(leaf)) fail(key, "missing");
    return obj[leaf];
  }
  // An integral JSON number in [lo, INT32_MAX] (1.5 or "3" are errors, not truncated).
  int32_t integer(const json& obj, const std::string& key, int64_t lo) const {
    const json& v = get(obj, key);
    if (!v.is_number_integer()) fail(key, fmt::format("{} is not an integer", v.dump()));
    if (v.is_number_unsigned() ? v.get<uint64_t>() > INT32_MAX
                               : (v.get<int64_t>() < lo || v.get<int64_t>() > INT32_MAX)) {
      fail(key, fmt::format("{} is out of range [{}, {}]", v.dump(), lo, INT32_MAX));
    }
    return static_cast<int32_t>(v.get<int64_t>());
  }
  // Microseconds (a finite JSON number) as integer ns, rounded to nearest.
  int64_t micros(const json& obj, const std::string& key, bool non_negative) const {
    const json& v = get(obj, key);
    if (!v.is_number()) fail(key, fmt::format("{} is not a number", v.dump()));
    const double us = v.get<double>();
    if (!std::isfinite(us) || std::fabs(us * 1000.0) > kMaxDurationNs) {
      fail(key, fmt::format("{} us is not finite or beyond 2^53 ns", v.dump()));
    }
    if (non_negative && us < 0) fail(key, fmt::format("{} is negative", v.dump()));
    return checked_ns(std::round(us * 1000.0), "trace time");
  }
};

// Nearest-rank percentile of sorted values, q in (0, 1].
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t idx = static_cast<size_t>(std::ceil(q * static_cast<double>(sorted.size())));
  idx = std::clamp<size_t>(idx, 1, sorted.size());
  return sorted[idx - 1];
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

KindError summarise(const std::string& kind, const std::vector<OpError>& errs, int worst_count) {
  KindError k;
  k.kind = kind;
  k.ops = static_cast<int64_t>(errs.size());
  std::vector<double> e, a;
  for (const auto& x : errs) {
    k.sim_total_ms += static_cast<double>(x.sim_ns) * 1e-6;
    k.measured_total_ms += static_cast<double>(x.measured_ns) * 1e-6;
    if (x.measured_ns <= 0) {
      ++k.zero_measured;
      continue;
    }
    e.push_back(x.error);
    a.push_back(std::fabs(x.error));
  }
  k.median = median(e);
  std::sort(a.begin(), a.end());
  k.p90_abs = percentile(a, 0.9);
  std::vector<const OpError*> order;
  for (const auto& x : errs) {
    if (x.measured_ns > 0) order.push_back(&x);
  }
  std::stable_sort(order.begin(), order.end(), [](const OpError* l, const OpError* r) {
    const double al = std::fabs(l->error), ar = std::fabs(r->error);
    return al != ar ? al > ar : l->op < r->op;
  });
  for (size_t i = 0; i < order.size() && static_cast<int>(i) < worst_count; ++i) {
    k.worst.push_back(*order[i]);
  }
  return k;
}

// Step time as plan::compute_metrics defines it: end of the step's last op minus the end of
// the previous step's last op (the first step: minus the run's first start).
std::vector<double> step_ms(const LoadedTrace& t) {
  std::map<int, int64_t> last_end;
  int64_t first = INT64_MAX;
  for (const auto& o : t.ops) {
    first = std::min(first, o.start_ns);
    auto [it, fresh] = last_end.emplace(o.step, o.start_ns + o.duration_ns);
    if (!fresh) it->second = std::max(it->second, o.start_ns + o.duration_ns);
  }
  std::vector<double> out;
  int64_t prev = first;
  for (const auto& [s, end] : last_end) {
    out.push_back(static_cast<double>(end - prev) * 1e-6);
    prev = end;
  }
  return out;
}

double mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

std::string pct(double f) { return fmt::format("{:+.1f}%", 100.0 * f); }

json op_error_json(const OpError& e) {
  return json{{"op", e.op},          {"rank", e.rank},     {"name", e.name},
              {"kind", e.kind},      {"step", e.step},     {"layer", e.layer},
              {"mb", e.micro_batch}, {"sim_ns", e.sim_ns}, {"measured_ns", e.measured_ns},
              {"error", e.error}};
}

json kind_json(const KindError& k) {
  json w = json::array();
  for (const auto& e : k.worst) w.push_back(op_error_json(e));
  return json{{"kind", k.kind},
              {"ops", k.ops},
              {"zero_measured", k.zero_measured},
              {"median_error", k.median},
              {"p90_abs_error", k.p90_abs},
              {"sim_total_ms", k.sim_total_ms},
              {"measured_total_ms", k.measured_total_ms},
              {"worst", w}};
}

// Colours by op kind for the SVG (stable, readable on white).
const char* kind_colour(const std::string& kind) {
  static const std::map<std::string, const char*> c = {
      {"gemm", "#4e79a7"},        {"grouped_gemm", "#2b5d8a"}, {"attention", "#f28e2b"},
      {"elementwise", "#a0cbe8"}, {"router", "#8cd17d"},       {"permute", "#b6992d"},
      {"combine", "#f1ce63"},     {"send", "#e15759"},         {"recv", "#ff9d9a"},
      {"all_reduce", "#b07aa1"},  {"all_gather", "#d4a6c8"},   {"reduce_scatter", "#9d7660"},
      {"all_to_all", "#d37295"},  {"exchange", "#e15759"}};
  auto it = c.find(kind);
  return it == c.end() ? "#bab0ac" : it->second;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '&':
        o += "&amp;";
        break;
      case '"':
        o += "&quot;";
        break;
      default:
        o += ch;
    }
  }
  return o;
}

}  // namespace

LoadedTrace read_trace_file(const std::string& path) {
  return parse_trace(read_input_file(path, "trace", kMaxTraceInputBytes), path);
}

LoadedTrace parse_trace(const std::string& text, const std::string& path) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw InputError(path, 0, 0, "", fmt::format("not valid JSON: {}", e.what()));
  }
  LoadedTrace t;
  t.path = path;
  try {
    if (!j.is_object() || !j.contains("traceEvents") || !j["traceEvents"].is_array()) {
      throw InputError(path, 0, 0, "traceEvents", "no traceEvents array (not a Chrome trace)");
    }
    if (j.contains("otherData") && j["otherData"].is_object()) {
      const json& od = j["otherData"];
      t.source = od.value("source", "");
      t.device = od.value("device", "");
      t.scenario = od.value("scenario", "");
    }
    const json& events = j["traceEvents"];
    for (size_t i = 0; i < events.size(); ++i) {
      const json& e = events[i];
      if (!e.is_object()) continue;
      const std::string ph = e.value("ph", "");
      if (ph == "M") {
        const std::string name = e.value("name", "");
        if (name == "process_name") {
          t.process_names[e.at("pid").get<int32_t>()] = e.at("args").value("name", "");
        } else if (name == "thread_name") {
          t.thread_names[{e.at("pid").get<int32_t>(), e.value("tid", 0)}] =
              e.at("args").value("name", "");
        }
        continue;
      }
      if (ph != "X" || !e.contains("args") || !e["args"].is_object() || !e["args"].contains("op")) {
        continue;
      }
      const EventReader r{path, i, e};
      const json& a = e["args"];
      TraceOp o;
      o.op = r.integer(a, "args.op", 0);
      o.pid = r.integer(e, "pid", 0);
      o.tid = e.contains("tid") ? r.integer(e, "tid", 0) : 0;
      o.name = e.value("name", "");
      o.kind = a.value("kind", "");
      o.step = a.contains("step") ? r.integer(a, "args.step", 0) : 0;
      o.layer = a.contains("layer") ? r.integer(a, "args.layer", 0) : 0;
      o.micro_batch = a.contains("mb") ? r.integer(a, "args.mb", 0) : 0;
      o.start_ns = r.micros(e, "ts", false);
      o.duration_ns = r.micros(e, "dur", true);
      t.ops.push_back(std::move(o));
    }
    if (t.ops.empty()) {
      throw InputError(path, 0, 0, "traceEvents",
                       "no op events (\"ph\": \"X\" with args.op): nothing to compare");
    }
  } catch (const json::exception& e) {
    throw InputError(path, 0, 0, "", e.what());
  }
  std::sort(t.ops.begin(), t.ops.end(),
            [](const TraceOp& a, const TraceOp& b) { return a.op < b.op; });
  for (size_t i = 1; i < t.ops.size(); ++i) {
    if (t.ops[i].op == t.ops[i - 1].op) {
      throw InputError(path, 0, 0, "args.op",
                       fmt::format("op {} appears twice (op ids must be unique)", t.ops[i].op));
    }
  }
  return t;
}

Comparison compare_traces(const LoadedTrace& sim, const LoadedTrace& measured, int worst_count) {
  // Op sets must be equal: list what differs.
  std::vector<int32_t> only_sim, only_meas;
  {
    size_t i = 0, j = 0;
    while (i < sim.ops.size() || j < measured.ops.size()) {
      if (j == measured.ops.size() || (i < sim.ops.size() && sim.ops[i].op < measured.ops[j].op)) {
        only_sim.push_back(sim.ops[i++].op);
      } else if (i == sim.ops.size() || measured.ops[j].op < sim.ops[i].op) {
        only_meas.push_back(measured.ops[j++].op);
      } else {
        ++i;
        ++j;
      }
    }
  }
  if (!only_sim.empty() || !only_meas.empty()) {
    auto first = [](const std::vector<int32_t>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + std::to_string(v[i]);
      if (v.size() > 8) s += ", ...";
      return v.empty() ? std::string("none") : s;
    };
    throw std::runtime_error(fmt::format(
        "the traces hold different op sets: '{}' has {} ops, '{}' has {}; {} only in the "
        "simulated trace (ids {}), {} only in the measured trace (ids {}). Compare traces of "
        "the same scenario, seed and steps.",
        sim.path, sim.ops.size(), measured.path, measured.ops.size(), only_sim.size(),
        first(only_sim), only_meas.size(), first(only_meas)));
  }

  Comparison c;
  c.sim_path = sim.path;
  c.measured_path = measured.path;
  c.scenario = sim.scenario.empty() ? measured.scenario : sim.scenario;
  c.sim_device = sim.device;
  c.measured_device = measured.device;
  c.ops = static_cast<int64_t>(sim.ops.size());
  std::map<std::string, std::vector<OpError>> by_kind;
  std::vector<OpError> all;
  for (size_t i = 0; i < sim.ops.size(); ++i) {
    const TraceOp& s = sim.ops[i];
    const TraceOp& m = measured.ops[i];
    if (s.step != m.step || s.layer != m.layer || s.micro_batch != m.micro_batch) {
      throw std::runtime_error(fmt::format(
          "op {} has step {} layer {} mb {} in '{}' but step {} layer {} mb {} in '{}'; the "
          "traces come from different Programs (same scenario, seed and steps?)",
          s.op, s.step, s.layer, s.micro_batch, sim.path, m.step, m.layer, m.micro_batch,
          measured.path));
    }
    if (s.name != m.name || s.kind != m.kind) {
      throw std::runtime_error(fmt::format(
          "op {} differs between the traces: '{}' ({}) in '{}', '{}' ({}) in '{}'; the traces "
          "come from different Programs",
          s.op, s.name, s.kind, sim.path, m.name, m.kind, measured.path));
    }
    OpError e;
    e.op = s.op;
    e.rank = s.pid;
    e.name = s.name;
    e.kind = s.kind;
    e.step = s.step;
    e.layer = s.layer;
    e.micro_batch = s.micro_batch;
    e.sim_ns = s.duration_ns;
    e.measured_ns = m.duration_ns;
    e.error = m.duration_ns > 0 ? static_cast<double>(s.duration_ns - m.duration_ns) /
                                      static_cast<double>(m.duration_ns)
                                : 0.0;
    by_kind[e.kind].push_back(e);
    all.push_back(std::move(e));
  }
  for (const auto& [kind, errs] : by_kind) c.kinds.push_back(summarise(kind, errs, worst_count));
  c.all = summarise("all", all, worst_count);
  c.sim_step_ms = step_ms(sim);
  c.measured_step_ms = step_ms(measured);
  c.sim_tpot_ms = mean(c.sim_step_ms);
  c.measured_tpot_ms = mean(c.measured_step_ms);
  if (!(c.measured_tpot_ms > 0)) {
    throw InputError(measured.path, 0, 0, "traceEvents",
                     fmt::format("the measured step time is {} ms: a TPOT error against 0 is "
                                 "undefined (is this a measured trace?)",
                                 c.measured_tpot_ms));
  }
  c.tpot_error = (c.sim_tpot_ms - c.measured_tpot_ms) / c.measured_tpot_ms;
  return c;
}

void write_comparison_text(std::ostream& out, const Comparison& c) {
  out << fmt::format(
      "simulated: {} ({})\nmeasured:  {} ({})\nscenario:  {}, {} ops joined on op "
      "id\nerror = (simulated - measured) / measured\n\n",
      c.sim_path, c.sim_device, c.measured_path, c.measured_device, c.scenario, c.ops);
  out << fmt::format("{:<16} {:>7} {:>9} {:>9} {:>12} {:>12}\n", "kind", "ops", "median",
                     "p90 |err|", "sim ms", "measured ms");
  auto row = [&](const KindError& k) {
    out << fmt::format(
        "{:<16} {:>7} {:>9} {:>9} {:>12.3f} {:>12.3f}{}\n", k.kind, k.ops, pct(k.median),
        fmt::format("{:.1f}%", 100.0 * k.p90_abs), k.sim_total_ms, k.measured_total_ms,
        k.zero_measured ? fmt::format("  ({} measured 0 ns)", k.zero_measured) : std::string());
  };
  for (const auto& k : c.kinds) row(k);
  row(c.all);
  out << "\nworst ops by kind (|error|):\n";
  for (const auto& k : c.kinds) {
    for (const auto& e : k.worst) {
      out << fmt::format(
          "  {:<14} op {:>7} rank {:>3} {:<16} step {} layer {} mb {}: sim {:.1f} "
          "us, measured {:.1f} us, {}\n",
          k.kind, e.op, e.rank, e.name, e.step, e.layer, e.micro_batch,
          static_cast<double>(e.sim_ns) * 1e-3, static_cast<double>(e.measured_ns) * 1e-3,
          pct(e.error));
    }
  }
  out << fmt::format(
      "\nTPOT (mean step time over {} steps): simulated {:.4f} ms, measured {:.4f} "
      "ms, error {}\n",
      c.measured_step_ms.size(), c.sim_tpot_ms, c.measured_tpot_ms, pct(c.tpot_error));
}

void write_comparison_json(std::ostream& out, const Comparison& c) {
  json kinds = json::array();
  for (const auto& k : c.kinds) kinds.push_back(kind_json(k));
  json j{{"sim_trace", c.sim_path},
         {"measured_trace", c.measured_path},
         {"scenario", c.scenario},
         {"sim_device", c.sim_device},
         {"measured_device", c.measured_device},
         {"ops", c.ops},
         {"kinds", kinds},
         {"all", kind_json(c.all)},
         {"sim_step_ms", c.sim_step_ms},
         {"measured_step_ms", c.measured_step_ms},
         {"sim_tpot_ms", c.sim_tpot_ms},
         {"measured_tpot_ms", c.measured_tpot_ms},
         {"tpot_error", c.tpot_error}};
  out << j.dump(2) << "\n";
}

void write_merged_trace(const std::string& path, const LoadedTrace& sim,
                        const LoadedTrace& measured) {
  int32_t max_pid = 0;
  for (const auto& o : sim.ops) max_pid = std::max(max_pid, o.pid);
  for (const auto& [pid, n] : sim.process_names) max_pid = std::max(max_pid, pid);
  const int32_t offset = max_pid + 1;
  json events = json::array();
  auto add_run = [&](const LoadedTrace& t, const char* label, int32_t pid_offset, int sort_bias) {
    std::set<int32_t> pids;
    for (const auto& o : t.ops) pids.insert(o.pid);
    for (const auto& [pid, n] : t.process_names) pids.insert(pid);
    for (int32_t pid : pids) {
      auto it = t.process_names.find(pid);
      const std::string base =
          it != t.process_names.end() ? it->second : fmt::format("rank {}", pid);
      events.push_back({{"name", "process_name"},
                        {"ph", "M"},
                        {"pid", pid + pid_offset},
                        {"tid", 0},
                        {"args", {{"name", fmt::format("{}: {}", label, base)}}}});
      events.push_back({{"name", "process_sort_index"},
                        {"ph", "M"},
                        {"pid", pid + pid_offset},
                        {"tid", 0},
                        {"args", {{"sort_index", 2 * pid + sort_bias}}}});
    }
    for (const auto& [key, n] : t.thread_names) {
      events.push_back({{"name", "thread_name"},
                        {"ph", "M"},
                        {"pid", key.first + pid_offset},
                        {"tid", key.second},
                        {"args", {{"name", n}}}});
    }
    int64_t t0 = INT64_MAX;
    for (const auto& o : t.ops) t0 = std::min(t0, o.start_ns);
    for (const auto& o : t.ops) {
      events.push_back({{"name", o.name},
                        {"cat", label},
                        {"ph", "X"},
                        {"ts", static_cast<double>(o.start_ns - t0) / 1000.0},
                        {"dur", static_cast<double>(o.duration_ns) / 1000.0},
                        {"pid", o.pid + pid_offset},
                        {"tid", o.tid},
                        {"args",
                         {{"op", o.op},
                          {"kind", o.kind},
                          {"step", o.step},
                          {"layer", o.layer},
                          {"mb", o.micro_batch}}}});
    }
  };
  add_run(sim, "sim", 0, 0);
  add_run(measured, "measured", offset, 1);
  json j{{"traceEvents", events},
         {"displayTimeUnit", "ns"},
         {"otherData",
          {{"sim_trace", sim.path},
           {"measured_trace", measured.path},
           {"scenario", sim.scenario},
           {"measured_pid_offset", offset}}}};
  write_output_file(path, "merged trace", j.dump() + "\n");
}

void write_overlay_svg(const std::string& path, const LoadedTrace& sim, const LoadedTrace& measured,
                       int step) {
  if (step < 0) {
    std::set<int> steps;
    for (const auto& o : measured.ops) steps.insert(o.step);
    if (steps.empty()) throw std::invalid_argument("overlay: the measured trace has no ops");
    auto it = steps.begin();
    std::advance(it, static_cast<long>(steps.size() / 2));
    step = *it;
  }
  struct Run {
    const LoadedTrace* t;
    const char* label;
    int64_t t0 = INT64_MAX, t1 = INT64_MIN;
  };
  Run runs[2] = {{&sim, "sim"}, {&measured, "measured"}};
  std::set<int32_t> ranks;
  for (auto& r : runs) {
    for (const auto& o : r.t->ops) {
      if (o.step != step) continue;
      r.t0 = std::min(r.t0, o.start_ns);
      r.t1 = std::max(r.t1, o.start_ns + o.duration_ns);
      ranks.insert(o.pid);
    }
  }
  if (runs[0].t0 == INT64_MAX || runs[1].t0 == INT64_MAX) {
    throw std::invalid_argument(fmt::format("overlay: step {} is not in both traces", step));
  }
  const double span_ns = static_cast<double>(
      std::max<int64_t>(1, std::max(runs[0].t1 - runs[0].t0, runs[1].t1 - runs[1].t0)));
  const double left = 170, width = 1000, lane_h = 14, lane_gap = 2, rank_gap = 10, top = 40;
  const double rank_h = 2 * (2 * lane_h + lane_gap) + rank_gap;  // 2 runs × 2 streams
  const double height = top + rank_h * static_cast<double>(ranks.size()) + 50;
  std::string s;
  s += fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n",
      left + width + 30, height);
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += fmt::format(
      "<text x=\"10\" y=\"20\" font-size=\"14\">{}: decode step {}, simulated (upper lanes) vs "
      "measured (lower lanes); each run's step starts at 0</text>\n",
      xml_escape(sim.scenario), step);
  std::map<int32_t, int> row_of;
  int row = 0;
  for (int32_t r : ranks) row_of[r] = row++;
  for (int32_t r : ranks) {
    const double y0 = top + rank_h * row_of[r];
    for (int k = 0; k < 2; ++k) {
      const double y = y0 + k * (2 * lane_h + lane_gap);
      s += fmt::format("<text x=\"5\" y=\"{:.1f}\">rank {} {}</text>\n", y + lane_h + 4, r,
                       runs[k].label);
      s += fmt::format("<rect x=\"{}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>\n",
                       left, y, width, 2 * lane_h, k == 0 ? "#f4f4f4" : "#ebebeb");
    }
  }
  for (int k = 0; k < 2; ++k) {
    for (const auto& o : runs[k].t->ops) {
      if (o.step != step) continue;
      const double y =
          top + rank_h * row_of[o.pid] + k * (2 * lane_h + lane_gap) + (o.tid == 0 ? 0 : lane_h);
      const double x = left + width * static_cast<double>(o.start_ns - runs[k].t0) / span_ns;
      const double w = std::max(0.5, width * static_cast<double>(o.duration_ns) / span_ns);
      s += fmt::format(
          "<rect x=\"{:.2f}\" y=\"{:.1f}\" width=\"{:.2f}\" height=\"{}\" fill=\"{}\" "
          "stroke=\"#333\" stroke-width=\"0.2\"><title>op {} {} ({}) {:.1f} us</title></rect>\n",
          x, y + 1, w, lane_h - 2, kind_colour(o.kind), o.op, xml_escape(o.name), o.kind,
          static_cast<double>(o.duration_ns) * 1e-3);
    }
  }
  // Time axis.
  const double ay = height - 35;
  s += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n", left, ay,
                   left + width, ay);
  for (int i = 0; i <= 10; ++i) {
    const double x = left + width * i / 10.0;
    s += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"black\"/>\n",
                     x, ay, x, ay + 4);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.0f} us</text>\n", x,
                     ay + 16, span_ns * 1e-3 * i / 10.0);
  }
  s += fmt::format(
      "<text x=\"10\" y=\"{}\">upper lane of each run: compute stream; lower: comm "
      "stream</text>\n</svg>\n",
      height - 5);
  write_output_file(path, "overlay picture", s);
}

}  // namespace masep::plan
