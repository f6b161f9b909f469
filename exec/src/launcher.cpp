// The single-host launcher: one child process per plan rank, supervised.
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "masep/exec/check.hpp"
#include "masep/exec/executor.hpp"
#include "masep/exec/process_env.hpp"

namespace masep::exec {

namespace {

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return fmt::format("was killed by signal {} ({})", sig, strsignal(sig));
  }
  return fmt::format("ended with wait status {}", status);
}

}  // namespace

int launch_local(int ranks, const std::vector<std::string>& child_argv,
                 const std::vector<std::pair<std::string, std::string>>& child_env) {
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
  ncclUniqueId id{};
  MASEP_NCCL_CHECK(ncclGetUniqueId(&id));
  const std::string id_hex = hex_encode(&id, sizeof id);

  std::vector<std::string> argv_s = {"masep"};
  argv_s.insert(argv_s.end(), child_argv.begin(), child_argv.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids(static_cast<size_t>(n), -1);
  for (int r = 0; r < n; ++r) {
    const pid_t pid = fork();
    if (pid < 0) {
      const int e = errno;
      for (pid_t q : pids) {
        if (q > 0) kill(q, SIGKILL);
      }
      throw std::runtime_error(fmt::format("fork for rank {} failed: {}", r, std::strerror(e)));
    }
    if (pid == 0) {
      setenv("MASEP_EXEC_RANK", std::to_string(r).c_str(), 1);
      setenv("MASEP_EXEC_WORLD", std::to_string(n).c_str(), 1);
      setenv("MASEP_EXEC_LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("MASEP_NCCL_ID", id_hex.c_str(), 1);
      for (const auto& [key, value] : child_env) setenv(key.c_str(), value.c_str(), 1);
      setenv("NCCL_NVLS_ENABLE", "0", 1);
      execv("/proc/self/exe", argv.data());
      std::fprintf(stderr, "masep exec: rank %d: exec of /proc/self/exe failed: %s\n", r,
                   std::strerror(errno));
      _exit(127);
    }
    pids[static_cast<size_t>(r)] = pid;
  }

  auto rank_of = [&](pid_t pid) {
    for (int r = 0; r < n; ++r) {
      if (pids[static_cast<size_t>(r)] == pid) return r;
    }
    return -1;
  };
  int running = n;
  int failed_rank = -1;
  int failed_status = 0;
  while (running > 0) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    const int r = rank_of(pid);
    if (r < 0) continue;
    pids[static_cast<size_t>(r)] = -1;
    --running;
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      failed_rank = r;
      failed_status = status;
      break;
    }
  }
  if (failed_rank < 0) return 0;

  std::fprintf(stderr, "masep exec: rank %d %s; stopping the other %d rank(s)\n", failed_rank,
               describe_status(failed_status).c_str(), running);
  for (pid_t q : pids) {
    if (q > 0) kill(q, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (running > 0 && std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      const int r = rank_of(pid);
      if (r >= 0) {
        pids[static_cast<size_t>(r)] = -1;
        --running;
      }
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (int r = 0; r < n; ++r) {
    const pid_t q = pids[static_cast<size_t>(r)];
    if (q <= 0) continue;
    std::fprintf(stderr, "masep exec: rank %d did not stop after SIGTERM; sending SIGKILL\n", r);
    kill(q, SIGKILL);
    waitpid(q, nullptr, 0);
  }
  return WIFEXITED(failed_status) && WEXITSTATUS(failed_status) != 0 ? WEXITSTATUS(failed_status)
                                                                     : 5;
}

}  // namespace masep::exec
