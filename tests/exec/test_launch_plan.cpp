// Program → launches (exec/src/launch_plan.cpp), on the CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "scenario_files.hpp"
#include "masep/exec/launch_plan.hpp"
#include "masep/kernels/mla_attention_config.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/program_json.hpp"
#include "masep/plan/rank_recovery.hpp"
#include "masep/plan/recovery.hpp"

using namespace masep;
using exec::LaunchKind;

namespace {

struct Case {
  plan::Scenario s;
  plan::Program p;
};

Case compile(const std::string& name, const std::vector<std::string>& sets = {}) {
  Case c{plan::load_scenario(name, sets), {}};
  c.p = plan::compile(c.s);
  return c;
}

// The invariants every rank plan must satisfy.
void check_rank_plan(const Case& c, int rank) {
  SCOPED_TRACE("rank " + std::to_string(rank));
  const exec::RankPlan rp = exec::build_rank_plan(c.p, rank);
  EXPECT_EQ(rp.generic_copies, 0) << "every op of a compiled Program has a real launch";
  // Every op of the rank in exactly one launch; per stream, in stream order.
  std::map<plan::OpId, int> launch_of;
  std::array<std::vector<plan::OpId>, plan::kStreamCount> seen;
  for (size_t i = 0; i < rp.launches.size(); ++i) {
    const auto& l = rp.launches[i];
    ASSERT_FALSE(l.ops.empty());
    for (plan::OpId id : l.ops) {
      EXPECT_TRUE(launch_of.emplace(id, static_cast<int>(i)).second) << "op " << id << " twice";
      EXPECT_EQ(c.p.ops[static_cast<size_t>(id)].rank, rank);
      EXPECT_EQ(c.p.ops[static_cast<size_t>(id)].stream, l.stream);
      seen[l.stream].push_back(id);
    }
    if (l.wait_for >= 0) {
      ASSERT_LT(l.wait_for, static_cast<int>(i));
      EXPECT_NE(rp.launches[static_cast<size_t>(l.wait_for)].stream, l.stream);
    }
  }
  for (int st = 0; st < plan::kStreamCount; ++st) {
    EXPECT_EQ(seen[st], c.p.stream_ops[static_cast<size_t>(rank)][static_cast<size_t>(st)]);
  }
  EXPECT_EQ(launch_of.size(), rp.op_ids.size());
  // Every local dependency is issued before, and one on the other stream is covered by the
  // launch's wait (the wait target comes at or after the dependency on that stream).
  for (size_t i = 0; i < rp.launches.size(); ++i) {
    const auto& l = rp.launches[i];
    for (plan::OpId id : l.ops) {
      for (plan::OpId d : c.p.ops[static_cast<size_t>(id)].deps) {
        if (c.p.ops[static_cast<size_t>(d)].rank != rank) continue;
        const int dl = launch_of.at(d);
        EXPECT_LE(dl, static_cast<int>(i));
        if (rp.launches[static_cast<size_t>(dl)].stream != l.stream) {
          ASSERT_GE(l.wait_for, dl) << "op " << id << " does not wait for op " << d;
        }
      }
    }
  }
  // Shapes and bytes are the Program's; operands fit their buffers.
  auto fits = [&](const exec::BufRef& r, int64_t bytes) {
    const int64_t size = rp.buffer_bytes[static_cast<size_t>(r.buf)][static_cast<size_t>(r.mb)];
    EXPECT_LE(r.offset_bytes + bytes, size) << exec::to_string(r.buf);
  };
  for (const auto& l : rp.launches) {
    const plan::Op& o = c.p.ops[static_cast<size_t>(l.ops.front())];
    switch (l.kind) {
      case LaunchKind::kGemm:
        EXPECT_EQ(l.m, o.m);
        EXPECT_EQ(l.n, o.n);
        EXPECT_EQ(l.k, o.k);
        fits(l.in, l.m * l.k * 2);
        fits(l.out, l.m * l.n * 2);
        EXPECT_LE(l.weight_offsets.at(0) + l.n * l.k * 2, rp.weight_bytes);
        break;
      case LaunchKind::kGroupedGemm:
        EXPECT_EQ(l.group_m, o.group_m) << "forced routing: the Program's expert loads";
        EXPECT_EQ(l.weight_offsets.size(), o.group_m.size());
        fits(l.out, l.m * l.n * 2);
        break;
      case LaunchKind::kAttention:
      case LaunchKind::kMlaAttention:
        EXPECT_EQ(l.batch, o.batch);
        EXPECT_EQ(l.heads, o.heads);
        EXPECT_GT(l.max_kv_len, 0);
        {
          int64_t kv = 0;
          for (int b = 0; b < l.batch; ++b) {
            const int32_t len = rp.kv_lens.at(static_cast<size_t>(l.kv_lens_offset + b));
            EXPECT_LT(len, l.max_kv_len);
            kv += len + (l.append_kv ? 1 : 0);
          }
          EXPECT_EQ(kv, o.kv_tokens) << "KV lengths sum to the op's kv_tokens";
        }
        break;
      case LaunchKind::kP2p:
        if (c.p.ops[static_cast<size_t>(l.ops[0])].kind == plan::OpKind::kExchange) {
          int64_t sum = 0;
          for (const auto& part : l.parts) {
            sum += part.bytes;
            fits(part.buf, part.bytes);
          }
          EXPECT_EQ(sum, c.p.ops[static_cast<size_t>(l.ops[0])].comm_bytes);
          break;
        }
        ASSERT_EQ(l.parts.size(), l.ops.size());
        for (size_t j = 0; j < l.parts.size(); ++j) {
          const plan::Op& q = c.p.ops[static_cast<size_t>(l.ops[j])];
          EXPECT_EQ(l.parts[j].bytes, q.comm_bytes);
          EXPECT_EQ(l.parts[j].peer, q.peer);
          EXPECT_EQ(l.parts[j].send, q.kind == plan::OpKind::kSend);
          fits(l.parts[j].buf, l.parts[j].bytes);
        }
        break;
      case LaunchKind::kCopy:
        fits(l.in, l.bytes);
        fits(l.out, l.bytes);
        break;
      default:
        break;
    }
  }
}

}  // namespace

TEST(LaunchPlan, TinyMaSeparationMapsEveryOp) {
  const Case c = compile("scenarios/examples/tiny-2gpu.yaml");
  ASSERT_EQ(c.p.rank_count(), 2);
  for (int r = 0; r < 2; ++r) check_rank_plan(c, r);
  const exec::RankPlan a = exec::build_rank_plan(c.p, 0);
  const exec::RankPlan m = exec::build_rank_plan(c.p, 1);
  int attn = 0, grouped = 0;
  for (const auto& l : a.launches) attn += l.kind == LaunchKind::kAttention;
  for (const auto& l : m.launches) grouped += l.kind == LaunchKind::kGroupedGemm;
  EXPECT_EQ(attn, c.p.steps * c.p.layers * c.p.micro_batches);
  EXPECT_EQ(grouped, 2 * c.p.steps * c.p.layers * c.p.micro_batches);
  EXPECT_EQ(m.kv_cache_bytes, 0) << "the MoE GPU holds no KV cache";
  EXPECT_GT(m.weight_bytes, a.weight_bytes);
}

TEST(LaunchPlan, PaperPlansMapEveryOp) {
  // 4 GPUs on the H100 host: 3:1 MA separation (3 replicas) and the co-located baseline with
  // tensor parallelism 2 (all-gather and reduce-scatter on the group communicators).
  const Case ma = compile(
      "paper", {"topology=host-4xh100", "plan.attention.gpus=3", "plan.attention.replicas=3",
                "plan.attention.head_parallel=1", "plan.moe.gpus=1", "workload.decode_steps=2"});
  for (int r = 0; r < ma.p.rank_count(); ++r) check_rank_plan(ma, r);
  const Case co =
      compile("paper-colocated", {"topology=host-4xh100", "plan.colocated.gpus=4",
                                  "plan.colocated.tensor_parallel=2", "workload.decode_steps=2"});
  for (int r = 0; r < co.p.rank_count(); ++r) check_rank_plan(co, r);
  const exec::RankPlan rp = exec::build_rank_plan(co.p, 0);
  EXPECT_FALSE(rp.groups.empty()) << "tensor-parallel collectives need a group communicator";
  bool gather = false, scatter = false;
  for (const auto& l : rp.launches) {
    gather |= l.kind == LaunchKind::kAllGather;
    scatter |= l.kind == LaunchKind::kReduceScatter;
  }
  EXPECT_TRUE(gather);
  EXPECT_TRUE(scatter);
}

