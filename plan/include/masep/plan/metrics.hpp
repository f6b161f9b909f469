// Metrics of a run, computed from a Program and its Timeline (simulated or measured) by one
// piece of code, so the simulator's and the executor's tables mean the same thing.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"
#include "masep/plan/scenario.hpp"
#include "masep/plan/timeline.hpp"

namespace masep::plan {

/// Per plan rank.
struct RankMetrics {
  int32_t rank = 0;
  Role role = Role::kAttention;
  std::string label;
  double utilisation = 0;        ///< compute-stream busy time / wall time, 0..1
  int64_t compute_busy_ns = 0;
  int64_t comm_busy_ns = 0;      ///< time with at least one transfer running (see below)
  int64_t exposed_comm_ns = 0;   ///< communication time not overlapped with compute
  int64_t idle_ns = 0;           ///< wall time with no compute and no transfer on the rank
  int64_t comm_wait_ns = 0;      ///< part of idle_ns spent inside a posted send/recv,
                                 ///< exchange or collective waiting for its peers to arrive
  int64_t memory_bytes = 0;      ///< from plan_memory()
  int64_t step_hbm_bytes = 0;    ///< HBM bytes of one decode step (mean over steps)
  double step_flops = 0;         ///< FLOPs of one decode step (mean over steps)
  int64_t roofline_floor_ns = 0; ///< max(bytes/HBM bw, FLOPs/peak) of one step at datasheet
};

/// Whole-run metrics.
struct RunMetrics {
  int steps = 0;
  int batch = 0;
  double tpot_mean_ms = 0, tpot_p50_ms = 0, tpot_p99_ms = 0;  ///< time per output token
  double tokens_per_s = 0;       ///< batch · steps / wall time of the steps
  double mean_utilisation = 0;   ///< mean over ranks, 0..1
  int64_t attention_idle_ns = 0; ///< summed idle time of attention ranks
  int64_t moe_idle_ns = 0;       ///< summed idle time of MoE ranks
  int64_t exposed_comm_ns = 0;   ///< summed over ranks
  int64_t makespan_ns = 0;
  bool memory_available = false; ///< false when plan_memory() could not be computed
  std::vector<double> step_ms;   ///< duration of each decode step (the TPOT samples), ms
  std::vector<RankMetrics> ranks;
};

/// Computes metrics. A step's time is the end of its last op minus the end of the previous
/// step's last op (step 0: minus run start, 0), so overlapping steps are not double counted;
/// TPOT percentiles are over steps (nearest-rank). Busy/idle times are unions of op intervals
/// on the rank. A communication op transfers from its *transfer start* = max(its start, its
/// matching send/recv's start, the start of the collective's last member, or for a kExchange
/// op the moment its first transfer can start: its earliest partner's start) to its end;
/// before that it only waits for peers (comm_wait_ns, part of idle). comm busy = union of
/// transfer intervals, exposed comm = comm busy not covered by compute ops, idle = makespan
/// − union of compute and transfer intervals. Per-step bytes/FLOPs = rank totals /
/// steps; the roofline floor uses the GPU datasheet (HBM GB/s, dense bf16 peak) and memory
/// comes from the plan's memory model, both from p.target (set by the compiler; a Program
/// without one has no floors and no memory figures). Throws std::invalid_argument if the
/// timeline's size does not match the program.
RunMetrics compute_metrics(const Program& p, const Timeline& t);

/// The same with the batch, datasheet and memory taken from scenario `s` (for Programs built
/// or changed outside the compiler; equal to the above for a compiled Program of `s`).
RunMetrics compute_metrics(const Scenario& s, const Program& p, const Timeline& t);

/// Nearest-rank percentile (q in (0, 100]) of ascending `sorted` values (0 when empty): the
/// TPOT p50 / p99 rule.
double nearest_rank_percentile(const std::vector<double>& sorted, double q);

/// Writes `m` as one JSON object (every field above, ranks as an array; deterministic).
void write_metrics_json(std::ostream& out, const RunMetrics& m);

}  // namespace masep::plan
