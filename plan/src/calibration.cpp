// Calibration YAML: reading (through yaml_util's located Field/MapReader, so every error
// names file:line:col and the key path) and writing (hand-formatted text: a fixed key order
// and fmt's shortest round-trip doubles make the output deterministic and exact on reload).
#include "masep/plan/calibration.hpp"
#include "masep/plan/json_text.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <tuple>

#include "masep/plan/errors.hpp"
#include "masep/plan/input_file.hpp"
#include "masep/plan/interpolation.hpp"
#include "masep/plan/output_file.hpp"
#include "yaml_util.hpp"

namespace masep::plan {
namespace {

using detail::Field;
using detail::LoadContext;
using detail::MapReader;

constexpr const char* kFormat = "masep-calibration/1";

std::string optional_string(const MapReader& m, const std::string& key) {
  if (auto f = m.find(key)) {
    if (f->node().IsNull()) return "";
    if (!f->is_scalar()) f->fail("expected a string");
    return f->node().Scalar();
  }
  return "";
}

// [[size, time_ns], ...]: sizes > 0 strictly increasing, times > 0.
std::vector<CalPoint> read_points(const Field& f) {
  if (!f.is_sequence()) f.fail("expected a list of [size, time_ns] pairs");
  std::vector<CalPoint> pts;
  for (const Field& item : f.items()) {
    if (!item.is_sequence() || item.node().size() != 2) {
      item.fail("expected a pair [size, time_ns]");
    }
    const auto two = item.items();
    CalPoint p;
    p.size = two[0].integer();
    if (p.size <= 0) two[0].fail("size must be > 0");
    p.time_ns = two[1].number_in(kCalibratedTimeNs);
    if (!pts.empty() && p.size <= pts.back().size) {
      two[0].fail(
          fmt::format("sizes must increase strictly ({} after {})", p.size, pts.back().size));
    }
    pts.push_back(p);
  }
  if (pts.empty()) f.fail("a table needs at least one point");
  return pts;
}

template <class T, class KeyOf>
void check_unique(const std::vector<T>& tables, const std::vector<Field>& fields, KeyOf key_of,
                  const char* what) {
  for (size_t i = 0; i < tables.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (key_of(tables[i]) == key_of(tables[j])) {
        fields[i].fail(fmt::format("duplicate {} table (same key as entry {})", what, j));
      }
    }
  }
}

Calibration convert(const Field& root) {
  if (!root.is_map()) root.fail("a calibration file is a mapping");
  const MapReader m = root.map({"format", "device", "driver", "cuda", "cublas", "nccl", "date",
                                "gpus", "notes", "gemm", "grouped_gemm", "attention", "kernels",
                                "comm", "launch"});
  const Field fmtf = m.get("format");
  if (fmtf.string() != kFormat) {
    fmtf.fail(fmt::format("unsupported format '{}' (expected '{}')", fmtf.string(), kFormat));
  }
  Calibration c;
  c.device = m.get("device").string();
  c.driver = optional_string(m, "driver");
  c.cuda = optional_string(m, "cuda");
  c.cublas = optional_string(m, "cublas");
  c.nccl = optional_string(m, "nccl");
  c.date = optional_string(m, "date");
  c.notes = optional_string(m, "notes");
  if (auto g = m.find("gpus")) c.gpus = g->positive_int();
  if (auto l = m.find("launch"); l && !l->node().IsNull()) {
    const MapReader r = l->map({"event_overhead_ns", "event_gap_ns", "idle_launch_ns", "kernel_ns",
                                "comm_slowdown", "comm_resident_slowdown"});
    c.launch.measured = true;
    c.launch.event_overhead_ns = r.get("event_overhead_ns").number_in(kOverheadNs);
    c.launch.event_gap_ns = r.get("event_gap_ns").number_in(kOverheadNs);
    if (auto f = r.find("idle_launch_ns")) c.launch.idle_launch_ns = f->number_in(kOverheadNs);
    if (auto f = r.find("kernel_ns")) c.launch.kernel_ns = f->number_in(kOverheadNs);
    if (auto f = r.find("comm_slowdown")) c.launch.comm_slowdown = f->number_in(kSlowdown);
    if (auto f = r.find("comm_resident_slowdown")) {
      c.launch.comm_resident_slowdown = f->number_in(kSlowdown);
    }
  }

  auto list = [&](const char* key) -> std::vector<Field> {
    auto f = m.find(key);
    if (!f || f->node().IsNull()) return {};
    if (!f->is_sequence()) f->fail("expected a list of tables");
    return f->items();
  };

  const auto gemm = list("gemm");
  for (const Field& t : gemm) {
    const MapReader r = t.map({"n", "k", "points"});
    GemmTable g;
    g.n = r.get("n").positive_int();
    g.k = r.get("k").positive_int();
    g.points = read_points(r.get("points"));
    c.gemm.push_back(std::move(g));
  }
  check_unique(
      c.gemm, gemm, [](const GemmTable& g) { return std::make_pair(g.n, g.k); }, "gemm");

  const auto grouped = list("grouped_gemm");
  for (const Field& t : grouped) {
    const MapReader r = t.map({"n", "k", "weights", "max_rows", "base_ns", "points"});
    GroupedGemmTable g;
    g.n = r.get("n").positive_int();
    g.k = r.get("k").positive_int();
    if (auto w = r.find("weights")) {
      g.weights =
          w->choice<models::DType>({{"bf16", models::DType::kBF16}, {"fp8", models::DType::kFP8}});
    }
    g.max_rows = r.get("max_rows").positive_int();
    g.base_ns = r.get("base_ns").number_in(kOverheadNs);
    g.points = read_points(r.get("points"));
    c.grouped_gemm.push_back(std::move(g));
  }
  check_unique(
      c.grouped_gemm, grouped,
      [](const GroupedGemmTable& g) { return std::make_tuple(g.n, g.k, g.weights); },
      "grouped_gemm");

  const auto attn = list("attention");
  for (const Field& t : attn) {
    const MapReader r = t.map({"heads", "kv_heads", "head_dim", "batch", "points"});
    AttentionTable a;
    a.heads = r.get("heads").positive_int();
    a.kv_heads = r.get("kv_heads").positive_int();
    a.head_dim = r.get("head_dim").positive_int();
    a.batch = r.get("batch").positive_int();
    if (a.heads % a.kv_heads != 0) r.get("kv_heads").fail("kv_heads must divide heads");
    a.points = read_points(r.get("points"));
    c.attention.push_back(std::move(a));
  }
  check_unique(
      c.attention, attn,
      [](const AttentionTable& a) {
        return std::make_tuple(a.heads, a.kv_heads, a.head_dim, a.batch);
      },
      "attention");

  const auto kern = list("kernels");
  for (const Field& t : kern) {
    const MapReader r = t.map({"name", "points"});
    KernelTable k;
    k.name = r.get("name").string();
    k.points = read_points(r.get("points"));
    c.kernels.push_back(std::move(k));
  }
  check_unique(
      c.kernels, kern, [](const KernelTable& k) { return k.name; }, "kernels");

  const auto comm = list("comm");
  for (const Field& t : comm) {
    const MapReader r = t.map({"op", "ranks", "points"});
    CommTable k;
    const Field opf = r.get("op");
    std::vector<std::pair<std::string, std::string>> ops;
    for (const auto& name : calibration_comm_ops()) ops.emplace_back(name, name);
    k.op = opf.choice(ops);
    const Field rf = r.get("ranks");
    k.ranks = rf.positive_int();
    if (k.ranks < 2) rf.fail("a communication table needs ranks >= 2");
    k.points = read_points(r.get("points"));
    c.comm.push_back(std::move(k));
  }
  check_unique(
      c.comm, comm, [](const CommTable& k) { return std::make_pair(k.op, k.ranks); }, "comm");
  return c;
}

// A YAML double-quoted scalar (JSON escapes are valid YAML).
std::string quoted(const std::string& s) { return json_quoted(s); }

void put_points(std::string& out, const std::vector<CalPoint>& pts) {
  out += "    points: [";
  for (size_t i = 0; i < pts.size(); ++i) {
    if (i > 0) out += (i % 4 == 0) ? ",\n             " : ", ";
    // fmt's "{}" of a double is the shortest text that reads back to the same double.
    out += fmt::format("[{}, {}]", pts[i].size, pts[i].time_ns);
  }
  out += "]\n";
}

void check_points(const std::vector<CalPoint>& pts, const std::string& table) {
  if (pts.empty()) throw std::invalid_argument(table + ": no points");
  for (size_t i = 0; i < pts.size(); ++i) {
    const auto& p = pts[i];
    if (p.size <= 0 || !(p.time_ns > 0) || !std::isfinite(p.time_ns)) {
      throw std::invalid_argument(fmt::format("{}: point {} ({}, {}) needs size > 0 and time > 0",
                                              table, i, p.size, p.time_ns));
    }
    if (i > 0 && p.size <= pts[i - 1].size) {
      throw std::invalid_argument(
          fmt::format("{}: point {} size {} does not increase", table, i, p.size));
    }
  }
}

}  // namespace

