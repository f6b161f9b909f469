// The plan search library (tools/search.hpp): enumeration counts, that the bound pruning
// never drops a plan better than the winner (against simulating every valid candidate),
// determinism across thread counts, memory pruning, and that the winner's YAML reproduces
// its TPOT.
#include "search.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/metrics.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/topology/topology.hpp"

using namespace masep;
using namespace masep::tools;

namespace {

// The paper's model on the 4-GPU host, 2 decode steps: small enough to simulate every plan.
SearchOptions tiny_options() {
  SearchOptions o;
  o.base = "paper";
  o.overrides = {"topology=host-4xh100", "workload.decode_steps=2"};
  o.jobs = 2;
  return o;
}

const std::string kMixtralGptFast =
    std::string(MASEP_SOURCE_DIR) + "/scenarios/examples/mixtral-gpt-fast-tp.yaml";

SearchSpace tiny_space() {
  SearchSpace s;
  s.gpus = 4;
  s.max_micro_batches = 2;
  return s;
}

}  // namespace

TEST(SearchEnumerate, CountsMatchTheClosedForm) {
  SearchSpace s;
  s.gpus = 4;
  s.max_expert_tensor_parallel = 1;  // whole experts only (expert TP: the test below)
  // co-located: tp in {1,2,4} x 2 placements x expert_replicas 1..4 x micro_batches 1..4 = 96.
  // MA: splits 1:3, 2:2, 3:1 with 1, 3, 3 (replicas, head, sequence) factorisations of the
  // attention GPUs, x 2 placements x expert_replicas 1..moe x 4 = 24 + 48 + 24 = 96.
  const auto all = enumerate_candidates(s);
  EXPECT_EQ(all.size(), 192u);
  EXPECT_EQ(std::count_if(all.begin(), all.end(),
                          [](const Candidate& c) { return c.kind == plan::PlanKind::kColocated; }),
            96);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].index, static_cast<int>(i));
  s.max_expert_replicas = 1;
  s.max_micro_batches = 1;
  // co-located 3 x 2; MA (1 + 3 + 3) x 2.
  EXPECT_EQ(enumerate_candidates(s).size(), 6u + 14u);
  s.batches = {8, 16, 32};  // every plan once per batch, batch outermost
  const auto batched = enumerate_candidates(s);
  ASSERT_EQ(batched.size(), 3u * 20u);
  EXPECT_EQ(batched[0].batch, 8);
  EXPECT_EQ(batched[20].batch, 16);
  EXPECT_EQ(batched[20].plan_yaml, batched[0].plan_yaml);
  EXPECT_EQ(batched[19].label(), "ma 3:1 r3 hp1 sp1 er1 ct mb1 b8");
  EXPECT_EQ(batched[59].label(), "ma 3:1 r3 hp1 sp1 er1 ct mb1 b32");
  s.batches.clear();
  s.gpus = 1;
  EXPECT_EQ(enumerate_candidates(s).size(), 2u);  // co tp1, two placements; no MA on 1 GPU
  s.gpus = 0;
  EXPECT_THROW(enumerate_candidates(s), std::invalid_argument);
}

