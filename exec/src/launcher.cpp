// The single-host launcher: one child process per plan rank, supervised (supervisor.hpp).
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "masep/exec/check.hpp"
#include "masep/exec/executor.hpp"
#include "masep/exec/process_env.hpp"
#include "masep/exec/supervisor.hpp"

namespace masep::exec {

int launch_local(int ranks, const std::vector<std::string>& child_argv,
                 const std::vector<std::pair<std::string, std::string>>& child_env,
                 const std::function<WorldChange(const std::vector<int>&, int)>& on_failure,
                 double report_timeout_s) {
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  const int n = ranks;
  int devices = 0;
  const cudaError_t err = cudaGetDeviceCount(&devices);
  if (err != cudaSuccess) devices = 0;
  if (devices < n) {
    throw std::runtime_error(fmt::format(
        "the plan needs {} GPUs (one process per plan rank) but this host has {}{}", n, devices,
        err != cudaSuccess ? fmt::format(" ({})", cudaGetErrorString(err)) : std::string()));
  }
  SupervisorOptions o;
  o.ranks = n;
  o.exe = "/proc/self/exe";
  o.argv = {"masep"};
  o.argv.insert(o.argv.end(), child_argv.begin(), child_argv.end());
  o.env = child_env;
  o.env.emplace_back("NCCL_NVLS_ENABLE", "0");
  o.new_id = [] {
    ncclUniqueId id{};
    MASEP_NCCL_CHECK(ncclGetUniqueId(&id));
    return hex_encode(&id, sizeof id);
  };
  o.on_failure = on_failure;
  o.report_timeout_s = report_timeout_s;
  return supervise(o).exit_code;
}

}  // namespace masep::exec
