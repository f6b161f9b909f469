// Program → launches for one rank (see launch_plan.hpp for the mapping).
#include "masep/exec/launch_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <tuple>

#include "masep/kernels/attention.hpp"

namespace masep::exec {

namespace {

using plan::Op;
using plan::OpId;
using plan::OpKind;

constexpr int64_t kBf16 = 2;

// Shape context of one (step, layer, micro-batch) on this rank, read from the ops that carry
// explicit shapes.
struct Ctx {
  int64_t tokens = 0;  // T: qkv GEMM m (attention tokens of the group)
  int64_t slice = 0;   // u: router GEMM m (this rank's token slice)
  const Op* attn = nullptr;
  int64_t expert_rows = 0;  // sum of expert_up group_m
};
using Key = std::tuple<int32_t, int32_t, int32_t>;  // step, layer, mb
Key key_of(const Op& o) { return {o.step, o.layer, o.micro_batch}; }

class Builder {
 public:
  Builder(const plan::Scenario& s, const plan::Program& p, int rank, const PlanOptions& opt)
      : s_(s), p_(p), rank_(rank), opt_(opt), m_(s.model) {
    if (rank < 0 || rank >= p.rank_count()) {
      throw std::invalid_argument(
          fmt::format("rank {} is not in the Program ({} ranks)", rank, p.rank_count()));
    }
    rp_.rank = rank;
    rp_.micro_batches = std::max(1, p.micro_batches);
    for (auto& v : rp_.buffer_bytes) v.assign(static_cast<size_t>(rp_.micro_batches), 0);
    h_ = m_.hidden;
  }

  RankPlan run() {
    scan_context();
    find_kv_shard();
    std::array<std::vector<Launch>, plan::kStreamCount> per_stream;
    for (int st = 0; st < plan::kStreamCount; ++st) {
      const auto& ids = p_.stream_ops[static_cast<size_t>(rank_)][static_cast<size_t>(st)];
      for (size_t i = 0; i < ids.size(); ++i) {
        const Op& o = p_.ops[static_cast<size_t>(ids[i])];
        if (o.kind == OpKind::kSend || o.kind == OpKind::kRecv) {
          // A run: consecutive p2p ops of one exchange.
          size_t j = i + 1;
          while (j < ids.size()) {
            const Op& q = p_.ops[static_cast<size_t>(ids[j])];
            if ((q.kind != OpKind::kSend && q.kind != OpKind::kRecv) || q.name != o.name ||
                key_of(q) != key_of(o)) {
              break;
            }
            ++j;
          }
          std::vector<OpId> run(ids.begin() + static_cast<long>(i),
                                ids.begin() + static_cast<long>(j));
          per_stream[st].push_back(p2p(run));
          i = j - 1;
        } else {
          per_stream[st].push_back(map_op(o));
        }
        per_stream[st].back().stream = static_cast<uint8_t>(st);
        per_stream[st].back().step = o.step;
      }
    }
    merge(per_stream);
    for (const Op& o : p_.ops) {
      if (o.rank == rank_) rp_.op_ids.push_back(o.id);
    }
    std::sort(groups_.begin(), groups_.end());
    groups_.erase(std::unique(groups_.begin(), groups_.end()), groups_.end());
    rp_.groups = groups_;
    return std::move(rp_);
  }

 private:
  void need(Buf b, int mb, int64_t bytes) {
    auto& v = rp_.buffer_bytes[static_cast<size_t>(b)][static_cast<size_t>(mb)];
    v = std::max(v, (bytes + 255) / 256 * 256);
  }
  BufRef ref(Buf b, int mb, int64_t bytes_needed, int64_t offset = 0) {
    need(b, mb, offset + bytes_needed);
    return BufRef{b, mb, offset};
  }

