// Routing trace files (issue 17): recorded routing replayed step by step
// (`workload.routing: {kind: trace, file: F}`), and written from a run's router counts.
// The format (docs/load-balancing.md, "Routing traces") is line-based text:
//
//   # comments and blank lines anywhere
//   masep-routing-trace 1          first non-comment line: magic and version
//   experts 16                     header, these five keys in this order, each once:
//   top_k 2                          routed experts, experts per token (top-k),
//   batch 24                         tokens per step (the batch), decode steps covered and
//   steps 32                         the model's layers (layer indices as in the Program;
//   layers 4                         records of dense layers are read and not used)
//   counts STEP LAYER c_0 ... c_{E-1}     tokens routed to each expert in (step, layer)
//   tokens STEP LAYER e,e e,e ...         each token's top_k experts, `batch` groups
//
// After the header, at most one record for every (step, layer), in any order; LAYER may be
// `*` for every layer of the step (then no other record for that step). Scenario validation
// requires a record for every decode step × MoE layer the scenario runs (dense layers need
// none). A counts record must
// sum to batch · top_k with every count ≤ batch; it is expanded to tokens deterministically
// (tokens_from_counts: distinct experts per token, tokens shuffled by a permutation seeded by
// (step, layer)). A tokens record lists distinct experts per token. Tokens are by
// batch position in the compiler's order (after plan.balance.attention's permutation).
// Integers are plain decimal digits. Anything else is an InputError naming the file, the
// line and the key (header key or record kind).
//
// Units: tokens, expert indices. Owned by value; immutable after parsing.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

namespace masep::plan {

struct Program;  // program.hpp

struct RoutingTrace {
  std::string origin;  ///< file path (messages)
  int experts = 0, top_k = 0, batch = 0, steps = 0, layers = 0;
  /// routes[step · layers + layer]: batch · top_k experts, token by token.
  std::vector<std::vector<int32_t>> routes;

  /// Whether (step, layer) has a record.
  bool has(int step, int layer) const;
  /// The experts of tokens first .. first + tokens − 1 of (step, layer), token by token.
  /// Throws std::out_of_range outside the trace or for a (step, layer) without a record.
  std::span<const int32_t> tokens(int step, int layer, int64_t first, int tokens) const;
  /// Tokens routed to each expert over the whole trace, normalised to sum to 1 (the
  /// distribution the balancer's offline profile uses).
  std::vector<double> probabilities() const;
};

/// Parses a trace's text; `origin` names it in errors. Throws InputError(origin, line, 0,
/// key, message) for anything malformed.
RoutingTrace parse_routing_trace(const std::string& text, const std::string& origin);
/// Reads and parses a file (read_input_file, at most kMaxTraceInputBytes).
RoutingTrace read_routing_trace(const std::string& path);

/// Token lists from per-expert counts (Σ = batch · top_k, each ≤ batch): the expert slots in
/// expert order, token i taking slots i, i + batch, ..., i + (top_k − 1) · batch (distinct
/// experts, since an expert's slots are fewer than batch apart); then, unless seed is 0, the
/// tokens shuffled by a permutation drawn from `seed` (Fisher-Yates over splitmix64), so that
/// contiguous chunks of the batch (replicas, micro-batches) get a mix of experts as sampled
/// routing gives them, not runs of neighbouring experts. Throws std::invalid_argument when
/// the counts do not fit.
std::vector<int32_t> tokens_from_counts(std::span<const int64_t> counts, int batch, int top_k,
                                        uint64_t seed = 0);
/// The seed a counts record of (step, layer) expands with (a `*` record: layer 0's).
uint64_t counts_record_seed(int step, int layer);

/// The routing of a Program compiled with CompileOptions::record_token_routing, as a trace
/// (steps 0 .. first_step + steps − 1; steps before first_step and dense layers have no
/// record). Throws std::invalid_argument without per-token routing.
RoutingTrace routing_trace_of(const Program& p);

/// Writes a trace of counts records (empty records are left out): counts[step · layers +
/// layer][expert].
void write_routing_trace_counts(std::ostream& out, int experts, int top_k, int batch, int layers,
                                const std::vector<std::vector<int64_t>>& counts);
/// Writes a trace of tokens records (empty records are left out): routes[step · layers + layer] =
/// batch · top_k experts.
void write_routing_trace_tokens(std::ostream& out, int experts, int top_k, int batch, int layers,
                                const std::vector<std::vector<int32_t>>& routes);

}  // namespace masep::plan
