// Plan search: enumeration, validation through the loader, memory and roofline pruning,
// parallel simulation in deterministic waves, ranking and the CSV / YAML outputs.
#include "search.hpp"

#include <fmt/format.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "masep/models/embedded.hpp"
#include "masep/models/zoo.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/input_file.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/output_file.hpp"
#include "masep/plan/seeded_hash.hpp"
#include "masep/topology/topology.hpp"
#include "masep/topology/zoo.hpp"
#include "sim_run.hpp"

namespace masep::plan {
std::span<const masep::EmbeddedFile> builtin_scenario_files();  // generated (scenarios/)
}

namespace masep::tools {

namespace {

namespace fs = std::filesystem;

const char* placement_short(plan::Placement p) {
  return p == plan::Placement::kContiguous ? "ct" : "rr";
}

std::string fmt_num(double v) {
  if (!std::isfinite(v)) return "";
  return fmt::format("{:.6g}", v);
}

}  // namespace

std::string Candidate::label() const {
  const std::string b = batch > 0 ? fmt::format(" b{}", batch) : std::string();
  const std::string etp =
      expert_tensor_parallel > 1 ? fmt::format(" etp{}", expert_tensor_parallel) : std::string();
  if (kind == plan::PlanKind::kColocated) {
    return fmt::format("co tp{}{} er{} {} mb{}{}", tensor_parallel, etp, expert_replicas,
                       placement_short(placement), micro_batches, b);
  }
  return fmt::format("ma {}:{} r{} hp{} sp{}{} er{} {} mb{}{}", attention_gpus, moe_gpus, replicas,
                     head_parallel, sequence_parallel, etp, expert_replicas,
                     placement_short(placement), micro_batches, b);
}

std::vector<Candidate> enumerate_candidates(const SearchSpace& space) {
  if (space.gpus < 1) throw std::invalid_argument("enumerate_candidates: gpus must be >= 1");
  if (space.max_micro_batches < 1) {
    throw std::invalid_argument("enumerate_candidates: max_micro_batches must be >= 1");
  }
  std::vector<plan::Placement> placements;
  if (space.round_robin) placements.push_back(plan::Placement::kRoundRobin);
  if (space.contiguous) placements.push_back(plan::Placement::kContiguous);
  if (space.ma_step < 1) throw std::invalid_argument("enumerate_candidates: ma_step must be >= 1");
  // Head splits the model can take (all when heads is 0).
  auto splits_heads = [&](int d) {
    return space.heads <= 0 ||
           (space.heads % d == 0 && space.kv_heads > 0 && space.kv_heads % d == 0);
  };
  auto er_max = [&](int expert_groups) {
    return space.max_expert_replicas > 0 ? std::min(space.max_expert_replicas, expert_groups)
                                         : expert_groups;
  };
  // Expert tensor-parallel degrees for `expert_gpus` GPUs: its divisors up to the cap (and
  // dividing the model's expert widths when the space names them).
  if (space.max_expert_tensor_parallel < 0) {
    throw std::invalid_argument("enumerate_candidates: max_expert_tensor_parallel must be >= 0");
  }
  auto etps = [&](int expert_gpus) {
    std::vector<int> out;
    for (int t = 1; t <= expert_gpus; ++t) {
      if (expert_gpus % t != 0) continue;
      if (space.max_expert_tensor_parallel > 0 && t > space.max_expert_tensor_parallel) break;
      if (t > 1 && space.expert_ffn > 0 && space.expert_ffn % t != 0) continue;
      if (t > 1 && space.shared_expert_ffn > 0 && space.shared_expert_ffn % t != 0) continue;
      out.push_back(t);
    }
    return out;
  };
  // ", expert_tensor_parallel: T" inside the plan's expert mapping, only when T > 1 (so the
  // plans without expert TP keep their YAML).
  auto etp_yaml = [](int t) {
    return t > 1 ? fmt::format(", expert_tensor_parallel: {}", t) : std::string();
  };
  std::vector<Candidate> out;
  const int n = space.gpus;
  if (space.colocated) {
    for (int tp = 1; tp <= n; ++tp) {
      if (n % tp != 0 || !splits_heads(tp)) continue;
      for (int et : etps(n)) {
        for (auto pl : placements) {
          for (int er = 1; er <= er_max(n / et); ++er) {
            for (int mb = 1; mb <= space.max_micro_batches; ++mb) {
              Candidate c;
              c.kind = plan::PlanKind::kColocated;
              c.tensor_parallel = tp;
              c.expert_tensor_parallel = et;
              c.placement = pl;
              c.expert_replicas = er;
              c.micro_batches = mb;
              c.plan_yaml = fmt::format(
                  "{{kind: colocated, colocated: {{gpus: {}, tensor_parallel: {}, placement: {}, "
                  "expert_replicas: {}{}}}, micro_batches: {}}}",
                  n, tp, plan::to_string(pl), er, etp_yaml(et), mb);
              out.push_back(std::move(c));
            }
          }
        }
      }
    }
  }
  if (space.ma_separation) {
    for (int a = space.ma_step; a < n; a += space.ma_step) {
      const int m = n - a;
      for (int r = 1; r <= a; ++r) {
        if (a % r != 0) continue;
        for (int hp = 1; hp <= a / r; ++hp) {
          if ((a / r) % hp != 0 || !splits_heads(hp)) continue;
          const int sp = a / r / hp;
          if (space.max_sequence_parallel > 0 && sp > space.max_sequence_parallel) continue;
          for (int et : etps(m)) {
            for (auto pl : placements) {
              for (int er = 1; er <= er_max(m / et); ++er) {
                for (int mb = 1; mb <= space.max_micro_batches; ++mb) {
                  Candidate c;
                  c.kind = plan::PlanKind::kMaSeparation;
                  c.attention_gpus = a;
                  c.moe_gpus = m;
                  c.replicas = r;
                  c.head_parallel = hp;
                  c.sequence_parallel = sp;
                  c.expert_tensor_parallel = et;
                  c.placement = pl;
                  c.expert_replicas = er;
                  c.micro_batches = mb;
                  c.plan_yaml = fmt::format(
                      "{{kind: ma_separation, attention: {{gpus: {}, head_parallel: {}, "
                      "sequence_parallel: {}, replicas: {}}}, moe: {{gpus: {}, placement: {}, "
                      "expert_replicas: {}{}}}, micro_batches: {}}}",
                      a, hp, sp, r, m, plan::to_string(pl), er, etp_yaml(et), mb);
                  out.push_back(std::move(c));
                }
              }
            }
          }
        }
      }
    }
  }
  if (!space.batches.empty()) {
    std::vector<Candidate> plans = std::move(out);
    out.clear();
    for (int b : space.batches) {
      if (b < 1) throw std::invalid_argument("enumerate_candidates: batches must be >= 1");
      for (Candidate c : plans) {
        c.batch = b;
        out.push_back(std::move(c));
      }
    }
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].index = static_cast<int>(i);
  return out;
}

double tpot_floor_ns(const plan::Program& program, const topology::GpuSpec& gpu) {
  const double bytes_per_ns = gpu.hbm_GBps;           // GB/s == bytes per ns
  std::vector<double> per_rank(program.ranks.size(), 0.0);
  int first = std::numeric_limits<int>::max(), last = std::numeric_limits<int>::min();
  for (const auto& op : program.ops) {
    if (op.stream != plan::kCompute) continue;
    double t = 0;
    if (bytes_per_ns > 0) t = static_cast<double>(op.hbm_bytes) / bytes_per_ns;
    // The simulator's peak for the op's format (an fp8 GEMM runs at fp8_tflops).
    const double flops_per_ns = gpu.tflops(op.dtype) * 1e3;
    if (flops_per_ns > 0) t = std::max(t, op.flops / flops_per_ns);
    per_rank[static_cast<size_t>(op.rank)] += t;
    first = std::min(first, op.step);
    last = std::max(last, op.step);
  }
  if (per_rank.empty() || first > last) return 0.0;
  return *std::max_element(per_rank.begin(), per_rank.end()) / (last - first + 1);
}

double tpot_floor_ns(const plan::Program& program, const topology::GpuSpec& gpu, int dense_layers,
                     double moe_scale) {
  if (moe_scale == 1.0) return tpot_floor_ns(program, gpu);
  const double bytes_per_ns = gpu.hbm_GBps;
  std::vector<double> dense(program.ranks.size(), 0.0), moe(program.ranks.size(), 0.0);
  int first = std::numeric_limits<int>::max(), last = std::numeric_limits<int>::min();
  for (const auto& op : program.ops) {
    if (op.stream != plan::kCompute) continue;
    double t = 0;
    if (bytes_per_ns > 0) t = static_cast<double>(op.hbm_bytes) / bytes_per_ns;
    const double flops_per_ns = gpu.tflops(op.dtype) * 1e3;
    if (flops_per_ns > 0) t = std::max(t, op.flops / flops_per_ns);
    (op.layer < dense_layers ? dense : moe)[static_cast<size_t>(op.rank)] += t;
    first = std::min(first, op.step);
    last = std::max(last, op.step);
  }
  if (dense.empty() || first > last) return 0.0;
  double worst = 0;
  for (size_t r = 0; r < dense.size(); ++r) worst = std::max(worst, dense[r] + moe_scale * moe[r]);
  return worst / (last - first + 1);
}

double critical_path_floor_ns(const plan::Program& program, const topology::TopologySpec& topo,
                              int dense_layers, double moe_scale) {
  const auto& gpu = topo.gpu;
  const size_t n = program.ops.size();
  if (n == 0) return 0.0;
  const int gpn = std::max(1, topo.gpus_per_node);
  // NIC rate of each plan rank's GPU (bytes per ns), and its node.
  std::vector<double> nic(program.ranks.size(), 0.0);
  std::vector<int> node(program.ranks.size(), 0);
  for (size_t r = 0; r < program.ranks.size(); ++r) {
    const int g = program.ranks[r].gpu;
    node[r] = g / gpn;
    for (const auto& x : topo.nics) {
      if (std::find(x.gpus.begin(), x.gpus.end(), g % gpn) != x.gpus.end()) nic[r] += x.GBps;
    }
  }
  // ns a transfer of `bytes` from rank a to rank b takes at least.
  auto transfer_ns = [&](int a, int b, int64_t bytes) {
    if (node[static_cast<size_t>(a)] == node[static_cast<size_t>(b)]) return 0.0;
    const double rate = std::min(nic[static_cast<size_t>(a)], nic[static_cast<size_t>(b)]);
    return rate > 0 ? static_cast<double>(bytes) / rate : 0.0;
  };
  // Nodes: start 2i, finish 2i+1, one per collective after them. Edges in CSR.
  const size_t cbase = 2 * n;
  const size_t v = cbase + program.collectives.size();
  struct Edge {
    uint32_t from, to;
    double w;
  };
  std::vector<Edge> edges;
  std::vector<double> self(n, 0.0);  // start -> finish
  const double bytes_per_ns = gpu.hbm_GBps;
  std::vector<double> out_inter(n, 0.0), in_inter(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const auto& op = program.ops[i];
    for (plan::OpId d : op.deps)
      edges.push_back({static_cast<uint32_t>(2 * d + 1), static_cast<uint32_t>(2 * i), 0.0});
    if (op.stream == plan::kCompute && !plan::is_communication(op.kind)) {
      double t = 0;
      if (bytes_per_ns > 0) t = static_cast<double>(op.hbm_bytes) / bytes_per_ns;
      const double flops_per_ns = gpu.tflops(op.dtype) * 1e3;
      if (flops_per_ns > 0) t = std::max(t, op.flops / flops_per_ns);
      self[i] = t;
    } else if ((op.kind == plan::OpKind::kSend || op.kind == plan::OpKind::kRecv) &&
               op.match >= 0) {
      const auto& peer = program.ops[static_cast<size_t>(op.match)];
      const double t = transfer_ns(op.rank, peer.rank, op.comm_bytes);
      self[i] = t;
      edges.push_back({static_cast<uint32_t>(2 * op.match), static_cast<uint32_t>(2 * i + 1), t});
    } else if (plan::is_collective(op.kind) && op.collective >= 0) {
      const uint32_t c = static_cast<uint32_t>(cbase + static_cast<size_t>(op.collective));
      edges.push_back({static_cast<uint32_t>(2 * i), c, 0.0});
      edges.push_back({c, static_cast<uint32_t>(2 * i + 1), 0.0});
    }
  }
  // Each stream runs its ops in their listed order: an implied dependency on the previous.
  for (const auto& streams : program.stream_ops) {
    for (const auto& ids : streams) {
      for (size_t k = 1; k < ids.size(); ++k) {
        edges.push_back(
            {static_cast<uint32_t>(2 * ids[k - 1] + 1), static_cast<uint32_t>(2 * ids[k]), 0.0});
      }
    }
  }
  for (const auto& x : program.exchanges) {
    for (const auto& t : x.transfers) {
      const auto& a = program.ops[static_cast<size_t>(t.src_op)];
      const auto& b = program.ops[static_cast<size_t>(t.dst_op)];
      const double w = transfer_ns(a.rank, b.rank, t.bytes);
      edges.push_back(
          {static_cast<uint32_t>(2 * t.src_op), static_cast<uint32_t>(2 * t.dst_op + 1), w});
      edges.push_back(
          {static_cast<uint32_t>(2 * t.dst_op), static_cast<uint32_t>(2 * t.src_op + 1), w});
      self[static_cast<size_t>(t.src_op)] = std::max(self[static_cast<size_t>(t.src_op)], w);
      self[static_cast<size_t>(t.dst_op)] = std::max(self[static_cast<size_t>(t.dst_op)], w);
      if (node[static_cast<size_t>(a.rank)] != node[static_cast<size_t>(b.rank)]) {
        out_inter[static_cast<size_t>(t.src_op)] += static_cast<double>(t.bytes);
        in_inter[static_cast<size_t>(t.dst_op)] += static_cast<double>(t.bytes);
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {
    const double rate = nic[static_cast<size_t>(program.ops[i].rank)];
    if (rate > 0) self[i] = std::max(self[i], std::max(out_inter[i], in_inter[i]) / rate);
    edges.push_back({static_cast<uint32_t>(2 * i), static_cast<uint32_t>(2 * i + 1), self[i]});
  }
  // Longest path (Kahn's order); a cycle would leave nodes unvisited: then no bound (0).
  std::vector<uint32_t> first(v + 1, 0), indeg(v, 0);
  for (const auto& e : edges) {
    ++first[e.from + 1];
    ++indeg[e.to];
  }
  for (size_t k = 0; k < v; ++k) first[k + 1] += first[k];
  std::vector<uint32_t> adj(edges.size());
  std::vector<double> wt(edges.size());
  {
    std::vector<uint32_t> at(first.begin(), first.end() - 1);
    for (const auto& e : edges) {
      adj[at[e.from]] = e.to;
      wt[at[e.from]++] = e.w;
    }
  }
  std::vector<double> dist(v, 0.0);
  std::vector<uint32_t> queue;
  queue.reserve(v);
  for (size_t k = 0; k < v; ++k) {
    if (indeg[k] == 0) queue.push_back(static_cast<uint32_t>(k));
  }
  for (size_t h = 0; h < queue.size(); ++h) {
    const uint32_t u = queue[h];
    for (uint32_t e = first[u]; e < first[u + 1]; ++e) {
      const uint32_t t = adj[e];
      dist[t] = std::max(dist[t], dist[u] + wt[e]);
      if (--indeg[t] == 0) queue.push_back(t);
    }
  }
  if (queue.size() != v) return 0.0;
  double all = 0, dense = 0;
  int steps = 0;
  for (size_t i = 0; i < n; ++i) {
    const auto& op = program.ops[i];
    all = std::max(all, dist[2 * i + 1]);
    if (op.layer < dense_layers) dense = std::max(dense, dist[2 * i + 1]);
    steps = std::max(steps, op.step + 1);
  }
  const double path = moe_scale == 1.0 ? all : dense + moe_scale * (all - dense);
  return path / std::max(1, steps);
}

double truncate_moe_layers(plan::Scenario& s, int moe_layers) {
  const int have = s.model.moe_layers();
  if (moe_layers <= 0 || moe_layers >= have) return 1.0;
  s.model.layers = s.model.dense_layers + moe_layers;
  return static_cast<double>(have) / moe_layers;
}

void extrapolate_metrics(plan::RunMetrics& m, const plan::Program& program, const plan::Timeline& t,
                         int dense_layers, double moe_scale) {
  if (moe_scale == 1.0) return;
  int steps = 0;
  for (const auto& op : program.ops) steps = std::max(steps, op.step + 1);
  std::vector<int64_t> end(static_cast<size_t>(steps), -1),
      dense_end(static_cast<size_t>(steps), -1);
  for (const auto& op : program.ops) {
    const auto& ot = t.ops[static_cast<size_t>(op.id)];
    if (ot.end_ns < 0) continue;
    auto s = static_cast<size_t>(op.step);
    end[s] = std::max(end[s], ot.end_ns);
    if (op.layer < dense_layers) dense_end[s] = std::max(dense_end[s], ot.end_ns);
  }
  std::vector<double> step_ms;
  int64_t prev = 0;
  for (size_t s = 0; s < end.size(); ++s) {
    if (end[s] < 0) continue;
    const int64_t split = std::clamp<int64_t>(dense_end[s] < 0 ? prev : dense_end[s], prev, end[s]);
    step_ms.push_back(
        (static_cast<double>(split - prev) + moe_scale * static_cast<double>(end[s] - split)) /
        1e6);
    prev = end[s];
  }
  if (step_ms.empty()) return;
  double sum = 0;
  for (double v : step_ms) sum += v;
  m.tpot_mean_ms = sum / static_cast<double>(step_ms.size());
  auto sorted = step_ms;
  std::sort(sorted.begin(), sorted.end());
  m.tpot_p50_ms = plan::nearest_rank_percentile(sorted, 50);
  m.tpot_p99_ms = plan::nearest_rank_percentile(sorted, 99);
  m.tokens_per_s = static_cast<double>(m.batch) * static_cast<double>(step_ms.size()) * 1e3 / sum;
  m.step_ms = std::move(step_ms);
}

const char* to_string(CandidateStatus s) {
  switch (s) {
    case CandidateStatus::kInvalid:
      return "invalid";
    case CandidateStatus::kMemory:
      return "memory";
    case CandidateStatus::kBoundSlo:
      return "bound_slo";
    case CandidateStatus::kBoundBest:
      return "bound_best";
    case CandidateStatus::kSimulated:
      return "simulated";
    case CandidateStatus::kFailed:
      return "failed";
    case CandidateStatus::kOtherShard:
      return "other_shard";
  }
  return "?";
}

namespace {

std::string one_line(std::string msg) {
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  return msg;
}

bool better(const CandidateResult& a, int ia, const CandidateResult& b, int ib) {
  if (a.tokens_per_s_per_gpu != b.tokens_per_s_per_gpu) {
    return a.tokens_per_s_per_gpu > b.tokens_per_s_per_gpu;
  }
  if (a.metrics.tpot_mean_ms != b.metrics.tpot_mean_ms) {
    return a.metrics.tpot_mean_ms < b.metrics.tpot_mean_ms;
  }
  return ia < ib;
}

// Upper bound on a candidate's tokens/s per GPU: batch / floor / GPUs (infinite without a
// floor). One function for the waves and finalize_search, so both compare the same doubles.
double ceiling(const CandidateResult& r, int gpus) {
  const double floor_s = r.floor_ms / 1e3;
  if (!(floor_s > 0) || gpus <= 0) return std::numeric_limits<double>::infinity();
  return r.batch / floor_s / gpus;
}

// ---- records: DIR/records/*.jsonl ----------------------------------------------------------
// A file: a header line {"format": ..., "key": ...}, then one object per candidate. Phase-1
// records ("p": floor, status invalid/memory/ready) and simulation records ("s": status
// simulated/failed with the metrics) are separate lines, so a candidate's floor and its
// simulation may sit in different files. Doubles round-trip exactly (nlohmann::json).

constexpr const char* kRecordFormat = "masep-search-records/1";
constexpr uint64_t kMaxRecordFileBytes = uint64_t{1} << 30;

struct Record {
  bool phase1 = false;                                    // floor, memory, validity known
  CandidateStatus p1_status = CandidateStatus::kInvalid;  // kInvalid, kMemory or kSimulated (ready)
  std::string p1_error;
  double floor_ms = 0;
  int64_t peak_memory_bytes = 0;
  int batch = 0;
  bool sim = false;                                          // simulation known
  CandidateStatus sim_status = CandidateStatus::kSimulated;  // kSimulated or kFailed
  std::string sim_error;
  plan::RunMetrics metrics;
};

fs::path records_dir(const std::string& out_dir) { return fs::path(out_dir) / "records"; }

void write_records(const SearchOptions& o, const std::string& what, int first,
                   const std::vector<std::pair<int, const CandidateResult*>>& rows, bool sim) {
  if (o.out_dir.empty() || rows.empty()) return;
  std::string text;
  {
    nlohmann::ordered_json h;
    h["format"] = kRecordFormat;
    h["key"] = o.key;
    text += h.dump() + "\n";
  }
  for (const auto& [i, r] : rows) {
    nlohmann::ordered_json j;
    j["i"] = i;
    if (!sim) {
      j["p"] = r->status == CandidateStatus::kInvalid  ? "invalid"
               : r->status == CandidateStatus::kMemory ? "memory"
                                                       : "ready";
      j["error"] = r->error;
      j["floor_ms"] = r->floor_ms;
      j["peak_memory_bytes"] = r->peak_memory_bytes;
      j["batch"] = r->batch;
    } else {
      const auto& m = r->metrics;
      j["s"] = r->status == CandidateStatus::kFailed ? "failed" : "simulated";
      j["error"] = r->error;
      j["steps"] = m.steps;
      j["batch"] = m.batch;
      put_metrics_summary(j, m);
      j["memory_available"] = m.memory_available;
    }
    text += j.dump() + "\n";
  }
  const fs::path dir = records_dir(o.out_dir);
  fs::create_directories(dir);
  const std::string name =
      fmt::format("s{}of{}-{}-{}.jsonl", o.shard.index, o.shard.count, what, first);
  plan::write_output_file((dir / name).string(), "search records", text);
}

// Every record under DIR/records (files in name order; a candidate's first record wins: all
// are equal, being deterministic). Throws std::runtime_error naming file and line.
std::vector<Record> read_records(const SearchOptions& o, int n) {
  std::vector<Record> recs(static_cast<size_t>(n));
  if (o.out_dir.empty()) return recs;
  const fs::path dir = records_dir(o.out_dir);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return recs;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".jsonl") files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    const std::string text = plan::read_input_file(f, "search records", kMaxRecordFileBytes);
    std::istringstream in(text);
    std::string line;
    int line_no = 0;
    try {
      while (std::getline(in, line)) {
        ++line_no;
        const auto j = nlohmann::json::parse(line);
        if (line_no == 1) {
          if (j.at("format") != kRecordFormat) throw std::runtime_error("unknown format");
          if (j.at("key").get<std::string>() != o.key) {
            throw std::runtime_error(fmt::format(
                "written by another search, other options or another masep build (key {}, "
                "this search's {}); use another --out or --fresh",
                j.at("key").get<std::string>(), o.key));
          }
          continue;
        }
        const int i = j.at("i").get<int>();
        if (i < 0 || i >= n) throw std::runtime_error(fmt::format("candidate {} of {}", i, n));
        Record& r = recs[static_cast<size_t>(i)];
        if (j.contains("p")) {
          if (r.phase1) continue;
          const std::string st = j.at("p").get<std::string>();
          r.p1_status = st == "invalid"  ? CandidateStatus::kInvalid
                        : st == "memory" ? CandidateStatus::kMemory
                        : st == "ready"  ? CandidateStatus::kSimulated
                                         : throw std::runtime_error("bad status '" + st + "'");
          r.p1_error = j.at("error").get<std::string>();
          r.floor_ms = j.at("floor_ms").get<double>();
          r.peak_memory_bytes = j.at("peak_memory_bytes").get<int64_t>();
          r.batch = j.at("batch").get<int>();
          r.phase1 = true;
        } else {
          if (r.sim) continue;
          const std::string st = j.at("s").get<std::string>();
          r.sim_status = st == "simulated" ? CandidateStatus::kSimulated
                         : st == "failed"  ? CandidateStatus::kFailed
                                           : throw std::runtime_error("bad status '" + st + "'");
          r.sim_error = j.at("error").get<std::string>();
          auto& m = r.metrics;
          m.steps = j.at("steps").get<int>();
          m.batch = j.at("batch").get<int>();
          get_metrics_summary(j, m);
          m.memory_available = j.at("memory_available").get<bool>();
          r.sim = true;
        }
      }
    } catch (const std::exception& e) {
      throw std::runtime_error(
          fmt::format("{}:{}: not a usable search record: {}", f, line_no, e.what()));
    }
  }
  return recs;
}

void apply_phase1(const Record& rec, CandidateResult& r) {
  r.status = rec.p1_status;
  r.error = rec.p1_error;
  r.floor_ms = rec.floor_ms;
  r.peak_memory_bytes = rec.peak_memory_bytes;
  r.batch = rec.batch;
}

void apply_sim(const Record& rec, CandidateResult& r, int gpus, double slo_ms) {
  r.status = rec.sim_status;
  r.error = rec.sim_error;
  r.metrics = rec.metrics;
  if (r.status == CandidateStatus::kSimulated) {
    r.tokens_per_s_per_gpu = gpus > 0 ? r.metrics.tokens_per_s / gpus : 0;
    r.meets_slo = !(slo_ms > 0) || r.metrics.tpot_mean_ms <= slo_ms;
  }
}

// Phase 1 of one candidate: load (the loader validates), memory, floor.
void prepare(const Candidate& c, const SearchOptions& options, CandidateResult& r) {
  std::vector<std::string> ov = options.overrides;
  ov.push_back("plan=" + c.plan_yaml);
  if (c.batch > 0) ov.push_back(fmt::format("workload.batch={}", c.batch));
  plan::Scenario s;
  try {
    s = plan::load_scenario(options.base, ov);
  } catch (const plan::InputError& e) {
    r.status = CandidateStatus::kInvalid;
    r.error = one_line(e.what());
    return;
  }
  try {
    const auto mem = plan::plan_memory(s);
    for (const auto& m : mem) r.peak_memory_bytes = std::max(r.peak_memory_bytes, m.total());
    plan::check_memory(s, mem);
  } catch (const plan::InfeasiblePlan& e) {
    r.status = CandidateStatus::kMemory;
    r.error = one_line(e.what());
    return;
  }
  try {
    // All steps: routing differs per step, so one step's busiest rank is no bound.
    const double scale = truncate_moe_layers(s, options.moe_layers);
    const plan::Program p = plan::compile(s);
    r.floor_ms = std::max(tpot_floor_ns(p, s.topology.gpu, s.model.dense_layers, scale),
                          critical_path_floor_ns(p, s.topology, s.model.dense_layers, scale)) /
                 1e6;
  } catch (const std::exception& e) {
    r.status = CandidateStatus::kInvalid;
    r.error = one_line(e.what());
    return;
  }
  r.status = CandidateStatus::kSimulated;  // provisional: "ready to simulate"
  r.batch = s.workload.batch;
}

void simulate_one(const Candidate& c, const SearchOptions& options, int gpus, CandidateResult& r) {
  try {
    std::vector<std::string> ov = options.overrides;
    ov.push_back("plan=" + c.plan_yaml);
    if (c.batch > 0) ov.push_back(fmt::format("workload.batch={}", c.batch));
    plan::Scenario s = plan::load_scenario(options.base, ov);
    const double scale = truncate_moe_layers(s, options.moe_layers);
    check_fits_in_memory(s);
    const plan::Program program = plan::compile(s);
    const topology::Topology topo(s.topology);
    const sim::SimResult sr = sim::simulate(program, topo, with_scenario_settings(s, options.sim));
    r.metrics = plan::compute_metrics(s, program, sr.timeline);
    extrapolate_metrics(r.metrics, program, sr.timeline, s.model.dense_layers, scale);
    r.metrics.ranks.clear();
    r.metrics.step_ms.clear();
    r.tokens_per_s_per_gpu = gpus > 0 ? r.metrics.tokens_per_s / gpus : 0;
    r.meets_slo = !(options.tpot_slo_ms > 0) || r.metrics.tpot_mean_ms <= options.tpot_slo_ms;
    r.status = CandidateStatus::kSimulated;
  } catch (const std::exception& e) {
    r.status = CandidateStatus::kFailed;
    r.error = one_line(e.what());
  }
}

void probe_base(const SearchOptions& options) {
  // The base scenario must load with a trivial plan, so a typo in --set or the file is
  // reported once, as the loader's error, instead of as thousands of invalid candidates.
  std::vector<std::string> ov = options.overrides;
  ov.emplace_back(kProbePlan);
  (void)plan::load_scenario(options.base, ov);
}

}  // namespace

SearchResult run_search(const SearchSpace& space, const SearchOptions& options) {
  probe_base(options);
  SearchResult res;
  res.candidates = enumerate_candidates(space);
  const int n = static_cast<int>(res.candidates.size());
  res.enumerated = n;
  res.gpus = space.gpus;
  res.results.resize(static_cast<size_t>(n));
  const ShardSpec& shard = options.shard;
  const std::vector<Record> recs = read_records(options, n);

  const int threads = options.jobs > 0 ? options.jobs : tbb::this_task_arena::max_concurrency();
  tbb::task_arena arena(threads);

  // Phase 1: validity (the loader), memory (plan_memory / check_memory), TPOT floor; this
  // shard's candidates not yet recorded, in chunks recorded as they finish.
  std::vector<int> todo;
  for (int i = 0; i < n; ++i) {
    auto& r = res.results[static_cast<size_t>(i)];
    if (!shard.owns(i)) {
      r.status = CandidateStatus::kOtherShard;
      continue;
    }
    const Record& rec = recs[static_cast<size_t>(i)];
    if (rec.phase1) {
      apply_phase1(rec, r);
    } else {
      todo.push_back(i);
    }
  }
  const size_t chunk = options.out_dir.empty() ? todo.size() : static_cast<size_t>(64 * threads);
  for (size_t at = 0; at < todo.size(); at += std::max<size_t>(chunk, 1)) {
    const size_t end = std::min(todo.size(), at + std::max<size_t>(chunk, 1));
    arena.execute([&] {
      tbb::parallel_for(at, end, [&](size_t t) {
        const int i = todo[t];
        prepare(res.candidates[static_cast<size_t>(i)], options,
                res.results[static_cast<size_t>(i)]);
      });
    });
    std::vector<std::pair<int, const CandidateResult*>> rows;
    for (size_t t = at; t < end; ++t)
      rows.emplace_back(todo[t], &res.results[static_cast<size_t>(todo[t])]);
    write_records(options, "p1", todo[at], rows, false);
    if (options.progress) {
      options.progress("floors", static_cast<int64_t>(end), static_cast<int64_t>(todo.size()));
    }
  }

  // Phase 2: the SLO bound, then the order of simulation (floor ascending, index).
  std::vector<int> order;
  for (int i = 0; i < n; ++i) {
    auto& r = res.results[static_cast<size_t>(i)];
    if (r.status != CandidateStatus::kSimulated) continue;
    if (options.tpot_slo_ms > 0 && r.floor_ms > options.tpot_slo_ms) {
      r.status = CandidateStatus::kBoundSlo;
      continue;
    }
    order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return res.results[static_cast<size_t>(a)].floor_ms <
           res.results[static_cast<size_t>(b)].floor_ms;
  });

  // Phase 3: waves. Before each wave, a candidate whose tokens/s/GPU ceiling
  // (batch / floor / GPUs) is below the K-th best simulated plan of its kind that meets the
  // SLO cannot enter that kind's top K, so it is pruned. Waves have a fixed size and are
  // filled in `order`, so what is simulated does not depend on the number of threads. A
  // simulation already recorded is read back instead of run.
  const size_t k = static_cast<size_t>(std::max(1, options.top_k));
  std::map<plan::PlanKind, std::vector<double>> top;  // per kind, best first, at most k
  const int wave = std::max(1, options.wave);
  size_t next = 0;
  while (next < order.size()) {
    std::vector<int> batch, to_run;
    while (next < order.size() && static_cast<int>(batch.size()) < wave) {
      const int i = order[next++];
      auto& r = res.results[static_cast<size_t>(i)];
      const auto& t = top[res.candidates[static_cast<size_t>(i)].kind];
      if (t.size() >= k && ceiling(r, space.gpus) < t[k - 1]) {
        r.status = CandidateStatus::kBoundBest;
        continue;
      }
      batch.push_back(i);
      const Record& rec = recs[static_cast<size_t>(i)];
      if (rec.sim) {
        apply_sim(rec, r, space.gpus, options.tpot_slo_ms);
      } else {
        to_run.push_back(i);
      }
    }
    const int m = static_cast<int>(to_run.size());
    arena.execute([&] {
      tbb::parallel_for(0, m, [&](int j) {
        const int i = to_run[static_cast<size_t>(j)];
        simulate_one(res.candidates[static_cast<size_t>(i)], options, space.gpus,
                     res.results[static_cast<size_t>(i)]);
      });
    });
    res.ran += m;
    if (m > 0) {
      std::vector<std::pair<int, const CandidateResult*>> rows;
      for (int i : to_run) rows.emplace_back(i, &res.results[static_cast<size_t>(i)]);
      write_records(options, "sim", to_run.front(), rows, true);
    }
    for (int i : batch) {  // in order: deterministic
      const auto& r = res.results[static_cast<size_t>(i)];
      if (r.status != CandidateStatus::kSimulated || !r.meets_slo) continue;
      auto& t = top[res.candidates[static_cast<size_t>(i)].kind];
      t.insert(std::upper_bound(t.begin(), t.end(), r.tokens_per_s_per_gpu, std::greater<>()),
               r.tokens_per_s_per_gpu);
      if (t.size() > k) t.resize(k);
    }
    if (options.progress) {
      options.progress("simulations", static_cast<int64_t>(next),
                       static_cast<int64_t>(order.size()));
    }
  }
  res.resumed = 0;
  for (int i = 0; i < n; ++i) {
    const Record& rec = recs[static_cast<size_t>(i)];
    if (shard.owns(i) && (rec.phase1 || rec.sim)) ++res.resumed;
  }
  if (shard.count == 1) {
    finalize_search(res, options);
  } else {
    for (const auto& r : res.results) {  // this shard's counts, not finalized
      res.invalid += r.status == CandidateStatus::kInvalid;
      res.pruned_memory += r.status == CandidateStatus::kMemory;
      res.pruned_bound +=
          r.status == CandidateStatus::kBoundSlo || r.status == CandidateStatus::kBoundBest;
      res.simulated += r.status == CandidateStatus::kSimulated;
      res.failed += r.status == CandidateStatus::kFailed;
    }
  }
  return res;
}

void finalize_search(SearchResult& res, const SearchOptions& options) {
  const size_t k = static_cast<size_t>(std::max(1, options.top_k));
  const int n = static_cast<int>(res.candidates.size());
  // T per kind: the K-th best simulated plan meeting the SLO.
  std::map<plan::PlanKind, double> bound;
  for (auto kind : {plan::PlanKind::kColocated, plan::PlanKind::kMaSeparation}) {
    std::vector<double> v;
    for (int i = 0; i < n; ++i) {
      const auto& r = res.results[static_cast<size_t>(i)];
      if (res.candidates[static_cast<size_t>(i)].kind == kind &&
          r.status == CandidateStatus::kSimulated && r.meets_slo) {
        v.push_back(r.tokens_per_s_per_gpu);
      }
    }
    std::sort(v.begin(), v.end(), std::greater<>());
    bound[kind] = v.size() >= k ? v[k - 1] : -std::numeric_limits<double>::infinity();
  }
  res.invalid = res.pruned_memory = res.pruned_bound = res.simulated = res.failed = 0;
  res.floor_violations = res.dropped = 0;
  res.missing.clear();
  res.ranking.clear();
  res.best_colocated = res.best_ma = -1;
  for (int i = 0; i < n; ++i) {
    auto& r = res.results[static_cast<size_t>(i)];
    const double t = bound[res.candidates[static_cast<size_t>(i)].kind];
    const bool below = ceiling(r, res.gpus) < t;
    if (r.status == CandidateStatus::kSimulated || r.status == CandidateStatus::kFailed) {
      if (below) {  // simulated beyond the final bound: reported as pruned
        r.status = CandidateStatus::kBoundBest;
        r.error.clear();
        r.metrics = plan::RunMetrics{};
        r.tokens_per_s_per_gpu = 0;
        r.meets_slo = false;
        ++res.dropped;
      }
    } else if (r.status == CandidateStatus::kBoundBest && !below) {
      res.missing.push_back(i);  // needed, not simulated (only a merge of partial records)
      r.status = CandidateStatus::kOtherShard;
    } else if (r.status == CandidateStatus::kOtherShard) {
      res.missing.push_back(i);
    }
    switch (r.status) {
      case CandidateStatus::kInvalid:
        ++res.invalid;
        break;
      case CandidateStatus::kMemory:
        ++res.pruned_memory;
        break;
      case CandidateStatus::kBoundSlo:
      case CandidateStatus::kBoundBest:
        ++res.pruned_bound;
        break;
      case CandidateStatus::kSimulated:
        ++res.simulated;
        // 1 ns of slack: the floor is a double, TPOT comes from integer ns.
        if (r.metrics.tpot_mean_ms + 1e-6 < r.floor_ms) ++res.floor_violations;
        if (r.meets_slo) res.ranking.push_back(i);
        break;
      case CandidateStatus::kFailed:
        ++res.failed;
        break;
      case CandidateStatus::kOtherShard:
        break;
    }
  }
  std::sort(res.ranking.begin(), res.ranking.end(), [&](int a, int b) {
    return better(res.results[static_cast<size_t>(a)], a, res.results[static_cast<size_t>(b)], b);
  });
  for (int i : res.ranking) {
    const auto kind = res.candidates[static_cast<size_t>(i)].kind;
    int& best = kind == plan::PlanKind::kColocated ? res.best_colocated : res.best_ma;
    if (best < 0) best = i;
  }
}

SearchResult merge_search(const SearchSpace& space, const SearchOptions& options) {
  probe_base(options);
  SearchResult res;
  res.candidates = enumerate_candidates(space);
  const int n = static_cast<int>(res.candidates.size());
  res.enumerated = n;
  res.gpus = space.gpus;
  res.results.resize(static_cast<size_t>(n));
  const std::vector<Record> recs = read_records(options, n);
  for (int i = 0; i < n; ++i) {
    const Record& rec = recs[static_cast<size_t>(i)];
    auto& r = res.results[static_cast<size_t>(i)];
    if (!rec.phase1) {
      r.status = CandidateStatus::kOtherShard;
      continue;
    }
    ++res.resumed;
    apply_phase1(rec, r);
    if (r.status != CandidateStatus::kSimulated) continue;
    if (options.tpot_slo_ms > 0 && r.floor_ms > options.tpot_slo_ms) {
      r.status = CandidateStatus::kBoundSlo;
    } else if (rec.sim) {
      apply_sim(rec, r, space.gpus, options.tpot_slo_ms);
    } else {
      r.status = CandidateStatus::kBoundBest;  // finalize_search says whether it was needed
    }
  }
  finalize_search(res, options);
  return res;
}

std::string search_key(const SearchSpace& space, const SearchOptions& options,
                       const std::string& sim_text, const std::string& binary_id) {
  std::string canon = "masep-search-key/1\n" + options.base + "\n";
  for (const auto& o : options.overrides) canon += "set " + o + "\n";
  canon += fmt::format("gpus={} mb={} er={} co={} ma={} slo={:.17g} top={}\n", space.gpus,
                       space.max_micro_batches, space.max_expert_replicas, space.colocated,
                       space.ma_separation, options.tpot_slo_ms, options.top_k);
  canon += fmt::format("ma_step={} sp={} rr={} ct={} heads={} kv_heads={} moe_layers={}\n",
                       space.ma_step, space.max_sequence_parallel, space.round_robin,
                       space.contiguous, space.heads, space.kv_heads, options.moe_layers);
  for (int b : space.batches) canon += fmt::format("batch {}\n", b);
  canon += fmt::format("etp={} expert_ffn={} shared_ffn={}\n", space.max_expert_tensor_parallel,
                       space.expert_ffn, space.shared_expert_ffn);
  canon += sim_text + "\n" + binary_id + "\n";
  return fmt::format("{:016x}", plan::fnv1a64(canon));
}

std::vector<std::vector<std::string>> search_table(const SearchResult& r) {
  std::vector<std::vector<std::string>> t;
  t.push_back({"index",
               "kind",
               "label",
               "attention_gpus",
               "moe_gpus",
               "replicas",
               "head_parallel",
               "sequence_parallel",
               "tensor_parallel",
               "expert_tensor_parallel",
               "expert_replicas",
               "placement",
               "micro_batches",
               "batch",
               "status",
               "floor_ms",
               "tpot_mean_ms",
               "tpot_p99_ms",
               "tokens_per_s",
               "tokens_per_s_per_gpu",
               "attention_idle_ms",
               "moe_idle_ms",
               "exposed_comm_ms",
               "peak_memory_gb",
               "meets_slo",
               "error"});
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const Candidate& c = r.candidates[i];
    const CandidateResult& x = r.results[i];
    const bool ma = c.kind == plan::PlanKind::kMaSeparation;
    const bool sim = x.status == CandidateStatus::kSimulated;
    const auto& m = x.metrics;
    auto opt = [](bool on, int v) { return on ? std::to_string(v) : std::string(); };
    t.push_back({std::to_string(c.index),
                 ma ? "ma_separation" : "colocated",
                 c.label(),
                 opt(ma, c.attention_gpus),
                 opt(ma, c.moe_gpus),
                 opt(ma, c.replicas),
                 opt(ma, c.head_parallel),
                 opt(ma, c.sequence_parallel),
                 opt(!ma, c.tensor_parallel),
                 std::to_string(c.expert_tensor_parallel),
                 std::to_string(c.expert_replicas),
                 plan::to_string(c.placement),
                 std::to_string(c.micro_batches),
                 x.batch > 0 ? std::to_string(x.batch) : "",
                 to_string(x.status),
                 x.floor_ms > 0 ? fmt_num(x.floor_ms) : "",
                 sim ? fmt_num(m.tpot_mean_ms) : "",
                 sim ? fmt_num(m.tpot_p99_ms) : "",
                 sim ? fmt_num(m.tokens_per_s) : "",
                 sim ? fmt_num(x.tokens_per_s_per_gpu) : "",
                 sim ? fmt_num(m.attention_idle_ns / 1e6) : "",
                 sim ? fmt_num(m.moe_idle_ns / 1e6) : "",
                 sim ? fmt_num(m.exposed_comm_ns / 1e6) : "",
                 x.peak_memory_bytes > 0 ? fmt_num(x.peak_memory_bytes / 1e9) : "",
                 sim ? (x.meets_slo ? "yes" : "no") : "",
                 x.error});
  }
  return t;
}

