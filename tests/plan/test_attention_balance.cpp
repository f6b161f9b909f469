// Attention-side balancing (issue 17, plan/attention_balance.hpp): sequences assigned to the
// attention replicas' chunks by predicted attention time, the compiler's use of the order,
// and the scenario key.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include "masep/plan/attention_balance.hpp"
#include "masep/plan/balancer.hpp"
#include "masep/plan/batch_split.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/routing.hpp"
#include "masep/plan/time_predictor.hpp"

namespace {

using namespace masep::plan;

// The paper's 12:4 plan (3 replicas × 2 micro-batches = 6 chunks) with a wide context
// distribution.
Scenario wide(const std::string& policy, int batch = 48) {
  return load_scenario("paper", {"workload.context={distribution: uniform, min: 128, max: 16384}",
                                 "workload.batch=" + std::to_string(batch),
                                 "workload.decode_steps=2", "plan.balance.attention=" + policy});
}

std::vector<int64_t> as64(const std::vector<int32_t>& v) { return {v.begin(), v.end()}; }

// Sum of each (replica, micro-batch) chunk's attention kv_tokens in a compiled Program, first
// step, first layer, first head-parallel rank of each replica.
std::vector<int64_t> program_chunk_kv(const Program& p) {
  std::vector<int64_t> kv;
  for (const Op& op : p.ops) {
    if (op.kind == OpKind::kAttention && op.step == p.first_step && op.layer == 0 &&
        p.ranks[static_cast<size_t>(op.rank)].group_index == 0) {
      kv.push_back(op.kv_tokens);
    }
  }
  return kv;
}

TEST(AttentionBalance, StaticIsTheSampledOrder) {
  const Scenario s = wide("static");
  EXPECT_EQ(placed_context_lengths(s), sample_context_lengths(s.workload));
  const std::vector<int32_t> order = sequence_order(s);
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], static_cast<int32_t>(i));
}

TEST(AttentionBalance, PredictedIsAPermutationWithTheSameChunkSizes) {
  const Scenario s = wide("predicted", 50);  // 50 over 6 chunks: sizes 8 and 9
  std::vector<int32_t> order = sequence_order(s);
  ASSERT_EQ(order.size(), 50u);
  std::vector<int32_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], static_cast<int32_t>(i));
  std::vector<int32_t> a = placed_context_lengths(s), b = sample_context_lengths(s.workload);
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
  EXPECT_EQ(sequence_order(s), order) << "deterministic";
  // Chunk sizes are the static plan's: the compiled Program's RankBatches agree.
  const Program ps = compile(wide("static", 50)), pp = compile(s);
  for (size_t r = 0; r < ps.ranks.size(); ++r) {
    ASSERT_EQ(ps.ranks[r].batches.size(), pp.ranks[r].batches.size());
    for (size_t b2 = 0; b2 < ps.ranks[r].batches.size(); ++b2) {
      EXPECT_EQ(ps.ranks[r].batches[b2].sequences, pp.ranks[r].batches[b2].sequences);
      EXPECT_EQ(ps.ranks[r].batches[b2].first_sequence, pp.ranks[r].batches[b2].first_sequence);
    }
  }
}

TEST(AttentionBalance, PredictedEvensTheChunksAttentionTime) {
  const Scenario st = wide("static"), pr = wide("predicted");
  const TimePredictor tp(st.topology);
  const AttentionChunkCost cost = attention_chunk_cost(st, tp);
  const std::vector<int64_t> sizes = attention_chunk_sizes(st);
  ASSERT_EQ(sizes.size(), 6u);
  const auto t_static = chunk_attention_ns(as64(placed_context_lengths(st)), sizes, cost);
  const auto t_pred = chunk_attention_ns(as64(placed_context_lengths(pr)), sizes, cost);
  const double r_static = max_over_mean(t_static), r_pred = max_over_mean(t_pred);
  EXPECT_GT(r_static, 1.05) << "contexts 128..16384 drawn into 6 chunks of 8 are uneven";
  EXPECT_LT(r_pred, 1.01);
  EXPECT_LT(r_pred, r_static);
  // The compiled Program carries it: the attention ops' KV tokens per chunk are even.
  const Program p = compile(pr);
  std::vector<double> kv;
  for (int64_t x : program_chunk_kv(p)) kv.push_back(static_cast<double>(x));
  ASSERT_EQ(kv.size(), 6u);
  EXPECT_LT(max_over_mean(kv), 1.01);
  EXPECT_EQ(p.layout.context_lengths, placed_context_lengths(pr));
}

