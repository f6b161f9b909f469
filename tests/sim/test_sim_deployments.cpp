// Issue 15: DeepSeek-V3 decode on 144 H800 GPUs (scenarios/deployments/), co-located with
// EP 144 and MA-separated (80 attention + 64 MoE GPUs), fits in memory at its full 61 layers
// and simulates (here cut to 6 layers, 3 dense + 3 MoE, one step, to keep the suite fast;
// `masep sim` runs the full files). Also: an MLA model simulates with the latent attention and
// FP8 GEMMs timed at the fp8 peak, and the roofline refuses a format the GPU lacks.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/metrics.hpp"
#include "masep/sim/compute_model.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/topology/topology.hpp"

namespace masep::sim {
namespace {

const char* const kFiles[] = {"scenarios/deployments/deepseek-v3-h800-colocated.yaml",
                              "scenarios/deployments/deepseek-v3-h800-ma.yaml"};

TEST(Deployments, DeepSeekV3On144H800FitsAndSimulates) {
  double tpot[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(kFiles[i]);
    const plan::Scenario full = plan::load_scenario(kFiles[i]);
    EXPECT_EQ(full.plan.total_gpus(), 144);
    EXPECT_EQ(full.model.layers, 61);
    // Memory at full size: every rank fits in the H800's 80 GB.
    const auto mem = plan::plan_memory(full);
    EXPECT_NO_THROW(plan::check_memory(full, mem));
    for (const auto& m : mem) EXPECT_LT(static_cast<double>(m.total()), 80e9) << m.rank;
    const plan::Scenario s =
        plan::load_scenario(kFiles[i], {"model.layers=6", "workload.decode_steps=1"});
    const plan::Program p = plan::compile(s);
    const topology::Topology topo(s.topology);
    SimOptions opt;
    opt.params = {{"network_tier", 2}};  // auto, as `masep sim` runs: fluid for large exchanges
    const SimResult r = simulate(p, topo, opt);
    EXPECT_EQ(r.network_tier, "fluid");
    const plan::RunMetrics m = plan::compute_metrics(s, p, r.timeline);
    EXPECT_GT(m.tpot_mean_ms, 0.0);
    tpot[i] = m.tpot_mean_ms;
  }
  // Both plans give a time per token of the same order (neither stalls).
  EXPECT_LT(tpot[0], 10 * tpot[1]);
  EXPECT_LT(tpot[1], 10 * tpot[0]);
}

// An fp8 GEMM runs at the fp8 peak: on an H800 (989 bf16, 1,979 fp8 TFLOP/s) a compute-bound
// GEMM takes half the time in fp8; an fp4 op on the H800 (no fp4) is an error naming the GPU.
TEST(Deployments, RooflineUsesThePeakOfTheOpsFormat) {
  const auto gpu = plan::builtin_gpu("H800-SXM5-80GB");
  SimParams params;
  params.launch_overhead_ns = 0;
  const RooflineModel model(gpu, params);
  plan::Op op;
  op.kind = plan::OpKind::kGemm;
  op.flops = 1e12;  // compute-bound: 1 TFLOP, almost no bytes
  op.hbm_bytes = 1000;
  op.dtype = models::DType::kBF16;
  const int64_t bf16 = model.duration_ns(op);
  op.dtype = models::DType::kFP8;
  const int64_t fp8 = model.duration_ns(op);
  EXPECT_NEAR(static_cast<double>(bf16) / static_cast<double>(fp8), 1979.0 / 989.0, 1e-3);
  op.dtype = models::DType::kFP4;
  try {
    (void)model.duration_ns(op);
    ADD_FAILURE() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("H800"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace masep::sim

namespace masep::sim {
namespace {

// Attention replicas of unequal size (issue 15; scenarios/examples/mixtral-dgx-h100-uneven-
// replicas.yaml): a 4-GPU head-parallel replica beside two single GPUs simulates, and each
// replica's ops take its own split's time. Decode reads weights: the big replica's qkv GEMM
// reads a quarter of the projection (and a quarter of each sequence's KV heads), so it ends
// sooner than a single GPU's although it decodes 4x the sequences.
TEST(Deployments, UnevenAttentionReplicasSimulate) {
  const plan::Scenario s = plan::load_scenario(
      "scenarios/examples/mixtral-dgx-h100-uneven-replicas.yaml",
      {"model.layers=2", "workload.decode_steps=2"});
  EXPECT_NO_THROW(plan::check_memory(s, plan::plan_memory(s)));
  const plan::Program p = plan::compile(s);
  const topology::Topology topo(s.topology);
  const SimResult r = simulate(p, topo, SimOptions{});
  const plan::RunMetrics m = plan::compute_metrics(s, p, r.timeline);
  EXPECT_GT(m.tpot_mean_ms, 0.0);
  std::map<int, int64_t> qkv_ns;  // rank → its first qkv GEMM's duration
  for (const plan::Op& o : p.ops) {
    if (o.role != plan::OpRole::kQkv || qkv_ns.count(o.rank)) continue;
    const auto& t = r.timeline.ops[static_cast<size_t>(o.id)];
    qkv_ns[o.rank] = t.end_ns - t.start_ns;
  }
  ASSERT_EQ(qkv_ns.size(), 6u);
  EXPECT_EQ(qkv_ns[0], qkv_ns[3]);  // the 4 GPUs of replica 0 alike
  EXPECT_EQ(qkv_ns[4], qkv_ns[5]);  // the single GPUs alike
  EXPECT_LT(qkv_ns[0] * 2, qkv_ns[4]);
}

}  // namespace
}  // namespace masep::sim
