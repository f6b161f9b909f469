#include "masep/sim/compute_model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "masep/plan/time_ns.hpp"

namespace masep::sim {

RooflineModel::RooflineModel(const topology::GpuSpec& gpu, const SimParams& params)
    : launch_ns_(params.launch_overhead_ns),
      peak_flops_per_ns_(gpu.bf16_tflops * 1e3),
      hbm_bytes_per_ns_(gpu.hbm_GBps),
      params_(params) {
  if (!(peak_flops_per_ns_ > 0) || !(hbm_bytes_per_ns_ > 0)) {
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
  const double t_flops = op.flops / (peak_flops_per_ns_ * eff_flops);
  const double t_bytes = static_cast<double>(op.hbm_bytes) / (hbm_bytes_per_ns_ * eff_hbm);
  // The 1e-9 keeps exact integers (e.g. 80e6 B / 800 B/ns) from rounding up by float noise.
  return plan::checked_ns(std::ceil(launch_ns_ + std::max(t_flops, t_bytes) - 1e-9),
                          "roofline compute time");
}

}  // namespace masep::sim
