// `masep exec` end to end on real GPUs (label gpu). Prints MASEP_GPU_SKIP and skips when the
// host has too few GPUs. The binary is MASEP_BIN from the environment, else the build's.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"

#include "gpu_cli.hpp"

namespace fs = std::filesystem;
using namespace masep;

namespace {

using masep::test::gpu_count;
using masep::test::masep_bin;
using masep::test::run;

#define REQUIRE_GPUS(k)                                                       \
  do {                                                                        \
    const int have_ = gpu_count();                                            \
    if (have_ < (k)) {                                                        \
      std::printf("MASEP_GPU_SKIP: needs %d GPU(s), found %d\n", (k), have_); \
      GTEST_SKIP() << "needs " << (k) << " GPUs";                             \
    }                                                                         \
  } while (0)

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("masep-exec-test-" + std::to_string(getpid()));
  fs::create_directories(d);
  return d;
}

const char* kTinyColocated1 = R"(name: tiny-1gpu
description: tiny MoE co-located on one GPU (executor test)
model: {name: tiny-moe, layers: 2, hidden: 1024, heads: 8, kv_heads: 8, head_dim: 128,
        experts: 8, top_k: 2, expert_ffn: 2048, shared_experts: 0, activation: swiglu,
        dtype: bf16}
topology: host-4xh100
plan:
  kind: colocated
  colocated: {gpus: 1, tensor_parallel: 1}
  micro_batches: 1
workload: {batch: 16, context: 512, decode_steps: 3, routing: {kind: uniform}, seed: 5}
)";

// The trace's op ids equal the Program's.
void expect_trace_matches(const std::string& scenario, const fs::path& trace) {
  const plan::Scenario s = plan::load_scenario(scenario);
  const plan::Program p = plan::compile(s);
  std::ifstream in(trace);
  ASSERT_TRUE(in) << trace;
  const nlohmann::json j = nlohmann::json::parse(in);
  std::set<int64_t> ids;
  for (const auto& e : j.at("traceEvents")) {
    if (e.value("ph", "") != "X") continue;
    ids.insert(e.at("args").at("op").get<int64_t>());
    EXPECT_GE(e.at("dur").get<double>(), 0.0);
  }
  std::set<int64_t> want;
  for (const auto& o : p.ops) want.insert(o.id);
  EXPECT_EQ(ids, want);
}

}  // namespace

TEST(ExecGpu, OneGpuColocated) {
  REQUIRE_GPUS(1);
  const fs::path d = temp_dir();
  const fs::path yaml = d / "tiny-1gpu.yaml";
  std::ofstream(yaml) << kTinyColocated1;
  std::string out;
  const int rc = run(masep_bin() + " exec " + yaml.string() + " --trace " +
                         (d / "t1.json").string() + " --timeout 60",
                     out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("TPOT"), std::string::npos);
  expect_trace_matches(yaml.string(), d / "t1.json");
}

TEST(ExecGpu, TwoGpuMaSeparation) {
  REQUIRE_GPUS(2);
  const fs::path d = temp_dir();
  std::string out;
  const int rc = run(masep_bin() + " exec scenarios/examples/tiny-2gpu.yaml --trace " +
                         (d / "t2.json").string() + " --timeout 60",
                     out);
  ASSERT_EQ(rc, 0) << out;
  expect_trace_matches("scenarios/examples/tiny-2gpu.yaml", d / "t2.json");
  // --json gives the metrics object.
  const int rc2 = run(masep_bin() + " exec scenarios/examples/tiny-2gpu.yaml --json -q", out);
  ASSERT_EQ(rc2, 0) << out;
  const nlohmann::json m = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_GT(m.at("tpot_mean_ms").get<double>(), 0.0);
}

TEST(ExecGpu, KilledRankStopsTheRun) {
  REQUIRE_GPUS(2);
  std::string out;
  const int rc = run("MASEP_EXEC_FAULT_RANK=1 " + masep_bin() +
                         " exec scenarios/examples/tiny-2gpu.yaml --timeout 30",
                     out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("rank 1"), std::string::npos) << out;
}

TEST(ExecGpu, StalledRankTimesOut) {
  REQUIRE_GPUS(2);
  std::string out;
  const int rc = run("MASEP_EXEC_FAULT_RANK=1 MASEP_EXEC_FAULT_MODE=hang " + masep_bin() +
                         " exec scenarios/examples/tiny-2gpu.yaml --timeout 8",
                     out);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("no progress"), std::string::npos) << out;
}

// --verify: one step of the plan against the same model on one GPU, within the bf16 bound.
TEST(ExecGpu, VerifyOneGpu) {
  REQUIRE_GPUS(1);
  const fs::path d = temp_dir();
  const fs::path yaml = d / "tiny-1gpu.yaml";
  std::ofstream(yaml) << kTinyColocated1;
  std::string out;
  const int rc = run(masep_bin() + " exec " + yaml.string() + " --verify --timeout 60", out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verify            PASS"), std::string::npos);
}

TEST(ExecGpu, VerifyTwoGpuMaSeparation) {
  REQUIRE_GPUS(2);
  std::string out;
  const int rc =
      run(masep_bin() + " exec scenarios/examples/tiny-2gpu.yaml --verify --timeout 60", out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verify            PASS"), std::string::npos);
}

// --routing real: the router kernel's top-k decides the experts; the run completes and its
// trace carries exactly the Program's op ids (sizes are the run's, ids the Program's).
TEST(ExecGpu, TwoGpuRealGating) {
  REQUIRE_GPUS(2);
  const fs::path d = temp_dir();
  std::string out;
  const int rc =
      run(masep_bin() + " exec scenarios/examples/tiny-2gpu.yaml --routing real --trace " +
              (d / "real.json").string() + " --timeout 60",
          out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("TPOT"), std::string::npos);
  expect_trace_matches("scenarios/examples/tiny-2gpu.yaml", d / "real.json");
}

// --routing real --verify: the single-GPU reference uses the same router, so the outputs agree.
TEST(ExecGpu, VerifyTwoGpuRealGating) {
  REQUIRE_GPUS(2);
  std::string out;
  const int rc = run(masep_bin() +
                         " exec scenarios/examples/tiny-2gpu.yaml --routing real --verify "
                         "--timeout 60",
                     out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verify            PASS"), std::string::npos);
}

// MLA (issue 15): DeepSeek-V3's attention widths (2 layers, 16 experts, bf16) on one GPU with
// --verify, then 1:1 MA separation against the one-GPU reference (other split counts, the
// latent cache on the attention GPU only).
TEST(ExecGpu, VerifyMlaOneGpu) {
  REQUIRE_GPUS(1);
  std::string out;
  const int rc = run(masep_bin() +
                         " exec scenarios/examples/deepseek-v3-mini-1gpu.yaml --verify "
                         "--timeout 120",
                     out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verify            PASS"), std::string::npos) << out;
}

TEST(ExecGpu, VerifyMlaTwoGpuMaSeparation) {
  REQUIRE_GPUS(2);
  std::string out;
  const int rc = run(masep_bin() +
                         " exec scenarios/examples/deepseek-v3-mini-1gpu.yaml --verify "
                         "--timeout 120 --set 'plan={kind: ma_separation, attention: {gpus: 1, "
                         "head_parallel: 1, replicas: 1}, moe: {gpus: 1, placement: round_robin}, "
                         "micro_batches: 2}'",
                     out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("verify            PASS"), std::string::npos) << out;
}
