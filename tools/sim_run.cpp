// The load → compile → simulate → metrics pipeline shared by the simulator commands.
#include "sim_run.hpp"

#include <fmt/format.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

#include "approx_run.hpp"
#include "cli.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/metrics_folder.hpp"
#include "masep/topology/topology.hpp"

namespace masep::tools {

namespace {

// Bytes of host memory one op costs across compile + simulate + metrics, measured with
// `/usr/bin/time -f %M masep sim paper --steps N` (N = 200 vs 2,000: 393 B/op) and
// `masep plan large-1024gpu --steps 1 vs 2` (277 B/op for the Program alone); rounded up.
constexpr double kBytesPerOp = 400;
// Bytes of host memory per GPU of the topology (topology::Topology works routes out from the
// cluster's structure and the simulator keeps only the pairs a Program uses, which the op count
// covers): `masep collective -t` a DGX-H100 cluster of 4,096 / 8,192 / 16,384 GPUs, one
// send/recv, peaks at 11.6 / 16.9 / 27.8 MB, i.e. ~1.3 KB per GPU; rounded up.
constexpr double kBytesPerTopologyGpu = 2048;

// The smallest positive of two limits (0 = unknown).
double tighter(double a, double b) { return a <= 0 ? b : (b <= 0 ? a : std::min(a, b)); }

// Room left under this process's cgroup (v2 memory.max - memory.current), 0 when unknown or
// unlimited.
double cgroup_room_bytes() {
  std::ifstream mx("/sys/fs/cgroup/memory.max"), cur("/sys/fs/cgroup/memory.current");
  std::string max_text;
  double used = 0;
  if (!(mx >> max_text) || max_text == "max" || !(cur >> used)) return 0;
  const double limit = std::strtod(max_text.c_str(), nullptr);
  return limit > used ? limit - used : 1;  // at (or past) the limit: 1 byte, not "unknown"
}

// MASEP_SIM_MEMORY_LIMIT_GB when set (a cap a user chooses, e.g. on a shared machine), else
// the tightest of MemAvailable (/proc/meminfo, else free physical pages), the address-space
// limit (RLIMIT_AS) and the cgroup's room; 0 when none is known.
double available_memory_bytes(bool* from_env) {
  *from_env = false;
  if (const char* env = std::getenv("MASEP_SIM_MEMORY_LIMIT_GB"); env != nullptr && *env) {
    char* end = nullptr;
    const double gb = std::strtod(env, &end);
    if (end == env || *end != '\0' || !(gb > 0) || !std::isfinite(gb)) {
      throw std::runtime_error(
          fmt::format("MASEP_SIM_MEMORY_LIMIT_GB='{}' is not a positive number of GB", env));
    }
    *from_env = true;
    return gb * 1e9;
  }
  double avail = 0;
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit) {
    if (key == "MemAvailable:") avail = kb * 1024;
  }
  if (avail <= 0) {
    const long pages = ::sysconf(_SC_AVPHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    avail = pages > 0 && page > 0 ? static_cast<double>(pages) * page : 0;
  }
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    avail = tighter(avail, static_cast<double>(rl.rlim_cur));
  }
  return tighter(avail, cgroup_room_bytes());
}

// An upper bound of one decode step's ops from the scenario's numbers alone, before anything
// is compiled: per layer and micro-batch, at most kOpsPerRank ops on every GPU, plus a send
// and a receive both ways for every attention-MoE GPU pair (the M:N dispatch and combine).
constexpr double kOpsPerRank = 64;  // the built-in scenarios have 12-20

double ops_per_step_bound(const plan::Scenario& s) {
  const double gpus = s.plan.total_gpus();
  double pairs = s.plan.kind == plan::PlanKind::kMaSeparation
                     ? static_cast<double>(s.plan.attention.gpus) * s.plan.moe.gpus
                     : gpus * gpus;  // all-to-all partners
  // A transfer carries at least one row (token, expert) of the micro-batch.
  const double rows =
      std::ceil(static_cast<double>(s.workload.batch) / std::max(1, s.plan.micro_batches)) *
      (s.model.top_k + (s.model.shared_experts > 0 ? 1 : 0));
  pairs = std::min(pairs, rows);
  return static_cast<double>(s.model.layers) * s.plan.micro_batches *
         (gpus * kOpsPerRank + 4 * pairs);
}

}  // namespace

