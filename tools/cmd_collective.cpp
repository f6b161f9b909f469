// masep collective: the simulated counterpart of nccl-tests. One collective (or a ring of
// send/recv pairs) per message size on a chosen topology and GPU set, simulated alone, and
// the nccl-tests table: size, count, time, algbw, busbw.
#include <fmt/format.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <limits>
#include <optional>
#include <random>
#include <set>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/models/model.hpp"
#include "masep/plan/program.hpp"
#include "masep/sim/calibrated_model.hpp"
#include "masep/sim/nccl_model.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/topology/topology.hpp"
#include "sim_run.hpp"
#include "table.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

constexpr const char* kUsage =
    R"(usage: masep collective --topology NAME --op OP (--gpus N | --ranks LIST) [options]

Simulates one collective per message size on a topology, each size alone on an idle
cluster, and prints the nccl-tests table. The conventions are nccl-tests' (see its
doc/PERFORMANCE.md), so the rows compare directly with published nccl-tests output:
  size    bytes per rank as nccl-tests counts it: all_reduce/reduce_scatter input, all_gather
          output, all_to_all send buffer, sendrecv message. Sizes for all_gather,
          reduce_scatter and all_to_all are rounded down to a multiple of 4 x n bytes.
  count   elements of 4 bytes (float, as nccl-tests' default): size / 4
  time    µs from the first rank starting to the last rank finishing
  algbw   size / time (GB/s, 1 GB = 1e9 B)
  busbw   algbw x factor:  all_reduce 2(n-1)/n,  all_gather (n-1)/n,
          reduce_scatter (n-1)/n,  all_to_all (n-1)/n,  sendrecv 1
sendrecv, as in nccl-tests' sendrecv_perf: every rank i sends to rank i+1 (mod n) and
receives from rank i-1 at the same time (n = 2: both directions at once).

Collectives are timed by NCCL's own tuning model (--model nccl, the default): the algo and
proto columns say which algorithm and protocol NCCL would pick for the row, and the time is
NCCL's latency + size / bandwidth plus the host cost of an eager call (--graph: captured in
a CUDA graph, no host cost), sharing links max-min. --algo / --proto restrict the choice
like NCCL_ALGO / NCCL_PROTO (NCCL's list syntax: ring,tree or ^nvls). --model phases is the
earlier model (--algorithm, per-kind alpha, raw link rate). With --calibration, a comm table
of the op and group size times the row instead ("calibrated"). sendrecv rows are timed as
the simulator times Program send/recv pairs (alpha_sendrecv_ns + one flow, inside a node at
NCCL's NVLink share of the link rate); the algo column shows what NCCL would use.

all_to_all --routing uniform|zipf: an expert exchange as deployed (seeded top-k routing,
uneven matrices, --dtype fp8 dispatch or bf16 combine, --dedup node for DeepEP-style
hierarchical exchange; --mode hierarchical / low_latency for DeepEP-style kernels as
plan.expert_exchange.mode); sizes are then each rank's token buffer. The rdma and nvl
columns are DeepEP's tests' logical bandwidths (GB/s, a rank's mean over the time): rdma =
(token, node) pairs, the own node included (low_latency: every token-expert selection);
nvl = tokens a rank receives, its own included; each x bytes per token.

Sizes accept suffixes K, M, G (powers of 1024), e.g. --max-bytes 256M.

options)";

// Largest message size (1 TiB) and most rows of one sweep of sizes; checked before running.
constexpr int64_t kMaxBytes = int64_t{1} << 40;
constexpr int kMaxRows = 1000;

int64_t parse_size(const std::string& text, const char* what) {
  if (text.empty()) throw plan::InputError("", 0, 0, what, "empty size");
  size_t pos = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &pos);
  } catch (const std::exception&) {
    throw plan::InputError("", 0, 0, what, fmt::format("'{}' is not a size", text));
  }
  int64_t mult = 1;
  if (pos < text.size()) {
    const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(text[pos])));
    if (c == 'K')
      mult = 1LL << 10;
    else if (c == 'M')
      mult = 1LL << 20;
    else if (c == 'G')
      mult = 1LL << 30;
    else
      throw plan::InputError("", 0, 0, what, fmt::format("'{}': unknown suffix", text));
    ++pos;
    if (pos < text.size() && (text[pos] == 'B' || text[pos] == 'b')) ++pos;
    if (pos != text.size())
      throw plan::InputError("", 0, 0, what, fmt::format("'{}' is not a size", text));
  }
  if (v <= 0) throw plan::InputError("", 0, 0, what, fmt::format("{} must be positive", text));
  if (v > kMaxBytes / mult) {
    throw plan::InputError(
        "", 0, 0, what,
        fmt::format("'{}' is larger than the largest size, 1T ({} bytes)", text, kMaxBytes));
  }
  return v * mult;
}

struct OpInfo {
  plan::OpKind kind;
  const char* name;
  const char* redop;
  bool align_n;  // size rounded down to a multiple of 4·n
};

