// Calibrated compute model: the tables looked up with plan/calibration_lookup.hpp's rules, the
// roofline where none covers an op, plus the executor's event overhead per launch.
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

using plan::OpKind;

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

double CalibratedModel::time_ns(const plan::Op& op, CalSource* source) const {
  CalSource s = CalSource::kExact;
  double t = plan::calibrated_op_ns(cal_, op, &s);
  if (t < 0) {
    t = static_cast<double>(fallback_->duration_ns(op));  // s is kRoofline
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
                                double bytes, bool uniform, const CommModelFn& model) {
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
  // A table's time at `bytes`: with a model, the model's time scaled by measured / model at
  // the neighbouring points (interpolated linearly in log(bytes); the end point's ratio
  // outside the table), so the model's protocol switches shape the curve between points.
  auto table_ns = [&](const plan::CommTable& t) {
    if (!model) return plan::interpolate(t.points, bytes).time_ns;
    auto r_at = [&](const plan::CalPoint& p) {
      const double m = model(kind, t.ranks, static_cast<double>(p.size));
      return m > 0 ? p.time_ns / m : 0.0;
    };
    const auto& pts = t.points;
    auto hi = std::lower_bound(pts.begin(), pts.end(), bytes, [](const plan::CalPoint& p, double v) {
      return static_cast<double>(p.size) < v;
    });
    if (hi != pts.end() && static_cast<double>(hi->size) == bytes) return hi->time_ns;
    double r = 0;
    if (hi == pts.begin()) {
      r = r_at(pts.front());
    } else if (hi == pts.end()) {
      r = r_at(pts.back());
    } else {
      const plan::CalPoint& lo = *(hi - 1);
      const double f = (std::log(bytes) - std::log(static_cast<double>(lo.size))) /
                       (std::log(static_cast<double>(hi->size)) - std::log(static_cast<double>(lo.size)));
      r = r_at(lo) + (r_at(*hi) - r_at(lo)) * f;
    }
    const double m = model(kind, t.ranks, bytes);
    return r > 0 && m > 0 ? m * r : plan::interpolate(t.points, bytes).time_ns;
  };
  const plan::CommTable* below = nullptr;
  const plan::CommTable* above = nullptr;
  for (const auto& t : cal.comm) {
    if (t.op != op || t.points.empty()) continue;
    if (t.ranks == ranks) return table_ns(t) + cal.launch.event_overhead_ns;
    if (t.ranks < ranks && (below == nullptr || t.ranks > below->ranks)) below = &t;
    if (t.ranks > ranks && (above == nullptr || t.ranks < above->ranks)) above = &t;
  }
  if (!model || (below == nullptr && above == nullptr)) return -1;
  // Measured / model at a measured group size; 0 when the model has no time there.
  auto ratio = [&](const plan::CommTable& t) {
    const double m = model(kind, t.ranks, bytes);
    return m > 0 ? table_ns(t) / m : 0.0;
  };
  double r = 0;
  if (below != nullptr && above != nullptr) {
    const double f = (std::log2(ranks) - std::log2(below->ranks)) /
                     (std::log2(above->ranks) - std::log2(below->ranks));
    r = ratio(*below) + (ratio(*above) - ratio(*below)) * f;
  } else {
    r = ratio(below != nullptr ? *below : *above);
  }
  const double here = model(kind, ranks, bytes);
  if (!(r > 0) || !(here > 0)) return -1;
  return here * r + cal.launch.event_overhead_ns;
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
