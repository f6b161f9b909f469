// Metrics and trace writer on hand-made Programs and Timelines with known answers.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "masep/plan/metrics.hpp"
#include "masep/plan/trace.hpp"

namespace masep::plan {
namespace {

Op make_op(OpId id, int rank, OpKind kind, int step, int64_t hbm = 0, double flops = 0) {
  Op op;
  op.id = id;
  op.rank = rank;
  op.kind = kind;
  op.stream = is_communication(kind) ? kComm : kCompute;
  op.step = step;
  op.hbm_bytes = hbm;
  op.flops = flops;
  op.name = to_string(kind);
  return op;
}

// Two ranks (attention, MoE), two steps:
//   r0: gemm [0,100) s0, send [80,150) s0, gemm [300,400) s1
//   r1: recv [80,150) s0, gemm [150,300) s0, gemm [300,500) s1
struct Fixture {
  Scenario s;
  Program p;
  Timeline t;
  Fixture() {
    s.name = "hand";
    s.workload.batch = 4;
    s.topology.gpu.name = "TestGPU";
    s.topology.gpu.hbm_GBps = 1000;    // 1000 bytes/ns
    s.topology.gpu.bf16_tflops = 100;  // 1e5 FLOP/ns
    p.scenario = "hand";
    p.steps = 2;
    p.layers = 1;
    p.micro_batches = 1;
    RankInfo a;
    a.gpu = 0;
    a.role = Role::kAttention;
    a.label = "attn r0 h0";
    RankInfo e;
    e.gpu = 5;
    e.role = Role::kMoe;
    e.label = "moe 0 \"quoted\"";
    p.ranks = {a, e};
    p.ops.push_back(make_op(0, 0, OpKind::kGemm, 0, 200000, 1e6));
    p.ops.push_back(make_op(1, 0, OpKind::kSend, 0));
    p.ops.push_back(make_op(2, 1, OpKind::kRecv, 0));
    p.ops.push_back(make_op(3, 1, OpKind::kGroupedGemm, 0, 100000, 2e6));
    p.ops.push_back(make_op(4, 0, OpKind::kGemm, 1));
    p.ops.push_back(make_op(5, 1, OpKind::kGroupedGemm, 1, 100000, 2e6));
    p.ops[1].peer = 1;
    p.ops[1].match = 2;
    p.ops[1].comm_bytes = 4096;
    p.ops[2].peer = 0;
    p.ops[2].match = 1;
    p.ops[2].comm_bytes = 4096;
    p.ops[3].deps = {2};
    p.stream_ops.resize(2);
    p.stream_ops[0][kCompute] = {0, 4};
    p.stream_ops[0][kComm] = {1};
    p.stream_ops[1][kCompute] = {3, 5};
    p.stream_ops[1][kComm] = {2};
    t.source = "sim";
    t.device = "TestGPU";
    t.ops = {{0, 100}, {80, 150}, {80, 150}, {150, 300}, {300, 400}, {300, 500}};
    t.makespan_ns = 500;
  }
};

TEST(Metrics, HandMadeTimeline) {
  Fixture f;
  RunMetrics m = compute_metrics(f.s, f.p, f.t);
  EXPECT_EQ(m.steps, 2);
  EXPECT_EQ(m.batch, 4);
  EXPECT_EQ(m.makespan_ns, 500);
  ASSERT_EQ(m.step_ms.size(), 2u);
  EXPECT_DOUBLE_EQ(m.step_ms[0], 300e-6);  // step 0 ends at 300 ns
  EXPECT_DOUBLE_EQ(m.step_ms[1], 200e-6);  // step 1 ends at 500 ns
  EXPECT_DOUBLE_EQ(m.tpot_mean_ms, 250e-6);
  EXPECT_DOUBLE_EQ(m.tpot_p50_ms, 200e-6);
  EXPECT_DOUBLE_EQ(m.tpot_p99_ms, 300e-6);
  EXPECT_DOUBLE_EQ(m.tokens_per_s, 4.0 * 2 * 1e9 / 500);

  ASSERT_EQ(m.ranks.size(), 2u);
  const auto& r0 = m.ranks[0];
  EXPECT_EQ(r0.compute_busy_ns, 200);
  EXPECT_DOUBLE_EQ(r0.utilisation, 0.4);
  EXPECT_EQ(r0.comm_busy_ns, 70);
  EXPECT_EQ(r0.exposed_comm_ns, 50);  // [100,150) not under compute
  EXPECT_EQ(r0.idle_ns, 250);         // busy [0,150) and [300,400)
  EXPECT_EQ(r0.step_hbm_bytes, 100000);
  EXPECT_DOUBLE_EQ(r0.step_flops, 5e5);
  EXPECT_EQ(r0.roofline_floor_ns, 100);  // bytes-bound: 1e5 B / 1000 B/ns
  EXPECT_EQ(r0.label, "attn r0 h0");

  const auto& r1 = m.ranks[1];
  EXPECT_EQ(r1.role, Role::kMoe);
  EXPECT_EQ(r1.compute_busy_ns, 350);
  EXPECT_EQ(r1.comm_busy_ns, 70);
  EXPECT_EQ(r1.exposed_comm_ns, 70);
  EXPECT_EQ(r1.idle_ns, 80);
  EXPECT_EQ(r1.step_hbm_bytes, 100000);
  EXPECT_EQ(r1.roofline_floor_ns, 100);

  EXPECT_EQ(m.attention_idle_ns, 250);
  EXPECT_EQ(m.moe_idle_ns, 80);
  EXPECT_EQ(m.exposed_comm_ns, 120);
  EXPECT_DOUBLE_EQ(m.mean_utilisation, (0.4 + 0.7) / 2);
}

TEST(Metrics, FlopBoundFloorAndPercentiles) {
  Fixture f;
  f.s.topology.gpu.bf16_tflops = 0.001;  // 1 FLOP/ns: now FLOP-bound
  RunMetrics m = compute_metrics(f.s, f.p, f.t);
  EXPECT_EQ(m.ranks[0].roofline_floor_ns, 500000);   // 5e5 FLOPs per step
  EXPECT_EQ(m.ranks[1].roofline_floor_ns, 2000000);  // 2e6 FLOPs per step

  // Three steps ending at 150, 1000 and 12000 ns: durations 150, 850, 11000 ns.
  Fixture g;
  g.p.ops[3].step = 1;
  g.t.ops[3] = {150, 1000};
  g.p.ops[5].step = 1;
  g.t.ops[5] = {300, 1000};
  g.p.ops[4].step = 2;
  g.t.ops[4] = {2000, 12000};
  g.t.makespan_ns = 12000;
  RunMetrics n = compute_metrics(g.s, g.p, g.t);
  ASSERT_EQ(n.step_ms.size(), 3u);
  EXPECT_DOUBLE_EQ(n.step_ms[0], 150e-6);    // step 0: ops 0,1,2 end at 150
  EXPECT_DOUBLE_EQ(n.step_ms[1], 850e-6);    // step 1 ends at 1000
  EXPECT_DOUBLE_EQ(n.step_ms[2], 11000e-6);  // step 2 ends at 12000
  EXPECT_DOUBLE_EQ(n.tpot_p50_ms, 850e-6);
  EXPECT_DOUBLE_EQ(n.tpot_p99_ms, 11000e-6);
  EXPECT_NEAR(n.tpot_mean_ms, 12000e-6 / 3, 1e-15);
}

TEST(Metrics, WaitingForAPeerIsIdleNotCommunication) {
  Fixture f;
  f.t.ops[2] = {50, 150};  // r1 posts its recv at 50; the send starts at 80
  RunMetrics m = compute_metrics(f.s, f.p, f.t);
  const auto& r1 = m.ranks[1];
  EXPECT_EQ(r1.comm_busy_ns, 70);  // transfer [80,150) only
  EXPECT_EQ(r1.comm_wait_ns, 30);  // [50,80) waiting for the sender
  EXPECT_EQ(r1.idle_ns, 80);       // [0,80): waiting counts as idle
  EXPECT_EQ(r1.exposed_comm_ns, 70);
  EXPECT_EQ(m.ranks[0].comm_wait_ns, 0);

  // Collectives: every member transfers from the last member's start.
  Fixture g;
  g.p.ops[1].kind = OpKind::kAllReduce;
  g.p.ops[2].kind = OpKind::kAllReduce;
  g.p.ops[1].match = g.p.ops[2].match = -1;
  g.p.ops[1].collective = g.p.ops[2].collective = 0;
  g.p.groups = {Group{"world", {0, 1}}};
  Collective c;
  c.group = 0;
  c.ops = {1, 2};
  g.p.collectives = {c};
  g.t.ops[1] = {20, 150};
  g.t.ops[2] = {90, 150};
  RunMetrics n = compute_metrics(g.s, g.p, g.t);
  EXPECT_EQ(n.ranks[0].comm_busy_ns, 60);  // [90,150)
  EXPECT_EQ(n.ranks[0].comm_wait_ns, 0);   // [20,90) is under the gemm [0,100)
  EXPECT_EQ(n.ranks[0].exposed_comm_ns, 50);
  EXPECT_EQ(n.ranks[1].comm_busy_ns, 60);
  EXPECT_EQ(n.ranks[1].idle_ns, 90);
}

TEST(Metrics, RejectsMismatchedTimeline) {
  Fixture f;
  f.t.ops.pop_back();
  EXPECT_THROW(compute_metrics(f.s, f.p, f.t), std::invalid_argument);
}

TEST(Metrics, JsonIsValidAndComplete) {
  Fixture f;
  RunMetrics m = compute_metrics(f.s, f.p, f.t);
  std::ostringstream out;
  write_metrics_json(out, m);
  auto j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["steps"], 2);
  EXPECT_DOUBLE_EQ(j["tokens_per_s"].get<double>(), m.tokens_per_s);
  ASSERT_EQ(j["ranks"].size(), 2u);
  EXPECT_EQ(j["ranks"][1]["label"], "moe 0 \"quoted\"");
  EXPECT_EQ(j["ranks"][1]["role"], to_string(Role::kMoe));
  EXPECT_EQ(j["ranks"][0]["exposed_comm_ns"], 50);
}

TEST(Trace, ValidChromeJsonWithExactTimes) {
  Fixture f;
  f.t.ops[3] = {150, 1234567};  // 150 ns .. 1234.567 µs
  f.t.makespan_ns = 1234567;
  std::ostringstream out;
  write_trace(out, f.p, f.t, TraceOptions{4});
  const std::string text = out.str();
  auto j = nlohmann::json::parse(text);
  ASSERT_TRUE(j.contains("traceEvents"));
  EXPECT_EQ(j["displayTimeUnit"], "ns");
  EXPECT_EQ(j["otherData"]["scenario"], "hand");
  EXPECT_EQ(j["otherData"]["source"], "sim");

  int complete = 0;
  std::map<int, std::string> process_names;
  std::map<std::pair<int, int>, std::string> thread_names;
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "process_name") {
      process_names[e["pid"]] = e["args"]["name"];
    } else if (e["ph"] == "M" && e["name"] == "thread_name") {
      thread_names[{e["pid"], e["tid"]}] = e["args"]["name"];
    } else if (e["ph"] == "X") {
      ++complete;
      const int id = e["args"]["op"];
      const Op& op = f.p.ops[id];
      EXPECT_EQ(e["pid"], op.rank);
      EXPECT_EQ(e["tid"], op.stream);
      EXPECT_EQ(e["args"]["step"], op.step);
      EXPECT_EQ(e["args"]["kind"], to_string(op.kind));
      EXPECT_NEAR(e["ts"].get<double>() * 1000, f.t.ops[id].start_ns, 1e-6);
      EXPECT_NEAR(e["dur"].get<double>() * 1000, f.t.ops[id].duration_ns(), 1e-6);
    }
  }
  EXPECT_EQ(complete, 6);
  EXPECT_EQ(process_names[0], "rank 0: attn r0 h0 (gpu n0.0)");
  EXPECT_EQ(process_names[1], "rank 1: moe 0 \"quoted\" (gpu n1.1)");
  EXPECT_EQ((thread_names[{1, 0}]), "compute");
  EXPECT_EQ((thread_names[{1, 1}]), "comm");
  // Fixed three decimals, exact nanoseconds.
  EXPECT_NE(text.find("\"ts\":0.150,\"dur\":1234.417"), std::string::npos) << text;
  EXPECT_NE(text.find("\"bytes\":4096"), std::string::npos);
}

