// Recovery work as a Program: see recovery.hpp.
#include "masep/plan/recovery.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "masep/plan/compiler.hpp"

namespace masep::plan {
namespace {

class RecoveryBuilder {
 public:
  RecoveryBuilder(const Scenario& degraded, int step) : s_(degraded), step_(step) {
    CompileOptions co;
    co.first_step = step;
    co.steps = 0;  // ranks, groups and layout only
    p_ = compile(degraded, co);
    for (int r = 0; r < p_.rank_count(); ++r) rank_of_[p_.ranks[r].gpu] = r;
    for (int r = 0; r < p_.rank_count(); ++r) {
      Op o = make(r, kCompute, OpKind::kElementwise, OpRole::kCommRebuild, "comm_rebuild");
      rebuild_.push_back(add(std::move(o)));
    }
  }

  int rank(int gpu) const {
    auto it = rank_of_.find(gpu);
    if (it == rank_of_.end()) {
      throw std::logic_error("recovery: GPU " + std::to_string(gpu) + " is not in the plan");
    }
    return it->second;
  }

  // One grouped exchange of (src GPU, dst GPU, bytes) transfers with `role`.
  void exchange(std::vector<std::tuple<int, int, int64_t>> ts, OpRole role, const char* name) {
    if (ts.empty()) return;
    std::vector<std::tuple<int, int, int64_t>> byrank;
    for (auto [src, dst, bytes] : ts) {
      if (bytes > 0 && src != dst) byrank.emplace_back(rank(src), rank(dst), bytes);
    }
    if (byrank.empty()) return;
    std::sort(byrank.begin(), byrank.end());
    std::map<int, int64_t> bytes_of;
    for (auto [a, b, n] : byrank) {
      bytes_of[a] += n;
      bytes_of[b] += n;
    }
    const int x = static_cast<int>(p_.exchanges.size());
    p_.exchanges.emplace_back();
    std::map<int, OpId> op_of;
    for (auto [r, n] : bytes_of) {
      Op o = make(r, kComm, OpKind::kExchange, role, name);
      o.comm_bytes = n;
      o.exchange = x;
      o.deps.push_back(rebuild_[r]);
      op_of[r] = add(std::move(o));
    }
    for (auto [a, b, n] : byrank) p_.exchanges[x].transfers.push_back({op_of[a], op_of[b], n});
  }

  void host_load(int gpu, int64_t bytes) {
    Op o = make(rank(gpu), kCompute, OpKind::kElementwise, OpRole::kWeightLoad, "weight_load");
    o.hbm_bytes = bytes;
    o.weight_bytes = bytes;
    add(std::move(o));
  }

  // Prefill of `tokens` KV entries of `sequences` sequences on degraded replica `replica`:
  // the attention side now (per layer, on the replica's GPUs); the expert side is gathered
  // over all re-prefills and emitted once per layer by experts().
  void reprefill(int replica, int64_t sequences, int64_t tokens) {
    const models::Model& m = s_.model;
    const int hp = s_.plan.attention.head_parallel, sp = s_.plan.attention.sequence_parallel;
    const int t = hp * sp;
    const int64_t dt = models::dtype_bytes(m.dtype), h = m.hidden, hd = m.head_dim;
    const int64_t heads_l = m.heads / hp, kvh_l = std::max(1, m.kv_heads / hp);
    const int64_t qkv = (heads_l + 2 * kvh_l) * hd;
    const double mean_len = static_cast<double>(tokens) / std::max<int64_t>(1, sequences);
    attn_of_layer_.resize(static_cast<size_t>(m.layers));
    for (int layer = 0; layer < m.layers; ++layer) {
      for (int i = 0; i < t; ++i) {
        const int r = replica * t + i;
        Op o = make(r, kCompute, OpKind::kGemm, OpRole::kReprefill, "reprefill_attn");
        o.layer = layer;
        const int64_t m_tok = sp > 1 ? tokens / sp : tokens;  // sp peers split the tokens
        o.m = m_tok;
        o.n = qkv + h;
        o.k = h;
        // QKV + output projection, then causal attention: 4·heads·hd FLOPs per (query, key)
        // pair, about len/2 keys per query.
        o.flops = 2.0 * m_tok * h * (qkv + heads_l * hd) +
                  4.0 * static_cast<double>(m_tok) * heads_l * hd * mean_len / 2;
        o.weight_bytes = h * (qkv + heads_l * hd) * dt;
        o.hbm_bytes = o.weight_bytes + m_tok * (2 * h + 2 * kvh_l * hd) * dt;
        const OpId id = add(std::move(o));
        if (i == 0) attn_of_layer_[static_cast<size_t>(layer)].push_back(id);
      }
    }
    prefill_tokens_ += tokens;
  }