// Issue 18: a plan with KV mirrors lowers them to one exchange of their bytes per step on the
// attention ranks; the survivors' Program after a failure (plan::recover_ranks) lowers on
// every rank; the recovery-work Program of the simulator (compile_recovery) is refused.
TEST(LaunchPlan, KvMirrorsAndTheSurvivorsProgramLower) {
  const std::vector<std::string> sets = {
      "topology=host-4xh100", "plan.attention.gpus=2", "plan.attention.replicas=2",
      "plan.attention.head_parallel=1", "plan.moe.gpus=2", "plan.moe.expert_replicas=2",
      "fault_tolerance.kv_copies=2", "workload.decode_steps=3"};
  const Case c = compile("paper", sets);
  for (int r = 0; r < c.p.rank_count(); ++r) check_rank_plan(c, r);
  const exec::RankPlan a = exec::build_rank_plan(c.p, 0);
  int mirrors = 0;
  for (const auto& l : a.launches) {
    const plan::Op& o = c.p.ops[static_cast<size_t>(l.ops.front())];
    if (o.role == plan::OpRole::kKvMirror) {
      ++mirrors;
      EXPECT_EQ(l.kind, LaunchKind::kP2p);
      ASSERT_FALSE(l.parts.empty());
      EXPECT_EQ(l.parts.front().peer, 1);  // the other replica
    }
  }
  EXPECT_EQ(mirrors, c.p.steps);
  // MoE rank 3 dies at step 1: ranks 0-2 run the rest on 3 ranks.
  plan::CompileOptions co;
  co.record_token_routing = true;
  const plan::RankRecovery rr = plan::recover_ranks(c.s, c.p, {3}, 1, co);
  ASSERT_EQ(rr.program.rank_count(), 3);
  EXPECT_TRUE(rr.shrink);
  const Case d{rr.remap.degraded, rr.program};
  for (int r = 0; r < 3; ++r) check_rank_plan(d, r);
  // An attention rank dies: one replica left, no mirror any more.
  const plan::RankRecovery ra = plan::recover_ranks(c.s, c.p, {1}, 2, co);
  ASSERT_EQ(ra.program.rank_count(), 3);
  for (const plan::Op& o : ra.program.ops) EXPECT_NE(o.role, plan::OpRole::kKvMirror);
  const Case e{ra.remap.degraded, ra.program};
  for (int r = 0; r < 3; ++r) check_rank_plan(e, r);
  const plan::Program work = plan::compile_recovery(rr.remap, 1);
  try {
    (void)exec::build_rank_plan(work, 0);
    ADD_FAILURE() << "the recovery-work Program lowered";
  } catch (const std::invalid_argument& ex) {
    EXPECT_NE(std::string(ex.what()).find("recovery work"), std::string::npos) << ex.what();
  }
}

// Warm-up (docs/executor.md): its first pass issues every launch of the timed run, so every
// cuBLAS GEMM shape runs once before timing; under Zipf routing later steps bring per-expert
// row counts that the first step does not have, which a first-step-only warm-up missed (the
// v09 stalls of docs/accuracy.md).
TEST(LaunchPlan, WarmupCoversEveryGemmShapeOfTheTimedRun) {
  const Case c = compile("scenarios/validation/v09-co4-b256-c2048-zipf.yaml");
  const exec::RankPlan rp = exec::build_rank_plan(c.p, 0);
  using Shape = std::tuple<int64_t, int64_t, int64_t>;
  auto shapes = [&](const std::vector<char>& on) {
    std::set<Shape> out;
    for (size_t i = 0; i < rp.launches.size(); ++i) {
      if (!on[i]) continue;
      const auto& l = rp.launches[i];
      if (l.kind == LaunchKind::kGemm) out.emplace(l.m, l.n, l.k);
      if (l.kind == LaunchKind::kGroupedGemm) {
        for (int32_t m : l.group_m) {
          if (m > 0) out.emplace(m, l.n, l.k);
        }
      }
    }
    return out;
  };
  const std::vector<char> first = exec::warmup_launches(rp, c.p.first_step, 0);
  const std::vector<char> later = exec::warmup_launches(rp, c.p.first_step, 1);
  ASSERT_EQ(first.size(), rp.launches.size());
  const std::set<Shape> timed = shapes(std::vector<char>(rp.launches.size(), 1));
  EXPECT_EQ(shapes(first), timed);
  const std::set<Shape> step0 = shapes(later);
  EXPECT_LT(step0.size(), timed.size()) << "the first step alone misses shapes of later steps";
  for (size_t i = 0; i < rp.launches.size(); ++i) {
    EXPECT_EQ(first[i], 1);
    EXPECT_EQ(later[i], rp.launches[i].step == c.p.first_step ? 1 : 0);
  }
}

TEST(LaunchPlan, SequenceParallelShardsDoNotAppend) {
  const Case c = compile(
      "paper", {"topology=host-4xh100", "plan.attention.gpus=2", "plan.attention.replicas=1",
                "plan.attention.head_parallel=1", "plan.attention.sequence_parallel=2",
                "plan.moe.gpus=2", "workload.decode_steps=1"});
  for (int r = 0; r < c.p.rank_count(); ++r) check_rank_plan(c, r);
  auto appends = [&](int rank) {
    for (const auto& l : exec::build_rank_plan(c.p, rank).launches) {
      if (l.kind == LaunchKind::kAttention) return l.append_kv;
    }
    return true;
  };
  EXPECT_TRUE(appends(0));
  EXPECT_FALSE(appends(1));
}

// A hand-made Program: an unknown element-wise op becomes a generic copy of hbm_bytes / 2, and
// a cross-stream cycle is refused.
TEST(LaunchPlan, HandMadeProgram) {
  const Case c = compile("scenarios/examples/tiny-2gpu.yaml", {"workload.decode_steps=1"});
  plan::Program p;
  p.steps = 1;
  p.layers = 1;
  p.micro_batches = 1;
  p.ranks.resize(1);
  p.stream_ops.resize(1);
  plan::Op a;
  a.id = 0;
  a.kind = plan::OpKind::kElementwise;
  a.name = "mystery";
  a.hbm_bytes = 4096;
  plan::Op b = a;
  b.id = 1;
  b.name = "other";
  p.ops = {a, b};
  p.stream_ops[0][plan::kCompute] = {0, 1};
  exec::RankPlan rp = exec::build_rank_plan(p, 0);
  ASSERT_EQ(rp.launches.size(), 2u);
  EXPECT_EQ(rp.launches[0].kind, LaunchKind::kCopy);
  EXPECT_EQ(rp.launches[0].bytes, 2048);
  EXPECT_EQ(rp.generic_copies, 2);

  // op 1 on the comm stream depends on op 0, and op 0 (compute) depends on op 1: a cycle.
  p.ops[1].stream = plan::kComm;
  p.ops[1].kind = plan::OpKind::kAllReduce;
  p.ops[1].collective = 0;
  p.groups = {plan::Group{"world", {0}}};
  p.collectives = {plan::Collective{plan::OpKind::kAllReduce, 0, 256, {1}, {}}};
  p.ops[0].deps = {1};
  p.ops[1].deps = {0};
  p.stream_ops[0][plan::kCompute] = {0};
  p.stream_ops[0][plan::kComm] = {1};
  EXPECT_THROW(exec::build_rank_plan(p, 0), std::invalid_argument);
  EXPECT_THROW(exec::build_rank_plan(p, 3), std::invalid_argument);
}

