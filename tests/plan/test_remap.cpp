// Fault tolerance in plan/ (issue 18): the re-mapping library (which standby, replica or
// expert copy takes over after failures, what is lost), the scenario's faults: and
// fault_tolerance: sections and their errors, the KV mirror exchange and the recovery Program.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>
#include <string>

#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/program_json.hpp"
#include "masep/plan/recovery.hpp"
#include "masep/plan/remap.hpp"
#include "masep/plan/routing.hpp"
#include "fixtures.hpp"

namespace masep::plan {
namespace {

// The paper's plan (16 GPUs: 3 attention replicas of 4, 4 MoE GPUs) on 16 GPUs, or with
// `attention_gpus` 8 (2 replicas) so that 4 GPUs of the topology are free for standbys.
const std::string& kText = testing::kPaperScenarioText;  // numbered in fixtures.hpp

Scenario load(const std::vector<std::string>& sets = {}) {
  return parse_scenario(kText, "t.yaml", sets);
}

Scenario small(const std::vector<std::string>& more = {}) {  // 2 replicas + 4 MoE = 12 GPUs
  std::vector<std::string> sets = {"plan.attention.gpus=8", "plan.attention.replicas=2"};
  sets.insert(sets.end(), more.begin(), more.end());
  return load(sets);
}

bool contains(const std::vector<int>& v, int x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

TEST(Remap, PlanGpusByRole) {
  const PlanGpus pg = plan_gpus(small({"fault_tolerance.standby_gpus=3"}));
  ASSERT_EQ(pg.replicas.size(), 2u);
  EXPECT_EQ(pg.replicas[1], (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(pg.moe, (std::vector<int>{8, 9, 10, 11}));
  EXPECT_EQ(pg.standby, (std::vector<int>{12, 13, 14}));
  EXPECT_EQ(pg.replica_sequences, (std::vector<int64_t>{12, 12}));
  EXPECT_TRUE(pg.uses(11));
  EXPECT_FALSE(pg.uses(12));
}

TEST(Remap, LostReplicaServedFromKvMirrors) {
  const Scenario s = load({"fault_tolerance.kv_copies=2"});
  const Remap rm = remap(s, {2}, 5);
  EXPECT_TRUE(rm.covered());
  EXPECT_EQ(rm.lost_replicas, (std::vector<int>{0}));
  EXPECT_EQ(rm.sequences_migrated, 8);
  EXPECT_EQ(rm.sequences_dropped, 0);
  EXPECT_EQ(rm.reprefill_tokens, 0);
  EXPECT_EQ(rm.idle, (std::vector<int>{0, 1, 3}));
  // Replica 0 holds sequences 0-3 (micro-batch 0) and 12-15 (micro-batch 1); its j-th goes to
  // the (j mod 2)-th other replica.
  ASSERT_EQ(rm.moves.size(), 8u);
  EXPECT_EQ(rm.moves[0].sequence, 0);
  EXPECT_EQ(rm.moves[0].to_replica, 1);
  EXPECT_EQ(rm.moves[1].to_replica, 2);
  EXPECT_EQ(rm.moves[4].sequence, 12);
  for (const SequenceMove& mv : rm.moves) {
    EXPECT_EQ(mv.from_replica, 0);
    EXPECT_EQ(mv.how, SequenceMove::kMirror);
  }
  const Scenario& d = rm.degraded;
  EXPECT_EQ(d.plan.attention.replicas, 2);
  EXPECT_EQ(d.plan.attention.gpus, 8);
  EXPECT_EQ(d.workload.batch, 24);
  EXPECT_EQ(d.plan.gpu_ranks, (std::vector<int>{4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
  EXPECT_EQ(d.fault_tolerance.kv_copies, 2);  // two replicas left: still mirrored
  EXPECT_NO_THROW(check_program(compile(d, {.first_step = 5, .steps = 1})));
}

TEST(Remap, KvPoliciesWithoutMirror) {
  const Remap fail = remap(load(), {5}, 0);
  ASSERT_FALSE(fail.covered());
  EXPECT_NE(fail.losses[0].find("on_kv_loss is fail"), std::string::npos) << fail.losses[0];

  const Remap re = remap(load({"fault_tolerance.on_kv_loss=re_prefill"}), {5}, 3);
  EXPECT_TRUE(re.covered());
  EXPECT_EQ(re.sequences_reprefilled, 8);
  EXPECT_EQ(re.reprefill_tokens, 8 * (2048 + 3));
  ASSERT_EQ(re.reprefills.size(), 2u);  // spread over the two surviving replicas
  EXPECT_EQ(re.reprefills[0].sequences + re.reprefills[1].sequences, 8);

  const Remap drop = remap(load({"fault_tolerance.on_kv_loss=drop"}), {5}, 0);
  EXPECT_TRUE(drop.covered());
  EXPECT_EQ(drop.sequences_dropped, 8);
  ASSERT_EQ(drop.moves.size(), 8u);
  EXPECT_EQ(drop.moves[0].how, SequenceMove::kDropped);
  EXPECT_EQ(drop.moves[0].to_replica, -1);
  EXPECT_EQ(drop.moves[0].from_replica, 1);  // GPU 5 is in replica 1
  EXPECT_EQ(drop.degraded.workload.batch, 16);
}

TEST(Remap, StandbyTakesOverAttentionGpuWithKvFromMirror) {
  const Scenario s = small({"fault_tolerance.kv_copies=2", "fault_tolerance.standby_gpus=1"});
  const Remap rm = remap(s, {2}, 0);
  EXPECT_TRUE(rm.covered());
  ASSERT_EQ(rm.replacements.size(), 1u);
  EXPECT_EQ(rm.replacements[0], (std::pair<int, int>{2, 12}));
  EXPECT_TRUE(rm.lost_replicas.empty());
  ASSERT_EQ(rm.kv_copies.size(), 1u);
  EXPECT_EQ(rm.kv_copies[0].src_gpu, 6);  // same group index in replica 1
  EXPECT_EQ(rm.kv_copies[0].dst_gpu, 12);
  // 12 sequences x 2048 tokens x 4 layers x K and V x 8 KV heads of 128 x 2 bytes.
  EXPECT_EQ(rm.kv_copies[0].bytes, 12LL * 2048 * 4 * 2 * 8 * 128 * 2);
  EXPECT_EQ(rm.degraded.plan.gpu_ranks[2], 12);
  EXPECT_TRUE(rm.degraded.fault_tolerance.standby_list.empty());
  EXPECT_EQ(rm.degraded.fault_tolerance.standby_gpus, 0);
  const Program rp = compile_recovery(rm, 0);
  EXPECT_NO_THROW(check_program(rp));
  int rebuilds = 0, kv = 0;
  for (const Op& o : rp.ops) {
    rebuilds += o.role == OpRole::kCommRebuild;
    kv += o.role == OpRole::kKvRebuild;
  }
  EXPECT_EQ(rebuilds, rp.rank_count());
  EXPECT_EQ(kv, 2);  // one exchange op on the mirror, one on the standby
}

TEST(Remap, StandbyMoeGpuReloadedFromHostWithoutCopies) {
  const Remap rm = remap(small({"fault_tolerance.standby_gpus=2"}), {9}, 0);
  EXPECT_TRUE(rm.covered());
  EXPECT_EQ(rm.replacements, (std::vector<std::pair<int, int>>{{9, 12}}));
  ASSERT_EQ(rm.weight_loads.size(), 4u);  // experts 1, 5, 9, 13
  for (const WeightLoad& w : rm.weight_loads) {
    EXPECT_EQ(w.src_gpu, -1);
    EXPECT_EQ(w.dst_gpu, 12);
    EXPECT_EQ(w.expert % 4, 1);
  }
  EXPECT_EQ(rm.degraded.fault_tolerance.standby_list, (std::vector<int>{13}));
}

TEST(Remap, ExpertFailoverToCopiesAndPeerRestore) {
  const Scenario s = load({"plan.moe.expert_replicas=2", "fault_tolerance.restore_experts=peer"});
  const Remap rm = remap(s, {13}, 0);  // MoE-local 1: experts 1,5,9,13 and copies of 0,4,8,12
  EXPECT_TRUE(rm.covered());
  EXPECT_EQ(rm.failover_experts, (std::vector<int>{0, 1, 4, 5, 8, 9, 12, 13}));
  EXPECT_EQ(rm.weight_loads.size(), 8u);
  for (const WeightLoad& w : rm.weight_loads) {
    EXPECT_GE(w.src_gpu, 12);
    EXPECT_NE(w.src_gpu, w.dst_gpu);
    EXPECT_NE(w.dst_gpu, 13);
  }
  const Scenario& d = rm.degraded;
  EXPECT_EQ(d.plan.moe.gpus, 3);
  EXPECT_EQ(d.plan.moe.placement, Placement::kExplicit);
  for (const auto& holders : d.plan.moe.expert_map) {
    EXPECT_EQ(holders.size(), 2u);  // restored to two copies
    for (int g : holders) EXPECT_LT(g, 3);
  }
  const Program rp = compile_recovery(rm, 0);
  EXPECT_NO_THROW(check_program(rp));
  // The fault-tolerance roles survive a Program JSON round trip (masep plan --dump).
  std::stringstream a, b;
  write_program_json(rp, a);
  const Program back = read_program_json(a, "recovery");
  write_program_json(back, b);
  EXPECT_EQ(a.str(), b.str());
  EXPECT_NE(a.str().find("\"weight_load\""), std::string::npos);
}

TEST(Remap, ExpertLossPolicies) {
  const Remap fail = remap(load({"fault_tolerance.kv_copies=2"}), {13}, 0);
  ASSERT_FALSE(fail.covered());
  EXPECT_NE(fail.losses[0].find("experts 1,5,9,13"), std::string::npos) << fail.losses[0];

  const Remap reload = remap(load({"fault_tolerance.on_expert_loss=reload"}), {13}, 0);
  EXPECT_TRUE(reload.covered());
  EXPECT_EQ(reload.reloaded_experts, (std::vector<int>{1, 5, 9, 13}));
  std::set<int> dst;
  for (const WeightLoad& w : reload.weight_loads) {
    EXPECT_EQ(w.src_gpu, -1);
    dst.insert(w.dst_gpu);
  }
  EXPECT_EQ(dst.size(), 3u);  // spread over the three survivors

  const Remap rr = remap(load({"fault_tolerance.on_expert_loss=reroute"}), {13}, 0);
  EXPECT_TRUE(rr.covered());
  EXPECT_EQ(rr.rerouted_experts, (std::vector<int>{1, 5, 9, 13}));
  EXPECT_TRUE(rr.weight_loads.empty());
  const auto& w = rr.degraded.workload.routing;
  ASSERT_EQ(w.kind, RoutingKind::kExplicit);
  EXPECT_EQ(w.expert_weights[5], 0.0);
  EXPECT_GT(w.expert_weights[4], 0.0);
  // The degraded plan never routes a token to a re-routed expert.
  const Program p = compile(rr.degraded, {.first_step = 0, .steps = 1});
  for (const RoutingSample& r : p.routing) {
    for (int e : rr.rerouted_experts) EXPECT_EQ(r.tokens_per_expert[e], 0);
  }
}

TEST(Remap, NothingLeftIsALoss) {
  std::vector<int> att;
  for (int g = 0; g < 12; ++g) att.push_back(g);
  const Remap rm = remap(load({"fault_tolerance.on_kv_loss=drop"}), att, 0);
  ASSERT_FALSE(rm.covered());
  EXPECT_NE(rm.losses[0].find("every attention replica"), std::string::npos);
  const Remap moe = remap(load({"fault_tolerance.on_expert_loss=reload"}), {12, 13, 14, 15}, 0);
  ASSERT_FALSE(moe.covered());
  EXPECT_NE(moe.losses[0].find("every MoE GPU"), std::string::npos);
}

TEST(Remap, UnusedGpusAndColocatedPlans) {
  EXPECT_TRUE(remap(small(), {15}, 0).failed.empty());  // not in the plan: ignored
  Scenario co = load();
  co.plan.kind = PlanKind::kColocated;
  EXPECT_THROW(plan_gpus(co), std::invalid_argument);
}

TEST(Remap, NicFaultsCutOffOnlyWhenTheNodeHasNoNicLeft) {
  const Scenario s = load();
  ASSERT_EQ(s.topology.nics.size(), 4u);
  EXPECT_TRUE(gpus_cut_off(s.topology, {{3, 1}}).empty());
  EXPECT_EQ(gpus_cut_off(s.topology, {{3, 0}, {3, 1}, {3, 2}, {3, 3}}),
            (std::vector<int>{12, 13, 14, 15}));
}

// ---- the scenario sections --------------------------------------------------------------

InputError parse_error(const std::string& text, const std::vector<std::string>& sets = {}) {
  try {
    parse_scenario(text, "t.yaml", sets);
  } catch (const InputError& e) {
    return e;
  }
  ADD_FAILURE() << "expected an InputError";
  return InputError("", 0, 0, "", "");
}

TEST(FaultSections, ParseAndAppend) {
  const std::string t = kText +
                        "fault_tolerance: {kv_copies: 2, on_expert_loss: reroute}\n"
                        "faults:\n"
                        "  - {kind: gpu, gpu: 3, step: 1}\n"
                        "  - {kind: straggler, gpu: 13, speed: 0.5, step: 2, steps: 1}\n"
                        "  - {kind: nic, node: 1, nic: 2, at_ms: 4.5}\n";
  const Scenario s =
      parse_scenario(t, "t.yaml", {"faults+={kind: link, node: 2, nic: 0, step: 3}"});
  EXPECT_EQ(s.fault_tolerance.kv_copies, 2);
  EXPECT_EQ(s.fault_tolerance.on_expert_loss, ExpertLossPolicy::kReroute);
  ASSERT_EQ(s.faults.size(), 4u);
  EXPECT_EQ(s.faults[1].kind, FaultKind::kStraggler);
  EXPECT_DOUBLE_EQ(s.faults[1].speed, 0.5);
  EXPECT_EQ(s.faults[1].steps, 1);
  EXPECT_DOUBLE_EQ(s.faults[2].at_ms, 4.5);
  EXPECT_EQ(s.faults[2].step, -1);
  EXPECT_EQ(s.faults[3].kind, FaultKind::kLink);
  EXPECT_EQ(s.faults[3].key, "faults[3]");
  EXPECT_TRUE(has_fault_features(s.fault_tolerance, s.faults));
  EXPECT_FALSE(has_fault_features(load().fault_tolerance, load().faults));
}

TEST(FaultSections, ErrorsNameLineAndKey) {
  const std::string ft = "fault_tolerance: {kv_copies: 2}\n";  // line 15
  InputError e = parse_error(kText + ft + "faults:\n  - {kind: gpu, gpu: 40, step: 1}\n");
  EXPECT_EQ(e.key(), "faults[0].gpu");
  EXPECT_EQ(e.line(), 17);
  EXPECT_NE(e.message().find("not in topology"), std::string::npos) << e.what();

  e = parse_error(kText,  // 12 GPUs used: 14 is free, not a standby
                  {"plan.attention.gpus=8", "plan.attention.replicas=2",
                   "faults+={kind: gpu, gpu: 14, step: 1}"});
  EXPECT_NE(e.message().find("not used by the plan"), std::string::npos) << e.what();

  e = parse_error(kText + ft + "faults:\n  - {kind: gpu, gpu: 3, step: 9}\n");
  EXPECT_EQ(e.key(), "faults[0].step");
  EXPECT_NE(e.message().find("past the run"), std::string::npos);

  e = parse_error(kText + ft + "faults:\n  - {kind: gpu, gpu: 3}\n");
  EXPECT_NE(e.message().find("exactly one of step"), std::string::npos) << e.what();

  e = parse_error(kText + ft + "faults:\n  - {kind: gpu, gpu: 3, at_ms: 2, steps: 2}\n");
  EXPECT_EQ(e.key(), "faults[0].steps");

  e = parse_error(kText + ft + "faults:\n  - {kind: straggler, gpu: 3, step: 1, speed: 1.5}\n");
  EXPECT_EQ(e.key(), "faults[0].speed");

  e = parse_error(kText + ft + "faults:\n  - {kind: nic, node: 9, nic: 0, step: 1}\n");
  EXPECT_EQ(e.key(), "faults[0].node");

  // Redundancy that cannot cover the faults: what is lost is said before the run.
  e = parse_error(kText + "faults:\n  - {kind: gpu, gpu: 13, step: 1}\n");
  EXPECT_EQ(e.key(), "faults");
  EXPECT_EQ(e.line(), 16);  // the list under faults:
  EXPECT_NE(e.message().find("cannot cover"), std::string::npos) << e.what();
  EXPECT_NE(e.message().find("experts 1,5,9,13"), std::string::npos) << e.what();

  e = parse_error(kText + "fault_tolerance: {kv_copies: 3}\n");
  EXPECT_EQ(e.key(), "fault_tolerance.kv_copies");
  e = parse_error(kText + "fault_tolerance: {standby_gpus: 1}\n");
  EXPECT_EQ(e.key(), "fault_tolerance.standby_gpus");
  EXPECT_NE(e.message().find("only 0 GPUs"), std::string::npos) << e.what();
}

// ---- steady-state cost: the KV mirror exchange ------------------------------------------

TEST(KvMirror, OneExchangePerStepFromEveryAppendingAttentionGpu) {
  const Program plain = compile(load());
  for (const Op& o : plain.ops) EXPECT_NE(o.role, OpRole::kKvMirror);
  const Scenario s = load({"fault_tolerance.kv_copies=2"});
  const Program p = compile(s);
  EXPECT_NO_THROW(check_program(p));
  int ops = 0;
  int64_t bytes = 0;
  for (const Op& o : p.ops) {
    if (o.role != OpRole::kKvMirror) continue;
    ++ops;
    bytes += o.comm_bytes;
  }
  EXPECT_EQ(ops, 12 * s.workload.decode_steps);
  // Every sequence's new KV entries (4 layers, 2 x 8 local KV heads of 128, bf16) leave its
  // 4 head-parallel GPUs once per step and arrive once: sent + received.
  EXPECT_EQ(bytes, 2LL * s.workload.decode_steps * 24 * 4 * (4 * 2 * 8 * 128 * 2));
}

}  // namespace
}  // namespace masep::plan
