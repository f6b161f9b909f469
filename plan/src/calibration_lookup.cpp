// Calibration table lookups; see calibration_lookup.hpp.
#include "masep/plan/calibration_lookup.hpp"

#include <fmt/format.h>

#include <climits>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "masep/plan/interpolation.hpp"

namespace masep::plan {
namespace {

CalSource from_lookup(Lookup l) {
  switch (l) {
    case Lookup::kExact:
      return CalSource::kExact;
    case Lookup::kInterpolated:
      return CalSource::kInterpolated;
    default:
      return CalSource::kExtrapolated;
  }
}

// The less trustworthy of two sources (the enum is ordered by trust).
CalSource worse(CalSource a, CalSource b) {
  return static_cast<int>(a) > static_cast<int>(b) ? a : b;
}

double gemm_table_ns(const Calibration& cal, int64_t m, int64_t n, int64_t k, CalSource* src) {
  const GemmTable* best = nullptr;
  double best_d = std::numeric_limits<double>::infinity();
  for (const auto& t : cal.gemm) {
    if (t.n == n && t.k == k) {
      best = &t;
      best_d = 0;
      break;
    }
    const double d = std::fabs(std::log(static_cast<double>(t.n) / static_cast<double>(n))) +
                     std::fabs(std::log(static_cast<double>(t.k) / static_cast<double>(k)));
    if (d < best_d) {  // ties: the first table in file order
      best_d = d;
      best = &t;
    }
  }
  if (best == nullptr) {
    *src = CalSource::kRoofline;
    return -1;
  }
  const auto r = interpolate(best->points, static_cast<double>(m));
  *src = from_lookup(r.how);
  if (best_d == 0) return r.time_ns;
  *src = CalSource::kNearestShape;
  return r.time_ns * (static_cast<double>(n) * static_cast<double>(k)) /
         (static_cast<double>(best->n) * static_cast<double>(best->k));
}

double attention_table_ns(const Calibration& cal, int32_t op_batch, int32_t op_heads,
                          int32_t op_kv_heads, int32_t op_head_dim, int64_t op_kv_tokens,
                          CalSource* src) {
  // Tables of the op's head shape; if none, of the nearest head shape.
  auto shape_dist = [&](const AttentionTable& t) {
    const double kv = std::fabs(std::log(static_cast<double>(t.kv_heads) * t.head_dim /
                                         (static_cast<double>(op_kv_heads) * op_head_dim)));
    const double h = std::fabs(std::log(static_cast<double>(t.heads) / op_heads));
    return std::make_pair(kv, h);
  };
  const AttentionTable* key = nullptr;
  std::pair<double, double> best{std::numeric_limits<double>::infinity(), 0};
  for (const auto& t : cal.attention) {
    const auto d = shape_dist(t);
    if (d < best) {
      best = d;
      key = &t;
    }
  }
  if (key == nullptr) {
    *src = CalSource::kRoofline;
    return -1;
  }
  const bool exact_shape = best.first == 0 && best.second == 0 && key->heads == op_heads &&
                           key->kv_heads == op_kv_heads && key->head_dim == op_head_dim;
  std::vector<const AttentionTable*> rows;  // same shape as *key, sorted by batch
  for (const auto& t : cal.attention) {
    if (t.heads == key->heads && t.kv_heads == key->kv_heads && t.head_dim == key->head_dim) {
      rows.push_back(&t);
    }
  }
  std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->batch < b->batch; });
  const double batch = std::max<double>(1, op_batch);
  const double context = std::max<double>(1, std::ceil(static_cast<double>(op_kv_tokens) / batch));
  auto at = [&](const AttentionTable* t, CalSource* s) {
    const auto r = interpolate(t->points, context);
    *s = from_lookup(r.how);
    return r.time_ns;
  };
  double time = 0;
  CalSource s = CalSource::kExact;
  if (batch <= rows.front()->batch) {
    time = at(rows.front(), &s);
    if (batch < rows.front()->batch) s = worse(s, CalSource::kExtrapolated);
  } else if (batch >= rows.back()->batch) {
    time = at(rows.back(), &s) * batch / rows.back()->batch;
    if (batch > rows.back()->batch) s = worse(s, CalSource::kExtrapolated);
  } else {
    size_t i = 1;
    while (rows[i]->batch < batch) ++i;
    CalSource s0, s1;
    const double t0 = at(rows[i - 1], &s0), t1 = at(rows[i], &s1);
    if (rows[i]->batch == batch) {
      time = t1;
      s = s1;
    } else {
      time = lerp(rows[i - 1]->batch, t0, rows[i]->batch, t1, batch);
      s = worse(worse(s0, s1), CalSource::kInterpolated);
    }
  }
  if (!exact_shape) {
    s = CalSource::kNearestShape;
    time *= (static_cast<double>(op_kv_heads) * op_head_dim) /
            (static_cast<double>(key->kv_heads) * key->head_dim);
  }
  *src = s;
  return time;
}

}  // namespace

const char* to_string(CalSource s) {
  switch (s) {
    case CalSource::kExact:
      return "exact";
    case CalSource::kInterpolated:
      return "interpolated";
    case CalSource::kExtrapolated:
      return "extrapolated";
    case CalSource::kNearestShape:
      return "nearest-shape";
    case CalSource::kRoofline:
      return "roofline";
  }
  return "?";
}