namespace {

Case compile_routed(const std::string& name, const std::vector<std::string>& sets,
                    bool per_sequence) {
  Case c{plan::load_scenario(name, sets), {}};
  plan::CompileOptions co;
  co.record_token_routing = true;
  co.per_sequence_routing = per_sequence;
  c.p = plan::compile(c.s, co);
  return c;
}

// Every kExchange op becomes one kP2p launch (one NCCL group call) whose parts are exactly
// the op's transfers: a send to each dst of a transfer it sends, a receive from each src of
// a transfer it receives, with the transfer's bytes.
void check_exchanges(const Case& c) {
  for (int rank = 0; rank < c.p.rank_count(); ++rank) {
    const exec::RankPlan rp = exec::build_rank_plan(c.p, rank);
    EXPECT_TRUE(rp.real_data_flow);
    for (const auto& l : rp.launches) {
      const auto& o = c.p.ops[static_cast<size_t>(l.ops.front())];
      if (o.kind != plan::OpKind::kExchange) continue;
      ASSERT_EQ(l.kind, LaunchKind::kP2p);
      ASSERT_EQ(l.ops.size(), 1u);
      std::multiset<std::tuple<bool, int, int64_t>> want, got;
      for (const auto& t : c.p.exchanges.at(static_cast<size_t>(o.exchange)).transfers) {
        if (t.src_op == o.id)
          want.insert({true, c.p.ops[static_cast<size_t>(t.dst_op)].rank, t.bytes});
        if (t.dst_op == o.id)
          want.insert({false, c.p.ops[static_cast<size_t>(t.src_op)].rank, t.bytes});
      }
      for (const auto& part : l.parts) got.insert({part.send, part.peer, part.bytes});
      EXPECT_EQ(want, got) << "op " << o.id;
      EXPECT_FALSE(want.empty());
    }
  }
}

}  // namespace

TEST(LaunchPlan, ExchangeOpsBecomeOneGroupCallWithTheirTransfers) {
  const Case c = compile_routed("scenarios/examples/tiny-2gpu.yaml", {}, false);
  bool any = false;
  for (const auto& o : c.p.ops) any = any || o.kind == plan::OpKind::kExchange;
  if (!any) GTEST_SKIP() << "the compiler emits no kExchange ops yet";
  check_exchanges(c);
  const Case ma =
      compile_routed("paper",
                     {"workload.batch=36", "workload.context=256", "workload.decode_steps=1",
                      "topology=host-4xh100", "plan.attention.gpus=3", "plan.attention.replicas=3",
                      "plan.attention.head_parallel=1", "plan.moe.gpus=1"},
                     true);
  check_exchanges(ma);
}

// DeepEP-style exchanges (plan.expert_exchange.mode hierarchical / low_latency) are simulated
// only: the lowering refuses them with a message naming the mode, rather than running them as
// NCCL group calls.
TEST(LaunchPlan, DeepEpStyleExchangesAreRefused) {
  for (const char* mode : {"hierarchical", "low_latency"}) {
    const Case c =
        compile("scenarios/examples/tiny-2gpu.yaml",
                {"workload.decode_steps=1", std::string("plan.expert_exchange.mode=") + mode});
    try {
      exec::build_rank_plan(c.p, 0);
      ADD_FAILURE() << mode << " lowered";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("simulated only"), std::string::npos) << e.what();
    }
  }
  const Case nccl = compile("scenarios/examples/tiny-2gpu.yaml",
                            {"workload.decode_steps=1", "plan.expert_exchange.mode=nccl"});
  EXPECT_NO_THROW(exec::build_rank_plan(nccl.p, 0));
}

// Real data flow: the MoE side's row maps cover each received row exactly once, and the
// forced routes give every attention rank its slice's token·top_k rows.
TEST(LaunchPlan, RealDataFlowRowMapsArePermutations) {
  const Case c =
      compile_routed("paper",
                     {"workload.batch=36", "workload.context=256", "workload.decode_steps=1",
                      "topology=host-4xh100", "plan.attention.gpus=3", "plan.attention.replicas=3",
                      "plan.attention.head_parallel=1", "plan.moe.gpus=1"},
                     true);
  for (int rank = 0; rank < c.p.rank_count(); ++rank) {
    const exec::RankPlan rp = exec::build_rank_plan(c.p, rank);
    EXPECT_EQ(rp.verify_blocker, "");
    for (const auto& l : rp.launches) {
      if (l.kind == LaunchKind::kGatherRows) {
        std::set<int32_t> rows(rp.int_pool.begin() + l.map_offset,
                               rp.int_pool.begin() + l.map_offset + l.tokens);
        EXPECT_EQ(static_cast<int64_t>(rows.size()), l.tokens);
        EXPECT_EQ(*rows.begin(), 0);  // MA: all received, rows 0 .. tokens-1
        EXPECT_EQ(*rows.rbegin(), l.tokens - 1);
      }
      if (l.kind == LaunchKind::kRouter) {
        ASSERT_GE(l.route_offset, 0);
        int64_t total = 0;
        const int64_t a = l.tokens * l.top_k;
        for (int32_t s = 0; s < l.slots; ++s)
          total += rp.int_pool[static_cast<size_t>(l.route_offset + 2 * a + s)];
        EXPECT_EQ(total, a);
      }
    }
    if (rank < 3) EXPECT_EQ(rp.outputs.size(), 2u);  // one per micro-batch
  }
  // Per-sequence routing: the same tokens route alike in the single-GPU reference.
  plan::CompileOptions co;
  co.record_token_routing = true;
  co.per_sequence_routing = true;
  plan::Scenario ref = c.s;
  ref.plan.kind = plan::PlanKind::kColocated;
  ref.plan.colocated.gpus = 1;
  ref.plan.colocated.tensor_parallel = 1;
  ref.plan.micro_batches = 1;
  const plan::Program rp = plan::compile(ref, co);
  std::map<std::pair<int, int64_t>, std::vector<int32_t>> a, b;
  const int k = c.s.model.top_k;
  for (const auto* prog : {&c.p, &rp}) {
    auto& m = prog == &c.p ? a : b;
    for (const auto& rs : prog->routing) {
      for (size_t i = 0; i * k < rs.token_experts.size(); ++i) {
        m[{rs.layer, rs.first_sequence + static_cast<int64_t>(i)}] =
            std::vector<int32_t>(rs.token_experts.begin() + static_cast<long>(i * k),
                                 rs.token_experts.begin() + static_cast<long>((i + 1) * k));
      }
    }
  }
  EXPECT_EQ(a.size(), 36u * 4);
  EXPECT_EQ(a, b);
}

// ---- real gating (--routing real): counts → sizes ------------------------------------------

