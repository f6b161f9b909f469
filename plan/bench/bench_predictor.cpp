// Google Benchmark of the time predictor and the balancer (issue 17; not a test): host time
// of one op prediction (roofline and calibrated), of one expert cost, and of one placement.
// Figures and the machine that gave them: docs/load-balancing.md.
//
//   ninja -C build-cpu masep_bench_predictor && ./build-cpu/plan/masep_bench_predictor
#include <benchmark/benchmark.h>

#include <memory>

#include "masep/plan/balancer.hpp"
#include "masep/plan/calibration.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/expert_load.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/time_predictor.hpp"

namespace {

using namespace masep::plan;

const Program& paper_program() {
  static const Program p = compile(load_scenario("paper", {"workload.decode_steps=2"}));
  return p;
}

// Predicts every op of the compiled paper scenario (2 steps); reports ns per op.
void run_ops(benchmark::State& state, const TimePredictor& tp) {
  const Program& p = paper_program();
  for (auto _ : state) {
    double sum = 0;
    for (const Op& op : p.ops) sum += tp.op_ns(p, op);
    benchmark::DoNotOptimize(sum);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(p.ops.size()));
  state.counters["ns/op"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * static_cast<double>(p.ops.size()),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_PredictOpRoofline(benchmark::State& state) {
  const TimePredictor tp(load_scenario("paper").topology);
  run_ops(state, tp);
}
BENCHMARK(BM_PredictOpRoofline);

void BM_PredictOpCalibrated(benchmark::State& state) {
  const TimePredictor tp(load_scenario("paper").topology,
                         load_calibration(MASEP_SOURCE_DIR "/sim/calibration/h100.yaml"));
  run_ops(state, tp);
}
BENCHMARK(BM_PredictOpCalibrated);

void BM_ExpertCost(benchmark::State& state) {
  const Scenario s = load_scenario("paper");
  const TimePredictor tp(s.topology);
  double t = 0.5;
  for (auto _ : state) {
    benchmark::DoNotOptimize(tp.expert_ns(s.model, t));
    t = t > 64 ? 0.5 : t + 0.25;
  }
}
BENCHMARK(BM_ExpertCost);

// One placement of the DeepSeek-V3-like zoo model's 256 experts on 32 MoE GPUs (+32 copies).
void BM_Placement(benchmark::State& state, const char* policy) {
  const Scenario s = load_scenario(
      "paper", {"model=deepseek-v3-like", "topology=cluster-128xdgx-h100",
                "plan.attention.gpus=32", "plan.attention.head_parallel=1",
                "plan.attention.replicas=32", "plan.moe.gpus=32", "workload.batch=2048",
                "workload.routing.kind=zipf", "workload.routing.skew=1.2",
                std::string("plan.balance.policy=") + policy, "plan.balance.redundant_experts=32"});
  const auto load = expected_expert_load(s, 0).per_launch();
  for (auto _ : state) benchmark::DoNotOptimize(balance_experts(s, load));
}
BENCHMARK_CAPTURE(BM_Placement, eplb, "eplb")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Placement, predicted, "predicted")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
