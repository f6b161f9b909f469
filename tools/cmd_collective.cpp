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
#include <set>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/program.hpp"
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

}  // namespace

int cmd_collective(const Args& args) {
  std::string topo_name, op_name, ranks_text, min_text = "8", max_text = "256M", algorithm;
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
      "all-reduce algorithm: ring, tree, hierarchical or auto (hierarchical across nodes, "
      "ring inside one)");
  po::variables_map vm;
  if (auto rc = parse_command_line("collective", args, opts, vm)) return *rc;
  const OpInfo info = op_info(op_name);
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
  check_topology_fits(spec);  // before the routes (GPUs^2) are built
  const topology::Topology topo(spec);
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
  std::string gpu_list;
  for (int r : ranks) gpu_list += (gpu_list.empty() ? "" : ",") + std::to_string(r);
  std::printf("# masep collective (simulated): %s on %s, %d GPUs [%s], algorithm %s\n", info.name,
              topo.spec().name.c_str(), n, gpu_list.c_str(), algorithm.c_str());
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
  int64_t last = -1;
  for (double sz = static_cast<double>(min_bytes);
       sz <= static_cast<double>(max_bytes) * (1 + 1e-12); sz *= factor) {
    int64_t bytes = static_cast<int64_t>(sz);
    const int64_t align = info.align_n ? 4LL * n : 4;
    bytes = std::max(align, bytes / align * align);
    if (bytes == last) continue;
    last = bytes;
    const plan::Program p = build_program(info, ranks, bytes);
    const sim::SimResult res = sim::simulate(p, topo, so);
    int64_t start = std::numeric_limits<int64_t>::max(), end = 0;
    for (const auto& ot : res.timeline.ops) {
      if (ot.start_ns < 0) continue;
      start = std::min(start, ot.start_ns);
      end = std::max(end, ot.end_ns);
    }
    const double time_ns = static_cast<double>(end - std::min(start, end));
    const double algbw = time_ns > 0 ? static_cast<double>(bytes) / time_ns : 0;  // B/ns = GB/s
    t.row({std::to_string(bytes), std::to_string(bytes / 4), "float", info.redop,
           fmt::format("{:.2f}", time_ns / 1e3), fmt::format("{:.2f}", algbw),
           fmt::format("{:.2f}", algbw * bus_factor(info.kind, n))});
  }
  t.print(stdout, 0);
  return 0;
}

}  // namespace masep::tools