// Two attention ranks, two MoE GPUs (MA, ranks 2 and 3) with 2 and 1 local experts.
TEST(RealGating, CountsToSizesByHand) {
  exec::GatingLayout lay;
  lay.attention_ranks = 2;
  lay.moe_base = 2;
  lay.moe_ranks = 2;
  lay.slot_base = {0, 2, 3};
  const std::vector<std::vector<int32_t>> counts = {{1, 2, 3}, {0, 4, 0}};
  const exec::RouteSizes sz = exec::route_sizes(lay, counts);
  EXPECT_EQ(sz.seg_rows, (std::vector<std::vector<int64_t>>{{3, 3}, {4, 0}}));
  EXPECT_EQ(sz.seg_begin, (std::vector<std::vector<int64_t>>{{0, 3}, {0, 4}}));
  EXPECT_EQ(sz.recv_begin, (std::vector<std::vector<int64_t>>{{0, 3}, {0, 3}}));
  EXPECT_EQ(exec::moe_group_m(lay, counts, 0), (std::vector<int32_t>{1, 6}));
  EXPECT_EQ(exec::moe_group_m(lay, counts, 1), (std::vector<int32_t>{3}));
  // GPU 0: expert 0 ← row 0 of rank 0; expert 1 ← rows 1,2 of rank 0, then rows 3..6 (rank 1).
  EXPECT_EQ(exec::moe_row_map(lay, sz, counts, 0), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(exec::moe_row_map(lay, sz, counts, 1), (std::vector<int32_t>{0, 1, 2}));
  // Dispatch 0 → 3: 3 rows from row 3 of rank 0's permute output, into row 0 at rank 3.
  auto p = exec::route_part(lay, sz, 0, false, true, 3);
  EXPECT_EQ(p.rows, 3);
  EXPECT_EQ(p.first_row, 3);
  p = exec::route_part(lay, sz, 3, false, false, 0);
  EXPECT_EQ(p.rows, 3);
  EXPECT_EQ(p.first_row, 0);
  // Return 2 → 1: rank 1's 4 rows, from row 3 of rank 2's return buffer, into row 0 at rank 1.
  p = exec::route_part(lay, sz, 2, true, true, 1);
  EXPECT_EQ(p.rows, 4);
  EXPECT_EQ(p.first_row, 3);
  p = exec::route_part(lay, sz, 1, true, false, 2);
  EXPECT_EQ(p.first_row, 0);
  EXPECT_THROW(exec::route_part(lay, sz, 0, false, true, 1), std::invalid_argument);
  EXPECT_THROW(exec::route_sizes(lay, {{1, 2, 3}}), std::invalid_argument);
  // Co-located: a rank's rows for itself stay local (negative map entries, no receive space).
  exec::GatingLayout col = lay;
  col.moe_base = 0;
  col.colocated = true;
  const exec::RouteSizes cs = exec::route_sizes(col, counts);
  EXPECT_EQ(cs.recv_begin[0], (std::vector<int64_t>{0, 0}));  // rank 0's rows are local
  EXPECT_EQ(exec::moe_row_map(col, cs, counts, 0), (std::vector<int32_t>{-1, -2, -3, 0, 1, 2, 3}));
}

// The run-time arithmetic reproduces the plan-time tables of the forced routing exactly: with
// the Program's slot counts, every transfer, group_m and row map comes out the same.
void check_real_gating_matches_forced(const Case& c) {
  const int n = c.p.rank_count();
  std::vector<exec::RankPlan> plans;
  for (int r = 0; r < n; ++r) plans.push_back(exec::build_rank_plan(c.p, r));
  const exec::GatingLayout& lay = plans[0].gating;
  ASSERT_TRUE(plans[0].real_data_flow);
  using Key = std::tuple<int, int, int>;
  auto key = [&](const exec::Launch& l) {
    const auto& o = c.p.ops[static_cast<size_t>(l.ops.front())];
    return Key{o.step, o.layer, o.micro_batch};
  };
  std::map<Key, std::vector<std::vector<int32_t>>> counts;
  for (int a = 0; a < lay.attention_ranks; ++a) {
    for (const auto& l : plans[a].launches) {
      if (l.kind != LaunchKind::kRouter) continue;
      auto& cm = counts[key(l)];
      cm.resize(static_cast<size_t>(lay.attention_ranks),
                std::vector<int32_t>(static_cast<size_t>(lay.slots()), 0));
      const int64_t at = l.route_offset + 2 * l.tokens * l.top_k;
      cm[a].assign(plans[a].int_pool.begin() + at, plans[a].int_pool.begin() + at + l.slots);
    }
  }
  ASSERT_FALSE(counts.empty());
  const int64_t row_bytes = c.s.model.hidden * 2;
  int checked_parts = 0, checked_maps = 0;
  for (int r = 0; r < n; ++r) {
    const int g = r - lay.moe_base;
    for (const auto& l : plans[r].launches) {
      const auto it = counts.find(key(l));
      if (it == counts.end()) continue;
      const exec::RouteSizes sz = exec::route_sizes(lay, it->second);
      const auto& o = c.p.ops[static_cast<size_t>(l.ops.front())];
      if (l.kind == LaunchKind::kP2p && (o.name == "dispatch" || o.name == "return")) {
        for (const auto& part : l.parts) {
          const auto pr = exec::route_part(lay, sz, r, o.name == "return", part.send, part.peer);
          EXPECT_EQ(pr.rows * row_bytes, part.bytes) << "op " << part.op;
          EXPECT_EQ(pr.first_row * row_bytes, part.buf.offset_bytes) << "op " << part.op;
          ++checked_parts;
        }
      }
      if (l.kind == LaunchKind::kGroupedGemm) {
        EXPECT_EQ(exec::moe_group_m(lay, it->second, g), l.group_m) << "op " << o.id;
      }
      if (l.kind == LaunchKind::kGatherRows) {
        const std::vector<int32_t> want(plans[r].int_pool.begin() + l.map_offset,
                                        plans[r].int_pool.begin() + l.map_offset + l.tokens);
        EXPECT_EQ(exec::moe_row_map(lay, sz, it->second, g), want) << "op " << o.id;
        ++checked_maps;
      }
    }
  }
  EXPECT_GT(checked_parts, 0);
  EXPECT_GT(checked_maps, 0);
}

TEST(RealGating, RunTimeSizesEqualForcedTablesMa) {
  check_real_gating_matches_forced(
      compile_routed("paper",
                     {"workload.batch=36", "workload.context=256", "workload.decode_steps=1",
                      "topology=host-4xh100", "plan.attention.gpus=2", "plan.attention.replicas=2",
                      "plan.attention.head_parallel=1", "plan.moe.gpus=2"},
                     false));
  check_real_gating_matches_forced(compile_routed("scenarios/examples/tiny-2gpu.yaml", {}, false));
}

TEST(RealGating, RunTimeSizesEqualForcedTablesColocated) {
  check_real_gating_matches_forced(compile_routed(
      "paper-colocated",
      {"topology=host-4xh100", "plan.colocated.gpus=4", "plan.colocated.tensor_parallel=1",
       "workload.batch=32", "workload.context=256", "workload.decode_steps=1"},
      false));
}

// A real-gating plan: routers carry each rank's expert → slot table, and the MoE side's
// buffers hold the worst case (every token of every attention rank, top_k rows each).
TEST(RealGating, PlanSizesBuffersForTheWorstCase) {
  const Case c = compile_routed("scenarios/examples/tiny-2gpu.yaml", {}, false);
  exec::PlanOptions po;
  po.real_gating = true;
  const int64_t h = c.s.model.hidden, k = c.s.model.top_k, E = c.s.model.experts;
  const int64_t per_mb = c.s.workload.batch / 2;  // 2 micro-batches, 1 attention GPU
  const exec::RankPlan att = exec::build_rank_plan(c.p, 0, po);
  const exec::RankPlan moe = exec::build_rank_plan(c.p, 1, po);
  EXPECT_TRUE(att.real_gating);
  int routers = 0;
  for (const auto& l : att.launches) {
    if (l.kind != LaunchKind::kRouter) continue;
    ++routers;
    EXPECT_TRUE(l.real_gating);
    ASSERT_GE(l.route_offset, 0);
    for (int64_t e = 0; e < E; ++e) {
      const int32_t slot = att.int_pool[static_cast<size_t>(l.route_offset + e)];
      EXPECT_GE(slot, 0);
      EXPECT_LT(slot, l.slots);
    }
  }
  EXPECT_EQ(routers, c.p.layers * c.p.steps * 2);
  const auto bytes = [&](exec::Buf b, int mb) {
    return moe.buffer_bytes[static_cast<size_t>(b)][static_cast<size_t>(mb)];
  };
  for (int mb = 0; mb < 2; ++mb) {
    EXPECT_GE(bytes(exec::Buf::kRecv, mb), per_mb * k * h * 2);
    EXPECT_GE(bytes(exec::Buf::kRetSend, mb), per_mb * k * h * 2);
    EXPECT_GE(bytes(exec::Buf::kExpertIn, mb), per_mb * k * h * 2);
    EXPECT_GE(bytes(exec::Buf::kExpertAct, mb), per_mb * k * c.s.model.expert_ffn * 2);
    EXPECT_GE(bytes(exec::Buf::kRealRowMap, mb), per_mb * k * 4);
  }
  // The worst case is in the memory the rank checks before allocating.
  const exec::RankPlan forced = exec::build_rank_plan(c.p, 1);
  EXPECT_GE(moe.memory().total(), forced.memory().total());
  // Without the real data flow there is nothing to gate.
  const Case plain = compile("scenarios/examples/tiny-2gpu.yaml");
  EXPECT_THROW(exec::build_rank_plan(plain.p, 0, po), std::invalid_argument);
}

// ---- The contract: the compiler states every op's meaning; the lowering reads only that ----

namespace {

// Every scenario file under scenarios/ (sweep files excepted), sorted.
using masep::testing::scenario_files;

// The ranks a test lowers: all of a small Program; for a large one the first and last
// attention ranks and the first and last MoE ranks (lowering every one of 1,024 ranks would
// take minutes under the sanitizers; the ranks of one role are built alike).
std::vector<int> ranks_to_lower(const plan::Program& p) {
  const int n = p.rank_count();
  if (n <= 64) {
    std::vector<int> all(static_cast<size_t>(n));
    for (int r = 0; r < n; ++r) all[static_cast<size_t>(r)] = r;
    return all;
  }
  std::set<int> some = {0, p.layout.attention_ranks - 1, p.layout.moe_base, n - 1};
  return {some.begin(), some.end()};
}

}  // namespace

// Every op of every scenario under scenarios/ has a role and lowers to a typed launch (none
// generic), forced and real gating alike, on the CPU: this test runs in the CUDA-off
// sanitizer tree, so a Program the executor cannot run fails CI on a laptop too.
TEST(Contract, EveryScenarioLowersToTypedLaunches) {
  int scenarios = 0;
  for (const std::string& f : scenario_files()) {
    SCOPED_TRACE(f);
    // One step; big models one layer (the layers are compiled alike).
    // No injected faults (a fault at a later step would be past the one-step run); the
    // plan's redundancy (KV mirrors) stays.
    std::vector<std::string> sets = {"workload.decode_steps=1", "faults=[]"};
    const plan::Scenario full = plan::load_scenario(f, sets);
    const models::Model& fm = full.model;
    const bool mla_other_widths =
        fm.is_mla() && (fm.mla.kv_lora_rank != 512 || fm.mla.qk_rope_head_dim != 64);
    const bool bad_precision = !exec::executor_runs_precision(fm.precision);
    const bool mla_fp8 = fm.is_mla() && fm.precision.weights != models::DType::kBF16;
    const bool dense_fp8 = fm.dense_layers > 0 && fm.precision.weights != models::DType::kBF16;
    if (mla_other_widths || bad_precision || mla_fp8 || dense_fp8) {
      // Issue 15's model features that the executor has no kernels for: refused with a
      // message naming the feature (checked on the first and last rank).
      sets.push_back("model.layers=" + std::to_string(fm.dense_layers + 1));
      const plan::Program p = plan::compile(plan::load_scenario(f, sets));
      for (int r : {0, p.rank_count() - 1}) {
        try {
          exec::build_rank_plan(p, r);
          ADD_FAILURE() << "rank " << r << ": expected masep exec to refuse model " << fm.name;
        } catch (const std::invalid_argument& e) {
          const std::string w = e.what();
          EXPECT_NE(w.find("masep exec cannot run model " + fm.name), std::string::npos) << w;
          const char* feature = mla_other_widths ? "MLA attention"
                                : bad_precision  ? "precision other than bf16"
                                : mla_fp8        ? "MLA attention with fp8 weights"
                                                 : "dense FFN layers with fp8 weights";
          EXPECT_NE(w.find(feature), std::string::npos) << w;
        }
      }
      continue;
    }
    // Dense models keep their dense layers and one MoE layer.
    if (full.model.layers > 4) {
      sets.push_back("model.layers=" + std::to_string(std::max(2, fm.dense_layers + 1)));
    }
    if (full.plan.expert_tensor_parallel() > 1) {
      // Expert tensor parallelism (issue 15): refused by name, whole-experts lowering only.
      const plan::Program p = plan::compile(plan::load_scenario(f, sets));
      for (int r : {0, p.rank_count() - 1}) {
        try {
          exec::build_rank_plan(p, r);
          ADD_FAILURE() << "rank " << r << ": expected masep exec to refuse expert TP";
        } catch (const std::invalid_argument& e) {
          EXPECT_NE(std::string(e.what()).find("masep exec cannot run expert tensor parallelism"),
                    std::string::npos)
              << e.what();
        }
      }
      continue;
    }
    Case c{plan::load_scenario(f, sets), {}};
    plan::CompileOptions co;
    co.record_token_routing = true;
    c.p = plan::compile(c.s, co);
    for (const plan::Op& o : c.p.ops) {
      ASSERT_NE(o.role, plan::OpRole::kOther) << "op " << o.id << " (" << o.name << ") has no role";
    }
    // KV mirrors (issue 18) lower to a plain exchange of their bytes (checked below with the
    // other ops); recovery work (compile_recovery's roles) never appears in a scenario's
    // Program: the executor recovers for real (RecoveryWorkIsRefused).
    for (int gate = 0; gate < 2; ++gate) {
      for (int r : ranks_to_lower(c.p)) {
        exec::PlanOptions po;
        po.real_gating = gate == 1;
        exec::RankPlan rp;
        try {
          rp = exec::build_rank_plan(c.p, r, po);
        } catch (const std::invalid_argument& e) {
          // Real gating is refused, with a reason, where the data flow is not the model's.
          ASSERT_TRUE(gate == 1 && c.p.model.shared_experts > 0)
              << "rank " << r << ": " << e.what();
          continue;
        }
        EXPECT_EQ(rp.generic_copies, 0) << "rank " << r;
        if (gate == 0 && c.p.rank_count() <= 64) check_rank_plan(c, r);
      }
    }
    ++scenarios;
  }
  EXPECT_GE(scenarios, 15);
}

// A Program read back from its JSON dump is the same Program: same dump, same launches on
// every rank (the executor's ranks run the launcher's file).
TEST(Contract, DumpedProgramLowersAlike) {
  for (const char* name :
       {"scenarios/examples/tiny-2gpu.yaml", "scenarios/validation/v07-ma31sp-b128-c8192.yaml",
        "scenarios/validation/v09-co4-b256-c2048-zipf.yaml"}) {
    SCOPED_TRACE(name);
    Case c{plan::load_scenario(name, {"workload.decode_steps=2"}), {}};
    plan::CompileOptions co;
    co.record_token_routing = true;
    c.p = plan::compile(c.s, co);
    std::ostringstream a;
    plan::write_program_json(c.p, a);
    std::istringstream in(a.str());
    const plan::Program back = plan::read_program_json(in, "dump");
    std::ostringstream b;
    plan::write_program_json(back, b);
    EXPECT_EQ(a.str(), b.str());
    for (int r = 0; r < c.p.rank_count(); ++r) {
      EXPECT_EQ(exec::describe(exec::build_rank_plan(c.p, r), c.p),
                exec::describe(exec::build_rank_plan(back, r), back));
      const auto x = exec::build_rank_plan(c.p, r), y = exec::build_rank_plan(back, r);
      EXPECT_EQ(x.int_pool, y.int_pool);
      EXPECT_EQ(x.kv_lens, y.kv_lens);
      EXPECT_EQ(x.weight_bytes, y.weight_bytes);
    }
  }
}

// A broken contract is an error that names the op, never a silent generic copy.
TEST(Contract, BrokenRolesAreErrors) {
  Case c = compile("scenarios/examples/tiny-2gpu.yaml", {"workload.decode_steps=1"});
  auto find = [&](plan::OpRole role) -> plan::Op& {
    for (plan::Op& o : c.p.ops) {
      if (o.role == role) return o;
    }
    throw std::logic_error("no op of that role");
  };
  {
    Case d = c;
    plan::Op& o = d.p.ops[static_cast<size_t>(find(plan::OpRole::kQkv).id)];
    o.role = plan::OpRole::kAttention;  // a GEMM claiming to be attention
    try {
      exec::build_rank_plan(d.p, o.rank);
      ADD_FAILURE() << "expected an error";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("op " + std::to_string(o.id)), std::string::npos)
          << e.what();
    }
  }
  {
    Case d = c;
    plan::Op& o = d.p.ops[static_cast<size_t>(find(plan::OpRole::kNorm).id)];
    o.n = 7;  // not the hidden size
    EXPECT_THROW(exec::build_rank_plan(d.p, o.rank), std::invalid_argument);
  }
  {
    Case d = c;
    plan::Op& o = d.p.ops[static_cast<size_t>(find(plan::OpRole::kExpertUp).id)];
    EXPECT_THROW(
        {
          o.role = plan::OpRole::kRouter;  // a grouped GEMM claiming to be the router
          exec::build_rank_plan(d.p, o.rank);
        },
        std::invalid_argument);
  }
  // Names are labels only: renaming every op changes no launch.
  Case d = c;
  for (plan::Op& o : d.p.ops) o.name = "x";
  for (int r = 0; r < c.p.rank_count(); ++r) {
    const auto a = exec::build_rank_plan(c.p, r), b = exec::build_rank_plan(d.p, r);
    EXPECT_EQ(a.launches.size(), b.launches.size());
    EXPECT_EQ(a.int_pool, b.int_pool);
    EXPECT_EQ(a.weight_bytes, b.weight_bytes);
    EXPECT_EQ(a.generic_copies, 0);
    EXPECT_EQ(b.generic_copies, 0);
  }
}