TEST(AttentionBalance, AssignSequencesBeatsContiguousOnAHandCase) {
  // Two chunks of two: {100, 90} | {10, 1} contiguous; balanced is {100, 1} | {90, 10}.
  const TimePredictor tp(load_scenario("paper").topology);
  AttentionChunkCost c;
  c.tp = &tp;
  c.heads = 8;
  c.kv_heads = 8;
  c.head_dim = 128;
  const std::vector<int64_t> len = {100000, 90000, 10000, 1000}, sizes = {2, 2};
  const std::vector<int32_t> order = assign_sequences(len, sizes, c);
  ASSERT_EQ(order.size(), 4u);
  std::vector<int64_t> placed;
  for (int32_t q : order) placed.push_back(len[static_cast<size_t>(q)]);
  const auto t = chunk_attention_ns(placed, sizes, c);
  EXPECT_NEAR(t[0], t[1], 0.1 * t[0]);
  EXPECT_EQ(placed[0] + placed[1], 101000);
  // Sizes that do not add up are refused.
  EXPECT_THROW(assign_sequences(len, std::vector<int64_t>{2, 1}, c), std::invalid_argument);
  EXPECT_THROW(assign_sequences(len, std::vector<int64_t>{5, -1}, c), std::invalid_argument);
  EXPECT_TRUE(assign_sequences({}, std::vector<int64_t>{0, 0}, c).empty());
  // A large batch: 4,096 sequences of 1..65,536 tokens into 64 chunks of 64.
  std::vector<int64_t> many(4096);
  uint64_t x = 99;
  for (auto& l : many) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    l = 1 + static_cast<int64_t>((x >> 33) % 65536);
  }
  const std::vector<int64_t> sz64(64, 64);
  const std::vector<int32_t> o = assign_sequences(many, sz64, c);
  std::vector<int64_t> by_pos;
  for (int32_t q : o) by_pos.push_back(many[static_cast<size_t>(q)]);
  EXPECT_LT(max_over_mean(chunk_attention_ns(by_pos, sz64, c)), 1.001);
  EXPECT_GT(max_over_mean(chunk_attention_ns(many, sz64, c)), 1.05) << "contiguous is uneven";
}

TEST(AttentionBalance, FixedContextKeepsEveryChunkEqual) {
  const Scenario s = load_scenario("paper", {"plan.balance.attention=predicted"});
  const std::vector<int32_t> ctx = placed_context_lengths(s);
  for (int32_t c : ctx) EXPECT_EQ(c, s.workload.context);
  // Same Program as static apart from nothing: a fixed context has nothing to balance.
  const Program a = compile(s), b = compile(load_scenario("paper"));
  EXPECT_EQ(a.ops.size(), b.ops.size());
  EXPECT_EQ(a.layout.context_lengths, b.layout.context_lengths);
}

TEST(AttentionBalance, ColocatedAndSequenceParallelPlans) {
  Scenario c = load_scenario("paper-colocated",
                             {"workload.context={distribution: uniform, min: 64, max: 8192}",
                              "workload.batch=32", "plan.balance.attention=predicted"});
  const TimePredictor tp(c.topology);
  const auto sizes = attention_chunk_sizes(c);
  const auto t =
      chunk_attention_ns(as64(placed_context_lengths(c)), sizes, attention_chunk_cost(c, tp));
  EXPECT_LT(max_over_mean(t), 1.05);
  EXPECT_NO_THROW(compile(c));
  Scenario sp = load_scenario(
      "paper", {"workload.context={distribution: uniform, min: 64, max: 8192}",
                "plan.attention.head_parallel=2", "plan.attention.sequence_parallel=2",
                "plan.balance.attention=predicted"});
  EXPECT_EQ(attention_chunk_cost(sp, tp).sequence_parallel, 2);
  EXPECT_NO_THROW(compile(sp));
}