  void scan_context() {
    for (const auto& stream : p_.stream_ops[static_cast<size_t>(rank_)]) {
      for (OpId id : stream) {
        const Op& o = p_.ops[static_cast<size_t>(id)];
        Ctx& c = ctx_[key_of(o)];
        if (o.kind == OpKind::kGemm && o.name == "qkv") c.tokens = o.m;
        if (o.kind == OpKind::kGemm && o.name == "router_gemm") c.slice = o.m;
        if (o.kind == OpKind::kAttention) c.attn = &o;
        if (o.kind == OpKind::kGroupedGemm && o.name == "expert_up") {
          c.expert_rows = 0;
          for (int32_t g : o.group_m) c.expert_rows += g;
        }
      }
    }
  }

  // A rank that is not the first member of a sequence-parallel group ("attn.rX.hY") holds a
  // KV shard that does not receive the new token (the compiler counts the append on shard 0).
  void find_kv_shard() {
    for (const auto& g : p_.groups) {
      if (std::count(g.name.begin(), g.name.end(), '.') != 2 || g.name.rfind("attn.", 0) != 0) {
        continue;
      }
      for (size_t i = 1; i < g.ranks.size(); ++i) {
        if (g.ranks[i] == rank_) kv_append_ = false;
      }
    }
  }

  int64_t weight(const Op& o, const std::string& name, int index, int64_t bytes) {
    const auto key = std::make_tuple(o.layer, name, index);
    auto it = weights_.find(key);
    if (it != weights_.end()) {
      if (it->second.second < bytes) {
        throw std::invalid_argument(
            fmt::format("op {} ({}): weight {} changes size", o.id, o.name, name));
      }
      return it->second.first;
    }
    const int64_t off = rp_.weight_bytes;
    rp_.weight_bytes += (bytes + 255) / 256 * 256;
    weights_.emplace(key, std::make_pair(off, bytes));
    return off;
  }

  Launch base(const Op& o, LaunchKind kind) {
    Launch l;
    l.kind = kind;
    l.ops = {o.id};
    return l;
  }

  Launch copy(const Op& o) {
    Launch l = base(o, LaunchKind::kCopy);
    l.bytes = std::max<int64_t>(o.hbm_bytes / 2, 0) / 16 * 16;
    l.in = ref(Buf::kScratchA, 0, l.bytes);
    l.out = ref(Buf::kScratchB, 0, l.bytes);
    rp_.generic_copies++;
    return l;
  }

  Launch copy_between(const Op& o, Buf from, Buf to, int64_t bytes) {
    Launch l = base(o, LaunchKind::kCopy);
    l.bytes = bytes;
    l.in = ref(from, o.micro_batch, bytes);
    l.out = ref(to, o.micro_batch, bytes);
    return l;
  }