void check_topology_fits(const topology::TopologySpec& t, double available_bytes) {
  bool from_env = false;
  if (available_bytes <= 0) available_bytes = available_memory_bytes(&from_env);
  if (available_bytes <= 0) return;
  const double gpus = static_cast<double>(t.nodes) * t.gpus_per_node;
  const double need = gpus * kBytesPerTopologyGpu;
  if (need <= 0.9 * available_bytes) return;
  throw std::runtime_error(fmt::format(
      "topology '{}': its {} GPUs would need about {:.2f} GB of memory (about {:.0f} bytes per "
      "GPU), but {} {:.2f} GB. Use a topology with fewer GPUs.",
      t.name, group_thousands(gpus), need / 1e9, kBytesPerTopologyGpu,
      from_env ? "MASEP_SIM_MEMORY_LIMIT_GB allows" : "this machine has available",
      available_bytes / 1e9));
}

void check_fits_in_memory(const plan::Scenario& s, double available_bytes, double steps_held) {
  const double steps = steps_held > 0
                           ? std::min(steps_held, static_cast<double>(s.workload.decode_steps))
                           : s.workload.decode_steps;
  bool from_env = false;
  if (available_bytes <= 0) available_bytes = available_memory_bytes(&from_env);
  if (available_bytes <= 0) return;  // unknown: nothing to compare with
  const double budget = 0.9 * available_bytes;
  // The topology costs memory per GPU (routes of the pairs used are covered by the ops).
  const double topo_gpus = static_cast<double>(s.topology.nodes) * s.topology.gpus_per_node;
  const double topo_bytes = topo_gpus * kBytesPerTopologyGpu;
  // Count one step's ops by compiling it only when even the bound of one step fits; else
  // compile one layer and scale by the layers; else keep the bound (all arithmetic).
  plan::CompileOptions one;
  one.first_step = 0;
  one.steps = 1;
  double ops_per_step = ops_per_step_bound(s);
  const char* how = "at most";
  if (ops_per_step * kBytesPerOp <= budget) {
    if (steps <= 1 && ops_per_step * kBytesPerOp + topo_bytes <= budget) return;  // by the bound
    ops_per_step = static_cast<double>(plan::compile(s, one).ops.size());
    how = "";
  } else if (ops_per_step / s.model.layers * kBytesPerOp <= budget) {
    plan::Scenario layer = s;
    layer.model.layers = 1;
    layer.model.dense_layers = 0;  // an MoE layer: it has more ops than a dense one
    ops_per_step = static_cast<double>(plan::compile(layer, one).ops.size()) * s.model.layers;
    how = "about";
  }
  const double need = ops_per_step * steps * kBytesPerOp + topo_bytes;
  if (need <= budget) return;
  if (steps_held > 0) {
    throw std::runtime_error(fmt::format(
        "scenario '{}': the streamed run holds about {:.3g} decode steps at once x {}{}{} ops per "
        "step, about {:.2f} GB of memory (about {:.0f} bytes per op{}), but {} {:.2f} GB. Use "
        "smaller windows (--window-layers 1) or a machine with more memory.",
        s.name, steps, how, *how ? " " : "", group_thousands(ops_per_step), need / 1e9, kBytesPerOp,
        topo_bytes >= 0.01 * need ? fmt::format(", plus {:.2f} GB for the topology's {} GPUs",
                                                topo_bytes / 1e9, group_thousands(topo_gpus))
                                  : std::string(),
        from_env ? "MASEP_SIM_MEMORY_LIMIT_GB allows" : "this machine has available",
        available_bytes / 1e9));
  }
  const int fit =
      static_cast<int>(std::max(0.0, budget - topo_bytes) / (ops_per_step * kBytesPerOp));
  throw std::runtime_error(fmt::format(
      "scenario '{}': {} decode steps x {}{}{} ops per step = {} ops would need about {:.2f} GB of "
      "memory to compile and simulate (about {:.0f} bytes per op{}), but {} {:.2f} GB. {}, or "
      "use a machine with more memory. (The simulator holds the whole run; "
      "docs/performance.md explains the cost.)",
      s.name, steps, how, *how ? " " : "", group_thousands(ops_per_step),
      group_thousands(ops_per_step * steps), need / 1e9, kBytesPerOp,
      topo_bytes >= 0.01 * need
          ? fmt::format(", plus {:.2f} GB for the topology's {} GPUs",
                        topo_bytes / 1e9, group_thousands(topo_gpus))
          : std::string(),
      from_env ? "MASEP_SIM_MEMORY_LIMIT_GB allows" : "this machine has available",
      available_bytes / 1e9,
      topo_bytes >= budget
          ? std::string("Use a topology with fewer GPUs (it alone does not fit)")
          : fmt::format("Simulate fewer steps ({})", fit >= 1
                                                         ? fmt::format("--steps {} fits", fit)
                                                         : std::string("not even one step fits"))));
}

