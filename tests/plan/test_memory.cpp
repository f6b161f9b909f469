// Memory feasibility and expert placement. Scenarios are built in code (no YAML) so these
// tests depend only on the formulas in plan/src/memory.cpp and plan/src/placement.cpp.
#include <gtest/gtest.h>

#include <numeric>
#include <set>
#include <stdexcept>
#include <string>

#include "fixtures.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/placement.hpp"

using namespace masep;
using plan::MemoryBreakdown;
using plan::PlanKind;
using plan::Scenario;

namespace {

// The paper's model with grouped-query attention (8 KV heads), so that the KV terms differ
// from the query-head terms in the formulas below.
models::Model paper_model() {
  models::Model m = plan::testing::paper_model();
  m.kv_heads = 8;
  return m;
}

topology::TopologySpec paper_cluster() {
  topology::TopologySpec t;
  t.name = "paper-16xa100";
  t.gpu.name = "A100-SXM4-80GB";
  t.gpu.bf16_tflops = 312;
  t.gpu.fp16_tflops = 312;
  t.gpu.hbm_gb = 80;
  t.gpu.hbm_GBps = 2039;
  t.gpu.sm_count = 108;
  t.gpu.nvlink_GBps = 300;
  t.nodes = 4;
  t.gpus_per_node = 4;
  t.intra_GBps = 300;
  t.intra_latency_ns = 100;
  t.nics = {topology::NicSpec{25, 1000, {0, 1, 2, 3}}};
  t.switch_latency_ns = 200;
  return t;
}

// MA separation: `attention` GPUs as replicas × head_parallel × sequence_parallel, `moe`
// GPUs round robin.
Scenario ma(int replicas, int head_parallel, int sequence_parallel, int moe, int batch,
            int context) {
  Scenario s;
  s.name = "test-ma";
  s.model = paper_model();
  s.topology = paper_cluster();
  s.plan.kind = PlanKind::kMaSeparation;
  s.plan.attention = {replicas * head_parallel * sequence_parallel, head_parallel,
                      sequence_parallel, replicas};
  s.plan.moe.gpus = moe;
  s.workload.batch = batch;
  s.workload.context = context;
  s.workload.decode_steps = 16;
  return s;
}

Scenario colocated(int gpus, int tensor_parallel, int batch, int context) {
  Scenario s = ma(1, 1, 1, 1, batch, context);
  s.name = "test-colocated";
  s.plan.kind = PlanKind::kColocated;
  s.plan.colocated.gpus = gpus;
  s.plan.colocated.tensor_parallel = tensor_parallel;
  return s;
}

// Independent recomputation of the attention weight parts (bytes per layer).
int64_t qkv_out_bytes(const models::Model& m) {
  const int64_t e = models::dtype_bytes(m.dtype);
  return (int64_t{m.hidden} * (m.heads + 2 * m.kv_heads) * m.head_dim +
          int64_t{m.heads} * m.head_dim * m.hidden) *
         e;
}
int64_t replicated_bytes(const models::Model& m) {
  return (2LL * m.hidden + int64_t{m.hidden} * m.experts) * models::dtype_bytes(m.dtype);
}

int64_t sum(const std::vector<MemoryBreakdown>& mem, int64_t MemoryBreakdown::*part) {
  int64_t total = 0;
  for (const auto& m : mem) total += m.*part;
  return total;
}

}  // namespace

// ---- placement -----------------------------------------------------------------------------

TEST(Placement, RoundRobin) {
  Scenario s = ma(3, 4, 1, 4, 64, 2048);
  const auto held = plan::gpu_experts(s);
  ASSERT_EQ(held.size(), 4u);
  EXPECT_EQ(held[0], (std::vector<int>{0, 4, 8, 12}));
  EXPECT_EQ(held[3], (std::vector<int>{3, 7, 11, 15}));
  s.plan.moe.expert_replicas = 2;
  const auto gpus = plan::expert_gpus(s);
  EXPECT_EQ(gpus[3], (std::vector<int>{3, 0}));
  EXPECT_EQ(plan::gpu_experts(s)[0].size(), 8u);
}

