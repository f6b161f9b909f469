// Test fixtures shared by the suites (tests/common is on every test's include path): models,
// topologies and scenarios built in code, so the tests that use them do not depend on the YAML
// loader — the paper's model, 16×A100 cluster, 12:4 MA separation and co-located baseline (the
// same values as scenarios/paper.yaml and scenarios/paper-colocated.yaml).
#pragma once

#include <string>

#include "masep/plan/scenario.hpp"

namespace masep::plan::testing {

/// The paper's MA-separation scenario as YAML text, for tests of the loader and of what it
/// feeds (tests/plan/test_loader.cpp, test_remap.cpp): line numbers in the comments are the
/// ones their error messages name (1-based).
inline const std::string kPaperScenarioText =
    "name: t\n"                                                 // 1
    "model: paper-moe\n"                                        // 2
    "topology: paper-16xa100\n"                                 // 3
    "plan:\n"                                                   // 4
    "  kind: ma_separation\n"                                   // 5
    "  attention: {gpus: 12, head_parallel: 4, replicas: 3}\n"  // 6
    "  moe: {gpus: 4, placement: round_robin}\n"                // 7
    "  micro_batches: 2\n"                                      // 8
    "workload:\n"                                               // 9
    "  batch: 24\n"                                             // 10
    "  context: 2048\n"                                         // 11
    "  decode_steps: 4\n"                                       // 12
    "  routing: {kind: uniform}\n"                              // 13
    "  seed: 1\n";                                              // 14

inline models::Model paper_model() {
  models::Model m;
  m.name = "paper-moe";
  m.layers = 4;
  m.hidden = 4096;
  m.heads = 32;
  m.kv_heads = 32;
  m.head_dim = 128;
  m.experts = 16;
  m.top_k = 2;
  m.expert_ffn = 14336;
  m.shared_experts = 0;
  m.activation = models::Activation::kSwiGLU;
  m.dtype = models::DType::kBF16;
  return m;
}

inline topology::TopologySpec paper_topology() {
  topology::TopologySpec t;
  t.name = "paper-16xa100";
  t.gpu = topology::GpuSpec{"A100-SXM4-80GB", 312, 312, 0, 80, 2039, 108, 300};
  t.nodes = 4;
  t.gpus_per_node = 4;
  t.intra = topology::Fabric::kNVLinkMesh;
  t.intra_GBps = 100;
  t.intra_latency_ns = 1000;
  for (int i = 0; i < 4; ++i) t.nics.push_back(topology::NicSpec{25, 2000, {i}});
  t.switch_latency_ns = 500;
  return t;
}

inline Scenario paper_scenario() {
  Scenario s;
  s.name = "paper";
  s.origin = "test:paper";
  s.model = paper_model();
  s.topology = paper_topology();
  s.plan.kind = PlanKind::kMaSeparation;
  s.plan.attention = AttentionPlan{12, 4, 1, 3};
  s.plan.moe.gpus = 4;
  s.plan.moe.placement = Placement::kRoundRobin;
  s.plan.moe.expert_replicas = 1;
  s.plan.micro_batches = 2;
  s.workload.batch = 24;
  s.workload.context = 2048;
  s.workload.decode_steps = 32;
  s.workload.routing.kind = RoutingKind::kUniform;
  s.workload.seed = 42;
  return s;
}

inline Scenario paper_colocated() {
  Scenario s = paper_scenario();
  s.name = "paper-colocated";
  s.plan = PlanSpec{};
  s.plan.kind = PlanKind::kColocated;
  s.plan.colocated.gpus = 16;
  s.plan.colocated.tensor_parallel = 4;
  s.plan.micro_batches = 1;
  return s;
}

}  // namespace masep::plan::testing