const std::vector<std::string>& calibration_comm_ops() {
  static const std::vector<std::string> ops = {"all_reduce", "all_gather", "reduce_scatter",
                                               "all_to_all", "send_recv"};
  return ops;
}

Calibration parse_calibration(const std::string& yaml_text, const std::string& origin) {
  LoadContext ctx;
  const YAML::Node root = detail::parse_yaml(yaml_text, origin);
  if (!root.IsDefined() || root.IsNull()) {  // no node to locate: name the file itself
    throw InputError(origin, 0, 0, "",
                     fmt::format("empty calibration file (expected a mapping starting "
                                 "'format: {}')",
                                 kFormat));
  }
  return convert(Field(ctx, origin, root, ""));
}

Calibration load_calibration(const std::string& path) {
  return parse_calibration(read_input_file(path, "calibration", kMaxYamlInputBytes), path);
}

void validate_calibration(const Calibration& c) {
  if (c.device.empty()) throw std::invalid_argument("calibration: device is empty");
  if (c.gpus < 1) throw std::invalid_argument("calibration: gpus must be >= 1");
  for (const auto& g : c.gemm) {
    if (g.n <= 0 || g.k <= 0) throw std::invalid_argument("calibration: gemm n, k must be > 0");
    check_points(g.points, fmt::format("gemm n={} k={}", g.n, g.k));
  }
  for (const auto& g : c.grouped_gemm) {
    if (g.n <= 0 || g.k <= 0 || g.max_rows <= 0 || !(g.base_ns >= 0) || !std::isfinite(g.base_ns)) {
      throw std::invalid_argument(
          "calibration: grouped_gemm n, k, max_rows must be > 0 and base_ns finite, >= 0");
    }
    if (g.weights != models::DType::kBF16 && g.weights != models::DType::kFP8) {
      throw std::invalid_argument("calibration: grouped_gemm weights must be bf16 or fp8");
    }
    check_points(g.points, fmt::format("grouped_gemm n={} k={}", g.n, g.k));
  }
  for (const auto& a : c.attention) {
    if (a.heads <= 0 || a.kv_heads <= 0 || a.head_dim <= 0 || a.batch <= 0 ||
        a.heads % a.kv_heads != 0) {
      throw std::invalid_argument("calibration: bad attention table key");
    }
    check_points(a.points, fmt::format("attention heads={} kv_heads={} head_dim={} batch={}",
                                       a.heads, a.kv_heads, a.head_dim, a.batch));
  }
  for (const auto& k : c.kernels) {
    if (k.name.empty()) throw std::invalid_argument("calibration: kernel table without a name");
    check_points(k.points, "kernel " + k.name);
  }
  const LaunchCosts& l = c.launch;
  for (double v : {l.event_overhead_ns, l.event_gap_ns, l.idle_launch_ns, l.kernel_ns,
                   l.comm_slowdown, l.comm_resident_slowdown}) {
    if (!(v >= 0) || !std::isfinite(v)) {
      throw std::invalid_argument("calibration: launch costs must be finite and >= 0");
    }
  }
  const auto& ops = calibration_comm_ops();
  for (const auto& k : c.comm) {
    if (std::find(ops.begin(), ops.end(), k.op) == ops.end() || k.ranks < 2) {
      throw std::invalid_argument(
          fmt::format("calibration: bad comm table '{}' ranks {}", k.op, k.ranks));
    }
    check_points(k.points, fmt::format("comm {} ranks={}", k.op, k.ranks));
  }
}

