// Calibration files (round trip, located errors) and table interpolation (exact at points,
// monotone between them, the documented rule outside the table).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "masep/plan/calibration.hpp"
#include "masep/plan/calibration_lookup.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/interpolation.hpp"

namespace masep::plan {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("masep_cal_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

Calibration sample() {
  Calibration c;
  c.device = "NVIDIA Test \"GPU\"";
  c.driver = "13.0";
  c.cuda = "13.0";
  c.cublas = "13.1";
  c.nccl = "2.28.3";
  c.date = "2026-01-02";
  c.gpus = 4;
  c.notes = "synthetic: unit test";
  c.gemm.push_back({4096, 6144, {{1, 10123.456789}, {8, 10200.1}, {64, 11000.0 / 3.0 * 3.1}}});
  c.gemm.push_back({14336, 4096, {{1, 40000}, {512, 90000}}});
  c.grouped_gemm.push_back({1536, 2048, 32, 2345.5, {{1, 1900}, {4, 2000.25}, {32, 9000}}});
  c.grouped_gemm.push_back(
      {1536, 2048, 1 << 20, 2000, {{1, 1000}, {64, 5000}}, models::DType::kFP8});
  c.attention.push_back({32, 8, 128, 16, {{512, 7000}, {2048, 15000.25}, {8192, 51000}}});
  c.kernels.push_back({"rmsnorm", {{1024, 2100}, {1 << 20, 3500.5}}});
  c.kernels.push_back({"elementwise", {{4096, 2000}}});
  for (const auto& op : calibration_comm_ops()) {
    c.comm.push_back({op, 2, {{1024, 15000}, {4096, 15500}, {268435456, 900000.125}}});
  }
  c.comm.push_back({"all_reduce", 4, {{1024, 20000}}});
  return c;
}

TEST(Calibration, RoundTripIsExact) {
  const Calibration c = sample();
  const std::string path = temp_path("round.yaml");
  write_calibration(path, c);
  const Calibration back = load_calibration(path);
  EXPECT_EQ(back, c);
  // Deterministic text.
  EXPECT_EQ(calibration_yaml(back), calibration_yaml(c));
  std::filesystem::remove(path);
}

TEST(Calibration, EmptyTablesRoundTrip) {
  Calibration c;
  c.device = "d";
  const std::string path = temp_path("empty.yaml");
  write_calibration(path, c);
  EXPECT_EQ(load_calibration(path), c);
  std::filesystem::remove(path);
}

std::string error_of(const std::string& text) {
  try {
    parse_calibration(text, "cal.yaml");
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}

TEST(Calibration, ErrorsNameLineAndKey) {
  const std::string head = "format: masep-calibration/1\ndevice: x\n";
  // Sizes must increase: the error points at line 6 (1-based) and the key path.
  std::string e = error_of(head + "gemm:\n  - n: 8\n    k: 8\n    points: [[4, 10], [2, 20]]\n");
  EXPECT_NE(e.find("cal.yaml:6:"), std::string::npos) << e;
  EXPECT_NE(e.find("gemm[0].points[1][0]"), std::string::npos) << e;
  EXPECT_NE(e.find("increase"), std::string::npos) << e;
  e = error_of(head + "comm:\n  - op: allreduce\n    ranks: 2\n    points: [[1, 1]]\n");
  EXPECT_NE(e.find("comm[0].op"), std::string::npos) << e;
  EXPECT_NE(e.find("all_reduce"), std::string::npos) << e;  // did-you-mean / accepted list
  e = error_of(head + "kernels:\n  - name: a\n    points: [[1, -1]]\n");
  EXPECT_NE(e.find("kernels[0].points[0][1]"), std::string::npos) << e;
  e = error_of(head + "grouped_gemm:\n  - {n: 8, k: 8, base_ns: 1, points: [[1, 1]]}\n");
  EXPECT_NE(e.find("grouped_gemm[0]"), std::string::npos) << e;
  EXPECT_NE(e.find("max_rows"), std::string::npos) << e;
  e = error_of(head + "grouped_gemm:\n  - {n: 8, k: 8, max_rows: 4, base_ns: -1, points: [[1, 1]]}\n");
  EXPECT_NE(e.find("grouped_gemm[0].base_ns"), std::string::npos) << e;
  e = error_of(head +
               "grouped_gemm:\n  - {n: 8, k: 8, weights: int8, max_rows: 4, base_ns: 1, "
               "points: [[1, 1]]}\n");
  EXPECT_NE(e.find("grouped_gemm[0].weights"), std::string::npos) << e;
  EXPECT_NE(e.find("fp8"), std::string::npos) << e;  // the accepted spellings
  e = error_of(head + "gemms: []\n");
  EXPECT_NE(e.find("gemms"), std::string::npos) << e;
  e = error_of("format: masep-calibration/9\ndevice: x\n");
  EXPECT_NE(e.find("unsupported format"), std::string::npos) << e;
  e = error_of(head +
               "kernels:\n  - {name: a, points: [[1, 1]]}\n  - {name: a, points: [[1, 1]]}\n");
  EXPECT_NE(e.find("duplicate"), std::string::npos) << e;
  e = error_of("device: x\n");
  EXPECT_NE(e.find("format"), std::string::npos) << e;
  EXPECT_THROW(load_calibration(temp_path("missing.yaml")), std::runtime_error);
  // Absurd but positive times and overheads (issue 21) are errors at their key.
  e = error_of(head + "kernels:\n  - name: a\n    points: [[1, 1e300]]\n");
  EXPECT_NE(e.find("cal.yaml:5:"), std::string::npos) << e;
  EXPECT_NE(
      e.find("kernels[0].points[0][1]: 1e300 is outside the accepted range [0.001, 1e+10] ns"),
      std::string::npos)
      << e;
  e = error_of(head + "launch: {event_overhead_ns: 1e300, event_gap_ns: 0}\n");
  EXPECT_NE(e.find("launch.event_overhead_ns"), std::string::npos) << e;
  EXPECT_NE(e.find("outside"), std::string::npos) << e;
  e = error_of(head + "launch: {event_overhead_ns: 0, event_gap_ns: 0, comm_slowdown: 1e3}\n");
  EXPECT_NE(e.find("launch.comm_slowdown"), std::string::npos) << e;
}

TEST(Calibration, WriteRejectsInvalidTables) {
  Calibration c = sample();
  c.gemm[0].points[1].size = 1;  // not increasing
  EXPECT_THROW(write_calibration(temp_path("bad.yaml"), c), std::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(temp_path("bad.yaml")));
}

const std::vector<CalPoint> kTable = {{100, 10}, {1000, 40}, {10000, 50}, {100000, 50}};

TEST(Interpolation, ExactAtTablePoints) {
  for (const auto& p : kTable) {
    const auto r = interpolate(kTable, static_cast<double>(p.size));
    EXPECT_EQ(r.time_ns, p.time_ns);
    EXPECT_EQ(r.how, Lookup::kExact);
  }
}

TEST(Interpolation, LinearInSizeAndMonotoneBetweenPoints) {
  // Half-way between 100 and 1000 lies 550 (costs are affine in size between two points).
  const auto mid = interpolate(kTable, 550);
  EXPECT_NEAR(mid.time_ns, 25.0, 1e-9);
  EXPECT_NEAR(interpolate(kTable, 3250).time_ns, 42.5, 1e-9);  // a quarter of 1000..10000
  EXPECT_EQ(mid.how, Lookup::kInterpolated);
  double prev = 0;
  for (double x = 100; x <= 100000; x *= 1.07) {
    const auto r = interpolate(kTable, x);
    EXPECT_GE(r.time_ns, prev - 1e-12) << x;
    // Between its two neighbours' times.
    EXPECT_GE(r.time_ns, 10);
    EXPECT_LE(r.time_ns, 50);
    prev = r.time_ns;
  }
}

TEST(Interpolation, OutsideTheTableFollowsTheDocumentedRule) {
  const auto below = interpolate(kTable, 10);
  EXPECT_EQ(below.how, Lookup::kBelow);
  EXPECT_EQ(below.time_ns, 10);  // the smallest measured launch's time
  const auto above = interpolate(kTable, 400000);
  EXPECT_EQ(above.how, Lookup::kAbove);
  EXPECT_DOUBLE_EQ(above.time_ns, 50.0 * 4);  // constant throughput: time ∝ size
  EXPECT_TRUE(is_extrapolated(below.how));
  EXPECT_TRUE(is_extrapolated(above.how));
  EXPECT_FALSE(is_extrapolated(Lookup::kInterpolated));
  EXPECT_THROW(interpolate(std::vector<CalPoint>{}, 1), std::invalid_argument);
  EXPECT_THROW(interpolate(kTable, 0), std::invalid_argument);
}

TEST(Calibration, LaunchSectionIsOptionalAndRoundTrips) {
  Calibration c = sample();
  EXPECT_FALSE(c.launch.measured);
  EXPECT_EQ(calibration_yaml(c).find("launch:"), std::string::npos);  // old files unchanged
  c.launch = {true, 3012.5, 2710.25, 9100, 2400};
  const Calibration back = parse_calibration(calibration_yaml(c), "mem");
  EXPECT_EQ(back, c);
  const std::string bad =
      calibration_yaml(sample()) + "launch:\n  event_overhead_ns: 1\n  event_gap: 2\n";
  EXPECT_THROW(parse_calibration(bad, "mem"), InputError);  // unknown key
  const std::string neg =
      calibration_yaml(sample()) + "launch:\n  event_overhead_ns: -1\n  event_gap_ns: 2\n";
  EXPECT_THROW(parse_calibration(neg, "mem"), InputError);
  // comm_slowdown: optional, written only when measured, round-trips.
  EXPECT_EQ(calibration_yaml(c).find("comm_slowdown"), std::string::npos);
  c.launch.comm_slowdown = 0.0425;
  EXPECT_EQ(parse_calibration(calibration_yaml(c), "mem"), c);
  const std::string negs =
      calibration_yaml(sample()) +
      "launch:\n  event_overhead_ns: 1\n  event_gap_ns: 2\n  comm_slowdown: -0.1\n";
  EXPECT_THROW(parse_calibration(negs, "mem"), InputError);
  // comm_resident_slowdown: the same.
  EXPECT_EQ(calibration_yaml(c).find("comm_resident_slowdown"), std::string::npos);
  c.launch.comm_resident_slowdown = 0.119;
  EXPECT_NE(calibration_yaml(c).find("comm_resident_slowdown: 0.119"), std::string::npos);
  EXPECT_EQ(parse_calibration(calibration_yaml(c), "mem"), c);
  const std::string negr =
      calibration_yaml(sample()) +
      "launch:\n  event_overhead_ns: 1\n  event_gap_ns: 2\n  comm_resident_slowdown: -1\n";
  EXPECT_THROW(parse_calibration(negr, "mem"), InputError);
}

TEST(Interpolation, SinglePointTable) {
  const std::vector<CalPoint> one = {{64, 8}};
  EXPECT_EQ(interpolate(one, 64).how, Lookup::kExact);
  EXPECT_EQ(interpolate(one, 32).time_ns, 8);
  EXPECT_EQ(interpolate(one, 128).time_ns, 16);
}

// GEMMs with FP8 weights take the fp8 grouped_gemm table of their exact shape — an expert
// projection per group, an attention projection (kGemm) as one group of m rows — and never a
// bf16 table or the cuBLAS loop; without an fp8 table they are left to the roofline (-1).
TEST(CalibrationLookup, Fp8WeightsUseTheirOwnGroupedTable) {
  Calibration c = sample();
  plan::Op up;
  up.kind = plan::OpKind::kGroupedGemm;
  up.role = plan::OpRole::kExpertUp;
  up.n = 1536;
  up.k = 2048;
  up.group_m = {1, 0, 64};
  up.dtype = models::DType::kFP8;
  plan::CalSource src;
  // base 2000 + 1000 (1 row) + 5000 (64 rows); the bf16 table would give 2345.5 + 1900 + ...
  EXPECT_DOUBLE_EQ(plan::calibrated_op_ns(c, up, &src), 8000);
  EXPECT_EQ(src, plan::CalSource::kExact);
  plan::Op qkv;
  qkv.kind = plan::OpKind::kGemm;
  qkv.role = plan::OpRole::kQkv;
  qkv.m = 64;
  qkv.n = 1536;
  qkv.k = 2048;
  qkv.dtype = models::DType::kFP8;
  EXPECT_DOUBLE_EQ(plan::calibrated_op_ns(c, qkv, &src), 7000);  // 2000 + 5000
  qkv.n = 4096;  // no fp8 table of this shape, though a bf16 GEMM table exists
  qkv.k = 6144;
  EXPECT_EQ(plan::calibrated_op_ns(c, qkv, &src), -1);
  EXPECT_EQ(src, plan::CalSource::kRoofline);
  c.grouped_gemm.pop_back();  // the fp8 table
  EXPECT_EQ(plan::calibrated_op_ns(c, up, &src), -1);
  EXPECT_EQ(src, plan::CalSource::kRoofline);
  up.dtype = models::DType::kINT8;
  EXPECT_EQ(plan::calibrated_op_ns(c, up, &src), -1);
}

}  // namespace
}  // namespace masep::plan
