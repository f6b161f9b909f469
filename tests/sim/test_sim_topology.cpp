// simulate() on real Topology objects (topology/) and on Programs from the plan compiler.
#include <gtest/gtest.h>

#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/sim/parameters.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/sim/synthetic.hpp"
#include "masep/topology/topology.hpp"
#include "sim_test_util.hpp"

namespace masep::sim {
namespace {

using plan::OpId;
using plan::OpKind;

topology::TopologySpec nvswitch_host(int gpus) {
  topology::TopologySpec s;
  s.name = "test-nvswitch";
  s.gpu = testing::test_gpu();
  s.nodes = 1;
  s.gpus_per_node = gpus;
  s.intra = topology::Fabric::kNVSwitch;
  s.intra_GBps = 100;
  s.intra_latency_ns = 500;
  return s;
}

TEST(SimTopology, SendRecvOverNVSwitch) {
  const topology::Topology topo(nvswitch_host(4));
  ProgramBuilder b(2, {0, 3});
  const OpId s = b.send(0, 1, 1'000'000);
  const OpId v = b.recv(1, 0, 1'000'000);
  b.connect(s, v);
  const plan::Program p = b.build();
  SimOptions phases;
  phases.collective_model = "phases";
  const SimResult r = simulate(p, topo, phases);
  // alpha + two 500 ns hops through the switch + 1e6 B at 100 B/ns.
  EXPECT_EQ(r.timeline.ops[v].end_ns, 15'000 + 1'000 + 10'000);
  // The NCCL model (default on a topology): NVLink p2p at NCCL's 20 of 25 GB/s per link
  // (the test GPU is taken as sm80: no compute capability, no fp8).
  EXPECT_EQ(simulate(p, topo).timeline.ops[v].end_ns, 15'000 + 1'000 + 12'500);
}

TEST(SimTopology, RingAllReduceOverNVSwitch) {
  const topology::Topology topo(nvswitch_host(4));
  ProgramBuilder b(4);
  const int g = b.group("world", {0, 1, 2, 3});
  b.collective(OpKind::kAllReduce, g, 8'000'000);
  SimOptions phases;  // the phases model's closed form (the NCCL model: test_sim_nccl.cpp)
  phases.collective_model = "phases";
  const SimResult r = simulate(b.build(), topo, phases);
  const SimParams d;
  EXPECT_EQ(r.timeline.makespan_ns,
            static_cast<int64_t>(d.alpha_allreduce_ns) + 2 * 3 * (1'000 + 8'000'000 / 4 / 100));
}

TEST(SimTopology, RankOnMissingGpuIsAnError) {
  const topology::Topology topo(nvswitch_host(2));
  ProgramBuilder b(1, {7});
  b.compute(0, OpKind::kGemm, "x", 0, 1000);
  EXPECT_THROW(simulate(b.build(), topo), std::runtime_error);
}

// The compiled paper scenarios run to completion: every op gets a start and an end, no op
// ends before it starts, and a rerun is identical.
TEST(SimTopology, CompiledPaperScenariosRun) {
  for (const char* name : {"paper", "paper-colocated"}) {
    const plan::Scenario s = plan::load_scenario(name);
    plan::CompileOptions o;
    o.steps = 2;
    const plan::Program p = plan::compile(s, o);
    const topology::Topology topo(s.topology);
    const SimResult a = simulate(p, topo);
    const SimResult b = simulate(p, topo);
    ASSERT_EQ(a.timeline.ops.size(), p.ops.size()) << name;
    for (size_t i = 0; i < p.ops.size(); ++i) {
      ASSERT_GE(a.timeline.ops[i].start_ns, 0) << name << " op " << i;
      ASSERT_GE(a.timeline.ops[i].end_ns, a.timeline.ops[i].start_ns) << name << " op " << i;
      ASSERT_EQ(a.timeline.ops[i].end_ns, b.timeline.ops[i].end_ns) << name << " op " << i;
    }
    EXPECT_GT(a.timeline.makespan_ns, 0) << name;
    EXPECT_EQ(a.timeline.device, s.topology.gpu.name);
  }
}

// The fluid tier's route halves (Platform::set_route_halves, from_topology on several nodes)
// are exact: a multi-node MA deployment's exchanges give the same timeline with the halves
// as with per-pair routes only (the same Platform without them).
TEST(SimTopology, FluidRouteHalvesEqualPerPairRoutes) {
  plan::Scenario s = plan::load_scenario(
      "large-1024gpu",
      {"topology.nodes=8", "plan.attention.gpus=48", "plan.attention.replicas=6",
       "plan.moe.gpus=16", "model.experts=16", "model.layers=2", "workload.batch=96"});
  plan::CompileOptions o;
  o.steps = 2;
  const plan::Program p = plan::compile(s, o);
  const topology::Topology topo(s.topology);
  const Platform halves = Platform::from_topology(topo);
  ASSERT_TRUE(halves.has_route_halves());
  std::vector<PlatformLink> links = halves.links();
  const Platform pairs(topo.spec().gpu, topo.gpus(), topo.spec().gpus_per_node, links,
                       [&topo](int a, int b) {
                         topology::Route r = topo.route(a, b);
                         return PlatformRoute{std::move(r.links), r.latency_ns};
                       });
  ASSERT_FALSE(pairs.has_route_halves());
  SimOptions fluid;
  fluid.topology = &topo.spec();
  fluid.params = {{"network_tier", 1}};
  const SimResult a = simulate(p, halves, fluid);
  const SimResult b = simulate(p, pairs, fluid);
  ASSERT_EQ(a.network_tier, "fluid");
  ASSERT_EQ(a.timeline.ops.size(), p.ops.size());
  ASSERT_EQ(b.timeline.ops.size(), p.ops.size());
  int inter_node = 0;
  for (const plan::Exchange& x : p.exchanges) {
    for (const plan::Transfer& t : x.transfers) {
      inter_node += topo.node_of(p.ranks[p.ops[t.src_op].rank].gpu) !=
                    topo.node_of(p.ranks[p.ops[t.dst_op].rank].gpu);
    }
  }
  EXPECT_GT(inter_node, 100);  // the halves are used
  for (size_t i = 0; i < p.ops.size(); ++i) {
    ASSERT_EQ(a.timeline.ops[i].start_ns, b.timeline.ops[i].start_ns) << "op " << i;
    ASSERT_EQ(a.timeline.ops[i].end_ns, b.timeline.ops[i].end_ns) << "op " << i;
  }
  EXPECT_EQ(a.events, b.events);
  // A Platform's halves are checked.
  Platform bad = pairs;
  EXPECT_THROW(bad.set_route_halves({{0, 1}}, {{0, 1}}), std::invalid_argument);
  std::vector<std::array<int, 2>> out(static_cast<size_t>(topo.gpus()), {0, 1});
  std::vector<std::array<int, 2>> in = out;
  in[3] = {0, static_cast<int>(links.size())};
  EXPECT_THROW(bad.set_route_halves(out, in), std::invalid_argument);
}

}  // namespace
}  // namespace masep::sim
