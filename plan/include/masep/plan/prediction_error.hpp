// How far the time predictor (time_predictor.hpp) is from a run of the same Program: per op
// kind and per op role, the signed relative error (predicted − run) / run of every op, its
// median, the median and 90th percentile of |error|, and total times. The run is a Timeline
// (the simulator's, or a measured one read back from a trace). `masep predict` prints it;
// docs/load-balancing.md records the figures.
//
// What an op's run time is: a compute op's end − start. A communication op's end − the
// moment all of its partners had started (send/recv peer, every member of its collective,
// every op its exchange transfers to or from), so waiting for a late partner is not counted
// as transfer time (the predictor predicts transfers on idle links, not waits).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "masep/plan/compare.hpp"
#include "masep/plan/program.hpp"
#include "masep/plan/time_predictor.hpp"
#include "masep/plan/timeline.hpp"

namespace masep::plan {

/// Error of one group of ops (one kind or one role). Percentages: 5.0 means 5 %.
struct PredictionErrorRow {
  std::string group;           ///< to_string(OpKind) or to_string(OpRole)
  int64_t ops = 0;             ///< ops compared (ops with run time 0 are skipped)
  double median_pct = 0;       ///< median signed error
  double median_abs_pct = 0;   ///< median |error|
  double p90_abs_pct = 0;      ///< 90th percentile of |error| (nearest rank)
  double predicted_ms = 0;     ///< Σ predicted time
  double run_ms = 0;           ///< Σ run time
};

struct PredictionError {
  std::vector<PredictionErrorRow> by_kind;  ///< OpKind order, kinds with ops only
  std::vector<PredictionErrorRow> by_role;  ///< OpRole order, roles with ops only
  double mean_predict_ns = 0;  ///< host time of one op_ns call (mean over all ops), ns
};

/// Compares every op of `p` that ran in `t`. Throws std::invalid_argument when the
/// timeline's size does not match the program.
PredictionError prediction_error(const Program& p, const Timeline& t, const TimePredictor& tp);

/// The Timeline of a measured (or simulated) trace of `p` read back with read_trace_file:
/// each trace op's start and end at its op id. Throws std::invalid_argument naming the trace
/// and the op when an op id is outside the Program or its name or rank differ from the
/// Program's (a trace of another scenario or compiler version); ops the trace lacks stay
/// "not run" (start −1) and are skipped by prediction_error.
Timeline timeline_from_trace(const Program& p, const LoadedTrace& trace);

/// The two tables as text (deterministic: no host times).
void write_prediction_error_text(std::ostream& out, const PredictionError& e);

}  // namespace masep::plan
