// Expert load balancing (issue 17): load statistics, the three placement policies (valid
// placements, memory slots respected, max/mean predicted MoE time), drifting routing and the
// compiler's re-placement with kExpertMove exchanges.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "masep/plan/balancer.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/expert_load.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/program_json.hpp"
#include "masep/plan/routing.hpp"
#include "masep/plan/time_predictor.hpp"

namespace {

using namespace masep::plan;

Scenario paper(std::vector<std::string> sets) {
  sets.push_back("workload.decode_steps=4");
  return load_scenario("paper", sets);
}

Scenario zipf(double skew, const std::string& policy, int redundant) {
  std::vector<std::string> sets = {"workload.routing.kind=zipf",
                                   "workload.routing.skew=" + std::to_string(skew),
                                   "plan.balance.policy=" + policy};
  if (policy != "static") sets.push_back("plan.balance.redundant_experts=" + std::to_string(redundant));
  return paper(sets);
}

TEST(ExpertLoad, SampledEqualsCompiledProgram) {
  const Scenario s = zipf(1.2, "static", 0);
  const Program p = compile(s);
  const ExpertLoad a = expert_load(p, 1, 2), b = sampled_expert_load(s, 1, 2);
  ASSERT_EQ(a.tokens.size(), b.tokens.size());
  EXPECT_EQ(a.tokens, b.tokens);
  double sum = 0;
  for (double x : a.tokens) sum += x;
  EXPECT_EQ(sum, 2.0 * s.model.layers * s.workload.batch * s.model.top_k);
  EXPECT_GT(a.imbalance(), 1.5) << "Zipf 1.2 over 16 experts is skewed";
}

TEST(ExpertLoad, DriftChangesTheHotExperts) {
  Scenario s = zipf(1.5, "static", 0);
  s.workload.routing.drift_every = 2;
  s.workload.decode_steps = 6;
  const RoutingSampler r(s.workload, s.model.experts, s.model.top_k);
  const auto hot = [](const std::vector<double>& p) {
    return std::max_element(p.begin(), p.end()) - p.begin();
  };
  EXPECT_EQ(r.probabilities_at(0), r.probabilities_at(1));
  EXPECT_EQ(r.probabilities_at(0), r.probabilities());
  EXPECT_NE(hot(r.probabilities_at(1)), hot(r.probabilities_at(2)));
  // Phase 0 is the undrifted distribution: drift keeps step 0's routing.
  Scenario still = s;
  still.workload.routing.drift_every = 0;
  EXPECT_EQ(routing_probabilities(s.workload, 16, 0), routing_probabilities(still.workload, 16));
}

TEST(Balancer, PlacementsAreValidAndRespectSlots) {
  for (const char* policy : {"eplb", "predicted"}) {
    for (double skew : {0.8, 1.2, 1.5}) {
      for (int redundant : {0, 4, 8}) {
        const Scenario s = zipf(skew, policy, redundant);
        const auto load = expected_expert_load(s, 0).per_launch();
        const BalanceProblem b = balance_problem(s, load);
        EXPECT_EQ(b.slots_per_gpu, (16 + redundant) / 4);
        const ExpertPlacement pl = balance_experts(s, load);
        EXPECT_NO_THROW(check_placement(pl, b)) << policy << " " << skew << " " << redundant;
        for (const auto& h : pl.holders) EXPECT_GE(h.size(), 1u);
        // Memory is checked against the slots: the plan compiles.
        EXPECT_NO_THROW(check_memory(s, plan_memory(s)));
      }
    }
  }
}

TEST(Balancer, CheckPlacementCatchesBadPlacements) {
  const Scenario s = zipf(1.2, "predicted", 4);
  const BalanceProblem b = balance_problem(s, expected_expert_load(s, 0).per_launch());
  ExpertPlacement pl = balance_experts(s, b.load);
  ExpertPlacement none = pl;
  none.holders[3].clear();
  EXPECT_THROW(check_placement(none, b), std::logic_error);
  ExpertPlacement crowded = pl;
  for (auto& h : crowded.holders) h = {0};
  EXPECT_THROW(check_placement(crowded, b), std::logic_error);
}

TEST(Balancer, PredictedEvensPredictedMoeTimeWhereSlotsAllow) {
  const TimePredictor tp(paper({}).topology);
  for (double skew : {0.8, 1.0, 1.2, 1.5}) {
    const Scenario st = zipf(skew, "static", 0), pr = zipf(skew, "predicted", 4);
    const auto load = expected_expert_load(st, 0).per_launch();
    const double before = max_over_mean(
        predicted_gpu_ns(static_placement(st), balance_problem(st, load), tp, st.model));
    const BalanceProblem b = balance_problem(pr, load);
    const double after = max_over_mean(predicted_gpu_ns(balance_experts(pr, load), b, tp, pr.model));
    EXPECT_LE(after, 1.1) << "skew " << skew;
    EXPECT_LT(after, before) << "skew " << skew;
  }
}

TEST(Balancer, EplbEvensTokensAndHierarchicalKeepsGroupsOnNodes) {
  const Scenario s = zipf(1.2, "eplb", 4);
  const auto load = expected_expert_load(s, 0).per_launch();
  const BalanceProblem b = balance_problem(s, load);
  EXPECT_LE(max_over_mean(gpu_tokens(eplb_placement(b), b)), 1.1);
  // Hierarchical: 4 groups of 4 experts on 2 nodes of 2 GPUs: each group's copies on one node.
  BalanceProblem h = b;
  h.nodes = 2;
  h.expert_groups = 4;
  const ExpertPlacement pl = eplb_placement(h);
  check_placement(pl, h);
  for (int g = 0; g < 4; ++g) {
    std::vector<int> nodes;
    for (int e = 4 * g; e < 4 * g + 4; ++e) {
      for (int gpu : pl.holders[e]) nodes.push_back(gpu / 2);
    }
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    EXPECT_EQ(nodes.size(), 1u) << "group " << g;
  }
}

TEST(Balancer, MemoryBoundDecodeDoesNotReplicateForNothing) {
  // Uniform routing: every GPU already reads the same weights; a copy only adds reads.
  const Scenario s = paper({"plan.balance.policy=predicted", "plan.balance.redundant_experts=4"});
  const ExpertPlacement pl = balance_experts(s, expected_expert_load(s, 0).per_launch());
  size_t copies = 0;
  for (const auto& h : pl.holders) copies += h.size();
  EXPECT_EQ(copies, 16u);
}

TEST(Balancer, StaticPolicyCompilesTheSameProgram) {
  const Scenario a = paper({});
  const Scenario b = paper({"plan.balance.policy=static"});
  std::ostringstream x, y;
  write_program_json(compile(a), x);
  write_program_json(compile(b), y);
  EXPECT_EQ(x.str(), y.str());
}

TEST(Balancer, PredictedProgramRoutesByTheTableAndRoundTrips) {
  // 1,024 tokens per launch: the hot experts' rows cost more than a weight read, so the
  // predicted policy replicates them and routes their tokens by the table.
  Scenario s = zipf(1.5, "predicted", 4);
  s.workload.batch = 2048;
  s.workload.context = s.workload.context_min = s.workload.context_max = 512;
  s.workload.decode_steps = 1;
  const Program p = compile(s);
  check_program(p);
  ASSERT_FALSE(p.layout.expert_route.empty());
  std::stringstream js;
  write_program_json(p, js);
  const Program q = read_program_json(js, "test");
  EXPECT_EQ(q.layout.expert_route, p.layout.expert_route);
  // Every MoE GPU's expert_up has one group per expert it holds.
  for (const Op& op : p.ops) {
    if (op.role != OpRole::kExpertUp) continue;
    EXPECT_EQ(op.group_m.size(), p.ranks[static_cast<size_t>(op.rank)].experts.size());
  }
}

TEST(Balancer, RebalancingEmitsExpertMovesAndWindowsAgree) {
  // eplb re-places at every epoch (DeepSeek's periodic EPLB), so drift moves experts.
  std::vector<std::string> sets = {"workload.routing.kind=zipf", "workload.routing.skew=1.5",
                                   "workload.routing.drift_every=2", "plan.balance.policy=eplb",
                                   "plan.balance.redundant_experts=4",
                                   "plan.balance.rebalance_every=2"};
  Scenario s = paper(sets);
  s.workload.decode_steps = 6;
  const Program p = compile(s);
  check_program(p);
  int64_t moved = 0;
  std::vector<int> steps;
  for (const Op& op : p.ops) {
    if (op.role != OpRole::kExpertMove) continue;
    EXPECT_EQ(op.kind, OpKind::kExchange);
    EXPECT_GE(op.rank, p.layout.moe_base);
    moved += op.comm_bytes;
    steps.push_back(op.step);
  }
  EXPECT_GT(moved, 0) << "drift every 2 steps moves experts at steps 2 and 4";
  for (int st : steps) EXPECT_TRUE(st == 2 || st == 4) << st;
  EXPECT_EQ(moved % s.model.expert_weight_bytes(), 0);
  // The role survives the Program file (program_json names roles).
  std::stringstream js;
  write_program_json(p, js);
  const Program back = read_program_json(js, "moves");
  int64_t moved_back = 0;
  for (const Op& op : back.ops) moved_back += op.role == OpRole::kExpertMove ? op.comm_bytes : 0;
  EXPECT_EQ(moved_back, moved);
  // A window starting at step 4 sees the same placement and routing as the full compile.
  CompileOptions w;
  w.first_step = 4;
  w.steps = 2;
  const Program q = compile(s, w);
  const ExpertLoad full = expert_load(p, 4, 2), win = expert_load(q, 4, 2);
  EXPECT_EQ(full.tokens, win.tokens);
  int64_t up_full = 0, up_win = 0;
  for (const Op& op : p.ops) up_full += op.role == OpRole::kExpertUp && op.step >= 4 ? op.hbm_bytes : 0;
  for (const Op& op : q.ops) up_win += op.role == OpRole::kExpertUp ? op.hbm_bytes : 0;
  EXPECT_EQ(up_full, up_win);
}

int64_t moved_bytes(const Program& p) {
  int64_t moved = 0;
  for (const Op& op : p.ops) moved += op.role == OpRole::kExpertMove ? op.comm_bytes : 0;
  return moved;
}

TEST(Balancer, PredictedReplacesOnlyWhenMovesPay) {
  // Re-placing every 2 steps cannot repay moving 352 MB experts; every 32 steps it can.
  auto drift = [](int k) {
    Scenario s = paper({"workload.routing.kind=zipf", "workload.routing.skew=1.5",
                        "workload.routing.drift_every=" + std::to_string(k),
                        "plan.balance.policy=predicted", "plan.balance.redundant_experts=4",
                        "plan.balance.rebalance_every=" + std::to_string(k)});
    s.workload.decode_steps = 2 * k + 1;
    return s;
  };
  const Scenario often = drift(2), rarely = drift(32);
  EXPECT_EQ(moved_bytes(compile(often)), 0);
  EXPECT_EQ(placement_at_step(often, 4), placement_at_step(often, 0));
  const Program p = compile(rarely);
  check_program(p);
  EXPECT_GT(moved_bytes(p), 0);
  EXPECT_NE(placement_at_step(rarely, 64), placement_at_step(rarely, 0));
}

TEST(Balancer, BadKeysAreClearErrors) {
  EXPECT_THROW(paper({"plan.balance.policy=eplb", "plan.balance.redundant_experts=3"}), InputError);
  EXPECT_THROW(paper({"plan.balance.redundant_experts=4"}), InputError);
  EXPECT_THROW(paper({"plan.balance.policy=nope"}), InputError);
  EXPECT_THROW(paper({"workload.routing.drift_every=4"}), InputError);
  try {
    paper({"plan.balance.policy=predicted", "plan.moe.expert_replicas=2"});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("plan.moe.expert_replicas"), std::string::npos);
  }
}

