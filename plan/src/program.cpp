#include "masep/plan/program.hpp"

#include <algorithm>
#include <memory>
#include <mutex>
#include <numeric>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

#include "masep/plan/scenario.hpp"

namespace masep::plan {

// The intern pool: node-based, never shrinks, so views into it stay valid for the process.
std::string_view OpName::intern(std::string_view s) {
  if (s.empty()) return {};
  static std::mutex mu;
  static std::set<std::string, std::less<>>* pool = new std::set<std::string, std::less<>>();
  const std::lock_guard<std::mutex> lock(mu);
  auto it = pool->find(s);
  if (it == pool->end()) it = pool->emplace(s).first;
  return std::string_view(*it);
}

std::ostream& operator<<(std::ostream& os, const OpName& n) { return os << n.view(); }

const char* to_string(OpKind k) {
  switch (k) {
    case OpKind::kGemm:
      return "gemm";
    case OpKind::kGroupedGemm:
      return "grouped_gemm";
    case OpKind::kAttention:
      return "attention";
    case OpKind::kElementwise:
      return "elementwise";
    case OpKind::kRouter:
      return "router";
    case OpKind::kPermute:
      return "permute";
    case OpKind::kCombine:
      return "combine";
    case OpKind::kSend:
      return "send";
    case OpKind::kRecv:
      return "recv";
    case OpKind::kAllReduce:
      return "all_reduce";
    case OpKind::kAllGather:
      return "all_gather";
    case OpKind::kReduceScatter:
      return "reduce_scatter";
    case OpKind::kAllToAll:
      return "all_to_all";
    case OpKind::kExchange:
      return "exchange";
  }
  return "?";
}

std::vector<int64_t> exchange_sent_bytes(const Program& p) {
  std::vector<int64_t> sent(p.ops.size(), 0);
  for (const Exchange& x : p.exchanges) {
    for (const Transfer& t : x.transfers) {
      if (t.src_op >= 0 && static_cast<size_t>(t.src_op) < sent.size()) sent[t.src_op] += t.bytes;
    }
  }
  return sent;
}

const char* stream_name(int s) {
  switch (s) {
    case kCompute:
      return "compute";
    case kComm:
      return "comm";
    default:
      return "?";
  }
}

const char* to_string(OpRole r) {
  static constexpr const char* kNames[kOpRoleCount] = {
      "other",       "norm",          "qkv",          "rope",          "attention",
      "attn_reduce", "out_proj",      "gather",       "scatter",       "add_norm",
      "router_gemm", "router",        "permute",      "dispatch",      "moe_permute",
      "expert_up",   "act",           "expert_down",  "moe_unpermute", "return",
      "combine",     "mla_down",      "mla_norm",     "mla_q_up",      "mla_absorb_k",
      "mla_rope",    "mla_attention", "mla_absorb_v", "dense_up",      "dense_act",
      "dense_down",  "shared_up",     "shared_act",   "shared_down",   "expert_reduce",
      "expert_move", "kv_mirror",     "comm_rebuild", "weight_load",   "kv_rebuild",
      "reprefill"};
  const int i = static_cast<int>(r);
  return i >= 0 && i < kOpRoleCount ? kNames[i] : "?";
}

const char* to_string(Role r) {
  switch (r) {
    case Role::kAttention:
      return "attention";
    case Role::kMoe:
      return "moe";
    case Role::kColocated:
      return "colocated";
  }
  return "?";
}

const char* to_string(Placement p) {
  switch (p) {
    case Placement::kRoundRobin:
      return "round_robin";
    case Placement::kContiguous:
      return "contiguous";
    case Placement::kExplicit:
      return "explicit";
  }
  return "?";
}

const char* to_string(BalancePolicy p) {
  switch (p) {
    case BalancePolicy::kStatic:
      return "static";
    case BalancePolicy::kEplb:
      return "eplb";
    case BalancePolicy::kPredicted:
      return "predicted";
  }
  return "?";
}

const char* to_string(AttentionBalance a) {
  switch (a) {
    case AttentionBalance::kStatic:
      return "static";
    case AttentionBalance::kPredicted:
      return "predicted";
  }
  return "?";
}

const char* to_string(ExchangeMode m) {
  switch (m) {
    case ExchangeMode::kNccl:
      return "nccl";
    case ExchangeMode::kHierarchical:
      return "hierarchical";
    case ExchangeMode::kLowLatency:
      return "low_latency";
  }
  return "?";
}

int ExpertExchange::sms() const {
  if (comm_sms >= 0) return comm_sms;
  return mode == ExchangeMode::kHierarchical ? 20 : 0;
}

const char* to_string(ExchangeTransport t) {
  switch (t) {
    case ExchangeTransport::kNccl:
      return "nccl";
    case ExchangeTransport::kDeepEpNormal:
      return "deepep_normal";
    case ExchangeTransport::kDeepEpLowLatency:
      return "deepep_low_latency";
  }
  return "?";
}

const char* to_string(PlanKind k) {
  return k == PlanKind::kMaSeparation ? "ma_separation" : "colocated";
}

namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::logic_error("check_program: " + msg); }