TEST(SearchEnumerate, ExpertTensorParallelDegrees) {
  SearchSpace s;
  s.gpus = 4;
  // co-located, per tp in {1,2,4}: expert TP 1 (4 groups: er 1..4), 2 (2 groups: er 1..2), 4
  // (1 group: er 1), x 2 placements x 4 micro-batches = (4 + 2 + 1) x 8 = 56.
  // MA: 1:3 expert TP 1, 3 (3 + 1 groups' replicas), 2:2 x 3 factorisations x expert TP 1, 2
  // (2 + 1), 3:1 x 3 x expert TP 1 (1); x 8 = 32 + 72 + 24.
  const auto all = enumerate_candidates(s);
  EXPECT_EQ(all.size(), 3u * 56u + 128u);
  // The candidates without expert TP are the space before it, in the same order, with the
  // same labels and plan YAML (so their results and the tie order are unchanged).
  SearchSpace whole = s;
  whole.max_expert_tensor_parallel = 1;
  std::vector<std::string> a, b;
  for (const auto& c : all) {
    if (c.expert_tensor_parallel == 1) a.push_back(c.label() + "|" + c.plan_yaml);
  }
  for (const auto& c : enumerate_candidates(whole)) b.push_back(c.label() + "|" + c.plan_yaml);
  EXPECT_EQ(a, b);
  // The model's widths: 14336 = 2^11 x 7 has no divisor 3, so MA 1:3 loses expert TP 3.
  s.expert_ffn = 14336;
  EXPECT_EQ(enumerate_candidates(s).size(), 3u * 56u + 120u);
  s.expert_ffn = 0;
  s.max_expert_tensor_parallel = 2;  // degrees 1 and 2 only
  EXPECT_EQ(enumerate_candidates(s).size(), 3u * 48u + (24u + 72u + 24u));
  // gpt-fast's Mixtral plan: attention TP and expert TP over all GPUs; it loads as written.
  s.gpus = 2;
  s.max_expert_tensor_parallel = 0;
  const auto two = enumerate_candidates(s);
  auto it = std::find_if(two.begin(), two.end(),
                         [](const Candidate& c) { return c.label() == "co tp2 etp2 er1 rr mb1"; });
  ASSERT_NE(it, two.end());
  const auto sc = plan::load_scenario(kMixtralGptFast, {"plan=" + it->plan_yaml});
  EXPECT_EQ(sc.plan.expert_tensor_parallel(), 2);
  EXPECT_EQ(sc.plan.colocated.tensor_parallel, 2);
  auto ma = std::find_if(two.begin(), two.end(), [](const Candidate& c) {
    return c.kind == plan::PlanKind::kMaSeparation && c.expert_tensor_parallel > 1;
  });
  EXPECT_EQ(ma, two.end());  // 1:1 has one MoE GPU: no expert TP
  s.max_expert_tensor_parallel = -1;
  EXPECT_THROW(enumerate_candidates(s), std::invalid_argument);
}

// Expert TP plans for Mixtral-8x7B on A100s: every simulated plan's floor is below its TPOT,
// pruning keeps the exhaustive winner (the paper tests above prune expert TP plans too), and at
// batch 1 (gpt-fast's benchmark) the winner splits every expert (a token's two experts are then
// read by all GPUs, not by two).
TEST(SearchRun, ExpertTensorParallelPlansOfMixtral) {
  SearchSpace space;
  space.gpus = 4;
  space.max_micro_batches = 1;
  space.ma_separation = false;
  SearchOptions o;
  o.base = kMixtralGptFast;
  o.overrides = {"workload.decode_steps=2", "model.layers=2"};
  o.jobs = 2;
  o.top_k = 1000000;
  const SearchResult all = run_search(space, o);
  ASSERT_GT(all.simulated, 10);
  EXPECT_EQ(all.floor_violations, 0);
  int etp_simulated = 0;
  for (size_t i = 0; i < all.results.size(); ++i) {
    const auto& r = all.results[i];
    if (r.status != CandidateStatus::kSimulated) continue;
    EXPECT_LE(r.floor_ms, r.metrics.tpot_mean_ms) << all.candidates[i].label();
    etp_simulated += all.candidates[i].expert_tensor_parallel > 1;
  }
  EXPECT_GT(etp_simulated, 5);
  ASSERT_FALSE(all.ranking.empty());
  EXPECT_GT(all.candidates[static_cast<size_t>(all.ranking.front())].expert_tensor_parallel, 1)
      << all.candidates[static_cast<size_t>(all.ranking.front())].label();
  o.top_k = 1;  // (the floors count intra-node communication as free, so little is pruned here)
  const SearchResult pruned = run_search(space, o);
  ASSERT_FALSE(pruned.ranking.empty());
  EXPECT_EQ(pruned.ranking.front(), all.ranking.front());
}