  Launch map_op(const Op& o) {
    const int mb = o.micro_batch;
    const Ctx& c = ctx_[key_of(o)];
    const int64_t dt = kBf16;
    switch (o.kind) {
      case OpKind::kGemm: {
        Launch l = base(o, LaunchKind::kGemm);
        l.m = o.m;
        l.n = o.n;
        l.k = o.k;
        Buf a = Buf::kScratchA, cb = Buf::kScratchB;
        if (o.name == "qkv") a = Buf::kNormed, cb = Buf::kQkv;
        if (o.name == "out_proj") a = Buf::kAttnOut, cb = Buf::kProj;
        if (o.name == "router_gemm") a = Buf::kSliceNormed, cb = Buf::kLogits;
        l.in = ref(a, mb, o.m * o.k * dt);
        l.out = ref(cb, mb, o.m * o.n * dt);
        l.weight_offsets = {weight(o, o.name, 0, o.n * o.k * dt)};
        return l;
      }
      case OpKind::kGroupedGemm: {
        Launch l = base(o, LaunchKind::kGroupedGemm);
        l.n = o.n;
        l.k = o.k;
        l.group_m = o.group_m;
        int64_t rows = 0;
        for (int32_t g : o.group_m) rows += g;
        l.m = rows;
        Buf a = Buf::kExpertIn, cb = Buf::kExpertMid;
        if (o.name == "expert_down") a = Buf::kExpertAct, cb = Buf::kExpertOut;
        l.in = ref(a, mb, rows * o.k * dt);
        l.out = ref(cb, mb, rows * o.n * dt);
        for (size_t e = 0; e < o.group_m.size(); ++e) {
          l.weight_offsets.push_back(weight(o, o.name, static_cast<int>(e), o.n * o.k * dt));
        }
        return l;
      }
      case OpKind::kElementwise: {
        if (o.name == "rmsnorm" && c.tokens > 0 &&
            o.hbm_bytes == 2 * c.tokens * h_ * dt + h_ * dt) {
          Launch l = base(o, LaunchKind::kRmsNorm);
          l.tokens = c.tokens;
          l.cols = h_;
          l.in = ref(Buf::kHidden, mb, c.tokens * h_ * dt);
          l.out = ref(Buf::kNormed, mb, c.tokens * h_ * dt);
          l.weight_offsets = {weight(o, "rmsnorm", 0, h_ * dt)};
          return l;
        }
        if (o.name == "add_norm" && c.slice > 0 && o.hbm_bytes == 4 * c.slice * h_ * dt + h_ * dt) {
          Launch l = base(o, LaunchKind::kAddRmsNorm);
          l.tokens = c.slice;
          l.cols = h_;
          l.in = ref(Buf::kAttnSlice, mb, c.slice * h_ * dt);  // x
          l.aux = ref(Buf::kHidden, mb, c.slice * h_ * dt);    // residual (in place)
          l.out = ref(Buf::kSliceNormed, mb, c.slice * h_ * dt);
          l.weight_offsets = {weight(o, "add_norm", 0, h_ * dt)};
          return l;
        }
        if (o.name == "rope" && c.tokens > 0 && c.attn != nullptr) {
          const Op& a = *c.attn;
          if (o.hbm_bytes == 2 * c.tokens * (a.heads + a.kv_heads) * a.head_dim * dt) {
            Launch l = base(o, LaunchKind::kRope);
            l.tokens = c.tokens;
            l.heads = a.heads;
            l.kv_heads = a.kv_heads;
            l.head_dim = a.head_dim;
            l.cols = static_cast<int64_t>(a.heads + 2 * a.kv_heads) * a.head_dim;
            l.in = ref(Buf::kQkv, mb, c.tokens * l.cols * dt);
            // positions: the attention op's KV lengths (filled when the attention is mapped)
            rope_waiting_[a.id].push_back(rope_count_++);
            return l;  // kv_lens_offset is set by finish_rope()
          }
        }
        if (o.name == "act" && c.expert_rows > 0) {
          const int64_t rows = c.expert_rows, ffn = m_.expert_ffn;
          const int64_t in_cols = m_.expert_in_columns();
          if (o.hbm_bytes == rows * (in_cols + ffn) * dt) {
            const bool swiglu = m_.activation == models::Activation::kSwiGLU;
            Launch l = base(o, swiglu ? LaunchKind::kSwiGlu : LaunchKind::kGelu);
            l.tokens = rows;
            l.cols = ffn;
            l.in = ref(Buf::kExpertMid, mb, rows * in_cols * dt);
            l.out = ref(Buf::kExpertAct, mb, rows * ffn * dt);
            return l;
          }
        }
        return copy(o);
      }
      case OpKind::kAttention:
        return attention(o);
      case OpKind::kRouter: {
        const int64_t u = c.slice;
        if (u > 0 && o.hbm_bytes == u * m_.experts * dt + u * m_.top_k * 8) {
          Launch l = base(o, LaunchKind::kRouter);
          l.tokens = u;
          l.experts = m_.experts;
          l.top_k = m_.top_k;
          l.in = ref(Buf::kLogits, mb, u * m_.experts * dt);
          l.out = ref(Buf::kTopkIds, mb, u * m_.top_k * 4);
          l.aux = ref(Buf::kTopkWeights, mb, u * m_.top_k * 4);
          l.in2 = ref(Buf::kExpertCounts, mb, m_.experts * 4);
          return l;
        }
        return copy(o);
      }
      case OpKind::kPermute: {
        const int64_t u = c.slice;
        const int64_t shared = m_.shared_experts > 0 ? 1 : 0;
        if (o.name == "permute" && u > 0 &&
            o.hbm_bytes == u * h_ * dt + u * (m_.top_k + shared) * h_ * dt) {
          Launch l = base(o, LaunchKind::kPermute);
          l.tokens = u;
          l.cols = h_;
          l.experts = m_.experts;
          l.top_k = m_.top_k;
          const int64_t rows = u * m_.top_k;
          l.in = ref(Buf::kSliceNormed, mb, u * h_ * dt);
          l.out = ref(Buf::kSend, mb, rows * h_ * dt);
          // router outputs and permute bookkeeping
          need(Buf::kTopkIds, mb, rows * 4);
          need(Buf::kExpertCounts, mb, m_.experts * 4);
          need(Buf::kPermutedRow, mb, rows * 4);
          need(Buf::kSourceToken, mb, rows * 4);
          need(Buf::kExpertOffsets, mb, (m_.experts + 1) * 4);
          return l;
        }
        if (o.name == "moe_permute" && o.hbm_bytes % (2 * h_ * dt) == 0) {
          return copy_between(o, Buf::kRecv, Buf::kExpertIn, o.hbm_bytes / 2);
        }
        return copy(o);
      }
      case OpKind::kCombine: {
        const int64_t u = c.slice;
        const int64_t shared = m_.shared_experts > 0 ? 1 : 0;
        if (o.name == "combine" && u > 0 &&
            o.hbm_bytes == (u * (m_.top_k + shared) + 2 * u) * h_ * dt) {
          Launch l = base(o, LaunchKind::kCombine);
          l.tokens = u;
          l.cols = h_;
          l.top_k = m_.top_k;
          l.in = ref(Buf::kRetRecv, mb, u * m_.top_k * h_ * dt);
          l.aux = ref(Buf::kHidden, mb, u * h_ * dt);  // residual
          l.out = ref(Buf::kLayerOut, mb, u * h_ * dt);
          need(Buf::kPermutedRow, mb, u * m_.top_k * 4);
          need(Buf::kTopkWeights, mb, u * m_.top_k * 4);
          return l;
        }
        if (o.name == "moe_unpermute" && c.expert_rows > 0) {
          const int64_t rows_bytes = o.hbm_bytes - c.expert_rows * h_ * dt;
          if (rows_bytes > 0) {
            need(Buf::kExpertOut, mb, c.expert_rows * h_ * dt);
            return copy_between(o, Buf::kExpertOut, Buf::kRetSend,
                                std::min(rows_bytes, c.expert_rows * h_ * dt));
          }
        }
        return copy(o);
      }
      case OpKind::kAllReduce:
      case OpKind::kAllGather:
      case OpKind::kReduceScatter:
        return collective(o);
      case OpKind::kAllToAll:
        return all_to_all(o);
      case OpKind::kSend:
      case OpKind::kRecv:
        break;
    }
    throw std::invalid_argument(
        fmt::format("op {} ({}): kind {} cannot be mapped", o.id, o.name, plan::to_string(o.kind)));
  }