TEST(Placement, ContiguousBlocks) {
  Scenario s = ma(3, 4, 1, 4, 64, 2048);
  s.plan.moe.placement = plan::Placement::kContiguous;
  EXPECT_EQ(plan::gpu_experts(s)[1], (std::vector<int>{4, 5, 6, 7}));
  s.model.experts = 10;  // blocks of 3, 2, 3, 2
  const auto held = plan::gpu_experts(s);
  EXPECT_EQ(held[0], (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(held[1], (std::vector<int>{3, 4}));
  EXPECT_EQ(held[2], (std::vector<int>{5, 6, 7}));
  EXPECT_EQ(held[3], (std::vector<int>{8, 9}));
}

TEST(Placement, EveryExpertOnTheRequestedNumberOfDistinctGpus) {
  for (auto policy : {plan::Placement::kRoundRobin, plan::Placement::kContiguous}) {
    for (int replicas = 1; replicas <= 5; ++replicas) {
      Scenario s = ma(1, 1, 1, 5, 8, 128);
      s.plan.moe.placement = policy;
      s.plan.moe.expert_replicas = replicas;
      const auto gpus = plan::expert_gpus(s);
      ASSERT_EQ(gpus.size(), 16u);
      for (const auto& g : gpus) {
        EXPECT_EQ(std::set<int>(g.begin(), g.end()).size(), static_cast<size_t>(replicas));
      }
    }
  }
}

TEST(Placement, ExplicitMapAndErrors) {
  Scenario s = ma(1, 1, 1, 2, 8, 128);
  s.plan.moe.placement = plan::Placement::kExplicit;
  s.plan.moe.expert_map.assign(16, {0});
  s.plan.moe.expert_map[5] = {1, 0};
  EXPECT_EQ(plan::expert_gpus(s)[5], (std::vector<int>{1, 0}));
  EXPECT_EQ(plan::gpu_experts(s)[1], (std::vector<int>{5}));

  s.plan.moe.expert_map[7] = {2};
  try {
    plan::expert_gpus(s);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "plan.moe.expert_map[7]: 2 out of range 0..1");
  }
  s.plan.moe.expert_map.pop_back();
  EXPECT_THROW(plan::expert_gpus(s), std::invalid_argument);

  Scenario r = ma(1, 1, 1, 4, 8, 128);
  r.plan.moe.expert_replicas = 5;
  try {
    plan::expert_gpus(r);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_EQ(std::string(e.what()), "plan.moe.expert_replicas: 5 exceeds 4 MoE GPUs");
  }
}

// ---- memory --------------------------------------------------------------------------------

TEST(Memory, SingleCopyOfEverythingSumsToTheModel) {
  Scenario s = ma(1, 1, 1, 4, 16, 1024);
  s.model.shared_experts = 0;
  const auto mem = plan::plan_memory(s);
  ASSERT_EQ(mem.size(), 5u);
  EXPECT_EQ(sum(mem, &MemoryBreakdown::weights), s.model.total_weight_bytes());
}

TEST(Memory, WeightsSumToModelTimesReplication) {
  Scenario s = ma(3, 4, 1, 4, 96, 2048);
  s.model.kv_heads = 32;  // MHA: the head split is exact
  s.model.shared_experts = 1;
  s.plan.moe.expert_replicas = 2;
  const auto mem = plan::plan_memory(s);
  ASSERT_EQ(mem.size(), 16u);
  const models::Model& m = s.model;
  const int64_t expected = m.layers * (3 * qkv_out_bytes(m) + 12 * replicated_bytes(m) +
                                       int64_t{m.experts} * 2 * m.expert_weight_bytes() +
                                       4 * int64_t{m.shared_experts} * m.expert_weight_bytes());
  EXPECT_EQ(sum(mem, &MemoryBreakdown::weights), expected);
  // Roles and rank order: attention 0..11, then MoE 12..15.
  EXPECT_STREQ(mem[11].role, "attention");
  EXPECT_STREQ(mem[12].role, "moe");
  EXPECT_EQ(mem[15].rank, 15);
  EXPECT_EQ(mem[12].kv_cache, 0);
  // A MoE rank holds 16·2/4 = 8 routed experts and the shared one, every layer.
  EXPECT_EQ(mem[12].weights, m.layers * 9 * m.expert_weight_bytes());
}

TEST(Memory, KvCacheTotalsMatchTheWorkload) {
  Scenario s = ma(3, 2, 2, 4, 96, 2048);  // 12 attention GPUs, C = 2048 + 16
  const auto mem = plan::plan_memory(s);
  const models::Model& m = s.model;
  const int64_t expected = int64_t{96} * (2048 + 16) * m.kv_bytes_per_token_per_layer() * m.layers;
  EXPECT_EQ(sum(mem, &MemoryBreakdown::kv_cache), expected);
  // Each attention rank holds an equal share.
  EXPECT_EQ(mem[0].kv_cache * 12, expected);

  // A context distribution is sized at its maximum.
  s.workload.context_kind = plan::ContextKind::kUniform;
  s.workload.context_min = 512;
  s.workload.context_max = 2048;
  EXPECT_EQ(sum(plan::plan_memory(s), &MemoryBreakdown::kv_cache), expected);
}

TEST(Memory, ColocatedRanksHoldAttentionShardAndExperts) {
  Scenario s = colocated(16, 4, 128, 2048);
  s.model.kv_heads = 32;
  const auto mem = plan::plan_memory(s);
  ASSERT_EQ(mem.size(), 16u);
  const models::Model& m = s.model;
  EXPECT_EQ(sum(mem, &MemoryBreakdown::weights),
            m.layers * (4 * qkv_out_bytes(m) + 16 * replicated_bytes(m) +
                        int64_t{m.experts} * m.expert_weight_bytes()));
  EXPECT_EQ(sum(mem, &MemoryBreakdown::kv_cache),
            int64_t{128} * (2048 + 16) * m.kv_bytes_per_token_per_layer() * m.layers);
  for (const auto& r : mem) {
    EXPECT_STREQ(r.role, "colocated");
    EXPECT_GT(r.activations, 0);
    EXPECT_GT(r.comm_buffers, 0);
  }
}

TEST(Memory, GqaKvHeadsAreReplicatedWhenSplitFinerThanKvHeads) {
  Scenario s = ma(1, 16, 1, 4, 16, 1024);  // 8 KV heads over 16 GPUs: one each
  const auto mem = plan::plan_memory(s);
  const models::Model& m = s.model;
  const int64_t per_rank = int64_t{16} * (1024 + 16) * 2 * 1 * m.head_dim * 2 * m.layers;
  EXPECT_EQ(mem[0].kv_cache, per_rank);
}

TEST(Memory, MoreMicroBatchesNeverShrinkBuffersBelowOneMicroBatch) {
  Scenario s = ma(3, 4, 1, 4, 96, 2048);
  const auto one = plan::plan_memory(s);
  s.plan.micro_batches = 2;
  const auto two = plan::plan_memory(s);
  // MoE compute activations are for one micro-batch at a time: halve with 2 micro-batches.
  EXPECT_LT(two[12].activations, one[12].activations);
  EXPECT_EQ(two[12].weights, one[12].weights);
}

TEST(Memory, FeasiblePlanPasses) {
  Scenario s = ma(3, 4, 1, 4, 128, 2048);
  EXPECT_NO_THROW(plan::check_memory(s, plan::plan_memory(s)));
}

TEST(Memory, InfeasiblePlanShowsTheBreakdown) {
  Scenario s = ma(3, 4, 1, 4, 4096, 32768);  // KV cache far beyond 80 GB
  const auto mem = plan::plan_memory(s);
  try {
    plan::check_memory(s, mem);
    FAIL() << "no exception";
  } catch (const plan::InfeasiblePlan& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("12 of 16 ranks"), std::string::npos) << what;
    EXPECT_NE(what.find("rank"), std::string::npos) << what;
    EXPECT_NE(what.find("0-11"), std::string::npos) << what;  // attention ranks folded
    EXPECT_NE(what.find("attention"), std::string::npos) << what;
    EXPECT_NE(what.find("OVER by"), std::string::npos) << what;
    EXPECT_NE(what.find("74.5"), std::string::npos) << what;  // 80 GB in GiB
    EXPECT_NE(what.find("KV cache dominates"), std::string::npos) << what;
  }
}

TEST(Memory, InfeasibleMoeRankIsNamed) {
  Scenario s = ma(1, 1, 1, 1, 8, 128);
  s.model.layers = 48;  // 48 layers × 16 experts × 352 MB on one MoE GPU
  try {
    plan::check_memory(s, plan::plan_memory(s));
    FAIL() << "no exception";
  } catch (const plan::InfeasiblePlan& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("\n1           moe"), std::string::npos) << what;
    EXPECT_EQ(what.find("\n0           attention  ") == std::string::npos, false) << what;
    EXPECT_NE(what.find("weights dominate"), std::string::npos) << what;
  }
}
