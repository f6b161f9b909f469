// Attention replicas of unequal size (issue 15; plan.attention.replicas as a list): the batch
// split (plan/batch_split.hpp) against the count form's and by hand, the compiled ranks,
// groups and attention shapes of each replica, FLOPs equal to the model's count, memory per
// replica, validation errors with file:line:key, windows and the Program JSON.
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "input_error_check.hpp"
#include "masep/plan/batch_split.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/program_chunk.hpp"
#include "masep/plan/program_json.hpp"
#include "masep/plan/routing.hpp"

namespace masep::plan {
namespace {

// Mixtral-8x7B (32 heads, 8 KV heads) on a DGX H100: a 4-GPU head-parallel replica and two
// single-GPU replicas, 2 MoE GPUs. Line 8 is `replicas:`, lines 9-11 its entries.
const char* const kUneven =
    "name: uneven\n"
    "model: mixtral-8x7b\n"
    "topology: dgx-h100\n"
    "plan:\n"
    "  kind: ma_separation\n"
    "  attention:\n"
    "    gpus: 6\n"
    "    replicas:\n"
    "      - {head_parallel: 4}\n"
    "      - {head_parallel: 1}\n"
    "      - {head_parallel: 1}\n"
    "  moe: {gpus: 2}\n"
    "  micro_batches: 2\n"
    "workload: {batch: 96, context: 100, decode_steps: 2}\n";

using testing::with;

Scenario load(const std::string& text, std::vector<std::string> sets = {}) {
  sets.push_back("model.layers=2");
  return parse_scenario(text, "t.yaml", sets);
}

// The old partition (chunk c of replicas × micro-batches: batch·c / chunks) is what equal
// weights give, for every batch, replica and micro-batch count tried.
TEST(BatchSplit, EqualWeightsAreTheCountFormsSplit) {
  for (int64_t batch : {1, 7, 8, 11, 32, 33, 96, 1000}) {
    for (int R : {1, 2, 3, 5}) {
      for (int mbs : {1, 2, 3}) {
        if (batch < static_cast<int64_t>(R) * mbs) continue;
        const BatchSplit s =
            split_batch(batch, mbs, std::vector<int64_t>(static_cast<size_t>(R), 7));
        const int64_t chunks = static_cast<int64_t>(R) * mbs;
        for (int mb = 0; mb < mbs; ++mb) {
          for (int r = 0; r < R; ++r) {
            const int64_t c = static_cast<int64_t>(mb) * R + r;
            EXPECT_EQ(s.first(r, mb), batch * c / chunks);
            EXPECT_EQ(s.size(r, mb), batch * (c + 1) / chunks - batch * c / chunks);
          }
        }
      }
    }
  }
  // 32 over 3 replicas: 10 / 11 / 11.
  const BatchSplit s = split_batch(32, 1, {1, 1, 1});
  EXPECT_EQ(s.size(0, 0), 10);
  EXPECT_EQ(s.size(1, 0), 11);
  EXPECT_EQ(s.size(2, 0), 11);
  EXPECT_THROW(split_batch(8, 1, {1, 0}), std::invalid_argument);
  EXPECT_THROW(split_batch(8, 0, {1}), std::invalid_argument);
}

// Weights 4:1:1 over 2 micro-batches (weight 12 in all): chunk boundaries at 96·{0, 4, 5, 6,
// 10, 11}/12 = 0, 32, 40, 48, 80, 88; replica totals 64 / 16 / 16.
TEST(BatchSplit, WeightsShareTheBatchByHand) {
  const BatchSplit s = split_batch(96, 2, {4, 1, 1});
  EXPECT_EQ(s.boundaries, (std::vector<int64_t>{0, 32, 40, 48, 80, 88, 96}));
  EXPECT_EQ(s.replica_sequences(0), 64);
  EXPECT_EQ(s.replica_sequences(1), 16);
  EXPECT_EQ(s.replica_sequences(2), 16);
  EXPECT_EQ(s.smallest_chunk(), 8);
  // Rounding: 10 over 3:1 in one micro-batch is floor(10·3/4) = 7 and 3.
  const BatchSplit r = split_batch(10, 1, {3, 1});
  EXPECT_EQ(r.size(0, 0), 7);
  EXPECT_EQ(r.size(1, 0), 3);
  // Huge weights do not overflow: 2^24 sequences, 1024 micro-batches, GPU-count weights 2^20.
  const BatchSplit big = split_batch(1 << 24, 1024, {1 << 20, 1 << 20});
  EXPECT_EQ(big.size(0, 0), (1 << 24) / 2048);
  EXPECT_EQ(big.boundaries.back(), 1 << 24);
}

TEST(UnevenReplicas, LoadsTheListAndSharesByGpuCount) {
  const Scenario s = load(kUneven);
  const AttentionPlan& a = s.plan.attention;
  ASSERT_TRUE(a.per_replica());
  EXPECT_EQ(a.replicas, 3);
  EXPECT_EQ(a.replica(0).head_parallel, 4);
  EXPECT_EQ(a.replica(2).gpus(), 1);
  EXPECT_EQ(replica_weights(s.plan), (std::vector<int64_t>{4, 1, 1}));
  const Scenario shared = load(kUneven, {"plan.attention.replicas=[{head_parallel: 4, "
                                         "batch_share: 1}, {batch_share: 1}, {batch_share: 2}]"});
  EXPECT_EQ(replica_weights(shared.plan), (std::vector<int64_t>{1, 1, 2}));
  // The count form is unchanged: equal weights.
  const Scenario count = load(kUneven, {"plan.attention={gpus: 6, head_parallel: 2, replicas: 3}"});
  EXPECT_FALSE(count.plan.attention.per_replica());
  EXPECT_EQ(replica_weights(count.plan), (std::vector<int64_t>{1, 1, 1}));
}

TEST(UnevenReplicas, CompilesEachReplicaWithItsOwnSplit) {
  const Scenario s = load(kUneven);
  CompileOptions co;
  co.record_token_routing = true;
  const Program p = compile(s, co);
  EXPECT_NO_THROW(check_program(p));
  const ProgramLayout& l = p.layout;
  EXPECT_EQ(l.attention_ranks, 6);
  EXPECT_EQ(l.replicas, 3);
  EXPECT_EQ(l.group_size, 4);  // the largest replica
  ASSERT_EQ(l.replica_shapes.size(), 3u);
  EXPECT_EQ(l.replica_shape(0).first_rank, 0);
  EXPECT_EQ(l.replica_shape(0).size(), 4);
  EXPECT_EQ(l.replica_shape(1).first_rank, 4);
  EXPECT_EQ(l.replica_shape(2).first_rank, 5);
  // Ranks: 0-3 replica 0 (group index 0-3), 4 and 5 replicas 1 and 2; chunks as split by hand.
  const int64_t first[2][3] = {{0, 32, 40}, {48, 80, 88}};
  const int64_t size[2][3] = {{32, 8, 8}, {32, 8, 8}};
  for (int a = 0; a < 6; ++a) {
    const RankInfo& ri = p.ranks[static_cast<size_t>(a)];
    const int r = a < 4 ? 0 : a - 3;
    EXPECT_EQ(ri.replica, r) << a;
    EXPECT_EQ(ri.group_index, a < 4 ? a : 0) << a;
    ASSERT_EQ(ri.batches.size(), 2u);
    for (int mb = 0; mb < 2; ++mb) {
      const RankBatch& b = ri.batches[static_cast<size_t>(mb)];
      EXPECT_EQ(b.first_sequence, first[mb][r]) << a;
      EXPECT_EQ(b.sequences, size[mb][r]) << a;
      // Replica 0 slices its 32 tokens 4 ways after the reduce-scatter.
      EXPECT_EQ(b.slice_tokens, 8) << a;
      EXPECT_EQ(b.slice_first, first[mb][r] + (a < 4 ? 8 * a : 0)) << a;
    }
  }
  // Groups: attn.r0 holds ranks 0-3, the others one rank each.
  std::map<std::string, std::vector<int32_t>> groups;
  for (const Group& g : p.groups) groups[g.name] = g.ranks;
  EXPECT_EQ(groups["attn.r0"], (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(groups["attn.r1"], (std::vector<int32_t>{4}));
  EXPECT_EQ(groups["attn.r2"], (std::vector<int32_t>{5}));
  // Attention shapes: a quarter of the heads on replica 0, all of them on the single GPUs;
  // gathers and reduce-scatters only inside replica 0.
  for (const Op& o : p.ops) {
    if (o.role == OpRole::kAttention) {
      EXPECT_EQ(o.heads, o.rank < 4 ? 8 : 32) << o.id;
      EXPECT_EQ(o.kv_heads, o.rank < 4 ? 2 : 8) << o.id;
      EXPECT_EQ(o.batch, o.rank < 4 ? 32 : 8) << o.id;
    }
    if (o.role == OpRole::kQkv) EXPECT_EQ(o.n, o.rank < 4 ? (8 + 4) * 128 : (32 + 16) * 128);
    if (o.role == OpRole::kGather || o.role == OpRole::kScatter) EXPECT_LT(o.rank, 4) << o.id;
  }
  // FLOPs of a step equal the model's count for the whole batch, however it is split.
  std::map<int, double> per_step;
  for (const Op& o : p.ops) per_step[o.step] += o.flops;
  ASSERT_EQ(per_step.size(), 2u);
  const auto ctx = sample_context_lengths(s.workload);
  for (const auto& [step, flops] : per_step) {
    int64_t kv = 0;
    for (int32_t c : ctx) kv += c + step + 1;
    const double want = s.model.layer_flops(s.workload.batch, kv) * s.model.layers;
    EXPECT_NEAR(flops, want, want * 1e-12) << "step " << step;
  }
  // Routing covers every sequence once per (step, layer, micro-batch).
  for (const RoutingSample& rs : p.routing) {
    int64_t tokens = 0;
    for (int32_t n : rs.tokens_per_expert) tokens += n;
    EXPECT_EQ(tokens, 48 * s.model.top_k);
    EXPECT_EQ(static_cast<int64_t>(rs.token_experts.size()), 48 * s.model.top_k);
  }
}

// A list of equal replicas compiles to the very ops of the count form.
TEST(UnevenReplicas, EqualListIsTheCountForm) {
  const Program a =
      compile(load(kUneven, {"plan.attention={gpus: 4, head_parallel: 2, replicas: 2}"}));
  const Program b = compile(load(
      kUneven, {"plan.attention={gpus: 4, replicas: [{head_parallel: 2}, {head_parallel: 2}]}"}));
  ASSERT_EQ(a.ops.size(), b.ops.size());
  for (size_t i = 0; i < a.ops.size(); ++i) {
    const Op &x = a.ops[i], &y = b.ops[i];
    ASSERT_TRUE(x.rank == y.rank && x.role == y.role && x.kind == y.kind && x.m == y.m &&
                x.n == y.n && x.k == y.k && x.batch == y.batch && x.kv_tokens == y.kv_tokens &&
                x.hbm_bytes == y.hbm_bytes && x.comm_bytes == y.comm_bytes && x.deps == y.deps)
        << "op " << i;
  }
  EXPECT_TRUE(a.layout.replica_shapes.empty());
  EXPECT_EQ(b.layout.replica_shapes.size(), 2u);
}

// Explicit shares move sequences between replicas: 1:1:1 gives the 4-GPU replica a third of
// the batch instead of two thirds.
TEST(UnevenReplicas, BatchSharesOverrideTheGpuCount) {
  const Program p =
      compile(load(kUneven, {"plan.attention.replicas=[{head_parallel: 4, "
                             "batch_share: 1}, {batch_share: 1}, {batch_share: 1}]"}));
  EXPECT_EQ(p.ranks[0].batches[0].sequences, 16);
  EXPECT_EQ(p.ranks[4].batches[0].sequences, 16);
  EXPECT_EQ(p.ranks[5].batches[1].first_sequence, 80);
}

// Memory: by default each replica's KV per GPU is the same (64 sequences over a 4-way KV head
// split against 16 whole); the single GPUs hold 4× the attention weights of a head-split one.
TEST(UnevenReplicas, MemoryPerReplica) {
  const Scenario s = load(kUneven);
  const auto mem = plan_memory(s);
  ASSERT_EQ(mem.size(), 8u);
  EXPECT_EQ(mem[0].kv_cache, mem[4].kv_cache);
  EXPECT_EQ(mem[0].weights, mem[3].weights);
  EXPECT_LT(mem[0].weights, mem[4].weights);
  EXPECT_EQ(mem[4].weights, mem[5].weights);
  // Hand count of rank 4's KV: 16 sequences × (100 + 2) tokens × 2 layers × 2·8·128 × 2 bytes.
  EXPECT_EQ(mem[4].kv_cache, int64_t{16} * 102 * 2 * 2 * 8 * 128 * 2);
  // Shares 1:1:1: replica 0 holds 32 sequences, half the KV of a single GPU's 32.
  const auto even = plan_memory(load(kUneven, {"plan.attention.replicas=[{head_parallel: 4, "
                                               "batch_share: 1}, {batch_share: 1}, "
                                               "{batch_share: 1}]"}));
  EXPECT_EQ(even[0].kv_cache * 4, even[4].kv_cache);
  EXPECT_NO_THROW(check_memory(s, mem));
}

void expect_error(const std::string& text, const std::vector<std::string>& sets,
                  const std::string& key, int line, const std::string& words) {
  testing::expect_input_error([&] { (void)load(text, sets); }, "t.yaml", key, line, words);
}

TEST(UnevenReplicas, ValidationNamesFileLineAndKey) {
  expect_error(with(kUneven, "gpus: 6", "gpus: 5"), {}, "plan.attention.gpus", 7,
               "the listed replicas (plan.attention.replicas) use 4 + 1 + 1 = 6");
  expect_error(with(kUneven, "      - {head_parallel: 1}\n", "      - {head_parallel: 3}\n"), {},
               "plan.attention.replicas[1].head_parallel", 10, "3 does not divide 32 heads");
  expect_error(with(kUneven, "    gpus: 6\n", "    gpus: 6\n    head_parallel: 2\n"), {},
               "plan.attention.head_parallel", 8, "not used when plan.attention.replicas lists");
  expect_error(with(kUneven, "{head_parallel: 4}", "{head_parallel: 4, batch_share: 2}"), {},
               "plan.attention.replicas[1]", 10, "has no batch_share while other replicas");
  expect_error(with(kUneven, "{head_parallel: 4}", "{head_parallel: 4, batch_share: 0}"), {},
               "plan.attention.replicas[0].batch_share", 9, "");
  expect_error(with(kUneven, "{head_parallel: 4}", "{head_parallel: 4, heads: 2}"), {},
               "plan.attention.replicas[0].heads", 9, "unknown key");
  expect_error(with(kUneven,
                    "    replicas:\n      - {head_parallel: 4}\n      - {head_parallel: "
                    "1}\n      - {head_parallel: 1}\n",
                    "    replicas: []\n"),
               {}, "plan.attention.replicas", 8, "lists no replica");
  // 4 sequences shared 4:1:1 over 2 micro-batches: replica 1 gets none in micro-batch 0.
  expect_error(with(kUneven, "batch: 96", "batch: 4"), {}, "plan.attention.replicas[1]", 10,
               "gets no sequence in micro-batch 0");
  // A sequence value is located at its first entry.
  expect_error(kUneven, {"fault_tolerance={kv_copies: 2}"}, "plan.attention.replicas", 9,
               "not supported with fault tolerance");
}

TEST(UnevenReplicas, WindowsAndJsonReproduceTheFullCompile) {
  const Scenario s = load(kUneven);
  const Program full = compile(s);
  ProgramStream stream(s);
  ProgramChunk chunk;
  size_t n = 0;
  while (stream.next(1, chunk)) {
    for (const Op& o : chunk.ops) {
      const Op& f = full.ops.at(static_cast<size_t>(o.id));
      EXPECT_EQ(o.rank, f.rank);
      EXPECT_EQ(o.role, f.role);
      EXPECT_EQ(o.hbm_bytes, f.hbm_bytes);
      ++n;
    }
  }
  EXPECT_EQ(n, full.ops.size());
  std::ostringstream a;
  write_program_json(full, a);
  EXPECT_NE(a.str().find("\"replica_shapes\":[[0,4,1],[4,1,1],[5,1,1]]"), std::string::npos);
  std::istringstream in(a.str());
  const Program back = read_program_json(in, "dump");
  ASSERT_EQ(back.layout.replica_shapes.size(), 3u);
  EXPECT_EQ(back.layout.replica_shape(1).first_rank, 4);
  std::ostringstream b;
  write_program_json(back, b);
  EXPECT_EQ(a.str(), b.str());
  // A dump whose replicas do not tile the attention ranks is refused.
  std::string bad = a.str();
  bad.replace(bad.find("[[0,4,1],[4,1,1],[5,1,1]]"), 25, "[[0,4,1],[4,1,1],[4,1,1]]");
  std::istringstream bin(bad);
  EXPECT_THROW((void)read_program_json(bin, "dump"), std::exception);
}

}  // namespace
}  // namespace masep::plan