std::string calibration_yaml(const Calibration& c) {
  std::string out;
  out += "# masep calibration: measured times of single launches (ns). Written by\n";
  out += "# `masep profile`; read by `masep sim --calibration`. See docs/calibration.md.\n";
  out += fmt::format("format: {}\n", kFormat);
  out += fmt::format("device: {}\n", quoted(c.device));
  out += fmt::format("driver: {}\n", quoted(c.driver));
  out += fmt::format("cuda: {}\n", quoted(c.cuda));
  out += fmt::format("cublas: {}\n", quoted(c.cublas));
  out += fmt::format("nccl: {}\n", quoted(c.nccl));
  out += fmt::format("date: {}\n", quoted(c.date));
  out += fmt::format("gpus: {}\n", c.gpus);
  out += fmt::format("notes: {}\n", quoted(c.notes));
  if (c.launch.measured) {
    out += "# per launch, timed as the executor does (event pair around each launch); ns\n";
    out += fmt::format(
        "launch:\n  event_overhead_ns: {}\n  event_gap_ns: {}\n  idle_launch_ns: {}\n"
        "  kernel_ns: {}\n",
        c.launch.event_overhead_ns, c.launch.event_gap_ns, c.launch.idle_launch_ns,
        c.launch.kernel_ns);
    if (c.launch.comm_slowdown > 0) {
      out += fmt::format("  comm_slowdown: {}\n", c.launch.comm_slowdown);
    }
    if (c.launch.comm_resident_slowdown > 0) {
      out += fmt::format("  comm_resident_slowdown: {}\n", c.launch.comm_resident_slowdown);
    }
  }
  out += "# cuBLAS bf16 GEMM C[m x n] = A[m x k] B[k x n]; points: [m, ns]\n";
  out += c.gemm.empty() ? "gemm: []\n" : "gemm:\n";
  for (const auto& g : c.gemm) {
    out += fmt::format("  - n: {}\n    k: {}\n", g.n, g.k);
    put_points(out, g.points);
  }
  if (!c.grouped_gemm.empty()) {
    out += "# grouped decode GEMM (one launch for all experts with <= max_rows rows each): time =\n";
    out += "# base_ns + sum over groups of points(rows); points: [rows of one group, ns]\n";
    out += "grouped_gemm:\n";
    for (const auto& g : c.grouped_gemm) {
      out += fmt::format("  - n: {}\n    k: {}\n", g.n, g.k);
      if (g.weights != models::DType::kBF16) {
        out += fmt::format("    weights: {}\n", models::to_string(g.weights));
      }
      out += fmt::format("    max_rows: {}\n    base_ns: {}\n", g.max_rows, g.base_ns);
      put_points(out, g.points);
    }
  }
  out += "# decode attention (appends K/V); points: [context tokens per sequence, ns]\n";
  out += c.attention.empty() ? "attention: []\n" : "attention:\n";
  for (const auto& a : c.attention) {
    out += fmt::format("  - heads: {}\n    kv_heads: {}\n    head_dim: {}\n    batch: {}\n",
                       a.heads, a.kv_heads, a.head_dim, a.batch);
    put_points(out, a.points);
  }
  out += "# kernels by Program op name or kind; points: [op hbm_bytes, ns]\n";
  out += c.kernels.empty() ? "kernels: []\n" : "kernels:\n";
  for (const auto& k : c.kernels) {
    out += fmt::format("  - name: {}\n", quoted(k.name));
    put_points(out, k.points);
  }
  out += "# NCCL, one node; points: [bytes per rank (nccl-tests size), ns]\n";
  out += c.comm.empty() ? "comm: []\n" : "comm:\n";
  for (const auto& k : c.comm) {
    out += fmt::format("  - op: {}\n    ranks: {}\n", k.op, k.ranks);
    put_points(out, k.points);
  }
  return out;
}