// Uneven data-parallel splits (batch 32 over 3 replicas × 2 micro-batches: chunks of 6 and 5):
// the compiler's partition is in the Program, the chunks cover every sequence once, and
// every rank lowers with its own chunk sizes.
TEST(Contract, UnevenBatchSplit) {
  const Case c = compile("scenarios/validation/v05-ma31rep-b48-c2048.yaml",
                         {"workload.batch=32", "workload.decode_steps=2"});
  const auto& lay = c.p.layout;
  ASSERT_EQ(lay.replicas, 3);
  ASSERT_EQ(lay.batch, 32);
  std::vector<int> covered(32, 0);
  std::set<int64_t> sizes;
  for (int a = 0; a < lay.attention_ranks; ++a) {
    const auto& ri = c.p.ranks[static_cast<size_t>(a)];
    ASSERT_EQ(static_cast<int>(ri.batches.size()), c.p.micro_batches);
    int64_t sum = 0;
    for (const auto& b : ri.batches) {
      sizes.insert(b.sequences);
      sum += b.sequences;
      EXPECT_EQ(b.slice_first, b.first_sequence + b.slice_offset);
      if (ri.group_index == 0) {
        for (int64_t q = b.first_sequence; q < b.first_sequence + b.sequences; ++q) covered[q]++;
      }
    }
    EXPECT_EQ(sum, ri.sequences);
  }
  EXPECT_EQ(sizes, (std::set<int64_t>{5, 6}));
  for (int q = 0; q < 32; ++q) EXPECT_EQ(covered[q], 1) << "sequence " << q;
  for (int r = 0; r < c.p.rank_count(); ++r) check_rank_plan(c, r);
}