TEST(SearchEnumerate, LabelsAndPlanYamlLoad) {
  SearchSpace s;
  s.gpus = 16;
  const auto all = enumerate_candidates(s);
  auto it = std::find_if(all.begin(), all.end(), [](const Candidate& c) {
    return c.label() == "ma 12:4 r3 hp4 sp1 er1 rr mb2";
  });
  ASSERT_NE(it, all.end());
  // The paper's own plan, through the override path: the same scenario as the built-in.
  const auto a = plan::load_scenario("paper", {"plan=" + it->plan_yaml});
  const auto b = plan::load_scenario("paper");
  EXPECT_EQ(a.plan.attention.gpus, b.plan.attention.gpus);
  EXPECT_EQ(a.plan.attention.replicas, b.plan.attention.replicas);
  EXPECT_EQ(a.plan.attention.head_parallel, b.plan.attention.head_parallel);
  EXPECT_EQ(a.plan.moe.gpus, b.plan.moe.gpus);
  EXPECT_EQ(a.plan.micro_batches, b.plan.micro_batches);
}

TEST(SearchRun, PruningNeverDropsABetterPlanThanBruteForce) {
  const SearchSpace space = tiny_space();
  SearchOptions brute = tiny_options();
  brute.top_k = 1000000;  // nothing is ever below the top K: every valid plan is simulated
  const SearchResult all = run_search(space, brute);
  ASSERT_GT(all.simulated, 20);
  EXPECT_EQ(all.pruned_bound, 0);
  EXPECT_EQ(all.floor_violations, 0);
  // The floor is a lower bound of every simulated TPOT.
  for (const auto& r : all.results) {
    if (r.status == CandidateStatus::kSimulated) EXPECT_LE(r.floor_ms, r.metrics.tpot_mean_ms);
  }
  // An SLO between the fastest and the slowest plan, so that it excludes some.
  std::vector<double> tpots;
  for (const auto& r : all.results) {
    if (r.status == CandidateStatus::kSimulated) tpots.push_back(r.metrics.tpot_mean_ms);
  }
  std::sort(tpots.begin(), tpots.end());
  const double slo = tpots[tpots.size() / 2];

  for (int k : {1, 3}) {
    SearchOptions pruned = tiny_options();
    pruned.top_k = k;
    pruned.wave = 2;
    pruned.tpot_slo_ms = slo;
    brute.tpot_slo_ms = slo;
    const SearchResult exact = run_search(space, brute);
    const SearchResult r = run_search(space, pruned);
    EXPECT_GT(r.pruned_bound, 0) << "k=" << k;
    EXPECT_LT(r.simulated, exact.simulated);
    ASSERT_FALSE(exact.ranking.empty());
    ASSERT_FALSE(r.ranking.empty());
    // Same winner, same best of each kind, same top k per kind.
    EXPECT_EQ(r.ranking.front(), exact.ranking.front());
    EXPECT_EQ(r.best_colocated, exact.best_colocated);
    EXPECT_EQ(r.best_ma, exact.best_ma);
    for (auto kind : {plan::PlanKind::kColocated, plan::PlanKind::kMaSeparation}) {
      std::vector<int> a, b;
      for (int i : exact.ranking)
        if (exact.candidates[i].kind == kind && static_cast<int>(a.size()) < k) a.push_back(i);
      for (int i : r.ranking)
        if (r.candidates[i].kind == kind && static_cast<int>(b.size()) < k) b.push_back(i);
      EXPECT_EQ(a, b) << "k=" << k;
    }
    // Every pruned plan, simulated in the exhaustive run without SLO, misses the SLO or is
    // no better than the winner.
    const double win = exact.results[exact.ranking.front()].tokens_per_s_per_gpu;
    for (size_t i = 0; i < r.results.size(); ++i) {
      const auto st = r.results[i].status;
      if (st != CandidateStatus::kBoundBest && st != CandidateStatus::kBoundSlo) continue;
      const auto& e = all.results[i];
      ASSERT_EQ(e.status, CandidateStatus::kSimulated) << r.candidates[i].label();
      const bool meets = e.metrics.tpot_mean_ms <= slo;
      if (meets) EXPECT_LE(e.tokens_per_s_per_gpu, win) << r.candidates[i].label();
      if (st == CandidateStatus::kBoundSlo) EXPECT_FALSE(meets) << r.candidates[i].label();
    }
  }
}