  Launch attention(const Op& o) {
    const int mb = o.micro_batch;
    Launch l = base(o, LaunchKind::kAttention);
    l.batch = o.batch;
    l.heads = o.heads;
    l.kv_heads = o.kv_heads;
    l.head_dim = o.head_dim;
    l.append_kv = kv_append_;
    if (o.batch <= 0) throw std::invalid_argument(fmt::format("op {}: attention batch 0", o.id));
    // Per-sequence lengths: kv_tokens (after the append) spread evenly over the batch.
    const int64_t base_len = o.kv_tokens / o.batch, extra = o.kv_tokens % o.batch;
    l.kv_lens_offset = static_cast<int64_t>(rp_.kv_lens.size());
    int32_t longest = 0;
    for (int b = 0; b < o.batch; ++b) {
      const int64_t len = base_len + (b < extra ? 1 : 0);
      // tokens already cached before this step (the kernel attends over kv_lens + 1 when it
      // appends, over kv_lens otherwise)
      const int64_t before = kv_append_ ? len - 1 : len;
      if (before < (kv_append_ ? 0 : 1)) {
        throw std::invalid_argument(fmt::format("op {}: KV length {} too short", o.id, len));
      }
      rp_.kv_lens.push_back(static_cast<int32_t>(before));
      longest = std::max(longest, static_cast<int32_t>(len));
    }
    // One cache per (layer, micro-batch), sized for the longest sequence of any step.
    auto& region = kv_regions_[{o.layer, mb}];
    region.batch = std::max(region.batch, o.batch);
    region.max_len = std::max(region.max_len, longest + 1);
    const int64_t qkv_cols = static_cast<int64_t>(o.heads + 2 * o.kv_heads) * o.head_dim;
    l.in = ref(Buf::kQkv, mb, o.batch * qkv_cols * kBf16);
    l.out = ref(Buf::kAttnOut, mb, static_cast<int64_t>(o.batch) * o.heads * o.head_dim * kBf16);
    l.num_splits = kernels::decode_attention_num_splits(o.batch, o.heads, o.kv_heads, o.head_dim,
                                                        static_cast<int>(longest), opt_.sm_count);
    const auto ws =
        kernels::decode_attention_workspace_bytes(o.batch, o.heads, o.head_dim, l.num_splits);
    l.aux = ref(Buf::kAttnWorkspace, mb, static_cast<int64_t>(ws));
    // Rope ops of this (step, layer, mb) use these lengths as positions.
    auto it = rope_waiting_.find(o.id);
    if (it != rope_waiting_.end()) {
      for (int idx : it->second) rope_positions_[idx] = l.kv_lens_offset;
    }
    return l;
  }