// Issue 15: model features the simulator models but the executor cannot lower are refused by
// build_rank_plan (what `masep exec` runs per rank) with a message naming the feature.
// FP8 weights (model.precision.weights fp8, the rest bf16): the qkv, out_proj and expert
// matrices are stored block-scaled (n·k e4m3 bytes + one fp32 scale per 128 × 128 block, see
// kernels/weight_format.hpp), the router gate and the norms stay bf16, and the weight arena
// shrinks accordingly; every op still lowers to a typed launch.
TEST(Contract, Fp8WeightsLowerToBlockScaledMatrices) {
  const Case bf = compile("scenarios/examples/tiny-1gpu.yaml", {"workload.decode_steps=1"});
  const Case f8 = compile("scenarios/examples/tiny-1gpu.yaml",
                          {"workload.decode_steps=1", "model.precision.weights=fp8"});
  check_rank_plan(f8, 0);
  const exec::RankPlan rb = exec::build_rank_plan(bf.p, 0);
  const exec::RankPlan r8 = exec::build_rank_plan(f8.p, 0);
  ASSERT_EQ(rb.launches.size(), r8.launches.size());
  int fp8_gemms = 0;
  for (size_t i = 0; i < r8.launches.size(); ++i) {
    const exec::Launch& l = r8.launches[i];
    const plan::OpRole role = f8.p.ops[static_cast<size_t>(l.ops.front())].role;
    const bool matrix = role == plan::OpRole::kQkv || role == plan::OpRole::kOutProj ||
                        role == plan::OpRole::kExpertUp || role == plan::OpRole::kExpertDown;
    EXPECT_EQ(l.weight_format == kernels::WeightFormat::kFP8Block, matrix) << plan::to_string(role);
    EXPECT_EQ(rb.launches[i].weight_format, kernels::WeightFormat::kBF16);
    fp8_gemms += matrix;
  }
  // tiny-1gpu: 2 layers × (qkv, out_proj, expert up, expert down).
  EXPECT_EQ(fp8_gemms, 8);
  // Bytes: hidden 1024, 8 heads × 128 (MHA): qkv [3072, 1024], out_proj [1024, 1024]; 8 experts
  // up [4096, 1024] and down [1024, 2048]. bf16 2·n·k; fp8 n·k + 4·ceil(n/128)·ceil(k/128).
  auto fp8b = [](int64_t n, int64_t k) {
    return n * k + 4 * ((n + 127) / 128) * ((k + 127) / 128);
  };
  int64_t want_saved = 0;
  for (auto [n, k] : std::vector<std::pair<int64_t, int64_t>>{{3072, 1024}, {1024, 1024}}) {
    want_saved += 2 * n * k - fp8b(n, k);
  }
  want_saved += 8 * (2 * 4096 * 1024 - fp8b(4096, 1024) + 2 * 1024 * 2048 - fp8b(1024, 2048));
  want_saved *= 2;  // layers
  // The arena rounds each tensor to 256 bytes; the fp8 sizes above are multiples of 256.
  EXPECT_EQ(rb.weight_bytes - r8.weight_bytes, want_saved);
  int fp8_tensors = 0;
  for (const exec::WeightTensor& w : r8.weight_tensors) {
    if (w.format != kernels::WeightFormat::kFP8Block) continue;
    ++fp8_tensors;
    EXPECT_EQ(w.elements, w.rows * w.cols);
    EXPECT_EQ(w.offset_bytes % 256, 0);
  }
  EXPECT_EQ(fp8_tensors, 2 * (2 + 2 * 8));
}

TEST(Contract, RefusesModelFeaturesItCannotRun) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"model.precision.kv_cache=fp8"}, "precision other than bf16 (weights bf16, kv_cache fp8"},
      {{"model.precision.weights=int8"}, "precision other than bf16 (weights int8"},
      {{"model.dtype=fp16"}, "precision other than bf16"},
      {{"model.dense_layers=1", "model.dense_ffn=512", "model.precision.weights=fp8"},
       "dense FFN layers with fp8 weights (dense_layers: 1"},
      {{"model.sliding_window=64"}, "sliding-window attention (sliding_window: 64"},
      {{"model.attention=mla", "model.kv_heads=1", "model.head_dim=96",
        "model.mla={kv_lora_rank: 128, qk_nope_head_dim: 64, qk_rope_head_dim: 32, "
        "v_head_dim: 64}"},
       "MLA attention with kv_lora_rank 128, qk_rope_head_dim 32"},
  };
  for (const auto& [sets, feature] : cases) {
    std::vector<std::string> all = sets;
    all.push_back("workload.decode_steps=1");
    const Case c = compile("scenarios/examples/tiny-2gpu.yaml", all);
    for (int r = 0; r < c.p.rank_count(); ++r) {
      try {
        exec::build_rank_plan(c.p, r);
        ADD_FAILURE() << feature << ": rank " << r << " was not refused";
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(feature), std::string::npos) << e.what();
      }
    }
  }
}

