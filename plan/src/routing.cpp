#include "masep/plan/routing.hpp"

#include "masep/plan/routing_trace.hpp"
#include "masep/plan/seeded_hash.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

namespace masep::plan {

namespace rng {

uint64_t mix(uint64_t x) { return splitmix64(x); }

uint64_t seed_for(uint64_t seed, uint64_t tag, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t h = mix(seed ^ mix(tag));
  h = mix(h ^ a);
  h = mix(h ^ b);
  h = mix(h ^ c);
  h = mix(h ^ d);
  return h;
}

double unit(uint64_t word) { return static_cast<double>(word >> 11) * 0x1.0p-53; }

}  // namespace rng

namespace {

// Site tags: distinct streams for distinct purposes.
constexpr uint64_t kTagContext = 0x636f6e74657874ULL;  // "context"
constexpr uint64_t kTagZipf = 0x7a697066ULL;           // "zipf"
constexpr uint64_t kTagRoute = 0x726f757465ULL;        // "route"

// Uniform integer in [0, n) without modulo bias (rejects the 2^64 mod n lowest words).
uint64_t below(std::mt19937_64& g, uint64_t n) {
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t x = g();
    if (x >= threshold) return x % n;
  }
}

}  // namespace

int routing_phase(const Workload& w, int step) {
  if (w.routing.kind != RoutingKind::kZipf || w.routing.drift_every <= 0 || step <= 0) return 0;
  return step / w.routing.drift_every;
}

std::vector<double> routing_probabilities(const Workload& w, int experts, int phase) {
  if (experts <= 0) throw std::invalid_argument("model.experts: must be positive");
  std::vector<double> weight(static_cast<size_t>(experts), 1.0);
  switch (w.routing.kind) {
    case RoutingKind::kUniform:
      break;
    case RoutingKind::kZipf: {
      if (!(w.routing.zipf_skew >= 0)) {
        throw std::invalid_argument("workload.routing.zipf_skew: must not be negative");
      }
      // Fisher-Yates with our own bounded draws (std::shuffle is implementation-defined).
      std::vector<int> perm(static_cast<size_t>(experts));
      for (int i = 0; i < experts; ++i) perm[i] = i;
      std::mt19937_64 g(rng::seed_for(w.seed, kTagZipf, static_cast<uint64_t>(phase)));
      for (int i = experts - 1; i > 0; --i) {
        const int j = static_cast<int>(below(g, static_cast<uint64_t>(i) + 1));
        std::swap(perm[i], perm[j]);
      }
      for (int i = 0; i < experts; ++i) {
        weight[perm[i]] = 1.0 / std::pow(static_cast<double>(i + 1), w.routing.zipf_skew);
      }
      break;
    }
    case RoutingKind::kTrace: {
      if (w.routing.trace == nullptr || w.routing.trace->experts != experts) {
        throw std::invalid_argument("workload.routing.file: no routing trace of " +
                                    std::to_string(experts) + " experts was read");
      }
      weight = w.routing.trace->probabilities();  // every token of the trace
      break;
    }
    case RoutingKind::kExplicit: {
      const auto& ew = w.routing.expert_weights;
      if (static_cast<int>(ew.size()) != experts) {
        throw std::invalid_argument("workload.routing.expert_weights: lists " +
                                    std::to_string(ew.size()) + " weights, model has " +
                                    std::to_string(experts) + " experts");
      }
      for (int i = 0; i < experts; ++i) {
        if (!(ew[i] >= 0) || !std::isfinite(ew[i])) {
          throw std::invalid_argument("workload.routing.expert_weights[" + std::to_string(i) +
                                      "]: must be a finite non-negative number");
        }
        weight[i] = ew[i];
      }
      break;
    }
  }
  double total = 0;
  for (double x : weight) total += x;
  if (!(total > 0)) {
    throw std::invalid_argument("workload.routing: expert weights sum to zero");
  }
  for (double& x : weight) x /= total;
  return weight;
}

std::vector<int32_t> sample_context_lengths(const Workload& w) {
  if (w.batch < 0) throw std::invalid_argument("workload.batch: must not be negative");
  std::vector<int32_t> out(static_cast<size_t>(w.batch), w.context);
  if (w.context_kind == ContextKind::kFixed) return out;
  if (w.context_min < 0 || w.context_max < w.context_min) {
    throw std::invalid_argument("workload.context: need 0 <= context_min <= context_max");
  }
  std::mt19937_64 g(rng::seed_for(w.seed, kTagContext));
  const uint64_t span = static_cast<uint64_t>(w.context_max - w.context_min) + 1;
  for (auto& c : out) c = w.context_min + static_cast<int32_t>(below(g, span));
  return out;
}