TEST(SearchRun, TableIsIdenticalAcrossThreadCounts) {
  SearchOptions a = tiny_options();
  a.jobs = 1;
  SearchOptions b = tiny_options();
  b.jobs = 2;
  const auto ta = search_table(run_search(tiny_space(), a));
  const auto tb = search_table(run_search(tiny_space(), b));
  EXPECT_EQ(ta, tb);
  EXPECT_EQ(ta.size(), enumerate_candidates(tiny_space()).size() + 1);
}

TEST(SearchRun, InvalidAndMemoryCountsComeFromTheLoaderAndCheckMemory) {
  SearchOptions o = tiny_options();
  o.overrides.push_back("topology.gpu.hbm_gb=12");  // some plans need more than 12 GiB per GPU
  o.top_k = 1000000;
  const SearchResult r = run_search(tiny_space(), o);
  EXPECT_GT(r.pruned_memory, 0);
  EXPECT_GT(r.simulated, 0);
  EXPECT_GT(r.invalid, 0);
  EXPECT_EQ(r.enumerated, r.invalid + r.pruned_memory + r.pruned_bound + r.simulated + r.failed);
  for (const auto& x : r.results) {
    if (x.status == CandidateStatus::kInvalid) {
      // The loader's message, naming the key at fault.
      EXPECT_TRUE(x.error.find("plan.") != std::string::npos ||
                  x.error.find("workload.batch") != std::string::npos)
          << x.error;
    }
    // hbm_gb is decimal GB (TopologySpec::gpu.hbm_bytes()).
    if (x.status == CandidateStatus::kMemory) EXPECT_GT(x.peak_memory_bytes, 12e9);
    if (x.status == CandidateStatus::kSimulated) EXPECT_LE(x.peak_memory_bytes, 12e9);
  }
  // A bad override is reported once, as the loader's error.
  SearchOptions bad = tiny_options();
  bad.overrides.push_back("workload.batch=-1");
  EXPECT_THROW(run_search(tiny_space(), bad), plan::InputError);
}

TEST(SearchRun, WinnerYamlReproducesItsTpot) {
  const SearchOptions o = tiny_options();
  SearchSpace space = tiny_space();
  space.batches = {16, 48};
  const SearchResult r = run_search(space, o);
  ASSERT_FALSE(r.ranking.empty());
  const int w = r.ranking.front();
  EXPECT_EQ(r.candidates[w].batch, 48);  // more sequences per step: more tokens/s per GPU
  auto ov = o.overrides;
  ov.push_back("workload.batch=48");
  const std::string text = scenario_yaml(o.base, ov, r.candidates[w].plan_yaml, "search-best");
  const plan::Scenario s = plan::parse_scenario(text, "search-best.yaml");
  EXPECT_EQ(s.topology.name, "host-4xh100");
  EXPECT_EQ(s.workload.decode_steps, 2);
  const plan::Program p = plan::compile(s);
  const topology::Topology topo(s.topology);
  const auto sr = sim::simulate(p, topo, o.sim);
  const auto m = plan::compute_metrics(s, p, sr.timeline);
  EXPECT_EQ(m.tpot_mean_ms, r.results[w].metrics.tpot_mean_ms);
  EXPECT_EQ(m.tokens_per_s, r.results[w].metrics.tokens_per_s);

  // An override that reaches inside a built-in reference is inlined.
  const std::string inl = scenario_yaml("paper", {"topology=host-4xh100", "model.layers=2"},
                                        r.candidates[w].plan_yaml, "x");
  EXPECT_EQ(plan::parse_scenario(inl, "x.yaml").model.layers, 2);
}