// Dense FFN layers (issue 15) lower to launch kinds that exist: dense_up a kGemm from the
// normed slice into kExpertMid, dense_act a SwiGLU / GELU into kExpertAct, dense_down a kGemm
// that adds the residual (kHidden's slice rows) and writes where combine writes a MoE layer's
// output: in place for a one-GPU attention group, kLayerOut (the next all-gather's input) for
// a larger one. MoE ranks have nothing in a dense layer; real gating still lowers.
TEST(LaunchPlan, DenseLayersLowerToGemmsWithTheResidual) {
  const std::vector<std::vector<std::string>> variants = {
      {},
      {"plan={kind: ma_separation, attention: {gpus: 2, head_parallel: 2}, moe: {gpus: 1}, "
       "micro_batches: 2}"},
      {"plan={kind: colocated, colocated: {gpus: 1}, micro_batches: 2}"},
      {"model.activation=gelu"},
  };
  for (const auto& v : variants) {
    std::vector<std::string> sets = v;
    for (const char* x : {"model.dense_layers=1", "model.dense_ffn=512", "workload.decode_steps=2"})
      sets.push_back(x);
    const Case c = compile_routed("scenarios/examples/tiny-2gpu.yaml", sets, false);
    SCOPED_TRACE(v.empty() ? std::string("MA 1:1") : v.front());
    const bool gelu = c.p.model.activation == models::Activation::kGELU;
    const int t = c.p.layout.group_size, h = 1024, f = 512;
    for (int r = 0; r < c.p.rank_count(); ++r) check_rank_plan(c, r);
    int ups = 0, acts = 0, downs = 0;
    for (int r = 0; r < c.p.layout.attention_ranks; ++r) {
      const exec::RankPlan rp = exec::build_rank_plan(c.p, r);
      for (const exec::Launch& l : rp.launches) {
        const plan::Op& o = c.p.ops[static_cast<size_t>(l.ops.front())];
        const plan::RankBatch& b = c.p.ranks[static_cast<size_t>(r)].batches[o.micro_batch];
        if (o.layer == 0) {
          EXPECT_NE(o.role, plan::OpRole::kRouter) << "a dense layer routes no token";
        }
        switch (o.role) {
          case plan::OpRole::kDenseUp:
            ++ups;
            EXPECT_EQ(l.kind, LaunchKind::kGemm);
            EXPECT_EQ(l.in.buf, exec::Buf::kSliceNormed);
            EXPECT_EQ(l.out.buf, exec::Buf::kExpertMid);
            EXPECT_EQ(l.m, b.slice_tokens);
            EXPECT_EQ(l.n, gelu ? f : 2 * f);
            EXPECT_EQ(l.k, h);
            EXPECT_FALSE(l.residual);
            break;
          case plan::OpRole::kDenseAct:
            ++acts;
            EXPECT_EQ(l.kind, gelu ? LaunchKind::kGelu : LaunchKind::kSwiGlu);
            EXPECT_EQ(l.tokens, b.slice_tokens);
            EXPECT_EQ(l.cols, f);
            EXPECT_EQ(l.out.buf, exec::Buf::kExpertAct);
            break;
          case plan::OpRole::kDenseDown:
            ++downs;
            EXPECT_EQ(l.kind, LaunchKind::kGemm);
            EXPECT_TRUE(l.residual);
            EXPECT_EQ(l.in.buf, exec::Buf::kExpertAct);
            EXPECT_EQ(l.n, h);
            EXPECT_EQ(l.k, f);
            EXPECT_EQ(l.aux.buf, exec::Buf::kHidden);
            EXPECT_EQ(l.aux.offset_bytes, b.slice_offset * h * 2);
            if (t == 1) {
              EXPECT_EQ(l.out.buf, exec::Buf::kHidden);
              EXPECT_EQ(l.out.offset_bytes, l.aux.offset_bytes);
            } else {
              EXPECT_EQ(l.out.buf, exec::Buf::kLayerOut);
            }
            EXPECT_NE(l.weight_offsets.at(0), -1);
            break;
          default:
            EXPECT_FALSE(l.residual);
            break;
        }
      }
      exec::PlanOptions po;
      po.real_gating = true;
      EXPECT_NO_THROW((void)exec::build_rank_plan(c.p, r, po));
    }
    // One of each per (step, micro-batch, attention rank) of the one dense layer.
    const int want = c.p.steps * c.p.micro_batches * c.p.layout.attention_ranks;
    EXPECT_EQ(ups, want);
    EXPECT_EQ(acts, want);
    EXPECT_EQ(downs, want);
    if (c.p.layout.separated) {
      for (const plan::Op& o : c.p.ops) {
        if (o.rank >= c.p.layout.moe_base) EXPECT_NE(o.layer, 0) << "MoE work in a dense layer";
      }
    }
  }
}

// Shared experts of their own width (issue 15): kSharedUp / kSharedDown are grouped GEMMs over
// the rows after the routed experts' in kExpertIn / kExpertOut (so moe_unpermute reads every
// row alike), with the shared expert's own weights (one identity on every MoE GPU holding it).
TEST(LaunchPlan, SharedExpertsOfTheirOwnWidthFollowTheRoutedRows) {
  const Case c = compile("scenarios/examples/tiny-2gpu.yaml",
                         {"model.shared_experts=1", "model.shared_expert_ffn=1536",
                          "plan.moe.gpus=2", "workload.decode_steps=2"});
  const int h = 1024, sf = 1536;
  for (int r = 0; r < c.p.rank_count(); ++r) check_rank_plan(c, r);
  std::map<int, std::set<uint64_t>> shared_tags;  // layer → tags of shared_up weights
  for (int r = c.p.layout.moe_base; r < c.p.rank_count(); ++r) {
    const exec::RankPlan rp = exec::build_rank_plan(c.p, r);
    std::map<std::tuple<int, int, int>, int64_t> routed;  // (step, layer, mb) → routed rows
    int shared_ups = 0;
    for (const exec::Launch& l : rp.launches) {
      const plan::Op& o = c.p.ops[static_cast<size_t>(l.ops.front())];
      const auto key = std::make_tuple(o.step, o.layer, o.micro_batch);
      auto size = [&](const exec::BufRef& b) {
        return rp.buffer_bytes[static_cast<size_t>(b.buf)][static_cast<size_t>(b.mb)];
      };
      switch (o.role) {
        case plan::OpRole::kExpertUp:
          routed[key] = l.m;
          EXPECT_EQ(l.group_m.size(), c.p.ranks[static_cast<size_t>(r)].experts.size());
          break;
        case plan::OpRole::kSharedUp:
        case plan::OpRole::kSharedDown: {
          const bool up = o.role == plan::OpRole::kSharedUp;
          ASSERT_TRUE(routed.count(key)) << "shared GEMM before the routed ones";
          EXPECT_EQ(l.kind, LaunchKind::kGroupedGemm);
          ASSERT_EQ(l.group_m.size(), 1u);
          EXPECT_EQ(l.n, up ? 2 * sf : h);
          EXPECT_EQ(l.k, up ? h : sf);
          const exec::BufRef& rows_ref = up ? l.in : l.out;
          EXPECT_EQ(rows_ref.buf, up ? exec::Buf::kExpertIn : exec::Buf::kExpertOut);
          EXPECT_EQ(rows_ref.offset_bytes, routed[key] * h * 2);
          EXPECT_GE(size(rows_ref), rows_ref.offset_bytes + l.m * h * 2);
          EXPECT_EQ(l.m, o.group_m[0]);
          if (up) {
            ++shared_ups;
            EXPECT_EQ(l.out.buf, exec::Buf::kExpertMid);
            for (const exec::WeightTensor& w : rp.weight_tensors) {
              if (w.offset_bytes == l.weight_offsets[0]) shared_tags[o.layer].insert(w.tag);
            }
          }
          break;
        }
        case plan::OpRole::kSharedAct:
          EXPECT_EQ(l.kind, LaunchKind::kSwiGlu);
          EXPECT_EQ(l.cols, sf);
          EXPECT_EQ(l.in.buf, exec::Buf::kExpertMid);
          EXPECT_EQ(l.out.buf, exec::Buf::kExpertAct);
          break;
        default:
          break;
      }
    }
    EXPECT_GT(shared_ups, 0) << "rank " << r;
  }
  // Both MoE GPUs hold the one shared expert of a layer: the same seeded tensor.
  ASSERT_EQ(shared_tags.size(), 2u);
  for (const auto& [layer, tags] : shared_tags) EXPECT_EQ(tags.size(), 1u) << "layer " << layer;
}

