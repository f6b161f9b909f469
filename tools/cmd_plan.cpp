// masep plan SCENARIO: compile a scenario and print what each GPU is, holds and does in one
// decode step (roles, experts, memory against HBM, FLOPs, HBM bytes, communication, ops),
// plus the sampled routing. --dump writes the Program as JSON; --dot draws one layer.
#include <fmt/format.h>
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/limits.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/output_file.hpp"
#include "masep/plan/program_json.hpp"
#include "masep/plan/remap.hpp"
#include "sim_run.hpp"

namespace masep::tools {

namespace {

namespace po = boost::program_options;
using namespace masep::plan;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Per-rank totals of one decode step.
struct StepLoad {
  double flops = 0;
  int64_t hbm_bytes = 0;
  int64_t weight_bytes = 0;
  int64_t comm_bytes = 0;  // sent by point-to-point + this rank's collective buffers
  int ops = 0;
};

std::string model_line(const models::Model& m) {
  return fmt::format(
      "{}: {} layers, hidden {}, {} heads ({} kv) x {}, {} experts top-{}{}, expert ffn {}, {}, "
      "{}{}; {:.2f} GB of weights",
      m.name, m.layers, m.hidden, m.heads, m.kv_heads, m.head_dim, m.experts, m.top_k,
      m.shared_experts > 0 ? fmt::format(" + {} shared", m.shared_experts) : std::string(),
      m.expert_ffn, models::to_string(m.activation), models::to_string(m.dtype), m.features(),
      static_cast<double>(m.total_weight_bytes()) / 1e9);
}

std::string topology_line(const topology::TopologySpec& t) {
  std::string nics;
  if (!t.nics.empty()) {
    nics = fmt::format(", {} NIC{} per node x {:g} GB/s", t.nics.size(),
                       t.nics.size() == 1 ? "" : "s", t.nics.front().GBps);
  }
  return fmt::format(
      "{}: {} node{} x {} {} ({:g} GB HBM, {:g} GB/s, {:g} bf16 TFLOP/s), {} {:g} "
      "GB/s{}",
      t.name, t.nodes, t.nodes == 1 ? "" : "s", t.gpus_per_node, t.gpu.name, t.gpu.hbm_gb,
      t.gpu.hbm_GBps, t.gpu.bf16_tflops, topology::to_string(t.intra), t.intra_GBps, nics);
}

std::string plan_line(const PlanSpec& p) {
  if (p.kind == PlanKind::kMaSeparation && p.attention.per_replica()) {
    const auto& a = p.attention;
    std::string reps;  // "[hp 2 x sp 1, share 3], ..." one per replica
    for (const auto& r : a.replica_list) {
      reps += fmt::format("{}head_parallel {} x sequence_parallel {}", reps.empty() ? "" : "; ",
                          r.head_parallel, r.sequence_parallel);
      if (r.batch_share > 0) reps += fmt::format(", batch_share {}", r.batch_share);
    }
    return fmt::format(
        "ma_separation: attention {} GPUs in {} replicas ({}), MoE {} GPUs ({}, {} cop{} per "
        "expert), {} micro-batch{}",
        a.gpus, a.replicas, reps, p.moe.gpus, to_string(p.moe.placement), p.moe.expert_replicas,
        p.moe.expert_replicas == 1 ? "y" : "ies", p.micro_batches,
        p.micro_batches == 1 ? "" : "es");
  }
  if (p.kind == PlanKind::kMaSeparation) {
    const auto& a = p.attention;
    return fmt::format(
        "ma_separation: attention {} GPUs ({} replicas x head_parallel {} x sequence_parallel "
        "{}), MoE {} GPUs ({}, {} cop{} per expert), {} micro-batch{}",
        a.gpus, a.replicas, a.head_parallel, a.sequence_parallel, p.moe.gpus,
        to_string(p.moe.placement), p.moe.expert_replicas, p.moe.expert_replicas == 1 ? "y" : "ies",
        p.micro_batches, p.micro_batches == 1 ? "" : "es");
  }
  const auto& c = p.colocated;
  return fmt::format(
      "colocated: {} GPUs, tensor_parallel {} ({} replicas), experts {} ({} cop{} per expert), {} "
      "micro-batch{}",
      c.gpus, c.tensor_parallel, c.tensor_parallel > 0 ? c.gpus / c.tensor_parallel : 0,
      to_string(c.placement), c.expert_replicas, c.expert_replicas == 1 ? "y" : "ies",
      p.micro_batches, p.micro_batches == 1 ? "" : "es");
}

std::string workload_line(const Workload& w) {
  std::string ctx = w.context_kind == ContextKind::kFixed
                        ? fmt::format("context {}", w.context)
                        : fmt::format("context uniform {}..{}", w.context_min, w.context_max);
  std::string routing = w.routing.kind == RoutingKind::kUniform ? "uniform"
                        : w.routing.kind == RoutingKind::kZipf
                            ? fmt::format("zipf (skew {:g})", w.routing.zipf_skew)
                        : w.routing.kind == RoutingKind::kTrace ? "trace " + w.routing.trace_file
                                                                : "explicit weights";
  return fmt::format("batch {}, {}, {} decode steps, routing {}, seed {}", w.batch, ctx,
                     w.decode_steps, routing, w.seed);
}

std::vector<StepLoad> step_loads(const Program& p, int step) {
  std::vector<StepLoad> out(p.ranks.size());
  const std::vector<int64_t> sent = exchange_sent_bytes(p);
  for (const Op& o : p.ops) {
    if (o.step != step) continue;
    StepLoad& l = out[o.rank];
    l.flops += o.flops;
    l.hbm_bytes += o.hbm_bytes;
    l.weight_bytes += o.weight_bytes;
    if (o.kind == OpKind::kSend || is_collective(o.kind)) l.comm_bytes += o.comm_bytes;
    if (o.kind == OpKind::kExchange) l.comm_bytes += sent[o.id];  // what it sends
    ++l.ops;
  }
  return out;
}

void print_ranks(const Scenario& s, const Program& p, const std::vector<MemoryBreakdown>& mem,
                 const std::vector<StepLoad>& load) {
  const double hbm = s.topology.gpu.hbm_bytes() / kGiB;
  const std::vector<std::string> head = {
      "rank",  "gpu",    "role / experts", "weights", "KV",      "act", "buffers",
      "total", "of HBM", "GFLOP",          "HBM GB",  "comm MB", "ops"};
  std::vector<std::vector<std::string>> rows;
  // Large plans: the first 8 ranks of each role, then the per-role summary below.
  const bool fold = p.rank_count() > 64;
  std::map<Role, int> shown;
  std::map<Role, int> hidden_count;
  for (int r = 0; r < p.rank_count(); ++r) {
    const RankInfo& ri = p.ranks[r];
    if (fold && shown[ri.role]++ >= 8) {
      hidden_count[ri.role]++;
      continue;
    }
    const MemoryBreakdown& m = mem[r];
    const int gpn = s.topology.gpus_per_node;
    rows.push_back(
        {std::to_string(r), fmt::format("{}.{}", ri.gpu / gpn, ri.gpu % gpn), ri.label,
         fmt::format("{:.2f}", m.weights / kGiB), fmt::format("{:.2f}", m.kv_cache / kGiB),
         fmt::format("{:.2f}", m.activations / kGiB), fmt::format("{:.2f}", m.comm_buffers / kGiB),
         fmt::format("{:.2f}", m.total() / kGiB),
         fmt::format("{:.0f}%", 100.0 * m.total() / kGiB / hbm),
         fmt::format("{:.1f}", load[r].flops / 1e9), fmt::format("{:.3f}", load[r].hbm_bytes / 1e9),
         fmt::format("{:.3f}", load[r].comm_bytes / 1e6), std::to_string(load[r].ops)});
  }
  std::vector<size_t> width(head.size());
  for (size_t c = 0; c < head.size(); ++c) {
    width[c] = head[c].size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out = " ";
    for (size_t c = 0; c < cells.size(); ++c) {
      out += c == 2 ? fmt::format(" {:<{}}", cells[c], width[c])
                    : fmt::format(" {:>{}}", cells[c], width[c]);
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    fmt::print("{}\n", out);
  };
  fmt::print(
      "\nranks (memory in GiB against {:.1f} GiB of HBM; GFLOP, HBM GB, comm MB and ops of "
      "decode step {}):\n",
      hbm, p.first_step);
  line(head);
  for (const auto& row : rows) line(row);
  for (const auto& [role, n] : hidden_count) {
    fmt::print("  ... {} more {} ranks (see the per-role summary)\n", n, to_string(role));
  }
}

void print_role_summary(const Program& p, const std::vector<MemoryBreakdown>& mem,
                        const std::vector<StepLoad>& load) {
  struct Acc {
    int n = 0;
    double mem_max = 0, f_min = 1e300, f_max = 0, f_sum = 0, b_min = 1e300, b_max = 0, b_sum = 0;
  };
  std::map<Role, Acc> acc;
  for (int r = 0; r < p.rank_count(); ++r) {
    Acc& a = acc[p.ranks[r].role];
    ++a.n;
    a.mem_max = std::max(a.mem_max, mem[r].total() / kGiB);
    const double f = load[r].flops / 1e9, b = load[r].hbm_bytes / 1e9;
    a.f_min = std::min(a.f_min, f);
    a.f_max = std::max(a.f_max, f);
    a.f_sum += f;
    a.b_min = std::min(a.b_min, b);
    a.b_max = std::max(a.b_max, b);
    a.b_sum += b;
  }
  fmt::print("\nper role, one decode step (min / mean / max over the role's ranks):\n");
  fmt::print("  {:<10} {:>5} {:>13} {:>26} {:>26}\n", "role", "ranks", "max mem GiB", "GFLOP",
             "HBM GB");
  for (const auto& [role, a] : acc) {
    fmt::print("  {:<10} {:>5} {:>13.2f} {:>26} {:>26}\n", to_string(role), a.n, a.mem_max,
               fmt::format("{:.1f} / {:.1f} / {:.1f}", a.f_min, a.f_sum / a.n, a.f_max),
               fmt::format("{:.3f} / {:.3f} / {:.3f}", a.b_min, a.b_sum / a.n, a.b_max));
  }
}

// Issue 18: the plan's redundancy and what each injected fault, taken alone, does to it
// (plan::remap; `masep sim` runs them in order).
void print_fault_tolerance(const Scenario& s) {
  if (!has_fault_features(s.fault_tolerance, s.faults)) return;
  const auto& ft = s.fault_tolerance;
  const PlanGpus pg = plan::plan_gpus(s);
  fmt::print(
      "\nfault tolerance: kv_copies {}, standby GPUs [{}], on_kv_loss {}, on_expert_loss {}, "
      "restore_experts {}\n",
      ft.kv_copies, fmt::join(pg.standby, ","), to_string(ft.on_kv_loss),
      to_string(ft.on_expert_loss), to_string(ft.restore_experts));
  for (const FaultSpec& f : s.faults) {
    const std::string when =
        f.step >= 0 ? fmt::format("step {}", f.step) : fmt::format("{} ms", f.at_ms);
    std::vector<int> gone;
    std::string what;
    switch (f.kind) {
      case FaultKind::kGpu:
        gone = {f.gpu};
        what = fmt::format("GPU {} fails", f.gpu);
        break;
      case FaultKind::kStraggler:
        what = fmt::format("GPU {} at {:.0f}% speed", f.gpu, 100 * f.speed);
        break;
      case FaultKind::kNic:
      case FaultKind::kLink:
        gone = gpus_cut_off(s.topology, {{f.node, f.nic}});
        what = fmt::format(
            "{} {} of node {} fails ({})", to_string(f.kind), f.nic, f.node,
            gone.empty() ? "its GPUs send through a sibling NIC" : "its node has no other NIC");
        break;
    }
    fmt::print("  {} ({}): {}{}\n", f.key, when, what,
               f.steps > 0 ? fmt::format(", for {} steps", f.steps) : "");
    if (gone.empty()) continue;
    for (const std::string& line : remap(s, gone, std::max(0, f.step)).describe()) {
      fmt::print("    {}\n", line);
    }
  }
}

void print_routing(const Program& p, int experts) {
  if (p.routing.empty()) return;
  std::vector<int64_t> total(static_cast<size_t>(experts), 0);
  int32_t lo = INT32_MAX, hi = 0;
  int64_t sum = 0, n = 0;
  double imbalance = 0;
  for (const RoutingSample& rs : p.routing) {
    int32_t smax = 0;
    int64_t ssum = 0;
    for (int e = 0; e < experts; ++e) {
      const int32_t c = rs.tokens_per_expert[e];
      total[e] += c;
      lo = std::min(lo, c);
      hi = std::max(hi, c);
      smax = std::max(smax, c);
      ssum += c;
      sum += c;
      ++n;
    }
    if (ssum > 0) imbalance += static_cast<double>(smax) * experts / static_cast<double>(ssum);
  }
  fmt::print(
      "\nrouting ({} samples, one per step x layer x micro-batch): tokens per expert per sample "
      "min {} / mean {:.2f} / max {}; mean max/mean imbalance {:.2f}\n",
      p.routing.size(), lo, static_cast<double>(sum) / n, hi,
      imbalance / static_cast<double>(p.routing.size()));
  if (experts <= 64) {
    std::string line;
    for (int e = 0; e < experts; ++e) line += fmt::format(" {}", total[e]);
    fmt::print("  tokens per expert over the compiled steps:{}\n", line);
  }
}

std::string dot_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string op_label(const Op& o) {
  std::string detail;
  switch (o.kind) {
    case OpKind::kGemm:
      detail = fmt::format("{}x{}x{}", o.m, o.n, o.k);
      break;
    case OpKind::kGroupedGemm: {
      int64_t rows = 0;
      for (int32_t m : o.group_m) rows += m;
      detail = fmt::format("{} experts, {} rows", o.group_m.size(), rows);
      break;
    }
    case OpKind::kAttention:
      detail = fmt::format("b{} h{} kv{}", o.batch, o.heads, o.kv_tokens);
      break;
    case OpKind::kSend:
      detail = fmt::format("-> {} {} B", o.peer, o.comm_bytes);
      break;
    case OpKind::kRecv:
      detail = fmt::format("<- {} {} B", o.peer, o.comm_bytes);
      break;
    case OpKind::kExchange:
      detail = fmt::format("group call x{}, {} B in+out", o.exchange, o.comm_bytes);
      break;
    default:
      detail = is_collective(o.kind) ? fmt::format("{} B", o.comm_bytes)
                                     : fmt::format("{} B", o.hbm_bytes);
  }
  return fmt::format("#{} {}\\n{}", o.id, o.name, detail);
}

// Graphviz DOT of one (step, layer, micro-batch): ranks as clusters, dependency edges solid,
// implied same-stream order dotted, send -> recv bold, collective members joined dashed.
std::string layer_dot(const Program& p, int step, int layer, int mb) {
  std::vector<char> in(p.ops.size(), 0);
  for (const Op& o : p.ops) in[o.id] = o.step == step && o.layer == layer && o.micro_batch == mb;
  std::string out = fmt::format(
      "digraph program {{\n  label=\"{} step {} layer {} micro-batch {}\";\n  rankdir=TB;\n"
      "  node [shape=box, fontsize=10];\n",
      dot_escape(p.scenario), step, layer, mb);
  for (int r = 0; r < p.rank_count(); ++r) {
    out += fmt::format("  subgraph cluster_r{} {{\n    label=\"rank {}: {}\";\n", r, r,
                       dot_escape(p.ranks[r].label));
    for (int s = 0; s < kStreamCount; ++s) {
      for (OpId id : p.stream_ops[r][s]) {
        if (!in[id]) continue;
        const Op& o = p.ops[id];
        out += fmt::format("    op{} [label=\"{}\"{}];\n", id, op_label(o),
                           is_communication(o.kind) ? ", style=rounded" : "");
      }
    }
    out += "  }\n";
  }
  for (const Op& o : p.ops) {
    if (!in[o.id]) continue;
    for (OpId d : o.deps) {
      if (in[d]) out += fmt::format("  op{} -> op{};\n", d, o.id);
    }
    if (o.kind == OpKind::kSend && in[o.match]) {
      out += fmt::format("  op{} -> op{} [style=bold, color=red];\n", o.id, o.match);
    }
  }
  for (const Exchange& x : p.exchanges) {
    for (const Transfer& t : x.transfers) {
      if (in[t.src_op] && in[t.dst_op]) {
        out += fmt::format("  op{} -> op{} [style=bold, color=red];\n", t.src_op, t.dst_op);
      }
    }
  }
  for (int r = 0; r < p.rank_count(); ++r) {
    for (int s = 0; s < kStreamCount; ++s) {
      OpId prev = -1;
      for (OpId id : p.stream_ops[r][s]) {
        if (!in[id]) continue;
        if (prev >= 0) out += fmt::format("  op{} -> op{} [style=dotted];\n", prev, id);
        prev = id;
      }
    }
  }
  for (const Collective& c : p.collectives) {
    if (c.ops.empty() || !in[c.ops.front()]) continue;
    for (size_t i = 1; i < c.ops.size(); ++i) {
      out += fmt::format("  op{} -> op{} [style=dashed, dir=none, constraint=false];\n",
                         c.ops[i - 1], c.ops[i]);
    }
  }
  out += "}\n";
  return out;
}

}  // namespace

int cmd_plan(const Args& args) {
  std::string scenario = "paper";
  std::vector<std::string> sets;
  std::string dump, dot;
  int steps = -1;
  po::options_description opts(
      "usage: masep plan [SCENARIO] [options]\n\n"
      "Compiles a scenario (a built-in name such as `paper`, or a YAML file) into its Program\n"
      "and prints the GPUs by role with their memory, and per GPU the FLOPs, HBM bytes,\n"
      "communication and ops of one decode step, then the sampled routing.\n\noptions");
  opts.add_options()("help,h", "show this help")(
      "set", po::value<std::vector<std::string>>(&sets)->composing()->value_name("KEY=VALUE"),
      "override a scenario field, e.g. --set plan.attention.gpus=8 (repeatable)")(
      "dump", po::value<std::string>(&dump)->value_name("FILE"),
      "write the whole Program (ranks, groups, collectives, routing, every op) as JSON to FILE")(
      "dot", po::value<std::string>(&dot)->value_name("FILE"),
      "write a Graphviz DOT drawing of layer 0, micro-batch 0 of the first compiled step")(
      "steps", po::value<int>(&steps)->value_name("N"),
      "decode steps to compile (default: the workload's decode_steps; the tables show the "
      "first)");
  po::options_description hidden;
  hidden.add_options()("scenario", po::value<std::string>(&scenario));
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (auto rc = parse_command_line("plan", args, opts, vm, &hidden, &pos)) return *rc;

  if (vm.count("steps") && (steps <= 0 || steps > kMaxDecodeSteps)) {
    throw InputError(
        "", 0, 0, "--steps",
        fmt::format("{} is not in 1..{}", steps, static_cast<long long>(kMaxDecodeSteps)));
  }
  const Scenario s = load_scenario(scenario, sets);
  {
    Scenario sized = s;  // the host memory the compiled Program needs, checked before compiling
    if (steps > 0) sized.workload.decode_steps = steps;
    check_fits_in_memory(sized);
  }
  const std::vector<MemoryBreakdown> mem = plan_memory(s);
  CompileOptions co;
  co.steps = steps;
  const Program p = compile(s, co);  // also checks memory: an infeasible plan throws here
  check_program(p);

  fmt::print("scenario  {} ({}){}\n", s.name, s.origin,
             s.description.empty() ? "" : ": " + s.description);
  fmt::print("model     {}\n", model_line(s.model));
  fmt::print("topology  {}\n", topology_line(s.topology));
  fmt::print("plan      {}\n", plan_line(s.plan));
  fmt::print("workload  {}\n", workload_line(s.workload));

  const auto load = step_loads(p, p.first_step);
  print_ranks(s, p, mem, load);
  print_role_summary(p, mem, load);

  StepLoad tot;
  for (const StepLoad& l : load) {
    tot.flops += l.flops;
    tot.hbm_bytes += l.hbm_bytes;
    tot.weight_bytes += l.weight_bytes;
    tot.comm_bytes += l.comm_bytes;
    tot.ops += l.ops;
  }
  fmt::print(
      "\none decode step, all GPUs: {:.2f} GFLOP, {:.3f} GB HBM traffic ({:.3f} GB weights), "
      "{:.3f} MB sent, {} ops\n",
      tot.flops / 1e9, tot.hbm_bytes / 1e9, tot.weight_bytes / 1e9, tot.comm_bytes / 1e6, tot.ops);
  fmt::print(
      "program   {} ops over {} step{} (from step {}), {} collectives, {} groups; checks "
      "passed\n",
      p.ops.size(), p.steps, p.steps == 1 ? "" : "s", p.first_step, p.collectives.size(),
      p.groups.size());
  print_routing(p, s.model.experts);
  print_fault_tolerance(s);

  if (!dump.empty()) {
    write_program_json_file(p, dump);
    fmt::print("\nwrote {} (Program JSON)\n", dump);
  }
  if (!dot.empty()) {
    plan::write_output_file(dot, "DOT graph", layer_dot(p, p.first_step, 0, 0));
    fmt::print("wrote {} (Graphviz DOT: step {}, layer 0, micro-batch 0)\n", dot, p.first_step);
  }
  return 0;
}

}  // namespace masep::tools
