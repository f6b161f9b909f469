// Comparing a simulated trace with a measured one (`masep compare`). Both traces come from
// plan::write_trace (trace.hpp) for the same Program, so every op event carries args.op (the
// Program's OpId) and the comparison is a join on it. Errors are signed prediction errors
// relative to the measurement:
//     error = (simulated − measured) / measured
// (+10% = the simulator predicted 10% too long). Ops whose measured duration is 0 are joined
// but left out of the percentages (counted in zero_measured).
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

namespace masep::plan {

/// One op event read back from a trace ("ph":"X" with args.op).
struct TraceOp {
  int32_t op = -1;   ///< args.op
  int32_t pid = 0;   ///< the plan rank
  int32_t tid = 0;   ///< the stream (0 compute, 1 comm)
  std::string name;  ///< event name (Op::name)
  std::string kind;  ///< args.kind, e.g. "gemm", "send"
  int32_t step = 0, layer = 0, micro_batch = 0;
  int64_t start_ns = 0;     ///< ts in ns (exact: the writer prints µs with 3 decimals)
  int64_t duration_ns = 0;  ///< dur in ns
};

/// A trace read from disk. Ops sorted by op id.
struct LoadedTrace {
  std::string path;
  std::string source;    ///< otherData.source ("sim", "measured")
  std::string device;    ///< otherData.device
  std::string scenario;  ///< otherData.scenario
  std::vector<TraceOp> ops;
  std::map<int32_t, std::string> process_names;                     ///< pid → name
  std::map<std::pair<int32_t, int32_t>, std::string> thread_names;  ///< (pid, tid) → name
};

/// Reads a Chrome trace written by plan::write_trace (nlohmann-json) through
/// read_input_file (a regular file or `-`, at most kMaxTraceInputBytes). Throws InputError
/// naming the file, the event and the key for unreadable JSON, missing or mistyped fields,
/// fractional or duplicate op ids, negative or non-finite times, or no op events.
LoadedTrace read_trace_file(const std::string& path);
/// Same, from the trace's JSON text; `origin` names it in messages.
LoadedTrace parse_trace(const std::string& json_text, const std::string& origin);

/// One joined op.
struct OpError {
  int32_t op = -1, rank = 0;
  std::string name, kind;
  int32_t step = 0, layer = 0, micro_batch = 0;
  int64_t sim_ns = 0, measured_ns = 0;
  double error = 0;  ///< (sim − measured) / measured; 0 when measured_ns == 0
};

/// Error statistics of one op kind (args.kind).
struct KindError {
  std::string kind;
  int64_t ops = 0;            ///< joined ops of this kind
  int64_t zero_measured = 0;  ///< of which measured 0 ns (left out of the statistics)
  double median = 0;          ///< median signed error (fraction)
  double p90_abs = 0;         ///< 90th percentile of |error| (nearest rank)
  double sim_total_ms = 0, measured_total_ms = 0;  ///< summed durations
  std::vector<OpError> worst;                      ///< largest |error| first, at most `worst_count`
};

/// The whole comparison.
struct Comparison {
  std::string sim_path, measured_path, scenario, sim_device, measured_device;
  int64_t ops = 0;
  std::vector<KindError> kinds;                       ///< sorted by kind name
  KindError all;                                      ///< every op together (kind "all")
  std::vector<double> sim_step_ms, measured_step_ms;  ///< per decode step
  double sim_tpot_ms = 0, measured_tpot_ms = 0;       ///< means of the step times
  double tpot_error = 0;  ///< (sim − measured) / measured of the mean step time
};

/// Joins `sim` and `measured` on op id. Throws std::runtime_error when the op sets differ
/// (the message gives both counts, how many ids are only in one, and the first few of them) or
/// when a joined op's name or kind differ (different Programs). `worst_count` ops per kind.
Comparison compare_traces(const LoadedTrace& sim, const LoadedTrace& measured, int worst_count = 5);

/// Text report: header, per-kind table (ops, median, p90 |error|, totals), worst ops, TPOT.
void write_comparison_text(std::ostream& out, const Comparison& c);
/// The same as one JSON object (deterministic).
void write_comparison_json(std::ostream& out, const Comparison& c);

/// A Perfetto trace with both runs side by side: simulated rank r keeps pid r and is named
/// "sim: <name>", measured rank r gets pid r + offset ("measured: <name>"), with sort indexes
/// placing the two lanes of a rank next to each other. Each run's time is shifted so its first
/// op starts at 0. Written atomically.
void write_merged_trace(const std::string& path, const LoadedTrace& sim,
                        const LoadedTrace& measured);

/// An SVG picture of decode step `step` (-1 = the middle step): for every rank two lanes,
/// simulated above measured, ops coloured by kind, each run's step aligned to start at 0.
/// Written atomically. Throws std::invalid_argument if neither trace has that step.
void write_overlay_svg(const std::string& path, const LoadedTrace& sim, const LoadedTrace& measured,
                       int step = -1);

}  // namespace masep::plan
