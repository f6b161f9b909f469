// The calibrated compute model and `SimOptions::calibration`: a synthetic calibration file
// times ops by its tables (a slower GEMM table makes that op slower by exactly the difference),
// extrapolated and uncovered ops are counted, and comm tables set the alphas.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "masep/plan/calibration.hpp"
#include "masep/sim/calibrated_model.hpp"
#include "masep/sim/compute_model.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/sim/synthetic.hpp"
#include "sim_test_util.hpp"

namespace masep::sim {
namespace {

using plan::OpId;
using plan::OpKind;

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("masep_simcal_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

plan::Calibration calibration(double gemm_m16_ns) {
  plan::Calibration c;
  c.device = "TestGPU (synthetic)";
  c.gemm.push_back({4096, 4096, {{1, 5000}, {16, gemm_m16_ns}}});
  c.attention.push_back({32, 8, 128, 8, {{512, 7000}, {2048, 9000}}});
  c.attention.push_back({32, 8, 128, 32, {{512, 11000}, {2048, 15000}}});
  c.kernels.push_back({"rmsnorm", {{1000, 2000}, {1000000, 3000}}});
  c.kernels.push_back({"elementwise", {{1000, 1500}}});
  c.comm.push_back({"send_recv", 2, {{1024, 9000}, {1 << 20, 20000}}});
  c.comm.push_back({"all_reduce", 4, {{1024, 30000}}});
  c.comm.push_back({"all_reduce", 2, {{1024, 21000}}});
  return c;
}

struct Ops {
  OpId gemm, norm, attn, act, roof;
};

plan::Program program(Ops* ids) {
  ProgramBuilder b(1);
  ids->gemm = b.compute(0, OpKind::kGemm, "qkv", 2.0 * 16 * 4096 * 4096, 4096 * 4096 * 2);
  b.op(ids->gemm).m = 16;
  b.op(ids->gemm).n = 4096;
  b.op(ids->gemm).k = 4096;
  ids->norm = b.compute(0, OpKind::kElementwise, "rmsnorm", 0, 1000000);
  ids->attn = b.compute(0, OpKind::kAttention, "attn", 0, 1000);
  auto& a = b.op(ids->attn);
  a.batch = 16;  // between the batch-8 and batch-32 tables
  a.heads = 32;
  a.kv_heads = 8;
  a.head_dim = 128;
  a.kv_tokens = 16 * 512;
  ids->act = b.compute(0, OpKind::kElementwise, "act", 0, 4000);   // "elementwise" table, above
  ids->roof = b.compute(0, OpKind::kRouter, "router", 0, 800000);  // no table: roofline
  return b.build();
}

TEST(SimCalibrated, TablesTimeOpsAndASlowerGemmIsSlowerByTheDifference) {
  Ops ids;
  const plan::Program p = program(&ids);
  const std::string fast = temp_path("fast.yaml"), slow = temp_path("slow.yaml");
  plan::write_calibration(fast, calibration(6000));
  plan::write_calibration(slow, calibration(9500));
  SimOptions o;
  o.calibration = fast;
  const SimResult a = simulate(p, testing::star(1), o);
  o.calibration = slow;
  const SimResult b = simulate(p, testing::star(1), o);
  EXPECT_EQ(a.timeline.ops[ids.gemm].duration_ns(), 6000);
  EXPECT_EQ(b.timeline.ops[ids.gemm].duration_ns(), 9500);
  EXPECT_EQ(b.timeline.makespan_ns - a.timeline.makespan_ns, 3500);
  EXPECT_EQ(a.timeline.ops[ids.norm].duration_ns(), 3000);
  // Attention: batch 16 is a third of the way from 8 (7000) to 32 (11000) at context 512
  // (linear in batch): 8333.3, rounded up.
  EXPECT_EQ(a.timeline.ops[ids.attn].duration_ns(), 8334);
  // "act" has no table of its own: the "elementwise" table, above its last point: 1500·4.
  EXPECT_EQ(a.timeline.ops[ids.act].duration_ns(), 6000);
  // The router falls back to the roofline (default params: 4000 + 800000/(1000·0.8)).
  EXPECT_EQ(a.timeline.ops[ids.roof].duration_ns(), 4000 + 1000);
  // Never silent: the summary counts each kind of lookup.
  EXPECT_NE(a.calibration_summary.find("5 compute ops: 2 exact, 1 interpolated, 1 extrapolated, "
                                       "0 nearest-shape, 1 roofline"),
            std::string::npos)
      << a.calibration_summary;
  std::filesystem::remove(fast);
  std::filesystem::remove(slow);
}

TEST(SimCalibrated, NearestShapeAndGroupedGemm) {
  auto cal = calibration(6000);
  CalibratedModel m(cal, std::make_shared<RooflineModel>(testing::test_gpu(), SimParams{}));
  plan::Op g;
  g.kind = OpKind::kGemm;
  g.m = 16;
  g.n = 8192;  // twice the measured weight: scaled ×2, flagged
  g.k = 4096;
  CalSource s;
  EXPECT_DOUBLE_EQ(m.time_ns(g, &s), 12000);
  EXPECT_EQ(s, CalSource::kNearestShape);
  plan::Op gg;
  gg.kind = OpKind::kGroupedGemm;
  gg.n = 4096;
  gg.k = 4096;
  gg.group_m = {1, 0, 16};  // one cuBLAS GEMM per non-empty expert
  EXPECT_DOUBLE_EQ(m.time_ns(gg, &s), 5000 + 6000);
  EXPECT_EQ(s, CalSource::kExact);

  // With a grouped_gemm table of the op's shape: one launch, base + per non-empty group.
  cal.grouped_gemm.push_back({4096, 4096, 16, 1000, {{1, 2000}, {4, 2600}, {16, 5000}}});
  CalibratedModel mg(cal, std::make_shared<RooflineModel>(testing::test_gpu(), SimParams{}));
  EXPECT_DOUBLE_EQ(mg.time_ns(gg, &s), 1000 + 2000 + 5000);
  EXPECT_EQ(s, CalSource::kExact);
  gg.group_m = {2, 0, 4};  // 2 rows: a third of the way from 1 to 4 rows
  EXPECT_DOUBLE_EQ(mg.time_ns(gg, &s), 1000 + 2200 + 2600);
  EXPECT_EQ(s, CalSource::kInterpolated);
  // A group above max_rows: the executor runs its cuBLAS loop, and so does the model.
  gg.group_m = {1, 17};
  EXPECT_DOUBLE_EQ(mg.time_ns(gg, &s), 5000 + 6000 * 17.0 / 16);  // m = 17: above the table
}

TEST(SimCalibrated, CommTablesSetTheAlphas) {
  const auto ov = calibrated_comm_params(calibration(6000));
  ASSERT_EQ(ov.size(), 2u);
  EXPECT_EQ(ov[0].first, "alpha_allreduce_ns");
  EXPECT_EQ(ov[0].second, 21000);  // the fewest ranks, smallest size
  EXPECT_EQ(ov[1].first, "alpha_sendrecv_ns");
  EXPECT_EQ(ov[1].second, 9000);
  // In a run: a 1-byte send/recv pays the calibrated alpha (+ route latency 2·500 + 1 byte).
  ProgramBuilder b(2);
  const OpId s = b.send(0, 1, 1);
  const OpId v = b.recv(1, 0, 1);
  b.connect(s, v);
  const std::string path = temp_path("comm.yaml");
  plan::write_calibration(path, calibration(6000));
  SimOptions o;
  o.calibration = path;
  const SimResult r = simulate(b.build(), testing::star(2), o);
  EXPECT_EQ(r.timeline.ops[v].end_ns, 9000 + 1000 + 1);
  // SimOptions::params still override the calibrated value.
  o.params = {{"alpha_sendrecv_ns", 100}};
  ProgramBuilder b2(2);
  const OpId s2 = b2.send(0, 1, 1);
  const OpId v2 = b2.recv(1, 0, 1);
  b2.connect(s2, v2);
  EXPECT_EQ(simulate(b2.build(), testing::star(2), o).timeline.ops[v2].end_ns, 100 + 1000 + 1);
  std::filesystem::remove(path);
  o.calibration = temp_path("does-not-exist.yaml");
  EXPECT_THROW(simulate(b.build(), testing::star(2), o), std::runtime_error);
}

TEST(SimCalibrated, LaunchCostsAddTheEventOverheadAndTheGap) {
  // A calibration with a launch section: every compute op whose table time is > 0 is longer
  // by event_overhead_ns, and every op starts event_gap_ns after it became ready.
  Ops ids;
  const plan::Program p = program(&ids);
  auto cal = calibration(6000);
  cal.launch.measured = true;
  cal.launch.event_overhead_ns = 3000;
  cal.launch.event_gap_ns = 2500;
  cal.launch.idle_launch_ns = 9000;
  cal.launch.kernel_ns = 3500;
  const std::string path = temp_path("launch.yaml");
  plan::write_calibration(path, cal);
  EXPECT_EQ(plan::load_calibration(path), cal);  // the optional section round-trips
  SimOptions o;
  o.calibration = path;
  const SimResult r = simulate(p, testing::star(1), o);
  EXPECT_EQ(r.timeline.ops[ids.gemm].duration_ns(), 6000 + 3000);
  EXPECT_EQ(r.timeline.ops[ids.norm].duration_ns(), 3000 + 3000);
  EXPECT_EQ(r.timeline.ops[ids.gemm].start_ns, 2500);                // first op: the gap
  EXPECT_EQ(r.timeline.ops[ids.norm].start_ns, 2500 + 9000 + 2500);  // after the GEMM
  // Comm: the alphas include the overhead, and the gap comes with them.
  const auto ov = calibrated_comm_params(cal);
  ASSERT_EQ(ov.size(), 3u);
  EXPECT_EQ(ov[0].second, 21000 + 3000);
  EXPECT_EQ(ov[2].first, "launch_gap_ns");
  EXPECT_EQ(ov[2].second, 2500);
  // Without the section (older files) nothing is added.
  plan::write_calibration(path, calibration(6000));
  const SimResult r0 = simulate(p, testing::star(1), o);
  EXPECT_EQ(r0.timeline.ops[ids.gemm].start_ns, 0);
  EXPECT_EQ(r0.timeline.ops[ids.gemm].duration_ns(), 6000);
  std::filesystem::remove(path);
}

TEST(SimCalibrated, CollectivesWithATableTakeItsTimeOthersRunTheirFlows) {
  auto cal = calibration(6000);
  cal.launch.measured = true;
  cal.launch.event_overhead_ns = 3000;
  cal.comm.push_back({"all_gather", 4, {{1024, 10000}, {1 << 20, 30000}}});
  // The table of the op and group size, interpolated in bytes, + the event overhead.
  EXPECT_DOUBLE_EQ(calibrated_collective_ns(cal, OpKind::kAllGather, 4, 1024), 10000 + 3000);
  EXPECT_DOUBLE_EQ(calibrated_collective_ns(cal, OpKind::kAllGather, 4, (1024 + (1 << 20)) / 2.0),
                   20000 + 3000);
  EXPECT_EQ(calibrated_collective_ns(cal, OpKind::kAllGather, 2, 1024), -1);  // no 2-rank table
  EXPECT_EQ(calibrated_collective_ns(cal, OpKind::kReduceScatter, 4, 1024), -1);
  EXPECT_EQ(calibrated_collective_ns(cal, OpKind::kAllReduce, 4, 1024), 30000 + 3000);
  EXPECT_EQ(calibrated_collective_ns(cal, OpKind::kAllToAll, 4, 1024), -1);
  EXPECT_EQ(calibrated_collective_ns(cal, OpKind::kSend, 2, 1024), -1);
  // Group sizes without a table: the model's time scaled by measured / model at the nearest
  // measured sizes, interpolated in log2(ranks). all_gather has a 4-rank table only.
  const CommModelFn model = [](OpKind, int ranks, double) { return 1000.0 * ranks; };
  // 2 ranks: ratio at 4 ranks = 10000 / 4000 = 2.5, so 2000 x 2.5 (+ the 3000 overhead).
  EXPECT_DOUBLE_EQ(calibrated_collective_ns(cal, OpKind::kAllGather, 2, 1024, true, model),
                   2000 * 2.5 + 3000);
  // Between a 2- and an 8-rank table, at 4 ranks: the ratios' midpoint in log2(ranks).
  plan::Calibration two = cal;
  two.comm.push_back({"reduce_scatter", 2, {{1024, 4000}}});
  two.comm.push_back({"reduce_scatter", 8, {{1024, 16000}}});
  EXPECT_DOUBLE_EQ(calibrated_collective_ns(two, OpKind::kReduceScatter, 4, 1024, true, model),
                   4000 * (2.0 + 2.0) / 2 + 3000);
  EXPECT_EQ(calibrated_collective_ns(two, OpKind::kReduceScatter, 4, 1024), -1);  // no model
  EXPECT_EQ(calibrated_collective_ns(two, OpKind::kAllToAll, 4, 1024, true, model), -1);
  // In size, with a model: measured / model interpolated in log(bytes) between the points
  // (1024 B: 10000 / 1024, 1 MB: 30000 / 2^20; halfway in log at 32 KB), table points exact.
  const CommModelFn by_bytes = [](OpKind, int, double b) { return b; };
  EXPECT_DOUBLE_EQ(calibrated_collective_ns(cal, OpKind::kAllGather, 4, 32768, true, by_bytes),
                   32768 * (10000.0 / 1024 + 30000.0 / (1 << 20)) / 2 + 3000);
  EXPECT_DOUBLE_EQ(calibrated_collective_ns(cal, OpKind::kAllGather, 4, 1024, true, by_bytes),
                   10000 + 3000);
  // In a run: the 4-rank all-gather ends the table time after its last member is ready
  // (plus the launch gap); a 2-rank reduce-scatter without a table runs on the links.
  const std::string path = temp_path("coll.yaml");
  plan::write_calibration(path, cal);
  SimOptions o;
  o.calibration = path;
  ProgramBuilder b(4);
  const int all = b.group("all", {0, 1, 2, 3});
  const int pair = b.group("pair", {0, 1});
  const auto ag = b.collective(OpKind::kAllGather, all, 1024);
  const auto rs = b.collective(OpKind::kReduceScatter, pair, 1 << 20, {{ag[0]}, {ag[1]}});
  const plan::Program p = b.build();
  const SimResult r = simulate(p, testing::star(4), o);
  for (OpId id : ag) EXPECT_EQ(r.timeline.ops[id].end_ns, 13000);
  // Without the table: the flow model (phases on the star's links) gives another time.
  auto cal0 = cal;
  cal0.comm.pop_back();
  plan::write_calibration(path, cal0);
  const SimResult r0 = simulate(p, testing::star(4), o);
  EXPECT_NE(r0.timeline.ops[ag[0]].end_ns, 13000);
  // The reduce-scatter ran its flows both times: the same duration.
  EXPECT_EQ(r.timeline.ops[rs[0]].duration_ns(), r0.timeline.ops[rs[0]].duration_ns());
  std::filesystem::remove(path);
}

TEST(SimCalibrated, MeasuredCommSlowdownBecomesTheInterferenceFactor) {
  // comm_slowdown s (compute takes 1 + s times as long while NCCL moves data on its GPU) is
  // the simulator's comm_interference f with 1 / (1 - f) = 1 + s: s = 0.25 -> f = 0.2.
  auto cal = calibration(6000);
  cal.launch.measured = true;
  const auto before = calibrated_comm_params(cal);
  for (const auto& [name, v] : before) EXPECT_NE(name, "comm_interference");
  cal.launch.comm_slowdown = 0.25;
  const auto after = calibrated_comm_params(cal);
  ASSERT_EQ(after.size(), before.size() + 1);
  EXPECT_EQ(after.back().first, "comm_interference");
  EXPECT_DOUBLE_EQ(after.back().second, 0.2);
}

}  // namespace
}  // namespace masep::sim
