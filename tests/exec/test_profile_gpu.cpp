// `masep profile --quick` on real GPUs (label gpu): the calibration it writes loads, holds
// GEMM, attention and kernel tables for the built-in scenarios' shapes (and NCCL tables with
// two or more GPUs), and `masep sim --calibration` runs with it. Prints MASEP_GPU_SKIP and
// skips without a GPU. The binary is MASEP_BIN from the environment, else the build's.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "masep/plan/calibration.hpp"

#include "gpu_cli.hpp"

namespace fs = std::filesystem;

namespace {

using masep::test::gpu_count;
using masep::test::masep_bin;
using masep::test::run;

TEST(ProfileGpu, QuickProfileWritesALoadableCalibration) {
  const int gpus = gpu_count();
  if (gpus < 1) {
    std::printf("MASEP_GPU_SKIP: needs 1 GPU, found 0\n");
    GTEST_SKIP() << "needs a GPU";
  }
  const fs::path dir =
      fs::temp_directory_path() / ("masep-profile-test-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "quick.yaml").string();
  std::string out;
  ASSERT_EQ(run(masep_bin() + " profile --quick --gpus " + std::to_string(std::min(gpus, 2)) +
                    " --out " + path,
                out),
            0);
  const masep::plan::Calibration cal = masep::plan::load_calibration(path);
  EXPECT_FALSE(cal.device.empty());
  EXPECT_FALSE(cal.nccl.empty());
  EXPECT_FALSE(cal.gemm.empty());
  EXPECT_FALSE(cal.attention.empty());
  bool has_rmsnorm = false;
  for (const auto& k : cal.kernels) has_rmsnorm |= k.name == "rmsnorm";
  EXPECT_TRUE(has_rmsnorm);
  // Larger GEMMs take longer: the time at the largest m is at least the time at m = 1.
  for (const auto& g : cal.gemm) EXPECT_GE(g.points.back().time_ns, 0.5 * g.points.front().time_ns);
  if (gpus >= 2) {
    bool ar = false, sr = false;
    for (const auto& c : cal.comm) {
      ar |= c.op == "all_reduce" && c.ranks == 2;
      sr |= c.op == "send_recv";
    }
    EXPECT_TRUE(ar);
    EXPECT_TRUE(sr);
  }
  // The simulator takes it and says how it covered the ops.
  // (--allow-mismatch: this card is not the paper topology's A100; the coverage is what is checked.)
  ASSERT_EQ(run(masep_bin() + " sim paper -q --allow-mismatch --calibration " + path, out), 0);
  EXPECT_NE(out.find("compute ops:"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
