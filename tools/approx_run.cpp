// The approximate tier's layer sampling and extrapolation (approx_run.hpp).
#include "approx_run.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace masep::tools {

LayerSampling choose_layer_sampling(const plan::Scenario& s, int moe_layers) {
  if (moe_layers < 3) {
    throw std::invalid_argument(fmt::format(
        "approximate tier: MoE layers simulated per step must be >= 3 (got {})", moe_layers));
  }
  LayerSampling ls;
  const int layers = std::max(0, s.model.layers);
  const int dense = std::clamp(s.model.dense_layers, 0, layers);
  const int moe = layers - dense;
  ls.model_layers = ls.simulated_layers = ls.exact_layers = layers;
  if (moe <= moe_layers) {
    ls.note = fmt::format(
        "exact (nothing to sample: the model's {} MoE layer{} are no more than the {} an "
        "approximate step simulates)",
        moe, moe == 1 ? "" : "s", moe_layers);
  } else if (s.model.sliding_window > 0 && !s.model.sliding_pattern.empty()) {
    ls.note =
        "exact (layers alternate sliding-window and full attention: a prefix of layers "
        "would not represent them)";
  } else if (s.fault_tolerance.kv_copies > 1) {
    ls.note = "exact (fault_tolerance.kv_copies 2 mirrors every layer's KV cache each step)";
  } else {
    ls.simulated_layers = dense + moe_layers;
    ls.exact_layers = dense + 1;
    ls.weight = static_cast<double>(moe - 2) / (moe_layers - 2);
    ls.note = fmt::format(
        "approx: layer sampling, {} of {} layers simulated per step (layers 0-{}); layers "
        "{}-{} each stand for {:.4g} layers; TPOT, throughput and per-GPU times and "
        "bytes extrapolated (error: docs/simulator-model.md); a trace holds the simulated "
        "layers only",
        ls.simulated_layers, layers, ls.simulated_layers - 1, ls.exact_layers,
        ls.simulated_layers - 2, ls.weight);
  }
  return ls;
}

LayerExtrapolator::LayerExtrapolator(const LayerSampling& ls, const plan::Program& header)
    : ls_(ls), first_step_(header.first_step), ranks_(header.ranks.size()) {}

void LayerExtrapolator::add(std::span<const plan::Op> ops, std::span<const plan::OpTiming> t) {
  if (!ls_.approximated()) return;
  const int layers = ls_.simulated_layers;
  const auto n = static_cast<int64_t>(ranks_.size());
  for (size_t i = 0; i < ops.size() && i < t.size(); ++i) {
    const plan::Op& op = ops[i];
    if (op.rank < 0 || op.rank >= n || op.layer < 0 || op.layer >= layers) continue;
    const double w = ls_.layer_weight(op.layer);
    Rank& r = ranks_[static_cast<size_t>(op.rank)];
    r.wbytes += w * static_cast<double>(op.hbm_bytes);
    r.wflops += w * op.flops;
    const plan::OpTiming& ot = t[i];
    if (ot.start_ns < 0) continue;
    const double d = static_cast<double>(ot.end_ns - ot.start_ns);
    const int k = plan::is_communication(op.kind) ? 1 : 0;
    r.dur[k] += d;
    r.wdur[k] += w * d;
    const int64_t step = op.step - first_step_;
    if (step < 0) continue;
    const auto at = static_cast<size_t>(step * layers + op.layer);
    if (at >= layer_end_.size()) layer_end_.resize((static_cast<size_t>(step) + 1) * layers, -1);
    layer_end_[at] = std::max(layer_end_[at], ot.end_ns);
  }
}

namespace {

double ratio(double weighted, double plain) { return plain > 0 ? weighted / plain : 1.0; }

int64_t scaled(int64_t v, double f) { return std::llround(static_cast<double>(v) * f); }

}  // namespace

