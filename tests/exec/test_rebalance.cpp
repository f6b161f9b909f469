// The executor's load-balancing path on the CPU (issue 17): router counts → balancer → new
// placement → weight moves → recompiled Program → re-lowered launch plans.
#include <gtest/gtest.h>

#include <unistd.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "masep/exec/launch_plan.hpp"
#include "masep/exec/rebalance.hpp"
#include "masep/plan/balancer.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/expert_load.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/routing_trace.hpp"

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
  plan::ExpertPlacement next =
      plan::placement_from_router_counts(s, current, counts_of(before, 2), 2);
  plan::CompileOptions after = co;
  after.first_step = 2;
  after.steps = 2;
  after.placement = &next;
  const exec::Replacement r = exec::relower_for_placement(current, next, plan::compile(s, after));
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
  EXPECT_THROW(plan::placement_from_router_counts(st, current, ok, 1), std::invalid_argument);
  const plan::Scenario s = skewed("eplb");
  EXPECT_THROW(plan::placement_from_router_counts(
                   s, current, std::vector<std::vector<int64_t>>(3, std::vector<int64_t>(16)), 1),
               std::invalid_argument);
  EXPECT_THROW(plan::placement_from_router_counts(
                   s, current, std::vector<std::vector<int64_t>>(4, std::vector<int64_t>(15)), 1),
               std::invalid_argument);
  auto negative = ok;
  negative[1][3] = -1;
  EXPECT_THROW(plan::placement_from_router_counts(s, current, negative, 1), std::invalid_argument);
  // A Program that places another number of experts than the placement is an error.
  plan::ExpertPlacement fewer = current;
  fewer.holders.pop_back();
  EXPECT_THROW(exec::relower_for_placement(current, fewer, plan::compile(s)),
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

// The CPU writer of routing traces from real-gating counts: every attention rank's slot
// counts (here: the counts the forced routing puts in the router launches, which real gating
// would produce for the same routing) → expert counts → a trace that, replayed, gives every
// (step, layer) the same tokens per expert as the run.
TEST(Rebalance, RoutingTraceFromSlotCountsReplaysTheRun) {
  const plan::Scenario s = skewed("static");
  plan::CompileOptions co;
  co.record_token_routing = true;
  const plan::Program p = plan::compile(s, co);
  std::vector<exec::RankPlan> plans;
  for (int r = 0; r < p.rank_count(); ++r) plans.push_back(exec::build_rank_plan(p, r));
  const exec::GatingLayout& lay = plans[0].gating;
  ASSERT_TRUE(plans[0].real_data_flow);
  using Key = std::tuple<int, int, int>;  // step, layer, micro-batch
  std::map<Key, std::vector<std::vector<int32_t>>> slots;
  for (int a = 0; a < lay.attention_ranks; ++a) {
    for (const auto& l : plans[static_cast<size_t>(a)].launches) {
      if (l.kind != exec::LaunchKind::kRouter) continue;
      const auto& o = p.ops[static_cast<size_t>(l.ops.front())];
      auto& c = slots[{o.step, o.layer, o.micro_batch}];
      c.resize(static_cast<size_t>(lay.attention_ranks));
      const int64_t at = l.route_offset + 2 * l.tokens * l.top_k;
      const auto& pool = plans[static_cast<size_t>(a)].int_pool;
      c[static_cast<size_t>(a)].assign(pool.begin() + at, pool.begin() + at + l.slots);
    }
  }
  ASSERT_EQ(slots.size(), static_cast<size_t>(4 * p.layers * p.micro_batches));
  exec::RoutingTraceRecorder rec(s.model.experts, s.model.top_k, s.workload.batch, p.layers);
  for (const auto& [k, c] : slots) {
    rec.add(std::get<0>(k), std::get<1>(k), exec::expert_counts_from_slots(p, lay, c));
  }
  // The recorder's counts are the Program's routing, (step, layer) by (step, layer).
  std::map<std::pair<int, int>, std::vector<int64_t>> want;
  for (const auto& rs : p.routing) {
    auto& w = want[{rs.step, rs.layer}];
    w.resize(rs.tokens_per_expert.size(), 0);
    for (size_t e = 0; e < w.size(); ++e) w[e] += rs.tokens_per_expert[e];
  }
  for (const auto& [k, w] : want) {
    EXPECT_EQ(rec.counts()[static_cast<size_t>(k.first * p.layers + k.second)], w);
  }
  // Written, read back as a scenario's routing, compiled: the same counts.
  const auto dir = std::filesystem::temp_directory_path() /
                   ("masep_rebalance_trace_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "real.txt").string();
  {
    std::ofstream f(file);
    rec.write(f);
  }
  const plan::Scenario replay = plan::load_scenario(
      "paper", {"workload.decode_steps=4", "workload.routing={kind: trace, file: " + file + "}"});
  std::map<std::pair<int, int>, std::vector<int64_t>> got;
  for (const auto& rs : plan::compile(replay).routing) {
    auto& g = got[{rs.step, rs.layer}];
    g.resize(rs.tokens_per_expert.size(), 0);
    for (size_t e = 0; e < g.size(); ++e) g[e] += rs.tokens_per_expert[e];
  }
  EXPECT_EQ(got, want);
  std::filesystem::remove_all(dir);
  // Wrong shapes are refused; a (step, layer) missing a micro-batch is refused at write.
  EXPECT_THROW(exec::expert_counts_from_slots(p, lay, {{1, 2}}), std::invalid_argument);
  EXPECT_THROW(rec.add(0, p.layers, std::vector<int64_t>(16, 0)), std::invalid_argument);
  exec::RoutingTraceRecorder half(s.model.experts, s.model.top_k, s.workload.batch, p.layers);
  const auto& first = slots.begin()->second;
  half.add(0, 0, exec::expert_counts_from_slots(p, lay, first));
  std::ostringstream o;
  EXPECT_THROW(half.write(o), std::invalid_argument);
}

}  // namespace