namespace {

// Streaming: windows of the compiler, and their metrics and trace folded as they finish.
// Windows of `layers` (step, layer) pairs. With `prefetch`, the next window is compiled on
// a second thread while the engine simulates the current one (the compiler is deterministic
// and shares nothing with the engine, so the chunks are the same).
class StreamSource final : public sim::ChunkSource {
 public:
  StreamSource(plan::ProgramStream& ps, int64_t layers, bool prefetch)
      : ps_(ps), layers_(layers), left_(ps.layers_left()), prefetch_(prefetch) {}
  ~StreamSource() override {
    if (ahead_.valid()) ahead_.wait();  // never leave the worker running on ps_
  }
  bool next(plan::ProgramChunk& out) override {
    if (finished_) return false;
    bool got = false;
    if (ahead_.valid()) {
      got = ahead_.get();  // rethrows the compiler's exception
      out = std::move(buffer_);
    } else {
      got = ps_.next_layers(static_cast<int>(layers_), out);
    }
    if (!got) return false;
    finished_ = out.last;
    left_ = std::max<int64_t>(0, left_ - layers_);
    if (prefetch_ && !finished_) {
      ahead_ = std::async(std::launch::async,
                          [this] { return ps_.next_layers(static_cast<int>(layers_), buffer_); });
    }
    return true;
  }
  int remaining() const override {
    if (finished_) return 0;
    return static_cast<int>(std::max<int64_t>(1, (left_ + layers_ - 1) / layers_));
  }

 private:
  plan::ProgramStream& ps_;
  int64_t layers_;
  int64_t left_;  // (step, layer) pairs not yet handed out
  bool prefetch_;
  bool finished_ = false;
  plan::ProgramChunk buffer_;  // written by the worker until ahead_ is ready
  std::future<bool> ahead_;
};

// The window in (step, layer) pairs (RunOptions).
int64_t window_layers(const plan::Scenario& s, const RunOptions& ro) {
  const int64_t layers = std::max(1, s.model.layers);
  if (ro.window_layers > 0) return ro.window_layers;
  if (ro.window_steps > 0) return ro.window_steps * layers;
  constexpr double kOpsPerWindow = 200000;  // ~12 ops per GPU, layer and micro-batch
  const double per_layer = 12.0 * s.plan.total_gpus() * std::max(1, s.plan.micro_batches);
  return std::clamp<int64_t>(static_cast<int64_t>(kOpsPerWindow / per_layer), 1, layers);
}

class StreamSink final : public sim::ChunkSink {
 public:
  StreamSink(plan::MetricsFolder& metrics, plan::TraceStreamWriter* trace,
             LayerExtrapolator* approx)
      : metrics_(metrics), trace_(trace), approx_(approx) {}
  void done(const plan::ProgramChunk& c, std::span<const plan::OpTiming> t) override {
    metrics_.add(c.ops, t, c.first_op, c.collectives, c.first_collective, c.exchanges);
    if (trace_ != nullptr) trace_->add(c, t);
    if (approx_ != nullptr) approx_->add(c.ops, t);
  }

 private:
  plan::MetricsFolder& metrics_;
  plan::TraceStreamWriter* trace_;
  LayerExtrapolator* approx_;
};

}  // namespace

sim::SimOptions with_scenario_settings(const plan::Scenario& s, const sim::SimOptions& options) {
  sim::SimOptions o = options;
  o.params.insert(o.params.begin(),
                  network_tier_param(s.simulator.network.empty() ? "auto" : s.simulator.network));
  return o;
}