OpInfo op_info(const std::string& op) {
  if (op == "all_reduce") return {plan::OpKind::kAllReduce, "all_reduce", "sum", false};
  if (op == "all_gather") return {plan::OpKind::kAllGather, "all_gather", "none", true};
  if (op == "reduce_scatter") return {plan::OpKind::kReduceScatter, "reduce_scatter", "sum", true};
  if (op == "all_to_all") return {plan::OpKind::kAllToAll, "all_to_all", "none", true};
  if (op == "sendrecv") return {plan::OpKind::kSend, "sendrecv", "none", false};
  throw plan::InputError("", 0, 0, "--op",
                         fmt::format("'{}': expected all_reduce, all_gather, reduce_scatter, "
                                     "all_to_all or sendrecv",
                                     op));
}

double bus_factor(plan::OpKind k, int n) {
  switch (k) {
    case plan::OpKind::kAllReduce:
      return 2.0 * (n - 1) / n;
    case plan::OpKind::kAllGather:
    case plan::OpKind::kReduceScatter:
    case plan::OpKind::kAllToAll:
      return static_cast<double>(n - 1) / n;
    default:
      return 1.0;
  }
}

// A Program with one collective over `gpus` (plan rank i on topology GPU gpus[i]), or a ring
// of send/recv pairs.
plan::Program build_program(const OpInfo& info, const std::vector<int>& gpus, int64_t bytes) {
  const int n = static_cast<int>(gpus.size());
  plan::Program p;
  p.scenario = fmt::format("collective-{}", info.name);
  p.steps = 1;
  p.layers = 1;
  p.micro_batches = 1;
  p.stream_ops.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    plan::RankInfo r;
    r.gpu = gpus[static_cast<size_t>(i)];
    r.role = plan::Role::kColocated;
    r.label = fmt::format("rank {}", i);
    p.ranks.push_back(r);
  }
  auto add = [&](int rank, plan::OpKind kind, const char* name,
                 uint8_t stream = plan::kComm) -> plan::Op& {
    plan::Op op;
    op.id = static_cast<plan::OpId>(p.ops.size());
    op.rank = rank;
    op.stream = stream;
    op.kind = kind;
    op.name = name;
    op.comm_bytes = bytes;
    p.stream_ops[static_cast<size_t>(rank)][stream].push_back(op.id);
    p.ops.push_back(op);
    return p.ops.back();
  };
  if (info.kind == plan::OpKind::kSend) {
    // nccl-tests issues each rank's send and recv inside one ncclGroupStart/End, so they
    // run at the same time. A Program stream is in order (a recv queued behind the send on
    // kComm would wait for it, and a ring of such ranks would deadlock), so each rank's send
    // goes on kComm and its recv on the other stream (kCompute, otherwise idle here).
    std::vector<plan::OpId> send(static_cast<size_t>(n)), recv(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      send[static_cast<size_t>(i)] = add(i, plan::OpKind::kSend, "send").id;
    for (int i = 0; i < n; ++i) {
      recv[static_cast<size_t>(i)] = add(i, plan::OpKind::kRecv, "recv", plan::kCompute).id;
    }
    for (int i = 0; i < n; ++i) {
      const int to = (i + 1) % n;
      auto& s = p.ops[static_cast<size_t>(send[static_cast<size_t>(i)])];
      auto& r = p.ops[static_cast<size_t>(recv[static_cast<size_t>(to)])];
      s.peer = to;
      s.match = r.id;
      r.peer = i;
      r.match = s.id;
    }
    return p;
  }
  plan::Group g;
  g.name = "world";
  for (int i = 0; i < n; ++i) g.ranks.push_back(i);
  p.groups.push_back(g);
  plan::Collective c;
  c.kind = info.kind;
  c.group = 0;
  c.bytes = bytes;
  for (int i = 0; i < n; ++i) {
    plan::Op& op = add(i, info.kind, info.name);
    op.collective = 0;
    c.ops.push_back(op.id);
  }
  if (info.kind == plan::OpKind::kAllToAll) {
    c.matrix.assign(static_cast<size_t>(n),
                    std::vector<int64_t>(static_cast<size_t>(n), bytes / n));
    for (int i = 0; i < n; ++i) c.matrix[static_cast<size_t>(i)][static_cast<size_t>(i)] = 0;
  }
  p.collectives.push_back(c);
  return p;
}

// Expert all-to-all as deployed (--routing): every rank holds `tokens` tokens; each token picks
// top_k distinct experts (seeded; uniform or Zipf over a seeded shuffle of the experts, as
// the scenario routing does), expert e lives on group rank e % n, and a token is sent once to
// every rank that holds one of its experts (never to itself). `token_bytes` per token.
struct Routing {
  std::string kind = "none";  // none (nccl-tests' uniform S/n), uniform, zipf
  double skew = 1.0;
  int top_k = 2;
  int experts = 0;  // 0 = one per rank
  uint64_t seed = 1;
  bool combine = false;     // the return trip: the dispatch matrix transposed
  bool dedup = false;       // DeepEP-style: one inter-node copy per destination node
  bool per_expert = false;  // low-latency: one message per token·expert pair (no per-rank dedup)
};

