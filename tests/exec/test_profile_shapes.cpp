// The shapes `masep profile` measures (exec/include/masep/exec/profile_shapes.hpp), on the CPU:
// the model-derived shapes cover every op shape the compiler emits for every scenario under
// scenarios/ (so the formulas match the compiler's across head and expert splits, MLA, dense
// layers, shared experts and FP8), Mixtral's by hand, and the full grid takes every zoo model.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "scenario_files.hpp"
#include "masep/exec/profile_shapes.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"

using namespace masep;

namespace {

using masep::testing::scenario_files;

// The largest head or expert split of a plan (GPUs per attention group or expert group).
int largest_split(const plan::Program& p) {
  int s = std::max(p.layout.group_size, p.layout.expert_tensor_parallel);
  for (const plan::ReplicaShape& x : p.layout.replica_shapes) s = std::max(s, x.head_parallel);
  return s;
}

TEST(ProfileShapes, ModelShapesCoverEveryScenarioOp) {
  int scenarios = 0;
  for (const std::string& f : scenario_files()) {
    SCOPED_TRACE(f);
    std::vector<std::string> sets = {"workload.decode_steps=1", "faults=[]"};
    const plan::Scenario full = plan::load_scenario(f, sets);
    if (full.model.layers > 4) {
      sets.push_back("model.layers=" + std::to_string(std::max(2, full.model.dense_layers + 1)));
    }
    const plan::Program p = plan::compile(plan::load_scenario(f, sets));
    exec::ProfileShapes s;
    exec::add_model_shapes(p.model, largest_split(p), s);
    const exec::ProfileShapes ops = exec::collect_profile_shapes({p}, {}, /*quick=*/true);
    for (const auto& nk : ops.gemm) {
      EXPECT_TRUE(s.gemm.count(nk)) << "GEMM n=" << nk.first << " k=" << nk.second;
    }
    for (const auto& nk : ops.grouped) {
      EXPECT_TRUE(s.grouped.count(nk)) << "grouped n=" << nk.first << " k=" << nk.second;
    }
    for (const auto& nk : ops.grouped_fp8) {
      EXPECT_TRUE(s.grouped_fp8.count(nk)) << "FP8 n=" << nk.first << " k=" << nk.second;
    }
    for (const auto& a : ops.attention) {
      EXPECT_TRUE(s.attention.count(a)) << a.heads << "/" << a.kv_heads << "/" << a.head_dim;
    }
    EXPECT_FALSE(ops.gemm.empty() && ops.grouped_fp8.empty());
    ++scenarios;
  }
  EXPECT_GE(scenarios, 15);
}

// Mixtral-8x7B (hidden 4096, 32 heads, 8 KV heads, head_dim 128, 8 experts, FFN 14336, SwiGLU,
// bf16): head splits 1, 2, 4, 8 and expert splits 1, 2, 4, 7, 8 (the divisors of 14336 up to 8).
TEST(ProfileShapes, MixtralByHand) {
  const models::Model m = plan::load_model("mixtral-8x7b");
  exec::ProfileShapes s;
  exec::add_model_shapes(m, 8, s);
  for (int p : {1, 2, 4, 8}) {
    EXPECT_TRUE(s.gemm.count({(32 / p + 2 * (8 / p)) * 128, 4096})) << "qkv p=" << p;
    EXPECT_TRUE(s.gemm.count({4096, 32 / p * 128})) << "out_proj p=" << p;
    EXPECT_TRUE(s.attention.count({32 / p, 8 / p, 128})) << "attention p=" << p;
  }
  EXPECT_FALSE(s.attention.count({32 / 3, 8 / 3, 128}));
  for (int t : {1, 2, 4, 7, 8}) {
    EXPECT_TRUE(s.grouped.count({2 * 14336 / t, 4096})) << "expert up t=" << t;
    EXPECT_TRUE(s.grouped.count({4096, 14336 / t})) << "expert down t=" << t;
  }
  EXPECT_FALSE(s.grouped.count({2 * 14336 / 3, 4096}));
  EXPECT_TRUE(s.gemm.count({8, 4096}));  // router
  EXPECT_TRUE(s.grouped_fp8.empty());
  EXPECT_EQ(s.attention.size(), 4u);
}

// DeepSeek-V3 (FP8 weights, MLA, 3 dense layers of 18432, 1 shared expert of the routed width
// 2048): FP8 grouped shapes for the experts and the dense FFN, the MLA projections in bf16
// only, no decode-attention head shape.
TEST(ProfileShapes, DeepSeekV3ByHand) {
  const models::Model m = plan::load_model("deepseek-v3");
  exec::ProfileShapes s;
  exec::add_model_shapes(m, 8, s);
  EXPECT_TRUE(s.grouped_fp8.count({2 * 2048, 7168}));
  EXPECT_TRUE(s.grouped_fp8.count({7168, 2048}));
  EXPECT_TRUE(s.grouped_fp8.count({2 * 18432, 7168}));  // dense up
  EXPECT_TRUE(s.grouped_fp8.count({7168, 18432}));      // dense down
  EXPECT_TRUE(s.grouped_fp8.count({7168, 128 * 128}));  // out_proj, heads·v_head_dim
  EXPECT_TRUE(s.gemm.count({1536 + 512 + 64, 7168}));   // mla_down, bf16 only
  EXPECT_FALSE(s.grouped_fp8.count({1536 + 512 + 64, 7168}));
  EXPECT_TRUE(s.grouped.count({512, 128}));  // absorbed W_UK per head
  EXPECT_TRUE(s.attention.empty());
}

TEST(ProfileShapes, FullGridTakesEveryZooModel) {
  std::vector<models::Model> zoo;
  for (const std::string& name : plan::builtin_model_names()) zoo.push_back(plan::load_model(name));
  plan::CompileOptions co;
  co.steps = 1;
  const plan::Program paper = plan::compile(plan::load_scenario("paper"), co);
  const exec::ProfileShapes quick = exec::collect_profile_shapes({paper}, zoo, true);
  const exec::ProfileShapes full = exec::collect_profile_shapes({paper}, zoo, false);
  ASSERT_EQ(quick.models.size(), 1u);
  EXPECT_EQ(quick.models[0].name, paper.model.name);
  // Every zoo model once (the paper's model is in the zoo), the Program's first.
  EXPECT_EQ(full.models.size(), zoo.size());
  EXPECT_EQ(full.models[0].name, paper.model.name);
  EXPECT_GT(full.gemm.size(), quick.gemm.size());
  for (const models::Model& m : zoo) {
    exec::ProfileShapes one;
    exec::add_model_shapes(m, exec::kProfileMaxSplit, one);
    for (const auto& nk : one.gemm) EXPECT_TRUE(full.gemm.count(nk)) << m.name;
    for (const auto& nk : one.grouped_fp8) EXPECT_TRUE(full.grouped_fp8.count(nk)) << m.name;
  }
}

}  // namespace
