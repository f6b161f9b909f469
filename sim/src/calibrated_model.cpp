// Calibrated compute model: measured tables looked up with plan/interpolation.hpp's rules.
#include "masep/sim/calibrated_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "masep/plan/interpolation.hpp"
#include "masep/plan/time_ns.hpp"

namespace masep::sim {
namespace {

using plan::OpKind;

CalSource from_lookup(plan::Lookup l) {
  switch (l) {
    case plan::Lookup::kExact:
      return CalSource::kExact;
    case plan::Lookup::kInterpolated:
      return CalSource::kInterpolated;
    default:
      return CalSource::kExtrapolated;
  }
}

// The less trustworthy of two sources (the enum is ordered by trust).
CalSource worse(CalSource a, CalSource b) {
  return static_cast<int>(a) > static_cast<int>(b) ? a : b;
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

int64_t CalibrationCoverage::total() const {
  int64_t t = 0;
  for (int64_t v : ops) t += v;
  return t;
}

std::string CalibrationCoverage::summary(const std::string& file, const std::string& device) const {
  std::string s = fmt::format("calibration {} ({}): {} compute ops:", file, device, total());
  for (int i = 0; i < kCalSourceCount; ++i) {
    s += fmt::format("{} {} {}", i ? "," : "", ops[static_cast<size_t>(i)],
                     to_string(static_cast<CalSource>(i)));
  }
  return s;
}

CalibratedModel::CalibratedModel(plan::Calibration cal,
                                 std::shared_ptr<const ComputeModel> fallback)
    : cal_(std::move(cal)), fallback_(std::move(fallback)) {
  plan::validate_calibration(cal_);
  if (!fallback_) throw std::invalid_argument("CalibratedModel: no fallback model");
}

double CalibratedModel::gemm_ns(int64_t m, int64_t n, int64_t k, CalSource* src) const {
  const plan::GemmTable* best = nullptr;
  double best_d = std::numeric_limits<double>::infinity();
  for (const auto& t : cal_.gemm) {
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
  const auto r = plan::interpolate(best->points, static_cast<double>(m));
  *src = from_lookup(r.how);
  if (best_d == 0) return r.time_ns;
  *src = CalSource::kNearestShape;
  return r.time_ns * (static_cast<double>(n) * static_cast<double>(k)) /
         (static_cast<double>(best->n) * static_cast<double>(best->k));
}

double CalibratedModel::grouped_gemm_ns(const plan::Op& op, CalSource* src) const {
  // Only the op's exact weight shape: the launch's per-group cost is not a weight-bytes scaling
  // of another shape's as reliably as one GEMM's is (its rows per warp pass differ by k).
  const plan::GroupedGemmTable* t = nullptr;
  for (const auto& g : cal_.grouped_gemm) {
    if (g.n == op.n && g.k == op.k) t = &g;
  }
  if (t == nullptr) return -1;
  int32_t max_rows = 0;
  for (int32_t gm : op.group_m) max_rows = std::max(max_rows, gm);
  if (max_rows == 0 || max_rows > t->max_rows) return -1;  // the executor's cuBLAS loop
  double time = t->base_ns;
  CalSource s = CalSource::kExact;
  for (int32_t gm : op.group_m) {
    if (gm <= 0) continue;
    const auto r = plan::interpolate(t->points, static_cast<double>(gm));
    time += r.time_ns;
    s = worse(s, from_lookup(r.how));
  }
  *src = s;
  return time;
}

double CalibratedModel::attention_ns(const plan::Op& op, CalSource* src) const {
  // Tables of the op's head shape; if none, of the nearest head shape.
  auto shape_dist = [&](const plan::AttentionTable& t) {
    const double kv = std::fabs(std::log(static_cast<double>(t.kv_heads) * t.head_dim /
                                         (static_cast<double>(op.kv_heads) * op.head_dim)));
    const double h = std::fabs(std::log(static_cast<double>(t.heads) / op.heads));
    return std::make_pair(kv, h);
  };
  const plan::AttentionTable* key = nullptr;
  std::pair<double, double> best{std::numeric_limits<double>::infinity(), 0};
  for (const auto& t : cal_.attention) {
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
  const bool exact_shape = best.first == 0 && best.second == 0 && key->heads == op.heads &&
                           key->kv_heads == op.kv_heads && key->head_dim == op.head_dim;
  std::vector<const plan::AttentionTable*> rows;  // same shape as *key, sorted by batch
  for (const auto& t : cal_.attention) {
    if (t.heads == key->heads && t.kv_heads == key->kv_heads && t.head_dim == key->head_dim) {
      rows.push_back(&t);
    }
  }
  std::sort(rows.begin(), rows.end(), [](auto* a, auto* b) { return a->batch < b->batch; });
  const double batch = std::max<double>(1, op.batch);
  const double context = std::max<double>(1, std::ceil(static_cast<double>(op.kv_tokens) / batch));
  auto at = [&](const plan::AttentionTable* t, CalSource* s) {
    const auto r = plan::interpolate(t->points, context);
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
      time = plan::lerp(rows[i - 1]->batch, t0, rows[i]->batch, t1, batch);
      s = worse(worse(s0, s1), CalSource::kInterpolated);
    }
  }
  if (!exact_shape) {
    s = CalSource::kNearestShape;
    time *= (static_cast<double>(op.kv_heads) * op.head_dim) /
            (static_cast<double>(key->kv_heads) * key->head_dim);
  }
  *src = s;
  return time;
}

double CalibratedModel::time_ns(const plan::Op& op, CalSource* source) const {
  CalSource s = CalSource::kExact;
  double t = -1;
  // The profiler measures bf16 kernels of MHA/GQA models: an op in another format, or one of
  // MLA's per-head batched projections and latent attention (one kernel each, unlike the
  // per-expert GEMMs a grouped-GEMM table sums), has no table and takes the roofline.
  const bool unmeasured = op.dtype != models::DType::kBF16 ||
                          op.role == plan::OpRole::kMlaAbsorbK ||
                          op.role == plan::OpRole::kMlaAbsorbV ||
                          op.role == plan::OpRole::kMlaAttention;
  if (unmeasured && !plan::is_communication(op.kind)) {
    if (source != nullptr) *source = CalSource::kRoofline;
    return static_cast<double>(fallback_->duration_ns(op));
  }
  switch (op.kind) {
    case OpKind::kGemm:
      t = gemm_ns(op.m, op.n, op.k, &s);
      break;
    case OpKind::kGroupedGemm: {
      t = grouped_gemm_ns(op, &s);
      if (t >= 0) break;
      t = 0;
      s = CalSource::kExact;
      for (int32_t gm : op.group_m) {
        if (gm <= 0) continue;
        CalSource g;
        const double x = gemm_ns(gm, op.n, op.k, &g);
        if (x < 0) {
          t = -1;
          s = CalSource::kRoofline;
          break;
        }
        t += x;
        s = worse(s, g);
      }
      break;
    }
    case OpKind::kAttention:
      t = attention_ns(op, &s);
      break;
    case OpKind::kElementwise:
    case OpKind::kRouter:
    case OpKind::kPermute:
    case OpKind::kCombine: {
      const plan::KernelTable* table = nullptr;
      for (const auto& k : cal_.kernels) {
        if (k.name == op.name) table = &k;
      }
      if (table == nullptr) {
        for (const auto& k : cal_.kernels) {
          if (k.name == plan::calibration_kind_table(op.kind)) table = &k;
        }
      }
      if (table != nullptr && op.hbm_bytes > 0) {
        const auto r = plan::interpolate(table->points, static_cast<double>(op.hbm_bytes));
        t = r.time_ns;
        s = from_lookup(r.how);
      } else if (table != nullptr) {
        t = 0;  // nothing to move: no launch
      } else {
        s = CalSource::kRoofline;
      }
      break;
    }
    default:
      throw std::invalid_argument(fmt::format("CalibratedModel: op {} ({}) is not a compute op",
                                              op.id, plan::to_string(op.kind)));
  }
  if (t < 0) {
    s = CalSource::kRoofline;
    t = static_cast<double>(fallback_->duration_ns(op));
  } else if (t > 0) {
    // The tables are back-to-back means (throughput); the executor times every launch with
    // an event pair, which costs this much more per launch (LaunchCosts; 0 in old files).
    t += cal_.launch.event_overhead_ns;
  }
  if (source != nullptr) *source = s;
  return t;
}

int64_t CalibratedModel::duration_ns(const plan::Op& op) const {
  return plan::checked_ns(std::ceil(time_ns(op, nullptr)), "calibrated compute time");
}

CalibrationCoverage CalibratedModel::coverage(const plan::Program& p) const {
  CalibrationCoverage c;
  for (const auto& op : p.ops) {
    if (plan::is_communication(op.kind)) continue;
    CalSource s;
    time_ns(op, &s);
    c.ops[static_cast<size_t>(s)]++;
  }
  return c;
}

std::vector<std::pair<std::string, double>> calibrated_comm_params(const plan::Calibration& cal) {
  static const std::pair<const char*, const char*> names[] = {
      {"all_reduce", "alpha_allreduce_ns"},
      {"all_gather", "alpha_allgather_ns"},
      {"reduce_scatter", "alpha_reducescatter_ns"},
      {"all_to_all", "alpha_alltoall_ns"},
      {"send_recv", "alpha_sendrecv_ns"}};
  std::vector<std::pair<std::string, double>> out;
  for (const auto& [op, param] : names) {
    const plan::CommTable* best = nullptr;
    for (const auto& t : cal.comm) {
      if (t.op == op && (best == nullptr || t.ranks < best->ranks)) best = &t;
    }
    if (best != nullptr) {
      // The table is a back-to-back mean; the executor's event pair adds the launch overhead.
      out.emplace_back(param, best->points.front().time_ns + cal.launch.event_overhead_ns);
    }
  }
  if (cal.launch.measured) out.emplace_back("launch_gap_ns", cal.launch.event_gap_ns);
  // Measured slowdowns s of a weight-bound GEMM beside NCCL moving data (applied while bytes
  // move on the GPU) and beside resident, latency-bound NCCL kernels (applied while a comm op
  // runs there without moving bytes): time x (1 + s) = time / (1 - f), so f = 1 - 1 / (1 + s).
  for (const auto& [param, slowdown] :
       {std::pair{"comm_interference", cal.launch.comm_slowdown},
        std::pair{"comm_resident_interference", cal.launch.comm_resident_slowdown}}) {
    if (slowdown > 0) out.emplace_back(param, 1.0 - 1.0 / (1.0 + slowdown));
  }
  return out;
}

double calibrated_collective_ns(const plan::Calibration& cal, plan::OpKind kind, int ranks,
                                double bytes, bool uniform) {
  const char* op = nullptr;
  switch (kind) {
    case OpKind::kAllReduce:
      op = "all_reduce";
      break;
    case OpKind::kAllGather:
      op = "all_gather";
      break;
    case OpKind::kReduceScatter:
      op = "reduce_scatter";
      break;
    case OpKind::kAllToAll:
      op = uniform ? "all_to_all" : nullptr;
      break;
    default:
      break;
  }
  if (op == nullptr || ranks < 2 || !(bytes > 0)) return -1;
  for (const auto& t : cal.comm) {
    if (t.op == op && t.ranks == ranks) {
      return plan::interpolate(t.points, bytes).time_ns + cal.launch.event_overhead_ns;
    }
  }
  return -1;
}

std::string gpu_model_of(const std::string& name) {
  for (size_t i = 0; i < name.size();) {
    size_t j = i;
    while (j < name.size() && std::isupper(static_cast<unsigned char>(name[j]))) ++j;
    size_t k = j;
    while (k < name.size() && std::isdigit(static_cast<unsigned char>(name[k]))) ++k;
    const bool word_start = i == 0 || !std::isalnum(static_cast<unsigned char>(name[i - 1]));
    const bool word_end = k == name.size() || !std::isalnum(static_cast<unsigned char>(name[k]));
    if (j > i && k - j >= 2 && k - j <= 4 && word_start && word_end) return name.substr(i, k - i);
    i = std::max(k, i + 1);
  }
  return "";
}

std::string check_calibration_gpu(const plan::Calibration& cal, const std::string& path,
                                  const std::string& gpu_name, bool allow_mismatch) {
  const std::string measured = gpu_model_of(cal.device), modelled = gpu_model_of(gpu_name);
  if (measured.empty() || modelled.empty() || measured == modelled) return "";
  const std::string what =
      fmt::format("calibration {} was measured on {} ({}), but the topology's GPU is {} ({})", path,
                  cal.device, measured, gpu_name, modelled);
  if (!allow_mismatch) {
    throw std::invalid_argument(what +
                                "; use a topology of that GPU, or allow the mismatch "
                                "explicitly (--allow-mismatch)");
  }
  return "WARNING: " + what + " (--allow-mismatch)";
}

}  // namespace masep::sim