// dest[i][t]: the ranks of token t of rank i's experts, one entry per expert (sorted; a rank
// may repeat, i itself included).
using Destinations = std::vector<std::vector<std::vector<int>>>;
Destinations route_tokens(const Routing& r, int n, int64_t tokens) {
  const int experts = r.experts > 0 ? r.experts : n;
  std::mt19937_64 rng(r.seed);
  std::vector<int> order(static_cast<size_t>(experts));
  for (int e = 0; e < experts; ++e) order[static_cast<size_t>(e)] = e;
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<double> weight(static_cast<size_t>(experts), 1.0);
  if (r.kind == "zipf") {
    for (int k = 0; k < experts; ++k) {
      weight[static_cast<size_t>(order[static_cast<size_t>(k)])] = 1.0 / std::pow(k + 1.0, r.skew);
    }
  }
  std::vector<std::vector<std::vector<int>>> dest(static_cast<size_t>(n));
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int i = 0; i < n; ++i) {
    dest[static_cast<size_t>(i)].resize(static_cast<size_t>(tokens));
    for (int64_t t = 0; t < tokens; ++t) {
      std::vector<double> w = weight;
      std::vector<int> ranks;
      for (int k = 0; k < std::min(r.top_k, experts); ++k) {
        double total = 0;
        for (double x : w) total += x;
        double pick = u(rng) * total;
        int e = 0;
        while (e < experts - 1 && (pick -= w[static_cast<size_t>(e)]) >= 0) ++e;
        w[static_cast<size_t>(e)] = 0;  // distinct experts
        ranks.push_back(e % n);
      }
      std::sort(ranks.begin(), ranks.end());
      dest[static_cast<size_t>(i)][static_cast<size_t>(t)] = std::move(ranks);
    }
  }
  return dest;
}

using Matrix = std::vector<std::vector<int64_t>>;

// The all-to-all matrices of one routed exchange: one matrix (direct), or with `dedup` two
// stages: [0] inter-node, each token once per destination node to the member with the
// sender's local index there (or that node's first member); [1] NVLink, direct sends inside
// the sender's node plus the forwarding from each node's receiving member to the token's
// destinations. Combine reverses the trip (matrices transposed, stages swapped).
// `raw` from route_tokens: a token goes once to each other rank holding one of its experts
// (per_expert: once per such expert).
std::vector<Matrix> routed_matrices(const Routing& r, const std::vector<int>& gpus,
                                    int gpus_per_node, const Destinations& raw,
                                    int64_t token_bytes) {
  const int n = static_cast<int>(gpus.size());
  Destinations dest = raw;
  for (int i = 0; i < n; ++i) {
    for (auto& ranks : dest[static_cast<size_t>(i)]) {
      ranks.erase(std::remove(ranks.begin(), ranks.end(), i), ranks.end());
      if (!r.per_expert) ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
    }
  }
  auto node_of = [&](int rank) { return gpus[static_cast<size_t>(rank)] / gpus_per_node; };
  auto local_of = [&](int rank) { return gpus[static_cast<size_t>(rank)] % gpus_per_node; };
  // Receiving member on `node` for a sender with local index `local`.
  auto proxy = [&](int node, int local) {
    int first = -1;
    for (int j = 0; j < n; ++j) {
      if (node_of(j) != node) continue;
      if (local_of(j) == local) return j;
      if (first < 0) first = j;
    }
    return first;
  };
  const auto zero = Matrix(static_cast<size_t>(n), std::vector<int64_t>(static_cast<size_t>(n), 0));
  std::vector<Matrix> out;
  if (!r.dedup) {
    out.push_back(zero);
    for (int i = 0; i < n; ++i) {
      for (const auto& ranks : dest[static_cast<size_t>(i)]) {
        for (int j : ranks) out[0][static_cast<size_t>(i)][static_cast<size_t>(j)] += token_bytes;
      }
    }
  } else {
    out.assign(2, zero);
    for (int i = 0; i < n; ++i) {
      for (const auto& ranks : dest[static_cast<size_t>(i)]) {
        std::vector<int> remote_nodes;
        for (int j : ranks) {
          if (node_of(j) == node_of(i)) {
            out[1][static_cast<size_t>(i)][static_cast<size_t>(j)] += token_bytes;
            continue;
          }
          const int p = proxy(node_of(j), local_of(i));
          if (std::find(remote_nodes.begin(), remote_nodes.end(), node_of(j)) ==
              remote_nodes.end()) {
            remote_nodes.push_back(node_of(j));
            out[0][static_cast<size_t>(i)][static_cast<size_t>(p)] += token_bytes;
          }
          if (p != j) out[1][static_cast<size_t>(p)][static_cast<size_t>(j)] += token_bytes;
        }
      }
    }
  }
  if (r.combine) {
    for (Matrix& m : out) {
      for (int i = 0; i < n; ++i) {
        for (int j = 0; j < i; ++j) {
          std::swap(m[static_cast<size_t>(i)][static_cast<size_t>(j)],
                    m[static_cast<size_t>(j)][static_cast<size_t>(i)]);
        }
      }
    }
    std::reverse(out.begin(), out.end());
  }
  return out;
}

