// Seeded sampling of the data-dependent parts of a decode run: which experts each token is
// routed to, and how long each sequence's context is when decoding starts. The plan compiler
// samples both once, so the simulator and the executor see identical expert loads.
//
// Determinism: every draw comes from std::mt19937_64 (whose output sequence the C++
// standard fixes) seeded by mixing Workload::seed with the indices of the draw (splitmix64).
// The conversions from raw 64-bit words to doubles, bounded integers and weighted choices
// are implemented here rather than with std::*_distribution, whose outputs differ between
// standard libraries. Same scenario and seed → identical samples on every platform, and a
// compile window (CompileOptions::first_step) sees the same routing as a full compile.
#pragma once

#include <cstdint>
#include <vector>

#include "masep/plan/scenario.hpp"

namespace masep::plan {

/// Normalised probability of each routed expert (sums to 1) for a workload's routing
/// distribution: uniform; Zipf (expert perm[i] gets weight 1/(i+1)^skew, perm a seeded
/// shuffle of the experts); or explicit weights. Throws std::invalid_argument naming the
/// workload key when explicit weights do not fit `experts`. `phase` is the drift phase
/// (floor(step / routing.drift_every)): Zipf draws its shuffle from (seed, phase); phase 0 is
/// the undrifted shuffle. Other kinds ignore it.
std::vector<double> routing_probabilities(const Workload& w, int experts, int phase = 0);

/// Drift phase of decode step `step`: floor(step / drift_every), 0 without drift.
int routing_phase(const Workload& w, int step);

/// Context length (tokens already in the KV cache when decoding starts) of each of the
/// workload's `batch` sequences: all `context` (kFixed) or uniform integers in
/// [context_min, context_max] drawn from the seed (kUniform).
std::vector<int32_t> sample_context_lengths(const Workload& w);

/// Draws, for the tokens of one (step, layer, micro-batch, replica), `top_k` distinct routed
/// experts per token from routing_probabilities(). Sampling without replacement: each next
/// expert is drawn with probability proportional to its weight among those not yet chosen.
class RoutingSampler {
 public:
  /// Throws std::invalid_argument when fewer than top_k experts have positive weight.
  RoutingSampler(const Workload& w, int experts, int top_k);

  /// Fills `out` (resized to tokens·top_k): out[i·top_k + j] is the j-th expert of token i.
  void sample(int step, int layer, int micro_batch, int replica, int tokens,
              std::vector<int32_t>& out) const;

  /// Per-sequence draw: the experts of sequences first_sequence .. first_sequence+tokens−1 of
  /// one (step, layer), each from its own stream (seeded by step, layer and the sequence), so
  /// the result does not depend on how a plan cuts the batch into replicas and micro-batches.
  void sample_sequences(int step, int layer, int64_t first_sequence, int tokens,
                        std::vector<int32_t>& out) const;

  /// Whether the workload replays a routing trace (RoutingKind::kTrace): then only
  /// sample_sequences draws (the trace's tokens by batch position) and sample() throws
  /// std::logic_error; callers route by sequence (compiler, sampled_expert_load).
  bool replays_trace() const { return w_.routing.kind == RoutingKind::kTrace; }

  /// Probabilities of phase 0 (all steps without drift).
  const std::vector<double>& probabilities() const { return phases_.front().prob; }
  /// Probabilities in force at decode step `step` (by value: a phase past the precomputed
  /// ones is computed on demand).
  std::vector<double> probabilities_at(int step) const;
  int experts() const { return static_cast<int>(phases_.front().prob.size()); }
  int top_k() const { return top_k_; }

 private:
  struct Phase {
    std::vector<double> prob;
    std::vector<double> cumulative;  // cumulative[i] = sum of prob[0..i]
  };
  Phase make_phase(int phase) const;
  void draw(const Phase& ph, uint64_t stream_seed, int tokens, std::vector<int32_t>& out) const;

  Workload w_;
  uint64_t seed_;
  int top_k_;
  int experts_;
  std::vector<Phase> phases_;  // drift phases 0 .. of the workload's decode steps
};

/// Low-level helpers, exposed for tests and for other samplers in masep.
namespace rng {
/// splitmix64 finaliser: a well-mixed 64-bit hash of x.
uint64_t mix(uint64_t x);
/// Seed for the generator of one draw site: mixes `seed`, a site tag and up to 4 indices.
uint64_t seed_for(uint64_t seed, uint64_t tag, uint64_t a = 0, uint64_t b = 0, uint64_t c = 0,
                  uint64_t d = 0);
/// Uniform double in [0, 1) from the top 53 bits of one 64-bit word.
double unit(uint64_t word);
}  // namespace rng

}  // namespace masep::plan