TEST(Trace, SkipsOpsThatDidNotRunAndIsDeterministic) {
  Fixture f;
  f.t.ops[5] = {-1, -1};
  std::ostringstream a, b;
  write_trace(a, f.p, f.t);
  write_trace(b, f.p, f.t);
  EXPECT_EQ(a.str(), b.str());
  auto j = nlohmann::json::parse(a.str());
  int complete = 0;
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] == "X") {
      ++complete;
      EXPECT_NE(e["args"]["op"], 5);
    }
  }
  EXPECT_EQ(complete, 5);
  EXPECT_NE(a.str().find("(gpu 5)"), std::string::npos);  // no gpus_per_node given
}

TEST(Trace, FileIsWrittenAtomicallyAndErrorsNameThePath) {
  Fixture f;
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "masep_test_trace";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "trace.json").string();
  write_trace_file(path, f.p, f.t);
  std::ifstream in(path);
  std::stringstream got;
  got << in.rdbuf();
  std::ostringstream want;
  write_trace(want, f.p, f.t);
  EXPECT_EQ(got.str(), want.str());
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1);  // no temporary left behind

  const std::string bad = (dir / "missing-dir" / "trace.json").string();
  try {
    write_trace_file(bad, f.p, f.t);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(bad));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace masep::plan
