// The executor's load-balancing path on the CPU (issue 17): router counts → balancer → new
// placement → weight moves → recompiled Program → re-lowered launch plans.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "masep/exec/launch_plan.hpp"
#include "masep/exec/rebalance.hpp"
#include "masep/plan/balancer.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/expert_load.hpp"
#include "masep/plan/loader.hpp"

namespace {

using namespace masep;

plan::Scenario skewed(const std::string& policy) {
  std::vector<std::string> sets = {"workload.decode_steps=4", "workload.routing.kind=zipf",
                                   "workload.routing.skew=1.5", "plan.balance.policy=" + policy};
  if (policy != "static") sets.push_back("plan.balance.redundant_experts=4");
  return plan::load_scenario("paper", sets);
}

// Router counts [layer][expert] of steps [0, steps) as real gating would sum them.
std::vector<std::vector<int64_t>> counts_of(const plan::Program& p, int steps) {
  const plan::ExpertLoad l = plan::expert_load(p, 0, steps);
  std::vector<std::vector<int64_t>> c(static_cast<size_t>(l.layers));
  for (int layer = 0; layer < l.layers; ++layer) {
    for (int e = 0; e < l.experts; ++e) c[layer].push_back(static_cast<int64_t>(l.at(layer, e)));
  }
  return c;
}

TEST(Rebalance, RouterCountsToReloweredLaunchPlans) {
  const plan::Scenario s = skewed("predicted");
  // The run so far used the static round-robin placement (one copy each).
  plan::ExpertPlacement current;
  for (int e = 0; e < 16; ++e) current.holders.push_back({e % 4});
  plan::CompileOptions co;
  co.record_token_routing = true;
  co.placement = &current;
  const plan::Program before = plan::compile(s, co);
  const exec::Replacement r =
      exec::replace_from_router_counts(s, current, counts_of(before, 2), 2, 2, 2, co);
  EXPECT_NE(r.placement, current);
  ASSERT_FALSE(r.moves.empty());
  for (const auto& m : r.moves) {
    const auto& old = current.holders[m.expert];
    const auto& now = r.placement.holders[m.expert];
    EXPECT_NE(std::find(old.begin(), old.end(), m.src), old.end());
    EXPECT_NE(std::find(now.begin(), now.end(), m.dst), now.end());
    EXPECT_EQ(std::find(old.begin(), old.end(), m.dst), old.end());
  }
  EXPECT_EQ(r.program.first_step, 2);
  ASSERT_EQ(static_cast<int>(r.ranks.size()), r.program.rank_count());
  for (size_t e = 0; e < r.placement.holders.size(); ++e) {
    std::vector<int> h(r.program.layout.expert_holders[e].begin(),
                       r.program.layout.expert_holders[e].end());
    EXPECT_EQ(h, r.placement.holders[e]);
  }
  // The lowering's real data flow routes each (attention rank, expert) to the placement's GPU.
  const exec::RankPlan& rp = r.ranks.front();
  ASSERT_TRUE(rp.real_data_flow);
  for (int a = 0; a < s.plan.attention.gpus; ++a) {
    for (int e = 0; e < 16; ++e) {
      const int g = r.placement.gpu_for(a, e);
      const int32_t slot = rp.expert_slot[a][e];
      EXPECT_GE(slot, rp.gating.slot_base[g]) << a << " " << e;
      EXPECT_LT(slot, rp.gating.slot_base[g + 1]) << a << " " << e;
    }
  }
}

TEST(Rebalance, RefusesStaticPolicyAndBadCounts) {
  const plan::Scenario st = skewed("static");
  plan::ExpertPlacement current = plan::static_placement(st);
  const std::vector<std::vector<int64_t>> ok(4, std::vector<int64_t>(16, 1));
  EXPECT_THROW(exec::replace_from_router_counts(st, current, ok, 1, 0, 1), std::invalid_argument);
  const plan::Scenario s = skewed("eplb");
  EXPECT_THROW(exec::replace_from_router_counts(
                   s, current, std::vector<std::vector<int64_t>>(3, std::vector<int64_t>(16)), 1,
                   0, 1),
               std::invalid_argument);
  EXPECT_THROW(exec::replace_from_router_counts(
                   s, current, std::vector<std::vector<int64_t>>(4, std::vector<int64_t>(15)), 1,
                   0, 1),
               std::invalid_argument);
}

TEST(Rebalance, LoweringRefusesExpertMovesByName) {
  plan::Scenario s = skewed("eplb");
  s.workload.routing.drift_every = 2;
  s.plan.balance.rebalance_every = 2;
  const plan::Program p = plan::compile(s);
  bool moves = false;
  for (const auto& op : p.ops) moves = moves || op.role == plan::OpRole::kExpertMove;
  ASSERT_TRUE(moves);
  try {
    exec::build_rank_plan(p, p.layout.moe_base);
    FAIL() << "a Program with expert moves was lowered";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("expert_move"), std::string::npos) << e.what();
  }
}

}  // namespace
