// Sweep files through the scenario loader's YAML machinery (yaml_util.hpp): every value is a
// located Field, mappings reject unknown and duplicate keys, so errors read
// "FILE:LINE:COL: key.path: message" as for scenarios (docs/sweep.md has the format).
#include "masep/plan/sweep.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "masep/plan/errors.hpp"
#include "yaml_util.hpp"

namespace masep::plan {
namespace {

namespace fs = std::filesystem;
using detail::Field;
using detail::LoadContext;
using detail::MapReader;

// A YAML value as override text: scalars as written, sequences and maps in flow style.
std::string value_text(const YAML::Node& n) {
  if (n.IsScalar()) return n.Scalar();
  YAML::Emitter e;
  e.SetMapFormat(YAML::Flow);
  e.SetSeqFormat(YAML::Flow);
  e << n;
  return e.c_str();
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

// A mapping of key.path: value; `scenario` and `label` (when given) take those two keys.
Overrides read_overrides(const Field& map, std::string* scenario, std::string* label) {
  if (!map.is_map()) map.fail("expected a mapping of key.path: value");
  Overrides out;
  for (const auto& [k, v] : map.entries()) {
    if (scenario != nullptr && k == "scenario") {
      *scenario = v.string();
    } else if (label != nullptr && k == "label") {
      *label = v.string();
    } else {
      if (v.node().IsNull()) v.fail("missing value");
      out.emplace_back(k, value_text(v.node()));
    }
  }
  return out;
}

bool plain_name(const std::string& s, bool dots) {
  if (s.empty() || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
           (dots && c == '.');
  });
}

SweepPlot read_plot(const Field& f) {
  const MapReader r = f.map({"name", "title", "x", "y", "series", "logx"});
  SweepPlot pl;
  const Field name = r.get("name");
  pl.name = name.string();
  if (!plain_name(pl.name, false)) name.fail("use letters, digits, '-' and '_' only");
  if (auto t = r.find("title")) pl.title = t->string();
  pl.x = r.get("x").string();
  const Field y = r.get("y");
  if (y.is_scalar()) {
    pl.y.push_back(y.string());
  } else if (y.is_sequence()) {
    for (const Field& c : y.items()) pl.y.push_back(c.string());
  } else {
    y.fail("expected a column or a list of columns");
  }
  if (pl.y.empty()) y.fail("expected a column or a list of columns");
  if (pl.y.size() > 2) y.fail("at most two y columns (left, right axis)");
  if (auto s = r.find("series")) pl.series = s->string();
  if (auto l = r.find("logx")) pl.logx = l->boolean();
  const auto where = f.location();
  pl.line = where.line;
  pl.column = where.column;
  return pl;
}

}  // namespace

Sweep parse_sweep(const std::string& text, const std::string& origin) {
  LoadContext ctx;
  const YAML::Node root_node = detail::parse_yaml(text, origin);
  if (!root_node.IsDefined() || root_node.IsNull()) {
    throw InputError(origin, 0, 0, "", "empty sweep file (a mapping; see docs/sweep.md)");
  }
  const Field root(ctx, origin, root_node, "");
  if (!root.is_map()) root.fail("a sweep file is a mapping (see docs/sweep.md)");
  const MapReader m = root.map({"name", "description", "base", "set", "points", "grid", "output"});
  Sweep sw;
  sw.origin = origin;
  const Field name = m.get("name");
  sw.name = name.string();
  // The name becomes the folder sweep-out/<name>: it must not leave sweep-out/.
  if (!plain_name(sw.name, true)) {
    name.fail(fmt::format(
        "'{}': use letters, digits, '.', '-' and '_' only (it names the folder sweep-out/<name>)",
        sw.name));
  }
  if (auto d = m.find("description")) sw.description = d->string();
  const std::string base = m.has("base") ? m.get("base").string() : "";
  if (auto s = m.find("set")) {
    for (const auto& [k, v] : read_overrides(*s, nullptr, nullptr)) sw.fixed.push_back(k + "=" + v);
  }

  // Explicit points (or one empty point), each with its scenario and optional label.
  struct Raw {
    std::string scenario, label;
    Overrides overrides;
  };
  std::vector<Raw> raws;
  bool labels = false;
  const auto points_field = m.find("points");
  if (points_field) {
    if (!points_field->is_sequence() || points_field->node().size() == 0) {
      points_field->fail("expected a non-empty list of mappings");
    }
    for (const Field& pt : points_field->items()) {
      Raw r;
      r.scenario = base;
      r.overrides = read_overrides(pt, &r.scenario, &r.label);
      if (r.scenario.empty()) pt.fail("no `scenario:` and no top-level `base:`");
      labels |= !r.label.empty();
      raws.push_back(std::move(r));
    }
  } else {
    if (base.empty()) m.fail_key("base", "missing key (or give `points:` with scenarios)");
    raws.push_back(Raw{base, "", {}});
  }

  // Grid: cartesian product, first key slowest.
  std::vector<std::pair<std::string, std::vector<std::string>>> grid;
  const auto grid_field = m.find("grid");
  if (grid_field) {
    if (!grid_field->is_map()) grid_field->fail("expected a mapping of key.path: [values]");
    for (const auto& [k, v] : grid_field->entries()) {
      if (!v.is_sequence() || v.node().size() == 0) v.fail("expected a non-empty list of values");
      std::vector<std::string> values;
      for (const Field& x : v.items()) values.push_back(value_text(x.node()));
      grid.emplace_back(k, std::move(values));
    }
  }
  // Points = explicit points x grid cells, counted without wrapping before anything is built.
  size_t points = raws.size();
  std::string sizes = std::to_string(raws.size());
  for (const auto& [k, v] : grid) sizes += " x " + std::to_string(v.size());
  for (const auto& [k, v] : grid) {
    if (points > kMaxSweepPoints / v.size()) {
      grid_field->fail(fmt::format("{} points: more than {}", sizes, kMaxSweepPoints));
    }
    points *= v.size();
  }
  if (points > kMaxSweepPoints) {
    (grid_field ? *grid_field : *points_field)
        .fail(fmt::format("{} = {} points: more than {}", sizes, points, kMaxSweepPoints));
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
      for (size_t gi = 0; gi < grid.size(); ++gi) {
        p.overrides.emplace_back(grid[gi].first, picked[gi]);
      }
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
  if (auto out = m.find("output")) {
    const MapReader o = out->map({"dir", "plots"});
    if (auto d = o.find("dir")) sw.out_dir = d->string();
    if (auto plots = o.find("plots")) {
      for (const Field& pf : plots->items()) sw.plots.push_back(read_plot(pf));
    }
  }
  return sw;
}

}  // namespace masep::plan
