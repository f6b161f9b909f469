// Sweeps: a base scenario and a set of override points (plan/sweep.hpp parses the file; the
// format is in docs/sweep.md), run in parallel, with results as a table (CSV) and plots.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "masep/plan/metrics.hpp"
#include "masep/plan/sweep.hpp"
#include "masep/sim/simulator.hpp"

namespace masep::tools {

using plan::Sweep;
using plan::SweepPlot;
using plan::SweepPoint;

/// Reads a sweep from a file path (or `-`), or a built-in sweep by name
/// (builtin_sweep_names()), and checks that its plots name results.csv columns. Throws
/// plan::InputError.
Sweep load_sweep(const std::string& name_or_path);
std::vector<std::string> builtin_sweep_names();

/// Result of one point. An infeasible or failing point carries its error; it is not fatal.
struct PointResult {
  bool ok = false;
  std::string error;
  std::string plan_kind;  ///< "ma_separation" / "colocated" (empty if not loaded)
  int gpus = 0, attention_gpus = 0, moe_gpus = 0, batch = 0;
  uint64_t events = 0;
  plan::RunMetrics metrics;       ///< ranks cleared to keep big sweeps small
  double scaling_efficiency = 0;  ///< filled by fill_scaling_efficiency(); 0 = n/a
};

/// Called after each finished point with (points done, total); may be called from worker
/// threads, one call at a time.
using ProgressFn = void (*)(void* ctx, int done, int total);

/// Runs every point (in parallel on `jobs` threads, 0 = all cores) with `extra` overrides
/// appended after each point's. Results are in point order whatever the thread timing.
/// `only` (size = points, or null = all): run just the points whose entry is non-zero; the
/// others stay default (ok = false, no error) and progress counts only the ones run.
/// `on_point` (may be empty) is called with each finished point's index and result, one call
/// at a time, as soon as it finishes (sweep_shard.hpp writes its record there).
/// `approx_moe_layers` > 0: every point runs the approximate tier (RunOptions).
using PointFn = std::function<void(int index, const PointResult& result)>;
std::vector<PointResult> run_sweep(const Sweep& sweep, const sim::SimOptions& options, int jobs,
                                   const std::vector<std::string>& extra = {},
                                   ProgressFn progress = nullptr, void* ctx = nullptr,
                                   const std::vector<char>* only = nullptr,
                                   const PointFn& on_point = {}, int approx_moe_layers = 0);

/// Scaling efficiency of each ok point: (tokens/s / GPUs) / (tokens/s / GPUs) of the point
/// with the fewest GPUs among the ok points of the same plan kind (1.0 for that point).
void fill_scaling_efficiency(std::vector<PointResult>& results);

/// The results table: header and one row per point (all cells as text). Columns:
/// point, scenario, <sweep.columns...>, plan, gpus, attention_gpus, moe_gpus, ratio, batch,
/// status, tpot_mean_ms, tpot_p50_ms, tpot_p99_ms, tokens_per_s, scaling_efficiency,
/// mean_utilisation, attention_idle_ms, moe_idle_ms, exposed_comm_ms, makespan_ms, events,
/// error.
std::vector<std::vector<std::string>> results_table(const Sweep& sweep,
                                                    const std::vector<PointResult>& results);

/// Writes the table as CSV (RFC 4180 quoting) to `path` atomically (temporary + rename).
void write_csv(const std::string& path, const std::vector<std::vector<std::string>>& table);

}  // namespace masep::tools
