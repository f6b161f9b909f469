// Shared by the end-to-end GPU tests that run the `masep` binary (label gpu): how many GPUs
// the host has, where the binary is (MASEP_BIN from the environment, else the build's
// MASEP_BINARY), and running a shell command with its output captured and echoed.
#pragma once

#include <cuda_runtime_api.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace masep::test {

/// CUDA devices visible to this process; 0 when the driver or runtime is missing.
inline int gpu_count() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

/// Path of the `masep` binary under test.
inline std::string masep_bin() {
  const char* e = std::getenv("MASEP_BIN");
  return e && *e ? e : MASEP_BINARY;
}

/// Runs `cmd` through the shell (stderr merged), stores its output in `out`, echoes both, and
/// returns the exit status (-1 if it did not exit normally).
inline int run(const std::string& cmd, std::string& out) {
  out.clear();
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return -1;
  char buf[4096];
  while (fgets(buf, sizeof buf, f)) out += buf;
  const int st = pclose(f);
  std::printf("$ %s\n%s", cmd.c_str(), out.c_str());
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

}  // namespace masep::test
