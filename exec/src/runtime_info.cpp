#include "masep/exec/runtime_info.hpp"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

namespace masep::exec {

std::string runtime_versions() {
  int rt = 0, drv = 0, nccl = 0;
  cudaRuntimeGetVersion(&rt);
  const bool have_driver = cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0;
  ncclGetVersion(&nccl);
  int cublas = 0;
  cublasGetProperty(MAJOR_VERSION, &cublas);
  int cublas_minor = 0;
  cublasGetProperty(MINOR_VERSION, &cublas_minor);
  return fmt::format("cuda {}.{} / driver {} / cublas {}.{} / nccl {}.{}.{}", rt / 1000,
                     (rt % 1000) / 10,
                     have_driver ? fmt::format("{}.{}", drv / 1000, (drv % 1000) / 10) : "none",
                     cublas, cublas_minor, nccl / 10000, (nccl % 10000) / 100, nccl % 100);
}

}  // namespace masep::exec
