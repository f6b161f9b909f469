// Property (issue 21): over random scenarios, extreme values included, making any link
// slower, any latency larger or any calibrated time larger never makes the TPOT smaller.
// Before the checked double -> ns conversion (plan/time_ns.hpp) and the load-time ranges
// (plan/limits.hpp), absurd inputs overflowed the conversion and gave *faster* results.
// A run may instead end in an error (an input past its range, a duration past 2^53 ns):
// that is allowed, a smaller TPOT is not, and a worse input must not turn an error into a
// result.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "masep/plan/calibration.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/limits.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/metrics.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/topology/topology.hpp"

namespace masep::sim {
namespace {

// Knobs of the paper topology (4 nodes x 4 A100, NVLink mesh, one NIC per GPU).
struct Net {
  double intra_GBps, intra_lat, nic_GBps, nic_lat, switch_lat;
};

std::vector<std::string> overrides(const std::vector<std::string>& extra, const Net& n) {
  std::vector<std::string> o = {"workload.decode_steps=2", "model.layers=1",
                                fmt::format("topology.intra_node.GBps={}", n.intra_GBps),
                                fmt::format("topology.intra_node.latency_ns={}", n.intra_lat),
                                fmt::format("topology.switch_latency_ns={}", n.switch_lat)};
  std::string nics = "[";
  for (int g = 0; g < 4; ++g) {
    nics += fmt::format("{}{{GBps: {}, latency_ns: {}, gpus: [{}]}}", g ? ", " : "", n.nic_GBps,
                        n.nic_lat, g);
  }
  o.push_back("topology.nics=" + nics + "]");
  o.insert(o.end(), extra.begin(), extra.end());
  return o;
}

// TPOT mean in ns, or nullopt when the run is refused with an error.
std::optional<double> tpot(const std::string& scenario, const std::vector<std::string>& ov,
                           const std::string& calibration) {
  try {
    const plan::Scenario s = plan::load_scenario(scenario, ov);
    const plan::Program p = plan::compile(s);
    const topology::Topology topo(s.topology);
    SimOptions o;
    o.calibration = calibration;
    const SimResult r = simulate(p, topo, o);
    return plan::compute_metrics(s, p, r.timeline).tpot_mean_ms * 1e6;
  } catch (const plan::InputError&) {
    return std::nullopt;
  } catch (const plan::DurationError&) {
    return std::nullopt;
  }
}

double log_uniform(std::mt19937_64& g, double lo, double hi) {
  return std::exp(std::uniform_real_distribution<double>(std::log(lo), std::log(hi))(g));
}

// Extreme values with a fair chance: the ends of the accepted range, or anything between.
double pick(std::mt19937_64& g, double lo, double hi) {
  const int c = static_cast<int>(g() % 6);
  if (c == 0) return lo;
  if (c == 1) return hi;
  return log_uniform(g, std::max(lo, 1e-3), hi);
}

const char* kScenarios[] = {"paper", "paper-colocated"};

// Plan shapes the trials draw from (on the paper scenario's 16 GPUs): MA separation at
// several ratios, head/sequence splits and micro-batch counts, and co-located plans at
// several tensor-parallel widths and GPU counts.
const char* kPlans[] = {
    "",  // the scenario's own plan
    "plan={kind: ma_separation, attention: {gpus: 8, head_parallel: 4, replicas: 2}, "
    "moe: {gpus: 8, placement: round_robin}, micro_batches: 2}",
    "plan={kind: ma_separation, attention: {gpus: 4, head_parallel: 2, replicas: 2}, "
    "moe: {gpus: 2, placement: contiguous}, micro_batches: 1}",
    "plan={kind: ma_separation, attention: {gpus: 14, head_parallel: 2, replicas: 7}, "
    "moe: {gpus: 2, placement: round_robin}, micro_batches: 3}",
    "plan={kind: colocated, colocated: {gpus: 8, tensor_parallel: 8}, micro_batches: 1}",
    "plan={kind: colocated, colocated: {gpus: 16, tensor_parallel: 2}, micro_batches: 2}",
    "plan={kind: colocated, colocated: {gpus: 4, tensor_parallel: 1}, micro_batches: 1}",
};

// Returns whether both runs gave a result (so the trial compared something).
bool expect_not_faster(const std::optional<double>& before, const std::optional<double>& after,
                       const std::string& what) {
  if (!before) {
    EXPECT_FALSE(after.has_value()) << what << ": a worse input turned an error into a result";
    return false;
  }
  if (!after) return false;  // a worse input may be refused
  EXPECT_GE(*after, *before) << what;
  return true;
}

TEST(SimMonotone, SlowerLinksAndLongerLatenciesNeverLowerTheTpot) {
  std::mt19937_64 g(21);
  const int trials = 60;
  int compared = 0, strictly_slower = 0;
  // The NVLink mesh limits intra_node.GBps to the A100's 300 GB/s over 3 links.
  for (int trial = 0; trial < trials; ++trial) {
    const std::string sc = kScenarios[trial % 2];
    const std::string batch =
        trial % 3 == 0 ? "" : fmt::format("workload.batch={}", trial % 3 == 1 ? 6 : 48);
    // A random plan shape on the paper scenario (a fixed draw per trial, before the values).
    const std::string plan_shape = kPlans[g() % (sizeof kPlans / sizeof kPlans[0])];
    std::vector<std::string> shape;
    if (!batch.empty()) shape.push_back(batch);
    if (sc == std::string("paper") && !plan_shape.empty()) shape.push_back(plan_shape);
    const std::vector<std::string>& extra = shape;
    Net n{pick(g, plan::kBandwidthGBps.lo, 100), pick(g, 0, plan::kLatencyNs.hi),
          pick(g, plan::kBandwidthGBps.lo, plan::kBandwidthGBps.hi),
          pick(g, 0, plan::kLatencyNs.hi), pick(g, 0, plan::kLatencyNs.hi)};
    const auto base = tpot(sc, overrides(extra, n), "");
    Net w = n;
    const double f = log_uniform(g, 1.001, 1e4);
    std::string what;
    switch (trial % 5) {
      case 0:
        w.intra_GBps = std::max(plan::kBandwidthGBps.lo, n.intra_GBps / f);
        what = "intra_node.GBps";
        break;
      case 1:
        w.nic_GBps = std::max(plan::kBandwidthGBps.lo, n.nic_GBps / f);
        what = "nics.GBps";
        break;
      case 2:
        w.intra_lat = std::min(plan::kLatencyNs.hi, n.intra_lat * f + 1);
        what = "intra_node.latency_ns";
        break;
      case 3:
        w.nic_lat = std::min(plan::kLatencyNs.hi, n.nic_lat * f + 1);
        what = "nics.latency_ns";
        break;
      default:
        w.switch_lat = std::min(plan::kLatencyNs.hi, n.switch_lat * f + 1);
        what = "switch_latency_ns";
    }
    const auto worse = tpot(sc, overrides(extra, w), "");
    compared +=
        expect_not_faster(base, worse,
                          fmt::format("trial {} {} {} -> worse {} (base {} ns, worse {} ns)", trial,
                                      sc, fmt::join(extra, " "), what, base.value_or(-1), worse.value_or(-1)));
    strictly_slower += base && worse && *worse > *base;
  }
  // The property is not vacuous: most trials ran both sides, and many got slower.
  EXPECT_GE(compared, trials / 2);
  EXPECT_GE(strictly_slower, trials / 4);
  std::printf("link/latency trials: %d compared, %d strictly slower, %d refused\n", compared,
              strictly_slower, trials - compared);
}

// A calibration covering every compute op and collective of the scenario, with random
// (extreme-capable) times; `scale` multiplies every point of table `which` (0 = none).
plan::Calibration random_calibration(const plan::Program& p, std::mt19937_64& g) {
  plan::Calibration c;
  c.device = "synthetic (property test)";
  auto points = [&](int64_t hi) {
    const double a = pick(g, 1, 1e7);
    return std::vector<plan::CalPoint>{{1, a}, {hi, std::min(a * log_uniform(g, 1, 1e3), 1e10)}};
  };
  std::set<std::pair<int64_t, int64_t>> gemm;
  std::set<std::tuple<int, int, int, int>> attn;
  std::set<std::string> kernels;
  for (const plan::Op& op : p.ops) {
    if (op.kind == plan::OpKind::kGemm || op.kind == plan::OpKind::kGroupedGemm) {
      gemm.emplace(op.n, op.k);
    } else if (op.kind == plan::OpKind::kAttention) {
      attn.emplace(op.heads, op.kv_heads, op.head_dim, op.batch);
    } else if (!plan::is_communication(op.kind)) {
      kernels.insert(std::string(op.name));
    }
  }
  for (const auto& [n, k] : gemm) {
    c.gemm.push_back({n, k, points(1 << 16)});
  }
  for (const auto& [h, kv, hd, b] : attn) c.attention.push_back({h, kv, hd, b, points(1 << 20)});
  for (const auto& k : kernels) c.kernels.push_back({k, points(int64_t{1} << 34)});
  for (const auto& op : plan::calibration_comm_ops()) {
    for (int ranks : {2, 4, 8, 12, 16}) c.comm.push_back({op, ranks, points(int64_t{1} << 34)});
  }
  return c;
}

TEST(SimMonotone, LongerCalibratedTimesNeverLowerTheTpot) {
  std::mt19937_64 g(2121);
  const std::string path = (std::filesystem::temp_directory_path() /
                            fmt::format("masep_monotone_{}.yaml", static_cast<long>(::getpid())))
                               .string();
  const int trials = 40;
  int strictly_slower = 0;
  for (int trial = 0; trial < trials; ++trial) {
    const std::string sc = kScenarios[trial % 2];
    const std::vector<std::string> ov = {"workload.decode_steps=2", "model.layers=1"};
    const plan::Scenario s = plan::load_scenario(sc, ov);
    const plan::Calibration cal = random_calibration(plan::compile(s), g);
    plan::write_calibration(path, cal);
    const auto base = tpot(sc, ov, path);
    ASSERT_TRUE(base.has_value()) << "trial " << trial;  // every time is within its range
    // Scale one table (every point, so any interpolation rule keeps its order).
    plan::Calibration worse = cal;
    const double f = log_uniform(g, 1.001, 1e3);
    std::vector<std::vector<plan::CalPoint>*> tables;
    for (auto& t : worse.gemm) tables.push_back(&t.points);
    for (auto& t : worse.attention) tables.push_back(&t.points);
    for (auto& t : worse.kernels) tables.push_back(&t.points);
    for (auto& t : worse.comm) tables.push_back(&t.points);
    const size_t which = g() % tables.size();
    for (auto& pt : *tables[which]) pt.time_ns = std::min(pt.time_ns * f, 1e10);
    plan::write_calibration(path, worse);
    const auto after = tpot(sc, ov, path);
    expect_not_faster(base, after,
                      fmt::format("trial {} {}: table {} x {} (base {} ns, worse {} ns)", trial, sc,
                                  which, f, *base, after.value_or(-1)));
    strictly_slower += after && *after > *base;
  }
  std::filesystem::remove(path);
  EXPECT_GE(strictly_slower, trials / 4);
  std::printf("calibration trials: %d, %d strictly slower\n", trials, strictly_slower);
}

}  // namespace
}  // namespace masep::sim
