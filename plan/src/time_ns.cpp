#include "masep/plan/time_ns.hpp"

#include <fmt/format.h>

#include "masep/plan/errors.hpp"

namespace masep::plan {

void throw_duration_error(double ns, const char* what) {
  throw DurationError(fmt::format(
      "{}: a duration of {} ns is not finite or exceeds 2^53 ns (~104 days); an input is "
      "outside its physical range (bandwidth, latency, calibrated time, overhead, bytes)",
      what, ns));
}

}  // namespace masep::plan
