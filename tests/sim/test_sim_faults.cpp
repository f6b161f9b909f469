// Runs with faults (issue 18, sim/fault_run.hpp): detection and recovery time, tokens served,
// lost and re-computed, degraded operation, stragglers, NIC faults, determinism.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "masep/plan/loader.hpp"
#include "masep/sim/fault_run.hpp"

namespace masep::sim {
namespace {

plan::Scenario paper(std::vector<std::string> sets) {
  sets.push_back("workload.decode_steps=8");
  return plan::load_scenario("paper", sets);
}

std::string json(const FaultRunResult& r) {
  std::ostringstream o;
  write_fault_json(o, r);
  return o.str();
}

TEST(FaultRun, MirroredReplicaLossLosesNoToken) {
  const plan::Scenario s =
      paper({"fault_tolerance.kv_copies=2", "faults+={kind: gpu, gpu: 2, step: 3}"});
  const FaultParams fp;
  const FaultRunResult r = simulate_faults(s, {}, fp);
  ASSERT_EQ(r.steps.size(), 8u);
  ASSERT_EQ(r.events.size(), 1u);
  const FaultEvent& e = r.events[0];
  EXPECT_EQ(e.step, 3);
  EXPECT_EQ(e.detect_ns, detection_ns(fp));
  EXPECT_EQ(detection_ns(fp), 300'000'000);  // 3 missed 100 ms heartbeats < 1 s timeout
  EXPECT_GE(e.recovery_ns, static_cast<int64_t>(fp.comm_rebuild_ns));
  EXPECT_EQ(r.tokens_lost, 0);
  EXPECT_EQ(r.tokens_recomputed, 0);
  EXPECT_DOUBLE_EQ(r.availability, 1.0);
  EXPECT_EQ(r.steps[3].phase, "fault");
  EXPECT_GT(r.steps[3].tpot_ms * 1e6, static_cast<double>(e.detect_ns + e.recovery_ns));
  EXPECT_EQ(r.steps[2].gpus, 16);
  EXPECT_EQ(r.steps[4].gpus, 12);  // replica 0 out: GPU 2 gone, its 3 peers idle
  EXPECT_EQ(r.steps[4].phase, "degraded");
  EXPECT_EQ(r.makespan_ns, r.steps.back().end_ns);
  EXPECT_GT(r.makespan_ns, r.baseline_makespan_ns + e.detect_ns);
  EXPECT_LT(r.uptime, 1.0);
  EXPECT_EQ(json(r), json(simulate_faults(s, {}, fp)));  // deterministic
}

TEST(FaultRun, DetectionAndRebuildFollowTheirParameters) {
  const plan::Scenario s =
      paper({"fault_tolerance.kv_copies=2", "faults+={kind: gpu, gpu: 2, step: 3}"});
  const FaultParams fast =
      resolve_fault_params({{"fault_op_timeout_ns", 5e7}, {"fault_comm_rebuild_ns", 1e7}});
  const FaultRunResult r = simulate_faults(s, {}, fast);
  EXPECT_EQ(r.events[0].detect_ns, 50'000'000);
  EXPECT_LT(r.events[0].recovery_ns, 20'000'000);
  EXPECT_THROW(resolve_fault_params({{"no_such", 1}}), std::invalid_argument);
  EXPECT_THROW(resolve_fault_params({{"fault_host_load_GBps", 0}}), std::invalid_argument);
}

TEST(FaultRun, DroppedSequencesAreLostTokens) {
  const plan::Scenario s =
      paper({"fault_tolerance.on_kv_loss=drop", "faults+={kind: gpu, gpu: 5, step: 2}"});
  const FaultRunResult r = simulate_faults(s, {});
  EXPECT_EQ(r.tokens_offered, 24 * 8);
  EXPECT_EQ(r.tokens_lost, 8 * (8 - 2));
  EXPECT_EQ(r.steps[2].tokens, 16);
}

TEST(FaultRun, ReprefillIsRealWork) {
  const plan::Scenario s =
      paper({"fault_tolerance.on_kv_loss=re_prefill", "faults+={kind: gpu, gpu: 5, step: 2}"});
  const FaultRunResult r = simulate_faults(s, {});
  EXPECT_EQ(r.tokens_lost, 0);
  EXPECT_EQ(r.tokens_recomputed, 8 * (2048 + 2));
  EXPECT_GT(r.events[0].recovery_ns, 200'000'000);  // prefill beyond the rebuild
}

TEST(FaultRun, ReloadFromHostTakesBytesOverRate) {
  const plan::Scenario s =
      paper({"fault_tolerance.on_expert_loss=reload", "faults+={kind: gpu, gpu: 13, step: 2}"});
  const FaultRunResult r =
      simulate_faults(s, {}, resolve_fault_params({{"fault_host_load_GBps", 10}}));
  // 4 experts of 1.41 GB over 3 survivors: 2 on one GPU, 2.82 GB at 10 GB/s after the rebuild.
  const double expert = 3.0 * 4096 * 14336 * 2 * 4;
  EXPECT_NEAR(static_cast<double>(r.events[0].recovery_ns), 200e6 + 2 * expert / 10, 1e6);
}

TEST(FaultRun, RerouteCountsDegradedPairs) {
  const plan::Scenario s =
      paper({"fault_tolerance.on_expert_loss=reroute", "faults+={kind: gpu, gpu: 13, step: 4}"});
  const FaultRunResult r = simulate_faults(s, {});
  // 4 of 16 experts, top-2, uniform: 0.5 pairs per token and layer; 24 tokens, 4 layers, 4 steps.
  EXPECT_DOUBLE_EQ(r.degraded_pairs, 0.5 * 24 * 4 * 4);
  EXPECT_EQ(r.tokens_lost, 0);
}

TEST(FaultRun, StragglerSlowsOnlyItsSteps) {
  const plan::Scenario s =
      paper({"faults+={kind: straggler, gpu: 13, speed: 0.25, step: 2, steps: 3}"});
  const FaultRunResult r = simulate_faults(s, {});
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].detect_ns + r.events[0].recovery_ns, 0);
  EXPECT_EQ(r.steps[2].phase, "straggler");
  EXPECT_EQ(r.steps[5].phase, "normal");
  EXPECT_GT(r.steps[3].tpot_ms, 1.5 * r.steps[0].tpot_ms);  // an MoE GPU at quarter speed
  EXPECT_LT(r.steps[6].tpot_ms, 1.2 * r.steps[0].tpot_ms);
}