std::string op_str(const Op& o) {
  return "op " + std::to_string(o.id) + " (" + o.name + ", rank " + std::to_string(o.rank) +
         ", step " + std::to_string(o.step) + ", layer " + std::to_string(o.layer) + ", mb " +
         std::to_string(o.micro_batch) + ")";
}

// Union-find over op ids: a send/recv pair, or all members of a collective, start together
// (a rendezvous), so for deadlock detection they are one node of the graph.
struct Classes {
  std::vector<int32_t> parent;
  explicit Classes(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int32_t find(int32_t x) {
    while (parent[x] != x) {
      parent[x] = parent[parent[x]];
      x = parent[x];
    }
    return x;
  }
  void join(int32_t a, int32_t b) {
    a = find(a);
    b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
};

}  // namespace

void check_program(const Program& p) {
  const int64_t n = static_cast<int64_t>(p.ops.size());
  const int ranks = p.rank_count();
  if (static_cast<int>(p.stream_ops.size()) != ranks) {
    fail("stream_ops has " + std::to_string(p.stream_ops.size()) + " ranks, program has " +
         std::to_string(ranks));
  }
  for (int64_t i = 0; i < n; ++i) {
    const Op& o = p.ops[i];
    if (o.id != i) fail("ops[" + std::to_string(i) + "].id is " + std::to_string(o.id));
    if (o.rank < 0 || o.rank >= ranks) fail(op_str(o) + ": rank out of range");
    if (o.stream >= kStreamCount) fail(op_str(o) + ": stream out of range");
    if (is_communication(o.kind) != (o.stream == kComm)) {
      fail(op_str(o) + ": " + to_string(o.kind) + " on stream " + stream_name(o.stream));
    }
    for (OpId d : o.deps) {
      if (d < 0 || d >= n) fail(op_str(o) + ": dependency " + std::to_string(d) + " invalid");
      if (d == o.id) fail(op_str(o) + ": depends on itself");
    }
  }

  // Every op sits on exactly one stream list, its own.
  std::vector<int32_t> position(static_cast<size_t>(n), -1);
  for (int r = 0; r < ranks; ++r) {
    for (int s = 0; s < kStreamCount; ++s) {
      const auto& list = p.stream_ops[r][s];
      for (size_t i = 0; i < list.size(); ++i) {
        const OpId id = list[i];
        if (id < 0 || id >= n) fail("stream_ops of rank " + std::to_string(r) + " holds bad id");
        const Op& o = p.ops[id];
        if (o.rank != r || o.stream != s) {
          fail(op_str(o) + " listed on rank " + std::to_string(r) + " stream " + stream_name(s));
        }
        if (position[id] >= 0) fail(op_str(o) + " listed twice");
        position[id] = static_cast<int32_t>(i);
      }
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (position[i] < 0) fail(op_str(p.ops[i]) + " is on no stream list");
  }

  // Point-to-point matching.
  Classes cls(static_cast<size_t>(n));
  for (const Op& o : p.ops) {
    if (o.kind != OpKind::kSend && o.kind != OpKind::kRecv) continue;
    if (o.match < 0 || o.match >= n) fail(op_str(o) + ": no matching op");
    const Op& m = p.ops[o.match];
    const OpKind want = o.kind == OpKind::kSend ? OpKind::kRecv : OpKind::kSend;
    if (m.kind != want) fail(op_str(o) + ": match " + op_str(m) + " is a " + to_string(m.kind));
    if (m.match != o.id) fail(op_str(o) + ": match " + op_str(m) + " does not match back");
    if (o.peer != m.rank || m.peer != o.rank) fail(op_str(o) + ": peer disagrees with match");
    if (o.rank == m.rank) fail(op_str(o) + ": sends to its own rank");
    if (o.comm_bytes != m.comm_bytes) {
      fail(op_str(o) + ": " + std::to_string(o.comm_bytes) + " bytes, match has " +
           std::to_string(m.comm_bytes));
    }
    if (o.comm_bytes <= 0) fail(op_str(o) + ": non-positive bytes");
    cls.join(o.id, m.id);
  }

  // Collectives: one op per group member, in the group's order, with the same kind/bytes.
  std::vector<char> in_collective(static_cast<size_t>(n), 0);
  for (size_t c = 0; c < p.collectives.size(); ++c) {
    const Collective& col = p.collectives[c];
    const std::string cname = "collective " + std::to_string(c);
    if (!is_collective(col.kind)) fail(cname + ": kind " + to_string(col.kind));
    if (col.group < 0 || col.group >= static_cast<int>(p.groups.size())) {
      fail(cname + ": group out of range");
    }
    const Group& g = p.groups[col.group];
    if (col.ops.size() != g.ranks.size()) {
      fail(cname + " (" + g.name + "): " + std::to_string(col.ops.size()) + " ops for " +
           std::to_string(g.ranks.size()) + " ranks");
    }
    for (size_t i = 0; i < col.ops.size(); ++i) {
      const OpId id = col.ops[i];
      if (id < 0 || id >= n) fail(cname + ": bad op id");
      const Op& o = p.ops[id];
      if (o.kind != col.kind) fail(cname + ": member " + op_str(o) + " is a " + to_string(o.kind));
      if (o.rank != g.ranks[i]) fail(cname + ": member " + op_str(o) + " not on group rank");
      if (o.collective != static_cast<int32_t>(c)) fail(op_str(o) + ": wrong collective index");
      if (o.comm_bytes != col.bytes) fail(op_str(o) + ": bytes differ from its collective");
      if (in_collective[id]) fail(op_str(o) + " is a member twice");
      in_collective[id] = 1;
      cls.join(col.ops[0], id);
    }
  }
  for (const Op& o : p.ops) {
    if (is_collective(o.kind) && !in_collective[o.id]) {
      fail(op_str(o) + ": collective op not listed in any Collective");
    }
  }

  // Exchanges: every transfer joins two kExchange ops of that exchange on different ops;
  // every op's comm_bytes is what it sends plus what it receives; every exchange op takes
  // part in at least one transfer of its own exchange. A group call has no internal order,
  // so each transfer is a rendezvous of its two ops (their classes are joined).
  std::vector<int64_t> xbytes(static_cast<size_t>(n), 0);
  std::vector<char> in_exchange(static_cast<size_t>(n), 0);
  for (size_t x = 0; x < p.exchanges.size(); ++x) {
    const std::string xname = "exchange " + std::to_string(x);
    const auto& ts = p.exchanges[x].transfers;
    if (ts.empty()) fail(xname + ": no transfers");
    for (size_t i = 0; i < ts.size(); ++i) {
      const Transfer& t = ts[i];
      const std::string tname = xname + " transfer " + std::to_string(i);
      if (t.src_op < 0 || t.src_op >= n || t.dst_op < 0 || t.dst_op >= n) {
        fail(tname + ": bad op id");
      }
      if (t.src_op == t.dst_op) fail(tname + ": sends to its own op");
      if (t.bytes <= 0) fail(tname + ": non-positive bytes");
      for (OpId id : {t.src_op, t.dst_op}) {
        const Op& o = p.ops[id];
        if (o.kind != OpKind::kExchange)
          fail(tname + ": " + op_str(o) + " is a " + to_string(o.kind));
        if (o.exchange != static_cast<int32_t>(x)) {
          fail(tname + ": " + op_str(o) + " names exchange " + std::to_string(o.exchange));
        }
        xbytes[id] += t.bytes;
        in_exchange[id] = 1;
      }
      cls.join(t.src_op, t.dst_op);
    }
    // One op per participating rank.
    std::vector<std::pair<int32_t, OpId>> members;
    for (const Transfer& t : ts) {
      members.emplace_back(p.ops[t.src_op].rank, t.src_op);
      members.emplace_back(p.ops[t.dst_op].rank, t.dst_op);
    }
    std::sort(members.begin(), members.end());
    members.erase(std::unique(members.begin(), members.end()), members.end());
    for (size_t i = 1; i < members.size(); ++i) {
      if (members[i].first == members[i - 1].first) {
        fail(xname + ": rank " + std::to_string(members[i].first) + " has two ops in it");
      }
    }
  }
  for (const Op& o : p.ops) {
    if (o.kind == OpKind::kExchange) {
      if (o.exchange < 0 || o.exchange >= static_cast<int32_t>(p.exchanges.size())) {
        fail(op_str(o) + ": exchange index " + std::to_string(o.exchange) + " out of range");
      }
      if (!in_exchange[o.id]) fail(op_str(o) + ": takes part in no transfer of its exchange");
      if (o.comm_bytes != xbytes[o.id]) {
        fail(op_str(o) + ": comm_bytes " + std::to_string(o.comm_bytes) + ", its transfers carry " +
             std::to_string(xbytes[o.id]));
      }
    } else if (o.exchange >= 0) {
      fail(op_str(o) + ": a " + std::string(to_string(o.kind)) + " names an exchange");
    }
  }

  // Acyclicity (Kahn) over rendezvous classes, with edges from deps and stream order. A
  // cycle here is a deadlock: some op waits, directly or through a rendezvous partner, for
  // itself.
  std::vector<int32_t> node(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) node[i] = cls.find(static_cast<int32_t>(i));
  std::vector<int32_t> indeg(static_cast<size_t>(n), 0);
  std::vector<int64_t> start(static_cast<size_t>(n) + 1, 0);
  auto for_each_edge = [&](auto&& f) {
    for (const Op& o : p.ops) {
      for (OpId d : o.deps) f(node[d], node[o.id], o);
    }
    for (int r = 0; r < ranks; ++r) {
      for (int s = 0; s < kStreamCount; ++s) {
        const auto& list = p.stream_ops[r][s];
        for (size_t i = 1; i < list.size(); ++i)
          f(node[list[i - 1]], node[list[i]], p.ops[list[i]]);
      }
    }
  };
  for_each_edge([&](int32_t a, int32_t b, const Op& o) {
    if (a == b) fail(op_str(o) + " waits for its own rendezvous partner (deadlock)");
    ++start[a + 1];
    ++indeg[b];
  });
  for (int64_t i = 0; i < n; ++i) start[i + 1] += start[i];
  std::vector<int32_t> adj(static_cast<size_t>(start[n]));
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for_each_edge([&](int32_t a, int32_t b, const Op&) { adj[fill[a]++] = b; });
  std::vector<int32_t> ready;
  int64_t nodes = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (node[i] != i) continue;
    ++nodes;
    if (indeg[i] == 0) ready.push_back(static_cast<int32_t>(i));
  }
  int64_t seen = 0;
  while (!ready.empty()) {
    const int32_t a = ready.back();
    ready.pop_back();
    ++seen;
    for (int64_t e = start[a]; e < start[a + 1]; ++e) {
      if (--indeg[adj[e]] == 0) ready.push_back(adj[e]);
    }
  }
  if (seen != nodes) {
    for (int64_t i = 0; i < n; ++i) {
      if (node[i] == i && indeg[i] > 0) {
        fail("dependency cycle (deadlock) through " + op_str(p.ops[i]));
      }
    }
    fail("dependency cycle");
  }
}

}  // namespace masep::plan
