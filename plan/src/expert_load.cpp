// Expert load statistics: see expert_load.hpp.
#include "masep/plan/expert_load.hpp"

#include <algorithm>
#include <stdexcept>

#include "masep/plan/batch_split.hpp"
#include "masep/plan/routing.hpp"

namespace masep::plan {

namespace {

ExpertLoad empty_load(const Scenario& s, int steps) {
  ExpertLoad l;
  l.layers = s.model.layers;
  l.experts = s.model.experts;
  l.steps = steps;
  l.micro_batches = s.plan.micro_batches;
  l.tokens.assign(static_cast<size_t>(l.layers) * l.experts, 0.0);
  return l;
}

}  // namespace

std::vector<double> ExpertLoad::per_launch() const {
  std::vector<double> out(static_cast<size_t>(experts), 0.0);
  const double launches =
      static_cast<double>(std::max(1, layers)) * std::max(1, steps) * std::max(1, micro_batches);
  for (int l = 0; l < layers; ++l) {
    for (int e = 0; e < experts; ++e) out[static_cast<size_t>(e)] += at(l, e);
  }
  for (double& x : out) x /= launches;
  return out;
}

double ExpertLoad::imbalance() const {
  const auto v = per_launch();
  double mx = 0, sum = 0;
  for (double x : v) {
    mx = std::max(mx, x);
    sum += x;
  }
  return sum > 0 ? mx * static_cast<double>(v.size()) / sum : 0;
}

ExpertLoad expert_load(const Program& p, int first_step, int steps) {
  ExpertLoad l;
  l.layers = p.layers;
  l.experts = p.model.experts;
  l.steps = steps;
  l.micro_batches = std::max(1, p.micro_batches);
  l.tokens.assign(static_cast<size_t>(l.layers) * l.experts, 0.0);
  for (const RoutingSample& rs : p.routing) {
    if (rs.step < first_step || rs.step >= first_step + steps) continue;
    if (rs.layer < 0 || rs.layer >= l.layers) continue;
    const size_t n = std::min(rs.tokens_per_expert.size(), static_cast<size_t>(l.experts));
    for (size_t e = 0; e < n; ++e) {
      l.tokens[static_cast<size_t>(rs.layer) * l.experts + e] += rs.tokens_per_expert[e];
    }
  }
  return l;
}

ExpertLoad sampled_expert_load(const Scenario& s, int first_step, int steps,
                               bool per_sequence_routing) {
  if (first_step < 0 || steps < 0) {
    throw std::invalid_argument("sampled_expert_load: negative step window");
  }
  ExpertLoad l = empty_load(s, steps);
  const RoutingSampler sampler(s.workload, s.model.experts, s.model.top_k);
  const BatchSplit split = split_batch(s);  // the compiler's chunks
  const int replicas = split.replicas, mbs = split.micro_batches;
  std::vector<int32_t> route;
  for (int step = first_step; step < first_step + steps; ++step) {
    for (int layer = 0; layer < l.layers; ++layer) {
      double* row = l.tokens.data() + static_cast<size_t>(layer) * l.experts;
      for (int mb = 0; mb < mbs; ++mb) {
        for (int r = 0; r < replicas; ++r) {
          const int T = static_cast<int>(split.size(r, mb));
          if (per_sequence_routing || sampler.replays_trace()) {
            sampler.sample_sequences(step, layer, split.first(r, mb), T, route);
          } else {
            sampler.sample(step, layer, mb, r, T, route);
          }
          for (int32_t e : route) row[e] += 1;
        }
      }
    }
  }
  return l;
}

ExpertLoad expected_expert_load(const Scenario& s, int step) {
  ExpertLoad l = empty_load(s, 1);
  const RoutingSampler sampler(s.workload, s.model.experts, s.model.top_k);
  const std::vector<double> p = sampler.probabilities_at(step);
  // Top-k without replacement: an expert's expected share of a token's k picks is not k·p
  // when p is large; k·p capped at 1 per token is close enough for a profile.
  for (int layer = 0; layer < l.layers; ++layer) {
    for (int e = 0; e < l.experts; ++e) {
      l.tokens[static_cast<size_t>(layer) * l.experts + e] =
          static_cast<double>(s.workload.batch) * std::min(1.0, s.model.top_k * p[e]);
    }
  }
  return l;
}

}  // namespace masep::plan