  Launch collective(const Op& o) {
    const plan::Collective& col = p_.collectives.at(static_cast<size_t>(o.collective));
    const plan::Group& g = p_.groups.at(static_cast<size_t>(col.group));
    const int64_t n = static_cast<int64_t>(g.ranks.size());
    const int mb = o.micro_batch;
    const int64_t elems = (col.bytes + kBf16 - 1) / kBf16;
    Launch l;
    l.ops = {o.id};
    l.group = col.group;
    groups_.push_back(col.group);
    if (o.kind == OpKind::kAllReduce) {
      l.kind = LaunchKind::kAllReduce;
      l.count = elems;
      const Buf b = o.name == "attn_reduce" ? Buf::kAttnOut : Buf::kScratchA;
      l.in = ref(b, mb, elems * kBf16);
      l.out = l.in;
    } else if (o.kind == OpKind::kAllGather) {
      l.kind = LaunchKind::kAllGather;
      l.count = (elems + n - 1) / n;  // send count per rank
      l.in = ref(Buf::kLayerOut, mb, l.count * kBf16);
      l.out = ref(Buf::kHidden, mb, l.count * n * kBf16);
    } else {
      l.kind = LaunchKind::kReduceScatter;
      l.count = (elems + n - 1) / n;  // receive count per rank
      l.in = ref(Buf::kProj, mb, l.count * n * kBf16);
      l.out = ref(Buf::kAttnSlice, mb, l.count * kBf16);
    }
    return l;
  }

