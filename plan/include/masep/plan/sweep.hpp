// Sweep files (docs/sweep.md): a base scenario and a set of override points, parsed by the
// scenario loader's YAML machinery (plan/src/yaml_util.hpp), so unknown and duplicate keys,
// mistyped values (`logx: sometimes`), over-deep nesting and syntax errors are InputErrors
// "FILE:LINE:COL: key.path: message" exactly as in scenario files. Running a sweep and its
// results table live in tools/ (`masep sweep`).
//
//   name: paper-ratio
//   base: paper                      # scenario: built-in name or path relative to this file
//   set: {workload.decode_steps: 8}  # overrides applied to every point (optional)
//   points:                          # explicit points (optional); a point may name its own
//     - {plan.attention.gpus: 8, plan.moe.gpus: 8}        # `scenario:` instead of `base`
//   grid:                            # cartesian product (optional; first key slowest); with
//     workload.batch: [24, 96]       # `points`, every point is combined with every grid cell
//   output:
//     dir: sweep-out/paper-ratio     # relative to the working directory; --out overrides
//     plots:
//       - {name: ratio, x: ratio, y: [tpot_mean_ms, tokens_per_s], series: workload.batch}
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace masep::plan {

/// One plot of a sweep: y columns against an x column, one line per value of `series`.
/// A second y column is drawn on the right-hand axis.
struct SweepPlot {
  std::string name;  ///< file stem: DIR/<name>.png, .svg, .gp, .dat (letters, digits, - _)
  std::string title;
  std::string x;               ///< a results.csv column
  std::vector<std::string> y;  ///< one or two results.csv columns
  std::string series;          ///< a results.csv column, or empty for one line
  bool logx = false;
  int line = 0, column = 0;  ///< where the plot is written (1-based; 0 = unknown), for messages
};

/// One point: which scenario, and its overrides ("key", "value" in YAML flow form).
struct SweepPoint {
  std::string scenario;  ///< built-in name or resolved path
  std::vector<std::pair<std::string, std::string>> overrides;
};

/// A parsed sweep file. Plain data; points are expanded in a fixed order.
struct Sweep {
  std::string name;  ///< letters, digits, '.', '-', '_' (names sweep-out/<name>)
  std::string description;
  std::string origin;                ///< path or "builtin:<name>.yaml"
  std::vector<std::string> fixed;    ///< "key=value" overrides applied to every point
  std::vector<std::string> columns;  ///< override keys that vary, in first-seen order
  std::vector<SweepPoint> points;
  std::string out_dir;  ///< default output directory
  std::vector<SweepPlot> plots;
};

/// Most points of one sweep (explicit points x grid cells), checked without overflow before
/// any point is expanded.
inline constexpr std::size_t kMaxSweepPoints = 100000;

/// Parses a sweep file's text; `origin` (a path or "builtin:x.yaml") is used in messages and
/// to resolve scenario paths relative to the file. Throws InputError.
Sweep parse_sweep(const std::string& text, const std::string& origin);

}  // namespace masep::plan
