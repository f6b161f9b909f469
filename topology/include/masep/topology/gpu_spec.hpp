// Datasheet description of one GPU model. Plain validated data; the simulator's compute cost
// model reads peak rates from here (scaled by calibrated efficiencies where a calibration
// file exists).
#pragma once

#include <string>

#include "masep/models/model.hpp"

namespace masep::topology {

struct GpuSpec {
  std::string name;        ///< e.g. "A100-SXM4-80GB"
  double bf16_tflops = 0;  ///< dense bf16 peak, TFLOP/s (1e12 FLOP/s)
  double fp16_tflops = 0;  ///< dense fp16 peak, TFLOP/s
  double fp8_tflops = 0;   ///< dense fp8 peak, TFLOP/s (0 where the GPU has no fp8)
  double int8_tops = 0;    ///< dense int8 peak, TOP/s (0 where the GPU has no int8 tensor cores)
  double fp4_tflops = 0;   ///< dense fp4 peak, TFLOP/s (0 where the GPU has no fp4)
  double hbm_gb = 0;       ///< HBM capacity, GB (1e9 bytes)
  double hbm_GBps = 0;     ///< HBM bandwidth, GB/s (1e9 bytes/s)
  int sm_count = 0;        ///< streaming multiprocessors
  double nvlink_GBps = 0;  ///< NVLink bandwidth per direction, GB/s (0 = none)
  /// CUDA compute capability × 10 + minor, e.g. 80 (A100), 90 (H100, H200); 0 = not given.
  /// Picks NCCL's per-architecture tables in the simulator's NCCL model.
  int compute_capability = 0;

  /// Throws std::invalid_argument naming the field when a value is not positive.
  void validate() const;
  /// Dense peak of format t in TFLOP/s (TOP/s for int8); 0 = the GPU has no such format.
  double tflops(models::DType t) const;
  /// Whether the GPU computes in format t (its peak is positive).
  bool supports(models::DType t) const { return tflops(t) > 0; }
  /// HBM capacity in bytes.
  double hbm_bytes() const { return hbm_gb * 1e9; }
};

}  // namespace masep::topology