  Launch all_to_all(const Op& o) {
    const plan::Collective& col = p_.collectives.at(static_cast<size_t>(o.collective));
    const plan::Group& g = p_.groups.at(static_cast<size_t>(col.group));
    const auto me = std::find(g.ranks.begin(), g.ranks.end(), rank_) - g.ranks.begin();
    Launch l = base(o, LaunchKind::kP2p);
    int64_t soff = 0, roff = 0;
    for (size_t j = 0; j < g.ranks.size(); ++j) {
      if (static_cast<long>(j) == me) continue;
      const int64_t sb = col.matrix.empty() ? col.bytes / static_cast<int64_t>(g.ranks.size())
                                            : col.matrix.at(static_cast<size_t>(me)).at(j);
      const int64_t rb = col.matrix.empty() ? sb : col.matrix.at(j).at(static_cast<size_t>(me));
      if (sb > 0) {
        l.parts.push_back({true, g.ranks[j], ref(Buf::kSend, o.micro_batch, sb, soff), sb, o.id});
        soff += (sb + 255) / 256 * 256;
      }
      if (rb > 0) {
        l.parts.push_back({false, g.ranks[j], ref(Buf::kRecv, o.micro_batch, rb, roff), rb, o.id});
        roff += (rb + 255) / 256 * 256;
      }
    }
    return l;
  }

  Launch p2p(const std::vector<OpId>& run) {
    Launch l;
    l.kind = LaunchKind::kP2p;
    l.ops = run;
    int64_t soff = 0, roff = 0;
    for (OpId id : run) {
      const Op& o = p_.ops[static_cast<size_t>(id)];
      const bool send = o.kind == OpKind::kSend;
      const bool ret = o.name == "return";
      const Buf b = send ? (ret ? Buf::kRetSend : Buf::kSend) : (ret ? Buf::kRetRecv : Buf::kRecv);
      int64_t& off = send ? soff : roff;
      l.parts.push_back({send, o.peer, ref(b, o.micro_batch, o.comm_bytes, off), o.comm_bytes, id});
      off += (o.comm_bytes + 255) / 256 * 256;
    }
    return l;
  }

  // Orders the two streams' launches into one host issue order in which every launch comes
  // after the launches it depends on, and sets wait_for (the latest launch on the other
  // stream it depends on).
  void merge(std::array<std::vector<Launch>, plan::kStreamCount>& ps) {
    finish_rope(ps);
    finish_kv(ps);
    // op id → (stream, position)
    std::map<OpId, std::pair<int, int>> where;
    for (int st = 0; st < plan::kStreamCount; ++st) {
      for (size_t i = 0; i < ps[st].size(); ++i) {
        for (OpId id : ps[st][i].ops) where[id] = {st, static_cast<int>(i)};
      }
    }
    // need[st][i]: position on the other stream that must be issued first (-1 none)
    std::array<std::vector<int>, plan::kStreamCount> need;
    for (int st = 0; st < plan::kStreamCount; ++st) {
      need[st].assign(ps[st].size(), -1);
      for (size_t i = 0; i < ps[st].size(); ++i) {
        for (OpId id : ps[st][i].ops) {
          for (OpId d : p_.ops[static_cast<size_t>(id)].deps) {
            if (p_.ops[static_cast<size_t>(d)].rank != rank_) continue;  // NCCL matches it
            const auto [ds, di] = where.at(d);
            if (ds == st) {
              if (di > static_cast<int>(i)) {
                throw std::invalid_argument(fmt::format(
                    "op {} depends on op {}, which comes later on the same stream", id, d));
              }
              continue;
            }
            need[st][i] = std::max(need[st][i], di);
          }
        }
      }
    }
    std::array<size_t, plan::kStreamCount> next{0, 0};
    std::array<std::vector<int>, plan::kStreamCount> global;
    for (int st = 0; st < plan::kStreamCount; ++st) global[st].assign(ps[st].size(), -1);
    const size_t total = ps[0].size() + ps[1].size();
    while (rp_.launches.size() < total) {
      int pick = -1;
      for (int st = 0; st < plan::kStreamCount; ++st) {
        if (next[st] >= ps[st].size()) continue;
        const int other = 1 - st;
        if (need[st][next[st]] >= static_cast<int>(next[other])) continue;  // not issued yet
        if (pick < 0 || ps[st][next[st]].ops.front() < ps[pick][next[pick]].ops.front()) {
          pick = st;
        }
      }
      if (pick < 0) {
        throw std::invalid_argument(fmt::format(
            "rank {}: the compute and comm streams depend on each other in a cycle (at op {})",
            rank_, ps[0].size() > next[0] ? ps[0][next[0]].ops.front() : -1));
      }
      Launch l = std::move(ps[pick][next[pick]]);
      const int nd = need[pick][next[pick]];
      l.wait_for = nd >= 0 ? global[1 - pick][static_cast<size_t>(nd)] : -1;
      global[pick][next[pick]] = static_cast<int>(rp_.launches.size());
      rp_.launches.push_back(std::move(l));
      ++next[pick];
    }
  }