// MLA (issue 15): DeepSeek-V3's attention widths lower to the MLA launches on the attention
// side (co-located on one GPU, MA separation on two, with q_lora_rank 0 as in DeepSeek-V2-Lite),
// with buffers of the latent sizes and one latent cache block per layer.
TEST(LaunchPlan, MlaLowersToItsLaunches) {
  const std::vector<std::vector<std::string>> variants = {
      {},
      {"plan={kind: ma_separation, attention: {gpus: 1, head_parallel: 1, replicas: 1}, "
       "moe: {gpus: 1, placement: round_robin}, micro_batches: 2}"},
      {"model.mla.q_lora_rank=0", "model.heads=16"},
  };
  for (const auto& v : variants) {
    std::vector<std::string> sets = v;
    sets.push_back("workload.decode_steps=2");
    const Case c = compile("scenarios/examples/deepseek-v3-mini-1gpu.yaml", sets);
    SCOPED_TRACE(c.s.name + " with " + std::to_string(v.size()) + " overrides");
    const models::Model& m = c.p.model;
    for (int r = 0; r < c.p.rank_count(); ++r) check_rank_plan(c, r);
    const exec::RankPlan rp = exec::build_rank_plan(c.p, 0);
    const int64_t heads = m.heads, kl = 512, dr = 64, dn = 128, dv = 128, ql = m.mla.q_lora_rank;
    const int64_t T = c.p.ranks[0].batches[0].sequences;
    std::map<LaunchKind, int> count;
    for (const exec::Launch& l : rp.launches) {
      count[l.kind]++;
      const plan::Op& o = c.p.ops[static_cast<size_t>(l.ops.front())];
      auto size = [&](const exec::BufRef& b) {
        return rp.buffer_bytes[static_cast<size_t>(b.buf)][static_cast<size_t>(b.mb)];
      };
      switch (l.kind) {
        case LaunchKind::kMlaDown:
          EXPECT_EQ(l.mla.q_cols, ql > 0 ? ql : heads * (dn + dr));
          EXPECT_EQ(l.n, l.mla.q_cols + kl + dr);
          EXPECT_EQ(l.out.buf, exec::Buf::kMlaCq);
          EXPECT_EQ(l.in2.buf, exec::Buf::kMlaCkv);
          EXPECT_EQ(l.aux.buf, exec::Buf::kMlaKRope);
          EXPECT_GE(size(l.in2), T * kl * 2);
          EXPECT_LE(l.weight_offsets.at(0) + l.n * l.k * 2, rp.weight_bytes);
          break;
        case LaunchKind::kMlaAbsorb:
          EXPECT_EQ(l.heads, heads);
          EXPECT_EQ(l.m, T);
          if (o.role == plan::OpRole::kMlaAbsorbK) {
            EXPECT_EQ(l.n, kl);
            EXPECT_EQ(l.k, dn);
            EXPECT_EQ(l.in.buf, ql > 0 ? exec::Buf::kMlaQ : exec::Buf::kMlaCq);
            EXPECT_EQ(l.in_ld, heads * (dn + dr));
            EXPECT_EQ(l.in_stride, dn);
            EXPECT_EQ(l.out.buf, exec::Buf::kMlaQLat);
            EXPECT_EQ(l.out_stride, T * kl);
          } else {
            EXPECT_EQ(l.n, dv);
            EXPECT_EQ(l.k, kl);
            EXPECT_EQ(l.in.buf, exec::Buf::kAttnOut);
            EXPECT_EQ(l.out.buf, exec::Buf::kMlaV);
            EXPECT_EQ(l.out_ld, heads * dv);
          }
          // The last head's last row fits its buffers.
          EXPECT_LE(((heads - 1) * l.in_stride + (l.m - 1) * l.in_ld + l.k) * 2, size(l.in));
          EXPECT_LE(((heads - 1) * l.out_stride + (l.m - 1) * l.out_ld + l.n) * 2, size(l.out));
          EXPECT_LE(l.weight_offsets.at(0) + heads * l.n * l.k * 2, rp.weight_bytes);
          break;
        case LaunchKind::kMlaAttention:
          EXPECT_EQ(l.head_dim, kl + dr);
          EXPECT_EQ(l.in.buf, exec::Buf::kMlaQLat);
          EXPECT_EQ(l.in3.buf, exec::Buf::kMlaCkv);
          EXPECT_EQ(l.in4.buf, exec::Buf::kMlaKRope);
          EXPECT_GE(size(l.out), T * heads * kl * 2);
          EXPECT_LE(l.k_cache_offset + int64_t{l.batch} * l.max_kv_len * (kl + dr) * 2,
                    rp.kv_cache_bytes);
          EXPECT_GE(size(l.aux), static_cast<int64_t>(kernels::mla_attention_workspace_bytes(
                                     l.batch, l.heads, l.num_splits)));
          break;
        case LaunchKind::kMlaRope:
          EXPECT_EQ(l.head_dim, dr);
          EXPECT_GE(l.kv_lens_offset, 0);
          break;
        case LaunchKind::kGemm:
          if (o.role == plan::OpRole::kOutProj) {
            EXPECT_EQ(l.in.buf, exec::Buf::kMlaV);
            EXPECT_EQ(l.k, heads * dv);
          }
          break;
        default:
          break;
      }
    }
    const int per_layer = c.p.steps * m.layers * c.p.micro_batches;
    EXPECT_EQ(count[LaunchKind::kMlaAttention], per_layer);
    EXPECT_EQ(count[LaunchKind::kMlaDown], per_layer);
    EXPECT_EQ(count[LaunchKind::kMlaNorm], per_layer);
    EXPECT_EQ(count[LaunchKind::kMlaRope], per_layer);
    EXPECT_EQ(count[LaunchKind::kMlaAbsorb], 2 * per_layer);
    EXPECT_EQ(count[LaunchKind::kAttention], 0);
    // One latent block per (layer, micro-batch): [batch][1][max_len][576], no V.
    ASSERT_EQ(static_cast<int>(rp.kv_blocks.size()), m.layers * c.p.micro_batches);
    for (const exec::KvBlock& b : rp.kv_blocks) {
      EXPECT_FALSE(b.value);
      EXPECT_EQ(b.kv_heads, 1);
      EXPECT_EQ(b.head_dim, kl + dr);
    }
    if (c.p.layout.separated) {  // the MoE GPU has no MLA launch and no cache
      const exec::RankPlan moe = exec::build_rank_plan(c.p, 1);
      for (const exec::Launch& l : moe.launches) EXPECT_NE(l.kind, LaunchKind::kMlaAttention);
      EXPECT_EQ(moe.kv_cache_bytes, 0);
    }
  }
}