TEST(TimePredictor, ExpertCostIsWeightBoundInDecode) {
  const Scenario s = paper({});
  const TimePredictor tp(s.topology);
  const double one = tp.expert_ns(s.model, 1), twenty = tp.expert_ns(s.model, 20);
  EXPECT_GT(one, 0);
  EXPECT_LT(twenty / one, 1.05) << "20 tokens cost about what 1 does: weight bytes";
  EXPECT_EQ(tp.expert_ns(s.model, 0), 0);
  const double bytes = static_cast<double>(s.model.expert_weight_bytes());
  EXPECT_NEAR(one, bytes / (s.topology.gpu.hbm_GBps * 0.8), 0.02 * one);
}

TEST(TimePredictor, MoeGpuTimeEqualsTheCompiledOps) {
  const Scenario s = zipf(1.2, "static", 0);
  const Program p = compile(s);
  const TimePredictor tp(s.topology);
  // Σ over one MoE rank's MoE ops of (step 0, layer 0, mb 0) == moe_gpu_ns of its group_m.
  const int rank = p.layout.moe_base;
  double ops = 0;
  std::vector<int32_t> gm;
  int64_t rows = 0;
  for (const Op& op : p.ops) {
    if (op.rank != rank || op.step != 0 || op.layer != 0 || op.micro_batch != 0) continue;
    if (op.role < OpRole::kMoePermute || op.role > OpRole::kMoeUnpermute) continue;
    ops += tp.compute_ns(op);
    if (op.role == OpRole::kExpertUp) gm = op.group_m;
    if (op.role == OpRole::kMoePermute) rows = op.k;
  }
  ASSERT_FALSE(gm.empty());
  EXPECT_NEAR(tp.moe_gpu_ns(s.model, gm, rows), ops, 5.0);  // ns rounding of 5 ops
}

}  // namespace