  // The expert FFNs of every re-prefilled token (top_k rows each, spread evenly over the MoE
  // GPUs), one op per layer and MoE GPU after that layer's attention on every replica.
  void experts() {
    if (prefill_tokens_ == 0) return;
    const models::Model& m = s_.model;
    const int64_t dt = models::dtype_bytes(m.dtype), h = m.hidden;
    const int G = p_.layout.moe_ranks;
    const int64_t rows = prefill_tokens_ * m.top_k;
    for (int layer = 0; layer < m.layers; ++layer) {
      for (int g = 0; g < G; ++g) {
        const int r = p_.layout.moe_base + g;
        const int64_t my_rows = rows * (g + 1) / G - rows * g / G;
        const int64_t experts_here = static_cast<int64_t>(p_.ranks[r].experts.size());
        Op o = make(r, kCompute, OpKind::kGemm, OpRole::kReprefill, "reprefill_experts");
        o.layer = layer;
        o.m = my_rows;
        o.n = m.expert_ffn;
        o.k = h;
        o.flops = 2.0 * my_rows * h * (m.expert_in_columns() + m.expert_ffn);
        o.weight_bytes = experts_here * m.expert_weight_bytes();
        o.hbm_bytes = o.weight_bytes + 2 * my_rows * h * dt;
        for (OpId d : attn_of_layer_[static_cast<size_t>(layer)]) o.deps.push_back(d);
        add(std::move(o));
      }
    }
  }

  Program take() { return std::move(p_); }

 private:
  Op make(int rank, Stream stream, OpKind kind, OpRole role, const char* name) const {
    Op o;
    o.rank = rank;
    o.stream = stream;
    o.kind = kind;
    o.role = role;
    o.name = OpName::literal(name);
    o.step = step_;
    return o;
  }
  OpId add(Op&& o) {
    const OpId id = static_cast<OpId>(p_.ops.size());
    o.id = id;
    p_.stream_ops[static_cast<size_t>(o.rank)][o.stream].push_back(id);
    p_.ops.push_back(std::move(o));
    return id;
  }

  const Scenario& s_;
  int step_;
  Program p_;
  std::map<int, int> rank_of_;
  std::vector<OpId> rebuild_;
  std::vector<std::vector<OpId>> attn_of_layer_;  // [layer]: first attention op per replica
  int64_t prefill_tokens_ = 0;
};

}  // namespace

Program compile_recovery(const Remap& rm, int step) {
  RecoveryBuilder b(rm.degraded, step);
  std::vector<std::tuple<int, int, int64_t>> kv, peer;
  for (const KvCopy& c : rm.kv_copies) kv.emplace_back(c.src_gpu, c.dst_gpu, c.bytes);
  for (const WeightLoad& w : rm.weight_loads) {
    if (w.src_gpu >= 0) peer.emplace_back(w.src_gpu, w.dst_gpu, w.bytes);
  }
  b.exchange(kv, OpRole::kKvRebuild, "kv_rebuild");
  b.exchange(peer, OpRole::kWeightLoad, "weight_load");
  for (const WeightLoad& w : rm.weight_loads) {
    if (w.src_gpu < 0) b.host_load(w.dst_gpu, w.bytes);
  }
  for (const Reprefill& r : rm.reprefills) b.reprefill(r.replica, r.sequences, r.tokens);
  b.experts();
  return b.take();
}

Program compile_rejoin(const Scenario& s, const std::vector<int>& rejoining_gpus, int step) {
  RecoveryBuilder b(s, step);
  const PlanGpus pg = plan_gpus(s);
  const models::Model& m = s.model;
  const int hp = s.plan.attention.head_parallel;
  for (int gpu : rejoining_gpus) {
    int64_t bytes = 0;
    for (size_t g = 0; g < pg.moe.size(); ++g) {
      if (pg.moe[g] != gpu) continue;
      for (const auto& h : pg.holders) {
        if (std::find(h.begin(), h.end(), static_cast<int>(g)) != h.end()) {
          bytes += m.expert_weight_bytes() * m.layers;
        }
      }
    }
    if (bytes == 0) bytes = m.attention_weight_bytes() * m.layers / hp;  // an attention GPU
    b.host_load(gpu, bytes);
  }
  return b.take();
}

}  // namespace masep::plan