  void finish_rope(std::array<std::vector<Launch>, plan::kStreamCount>& ps) {
    // Rope launches were emitted before their attention op gave the positions; patch them.
    int idx = 0;
    for (Launch& l : ps[plan::kCompute]) {
      if (l.kind != LaunchKind::kRope) continue;
      const auto it = rope_positions_.find(idx);
      if (it == rope_positions_.end()) {
        throw std::invalid_argument(fmt::format("op {}: rope without attention op", l.ops[0]));
      }
      l.kv_lens_offset = it->second;
      ++idx;
    }
  }

  void finish_kv(std::array<std::vector<Launch>, plan::kStreamCount>& ps) {
    // Lay out the KV arena: per (layer, mb) a K and a V block of
    // [batch, kv_heads, max_len, head_dim] bf16.
    for (auto& st : ps) {
      for (Launch& l : st) {
        if (l.kind != LaunchKind::kAttention) continue;
        const Op& o = p_.ops[static_cast<size_t>(l.ops[0])];
        auto& r = kv_regions_.at({o.layer, o.micro_batch});
        if (r.bytes == 0) {
          r.kv_heads = o.kv_heads;
          r.head_dim = o.head_dim;
          r.bytes = static_cast<int64_t>(r.batch) * o.kv_heads * r.max_len * o.head_dim * kBf16;
          r.k_offset = rp_.kv_cache_bytes;
          r.v_offset = r.k_offset + (r.bytes + 255) / 256 * 256;
          rp_.kv_cache_bytes = r.v_offset + (r.bytes + 255) / 256 * 256;
        }
        l.k_cache_offset = r.k_offset;
        l.v_cache_offset = r.v_offset;
        l.max_kv_len = r.max_len;
      }
    }
  }

  struct KvRegion {
    int batch = 0, max_len = 0, kv_heads = 0, head_dim = 0;
    int64_t bytes = 0, k_offset = 0, v_offset = 0;
  };

