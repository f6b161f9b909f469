#include "masep/topology/gpu_spec.hpp"

#include <sstream>
#include <stdexcept>
#include <string>

namespace masep::topology {

namespace {
std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
void positive(double v, const char* field) {
  if (!(v > 0))
    throw std::invalid_argument(std::string(field) + ": must be positive, got " + num(v));
}
void non_negative(double v, const char* field) {
  if (!(v >= 0)) {
    throw std::invalid_argument(std::string(field) + ": must not be negative, got " + num(v));
  }
}
}  // namespace

void GpuSpec::validate() const {
  if (name.empty()) throw std::invalid_argument("name: must not be empty");
  positive(bf16_tflops, "bf16_tflops");
  positive(fp16_tflops, "fp16_tflops");
  non_negative(fp8_tflops, "fp8_tflops");  // 0 = no fp8 (A100)
  non_negative(int8_tops, "int8_tops");    // 0 = no int8 tensor cores
  non_negative(fp4_tflops, "fp4_tflops");  // 0 = no fp4 (before Blackwell)
  positive(hbm_gb, "hbm_gb");
  positive(hbm_GBps, "hbm_GBps");
  positive(sm_count, "sm_count");
  non_negative(nvlink_GBps, "nvlink_GBps");  // 0 = no NVLink (PCIe cards)
  if (compute_capability != 0 && (compute_capability < 50 || compute_capability > 129)) {
    throw std::invalid_argument("compute_capability: " + std::to_string(compute_capability) +
                                " is not a CUDA compute capability (e.g. 80, 90)");
  }
}

double GpuSpec::tflops(models::DType t) const {
  switch (t) {
    case models::DType::kBF16:
      return bf16_tflops;
    case models::DType::kFP16:
      return fp16_tflops;
    case models::DType::kFP8:
      return fp8_tflops;
    case models::DType::kINT8:
      return int8_tops;
    case models::DType::kFP4:
      return fp4_tflops;
  }
  return 0;
}

}  // namespace masep::topology