// Issue 15: the floor charges each op at the peak of its own format, so it stays a lower bound
// for a model whose GEMMs run in fp8 (DeepSeek-V3, 4 layers, on 8 H800s, 2,048 tokens per GPU).
TEST(SearchFloor, IsALowerBoundWithFp8Gemms) {
  const plan::Scenario s = plan::load_scenario(
      "scenarios/deployments/deepseek-v3-h800-colocated.yaml",
      {"model.layers=4", "topology.nodes=1", "plan.colocated.gpus=8", "workload.batch=2048",
       "workload.decode_steps=1"});
  const plan::Program p = plan::compile(s);
  const topology::Topology topo(s.topology);
  sim::SimOptions opt;
  opt.params = {{"network_tier", 2}};
  const sim::SimResult r = sim::simulate(p, topo, opt);
  const plan::RunMetrics m = plan::compute_metrics(s, p, r.timeline);
  const double floor_ms = tpot_floor_ns(p, s.topology.gpu) / 1e6;
  EXPECT_GT(floor_ms, 0.0);
  EXPECT_LE(floor_ms, m.tpot_mean_ms);
  // One compute-bound op of 1 TFLOP: charged at the peak of its format.
  plan::Program one;
  one.ranks.resize(1);
  plan::Op op;
  op.kind = plan::OpKind::kGemm;
  op.flops = 1e12;
  op.hbm_bytes = 1;
  op.dtype = models::DType::kFP8;
  one.ops.push_back(op);
  EXPECT_NEAR(tpot_floor_ns(one, s.topology.gpu), 1e12 / (1979 * 1e3), 1.0);
  one.ops[0].dtype = models::DType::kBF16;
  EXPECT_NEAR(tpot_floor_ns(one, s.topology.gpu), 1e12 / (989 * 1e3), 1.0);
}

