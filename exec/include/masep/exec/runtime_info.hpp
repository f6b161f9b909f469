// Versions of the GPU libraries the executor runs on (for traces and calibration headers).
#pragma once

#include <string>

namespace masep::exec {

/// CUDA runtime, driver, cuBLAS and NCCL versions as "cuda 13.0 / driver 13.0 / cublas
/// 13.0.0 / nccl 2.28.3". Works without a GPU (driver shows "none").
std::string runtime_versions();

}  // namespace masep::exec
