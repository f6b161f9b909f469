// The one conversion from a floating-point duration to masep's integer nanoseconds (issue
// 21). A plain static_cast of a huge or non-finite double is undefined and, in practice,
// gave *shorter* simulated times for absurd inputs (a 1e300 ns latency); checked_ns() throws
// DurationError instead. Callers round first (std::ceil with their own epsilon), so the
// result is bit-identical to the cast it replaces for every value in range.
//
//   fl.finish = now_ + plan::checked_ns(std::ceil(rem / fl.rate - 1e-9), "network transfer");
#pragma once

#include <cmath>
#include <cstdint>

namespace masep::plan {

/// Longest single duration, ns: 2^53 (~104 days), the largest range in which a double holds
/// every integer. Load-time ranges (limits.hpp) keep sane inputs orders of magnitude below.
inline constexpr double kMaxDurationNs = 9007199254740992.0;  // 2^53

[[noreturn]] void throw_duration_error(double ns, const char* what);

/// `ns` (already rounded to an integer value) as int64_t. Throws DurationError
/// (errors.hpp) naming `what` when ns is NaN, infinite or |ns| > kMaxDurationNs.
inline int64_t checked_ns(double ns, const char* what) {
  if (!(std::fabs(ns) <= kMaxDurationNs)) throw_duration_error(ns, what);
  return static_cast<int64_t>(ns);
}

}  // namespace masep::plan
