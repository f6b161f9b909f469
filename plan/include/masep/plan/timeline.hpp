// A Timeline is when every op of a Program ran: predicted by the simulator or measured by
// the executor. Metrics and traces are computed from (Program, Timeline) by the same code for
// both back ends, so their outputs are directly comparable.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace masep::plan {

/// Start and end of one op in nanoseconds on the run's common time base (0 = run start).
struct OpTiming {
  int64_t start_ns = -1;
  int64_t end_ns = -1;
  int64_t duration_ns() const { return end_ns - start_ns; }
};

/// Timings of a whole Program run. Owned by value.
struct Timeline {
  std::string source;              ///< "sim" or "measured"
  std::string device;              ///< GPU name the timings belong to (e.g. "H100-SXM5-80GB")
  std::vector<OpTiming> ops;       ///< indexed by OpId; start_ns < 0 = not run
  int64_t makespan_ns = 0;         ///< end of the last op
};

}  // namespace masep::plan