  const plan::Scenario& s_;
  const plan::Program& p_;
  int rank_;
  PlanOptions opt_;
  const models::Model& m_;
  int64_t h_ = 0;
  bool kv_append_ = true;
  RankPlan rp_;
  std::map<Key, Ctx> ctx_;
  std::map<std::tuple<int, std::string, int>, std::pair<int64_t, int64_t>> weights_;
  std::map<std::pair<int, int>, KvRegion> kv_regions_;
  std::map<OpId, std::vector<int>> rope_waiting_;  // attention op → pending rope indices
  int rope_count_ = 0;
  std::map<int, int64_t> rope_positions_;  // rope index → kv_lens offset
  std::vector<int32_t> groups_;
};

}  // namespace

const char* to_string(Buf b) {
  static const char* const kNames[] = {
      "hidden",        "normed",       "qkv",          "attn_out",       "proj",
      "attn_slice",    "slice_normed", "logits",       "topk_ids",       "topk_weights",
      "expert_counts", "permuted_row", "source_token", "expert_offsets", "layer_out",
      "send",          "recv",         "ret_send",     "ret_recv",       "expert_in",
      "expert_mid",    "expert_act",   "expert_out",   "attn_workspace", "scratch_a",
      "scratch_b"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == kBufCount);
  return kNames[static_cast<int>(b)];
}

const char* to_string(LaunchKind k) {
  switch (k) {
    case LaunchKind::kGemm:
      return "gemm";
    case LaunchKind::kGroupedGemm:
      return "grouped_gemm";
    case LaunchKind::kRmsNorm:
      return "rmsnorm";
    case LaunchKind::kAddRmsNorm:
      return "add_rmsnorm";
    case LaunchKind::kRope:
      return "rope";
    case LaunchKind::kAttention:
      return "attention";
    case LaunchKind::kRouter:
      return "router";
    case LaunchKind::kPermute:
      return "permute";
    case LaunchKind::kCombine:
      return "combine";
    case LaunchKind::kSwiGlu:
      return "swiglu";
    case LaunchKind::kGelu:
      return "gelu";
    case LaunchKind::kCopy:
      return "copy";
    case LaunchKind::kP2p:
      return "p2p";
    case LaunchKind::kAllReduce:
      return "all_reduce";
    case LaunchKind::kAllGather:
      return "all_gather";
    case LaunchKind::kReduceScatter:
      return "reduce_scatter";
  }
  return "?";
}

RankMemory RankPlan::memory() const {
  RankMemory m;
  m.weights = weight_bytes;
  m.kv_cache = kv_cache_bytes + static_cast<int64_t>(kv_lens.size()) * 4;
  for (int b = 0; b < kBufCount; ++b) {
    int64_t sum = 0;
    for (int64_t v : buffer_bytes[static_cast<size_t>(b)]) sum += v;
    const Buf buf = static_cast<Buf>(b);
    if (buf == Buf::kSend || buf == Buf::kRecv || buf == Buf::kRetSend || buf == Buf::kRetRecv) {
      m.comm_buffers += sum;
    } else if (buf == Buf::kAttnWorkspace) {
      m.workspace += sum;
    } else {
      m.activations += sum;
    }
  }
  return m;
}

RankPlan build_rank_plan(const plan::Scenario& s, const plan::Program& p, int rank,
                         const PlanOptions& options) {
  return Builder(s, p, rank, options).run();
}

std::string describe(const RankPlan& rp, const plan::Program& p) {
  std::string out;
  for (size_t i = 0; i < rp.launches.size(); ++i) {
    const Launch& l = rp.launches[i];
    const auto& o = p.ops[static_cast<size_t>(l.ops.front())];
    out += fmt::format("{} {} {} {} ops[{}", i, plan::stream_name(l.stream), to_string(l.kind),
                       o.name, l.ops.front());
    for (size_t j = 1; j < l.ops.size(); ++j) out += fmt::format(",{}", l.ops[j]);
    out += "]";
    switch (l.kind) {
      case LaunchKind::kGemm:
        out += fmt::format(" m={} n={} k={}", l.m, l.n, l.k);
        break;
      case LaunchKind::kGroupedGemm:
        out += fmt::format(" rows={} n={} k={} experts={}", l.m, l.n, l.k, l.group_m.size());
        break;
      case LaunchKind::kAttention:
        out += fmt::format(" batch={} heads={}/{} d={} max_kv={} splits={}{}", l.batch, l.heads,
                           l.kv_heads, l.head_dim, l.max_kv_len, l.num_splits,
                           l.append_kv ? "" : " no-append");
        break;
      case LaunchKind::kCopy:
        out += fmt::format(" bytes={}", l.bytes);
        break;
      case LaunchKind::kP2p:
        for (const auto& part : l.parts) {
          out += fmt::format(" {}{}:{}", part.send ? "send>" : "recv<", part.peer, part.bytes);
        }
        break;
      case LaunchKind::kAllReduce:
      case LaunchKind::kAllGather:
      case LaunchKind::kReduceScatter:
        out +=
            fmt::format(" group={} count={}", p.groups[static_cast<size_t>(l.group)].name, l.count);
        break;
      default:
        if (l.tokens > 0) out += fmt::format(" tokens={}", l.tokens);
        break;
    }
    if (l.wait_for >= 0) out += fmt::format(" wait={}", l.wait_for);
    out += "\n";
  }
  return out;
}

}  // namespace masep::exec