std::string bottleneck(const Candidate& c, const plan::RunMetrics& m, int gpus) {
  const double wall = static_cast<double>(m.makespan_ns);
  if (!(wall > 0) || gpus <= 0) return "";
  const double comm = m.exposed_comm_ns / (wall * gpus);
  if (c.kind == plan::PlanKind::kColocated) {
    const double idle = m.attention_idle_ns / (wall * gpus);
    if (comm > 0.25) return fmt::format("comm (exposed {:.0f}%)", 100 * comm);
    return fmt::format("compute (idle {:.0f}%, exposed comm {:.0f}%)", 100 * idle, 100 * comm);
  }
  const double a_idle = m.attention_idle_ns / (wall * c.attention_gpus);
  const double m_idle = m.moe_idle_ns / (wall * c.moe_gpus);
  if (a_idle <= m_idle) {
    return fmt::format("attention (MoE idle {:.0f}%, exposed comm {:.0f}%)", 100 * m_idle,
                       100 * comm);
  }
  return fmt::format("MoE (attention idle {:.0f}%, exposed comm {:.0f}%)", 100 * a_idle,
                     100 * comm);
}

namespace {

std::optional<std::string> builtin_text(std::span<const masep::EmbeddedFile> files,
                                        const std::string& name) {
  for (const auto& f : files) {
    if (name == f.name) return std::string(f.text);
  }
  return std::nullopt;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) throw plan::InputError(path, 0, 0, "", "cannot read the file");
  return ss.str();
}