SimRun run_scenario(const std::string& name_or_path, const std::vector<std::string>& overrides,
                    const sim::SimOptions& given_options, const RunOptions& run_options) {
  if (run_options.window_steps < 0 || run_options.window_layers < 0) {
    throw std::invalid_argument("run_scenario: window sizes must be >= 0");
  }
  SimRun run;
  run.scenario = plan::load_scenario(name_or_path, overrides);
  if (!run.scenario.faults.empty()) {
    // Never simulate a scenario's faults away silently: only `masep sim` runs them.
    throw std::runtime_error("scenario '" + run.scenario.name +
                             "' injects faults (faults:), which only masep sim runs "
                             "(docs/fault-tolerance.md); remove them (--set faults=[]) to run "
                             "it here");
  }
  const sim::SimOptions options = with_scenario_settings(run.scenario, given_options);
  // The approximate tier simulates fewer layers (`sim`); everything the user sees (the
  // scenario described, memory, metrics) is the full model's.
  LayerSampling ls;
  if (run_options.approx_moe_layers > 0) {
    ls = choose_layer_sampling(run.scenario, run_options.approx_moe_layers);
    run.fidelity_note = ls.note;
  }
  plan::Scenario sampled;
  if (ls.approximated()) {
    plan::check_memory(run.scenario, plan::plan_memory(run.scenario));  // the full model fits
    sampled = run.scenario;
    sampled.model.layers = ls.simulated_layers;
  }
  const plan::Scenario& sim_s = ls.approximated() ? sampled : run.scenario;
  plan::TraceOptions to;
  to.gpus_per_node = run.scenario.topology.gpus_per_node;
  using Clock = std::chrono::steady_clock;
  if (run_options.stream && options.calibration.empty()) {
    // Held at once: the window being finished, the one running, the one loaded ahead and the
    // one compiling on the prefetch thread.
    const int64_t window = window_layers(sim_s, run_options);
    run.window_layers = window;
    const int64_t layers = std::max(1, sim_s.model.layers);
    check_fits_in_memory(sim_s, 0, 4.0 * static_cast<double>(window) / static_cast<double>(layers));
    const auto t0 = Clock::now();
    plan::ProgramStream ps(sim_s);
    const topology::Topology topo(sim_s.topology);
    run.program = ps.header();
    plan::MetricsFolder metrics(run.scenario, run.program, /*incremental=*/true);
    LayerExtrapolator approx(ls, run.program);
    std::optional<plan::TraceStreamWriter> trace;
    if (!run_options.trace_path.empty()) trace.emplace(run.program, to);
    // A second thread pays only for large windows: handing a small one over costs more (on a
    // busy machine the worker waits for a core) than compiling it here.
    const double window_ops = 12.0 * sim_s.plan.total_gpus() *
                              std::max(1, sim_s.plan.micro_batches) * static_cast<double>(window);
    StreamSource source(ps, window,
                        run_options.prefetch && window_ops >= run_options.prefetch_min_ops);
    StreamSink sink(metrics, trace ? &*trace : nullptr, ls.approximated() ? &approx : nullptr);
    try {
      run.result = sim::simulate_stream(run.program, source, sink, topo, options);
      const auto t1 = Clock::now();
      run.compile_s = 0;  // interleaved with simulating: counted there
      run.simulate_s = std::chrono::duration<double>(t1 - t0).count();
      run.metrics = metrics.finish(run.result.timeline.makespan_ns);
      if (ls.approximated()) run.metrics = approx.finish(run.metrics, run.scenario);
      if (trace) {
        trace->finish_file(run_options.trace_path, run.result.timeline.source,
                           run.result.timeline.device, run.result.timeline.makespan_ns);
      }
      run.streamed = true;
      run.ops = run.result.ops;
      return run;
    } catch (const sim::StreamNotExact& e) {
      run.stream_note = e.what();  // below: the whole run
    }
  }
  check_fits_in_memory(sim_s);
  const auto t0 = Clock::now();
  run.program = plan::compile(sim_s);
  const topology::Topology topo(sim_s.topology);
  const auto t1 = Clock::now();
  run.result = sim::simulate(run.program, topo, options);
  const auto t2 = Clock::now();
  run.compile_s = std::chrono::duration<double>(t1 - t0).count();
  run.simulate_s = std::chrono::duration<double>(t2 - t1).count();
  run.metrics = plan::compute_metrics(run.scenario, run.program, run.result.timeline);
  if (ls.approximated()) {
    LayerExtrapolator approx(ls, run.program);
    approx.add(run.program.ops, run.result.timeline.ops);
    run.metrics = approx.finish(run.metrics, run.scenario);
  }
  run.ops = static_cast<int64_t>(run.program.ops.size());
  if (!run_options.trace_path.empty()) {
    plan::write_trace_file(run_options.trace_path, run.program, run.result.timeline, to);
  }
  return run;
}

