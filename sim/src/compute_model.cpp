#include "masep/sim/compute_model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "masep/plan/time_ns.hpp"

namespace masep::sim {

RooflineModel::RooflineModel(const topology::GpuSpec& gpu, const SimParams& params)
    : launch_ns_(params.launch_overhead_ns),
      gpu_name_(gpu.name),
      hbm_bytes_per_ns_(gpu.hbm_GBps),
      params_(params) {
  for (int t = 0; t < models::kDTypeCount; ++t) {
    peak_flops_per_ns_[static_cast<size_t>(t)] = gpu.tflops(static_cast<models::DType>(t)) * 1e3;
  }
  if (!(peak_flops_per_ns_[0] > 0) || !(hbm_bytes_per_ns_ > 0)) {
    throw std::invalid_argument("RooflineModel: GPU '" + gpu.name +
                                "' needs positive bf16_tflops and hbm_GBps");
  }
}

int64_t RooflineModel::duration_ns(const plan::Op& op) const {
  double eff_flops = params_.eff_flops_elementwise;
  double eff_hbm = params_.eff_hbm_elementwise;
  switch (op.kind) {
    case plan::OpKind::kGemm:
    case plan::OpKind::kGroupedGemm:
      eff_flops = params_.eff_flops_gemm;
      eff_hbm = params_.eff_hbm_gemm;
      break;
    case plan::OpKind::kAttention:
      eff_flops = params_.eff_flops_attention;
      eff_hbm = params_.eff_hbm_attention;
      break;
    default:
      break;
  }
  const double peak = peak_flops_per_ns_[static_cast<size_t>(op.dtype)];
  if (!(peak > 0) && op.flops > 0) {
    throw std::invalid_argument("op " + std::to_string(op.id) + " (" + op.name.str() +
                                ") computes in " + models::to_string(op.dtype) + ", which GPU '" +
                                gpu_name_ + "' does not support (its peak is 0)");
  }
  const double t_flops = op.flops > 0 ? op.flops / (peak * eff_flops) : 0.0;
  const double t_bytes = static_cast<double>(op.hbm_bytes) / (hbm_bytes_per_ns_ * eff_hbm);
  // The 1e-9 keeps exact integers (e.g. 80e6 B / 800 B/ns) from rounding up by float noise.
  return plan::checked_ns(std::ceil(launch_ns_ + std::max(t_flops, t_bytes) - 1e-9),
                          "roofline compute time");
}

}  // namespace masep::sim
