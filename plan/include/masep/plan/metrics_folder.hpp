// MetricsFolder computes a run's metrics (metrics.hpp, RunMetrics) from its ops and timings
// handed over piece by piece, in op-id order: the whole Program at once (compute_metrics) or
// one ProgramChunk after another (the simulator's streaming path, program_chunk.hpp), with
// the same result to the byte. Busy, idle, exposed and waiting times are lengths of unions
// and differences of intervals, which add up over a partition of the time axis; with
// `incremental`, after each add() the intervals of a rank before the end of its last compute
// and its last communication op are folded into totals and dropped (a rank's later ops start
// after its earlier ops on the same stream have ended), so memory follows what is in flight.
// Integer arithmetic throughout; FLOPs are summed in op-id order as compute_metrics does.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "masep/plan/metrics.hpp"
#include "masep/plan/program.hpp"
#include "masep/plan/scenario.hpp"
#include "masep/plan/timeline.hpp"

namespace masep::plan {

class MetricsFolder {
 public:
  /// `header` gives the ranks (RankInfo: role, label), the batch (layout.batch) and the GPU
  /// datasheet and memory figures (target); it need not hold ops. It is not kept: what is
  /// needed is copied.
  MetricsFolder(const Program& header, bool incremental);
  /// The same with the batch, datasheet and memory taken from scenario `s` (plan_target(s)).
  MetricsFolder(const Scenario& s, const Program& header, bool incremental);

  /// Ops ops[i] (id first_op + i) with timings t[i], in id order after the previous add();
  /// the collectives and exchanges they name (ids first_collective + j, first_exchange + j)
  /// and the send/recv partners they match must be among these. An op that did not run
  /// (start_ns < 0) counts its bytes and FLOPs only. Throws std::invalid_argument for an op
  /// on a rank outside the header's ranks.
  void add(std::span<const Op> ops, std::span<const OpTiming> t, OpId first_op,
           std::span<const Collective> collectives, int32_t first_collective,
           std::span<const Exchange> exchanges);

  /// The metrics; `makespan_ns` is the timeline's (the last op's end is taken if larger).
  RunMetrics finish(int64_t makespan_ns);

 private:
  using Interval = std::pair<int64_t, int64_t>;
  struct Rank {
    std::vector<Interval> compute, comm, wait;  // not yet folded
    int64_t compute_busy = 0, comm_busy = 0, exposed = 0, all = 0, wait_uncovered = 0;
    int64_t end_compute = 0, end_comm = 0;  // end of the last compute / communication op
    int64_t bytes = 0;
    double flops = 0;
  };
  void fold(Rank& r, int64_t horizon);

  int64_t batch_ = 0;
  ProgramTarget target_;
  std::vector<RankInfo> ranks_;
  bool incremental_;
  std::vector<Rank> acc_;
  int64_t last_end_ = 0;
  int32_t lo_step_ = 0;
  std::vector<int64_t> step_end_;  // [step - lo_step_], -1 = no op of that step ran
};

}  // namespace masep::plan