plan::RunMetrics LayerExtrapolator::finish(const plan::RunMetrics& sampled,
                                           const plan::Scenario& s) const {
  plan::RunMetrics m = sampled;
  if (!ls_.approximated()) return m;
  const auto layers = static_cast<size_t>(ls_.simulated_layers);
  const size_t steps = layer_end_.size() / layers;
  // Each step's extra time: (weight − 1) × the period of every simulated layer, in the
  // steps' order (the metrics' step_ms skips steps where nothing ran, as this does).
  double total_extra = 0;
  size_t j = 0;
  int64_t prev_step_end = 0;
  for (size_t st = 0; st < steps; ++st) {
    double extra = 0;
    int64_t prev = prev_step_end, step_end = -1;
    for (size_t l = 0; l < layers; ++l) {
      const int64_t e = layer_end_[st * layers + l];
      if (e < 0) continue;
      extra += (ls_.layer_weight(static_cast<int>(l)) - 1.0) * static_cast<double>(e - prev);
      prev = e;
      step_end = std::max(step_end, e);
    }
    if (step_end < 0) continue;
    prev_step_end = step_end;
    if (j < m.step_ms.size()) m.step_ms[j++] += extra / 1e6;
    total_extra += extra;
  }
  m.makespan_ns = sampled.makespan_ns + std::llround(total_extra);
  if (!m.step_ms.empty()) {
    double sum = 0;
    for (double v : m.step_ms) sum += v;
    m.tpot_mean_ms = sum / static_cast<double>(m.step_ms.size());
    auto sorted = m.step_ms;
    std::sort(sorted.begin(), sorted.end());
    m.tpot_p50_ms = plan::nearest_rank_percentile(sorted, 50);
    m.tpot_p99_ms = plan::nearest_rank_percentile(sorted, 99);
  }
  m.tokens_per_s = m.makespan_ns > 0 ? static_cast<double>(m.batch) * m.steps * 1e9 /
                                           static_cast<double>(m.makespan_ns)
                                     : 0.0;
  const auto& gpu = s.topology.gpu;
  const double nsteps = std::max(1, m.steps);
  m.exposed_comm_ns = m.attention_idle_ns = m.moe_idle_ns = 0;
  double util_sum = 0;
  for (plan::RankMetrics& rm : m.ranks) {
    if (rm.rank < 0 || static_cast<size_t>(rm.rank) >= ranks_.size()) continue;
    const Rank& r = ranks_[static_cast<size_t>(rm.rank)];
    const double fc = ratio(r.wdur[0], r.dur[0]), fm = ratio(r.wdur[1], r.dur[1]);
    const double fa = ratio(r.wdur[0] + r.wdur[1], r.dur[0] + r.dur[1]);
    const int64_t covered = sampled.makespan_ns - rm.idle_ns;  // compute ∪ transfer
    rm.compute_busy_ns = scaled(rm.compute_busy_ns, fc);
    rm.comm_busy_ns = scaled(rm.comm_busy_ns, fm);
    rm.exposed_comm_ns = scaled(rm.exposed_comm_ns, fm);
    rm.comm_wait_ns = scaled(rm.comm_wait_ns, fm);
    rm.idle_ns = std::max<int64_t>(0, m.makespan_ns - scaled(covered, fa));
    rm.utilisation = m.makespan_ns > 0 ? static_cast<double>(rm.compute_busy_ns) /
                                             static_cast<double>(m.makespan_ns)
                                       : 0.0;
    rm.step_hbm_bytes = std::llround(r.wbytes / nsteps);
    rm.step_flops = r.wflops / nsteps;
    double floor_ns = 0;
    if (gpu.hbm_GBps > 0) floor_ns = static_cast<double>(rm.step_hbm_bytes) / gpu.hbm_GBps;
    if (gpu.bf16_tflops > 0) floor_ns = std::max(floor_ns, rm.step_flops / (gpu.bf16_tflops * 1e3));
    rm.roofline_floor_ns = std::llround(floor_ns);
    util_sum += rm.utilisation;
    m.exposed_comm_ns += rm.exposed_comm_ns;
    (rm.role == plan::Role::kMoe ? m.moe_idle_ns : m.attention_idle_ns) += rm.idle_ns;
  }
  m.mean_utilisation = m.ranks.empty() ? 0.0 : util_sum / static_cast<double>(m.ranks.size());
  return m;
}

}  // namespace masep::tools