int plan_gpus(const plan::Scenario& s) { return s.plan.total_gpus(); }

int attention_gpus(const plan::Scenario& s) {
  return s.plan.kind == plan::PlanKind::kMaSeparation ? s.plan.attention.gpus : 0;
}

int moe_gpus(const plan::Scenario& s) {
  return s.plan.kind == plan::PlanKind::kMaSeparation ? s.plan.moe.gpus : 0;
}

namespace {

const char* placement_name(plan::Placement p) {
  switch (p) {
    case plan::Placement::kRoundRobin:
      return "round-robin";
    case plan::Placement::kContiguous:
      return "contiguous";
    case plan::Placement::kExplicit:
      return "explicit map";
  }
  return "?";
}

std::string describe_plan(const plan::PlanSpec& p) {
  std::string mb =
      fmt::format("{} micro-batch{}", p.micro_batches, p.micro_batches == 1 ? "" : "es");
  if (p.kind == plan::PlanKind::kMaSeparation && p.attention.per_replica()) {
    const auto& a = p.attention;
    const auto& m = p.moe;
    std::string reps;  // "2x1 (share 3), 1x1 (share 1)": head x seq parallel of each replica
    for (const auto& r : a.replica_list) {
      reps +=
          fmt::format("{}{}x{}", reps.empty() ? "" : ", ", r.head_parallel, r.sequence_parallel);
      if (r.batch_share > 0) reps += fmt::format(" (share {})", r.batch_share);
    }
    return fmt::format(
        "MA separation {}:{} - attention {} GPUs ({} replicas of their own size, heads-parallel x "
        "seq-parallel: {}), MoE {} GPUs ({}, {} replica{} per expert), {}",
        a.gpus, m.gpus, a.gpus, a.replicas, reps, m.gpus, placement_name(m.placement),
        m.expert_replicas, m.expert_replicas == 1 ? "" : "s", mb);
  }
  if (p.kind == plan::PlanKind::kMaSeparation) {
    const auto& a = p.attention;
    const auto& m = p.moe;
    return fmt::format(
        "MA separation {}:{} - attention {} GPUs ({} replica{} x {} heads-parallel x {} "
        "seq-parallel), MoE {} GPUs ({}, {} replica{} per expert), {}",
        a.gpus, m.gpus, a.gpus, a.replicas, a.replicas == 1 ? "" : "s", a.head_parallel,
        a.sequence_parallel, m.gpus, placement_name(m.placement), m.expert_replicas,
        m.expert_replicas == 1 ? "" : "s", mb);
  }
  const auto& c = p.colocated;
  return fmt::format(
      "co-located - {} GPUs, tensor-parallel attention TP={} ({} replica{}), expert-parallel "
      "MoE ({}, {} replica{} per expert), {}",
      c.gpus, c.tensor_parallel, c.gpus / std::max(1, c.tensor_parallel),
      c.gpus / std::max(1, c.tensor_parallel) == 1 ? "" : "s", placement_name(c.placement),
      c.expert_replicas, c.expert_replicas == 1 ? "" : "s", mb);
}

std::string describe_workload(const plan::Workload& w) {
  std::string ctx = w.context_kind == plan::ContextKind::kFixed
                        ? fmt::format("context {}", w.context)
                        : fmt::format("context uniform {}..{}", w.context_min, w.context_max);
  std::string routing;
  switch (w.routing.kind) {
    case plan::RoutingKind::kUniform:
      routing = "uniform";
      break;
    case plan::RoutingKind::kZipf:
      routing = fmt::format("zipf skew {}", w.routing.zipf_skew);
      break;
    case plan::RoutingKind::kExplicit:
      routing = "explicit weights";
      break;
    case plan::RoutingKind::kTrace:
      routing = "trace " + w.routing.trace_file;
      break;
  }
  return fmt::format("batch {}, {}, {} decode steps, routing {}, seed {}", w.batch, ctx,
                     w.decode_steps, routing, w.seed);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> describe(const plan::Scenario& s) {
  const auto& m = s.model;
  const auto& t = s.topology;
  std::vector<std::pair<std::string, std::string>> lines;
  lines.emplace_back("scenario",
                     s.origin.empty() ? s.name : fmt::format("{} ({})", s.name, s.origin));
  lines.emplace_back(
      "model",
      fmt::format("{} - {} layers, hidden {}, {} heads ({} kv, dim {}), {} experts "
                  "top-{}, expert FFN {}, {}, {}{}",
                  m.name, m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim, m.experts, m.top_k,
                  m.expert_ffn, models::to_string(m.activation), models::to_string(m.dtype),
                  m.features()));
  lines.emplace_back("plan", describe_plan(s.plan));
  lines.emplace_back("workload", describe_workload(s.workload));
  lines.emplace_back(
      "cluster",
      fmt::format("{} - {} node{} x {} {} ({} TFLOP/s bf16, {} GB/s HBM, {} GB), {} {} GB/s{}",
                  t.name, t.nodes, t.nodes == 1 ? "" : "s", t.gpus_per_node, t.gpu.name,
                  t.gpu.bf16_tflops, t.gpu.hbm_GBps, t.gpu.hbm_gb, topology::to_string(t.intra),
                  t.intra_GBps,
                  t.nics.empty() ? std::string()
                                 : fmt::format(", {} NIC{}/node at {} GB/s", t.nics.size(),
                                               t.nics.size() == 1 ? "" : "s", t.nics[0].GBps)));
  return lines;
}

void print_metrics_summary(const plan::RunMetrics& m, bool colocated) {
  int n_attn = 0, n_moe = 0;
  for (const auto& r : m.ranks) (r.role == plan::Role::kMoe ? n_moe : n_attn)++;
  const char* attn_side = colocated ? "co-located" : "attention";
  std::printf("TPOT              mean %.3f ms   p50 %.3f ms   p99 %.3f ms\n", m.tpot_mean_ms,
              m.tpot_p50_ms, m.tpot_p99_ms);
  std::printf("throughput        %s tokens/s   (batch %d x %d steps in %.3f ms)\n",
              group_thousands(m.tokens_per_s).c_str(), m.batch, m.steps, m.makespan_ns / 1e6);
  std::printf("GPU utilisation   %.1f %% mean   (compute busy / wall)\n", 100 * m.mean_utilisation);
  std::printf("idle              %s side %.3f ms (%d GPUs, summed)", attn_side,
              m.attention_idle_ns / 1e6, n_attn);
  if (n_moe > 0) std::printf("   MoE side %.3f ms (%d GPUs, summed)", m.moe_idle_ns / 1e6, n_moe);
  std::printf("\nexposed comm      %.3f ms (summed over GPUs)\n", m.exposed_comm_ns / 1e6);
}

std::string group_thousands(double v) {
  const auto n = static_cast<long long>(std::llround(v));
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

namespace {
std::string scaled(double v, const char* const* units, int count) {
  int u = 0;
  while (u + 1 < count && std::fabs(v) >= 1000) {
    v /= 1000;
    ++u;
  }
  if (u == 0) return fmt::format("{:.0f} {}", v, units[0]);
  return fmt::format("{:.{}f} {}", v,
                     std::fabs(v) >= 100  ? 0
                     : std::fabs(v) >= 10 ? 1
                                          : 2,
                     units[u]);
}
}  // namespace

std::string human_bytes(double bytes) {
  static const char* const kUnits[] = {"B", "kB", "MB", "GB", "TB"};
  return scaled(bytes, kUnits, 5);
}

std::string human_flops(double flops) {
  static const char* const kUnits[] = {"FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"};
  return scaled(flops, kUnits, 6);
}

}  // namespace masep::tools
