// simulate(): compute model, streams and dependencies, send/recv, the MegaScale-Infer
// ping-pong closed form, bandwidth monotonicity, determinism, interference and bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>

#include "masep/plan/program.hpp"
#include "masep/sim/compute_model.hpp"
#include "masep/sim/event_queue.hpp"
#include "masep/sim/parameters.hpp"
#include "masep/sim/platform.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/sim/synthetic.hpp"
#include "sim_test_util.hpp"

namespace masep::sim {
namespace {

using plan::OpId;
using plan::OpKind;

// With launch overhead 0 and eff_hbm 0.8, a byte-bound op of T ns reads T·800 bytes on the
// 1000 GB/s test GPU.
int64_t bytes_for_ns(int64_t t) { return t * 800; }
SimOptions no_launch() {
  SimOptions o;
  o.params = {{"launch_overhead_ns", 0}};
  return o;
}

// Pops q's next event into *e and checks that it is the smallest (time, push index) of the
// reference, which it then removes from it (the event's `a` is its push index).
void pop_smallest(masep::sim::EventQueue& q, std::vector<std::pair<int64_t, int32_t>>& ref,
                  masep::sim::Event* e, int round, int step) {
  const auto it = std::min_element(ref.begin(), ref.end());
  ASSERT_FALSE(q.empty());
  ASSERT_EQ(q.top_time(), it->first);
  *e = q.pop();
  ASSERT_EQ(e->time_ns, it->first);
  ASSERT_EQ(e->a, it->second) << "round " << round << " step " << step;
  ref.erase(it);
}

// The queue pops in (time, push order) order: checked against a sorted reference on random
// interleavings of pushes and pops with many equal times (ties must keep push order).
TEST(SimEventQueue, PopsInTimeThenPushOrder) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 50; ++round) {
    masep::sim::EventQueue q;
    std::vector<std::pair<int64_t, int32_t>> ref;  // (time, push index), kept sorted on pop
    int32_t pushed = 0;
    int64_t now = 0;
    for (int step = 0; step < 2000; ++step) {
      if (ref.empty() || rng() % 3 != 0) {
        const int64_t t = now + static_cast<int64_t>(rng() % 8) * (round % 2 == 0 ? 1 : 1000000007);
        q.push(t, 3, pushed);
        ref.emplace_back(t, pushed++);
      } else {
        masep::sim::Event e;
        ASSERT_NO_FATAL_FAILURE(pop_smallest(q, ref, &e, round, step));
        ASSERT_EQ(e.type, 3u);
        now = e.time_ns;
      }
      ASSERT_EQ(q.size(), ref.size());
    }
  }
}

// push_after() (FIFO lanes per delay) mixed with push(): the same (time, push order) as a
// sorted reference. Delays come from a small set (lanes) and sometimes from a large one
// (more than kLanes distinct delays: the extra ones go to the heap); `now` is the last popped
// time, as in the simulator, except in the rounds that also push at an earlier `now`, which
// breaks a lane's order and must take the guarded fallback to the heap.
TEST(SimEventQueue, LanesPopInTimeThenPushOrder) {
  std::mt19937_64 rng(11);
  uint64_t fallbacks = 0;
  for (int round = 0; round < 60; ++round) {
    masep::sim::EventQueue q;
    std::vector<std::pair<int64_t, int32_t>> ref;  // (time, push index)
    int32_t pushed = 0;
    int64_t now = 0;
    const bool many_delays = round % 3 == 1;  // up to 20 distinct delays: lanes run out
    const bool go_back = round % 3 == 2;      // some pushes at an earlier `now`
    const int64_t scale = round % 2 == 0 ? 1 : 1000;
    for (int step = 0; step < 3000; ++step) {
      const uint64_t r = rng() % 8;
      if (ref.empty() || r < 5) {
        int64_t at = now;
        if (go_back && r == 0 && now > 0) at = now - static_cast<int64_t>(rng() % 3);
        const int64_t delay = static_cast<int64_t>(rng() % (many_delays ? 20 : 4)) * scale;
        if (r == 4) {  // a push() at any later time (the simulator's compute ends)
          const int64_t t = at + static_cast<int64_t>(rng() % 50);
          q.push(t, 5, pushed);
          ref.emplace_back(t, pushed++);
        } else {
          q.push_after(at, delay, 3, pushed, 9);
          ref.emplace_back(at + delay, pushed++);
        }
      } else {
        masep::sim::Event e;
        ASSERT_NO_FATAL_FAILURE(pop_smallest(q, ref, &e, round, step));
        now = e.time_ns;
      }
      ASSERT_EQ(q.size(), ref.size());
    }
    while (!ref.empty()) {  // drain
      masep::sim::Event e;
      ASSERT_NO_FATAL_FAILURE(pop_smallest(q, ref, &e, round, -1));
    }
    ASSERT_TRUE(q.empty());
    if (!go_back) EXPECT_EQ(q.lane_fallbacks(), 0u) << "round " << round;
    fallbacks += q.lane_fallbacks();
  }
  EXPECT_GT(fallbacks, 0u);  // the guard was exercised
}

