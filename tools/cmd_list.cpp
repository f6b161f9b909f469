// masep list [models|gpus|topologies|scenarios|sweeps]: the built-in descriptions, one line
// each, read through the same loader as any file (so a broken built-in shows here first).
#include <fmt/format.h>

#include <cstdio>
#include <string>

#include "commands.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "sweep.hpp"
#include "table.hpp"

namespace masep::tools {

namespace {

std::string num(double v) { return fmt::format("{:g}", v); }

void list_models() {
  std::printf("Models (scenario key `model:`; schema in docs/schema.md)\n");
  Table t;
  t.column("name", Table::kLeft);
  for (const char* h : {"layers", "hidden", "heads", "kv_heads", "head_dim", "experts", "top_k",
                        "expert_ffn", "shared"}) {
    t.column(h);
  }
  t.column("act", Table::kLeft);
  t.column("attn", Table::kLeft);
  t.column("dense", Table::kLeft);
  t.column("dtype", Table::kLeft);
  t.column("weights GB");
  for (const auto& n : plan::builtin_model_names()) {
    const auto m = plan::load_model(n);
    t.row({n, std::to_string(m.layers), std::to_string(m.hidden), std::to_string(m.heads),
           std::to_string(m.kv_heads), std::to_string(m.head_dim), std::to_string(m.experts),
           std::to_string(m.top_k), std::to_string(m.expert_ffn), std::to_string(m.shared_experts),
           models::to_string(m.activation), models::to_string(m.attention),
           std::to_string(m.dense_layers), m.precision_label(),
           fmt::format("{:.1f}", static_cast<double>(m.total_weight_bytes()) / 1e9)});
  }
  t.print(stdout);
}

void list_gpus() {
  std::printf("GPUs (topology key `gpu:`; dense TFLOP/s, GB = 1e9 bytes, per-direction NVLink)\n");
  Table t;
  t.column("name", Table::kLeft);
  for (const char* h :
       {"bf16 TF", "fp16 TF", "fp8 TF", "int8 TOP", "fp4 TF", "HBM GB", "HBM GB/s", "SMs",
        "NVLink GB/s"}) {
    t.column(h);
  }
  for (const auto& n : plan::builtin_gpu_names()) {
    const auto g = plan::builtin_gpu(n);
    t.row({n, num(g.bf16_tflops), num(g.fp16_tflops), num(g.fp8_tflops), num(g.int8_tops),
           num(g.fp4_tflops), num(g.hbm_gb),
           num(g.hbm_GBps), std::to_string(g.sm_count), num(g.nvlink_GBps)});
  }
  t.print(stdout);
}

void list_topologies() {
  std::printf("Topologies (scenario key `topology:`)\n");
  Table t;
  t.column("name", Table::kLeft);
  t.column("GPUs");
  t.column("layout", Table::kLeft);
  t.column("intra-node", Table::kLeft);
  t.column("NICs per node", Table::kLeft);
  for (const auto& n : plan::builtin_topology_names()) {
    const auto s = plan::load_topology(n);
    std::string nics = "none";
    if (!s.nics.empty()) {
      nics = fmt::format("{} × {} GB/s", s.nics.size(), num(s.nics.front().GBps));
    }
    t.row({n, std::to_string(s.total_gpus()),
           fmt::format("{} × {} {}", s.nodes, s.gpus_per_node, s.gpu.name),
           fmt::format("{} {} GB/s", topology::to_string(s.intra), num(s.intra_GBps)), nics});
  }
  t.print(stdout);
}

void list_scenarios() {
  std::printf("Scenarios (masep sim NAME, masep plan NAME)\n");
  Table t;
  t.column("name", Table::kLeft);
  t.column("model", Table::kLeft);
  t.column("topology", Table::kLeft);
  t.column("plan", Table::kLeft);
  t.column("description", Table::kLeft);
  for (const auto& n : plan::builtin_scenario_names()) {
    const auto s = plan::load_scenario(n);
    std::string plan;
    if (s.plan.kind == plan::PlanKind::kMaSeparation) {
      plan = fmt::format("ma_separation {}:{}", s.plan.attention.gpus, s.plan.moe.gpus);
    } else {
      plan = fmt::format("colocated {} (tp {})", s.plan.colocated.gpus,
                         s.plan.colocated.tensor_parallel);
    }
    t.row({n, s.model.name, s.topology.name, plan, s.description});
  }
  t.print(stdout);
}

void list_sweeps() {
  std::printf("Sweeps (masep sweep NAME; format in docs/sweep.md)\n");
  Table t;
  t.column("name", Table::kLeft);
  t.column("points");
  t.column("description", Table::kLeft);
  for (const auto& n : builtin_sweep_names()) {
    const auto s = load_sweep(n);
    t.row({n, std::to_string(s.points.size()), s.description});
  }
  t.print(stdout);
}

void usage(FILE* out) {
  std::fprintf(out,
               "usage: masep list [models|gpus|topologies|scenarios|sweeps]\n\n"
               "Lists the built-in descriptions (all of them with no argument). Any of these\n"
               "names can be used where a file path is accepted; the files themselves are in\n"
               "models/zoo, topology/zoo, topology/zoo/gpus, scenarios and scenarios/sweeps.\n");
}

}  // namespace

int cmd_list(const Args& args) {
  if (args.size() > 1) {
    usage(stderr);
    return 2;
  }
  const std::string what = args.empty() ? "all" : args[0];
  if (what == "--help" || what == "-h") {
    usage(stdout);
    return 0;
  }
  const bool all = what == "all";
  bool any = false;
  auto section = [&](const char* name, void (*fn)()) {
    if (!all && what != name) return;
    if (any) std::printf("\n");
    fn();
    any = true;
  };
  section("models", list_models);
  section("gpus", list_gpus);
  section("topologies", list_topologies);
  section("scenarios", list_scenarios);
  section("sweeps", list_sweeps);
  if (!any) {
    std::fprintf(stderr, "masep list: unknown category '%s'\n\n", what.c_str());
    usage(stderr);
    return 2;
  }
  return 0;
}

}  // namespace masep::tools