TEST(FaultRun, NicFaultReroutesThroughASiblingNic) {
  const plan::Scenario s = paper({"faults+={kind: nic, node: 3, nic: 1, step: 2}"});
  const FaultRunResult r = simulate_faults(s, {});
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_GT(r.events[0].detect_ns, 0);
  for (const FaultStep& f : r.steps) EXPECT_EQ(f.gpus, 16);  // no GPU lost
  EXPECT_EQ(r.tokens_lost, 0);
}

TEST(FaultRun, TimedFaultWastesThePartialStep) {
  const plan::Scenario s =
      paper({"fault_tolerance.kv_copies=2", "faults+={kind: gpu, gpu: 2, at_ms: 14.0}"});
  const FaultRunResult r = simulate_faults(s, {});
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_GT(r.events[0].wasted_ns, 0);
  EXPECT_EQ(r.events[0].at_ns, 14'000'000);
  EXPECT_EQ(r.tokens_recomputed, 24);  // the interrupted step
  EXPECT_EQ(r.steps.size(), 8u);
}

TEST(FaultRun, TimedStragglerWastesNothing) {
  const plan::Scenario s = paper({"faults+={kind: straggler, gpu: 13, speed: 0.5, at_ms: 14.0}"});
  const FaultRunResult r = simulate_faults(s, {});
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].wasted_ns, 0);
  EXPECT_EQ(r.tokens_recomputed, 0);
  EXPECT_EQ(r.steps.back().phase, "straggler");
}

TEST(FaultRun, TemporaryFaultRejoins) {
  const plan::Scenario s =
      paper({"fault_tolerance.kv_copies=2", "faults+={kind: gpu, gpu: 2, step: 2, steps: 3}"});
  const FaultRunResult r = simulate_faults(s, {});
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.steps[5].phase, "rejoin");
  EXPECT_EQ(r.steps[5].gpus, 16);
  EXPECT_EQ(r.steps[4].gpus, 12);
}

}  // namespace
}  // namespace masep::sim