// finalize_search: the outcome does not depend on the wave size (the order simulations ran
// in), and shards joined by merge_search give the single-process result exactly.
TEST(SearchShards, WaveSizeAndShardsDoNotChangeTheResult) {
  SearchSpace space = tiny_space();
  // Whole experts only: in this space a wave of 16 runs past the final bound (with expert TP
  // the first waves already hold the top 2), which is what the test needs to exercise.
  space.max_expert_tensor_parallel = 1;
  SearchOptions o = tiny_options();
  o.top_k = 2;
  o.wave = 1;
  const SearchResult one = run_search(space, o);
  o.wave = 16;
  const SearchResult sixteen = run_search(space, o);
  EXPECT_GT(sixteen.dropped, 0) << "wave 16 simulates beyond the final bound";
  EXPECT_EQ(search_table(one), search_table(sixteen));
  EXPECT_EQ(one.ranking, sixteen.ranking);

  const std::string dir = ::testing::TempDir() + "/masep-search-shards";
  std::filesystem::remove_all(dir);
  o.out_dir = dir;
  o.key = "test-key";
  for (int i = 0; i < 3; ++i) {
    SearchOptions so = o;
    so.shard = ShardSpec{i, 3, "test"};
    const SearchResult part = run_search(space, so);
    int mine = 0;
    for (const auto& r : part.results) mine += r.status != CandidateStatus::kOtherShard;
    const int n = static_cast<int>(enumerate_candidates(space).size());
    EXPECT_EQ(mine, (n - i + 2) / 3) << "shard " << i << " decides the candidates i % 3 == " << i;
    if (i < 2) {  // not all shards yet: the merge says what is missing
      const SearchResult partial = merge_search(space, o);
      EXPECT_FALSE(partial.missing.empty());
    }
  }
  const SearchResult merged = merge_search(space, o);
  EXPECT_TRUE(merged.missing.empty());
  EXPECT_EQ(search_table(merged), search_table(one));
  EXPECT_EQ(merged.ranking, one.ranking);
  // A rerun reads everything back and simulates nothing.
  const SearchResult again = run_search(space, o);
  EXPECT_EQ(again.ran, 0);
  EXPECT_EQ(search_table(again), search_table(one));
  // Records of another key are refused, naming the file.
  o.key = "other";
  try {
    (void)merge_search(space, o);
    ADD_FAILURE() << "records of another key accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another search"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(".jsonl"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(dir);
}

// --moe-layers: with as many MoE layers as the model has nothing changes; with fewer, the
// floor and TPOT are extrapolated (DeepSeek-V3's 3 dense + 58 MoE layers, cut to 3 + 2).
TEST(SearchDepth, TruncationAndExtrapolation) {
  auto s = plan::load_scenario("paper", {"workload.decode_steps=2"});
  EXPECT_EQ(truncate_moe_layers(s, 0), 1.0);
  EXPECT_EQ(truncate_moe_layers(s, 4), 1.0);  // paper-moe: 4 MoE layers, none dense
  EXPECT_EQ(s.model.layers, 4);
  const plan::Program full = plan::compile(s);
  const topology::Topology topo(s.topology);
  const auto full_run = sim::simulate(full, topo, {});
  auto m_full = plan::compute_metrics(s, full, full_run.timeline);
  // Scale 1 is the plain floor and leaves metrics alone.
  EXPECT_EQ(tpot_floor_ns(full, s.topology.gpu, 0, 1.0), tpot_floor_ns(full, s.topology.gpu));
  const auto before = m_full.tpot_mean_ms;
  extrapolate_metrics(m_full, full, full_run.timeline, 0, 1.0);
  EXPECT_EQ(m_full.tpot_mean_ms, before);

  EXPECT_EQ(truncate_moe_layers(s, 2), 2.0);
  EXPECT_EQ(s.model.layers, 2);
  const plan::Program half = plan::compile(s);
  const auto half_run = sim::simulate(half, topo, {});
  auto m = plan::compute_metrics(s, half, half_run.timeline);
  const double simulated = m.tpot_mean_ms;
  extrapolate_metrics(m, half, half_run.timeline, 0, 2.0);
  // No dense layers: every step doubles.
  EXPECT_DOUBLE_EQ(m.tpot_mean_ms, 2 * simulated);
  EXPECT_NEAR(m.tpot_mean_ms, before, 0.1 * before) << "2 of 4 identical layers stand for 4";
  EXPECT_NEAR(tpot_floor_ns(half, s.topology.gpu, 0, 2.0), tpot_floor_ns(full, s.topology.gpu),
              0.05 * tpot_floor_ns(full, s.topology.gpu));

  // DeepSeek-V3: memory is the full model's, the compiled depth 3 + 2.
  auto d = plan::load_scenario("scenarios/deployments/deepseek-v3-h800-colocated.yaml",
                               {"plan.colocated.gpus=16", "topology.nodes=2", "workload.batch=256",
                                "workload.decode_steps=1"});
  EXPECT_EQ(truncate_moe_layers(d, 2), 29.0);
  EXPECT_EQ(d.model.layers, 5);
  EXPECT_EQ(d.model.dense_layers, 3);
}

// The critical-path floor: MA 1:3 with one micro-batch runs attention and experts one after
// the other, so its path is longer than any rank's work (the ping-pong condition), and still
// below the simulated TPOT; across nodes the NIC bytes count.
TEST(SearchFloor, CriticalPathSeesTheAttentionExpertChain) {
  for (const char* topo : {"topology=host-4xh100", "topology=paper-16xa100"}) {
    auto s = plan::load_scenario(
        "paper", {topo, "workload.decode_steps=2",
                  "plan={kind: ma_separation, attention: {gpus: 1, head_parallel: 1, "
                  "sequence_parallel: 1, replicas: 1}, moe: {gpus: 3, placement: round_robin, "
                  "expert_replicas: 1}, micro_batches: 1}"});
    const plan::Program p = plan::compile(s);
    const double rank = tpot_floor_ns(p, s.topology.gpu);
    const double cp = critical_path_floor_ns(p, s.topology, 0, 1.0);
    const topology::Topology t(s.topology);
    const auto run = sim::simulate(p, t, {});
    const auto m = plan::compute_metrics(s, p, run.timeline);
    EXPECT_GT(cp, 1.2 * rank) << topo << ": rank " << rank << " cp " << cp;
    EXPECT_LE(cp / 1e6, m.tpot_mean_ms) << topo;
  }
}
