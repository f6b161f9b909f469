#include "masep/exec/check.hpp"

#include <fmt/format.h>

#include <cstring>

namespace masep::exec {

GpuError::GpuError(int rank, int op, std::string what)
    : std::runtime_error(std::move(what)), rank_(rank), op_(op) {}

ErrorContext& error_context() {
  thread_local ErrorContext ctx;
  return ctx;
}

void throw_gpu_error(const char* library, const char* call, const char* file, int line,
                     const std::string& reason) {
  const ErrorContext& c = error_context();
  const char* base = std::strrchr(file, '/');
  base = base ? base + 1 : file;
  std::string where = c.rank >= 0 ? fmt::format("rank {}", c.rank) : std::string("rank ?");
  if (c.op >= 0) {
    where += fmt::format(", op {}", c.op);
    if (c.op_name) where += fmt::format(" ({})", c.op_name);
  }
  throw GpuError(
      c.rank, c.op,
      fmt::format("{}: {} call {} failed at {}:{}: {}", where, library, call, base, line, reason));
}

const char* cublas_status_string(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
    default:
      return "CUBLAS_STATUS_UNKNOWN";
  }
}

}  // namespace masep::exec