// The tree of a model / topology / GPU reference: a built-in's text or a file's (relative
// to `dir`).
YAML::Node ref_tree(const std::string& kind, const std::string& ref, const fs::path& dir) {
  std::optional<std::string> text;
  if (kind == "model") text = builtin_text(models::builtin_model_files(), ref);
  if (kind == "topology") text = builtin_text(topology::builtin_topology_files(), ref);
  if (kind == "topology.gpu") text = builtin_text(topology::builtin_gpu_files(), ref);
  if (!text) text = read_file((dir / ref).string());
  return YAML::Load(*text);
}

}  // namespace

std::string scenario_yaml(const std::string& base, const std::vector<std::string>& overrides,
                          const std::string& plan_yaml, const std::string& name) {
  std::error_code ec;
  std::string text;
  fs::path dir;
  if (fs::is_regular_file(base, ec)) {
    text = read_file(base);
    dir = fs::absolute(fs::path(base)).parent_path();
  } else if (auto b = builtin_text(plan::builtin_scenario_files(), base)) {
    text = *b;
  } else {
    throw plan::InputError(base, 0, 0, "", "no such file, and not a built-in scenario");
  }
  YAML::Node root = YAML::Load(text);
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos) throw plan::InputError("--set", 0, 0, o, "expected KEY=VALUE");
    const std::string key = o.substr(0, eq);
    std::vector<std::string> seg;
    for (size_t s = 0;;) {
      const auto dot = key.find('.', s);
      seg.push_back(key.substr(s, dot == std::string::npos ? dot : dot - s));
      if (dot == std::string::npos) break;
      s = dot + 1;
    }
    YAML::Node cur = root;
    std::string path;
    for (size_t i = 0; i < seg.size(); ++i) {
      const bool last = i + 1 == seg.size();
      if (last) {
        cur[seg[i]] = YAML::Load(o.substr(eq + 1));
        break;
      }
      path = path.empty() ? seg[i] : path + "." + seg[i];
      YAML::Node next = cur[seg[i]];
      if (next.IsScalar() && (path == "model" || path == "topology" || path == "topology.gpu")) {
        next = ref_tree(path, next.Scalar(), dir);  // inline, so the override can reach in
        cur[seg[i]] = next;
      } else if (!next.IsDefined() || next.IsNull()) {
        cur[seg[i]] = YAML::Node(YAML::NodeType::Map);
        next = cur[seg[i]];
      }
      cur.reset(next);
    }
  }
  // File references relative to the base file: made absolute so the output loads anywhere.
  for (const char* k : {"model", "topology"}) {
    YAML::Node v = root[k];
    if (!dir.empty() && v.IsScalar() && fs::is_regular_file(dir / v.Scalar(), ec)) {
      root[k] = (dir / v.Scalar()).lexically_normal().string();
    }
  }
  root["plan"] = YAML::Load(plan_yaml);
  root["name"] = name;
  root["description"] = "the plan masep search chose for " + base;
  YAML::Emitter e;
  e << root;
  return std::string("# Written by `masep search` (docs/search.md); run with `masep sim FILE`.\n") +
         e.c_str() + "\n";
}

}  // namespace masep::tools
