// The time predictor (plan/time_predictor.hpp) against the simulator (issue 17): median error
// per compute op kind within 5 % on the paper scenarios, with the datasheet roofline and with
// a calibration file (sim/calibration/h100.yaml on an H100 topology).
#include <gtest/gtest.h>

#include <string>

#include "masep/plan/calibration.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/prediction_error.hpp"
#include "masep/plan/time_predictor.hpp"
#include "masep/sim/calibrated_model.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/topology/topology.hpp"

namespace {

using namespace masep;

plan::PredictionError run(const plan::Scenario& s, const std::string& calibration) {
  const plan::Program p = plan::compile(s);
  const topology::Topology topo(s.topology);
  sim::SimOptions o;
  o.calibration = calibration;
  o.allow_calibration_mismatch = true;
  const sim::SimResult r = sim::simulate(p, topo, o);
  if (calibration.empty()) return plan::prediction_error(p, r.timeline, plan::TimePredictor(s.topology));
  return plan::prediction_error(
      p, r.timeline, plan::TimePredictor(s.topology, plan::load_calibration(calibration)));
}

void expect_compute_within(const plan::PredictionError& e, double pct) {
  ASSERT_FALSE(e.by_kind.empty());
  for (const auto& row : e.by_kind) {
    if (row.group == "exchange" || row.group == "all_gather" || row.group == "reduce_scatter" ||
        row.group == "all_reduce" || row.group == "all_to_all" || row.group == "send" ||
        row.group == "recv") {
      continue;
    }
    EXPECT_LE(row.median_abs_pct, pct) << row.group;
  }
}

TEST(TimePredictor, RooflineMatchesTheSimulatorPerKind) {
  for (const char* name : {"paper", "paper-colocated"}) {
    const plan::Scenario s = plan::load_scenario(name, {"workload.decode_steps=2",
                                                        "workload.routing.kind=zipf"});
    expect_compute_within(run(s, ""), 5.0);
  }
}

TEST(TimePredictor, CalibratedMatchesTheSimulatorPerKind) {
  const plan::Scenario s = plan::load_scenario(
      "paper", {"workload.decode_steps=2", "topology.gpu=H100-SXM5-80GB"});
  expect_compute_within(run(s, MASEP_SOURCE_DIR "/sim/calibration/h100.yaml"), 5.0);
}

TEST(TimePredictor, ErrorTableCatchesAWrongModel) {
  // A predictor with half the HBM efficiency is off by far more than 5 % on weight-bound ops.
  const plan::Scenario s = plan::load_scenario("paper", {"workload.decode_steps=1"});
  const plan::Program p = plan::compile(s);
  const sim::SimResult r = sim::simulate(p, topology::Topology(s.topology));
  plan::PredictorParams bad;
  bad.eff_hbm_gemm = 0.4;
  const auto e = plan::prediction_error(p, r.timeline, plan::TimePredictor(s.topology, bad));
  bool found = false;
  for (const auto& row : e.by_kind) {
    if (row.group == "grouped_gemm") {
      found = true;
      EXPECT_GT(row.median_pct, 50);
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