// DeepEP's logical bytes of one routed exchange, per rank on average (its tests' bandwidth
// numerators): `rdma` = (token, node) pairs, the token's own node included (normal kernels;
// low-latency: every (token, expert) selection); `nvl` = tokens a rank receives, its own
// included; both × token_bytes.
struct LogicalBytes {
  double rdma = 0, nvl = 0;
};
LogicalBytes logical_bytes(const Routing& r, const std::vector<int>& gpus, int gpus_per_node,
                           const Destinations& raw, int64_t token_bytes) {
  const int n = static_cast<int>(gpus.size());
  double pairs = 0, received = 0;
  for (int i = 0; i < n; ++i) {
    for (const auto& ranks : raw[static_cast<size_t>(i)]) {
      std::vector<int> nodes;
      for (int j : ranks) nodes.push_back(gpus[static_cast<size_t>(j)] / gpus_per_node);
      std::sort(nodes.begin(), nodes.end());
      const double distinct_nodes =
          static_cast<double>(std::unique(nodes.begin(), nodes.end()) - nodes.begin());
      pairs += r.per_expert ? static_cast<double>(ranks.size()) : distinct_nodes;
      std::vector<int> u = ranks;
      received += static_cast<double>(std::unique(u.begin(), u.end()) - u.begin());
    }
  }
  return {pairs * static_cast<double>(token_bytes) / n,
          received * static_cast<double>(token_bytes) / n};
}

// A Program of one all-to-all per matrix, in order on every rank's comm stream.
plan::Program build_routed_program(const std::vector<int>& gpus, const std::vector<Matrix>& ms) {
  const int n = static_cast<int>(gpus.size());
  plan::Program p = build_program({plan::OpKind::kAllToAll, "all_to_all", "none", true}, gpus, 0);
  p.ops.clear();
  p.collectives.clear();
  for (auto& streams : p.stream_ops) {
    for (auto& list : streams) list.clear();
  }
  for (size_t c = 0; c < ms.size(); ++c) {
    plan::Collective col;
    col.kind = plan::OpKind::kAllToAll;
    col.group = 0;
    col.matrix = ms[c];
    int64_t sent = 0;
    for (const auto& row : ms[c]) {
      for (int64_t b : row) sent += b;
    }
    // Collective::bytes: what one rank sends on average, as S with S/n per peer.
    col.bytes = n > 1 ? sent / (n - 1) : 0;
    for (int i = 0; i < n; ++i) {
      plan::Op op;
      op.id = static_cast<plan::OpId>(p.ops.size());
      op.rank = i;
      op.stream = plan::kComm;
      op.kind = plan::OpKind::kAllToAll;
      op.name = ms.size() > 1 ? (c == 0 ? "a2a_stage0" : "a2a_stage1") : "a2a_routed";
      op.comm_bytes = col.bytes;
      op.collective = static_cast<int32_t>(c);
      p.stream_ops[static_cast<size_t>(i)][plan::kComm].push_back(op.id);
      p.ops.push_back(op);
      col.ops.push_back(op.id);
    }
    p.collectives.push_back(std::move(col));
  }
  return p;
}

// A Program of one exchange (DeepEP-style transport) per matrix, in order on every rank's
// comm stream: a rank takes part in a stage when it sends or receives there.
plan::Program build_exchange_program(const std::vector<int>& gpus, const std::vector<Matrix>& ms,
                                     plan::ExchangeTransport transport) {
  const int n = static_cast<int>(gpus.size());
  plan::Program p = build_routed_program(gpus, {});
  for (size_t c = 0; c < ms.size(); ++c) {
    std::vector<plan::OpId> op(static_cast<size_t>(n), -1);
    std::vector<int64_t> bytes(static_cast<size_t>(n), 0);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        const int64_t b = ms[c][static_cast<size_t>(i)][static_cast<size_t>(j)];
        bytes[static_cast<size_t>(i)] += b;
        bytes[static_cast<size_t>(j)] += b;
      }
    }
    plan::Exchange x;
    x.transport = transport;
    for (int i = 0; i < n; ++i) {
      if (bytes[static_cast<size_t>(i)] == 0) continue;
      plan::Op o;
      o.id = static_cast<plan::OpId>(p.ops.size());
      o.rank = i;
      o.stream = plan::kComm;
      o.kind = plan::OpKind::kExchange;
      o.role = plan::OpRole::kDispatch;
      o.name = ms.size() > 1 ? (c == 0 ? "xchg_stage0" : "xchg_stage1") : "xchg";
      o.comm_bytes = bytes[static_cast<size_t>(i)];
      o.exchange = static_cast<int32_t>(p.exchanges.size());
      p.stream_ops[static_cast<size_t>(i)][plan::kComm].push_back(o.id);
      op[static_cast<size_t>(i)] = o.id;
      p.ops.push_back(o);
    }
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        const int64_t b = ms[c][static_cast<size_t>(i)][static_cast<size_t>(j)];
        if (b > 0)
          x.transfers.push_back({op[static_cast<size_t>(i)], op[static_cast<size_t>(j)], b});
      }
    }
    if (!x.transfers.empty()) p.exchanges.push_back(std::move(x));
  }
  return p;
}

}  // namespace

