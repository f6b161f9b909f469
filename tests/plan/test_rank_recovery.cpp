// The executor's recovery plan (issue 18): from a Program, the plan ranks that died and the
// step to resume from, the survivors' new Program, the old -> new rank map (shrink or
// re-init), what each survivor rebuilds, and the executor's fault checks before a run.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/rank_recovery.hpp"
#include "fixtures.hpp"

namespace masep::plan {
namespace {

// The paper's plan: 3 attention replicas of 4 GPUs (ranks 0-11), 4 MoE GPUs (ranks 12-15),
// batch 24, 2 micro-batches.
Scenario paper(const std::vector<std::string>& sets = {}) {
  return parse_scenario(testing::kPaperScenarioText, "t.yaml", sets);
}

CompileOptions exec_options() {
  CompileOptions co;
  co.record_token_routing = true;
  return co;
}

Program compiled(const Scenario& s) { return compile(s, exec_options()); }

TEST(RankRecovery, AttentionRankOfThePaperPlanWithKvMirrors) {
  const Scenario s = paper({"fault_tolerance.kv_copies=2", "workload.decode_steps=6"});
  const Program p = compiled(s);
  const RankRecovery rr = recover_ranks(s, p, {2}, 3, exec_options());
  EXPECT_EQ(rr.failed_ranks, (std::vector<int>{2}));
  EXPECT_EQ(rr.idle_ranks, (std::vector<int>{0, 1, 3}));  // the rest of replica 0 leaves
  ASSERT_EQ(rr.program.rank_count(), 12);
  EXPECT_EQ(rr.program.first_step, 3);
  EXPECT_EQ(rr.program.steps, 3);
  EXPECT_NO_THROW(check_program(rr.program));
  EXPECT_TRUE(rr.shrink);  // old ranks 4..15 in order
  for (int q = 0; q < 12; ++q) EXPECT_EQ(rr.old_rank_of_new[static_cast<size_t>(q)], q + 4);
  EXPECT_EQ(rr.new_rank_of_old[2], -1);
  EXPECT_EQ(rr.new_rank_of_old[0], -1);
  EXPECT_EQ(rr.new_rank_of_old[15], 11);
  // The 24 sequences now live on 2 replicas: every surviving attention rank serves sequences
  // it did not serve before (12 instead of 8), MoE ranks rebuild nothing (same experts).
  ASSERT_EQ(rr.rebuild.size(), 12u);
  int64_t adopted = 0;
  for (int q = 0; q < 8; ++q) {
    const RankRebuild& rb = rr.rebuild[static_cast<size_t>(q)];
    EXPECT_EQ(rb.gpu, q + 4);
    EXPECT_FALSE(rb.new_sequences.empty());
    EXPECT_FALSE(rb.attention_weights);  // same head shard (group index)
    adopted += static_cast<int64_t>(rb.new_sequences.size());
  }
  EXPECT_GE(adopted, 4 * 4);  // each of the 2 replicas (4 GPUs) takes at least 4 sequences
  for (int q = 8; q < 12; ++q) EXPECT_TRUE(rr.rebuild[static_cast<size_t>(q)].nothing());
  // The survivors' Program serves the whole batch.
  int64_t seqs = 0;
  for (const RankInfo& r : rr.program.ranks) {
    if (r.role == Role::kAttention && r.group_index == 0) {
      for (const RankBatch& b : r.batches) seqs += b.sequences;
    }
  }
  EXPECT_EQ(seqs, 24);
  const auto text = rr.describe();
  ASSERT_FALSE(text.empty());
  EXPECT_NE(text[0].find("failed plan ranks 2; resume at step 3"), std::string::npos) << text[0];
}

TEST(RankRecovery, MoeRankWithExpertReplicasFailsOverWithoutMovingWeights) {
  const Scenario s = paper({"plan.moe.expert_replicas=2", "workload.decode_steps=4"});
  const Program p = compiled(s);
  const RankRecovery rr = recover_ranks(s, p, {13}, 1, exec_options());
  EXPECT_TRUE(rr.idle_ranks.empty());
  ASSERT_EQ(rr.program.rank_count(), 15);
  EXPECT_TRUE(rr.shrink);
  EXPECT_EQ(rr.new_rank_of_old[12], 12);
  EXPECT_EQ(rr.new_rank_of_old[13], -1);
  EXPECT_EQ(rr.new_rank_of_old[14], 13);
  EXPECT_EQ(rr.remap.failover_experts, (std::vector<int>{0, 1, 4, 5, 8, 9, 12, 13}));
  for (const RankRebuild& rb : rr.rebuild) EXPECT_TRUE(rb.nothing()) << rb.new_rank;
  // Every expert is still held by a surviving MoE rank.
  std::vector<int> held;
  for (const RankInfo& r : rr.program.ranks) held.insert(held.end(), r.experts.begin(), r.experts.end());
  for (int e = 0; e < 16; ++e) EXPECT_NE(std::find(held.begin(), held.end(), e), held.end()) << e;
}

TEST(RankRecovery, ExpertsReloadedFromHostOntoSurvivors) {
  const Scenario s = paper({"fault_tolerance.on_expert_loss=reload", "workload.decode_steps=4"});
  const RankRecovery rr = recover_ranks(s, compiled(s), {13}, 2, exec_options());
  std::vector<int> reloaded;
  for (const RankRebuild& rb : rr.rebuild) {
    ASSERT_EQ(rb.new_experts.size(), rb.expert_sources.size());
    for (size_t i = 0; i < rb.new_experts.size(); ++i) {
      EXPECT_EQ(rb.expert_sources[i], -1);  // host memory
      reloaded.push_back(rb.new_experts[i]);
    }
    EXPECT_EQ(rb.expert_bytes,
              static_cast<int64_t>(rb.new_experts.size()) * s.model.expert_weight_bytes() *
                  s.model.layers);
  }
  std::sort(reloaded.begin(), reloaded.end());
  EXPECT_EQ(reloaded, (std::vector<int>{1, 5, 9, 13}));
}

TEST(RankRecovery, UncoveredFailureSaysWhatIsLost) {
  const Scenario s = paper({"workload.decode_steps=4"});
  const Program p = compiled(s);
  try {
    recover_ranks(s, p, {13}, 0, exec_options());
    FAIL() << "expected FaultNotCovered";
  } catch (const FaultNotCovered& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("plan ranks 13 (GPUs 13)"), std::string::npos) << m;
    EXPECT_NE(m.find("experts 1,5,9,13"), std::string::npos) << m;
  }
  EXPECT_THROW(recover_ranks(s, p, {16}, 0, exec_options()), std::invalid_argument);
  EXPECT_THROW(recover_ranks(s, p, {1}, 4, exec_options()), std::invalid_argument);  // past end
  EXPECT_THROW(recover_ranks(s, p, {}, 0, exec_options()), std::invalid_argument);
}

TEST(RankRecovery, TwoFailuresAtOnceAndAReorderedWorldIsReinitialised) {
  // An attention rank and a MoE rank together: the survivors keep their order (shrink).
  const Scenario s = paper({"fault_tolerance.kv_copies=2", "plan.moe.expert_replicas=2",
                            "workload.decode_steps=3"});
  const RankRecovery rr = recover_ranks(s, compiled(s), {13, 5, 5}, 0, exec_options());
  EXPECT_EQ(rr.failed_ranks, (std::vector<int>{5, 13}));
  EXPECT_EQ(rr.idle_ranks, (std::vector<int>{4, 6, 7}));
  EXPECT_EQ(rr.program.rank_count(), 11);
  EXPECT_TRUE(rr.shrink);
  // A plan whose ranks sit on GPUs out of order: the degraded plan's rank order by GPU need
  // not be the old one; whatever it is, the maps are inverse and shrink is only claimed for
  // an order-preserving world.
  const Scenario t = paper({"fault_tolerance.kv_copies=2", "workload.decode_steps=3",
                            "plan.gpu_ranks=[15,14,13,12,11,10,9,8,7,6,5,4,3,2,1,0]"});
  const Program pt = compiled(t);
  const RankRecovery r2 = recover_ranks(t, pt, {0}, 1, exec_options());
  for (size_t q = 0; q < r2.old_rank_of_new.size(); ++q) {
    const int old = r2.old_rank_of_new[q];
    ASSERT_GE(old, 0);
    EXPECT_EQ(r2.new_rank_of_old[static_cast<size_t>(old)], static_cast<int>(q));
    EXPECT_EQ(r2.program.ranks[q].gpu, pt.ranks[static_cast<size_t>(old)].gpu);
  }
  EXPECT_EQ(r2.shrink,
            std::is_sorted(r2.old_rank_of_new.begin(), r2.old_rank_of_new.end()));
}

TEST(ExecFaults, KillsAndStragglersChainedAndCheckedBeforeTheRun) {
  const Scenario s = paper(
      {"fault_tolerance.kv_copies=2", "plan.moe.expert_replicas=2", "workload.decode_steps=8",
       "faults+={kind: gpu, gpu: 13, step: 5}", "faults+={kind: gpu, gpu: 2, step: 2}",
       "faults+={kind: straggler, gpu: 12, step: 1, steps: 3, speed: 0.5}"});
  const ExecFaultPlan fp = plan_exec_faults(s, compiled(s), exec_options());
  ASSERT_EQ(fp.faults.size(), 3u);
  EXPECT_EQ(fp.faults[0].kind, ExecFault::kStraggler);  // step order
  EXPECT_EQ(fp.faults[0].last_step, 3);
  EXPECT_DOUBLE_EQ(fp.faults[0].speed, 0.5);
  EXPECT_EQ(fp.faults[1].gpu, 2);
  EXPECT_EQ(fp.faults[2].gpu, 13);
  ASSERT_EQ(fp.recoveries.size(), 2u);
  EXPECT_EQ(fp.recoveries[0].program.rank_count(), 12);
  // The second kill re-maps the plan the first left: GPU 13 is its rank 9.
  EXPECT_EQ(fp.recoveries[1].failed_ranks, (std::vector<int>{9}));
  EXPECT_EQ(fp.recoveries[1].program.rank_count(), 11);
  EXPECT_EQ(fp.recoveries[1].program.first_step, 5);
}

TEST(ExecFaults, RefusedBeforeTheRun) {
  auto refuse = [](const std::vector<std::string>& sets, const std::string& says) {
    std::vector<std::string> all = {"fault_tolerance.kv_copies=2", "workload.decode_steps=8",
                                    "fault_tolerance.on_expert_loss=reload"};
    all.insert(all.end(), sets.begin(), sets.end());
    try {  // the loader (faults taken together) or plan_exec_faults (one after the other)
      const Scenario s = paper(all);
      plan_exec_faults(s, compiled(s), exec_options());
      ADD_FAILURE() << "expected a refusal containing '" << says << "'";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  refuse({"faults+={kind: nic, node: 0, nic: 0, step: 2}"}, "faults[0].kind: nic faults are simulated only");
  refuse({"faults+={kind: gpu, gpu: 3, at_ms: 5}"}, "faults[0].at_ms");
  refuse({"faults+={kind: gpu, gpu: 3, step: 2, steps: 2}"}, "faults[0].steps");
  // Two kills of the same replica's GPUs, one after the other: the second GPU already left.
  refuse({"faults+={kind: gpu, gpu: 3, step: 2}", "faults+={kind: gpu, gpu: 1, step: 4}"},
         "already took it out of the plan");
  // Two replicas lost: sequences whose only mirror was on the other lost replica, and
  // on_kv_loss is fail.
  refuse({"faults+={kind: gpu, gpu: 0, step: 2}", "faults+={kind: gpu, gpu: 4, step: 4}"},
         "cannot cover");
  // Standby GPUs need processes the executor does not start.
  refuse({"topology.nodes=5", "fault_tolerance.standby_gpus=1",
          "faults+={kind: gpu, gpu: 3, step: 2}"},
         "standby_gpus");
}

}  // namespace
}  // namespace masep::plan
