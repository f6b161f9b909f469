// Interpolation of calibration tables (calibration.hpp): a measured time for a size between,
// on, or outside the measured sizes. The rules (docs/calibration.md):
//
//   on a point            the measured time, exactly                        (kExact)
//   between two points    piecewise linear in size:                          (kInterpolated)
//                         t = t0 + (t1 - t0) · (x - x0) / (x1 - x0)
//                         so it is monotone between neighbours and exact at both ends.
//                         (Every cost measured here is affine in its size between two
//                         points: a latency plus bytes / bandwidth. Linear in log(size), the
//                         rule before 2026-11-27, overestimated bandwidth-bound ops between
//                         points spaced ×4, by up to 25 % per axis: docs/accuracy.md.)
//   below the first point the first point's time (small launches are latency-bound; time
//                         does not shrink below the smallest measured launch)      (kBelow)
//   above the last point  constant throughput beyond the last point:                (kAbove)
//                         t = t_last · x / x_last (time scales linearly with size)
//
// kBelow and kAbove are extrapolations: callers count them and report how many ops used
// one (the simulator never extrapolates silently).
#pragma once

#include <cstdint>
#include <span>

#include "masep/plan/calibration.hpp"

namespace masep::plan {

/// How a value was obtained from a table.
enum class Lookup : uint8_t { kExact, kInterpolated, kBelow, kAbove };
const char* to_string(Lookup l);
inline bool is_extrapolated(Lookup l) { return l == Lookup::kBelow || l == Lookup::kAbove; }

/// A looked-up time and how it was found.
struct Interpolated {
  double time_ns = 0;
  Lookup how = Lookup::kExact;
};

/// Time at `size` (> 0) from `points` (non-empty, sizes strictly increasing) by the rules
/// above. Throws std::invalid_argument for an empty table or size <= 0.
Interpolated interpolate(std::span<const CalPoint> points, double size);

/// Linear interpolation in log(x) between (x0, y0) and (x1, y1), x0 < x1, at x0 <= x <= x1.
double log_lerp(double x0, double y0, double x1, double y1, double x);

/// Linear interpolation in x between (x0, y0) and (x1, y1), x0 < x1, at x0 <= x <= x1
/// (clamped to the ends outside).
double lerp(double x0, double y0, double x1, double y1, double x);

}  // namespace masep::plan
