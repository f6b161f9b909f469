// Timing an op from a calibration's tables (calibration.hpp): the one set of lookup rules that
// both the calibrated simulator (sim/calibrated_model.hpp, which adds the roofline fallback and
// the launch's event overhead) and the time predictor (time_predictor.hpp) apply, so the two
// cannot drift apart. docs/calibration.md states the rules; plan/interpolation.hpp the
// interpolation inside one table. All times are ns, as the tables store them (no event
// overhead added); -1 means "no table covers it" (source kRoofline). Pure functions.
#pragma once

#include <cstdint>
#include <span>

#include "masep/plan/calibration.hpp"
#include "masep/plan/program.hpp"

namespace masep::plan {

/// How a calibrated duration was obtained, ordered by trust.
enum class CalSource : uint8_t {
  kExact,         ///< every table value used was a measured point
  kInterpolated,  ///< between measured points
  kExtrapolated,  ///< a size below or above a table (rules in plan/interpolation.hpp)
  kNearestShape,  ///< no table with the op's exact shape key: nearest one, scaled
  kRoofline,      ///< no table for this op at all: the caller's roofline model
};
inline constexpr int kCalSourceCount = 5;
const char* to_string(CalSource s);

/// GEMM C[m×n] = A[m×k]·B[k×n]: the table of (n, k) interpolated in m; without one, the
/// table nearest in |log n − log n'| + |log k − log k'| (ties: file order) scaled by
/// (n·k)/(n'·k') → kNearestShape. -1 when the file has no GEMM table. `src` may be null.
double calibrated_gemm_ns(const Calibration& cal, int64_t m, int64_t n, int64_t k, CalSource* src);

/// An expert projection of groups with `group_m` rows (zero-row groups free): the grouped_gemm
/// table of the exact (n, k, weights) when every group has at most its max_rows (base_ns + the
/// table at each group's rows: the executor's grouped launch), else the sum of
/// calibrated_gemm_ns per non-empty group (its one cuBLAS GEMM per expert; bf16 only). 0 when
/// no group has rows; -1 when a group has no table (FP8: no fp8 table of the exact shape).
double calibrated_grouped_gemm_ns(const Calibration& cal, std::span<const int32_t> group_m,
                                  int64_t n, int64_t k, CalSource* src,
                                  models::DType weights = models::DType::kBF16);

/// Decode attention: tables of the op's (heads, kv_heads, head_dim), else of the nearest head
/// shape (by kv_heads·head_dim, then heads; time scaled by the kv_heads·head_dim ratio →
/// kNearestShape); interpolated in context = ceil(kv_tokens / batch) within each batch, then
/// linearly in batch (below the smallest batch: its time; above the largest: scaled by batch).
double calibrated_attention_ns(const Calibration& cal, int32_t batch, int32_t heads,
                               int32_t kv_heads, int32_t head_dim, int64_t kv_tokens,
                               CalSource* src);

/// A compute op by its kind, with the rules above; element-wise, router, permute and combine
/// ops from the kernel table named like the op, else like its kind (calibration_kind_table),
/// interpolated in hbm_bytes (0 bytes: 0, no launch). GEMMs with FP8 weights from the fp8
/// grouped_gemm tables (the executor runs them as its grouped launch; a kGemm as one group of
/// m rows). Ops the profiler does not measure (any other format other than bf16; MLA's absorbed
/// projections and latent attention) give -1. Throws
/// std::invalid_argument for a communication op.
double calibrated_op_ns(const Calibration& cal, const Op& op, CalSource* src);

}  // namespace masep::plan
