// Compute cost model: how long a compute op of a Program runs on one GPU, alone.
//
// The simulator knows compute cost only through ComputeModel::duration_ns(op), so a
// calibrated model (measured tables, issue 6) can replace the roofline default without
// touching the engine.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "masep/plan/program.hpp"
#include "masep/sim/parameters.hpp"
#include "masep/topology/gpu_spec.hpp"

namespace masep::sim {

/// Interface of a compute cost model. Implementations are immutable after construction and
/// may be shared by threads.
class ComputeModel {
 public:
  virtual ~ComputeModel() = default;
  /// Duration of compute op `op` (not a communication op) running alone on its GPU, in
  /// integer nanoseconds (rounded up), >= 0.
  virtual int64_t duration_ns(const plan::Op& op) const = 0;
};

/// Roofline with datasheet efficiencies:
///   duration = launch_overhead_ns
///            + max(flops / (peak(dtype) · eff_flops(kind)), hbm_bytes / (hbm_GBps · eff_hbm(kind)))
/// with peak in FLOP/ns (TFLOP/s · 1e3) and HBM in bytes/ns (GB/s). Efficiencies by kind:
/// kGemm and kGroupedGemm use eff_*_gemm; kAttention eff_*_attention; kElementwise, kRouter,
/// kPermute, kCombine eff_*_elementwise. peak(dtype) is the GPU's dense peak of the format the
/// op computes in (Op::dtype: bf16_tflops, fp16_tflops, fp8_tflops, int8_tops, fp4_tflops); an
/// op in a format the GPU lacks throws std::invalid_argument naming the op and the GPU (the
/// scenario loader rejects such models first). Holds copies of the spec and parameters.
class RooflineModel final : public ComputeModel {
 public:
  RooflineModel(const topology::GpuSpec& gpu, const SimParams& params);
  int64_t duration_ns(const plan::Op& op) const override;

 private:
  double launch_ns_;
  std::array<double, models::kDTypeCount> peak_flops_per_ns_{};  ///< by models::DType
  std::string gpu_name_;
  double hbm_bytes_per_ns_;
  SimParams params_;
};

}  // namespace masep::sim
