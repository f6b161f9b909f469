// One check macro each for CUDA, NCCL and cuBLAS calls. A failing call throws
// masep::exec::GpuError whose message names the call text, file:line, the rank and the op id
// being launched (when known, from the thread's ErrorContext) and the library's error string:
//   "rank 1, op 812 (expert_up): cublasGemmEx(...) failed at rank_runner.cpp:210:
//    CUBLAS_STATUS_EXECUTION_FAILED"
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "masep/kernels/status.hpp"

#include <stdexcept>
#include <string>

namespace masep::exec {

/// A failed CUDA, NCCL or cuBLAS call (or a GPU-side failure such as an NCCL async error).
class GpuError : public std::runtime_error {
 public:
  GpuError(int rank, int op, std::string what);
  int rank() const { return rank_; }
  int op() const { return op_; }  ///< -1 when no op was being launched

 private:
  int rank_;
  int op_;
};

/// What the current thread is doing, for error messages. Set by the rank runner.
struct ErrorContext {
  int rank = -1;
  int op = -1;
  const char* op_name = nullptr;
};
ErrorContext& error_context();  ///< thread-local

[[noreturn]] void throw_gpu_error(const char* library, const char* call, const char* file, int line,
                                  const std::string& reason);
const char* cublas_status_string(cublasStatus_t s);

}  // namespace masep::exec

#define MASEP_CUDA_CHECK(call)                                          \
  do {                                                                  \
    const cudaError_t masep_err_ = (call);                              \
    if (masep_err_ != cudaSuccess) {                                    \
      ::masep::exec::throw_gpu_error("CUDA", #call, __FILE__, __LINE__, \
                                     cudaGetErrorString(masep_err_));   \
    }                                                                   \
  } while (0)

#define MASEP_NCCL_CHECK(call)                                          \
  do {                                                                  \
    const ncclResult_t masep_res_ = (call);                             \
    if (masep_res_ != ncclSuccess && masep_res_ != ncclInProgress) {    \
      ::masep::exec::throw_gpu_error("NCCL", #call, __FILE__, __LINE__, \
                                     ncclGetErrorString(masep_res_));   \
    }                                                                   \
  } while (0)

#define MASEP_CUBLAS_CHECK(call)                                                      \
  do {                                                                                \
    const cublasStatus_t masep_st_ = (call);                                          \
    if (masep_st_ != CUBLAS_STATUS_SUCCESS) {                                         \
      ::masep::exec::throw_gpu_error("cuBLAS", #call, __FILE__, __LINE__,             \
                                     ::masep::exec::cublas_status_string(masep_st_)); \
    }                                                                                 \
  } while (0)

/// Kernel launchers return masep::kernels::Status; anything but kOk throws GpuError.
#define MASEP_KERNEL_CHECK(call)                                              \
  do {                                                                        \
    const ::masep::kernels::Status masep_ks_ = (call);                        \
    if (masep_ks_ != ::masep::kernels::Status::kOk) {                         \
      ::masep::exec::throw_gpu_error("kernel", #call, __FILE__, __LINE__,     \
                                     ::masep::kernels::to_string(masep_ks_)); \
    }                                                                         \
  } while (0)