TEST(AttentionBalance, ScenarioKeyErrors) {
  try {
    load_scenario("paper", {"plan.balance.attention=fastest"});
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("plan.balance.attention"), std::string::npos) << msg;
  }
  const Scenario s = load_scenario("paper", {"plan.balance.attention=predicted"});
  EXPECT_EQ(s.plan.balance.attention, AttentionBalance::kPredicted);
  EXPECT_EQ(s.plan.balance.policy, BalancePolicy::kStatic) << "independent of the expert policy";
  EXPECT_STREQ(to_string(AttentionBalance::kPredicted), "predicted");
}

TEST(AttentionBalance, HeadSequenceSplitsByPredictedTime) {
  const Scenario s = wide("static", 96);
  const TimePredictor tp(s.topology);
  const std::vector<AttentionSplit> splits = attention_splits(s, tp);
  ASSERT_EQ(splits.size(), 3u);  // 4 GPUs per replica: 1 × 4, 2 × 2, 4 × 1
  for (size_t i = 0; i < splits.size(); ++i) {
    EXPECT_EQ(splits[i].head_parallel * splits[i].sequence_parallel, 4);
    EXPECT_GT(splits[i].predicted_ns, 0);
  }
  EXPECT_EQ(splits[0].head_parallel, 1);
  // Splitting heads reads each projection weight once per replica; splitting sequences
  // replicates the projections on every shard, so heads win in decode.
  EXPECT_GT(splits[0].predicted_ns, splits[2].predicted_ns);
  EXPECT_EQ(best_attention_split(splits), 2);
  EXPECT_EQ(best_attention_split({}), -1);
  // A split the plan does not allow is left out: 3 GPUs per replica, 32 heads.
  Scenario odd = load_scenario("paper", {"plan.attention.gpus=9", "plan.attention.head_parallel=1",
                                         "plan.attention.sequence_parallel=3", "plan.moe.gpus=4"});
  const auto o = attention_splits(odd, tp);
  ASSERT_EQ(o.size(), 1u);
  EXPECT_EQ(o[0].head_parallel, 1);
  EXPECT_TRUE(attention_splits(load_scenario("paper-colocated"), tp).empty());
}

// Replicas listed one by one (issue 15): of one shape with unequal batch shares, predicted
// fills the compiler's unequal chunks; of different shapes, predicted is refused by name.
TEST(AttentionBalance, ListedReplicas) {
  const Scenario s = load_scenario(
      "paper", {"workload.context={distribution: uniform, min: 128, max: 16384}",
                "plan.balance.attention=predicted",
                "plan.attention={gpus: 12, replicas: [{head_parallel: 4, batch_share: 2}, "
                "{head_parallel: 4, batch_share: 1}, {head_parallel: 4, batch_share: 1}]}"});
  const std::vector<int64_t> sizes = attention_chunk_sizes(s);
  const BatchSplit split = split_batch(s);
  ASSERT_EQ(sizes.size() + 1, split.boundaries.size());
  EXPECT_GT(sizes.front(), sizes.back());  // the replica with share 2 takes more
  std::vector<int32_t> sorted = sequence_order(s);
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], static_cast<int32_t>(i));
  try {
    load_scenario("paper", {"plan.balance.attention=predicted",
                            "plan.attention={gpus: 12, replicas: [{head_parallel: 4}, "
                            "{head_parallel: 2}, {head_parallel: 2}, {head_parallel: 2}, "
                            "{head_parallel: 2}]}"});
    ADD_FAILURE() << "predicted with replicas of different shapes was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("plan.balance.attention"), std::string::npos)
        << e.what();
  }
}

}  // namespace