void write_calibration(const std::string& path, const Calibration& c) {
  validate_calibration(c);
  const std::string text = calibration_yaml(c);
  write_output_file(path, "calibration", text);
}

// ---- interpolation ---------------------------------------------------------------------------

const char* to_string(Lookup l) {
  switch (l) {
    case Lookup::kExact:
      return "exact";
    case Lookup::kInterpolated:
      return "interpolated";
    case Lookup::kBelow:
      return "below table";
    case Lookup::kAbove:
      return "above table";
  }
  return "?";
}

double log_lerp(double x0, double y0, double x1, double y1, double x) {
  if (x <= x0) return y0;
  if (x >= x1) return y1;
  const double f = (std::log(x) - std::log(x0)) / (std::log(x1) - std::log(x0));
  return y0 + (y1 - y0) * f;
}

double lerp(double x0, double y0, double x1, double y1, double x) {
  if (x <= x0) return y0;
  if (x >= x1) return y1;
  return y0 + (y1 - y0) * (x - x0) / (x1 - x0);
}

Interpolated interpolate(std::span<const CalPoint> pts, double x) {
  if (pts.empty()) throw std::invalid_argument("interpolate: empty table");
  if (!(x > 0)) throw std::invalid_argument(fmt::format("interpolate: size {} is not > 0", x));
  const CalPoint& lo = pts.front();
  const CalPoint& hi = pts.back();
  if (x < static_cast<double>(lo.size)) return {lo.time_ns, Lookup::kBelow};
  if (x > static_cast<double>(hi.size)) {
    return {hi.time_ns * x / static_cast<double>(hi.size), Lookup::kAbove};
  }
  // First point with size >= x.
  auto it = std::lower_bound(pts.begin(), pts.end(), x, [](const CalPoint& p, double v) {
    return static_cast<double>(p.size) < v;
  });
  if (static_cast<double>(it->size) == x) return {it->time_ns, Lookup::kExact};
  const CalPoint& b = *it;
  const CalPoint& a = *(it - 1);
  return {lerp(static_cast<double>(a.size), a.time_ns, static_cast<double>(b.size), b.time_ns, x),
          Lookup::kInterpolated};
}

const char* calibration_kind_table(OpKind kind) {
  switch (kind) {
    case OpKind::kElementwise:
      return "elementwise";
    case OpKind::kRouter:
      return "router";
    case OpKind::kPermute:
      return "permute";
    case OpKind::kCombine:
      return "combine";
    default:
      return "";
  }
}

}  // namespace masep::plan
