// The approximate simulation tier (`masep sim --fidelity approx`, issue 13): layer sampling.
// A decode step of a model with L layers (D dense, then L − D MoE layers) is simulated with a
// prefix of D + K layers instead; the step time is extrapolated from the simulated layers'
// periods. Routing is sampled per (step, layer), so the K simulated MoE layers are K draws of
// the same distribution the other MoE layers follow (the exact run's own draws for layers
// 0..D+K−1: compile samples by absolute layer), and every MoE layer of a step does the same
// work otherwise.
//
// A layer's period in step s is E(s, l) − E(s, l − 1), where E(s, l) is the end of the last op
// of (s, l) (E(s, −1) = the end of step s − 1, 0 for the first step); the periods of a step
// add up to its time as plan::compute_metrics defines it. The dense layers, the first MoE
// layer (the transition from dense, or from the previous step when D = 0) and the step's
// last layer (the transition to the next step: it overlaps the next step's first layer, or
// drains the pipeline at the end of the run, so its period differs) stand for themselves;
// each simulated MoE layer between them stands for W = (L − D − 2) / (K − 2) layers.
// Estimated step time = simulated step time + Σ (weight − 1) · period. Per GPU, busy,
// exposed, waiting and idle times and HBM bytes / FLOPs are scaled by the same layer weights
// applied to the rank's own ops (busy = busy × Σ w·duration / Σ duration over its compute ops, and
// so on), utilisation = busy / estimated makespan. The error against the exact run is measured in
// docs/simulator-model.md ("Approximate tier: layer sampling"); tests/tools/test_approx.cpp
// pins it on small cases.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "masep/plan/metrics.hpp"
#include "masep/plan/program.hpp"
#include "masep/plan/scenario.hpp"
#include "masep/plan/timeline.hpp"

namespace masep::tools {

/// Which layers an approximate run simulates, and how many layers each stands for.
struct LayerSampling {
  int model_layers = 0;      ///< L: the scenario's decoder layers
  int simulated_layers = 0;  ///< layers compiled per step (the model's first ones)
  int exact_layers = 0;      ///< layers 0 .. exact_layers − 1 stand for themselves, and the last
  double weight = 1;         ///< every simulated layer between them stands for this many
  /// One line for the run header: what was approximated, or why the run is exact.
  std::string note;
  bool approximated() const { return simulated_layers < model_layers; }
  /// The step's last simulated layer stands for itself (it meets the next step).
  double layer_weight(int layer) const {
    return layer >= exact_layers && layer + 1 < simulated_layers ? weight : 1.0;
  }
};

/// The sampling for `s` with `moe_layers` (>= 3) MoE layers simulated per step. Exact
/// (simulated_layers == model_layers, note says why) when the model has no more MoE layers
/// than that, or when layers differ in a way the prefix would not represent: a sliding-window
/// pattern over layers, or fault_tolerance.kv_copies > 1 (the mirror copies every layer's KV).
/// Throws std::invalid_argument for moe_layers < 3.
LayerSampling choose_layer_sampling(const plan::Scenario& s, int moe_layers);

/// Turns a layer-sampled run's metrics into the estimate for the whole model. Fed the sampled
/// run's ops and timings in op-id order (chunk by chunk, or the whole Program at once).
class LayerExtrapolator {
 public:
  /// `header`: the sampled Program's header (ranks, first_step). Nothing is kept of it but
  /// the rank count and first step.
  LayerExtrapolator(const LayerSampling& ls, const plan::Program& header);
  void add(std::span<const plan::Op> ops, std::span<const plan::OpTiming> t);
  /// The estimate from `sampled` (MetricsFolder / compute_metrics of the sampled run, with the
  /// full scenario `s` so that memory is the full model's).
  plan::RunMetrics finish(const plan::RunMetrics& sampled, const plan::Scenario& s) const;

 private:
  struct Rank {
    double dur[2] = {0, 0}, wdur[2] = {0, 0};  // [compute, communication] durations
    double wbytes = 0, wflops = 0;             // HBM bytes and FLOPs, weighted
  };
  LayerSampling ls_;
  int32_t first_step_ = 0;
  std::vector<Rank> ranks_;
  std::vector<int64_t> layer_end_;  // [(step − first_step) · simulated_layers + layer], -1 none
};

}  // namespace masep::tools
