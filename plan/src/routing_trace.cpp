// Routing trace files: see routing_trace.hpp.
#include "masep/plan/routing_trace.hpp"

#include <algorithm>
#include <ostream>
#include <stdexcept>
#include <string_view>

#include "masep/plan/errors.hpp"
#include "masep/plan/input_file.hpp"
#include "masep/plan/program.hpp"
#include "masep/plan/routing.hpp"

namespace masep::plan {

namespace {

constexpr std::string_view kMagic = "masep-routing-trace";
// Bounds that keep a hostile file from asking for absurd allocations: the parsed routes hold
// steps · layers · batch · top_k experts, and the text must spell every one of them (a
// counts record expands, but its sum is batch · top_k) so the file size bounds the work.
constexpr int64_t kMaxExperts = 1 << 16, kMaxTopK = 64, kMaxBatch = 1 << 24;
constexpr int64_t kMaxSteps = 1 << 20, kMaxLayers = 1024;
constexpr int64_t kMaxRouteEntries = int64_t{1} << 26;  // 256 MiB of int32 experts
constexpr int64_t kMaxRecords = int64_t{1} << 20;       // steps × layers

struct Reader {
  const std::string& origin;
  int line = 0;
  [[noreturn]] void fail(const std::string& key, const std::string& msg) const {
    throw InputError(origin, line, 0, key, msg);
  }
  // Plain decimal digits in [lo, hi].
  int64_t integer(std::string_view tok, const std::string& key, int64_t lo, int64_t hi) const {
    if (tok.empty() || tok.size() > 18 ||
        !std::all_of(tok.begin(), tok.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      fail(key, "'" + std::string(tok) + "' is not a non-negative integer");
    }
    int64_t v = 0;
    for (char c : tok) v = v * 10 + (c - '0');
    if (v < lo || v > hi) {
      fail(key,
           std::to_string(v) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
    }
    return v;
  }
};

std::vector<std::string_view> split(std::string_view s, char sep_ws_or) {
  std::vector<std::string_view> out;
  size_t i = 0;
  auto is_sep = [&](char c) {
    return sep_ws_or == ' ' ? (c == ' ' || c == '\t' || c == '\r') : c == sep_ws_or;
  };
  while (i < s.size()) {
    while (i < s.size() && sep_ws_or == ' ' && is_sep(s[i])) ++i;
    if (i >= s.size()) break;
    size_t j = i;
    while (j < s.size() && !is_sep(s[j])) ++j;
    out.push_back(s.substr(i, j - i));
    if (sep_ws_or != ' ') {
      if (j < s.size() && j + 1 == s.size()) out.push_back({});  // trailing separator
      i = j + 1;
    } else {
      i = j;
    }
  }
  return out;
}

}  // namespace

std::span<const int32_t> RoutingTrace::tokens(int step, int layer, int64_t first, int count) const {
  if (step < 0 || step >= steps || layer < 0 || layer >= layers || first < 0 || count < 0 ||
      first + count > batch) {
    throw std::out_of_range(origin + ": no routing for step " + std::to_string(step) + " layer " +
                            std::to_string(layer) + " tokens " + std::to_string(first) + "+" +
                            std::to_string(count) + " (the trace has " + std::to_string(steps) +
                            " steps, " + std::to_string(layers) + " layers, batch " +
                            std::to_string(batch) + ")");
  }
  const auto& r = routes[static_cast<size_t>(step) * layers + layer];
  if (r.empty()) {
    throw std::out_of_range(origin + ": no record for step " + std::to_string(step) + " layer " +
                            std::to_string(layer));
  }
  return std::span<const int32_t>(r).subspan(static_cast<size_t>(first) * top_k,
                                             static_cast<size_t>(count) * top_k);
}

bool RoutingTrace::has(int step, int layer) const {
  return step >= 0 && step < steps && layer >= 0 && layer < layers &&
         !routes[static_cast<size_t>(step) * layers + layer].empty();
}

RoutingTrace routing_trace_of(const Program& p) {
  RoutingTrace t;
  t.origin = "program " + p.scenario;
  t.experts = p.model.experts;
  t.top_k = p.model.top_k;
  t.batch = p.layout.batch;
  t.steps = p.first_step + p.steps;
  t.layers = p.layers;
  t.routes.resize(static_cast<size_t>(t.steps) * t.layers);
  for (const RoutingSample& rs : p.routing) {
    if (rs.step < 0 || rs.step >= t.steps || rs.layer < 0 || rs.layer >= t.layers) continue;
    if (rs.token_experts.empty() && !rs.tokens_per_expert.empty()) {
      throw std::invalid_argument(
          "routing_trace_of: the Program has no per-token routing "
          "(compile with CompileOptions::record_token_routing)");
    }
    auto& r = t.routes[static_cast<size_t>(rs.step) * t.layers + rs.layer];
    r.resize(static_cast<size_t>(t.batch) * t.top_k, -1);
    const size_t at = static_cast<size_t>(rs.first_sequence) * t.top_k;
    if (at + rs.token_experts.size() > r.size()) {
      throw std::invalid_argument("routing_trace_of: a routing sample lies outside the batch");
    }
    std::copy(rs.token_experts.begin(), rs.token_experts.end(),
              r.begin() + static_cast<std::ptrdiff_t>(at));
  }
  for (const auto& r : t.routes) {
    if (std::find(r.begin(), r.end(), -1) != r.end()) {
      throw std::invalid_argument("routing_trace_of: a (step, layer) lacks some tokens");
    }
  }
  return t;
}

std::vector<double> RoutingTrace::probabilities() const {
  std::vector<double> p(static_cast<size_t>(experts), 0.0);
  double total = 0;
  for (const auto& r : routes) {
    for (int32_t e : r) p[static_cast<size_t>(e)] += 1, total += 1;
  }
  if (total > 0) {
    for (double& x : p) x /= total;
  }
  return p;
}

std::vector<int32_t> tokens_from_counts(std::span<const int64_t> counts, int batch, int top_k,
                                        uint64_t seed) {
  int64_t sum = 0;
  for (int64_t c : counts) {
    if (c < 0 || c > batch) {
      throw std::invalid_argument("a count of " + std::to_string(c) + " is outside 0..batch " +
                                  std::to_string(batch) + " (an expert gets a token at most once)");
    }
    sum += c;
  }
  if (sum != static_cast<int64_t>(batch) * top_k) {
    throw std::invalid_argument("counts sum to " + std::to_string(sum) + ", not batch × top_k = " +
                                std::to_string(static_cast<int64_t>(batch) * top_k));
  }
  // Slot q (experts in order, counts[e] slots each) goes to token q mod batch as its
  // (q div batch)-th expert.
  std::vector<int32_t> out(static_cast<size_t>(sum));
  int64_t q = 0;
  for (size_t e = 0; e < counts.size(); ++e) {
    for (int64_t c = 0; c < counts[e]; ++c, ++q) {
      out[static_cast<size_t>(q % batch) * top_k + static_cast<size_t>(q / batch)] =
          static_cast<int32_t>(e);
    }
  }
  if (seed != 0) {
    // Fisher-Yates over whole tokens (each keeps its distinct experts).
    uint64_t state = seed;
    for (int i = batch - 1; i > 0; --i) {
      state = rng::mix(state + 0x9e3779b97f4a7c15ULL);
      const auto j = static_cast<int>(state % static_cast<uint64_t>(i + 1));
      if (j == i) continue;
      std::swap_ranges(out.begin() + static_cast<std::ptrdiff_t>(i) * top_k,
                       out.begin() + static_cast<std::ptrdiff_t>(i + 1) * top_k,
                       out.begin() + static_cast<std::ptrdiff_t>(j) * top_k);
    }
  }
  return out;
}

uint64_t counts_record_seed(int step, int layer) {
  return rng::seed_for(0x726f7574696e67ULL /* "routing" */, 0x636f756e7473ULL /* "counts" */,
                       static_cast<uint64_t>(step), static_cast<uint64_t>(layer));
}

RoutingTrace parse_routing_trace(const std::string& text, const std::string& origin) {
  RoutingTrace t;
  t.origin = origin;
  Reader rd{origin};
  const char* header_keys[] = {"experts", "top_k", "batch", "steps", "layers"};
  const int64_t header_max[] = {kMaxExperts, kMaxTopK, kMaxBatch, kMaxSteps, kMaxLayers};
  int64_t header[5] = {0, 0, 0, 0, 0};
  int stage = -1;                  // -1: magic expected; 0..4: header key expected; 5: records
  std::vector<uint8_t> seen;       // per (step, layer): 0 none, 1 given
  std::vector<uint8_t> step_star;  // per step: given by a `*` record
  size_t given = 0;
  std::vector<int64_t> counts;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++rd.line;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    const auto tok = split(line, ' ');
    if (tok.empty()) {
      if (end == text.size()) break;
      continue;
    }
    if (stage == -1) {
      if (tok[0] != kMagic) rd.fail("header", "the first line must be 'masep-routing-trace 1'");
      if (tok.size() != 2 || tok[1] != "1") {
        rd.fail("header", "unsupported version (this reader knows 'masep-routing-trace 1')");
      }
      stage = 0;
    } else if (stage < 5) {
      const std::string key = header_keys[stage];
      if (tok[0] != key) rd.fail(std::string(tok[0]), "expected header key '" + key + "' here");
      if (tok.size() != 2) rd.fail(key, "takes exactly one value");
      header[stage] = rd.integer(tok[1], key, 1, header_max[stage]);
      ++stage;
      if (stage == 5) {
        t.experts = static_cast<int>(header[0]);
        t.top_k = static_cast<int>(header[1]);
        t.batch = static_cast<int>(header[2]);
        t.steps = static_cast<int>(header[3]);
        t.layers = static_cast<int>(header[4]);
        if (t.top_k > t.experts) rd.fail("top_k", "is larger than experts");
        if (header[3] * header[4] > kMaxRecords) {
          rd.fail("layers", "steps × layers is over " + std::to_string(kMaxRecords));
        }
        if (header[2] * header[1] * header[3] * header[4] > kMaxRouteEntries) {
          rd.fail("steps", "steps × layers × batch × top_k is over " +
                               std::to_string(kMaxRouteEntries) + " routed tokens");
        }
        t.routes.resize(static_cast<size_t>(t.steps) * t.layers);
        seen.assign(t.routes.size(), 0);
        step_star.assign(static_cast<size_t>(t.steps), 0);
      }
    } else {
      const std::string kind(tok[0]);
      if (kind != "counts" && kind != "tokens") {
        rd.fail(kind, "unknown record (expected 'counts' or 'tokens')");
      }
      if (tok.size() < 3) rd.fail(kind, "needs STEP LAYER and the values");
      const int step = static_cast<int>(rd.integer(tok[1], kind, 0, t.steps - 1));
      const bool star = tok[2] == "*";
      const int layer = star ? 0 : static_cast<int>(rd.integer(tok[2], kind, 0, t.layers - 1));
      std::vector<int32_t> route;
      const size_t values = tok.size() - 3;
      if (kind == "counts") {
        if (values != static_cast<size_t>(t.experts)) {
          rd.fail(kind, std::to_string(values) + " counts, the trace has " +
                            std::to_string(t.experts) + " experts");
        }
        counts.assign(values, 0);
        for (size_t e = 0; e < values; ++e) counts[e] = rd.integer(tok[3 + e], kind, 0, t.batch);
        try {
          route = tokens_from_counts(counts, t.batch, t.top_k, counts_record_seed(step, layer));
        } catch (const std::invalid_argument& e) {
          rd.fail(kind, e.what());
        }
      } else {
        if (values != static_cast<size_t>(t.batch)) {
          rd.fail(kind, std::to_string(values) + " tokens, the trace's batch is " +
                            std::to_string(t.batch));
        }
        route.reserve(static_cast<size_t>(t.batch) * t.top_k);
        for (size_t i = 0; i < values; ++i) {
          const auto ex = split(tok[3 + i], ',');
          if (ex.size() != static_cast<size_t>(t.top_k)) {
            rd.fail(kind, "token " + std::to_string(i) + " lists " + std::to_string(ex.size()) +
                              " experts, top_k is " + std::to_string(t.top_k));
          }
          const size_t first = route.size();
          for (auto x : ex) {
            const auto e = static_cast<int32_t>(rd.integer(x, kind, 0, t.experts - 1));
            if (std::find(route.begin() + static_cast<std::ptrdiff_t>(first), route.end(), e) !=
                route.end()) {
              rd.fail(kind, "token " + std::to_string(i) + " lists expert " + std::to_string(e) +
                                " twice");
            }
            route.push_back(e);
          }
        }
      }
      const auto at = [&](int l) { return static_cast<size_t>(step) * t.layers + l; };
      if (step_star[static_cast<size_t>(step)] != 0) {
        rd.fail(kind, "step " + std::to_string(step) + " was already given for every layer (*)");
      }
      if (star) {
        for (int l = 0; l < t.layers; ++l) {
          if (seen[at(l)] != 0) {
            rd.fail(kind, "step " + std::to_string(step) + " layer " + std::to_string(l) +
                              " was already given");
          }
        }
        step_star[static_cast<size_t>(step)] = 1;
        for (int l = 0; l < t.layers; ++l) {
          seen[at(l)] = 1;
          t.routes[at(l)] = route;
        }
        given += static_cast<size_t>(t.layers);
      } else {
        if (seen[at(layer)] != 0) {
          rd.fail(kind, "step " + std::to_string(step) + " layer " + std::to_string(layer) +
                            " is given twice");
        }
        seen[at(layer)] = 1;
        t.routes[at(layer)] = std::move(route);
        ++given;
      }
    }
    if (end == text.size()) break;
  }
  if (stage < 5) {
    rd.fail(stage < 0 ? "header" : header_keys[stage], "the file ends before the header does");
  }
  if (given == 0) rd.fail("records", "the trace has no counts or tokens record");
  return t;
}

RoutingTrace read_routing_trace(const std::string& path) {
  return parse_routing_trace(read_input_file(path, "routing trace", kMaxTraceInputBytes), path);
}

namespace {
void header(std::ostream& out, int experts, int top_k, int batch, int steps, int layers) {
  out << "# masep routing trace (docs/load-balancing.md, plan/routing_trace.hpp)\n"
      << kMagic << " 1\nexperts " << experts << "\ntop_k " << top_k << "\nbatch " << batch
      << "\nsteps " << steps << "\nlayers " << layers << "\n";
}
}  // namespace

void write_routing_trace_counts(std::ostream& out, int experts, int top_k, int batch, int layers,
                                const std::vector<std::vector<int64_t>>& counts) {
  if (layers <= 0 || counts.size() % static_cast<size_t>(layers) != 0) {
    throw std::invalid_argument("write_routing_trace_counts: records are not steps × layers");
  }
  header(out, experts, top_k, batch, static_cast<int>(counts.size() / layers), layers);
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i].empty()) continue;  // a layer without routing (dense)
    if (counts[i].size() != static_cast<size_t>(experts)) {
      throw std::invalid_argument("write_routing_trace_counts: a record has " +
                                  std::to_string(counts[i].size()) + " counts, not " +
                                  std::to_string(experts));
    }
    out << "counts " << i / layers << ' ' << i % layers;
    for (int64_t c : counts[i]) out << ' ' << c;
    out << '\n';
  }
}

void write_routing_trace_tokens(std::ostream& out, int experts, int top_k, int batch, int layers,
                                const std::vector<std::vector<int32_t>>& routes) {
  if (layers <= 0 || routes.size() % static_cast<size_t>(layers) != 0) {
    throw std::invalid_argument("write_routing_trace_tokens: records are not steps × layers");
  }
  header(out, experts, top_k, batch, static_cast<int>(routes.size() / layers), layers);
  for (size_t i = 0; i < routes.size(); ++i) {
    if (routes[i].empty()) continue;  // a layer without routing (dense)
    if (routes[i].size() != static_cast<size_t>(batch) * top_k) {
      throw std::invalid_argument("write_routing_trace_tokens: a record has " +
                                  std::to_string(routes[i].size()) + " experts, not batch × top_k");
    }
    out << "tokens " << i / layers << ' ' << i % layers;
    for (int b = 0; b < batch; ++b) {
      for (int j = 0; j < top_k; ++j) {
        out << (j == 0 ? ' ' : ',') << routes[i][static_cast<size_t>(b) * top_k + j];
      }
    }
    out << '\n';
  }
}

}  // namespace masep::plan