// Events of one lane at one instant (an exchange's transfers) interleave with another lane's
// and with heap events of the same time strictly in push order; seq and operands come back.
TEST(SimEventQueue, LaneTiesKeepPushOrderAcrossLanesAndHeap) {
  masep::sim::EventQueue q;
  q.push_after(0, 10, 1, 0, 100);  // t 10
  q.push(10, 2, 1, 101);           // t 10
  q.push_after(5, 5, 1, 2, 102);   // t 10, another lane
  q.push_after(0, 10, 1, 3, 103);  // t 10, first lane again
  q.push(9, 2, 4, 104);            // t 9
  q.push_after(0, 10, 1, 5, 105);  // t 10
  const int32_t order[] = {4, 0, 1, 2, 3, 5};
  for (int k = 0; k < 6; ++k) {
    const masep::sim::Event e = q.pop();
    EXPECT_EQ(e.a, order[k]);
    EXPECT_EQ(e.b, 100u + static_cast<uint32_t>(order[k]));
    EXPECT_EQ(e.seq, static_cast<uint64_t>(order[k]));  // seq = push index
    EXPECT_EQ(e.time_ns, k == 0 ? 9 : 10);
  }
  EXPECT_TRUE(q.empty());
}

TEST(SimCompute, RooflineTakesTheLargerOfFlopsAndBytesPlusLaunch) {
  const SimParams prm;
  RooflineModel m(testing::test_gpu(), prm);
  plan::Op op;
  op.kind = OpKind::kGemm;
  op.hbm_bytes = 8'000'000;  // 8e6 / (1000·0.8) = 10000 ns
  op.flops = 4e8;            // 4e8 / (1e5·0.8) = 5000 ns
  EXPECT_EQ(m.duration_ns(op), 4000 + 10000);
  op.flops = 4e9;  // 50000 ns: now compute-bound
  EXPECT_EQ(m.duration_ns(op), 4000 + 50000);
  op.kind = OpKind::kAttention;
  op.flops = 0;
  EXPECT_EQ(m.duration_ns(op), 4000 + 10000);
}

TEST(SimParamsTable, OverridesByNameAndRejectsUnknown) {
  const SimParams p = resolve_params({{"eff_hbm_gemm", 0.5}, {"alpha_sendrecv_ns", 1}});
  EXPECT_DOUBLE_EQ(p.eff_hbm_gemm, 0.5);
  EXPECT_DOUBLE_EQ(p.alpha_sendrecv_ns, 1);
  EXPECT_THROW(resolve_params({{"eff_hbm_gemmm", 0.5}}), std::invalid_argument);
  EXPECT_THROW(resolve_params({{"eff_hbm_gemm", 1.5}}), std::invalid_argument);
  // Every row's default equals the struct's default.
  const SimParams d;
  for (const ParamInfo& info : parameter_table()) {
    EXPECT_DOUBLE_EQ(d.*(info.field), info.default_value) << info.name;
  }
  EXPECT_NE(parameter_table_markdown().find("launch_overhead_ns"), std::string::npos);
}