double calibrated_gemm_ns(const Calibration& cal, int64_t m, int64_t n, int64_t k, CalSource* src) {
  CalSource s = CalSource::kExact;
  const double t = gemm_table_ns(cal, m, n, k, &s);
  if (src != nullptr) *src = s;
  return t;
}

double calibrated_grouped_gemm_ns(const Calibration& cal, std::span<const int32_t> group_m,
                                  int64_t n, int64_t k, CalSource* src, models::DType weights) {
  int32_t max_rows = 0;
  for (int32_t gm : group_m) max_rows = std::max(max_rows, gm);
  // The grouped launch: only the exact weight shape (its per-group cost is not a weight-bytes
  // scaling of another shape's as reliably as one GEMM's is: rows per warp pass differ by k).
  const GroupedGemmTable* t = nullptr;
  for (const auto& g : cal.grouped_gemm) {
    if (g.n == n && g.k == k && g.weights == weights) t = &g;
  }
  CalSource s = CalSource::kExact;
  double time = 0;
  if (weights != models::DType::kBF16 && (t == nullptr || max_rows > t->max_rows)) {
    // No cuBLAS path for other formats: without the launch's own table, the roofline.
    if (src != nullptr) *src = CalSource::kRoofline;
    return max_rows > 0 ? -1 : 0;
  }
  if (t != nullptr && max_rows > 0 && max_rows <= t->max_rows) {
    time = t->base_ns;
    for (int32_t gm : group_m) {
      if (gm <= 0) continue;
      const auto r = interpolate(t->points, static_cast<double>(gm));
      time += r.time_ns;
      s = worse(s, from_lookup(r.how));
    }
  } else {
    // One cuBLAS GEMM per non-empty group (the executor's loop).
    for (int32_t gm : group_m) {
      if (gm <= 0) continue;
      CalSource one = CalSource::kExact;
      const double x = gemm_table_ns(cal, gm, n, k, &one);
      if (x < 0) {
        time = -1;
        s = CalSource::kRoofline;
        break;
      }
      time += x;
      s = worse(s, one);
    }
  }
  if (src != nullptr) *src = s;
  return time;
}

double calibrated_attention_ns(const Calibration& cal, int32_t batch, int32_t heads,
                               int32_t kv_heads, int32_t head_dim, int64_t kv_tokens,
                               CalSource* src) {
  CalSource s = CalSource::kExact;
  const double t = attention_table_ns(cal, batch, heads, kv_heads, head_dim, kv_tokens, &s);
  if (src != nullptr) *src = s;
  return t;
}

double calibrated_op_ns(const Calibration& cal, const Op& op, CalSource* src) {
  CalSource s = CalSource::kExact;
  double t = -1;
  // The profiler measures bf16 kernels of MHA/GQA models: an op in another format, or one of
  // MLA's per-head batched projections and latent attention (one kernel each, unlike the
  // per-expert GEMMs a grouped-GEMM table sums), has no table.
  // FP8 weight GEMMs run as the executor's grouped launch, which the profiler measures.
  const bool fp8_gemm = op.dtype == models::DType::kFP8 &&
                        (op.kind == OpKind::kGemm || op.kind == OpKind::kGroupedGemm) &&
                        !is_mla_role(op.role);
  const bool unmeasured = (op.dtype != models::DType::kBF16 && !fp8_gemm) ||
                          op.role == OpRole::kMlaAbsorbK || op.role == OpRole::kMlaAbsorbV ||
                          op.role == OpRole::kMlaAttention;
  if (is_communication(op.kind)) {
    throw std::invalid_argument(
        fmt::format("calibrated_op_ns: op {} ({}) is not a compute op", op.id, to_string(op.kind)));
  }
  if (unmeasured) {
    if (src != nullptr) *src = CalSource::kRoofline;
    return -1;
  }
  switch (op.kind) {
    case OpKind::kGemm:
      if (fp8_gemm) {
        const int32_t rows[1] = {static_cast<int32_t>(std::min<int64_t>(op.m, INT32_MAX))};
        t = calibrated_grouped_gemm_ns(cal, rows, op.n, op.k, &s, op.dtype);
      } else {
        t = gemm_table_ns(cal, op.m, op.n, op.k, &s);
      }
      break;
    case OpKind::kGroupedGemm:
      t = calibrated_grouped_gemm_ns(cal, op.group_m, op.n, op.k, &s, op.dtype);
      break;
    case OpKind::kAttention:
      t = attention_table_ns(cal, op.batch, op.heads, op.kv_heads, op.head_dim, op.kv_tokens, &s);
      break;
    case OpKind::kElementwise:
    case OpKind::kRouter:
    case OpKind::kPermute:
    case OpKind::kCombine: {
      const KernelTable* table = nullptr;
      for (const auto& k : cal.kernels) {
        if (k.name == op.name) table = &k;
      }
      if (table == nullptr) {
        for (const auto& k : cal.kernels) {
          if (k.name == calibration_kind_table(op.kind)) table = &k;
        }
      }
      if (table != nullptr && op.hbm_bytes > 0) {
        const auto r = interpolate(table->points, static_cast<double>(op.hbm_bytes));
        t = r.time_ns;
        s = from_lookup(r.how);
      } else if (table != nullptr) {
        t = 0;  // nothing to move: no launch
      }
      break;
    }
    default:
      throw std::invalid_argument(fmt::format("calibrated_op_ns: op {} ({}) is not a compute op",
                                              op.id, to_string(op.kind)));
  }
  if (t < 0) s = CalSource::kRoofline;
  if (src != nullptr) *src = s;
  return t;
}

}  // namespace masep::plan
