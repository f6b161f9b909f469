// Attention-side load balancing: see attention_balance.hpp.
#include "masep/plan/attention_balance.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

#include "masep/plan/batch_split.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/routing.hpp"

namespace masep::plan {

namespace {

int64_t part(int64_t n, int64_t k, int64_t i) { return n * (i + 1) / k - n * i / k; }

}  // namespace

double AttentionChunkCost::operator()(int64_t sequences, int64_t kv_tokens) const {
  if (sequences <= 0) return 0;
  const int64_t sp = std::max(1, sequence_parallel);
  // A shard holds within one token per sequence of kv / sp (part()); the same offset for
  // every chunk of a size, so ceil(kv / sp) ranks chunks alike.
  return tp->attention_ns(static_cast<int32_t>(sequences), heads, kv_heads, head_dim,
                          (kv_tokens + sp - 1) / sp, true, dtype_bytes);
}

AttentionChunkCost attention_chunk_cost(const Scenario& s, const TimePredictor& tp) {
  const models::Model& m = s.model;
  const bool ma = s.plan.kind == PlanKind::kMaSeparation;
  // Listed replicas share one shape here (validate_scenario refuses predicted otherwise).
  const AttentionReplica rep0 = s.plan.attention.replica(0);
  const int hp = std::max(1, ma ? rep0.head_parallel : s.plan.colocated.tensor_parallel);
  AttentionChunkCost c;
  c.tp = &tp;
  c.heads = std::max(1, m.heads / hp);
  c.sequence_parallel = ma ? std::max(1, rep0.sequence_parallel) : 1;
  c.dtype_bytes = models::dtype_bytes(m.precision.kv_cache);
  if (m.is_mla()) {
    // One latent of kv_lora_rank + rope dims per token, shared by every head: as one KV head
    // of half that width (K and V halves), so the bytes per token match.
    c.kv_heads = 1;
    c.head_dim = std::max(1, (m.mla.kv_lora_rank + m.mla.qk_rope_head_dim + 1) / 2);
  } else {
    c.kv_heads = std::max(1, m.kv_heads / hp);
    c.head_dim = std::max(1, m.head_dim);
  }
  return c;
}

std::vector<int64_t> attention_chunk_sizes(const Scenario& s) {
  const BatchSplit split = split_batch(s);  // the compiler's chunks (batch_split.hpp)
  if (split.boundaries.size() < 2) throw std::invalid_argument("plan: no attention chunk");
  std::vector<int64_t> sizes(split.boundaries.size() - 1);
  for (size_t c = 0; c < sizes.size(); ++c) sizes[c] = split.boundaries[c + 1] - split.boundaries[c];
  return sizes;
}

std::vector<double> chunk_attention_ns(std::span<const int64_t> lengths,
                                       std::span<const int64_t> chunk_sizes,
                                       const AttentionChunkCost& cost) {
  std::vector<double> out;
  out.reserve(chunk_sizes.size());
  size_t pos = 0;
  for (int64_t n : chunk_sizes) {
    if (n < 0 || pos + static_cast<size_t>(n) > lengths.size()) {
      throw std::invalid_argument("chunk_attention_ns: chunk sizes exceed the sequences");
    }
    int64_t kv = 0;
    for (int64_t i = 0; i < n; ++i) kv += lengths[pos + static_cast<size_t>(i)];
    out.push_back(cost(n, kv));
    pos += static_cast<size_t>(n);
  }
  return out;
}

std::vector<int32_t> assign_sequences(std::span<const int64_t> lengths,
                                      std::span<const int64_t> chunk_sizes,
                                      const AttentionChunkCost& cost) {
  const size_t n = lengths.size(), k = chunk_sizes.size();
  int64_t total = 0;
  for (int64_t c : chunk_sizes) {
    if (c < 0) throw std::invalid_argument("assign_sequences: negative chunk size");
    total += c;
  }
  if (total != static_cast<int64_t>(n)) {
    throw std::invalid_argument("assign_sequences: chunk sizes add up to " + std::to_string(total) +
                                ", not the " + std::to_string(n) + " sequences");
  }
  // (1) Longest first to the chunk with room whose predicted time after taking it is least.
  std::vector<int32_t> by_len(n);
  std::iota(by_len.begin(), by_len.end(), 0);
  std::stable_sort(by_len.begin(), by_len.end(),
                   [&](int32_t a, int32_t b) { return lengths[a] > lengths[b]; });
  std::vector<std::vector<int32_t>> members(k);
  std::vector<int64_t> kv(k, 0);
  for (int32_t q : by_len) {
    size_t best = k;
    double best_t = 0;
    for (size_t c = 0; c < k; ++c) {
      const auto have = static_cast<int64_t>(members[c].size());
      if (have >= chunk_sizes[c]) continue;
      const double t = cost(have + 1, kv[c] + lengths[q]);
      if (best == k || t < best_t) best = c, best_t = t;
    }
    members[best].push_back(q);
    kv[best] += lengths[q];
  }
  // (2) Swaps between the slowest chunk and another while one lowers the pair's maximum. For
  // a pair (a, b) a swap moving d tokens of KV from a to b is best near d = (kv_a − kv_b) / 2,
  // so for each sequence of a only b's two sequences nearest len − d are tried (b sorted by
  // length): O(n log n) per round, at most kMaxRounds rounds.
  constexpr size_t kMaxRounds = 256;
  std::vector<double> t(k);
  for (size_t c = 0; c < k; ++c) t[c] = cost(static_cast<int64_t>(members[c].size()), kv[c]);
  std::vector<std::pair<int64_t, size_t>> sorted_b;  // (length, index in members[b])
  for (size_t round = 0; round < std::min(n, kMaxRounds) && k > 1; ++round) {
    const size_t a = static_cast<size_t>(std::max_element(t.begin(), t.end()) - t.begin());
    const auto na = static_cast<int64_t>(members[a].size());
    double best = t[a];
    size_t bb = k, ia = 0, ib = 0;
    for (size_t b = 0; b < k; ++b) {
      if (b == a || members[b].empty()) continue;
      const auto nb = static_cast<int64_t>(members[b].size());
      sorted_b.clear();
      for (size_t j = 0; j < members[b].size(); ++j)
        sorted_b.emplace_back(lengths[members[b][j]], j);
      std::sort(sorted_b.begin(), sorted_b.end());
      const int64_t half = (kv[a] - kv[b]) / 2;
      for (size_t i = 0; i < members[a].size(); ++i) {
        const int64_t len = lengths[members[a][i]];
        const auto it = std::lower_bound(sorted_b.begin(), sorted_b.end(),
                                         std::pair<int64_t, size_t>{len - half, 0});
        for (auto c2 = it == sorted_b.begin() ? it : it - 1; c2 != sorted_b.end() && c2 <= it;
             ++c2) {
          const int64_t d = len - c2->first;
          if (d <= 0) continue;  // only a longer sequence out of the slowest chunk helps
          const double m = std::max(cost(na, kv[a] - d), cost(nb, kv[b] + d));
          if (m < best) best = m, bb = b, ia = i, ib = c2->second;
        }
      }
    }
    if (bb == k) break;
    const int64_t d = lengths[members[a][ia]] - lengths[members[bb][ib]];
    std::swap(members[a][ia], members[bb][ib]);
    kv[a] -= d;
    kv[bb] += d;
    t[a] = cost(na, kv[a]);
    t[bb] = cost(static_cast<int64_t>(members[bb].size()), kv[bb]);
  }
  std::vector<int32_t> order;
  order.reserve(n);
  for (auto& mem : members) {
    std::sort(mem.begin(), mem.end());
    order.insert(order.end(), mem.begin(), mem.end());
  }
  return order;
}

std::vector<AttentionSplit> attention_splits(const Scenario& s, const TimePredictor& tp) {
  std::vector<AttentionSplit> out;
  if (s.plan.kind != PlanKind::kMaSeparation) return out;
  const int t = s.plan.attention.head_parallel * s.plan.attention.sequence_parallel;
  for (int hp = 1; hp <= t; ++hp) {
    if (t % hp != 0) continue;
    Scenario v = s;
    v.plan.attention.head_parallel = hp;
    v.plan.attention.sequence_parallel = t / hp;
    try {
      validate_scenario(v);
    } catch (const std::exception&) {
      continue;  // the plan does not allow this split (heads, KV heads)
    }
    CompileOptions co;
    co.steps = 1;
    const Program p = compile(v, co);
    std::vector<double> busy(static_cast<size_t>(p.layout.attention_ranks), 0.0);
    for (const Op& op : p.ops) {
      if (op.rank < p.layout.attention_ranks) busy[static_cast<size_t>(op.rank)] += tp.op_ns(p, op);
    }
    AttentionSplit a;
    a.head_parallel = hp;
    a.sequence_parallel = t / hp;
    a.predicted_ns = busy.empty() ? 0 : *std::max_element(busy.begin(), busy.end());
    out.push_back(a);
  }
  return out;
}

int best_attention_split(const std::vector<AttentionSplit>& splits) {
  int best = -1;
  for (size_t i = 0; i < splits.size(); ++i) {
    if (best < 0 || splits[i].predicted_ns < splits[static_cast<size_t>(best)].predicted_ns) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

std::vector<int32_t> sequence_order(const Scenario& s) {
  std::vector<int32_t> order(static_cast<size_t>(std::max(0, s.workload.batch)));
  std::iota(order.begin(), order.end(), 0);
  if (s.plan.balance.attention == AttentionBalance::kStatic) return order;
  const std::vector<int32_t> ctx = sample_context_lengths(s.workload);
  const int64_t grow = (static_cast<int64_t>(std::max(1, s.workload.decode_steps)) + 1) / 2;
  std::vector<int64_t> mean_len(ctx.size());
  for (size_t j = 0; j < ctx.size(); ++j) mean_len[j] = ctx[j] + grow;
  const TimePredictor tp(s.topology);
  return assign_sequences(mean_len, attention_chunk_sizes(s), attention_chunk_cost(s, tp));
}

std::vector<int32_t> placed_context_lengths(const Scenario& s) {
  const std::vector<int32_t> ctx = sample_context_lengths(s.workload);
  if (s.plan.balance.attention == AttentionBalance::kStatic) return ctx;
  const std::vector<int32_t> order = sequence_order(s);
  std::vector<int32_t> out(ctx.size());
  for (size_t p = 0; p < order.size(); ++p) out[p] = ctx[static_cast<size_t>(order[p])];
  return out;
}

}  // namespace masep::plan