TEST(SimParamsTable, DocsListEveryRowAsTheCodeDoes) {
  // docs/simulator-model.md carries parameter_table_markdown()'s rows verbatim (tests run
  // from the source root); regenerate the table there when a row changes.
  std::ifstream f("docs/simulator-model.md");
  ASSERT_TRUE(f) << "run from the repository root";
  const std::string doc((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::istringstream rows(parameter_table_markdown());
  std::string row;
  int n = 0;
  while (std::getline(rows, row)) {
    if (row.rfind("| `", 0) != 0) continue;  // header and separator lines
    ++n;
    EXPECT_NE(doc.find(row), std::string::npos) << "docs/simulator-model.md lacks: " << row;
  }
  EXPECT_EQ(n, static_cast<int>(parameter_table().size()));
}

TEST(SimEngine, StreamOrderAndCrossRankDependencies) {
  ProgramBuilder b(2);
  const OpId a0 = b.compute(0, OpKind::kGemm, "a0", 0, bytes_for_ns(1000));
  const OpId a1 = b.compute(0, OpKind::kGemm, "a1", 0, bytes_for_ns(2000));
  const OpId c0 = b.compute(1, OpKind::kGemm, "c0", 0, bytes_for_ns(500), {a1});
  const OpId c1 = b.compute(1, OpKind::kGemm, "c1", 0, bytes_for_ns(100));
  const SimResult r = simulate(b.build(), testing::star(2), no_launch());
  EXPECT_EQ(r.timeline.ops[a0].start_ns, 0);
  EXPECT_EQ(r.timeline.ops[a1].start_ns, 1000);
  EXPECT_EQ(r.timeline.ops[c0].start_ns, 3000);
  EXPECT_EQ(r.timeline.ops[c1].start_ns, 3500);
  EXPECT_EQ(r.timeline.makespan_ns, 3600);
  EXPECT_EQ(r.timeline.source, "sim");
  EXPECT_EQ(r.timeline.device, "TestGPU");
  EXPECT_GT(r.events, 0u);
}

TEST(SimEngine, SendRecvIsAlphaPlusLatencyPlusBytesOverBandwidth) {
  ProgramBuilder b(2);
  const OpId s = b.send(0, 1, 1'000'000);
  const OpId v = b.recv(1, 0, 1'000'000);
  b.connect(s, v);
  const SimResult r = simulate(b.build(), testing::star(2, 100, 500));
  // 15000 (alpha) + 2·500 (two hops) + 1e6 / 100.
  EXPECT_EQ(r.timeline.ops[s].end_ns, 15000 + 1000 + 10000);
  EXPECT_EQ(r.timeline.ops[v].end_ns, r.timeline.ops[s].end_ns);
}

// The fluid tier (network_tier = 1) times a lone transfer and equal flows sharing one
// bottleneck exactly as the flow tier; auto (2) picks it by the largest exchange.
TEST(SimEngine, FluidTierEqualsFlowTierWithoutContention) {
  ProgramBuilder b(2);
  const OpId s = b.send(0, 1, 1'000'000);
  const OpId v = b.recv(1, 0, 1'000'000);
  b.connect(s, v);
  SimOptions fluid;
  fluid.params = {{"network_tier", 1}};
  const SimResult r = simulate(b.build(), testing::star(2, 100, 500), fluid);
  EXPECT_EQ(r.network_tier, "fluid");
  EXPECT_EQ(r.timeline.ops[s].end_ns, 15000 + 1000 + 10000);
  EXPECT_EQ(r.timeline.ops[v].end_ns, r.timeline.ops[s].end_ns);

  ProgramBuilder c(4);  // one sender, three receivers: three equal flows share the uplink
  const int x = c.exchange();
  const OpId src = c.exchange_op(0, x);
  for (int k = 1; k <= 3; ++k) c.transfer(x, src, c.exchange_op(k, x), 1'000'000);
  const plan::Program p = c.build();
  const SimResult a = simulate(p, testing::star(4, 100, 500));
  const SimResult f = simulate(p, testing::star(4, 100, 500), fluid);
  EXPECT_EQ(a.network_tier, "flow");
  for (size_t i = 0; i < p.ops.size(); ++i) {
    EXPECT_EQ(f.timeline.ops[i].start_ns, a.timeline.ops[i].start_ns) << i;
    EXPECT_EQ(f.timeline.ops[i].end_ns, a.timeline.ops[i].end_ns) << i;
  }
  EXPECT_EQ(f.timeline.ops[src].end_ns, 15000 + 1000 + 30000);

  SimOptions automatic;
  automatic.params = {{"network_tier", 2}, {"network_auto_flows", 3}};
  EXPECT_EQ(simulate(p, testing::star(4, 100, 500), automatic).network_tier, "flow");
  automatic.params = {{"network_tier", 2}, {"network_auto_flows", 2}};
  const SimResult au = simulate(p, testing::star(4, 100, 500), automatic);
  EXPECT_EQ(au.network_tier, "fluid");
  EXPECT_NE(au.network_note.find("3 transfers"), std::string::npos) << au.network_note;
  SimOptions bad;
  bad.params = {{"network_tier", 1.5}};
  EXPECT_THROW(simulate(p, testing::star(4, 100, 500), bad), std::invalid_argument);
}

TEST(SimEngine, TransferStartsWhenBothSidesAreReady) {
  ProgramBuilder b(2);
  const OpId w = b.compute(1, OpKind::kGemm, "w", 0, bytes_for_ns(50'000));
  const OpId s = b.send(0, 1, 1'000'000);
  const OpId v = b.recv(1, 0, 1'000'000, {w});
  b.connect(s, v);
  const SimResult r = simulate(b.build(), testing::star(2, 100, 500), no_launch());
  EXPECT_EQ(r.timeline.ops[s].start_ns, 0);  // posted at once, waits for the peer
  EXPECT_EQ(r.timeline.ops[v].start_ns, 50'000);
  EXPECT_EQ(r.timeline.ops[s].end_ns, 50'000 + 26'000);
}

TEST(SimEngine, SameGpuTransferIsALocalCopyAtHbmSpeed) {
  ProgramBuilder b(2, {0, 0});
  const OpId s = b.send(0, 1, 4'000'000);
  const OpId v = b.recv(1, 0, 4'000'000);
  b.connect(s, v);
  SimOptions o;
  o.params = {{"alpha_sendrecv_ns", 0}};
  const SimResult r = simulate(b.build(), testing::star(1), o);
  // 4e6 bytes at 1000·0.8/2 = 400 bytes/ns.
  EXPECT_EQ(r.timeline.ops[v].end_ns, 10'000);
}

// ---- grouped point-to-point (kExchange) ----------------------------------------------------

TEST(SimExchange, OneSenderToThreeReceiversPaysAlphaOnce) {
  // One group call on rank 0 sending 1e6 bytes to each of ranks 1..3 on a 100 GB/s star: the
  // three flows share rank 0's uplink, so the call takes alpha + 2 hops + 3e6 / 100, not
  // 3 · (alpha + 2 hops + 1e6 / 100) as three serialised send/recv pairs would.
  ProgramBuilder b(4);
  const int x = b.exchange();
  const OpId src = b.exchange_op(0, x);
  std::vector<OpId> dst;
  for (int r = 1; r <= 3; ++r) {
    dst.push_back(b.exchange_op(r, x));
    b.transfer(x, src, dst.back(), 1'000'000);
  }
  const plan::Program p = b.build();
  EXPECT_EQ(p.ops[src].comm_bytes, 3'000'000);
  const SimResult r = simulate(p, testing::star(4, 100, 500));
  EXPECT_EQ(r.timeline.ops[src].start_ns, 0);
  EXPECT_EQ(r.timeline.ops[src].end_ns, 15000 + 1000 + 30000);
  for (OpId d : dst) EXPECT_EQ(r.timeline.ops[d].end_ns, 15000 + 1000 + 30000);

  // With a 300 GB/s uplink the three flows get 100 GB/s each: alpha + 2 hops + 1e6 / 100.
  ProgramBuilder c(4);
  const int y = c.exchange();
  const OpId s2 = c.exchange_op(0, y);
  for (int r = 1; r <= 3; ++r) c.transfer(y, s2, c.exchange_op(r, y), 1'000'000);
  const SimResult r2 = simulate(c.build(), testing::star(4, 300, 500));
  EXPECT_EQ(r2.timeline.ops[s2].end_ns, 15000 + 1000 + 10000);
}

TEST(SimExchange, TransportSetsTheCallLatencyAndSmsSlowCompute) {
  // One 1 MB transfer rank 0 -> rank 1 on a 100 GB/s star (2 hops of 500 ns, 10 us of bytes)
  // and, on rank 0's compute stream, 100 us of compute. The call latency is the transport's:
  // NCCL 15 us (alpha_sendrecv_ns), DeepEP-style normal 15 us (deepep_normal_call_ns),
  // low-latency 6 us (deepep_ll_call_ns, a CUDA-graph launch).
  auto build = [](plan::ExchangeTransport tr, int sms) {
    ProgramBuilder b(2);
    const OpId c = b.compute(0, OpKind::kGemm, "c", 0, bytes_for_ns(100'000));
    const int x = b.exchange();
    const OpId s = b.exchange_op(0, x);
    b.transfer(x, s, b.exchange_op(1, x), 1'000'000);
    plan::Program p = b.build();
    p.exchanges[static_cast<size_t>(x)].transport = tr;
    p.exchanges[static_cast<size_t>(x)].sms = sms;
    EXPECT_EQ(c, 0);
    EXPECT_EQ(s, 1);
    return p;
  };
  const auto run = [&](plan::ExchangeTransport tr, int sms) {
    return simulate(build(tr, sms), testing::star(2, 100, 500), no_launch()).timeline;
  };
  using T = plan::ExchangeTransport;
  EXPECT_EQ(run(T::kNccl, 0).ops[1].end_ns, 15000 + 1000 + 10000);
  EXPECT_EQ(run(T::kDeepEpNormal, 0).ops[1].end_ns, 15000 + 1000 + 10000);
  EXPECT_EQ(run(T::kDeepEpLowLatency, 0).ops[1].end_ns, 6000 + 1000 + 10000);
  EXPECT_LT(run(T::kDeepEpLowLatency, 0).ops[1].end_ns, run(T::kNccl, 0).ops[1].end_ns);
  // No SMs held: the compute is not slowed.
  EXPECT_EQ(run(T::kDeepEpNormal, 0).ops[0].end_ns, 100'000);
  // 50 of the test GPU's 100 SMs held while the call runs (0..26 us): compute at half speed
  // there (13 us of work), then 87 us: ends at 113 us. Low latency: 0..17 us, 8.5 us of work,
  // ends at 17 + 91.5 = 108.5 us.
  EXPECT_EQ(run(T::kDeepEpNormal, 50).ops[0].end_ns, 113'000);
  EXPECT_EQ(run(T::kDeepEpLowLatency, 50).ops[0].end_ns, 108'500);
  // The receiving GPU's SMs too (its compute would slow); the call itself is not slowed.
  EXPECT_EQ(run(T::kDeepEpNormal, 50).ops[1].end_ns, 26'000);
  // The parameters move the latencies.
  SimOptions o = no_launch();
  o.params.push_back({"deepep_ll_call_ns", 2000});
  o.params.push_back({"deepep_normal_call_ns", 30000});
  EXPECT_EQ(simulate(build(T::kDeepEpLowLatency, 0), testing::star(2, 100, 500), o)
                .timeline.ops[1]
                .end_ns,
            2000 + 1000 + 10000);
  EXPECT_EQ(
      simulate(build(T::kDeepEpNormal, 0), testing::star(2, 100, 500), o).timeline.ops[1].end_ns,
      30000 + 1000 + 10000);
}

TEST(SimExchange, TransferStartsWhenBothSidesAreReady) {
  // Rank 0 sends to ranks 1 and 2 in one call; rank 2 posts late (after a 50 us kernel).
  ProgramBuilder b(3);
  const OpId w = b.compute(2, OpKind::kGemm, "w", 0, bytes_for_ns(50'000));
  const int x = b.exchange();
  const OpId s = b.exchange_op(0, x);
  const OpId d1 = b.exchange_op(1, x);
  const OpId d2 = b.exchange_op(2, x, {w});
  b.transfer(x, s, d1, 1'000'000);
  b.transfer(x, s, d2, 1'000'000);
  const SimResult r = simulate(b.build(), testing::star(3, 100, 500), no_launch());
  // The transfer to rank 1 does not wait for rank 2: alpha + 2 hops + 1e6 / 100.
  EXPECT_EQ(r.timeline.ops[d1].end_ns, 15000 + 1000 + 10000);
  // The one to rank 2 starts after rank 2 posts (50 us) and its alpha.
  EXPECT_EQ(r.timeline.ops[d2].start_ns, 50'000);
  EXPECT_EQ(r.timeline.ops[d2].end_ns, 50'000 + 15000 + 1000 + 10000);
  // The sender's call ends with its last transfer.
  EXPECT_EQ(r.timeline.ops[s].start_ns, 0);
  EXPECT_EQ(r.timeline.ops[s].end_ns, r.timeline.ops[d2].end_ns);
}

TEST(SimExchange, MixedSendRecvInOneGroupCallDoesNotDeadlock) {
  // Three ranks all send to and receive from each other in one group call each (the
  // co-located all-to-all). As separate send/recv pairs issued in this order every rank
  // would send first and block; a group call has no internal order.
  ProgramBuilder b(3);
  const int x = b.exchange();
  std::vector<OpId> op;
  for (int r = 0; r < 3; ++r) op.push_back(b.exchange_op(r, x));
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) {
      if (i != j) b.transfer(x, op[i], op[j], 500'000);
    }
  }
  const plan::Program p = b.build();
  EXPECT_NO_THROW(plan::check_program(p));
  EXPECT_EQ(p.ops[op[0]].comm_bytes, 2'000'000);  // sends 2 × 0.5 MB, receives 2 × 0.5 MB
  const SimResult r = simulate(p, testing::star(3, 100, 500));
  // Each uplink and downlink carries two 0.5 MB flows at 50 GB/s each: 1e6 / 100 ns.
  for (OpId o : op) EXPECT_EQ(r.timeline.ops[o].end_ns, 15000 + 1000 + 10000);
}

TEST(SimExchange, SameGpuTransferIsALocalCopyAndEmptyCallCostsAlpha) {
  ProgramBuilder b(3, {0, 0, 1});
  const int x = b.exchange();
  const OpId s = b.exchange_op(0, x);
  const OpId d = b.exchange_op(1, x);
  b.transfer(x, s, d, 4'000'000);
  const int y = b.exchange();
  const OpId lone = b.exchange_op(2, y);  // a call with no transfers (check_program rejects it)
  SimOptions o;
  o.params = {{"alpha_sendrecv_ns", 1000}};
  const SimResult r = simulate(b.build(), testing::star(2), o);
  EXPECT_EQ(r.timeline.ops[d].end_ns, 1000 + 10'000);  // 4e6 bytes at 400 bytes/ns
  EXPECT_EQ(r.timeline.ops[lone].end_ns, 1000);
}

TEST(SimExchange, InconsistentExchangeIsRejected) {
  ProgramBuilder b(2);
  const int x = b.exchange();
  const OpId s = b.exchange_op(0, x);
  const OpId d = b.compute(1, OpKind::kGemm, "not an exchange op", 0, 1000);
  b.transfer(x, s, d, 1000);
  EXPECT_THROW(simulate(b.build(), testing::star(2)), std::runtime_error);
}

// MegaScale-Infer ping-pong: rank 0 = attention, rank 1 = MoE; L layers, m micro-batches.
// Micro-batch j of layer l: attention (T_a) -> send to MoE (T_c) -> experts (T_e) -> send
// back (T_c) -> attention of layer l+1 needs it. Each rank's comm stream issues its sends
// and recvs in the order the pipeline needs them (`lag_a`, `lag_e`: how many sends go ahead
// of the matching recv), since one in-order comm stream would otherwise block.
plan::Program ping_pong(int L, int m, int64_t t_a, int64_t t_e, int64_t c_bytes, int lag_a,
                        int lag_e) {
  const int G = L * m;
  ProgramBuilder b(2);
  std::vector<OpId> attn(G), expert(G), s_ae(G), r_ae(G), s_ea(G), r_ea(G);
  // Compute ops (creation order = stream order), deps filled in below.
  for (int g = 0; g < G; ++g) {
    b.set_tags(g / m, 0, g % m);
    attn[g] = b.compute(0, OpKind::kGemm, "attention", 0, bytes_for_ns(t_a));
  }
  for (int g = 0; g < G; ++g) {
    b.set_tags(g / m, 0, g % m);
    expert[g] = b.compute(1, OpKind::kGemm, "experts", 0, bytes_for_ns(t_e));
  }
  // Attention comm stream: s(0..lag_a-1), then s(g) r(g - lag_a) ..., then the last recvs.
  int next_r = 0;
  for (int g = 0; g < G; ++g) {
    s_ae[g] = b.send(0, 1, c_bytes, {attn[g]});
    if (g >= lag_a) {
      r_ea[next_r] = b.recv(0, 1, c_bytes);
      ++next_r;
    }
  }
  for (; next_r < G; ++next_r) r_ea[next_r] = b.recv(0, 1, c_bytes);
  // MoE comm stream: r(0..lag_e-1), then r(g) s(g - lag_e) ..., then the last sends.
  int next_s = 0;
  for (int g = 0; g < G; ++g) {
    r_ae[g] = b.recv(1, 0, c_bytes);
    if (g >= lag_e) {
      s_ea[next_s] = b.send(1, 0, c_bytes, {expert[next_s]});
      ++next_s;
    }
  }
  for (; next_s < G; ++next_s) s_ea[next_s] = b.send(1, 0, c_bytes, {expert[next_s]});
  for (int g = 0; g < G; ++g) {
    b.connect(s_ae[g], r_ae[g]);
    b.connect(s_ea[g], r_ea[g]);
    b.op(expert[g]).deps.push_back(r_ae[g]);
    if (g >= m) b.op(attn[g]).deps.push_back(r_ea[g - m]);
  }
  plan::Program p = b.build();
  p.layers = L;
  p.micro_batches = m;
  p.steps = 1;
  return p;
}

TEST(SimEngine, PingPongEqualStagesMatchesMegaScaleInfer) {
  // T_a = T_e = T_f = 100 us; T_c = 15 us alpha + 1 us latency + 4 us bytes = 20 us.
  // m = 3 >= 2(1 + T_c/T_f) = 2.4 keeps both sides busy; L = 4. Case tested: equal stages,
  // pipeline full, latency of the iteration = (T_a + T_e + 2·T_c) + T_f·(m·L - 1), the last
  // op being the final send back to attention.
  const int64_t T = 100'000, Tc = 20'000;
  const int L = 4, m = 3;
  const plan::Program p = ping_pong(L, m, T, T, 400'000, 1, 1);
  const SimResult r = simulate(p, testing::star(2, 100, 500), no_launch());
  EXPECT_EQ(r.timeline.makespan_ns, (T + T + 2 * Tc) + T * (m * L - 1));
}

TEST(SimEngine, PingPongAttentionBoundMatchesMegaScaleInfer) {
  // T_a = 100 us > T_e = 50 us, T_c = 20 us: T_f = T_a and 2·T_c + T_e <= T_a, so the
  // attention side never waits; m = 2, L = 4.
  const int64_t Ta = 100'000, Te = 50'000, Tc = 20'000;
  const int L = 4, m = 2;
  const plan::Program p = ping_pong(L, m, Ta, Te, 400'000, 0, 0);
  const SimResult r = simulate(p, testing::star(2, 100, 500), no_launch());
  EXPECT_EQ(r.timeline.makespan_ns, (Ta + Te + 2 * Tc) + Ta * (m * L - 1));
}

// A random program over `ranks` ranks: compute ops, send/recv pairs and all-reduces, with
// random cross-rank dependencies on earlier ops.
plan::Program random_program(uint32_t seed, int ranks, int rounds) {
  std::mt19937 rng(seed);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };
  ProgramBuilder b(ranks);
  std::vector<int32_t> all;
  for (int r = 0; r < ranks; ++r) all.push_back(r);
  const int world = b.group("world", all);
  std::vector<OpId> last(ranks, -1);
  for (int i = 0; i < rounds; ++i) {
    const int kind = pick(10);
    if (kind < 5) {
      const int r = pick(ranks);
      std::vector<OpId> deps;
      const int other = pick(ranks);
      if (last[other] >= 0) deps.push_back(last[other]);
      last[r] = b.compute(r, OpKind::kGemm, "c", 1e6 * pick(100), 1000LL * (1 + pick(5000)), deps);
    } else if (kind < 9) {
      const int s = pick(ranks);
      const int d = (s + 1 + pick(ranks - 1)) % ranks;
      const int64_t bytes = 1000LL * (1 + pick(4000));
      std::vector<OpId> deps;
      if (last[s] >= 0) deps.push_back(last[s]);
      const OpId so = b.send(s, d, bytes, deps);
      const OpId ro = b.recv(d, s, bytes);
      b.connect(so, ro);
      last[d] = b.compute(d, OpKind::kElementwise, "use", 0, 1000, {ro});
    } else {
      std::vector<std::vector<OpId>> deps(ranks);
      for (int r = 0; r < ranks; ++r) {
        if (last[r] >= 0) deps[r].push_back(last[r]);
      }
      const auto ops = b.collective(OpKind::kAllReduce, world, 1000LL * (1 + pick(8000)), deps);
      for (int r = 0; r < ranks; ++r) last[r] = ops[r];
    }
  }
  return b.build();
}

TEST(SimEngine, MoreBandwidthNeverMakesARunSlower) {
  for (uint32_t seed = 1; seed <= 8; ++seed) {
    const plan::Program p = random_program(seed, 4, 120);
    Platform slow = testing::star(4, 50, 500, 2);
    Platform fast = testing::star(4, 50, 500, 2);
    fast.scale_bandwidth(2.0);
    const int64_t t_slow = simulate(p, slow).timeline.makespan_ns;
    const int64_t t_fast = simulate(p, fast).timeline.makespan_ns;
    EXPECT_LE(t_fast, t_slow) << "seed " << seed;
    EXPECT_GT(t_slow, 0);
  }
}

TEST(SimEngine, SameInputGivesIdenticalTimeline) {
  const plan::Program p = random_program(42, 5, 300);
  const Platform plat = testing::star(5, 80, 700, 2);
  const SimResult a = simulate(p, plat);
  const SimResult b = simulate(p, plat);
  ASSERT_EQ(a.timeline.ops.size(), b.timeline.ops.size());
  for (size_t i = 0; i < a.timeline.ops.size(); ++i) {
    EXPECT_EQ(a.timeline.ops[i].start_ns, b.timeline.ops[i].start_ns) << i;
    EXPECT_EQ(a.timeline.ops[i].end_ns, b.timeline.ops[i].end_ns) << i;
  }
  EXPECT_EQ(a.events, b.events);
  for (const auto& t : a.timeline.ops) EXPECT_GE(t.end_ns, t.start_ns);
}

TEST(SimEngine, FluidTierIsDeterministicAndCloseOnASmallRandomProgram) {
  const plan::Program p = random_program(42, 5, 300);
  const Platform plat = testing::star(5, 80, 700, 2);
  SimOptions fluid;
  fluid.params = {{"network_tier", 1}};
  const SimResult a = simulate(p, plat, fluid);
  const SimResult b = simulate(p, plat, fluid);
  const SimResult ref = simulate(p, plat);
  ASSERT_EQ(a.timeline.ops.size(), b.timeline.ops.size());
  for (size_t i = 0; i < a.timeline.ops.size(); ++i) {
    EXPECT_EQ(a.timeline.ops[i].end_ns, b.timeline.ops[i].end_ns) << i;
  }
  // Not equal to the flow tier under contention, but close on this small program.
  const double ratio = static_cast<double>(a.timeline.makespan_ns) / ref.timeline.makespan_ns;
  EXPECT_GT(ratio, 0.9);
  EXPECT_LT(ratio, 1.1);
}

TEST(SimEngine, InterferenceSlowsComputeWhileBytesMove) {
  // Compute of 100 us on GPU 0 while a send of 1 MB runs there: the send waits alpha 15 us and
  // the route latency 1 us (2 hops x 500 ns), then moves its bytes for 10 us (1 MB at 100
  // GB/s). Only those 10 us interfere: at factor 0.5 the compute does 16 us at full speed,
  // 5 us of work in the next 10 us, and the remaining 79 us at full speed: 105 us.
  // The compute runs on `rank` (0 = the sender, 1 = the receiver).
  auto build = [](int rank = 0) {
    ProgramBuilder b(2);
    b.compute(rank, OpKind::kGemm, "c", 0, bytes_for_ns(100'000));
    const OpId s = b.send(0, 1, 1'000'000);
    const OpId v = b.recv(1, 0, 1'000'000);
    b.connect(s, v);
    return b.build();
  };
  SimOptions o = no_launch();
  EXPECT_EQ(simulate(build(), testing::star(2, 100, 500), o).timeline.ops[0].end_ns, 100'000);
  o.comm_interference = 0.5;
  const SimResult r = simulate(build(), testing::star(2, 100, 500), o);
  EXPECT_EQ(r.timeline.ops[1].end_ns, 26'000);  // the send itself is not slowed
  EXPECT_EQ(r.timeline.ops[0].end_ns, 105'000);
  // The same through the parameter table.
  SimOptions o2 = no_launch();
  o2.params.push_back({"comm_interference", 0.5});
  EXPECT_EQ(simulate(build(), testing::star(2, 100, 500), o2).timeline.ops[0].end_ns, 105'000);
  // The receiving GPU is slowed too while the bytes arrive.
  EXPECT_EQ(simulate(build(1), testing::star(2, 100, 500), o).timeline.ops[0].end_ns, 105'000);
  // Resident interference: the send is posted at 0 and runs to 26 us; at 0.5 the compute does
  // 13 us of work by then and ends at 26 + 87 = 113 us.
  SimOptions res = no_launch();
  res.params.push_back({"comm_resident_interference", 0.5});
  EXPECT_EQ(simulate(build(), testing::star(2, 100, 500), res).timeline.ops[0].end_ns, 113'000);
  // Both: 0..16 us resident (speed 0.5: 8 us of work), 16..26 us bytes moving (speed 0.2: 2
  // us), then 90 us at full speed: 116 us.
  res.params.push_back({"comm_interference", 0.8});
  EXPECT_EQ(simulate(build(), testing::star(2, 100, 500), res).timeline.ops[0].end_ns, 116'000);
}

TEST(SimEngine, StuckProgramThrowsInsteadOfHanging) {
  // Rank 0 sends only after its compute, which waits for rank 1's compute, which waits for
  // the recv of that very send: a cycle through the network.
  ProgramBuilder b(2);
  const OpId c1 = b.compute(1, OpKind::kGemm, "needs_recv", 0, 1000);
  const OpId c0 = b.compute(0, OpKind::kGemm, "needs_c1", 0, 1000, {c1});
  const OpId s = b.send(0, 1, 1000, {c0});
  const OpId v = b.recv(1, 0, 1000);
  b.connect(s, v);
  b.op(c1).deps.push_back(v);
  try {
    simulate(b.build(), testing::star(2));
    FAIL() << "expected a stuck-program error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("stuck"), std::string::npos) << msg;
    EXPECT_NE(msg.find("needs_recv"), std::string::npos) << msg;
  }
}

TEST(SimEngine, BadInputIsRejectedBeforeSimulating) {
  {  // unmatched send
    ProgramBuilder b(2);
    b.send(0, 1, 1000);
    EXPECT_THROW(simulate(b.build(), testing::star(2)), std::runtime_error);
  }
  {  // rank on a GPU the platform lacks
    ProgramBuilder b(2, {0, 5});
    b.compute(1, OpKind::kGemm, "x", 0, 1000);
    EXPECT_THROW(simulate(b.build(), testing::star(2)), std::runtime_error);
  }
  {  // no route between the GPUs of a send/recv pair
    ProgramBuilder b(2);
    const OpId s = b.send(0, 1, 1000);
    const OpId v = b.recv(1, 0, 1000);
    b.connect(s, v);
    Platform plat(testing::test_gpu(), 2, 2, {{100, 0}},
                  [](int, int) -> PlatformRoute { throw std::runtime_error("no path"); });
    EXPECT_THROW(simulate(b.build(), plat), std::runtime_error);
  }
  {  // calibration files are not supported yet, and say so
    ProgramBuilder b(1);
    b.compute(0, OpKind::kGemm, "x", 0, 1000);
    SimOptions o;
    o.calibration = "cal.yaml";
    EXPECT_THROW(simulate(b.build(), testing::star(1), o), std::runtime_error);
    SimOptions bad;
    bad.allreduce_algorithm = "magic";
    ProgramBuilder b2(1);
    b2.compute(0, OpKind::kGemm, "x", 0, 1000);
    EXPECT_THROW(simulate(b2.build(), testing::star(1), bad), std::invalid_argument);
  }
}

// prepare() checks send/recv pairs in a pass fused with later checks; a program with
// several faults still reports the send/recv fault, as when that check had the first pass.
TEST(SimEngine, SendRecvFaultIsReportedBeforeLaterChecks) {
  const auto message = [](const plan::Program& p) {
    try {
      simulate(p, testing::star(2));
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto build = [](bool bad_pair, bool unlisted, bool bad_exchange) {
    ProgramBuilder b(2);
    b.compute(0, OpKind::kGemm, "first", 0, 1000);  // op 0: checked before the pair
    const OpId s = b.send(0, 1, 1000);
    const OpId v = b.recv(1, 0, bad_pair ? 2000 : 1000);
    b.connect(s, v);
    const int x = b.exchange();
    const OpId xs = b.exchange_op(0, x);
    const OpId xd =
        bad_exchange ? b.compute(1, OpKind::kGemm, "no exchange op", 0, 1000) : b.exchange_op(1, x);
    b.transfer(x, xs, xd, 1000);
    plan::Program p = b.build();
    if (unlisted) {
      auto& list = p.stream_ops[0][p.ops[0].stream];
      list.erase(std::find(list.begin(), list.end(), 0));
    }
    return p;
  };
  const std::string pair_msg = "carry different bytes";
  EXPECT_NE(message(build(true, false, false)).find(pair_msg), std::string::npos);
  EXPECT_NE(message(build(false, true, false)).find("is on no stream list"), std::string::npos);
  EXPECT_NE(message(build(false, false, true)).find("not an exchange op of it"), std::string::npos);
  EXPECT_NE(message(build(true, true, false)).find(pair_msg), std::string::npos);
  EXPECT_NE(message(build(true, false, true)).find(pair_msg), std::string::npos);
  EXPECT_NE(message(build(true, true, true)).find(pair_msg), std::string::npos);
}

TEST(SimEngine, SyntheticPaperSizedProgramRuns) {
  SyntheticSpec spec;
  spec.steps = 2;
  const plan::Program p = synthetic_ma_program(spec);
  const SimResult r = simulate(p, testing::star(16, 100, 500, 4));
  for (const auto& t : r.timeline.ops) {
    ASSERT_GE(t.start_ns, 0);
    ASSERT_GE(t.end_ns, t.start_ns);
  }
  EXPECT_GT(r.timeline.makespan_ns, 0);
}

}  // namespace
}  // namespace masep::sim