int cmd_collective(const Args& args) {
  std::string topo_name, op_name, ranks_text, min_text = "8", max_text = "256M", algorithm;
  std::string model = "auto", algo = "auto", proto = "auto", calibration;
  bool graph = false, allow_mismatch = false;
  Routing routing;
  std::string direction = "dispatch", dtype = "bf16", dedup = "off", mode = "nccl";
  int hidden = 4096;
  int64_t seed = 1;
  int gpus = 0;
  double factor = 2;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")(
      "topology,t", po::value(&topo_name)->default_value("paper-16xa100"),
      "built-in topology name (masep list) or topology YAML file")(
      "op", po::value(&op_name)->default_value("all_reduce"),
      "all_reduce, all_gather, reduce_scatter, all_to_all or sendrecv")(
      "gpus,g", po::value(&gpus), "use topology GPUs 0 .. N-1 (default: all GPUs)")(
      "ranks", po::value(&ranks_text), "comma-separated topology GPUs, e.g. 0,4,8,12")(
      "min-bytes,b", po::value(&min_text)->default_value("8"), "smallest size")(
      "max-bytes,e", po::value(&max_text)->default_value("256M"), "largest size")(
      "factor,f", po::value(&factor)->default_value(2.0), "size multiplier between rows (> 1)")(
      "algorithm", po::value(&algorithm)->default_value("auto"),
      "phases model's all-reduce algorithm: ring, tree, hierarchical or auto (hierarchical "
      "across nodes, ring inside one); anything but auto selects --model phases")(
      "model", po::value(&model)->default_value("auto"),
      "collective timing: nccl (NCCL's tuning model), phases, or auto (nccl unless --algorithm "
      "is given)")(
      "algo", po::value(&algo)->default_value("auto"),
      "NCCL_ALGO-like: ring, tree, nvls, nvls_tree, collnet_direct, collnet_chain, lists "
      "(ring,tree) or ^exclusions")("proto", po::value(&proto)->default_value("auto"),
                                    "NCCL_PROTO-like: LL, LL128, Simple, lists or ^exclusions")(
      "graph", po::bool_switch(&graph),
      "calls captured in a CUDA graph: no eager host cost (nccl_call_overhead_ns = 0)")(
      "calibration", po::value(&calibration),
      "calibration YAML (masep profile): its comm tables time the rows they cover")(
      "routing", po::value(&routing.kind)->default_value("none"),
      "all_to_all only: none (nccl-tests' S/n to every peer) or an expert exchange routed "
      "uniform / zipf; sizes are then each rank's token buffer (tokens x token bytes)")(
      "skew", po::value(&routing.skew)->default_value(1.0), "Zipf exponent (--routing zipf)")(
      "top-k", po::value(&routing.top_k)->default_value(2), "experts per token")(
      "experts", po::value(&routing.experts)->default_value(0),
      "experts, expert e on rank e mod n (default: one per rank)")(
      "seed", po::value(&seed)->default_value(1), "routing seed")(
      "hidden", po::value(&hidden)->default_value(4096), "hidden size (elements per token)")(
      "dtype", po::value(&dtype)->default_value("bf16"),
      "dispatch dtype: bf16 (2 B/element) or fp8 (1 B/element + one fp32 scale per 128, as "
      "DeepEP); combine is always bf16")(
      "direction", po::value(&direction)->default_value("dispatch"), "dispatch or combine")(
      "dedup", po::value(&dedup)->default_value("off"),
      "off, or node: DeepEP-style hierarchical exchange, one inter-node copy per destination "
      "node then NVLink forwarding (two all-to-all stages)")(
      "mode", po::value(&mode)->default_value("nccl"),
      "routed exchange as: nccl (NCCL all-to-all calls), hierarchical (DeepEP-style normal "
      "kernels: inter-node stage to one proxy per node, then NVLink forwarding; implies --dedup "
      "node) or low_latency (DeepEP-style low-latency kernels: one message per token and expert, "
      "in a CUDA graph), as plan.expert_exchange.mode")(
      "allow-mismatch", po::bool_switch(&allow_mismatch),
      "accept a calibration measured on another GPU model than the topology's (a warning in "
      "the header; else an error)");
  po::variables_map vm;
  if (auto rc = parse_command_line("collective", args, opts, vm)) return *rc;
  const OpInfo info = op_info(op_name);
  const bool routed = routing.kind != "none";
  if (routing.kind != "none" && routing.kind != "uniform" && routing.kind != "zipf") {
    throw plan::InputError("", 0, 0, "--routing",
                           fmt::format("'{}': expected none, uniform or zipf", routing.kind));
  }
  if (routed && info.kind != plan::OpKind::kAllToAll) {
    throw plan::InputError("", 0, 0, "--routing", "applies to --op all_to_all only");
  }
  if (!(routing.skew > 0)) throw plan::InputError("", 0, 0, "--skew", "must be positive");
  if (routing.top_k < 1) throw plan::InputError("", 0, 0, "--top-k", "must be at least 1");
  if (routing.experts < 0) throw plan::InputError("", 0, 0, "--experts", "must not be negative");
  if (hidden < 1) throw plan::InputError("", 0, 0, "--hidden", "must be positive");
  if (dtype != "bf16" && dtype != "fp8") {
    throw plan::InputError("", 0, 0, "--dtype", fmt::format("'{}': expected bf16 or fp8", dtype));
  }
  if (direction != "dispatch" && direction != "combine") {
    throw plan::InputError("", 0, 0, "--direction",
                           fmt::format("'{}': expected dispatch or combine", direction));
  }
  if (dedup != "off" && dedup != "node") {
    throw plan::InputError("", 0, 0, "--dedup", fmt::format("'{}': expected off or node", dedup));
  }
  if (mode != "nccl" && mode != "hierarchical" && mode != "low_latency") {
    throw plan::InputError("", 0, 0, "--mode",
                           fmt::format("'{}': expected nccl, hierarchical or low_latency", mode));
  }
  if (mode != "nccl" && !routed) throw plan::InputError("", 0, 0, "--mode", "needs --routing");
  if (mode == "low_latency" && dedup != "off") {
    throw plan::InputError("", 0, 0, "--dedup",
                           "low_latency sends one message per token and expert (no dedup)");
  }
  if (mode == "hierarchical" && graph) {
    throw plan::InputError("", 0, 0, "--graph",
                           "hierarchical (DeepEP-style normal kernels) cannot be captured in a "
                           "CUDA graph: the host waits for the receive counts");
  }
  if (mode == "hierarchical") dedup = "node";
  routing.per_expert = mode == "low_latency";
  routing.seed = static_cast<uint64_t>(seed);
  routing.combine = direction == "combine";
  routing.dedup = dedup == "node";
  if (!routed && routing.dedup) throw plan::InputError("", 0, 0, "--dedup", "needs --routing");
  // Bytes per token on the wire, as the plan compiler counts a dispatch / combine row
  // (models::vector_bytes): combine returns bf16; fp8 dispatch carries a scale per 128.
  const bool fp8 = dtype == "fp8" && !routing.combine;
  const int64_t token_bytes =
      models::vector_bytes(fp8 ? models::DType::kFP8 : models::DType::kBF16, 1, hidden);
  const int64_t min_bytes = parse_size(min_text, "--min-bytes");
  const int64_t max_bytes = parse_size(max_text, "--max-bytes");
  if (max_bytes < min_bytes)
    throw plan::InputError("", 0, 0, "--max-bytes", "smaller than --min-bytes");
  if (!(factor > 1.0) || !std::isfinite(factor)) {
    throw plan::InputError("", 0, 0, "--factor", "must be a finite number greater than 1");
  }
  // Rows from min to max by factor, counted before the loop (1.0000001 would run ~10^8).
  const double rows =
      std::floor(std::log(static_cast<double>(max_bytes) / min_bytes) / std::log(factor) + 1e-9) +
      1;
  if (!(rows <= kMaxRows)) {
    throw plan::InputError(
        "", 0, 0, "--factor",
        fmt::format("{} from {} to {} bytes gives {:.3g} rows; at most {} (use a larger factor)",
                    factor, min_bytes, max_bytes, rows, kMaxRows));
  }

  const topology::TopologySpec spec = plan::load_topology(topo_name);
  check_topology_fits(spec);  // before the topology is built
  const topology::Topology topo(spec);
  if (routed && fp8 && !(topo.spec().gpu.fp8_tflops > 0)) {
    throw plan::InputError("", 0, 0, "--dtype",
                           fmt::format("fp8 needs a GPU with FP8 tensor cores, but {} has "
                                       "fp8_tflops 0",
                                       topo.spec().gpu.name));
  }
  std::vector<int> ranks;
  if (!ranks_text.empty()) {
    if (vm.count("gpus"))
      throw plan::InputError("", 0, 0, "--ranks", "give --gpus or --ranks, not both");
    std::set<int> seen;
    size_t start = 0;
    while (start <= ranks_text.size()) {
      size_t end = ranks_text.find(',', start);
      if (end == std::string::npos) end = ranks_text.size();
      const std::string item = ranks_text.substr(start, end - start);
      int v = -1;
      try {
        size_t pos = 0;
        v = std::stoi(item, &pos);
        if (pos != item.size()) v = -1;
      } catch (const std::exception&) {
      }
      if (v < 0 || v >= topo.gpus()) {
        throw plan::InputError("", 0, 0, "--ranks",
                               fmt::format("'{}' is not a GPU of {} (0..{})", item,
                                           topo.spec().name, topo.gpus() - 1));
      }
      if (!seen.insert(v).second)
        throw plan::InputError("", 0, 0, "--ranks", fmt::format("GPU {} listed twice", v));
      ranks.push_back(v);
      start = end + 1;
    }
  } else {
    const int n = vm.count("gpus") ? gpus : topo.gpus();
    if (n < 1 || n > topo.gpus()) {
      throw plan::InputError("", 0, 0, "--gpus",
                             fmt::format("{}: {} has {} GPUs", n, topo.spec().name, topo.gpus()));
    }
    for (int i = 0; i < n; ++i) ranks.push_back(i);
  }
  const int n = static_cast<int>(ranks.size());
  if (n < 2) throw plan::InputError("", 0, 0, "--gpus", "a collective needs at least 2 GPUs");

  sim::SimOptions so;
  so.allreduce_algorithm = algorithm;
  so.collective_model = model;
  so.nccl_algo = algo;
  so.nccl_proto = proto;
  so.calibration = calibration;
  if (graph) so.params = {{"nccl_call_overhead_ns", 0}, {"nccl_p2p_call_overhead_ns", 0}};
  const bool nccl = model == "nccl" || (model == "auto" && algorithm == "auto");
  if (!nccl && (algo != "auto" || proto != "auto")) {
    throw plan::InputError("", 0, 0, algo != "auto" ? "--algo" : "--proto",
                           "applies to --model nccl only");
  }
  if (model != "auto" && model != "nccl" && model != "phases") {
    throw plan::InputError("", 0, 0, "--model",
                           fmt::format("'{}': expected nccl, phases or auto", model));
  }
  std::optional<sim::NcclModel> nccl_model;
  std::optional<plan::Calibration> cal;
  try {
    if (nccl) {
      nccl_model.emplace(sim::NcclSystem::from_topology(topo.spec(), ranks),
                         sim::NcclSelection::parse(algo, proto, "--algo", "--proto"));
      nccl_model->choose(info.kind, static_cast<double>(min_bytes));  // anything enabled?
    }
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    std::string key = algo != "auto" ? "--algo" : "--proto";
    for (const char* k : {"--algo", "--proto"}) {  // parse errors name their option first
      if (msg.rfind(std::string(k) + ": ", 0) == 0) {
        key = k;
        msg.erase(0, key.size() + 2);
      }
    }
    throw plan::InputError("", 0, 0, key, msg);
  }
  so.allow_calibration_mismatch = allow_mismatch;
  std::string mismatch;
  if (!calibration.empty()) {
    cal = plan::load_calibration(calibration);
    try {
      mismatch =
          sim::check_calibration_gpu(*cal, calibration, topo.spec().gpu.name, allow_mismatch);
    } catch (const std::invalid_argument& e) {
      throw plan::InputError("", 0, 0, "--calibration", e.what());
    }
  }
  std::string gpu_list;
  for (int r : ranks) gpu_list += (gpu_list.empty() ? "" : ",") + std::to_string(r);
  if (nccl) {
    const sim::NcclSystem& sys = nccl_model->system();
    std::printf(
        "# masep collective (simulated): %s on %s, %d GPUs [%s], NCCL model (algo %s, proto %s, "
        "%s): sm%d, %s%s, %d node(s)%s\n",
        info.name, topo.spec().name.c_str(), n, gpu_list.c_str(), algo.c_str(), proto.c_str(),
        graph ? "CUDA graph" : "eager calls", sys.compute_capability,
        topology::to_string(sys.fabric), sys.nvls ? " with NVLS" : " without NVLS", sys.nodes,
        sys.sharp ? ", SHARP NICs" : "");
  } else {
    std::printf(
        "# masep collective (simulated): %s on %s, %d GPUs [%s], phases model, algorithm %s\n",
        info.name, topo.spec().name.c_str(), n, gpu_list.c_str(), algorithm.c_str());
  }
  if (cal) {
    std::printf("# calibration %s (%s, NCCL %s): its comm tables time the rows they cover\n",
                calibration.c_str(), cal->device.c_str(), cal->nccl.c_str());
    if (!mismatch.empty()) std::printf("# %s\n", mismatch.c_str());
  }
  if (routed) {
    std::printf(
        "# routed expert %s: top-%d of %d experts (expert e on rank e mod %d), %s routing%s, "
        "seed %lld; %lld B per token (%s); %s\n",
        direction.c_str(), routing.top_k, routing.experts > 0 ? routing.experts : n, n,
        routing.kind.c_str(),
        routing.kind == "zipf" ? fmt::format(" (skew {})", routing.skew).c_str() : "",
        static_cast<long long>(seed), static_cast<long long>(token_bytes),
        fp8 ? "fp8 + fp32 scale per 128" : "bf16",
        mode == "low_latency"
            ? "DeepEP-style low-latency exchange: one message per token and expert, CUDA graph"
        : mode == "hierarchical"
            ? "DeepEP-style normal exchange: inter-node stage, then NVLink forwarding"
        : routing.dedup ? "node de-duplication: inter-node stage, then NVLink forwarding"
                        : "one all-to-all, each token once per destination rank");
    std::printf("# size = tokens per rank x bytes per token (before top-k); count = tokens\n");
  }
  std::printf("# busbw = algbw x %s\n", info.kind == plan::OpKind::kAllReduce ? "2(n-1)/n"
                                        : info.kind == plan::OpKind::kSend    ? "1"
                                                                              : "(n-1)/n");
  Table t;
  t.column("size (B)");
  t.column("count (elements)");
  t.column("type", Table::kLeft);
  t.column("redop", Table::kLeft);
  t.column("time (us)");
  t.column("algbw (GB/s)");
  t.column("busbw (GB/s)");
  t.column("algo", Table::kLeft);
  t.column("proto", Table::kLeft);
  if (routed) {  // DeepEP's tests' logical bandwidths (see the usage text)
    t.column("rdma (GB/s)");
    t.column("nvl (GB/s)");
  }
  int64_t last = -1;
  for (double sz = static_cast<double>(min_bytes);
       sz <= static_cast<double>(max_bytes) * (1 + 1e-12); sz *= factor) {
    int64_t bytes = static_cast<int64_t>(sz);
    int64_t tokens = 0;
    if (routed) {
      tokens = std::max<int64_t>(1, bytes / token_bytes);
      bytes = tokens * token_bytes;
    } else {
      const int64_t align = info.align_n ? 4LL * n : 4;
      bytes = std::max(align, bytes / align * align);
    }
    if (bytes == last) continue;
    last = bytes;
    const plan::ExchangeTransport transport =
        mode == "low_latency"    ? plan::ExchangeTransport::kDeepEpLowLatency
        : mode == "hierarchical" ? plan::ExchangeTransport::kDeepEpNormal
                                 : plan::ExchangeTransport::kNccl;
    plan::Program p;
    LogicalBytes logical;
    if (routed) {
      const Destinations raw = route_tokens(routing, n, tokens);
      const auto ms = routed_matrices(routing, ranks, topo.spec().gpus_per_node, raw, token_bytes);
      logical = logical_bytes(routing, ranks, topo.spec().gpus_per_node, raw, token_bytes);
      p = mode == "nccl" ? build_routed_program(ranks, ms)
                         : build_exchange_program(ranks, ms, transport);
    } else {
      p = build_program(info, ranks, bytes);
    }
    const sim::SimResult res = sim::simulate(p, topo, so);
    int64_t start = std::numeric_limits<int64_t>::max(), end = 0;
    for (const auto& ot : res.timeline.ops) {
      if (ot.start_ns < 0) continue;
      start = std::min(start, ot.start_ns);
      end = std::max(end, ot.end_ns);
    }
    const double time_ns = static_cast<double>(end - std::min(start, end));
    const double algbw = time_ns > 0 ? static_cast<double>(bytes) / time_ns : 0;  // B/ns = GB/s
    std::string algo_col = nccl ? "" : "-", proto_col = nccl ? "" : "-";
    sim::CommModelFn comm_model;
    if (nccl_model && nccl_model->system().nodes == 1) {
      comm_model = [&](plan::OpKind kind, int k, double b) {
        sim::NcclSystem sys = nccl_model->system();
        sys.ranks = sys.ranks_per_node = k;
        return sim::NcclModel(sys).choose(kind, b).time_ns;
      };
    }
    const bool calibrated =
        cal && info.kind != plan::OpKind::kSend && mode == "nccl" &&
        sim::calibrated_collective_ns(*cal, info.kind, n, static_cast<double>(bytes), !routed,
                                      comm_model) >= 0;
    if (calibrated) {
      algo_col = "calibrated";
      proto_col = "-";
    } else if (mode != "nccl") {
      for (const plan::Exchange& x : p.exchanges) {
        algo_col += std::string(algo_col.empty() ? "" : "+") + plan::to_string(x.transport);
        proto_col += std::string(proto_col.empty() ? "" : "+") + "-";
      }
    } else if (nccl && routed) {
      for (const plan::Collective& col : p.collectives) {
        const sim::NcclChoice c = nccl_model->choose(info.kind, static_cast<double>(col.bytes));
        algo_col += std::string(algo_col.empty() ? "" : "+") + sim::to_string(c.algo);
        proto_col += std::string(proto_col.empty() ? "" : "+") + sim::to_string(c.proto);
      }
    } else if (nccl) {
      const sim::NcclChoice c = nccl_model->choose(info.kind, static_cast<double>(bytes));
      algo_col = sim::to_string(c.algo);
      proto_col = sim::to_string(c.proto);
    } else if (info.kind == plan::OpKind::kAllReduce) {
      algo_col = algorithm;
    }
    std::vector<std::string> row = {std::to_string(bytes),
                                    std::to_string(routed ? tokens : bytes / 4),
                                    routed ? (fp8 ? "fp8" : "bf16") : "float",
                                    info.redop,
                                    fmt::format("{:.2f}", time_ns / 1e3),
                                    fmt::format("{:.2f}", algbw),
                                    fmt::format("{:.2f}", algbw * bus_factor(info.kind, n)),
                                    algo_col,
                                    proto_col};
    if (routed) {
      row.push_back(fmt::format("{:.2f}", time_ns > 0 ? logical.rdma / time_ns : 0));
      row.push_back(fmt::format("{:.2f}", time_ns > 0 ? logical.nvl / time_ns : 0));
    }
    t.row(row);
  }
  t.print(stdout, 0);
  return 0;
}

}  // namespace masep::tools