RoutingSampler::RoutingSampler(const Workload& w, int experts, int top_k)
    : w_(w), seed_(w.seed), top_k_(top_k), experts_(experts) {
  phases_.push_back(make_phase(0));
  if (top_k <= 0 || top_k > experts) {
    throw std::invalid_argument("model.top_k: must be in 1.." + std::to_string(experts));
  }
  int positive = 0;
  for (double p : phases_.front().prob) positive += p > 0 ? 1 : 0;
  if (positive < top_k) {
    throw std::invalid_argument("workload.routing: only " + std::to_string(positive) +
                                " experts have positive weight, top_k is " + std::to_string(top_k));
  }
  const int last = routing_phase(w, std::max(0, w.decode_steps - 1));
  for (int p = 1; p <= last; ++p) phases_.push_back(make_phase(p));
}

RoutingSampler::Phase RoutingSampler::make_phase(int phase) const {
  Phase ph;
  ph.prob = routing_probabilities(w_, experts_, phase);
  ph.cumulative.resize(ph.prob.size());
  double acc = 0;
  for (size_t i = 0; i < ph.prob.size(); ++i) {
    acc += ph.prob[i];
    ph.cumulative[i] = acc;
  }
  return ph;
}

std::vector<double> RoutingSampler::probabilities_at(int step) const {
  const int p = routing_phase(w_, step);
  if (p < static_cast<int>(phases_.size())) return phases_[static_cast<size_t>(p)].prob;
  return make_phase(p).prob;
}

void RoutingSampler::sample(int step, int layer, int micro_batch, int replica, int tokens,
                            std::vector<int32_t>& out) const {
  if (replays_trace() && micro_batch >= 0) {
    throw std::logic_error(
        "RoutingSampler::sample: a routing trace is replayed by sequence "
        "(sample_sequences)");
  }
  const uint64_t stream = rng::seed_for(seed_, kTagRoute, static_cast<uint64_t>(step),
                                        static_cast<uint64_t>(layer),
                                        static_cast<uint64_t>(micro_batch),
                                        static_cast<uint64_t>(replica));
  const int p = routing_phase(w_, step);
  if (p < static_cast<int>(phases_.size())) {
    draw(phases_[static_cast<size_t>(p)], stream, tokens, out);
  } else {
    draw(make_phase(p), stream, tokens, out);
  }
}

void RoutingSampler::draw(const Phase& ph, uint64_t stream_seed, int tokens,
                          std::vector<int32_t>& out) const {
  const std::vector<double>& prob_ = ph.prob;
  const std::vector<double>& cumulative_ = ph.cumulative;
  const int e_count = experts_;
  out.assign(static_cast<size_t>(tokens) * top_k_, 0);
  std::mt19937_64 g(stream_seed);
  const double total = cumulative_.back();
  for (int t = 0; t < tokens; ++t) {
    int32_t* chosen = out.data() + static_cast<size_t>(t) * top_k_;
    for (int j = 0; j < top_k_; ++j) {
      // Drawing from the full distribution and rejecting experts already chosen gives
      // exactly the without-replacement distribution. Heavy skew can make rejection slow,
      // so after a few tries fall back to the exact draw over the remaining experts.
      int pick = -1;
      for (int attempt = 0; attempt < 32 && pick < 0; ++attempt) {
        const double u = rng::unit(g()) * total;
        auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), u);
        int e = it == cumulative_.end() ? e_count - 1 : static_cast<int>(it - cumulative_.begin());
        while (prob_[e] <= 0) --e;  // only reachable through rounding at the top end
        if (std::find(chosen, chosen + j, e) == chosen + j) pick = e;
      }
      if (pick < 0) {
        double rest = 0;
        for (int e = 0; e < e_count; ++e) {
          if (std::find(chosen, chosen + j, e) == chosen + j) rest += prob_[e];
        }
        double u = rng::unit(g()) * rest;
        for (int e = 0; e < e_count; ++e) {
          if (std::find(chosen, chosen + j, e) != chosen + j || prob_[e] <= 0) continue;
          pick = e;
          if (u < prob_[e]) break;
          u -= prob_[e];
        }
      }
      chosen[j] = pick;
    }
  }
}

void RoutingSampler::sample_sequences(int step, int layer, int64_t first_sequence, int tokens,
                                      std::vector<int32_t>& out) const {
  if (replays_trace()) {
    const auto r = w_.routing.trace->tokens(step, layer, first_sequence, tokens);
    out.assign(r.begin(), r.end());
    return;
  }
  out.assign(static_cast<size_t>(tokens) * top_k_, 0);
  std::vector<int32_t> one;
  for (int t = 0; t < tokens; ++t) {
    // micro_batch −1 marks the per-sequence stream (the replica slot carries the sequence).
    sample(step, layer, -1, static_cast<int>(first_sequence + t), 1, one);
    std::copy(one.begin(), one.end(), out.begin() + static_cast<size_t>(t) * top_k_);
  }
}

}  // namespace masep::plan
