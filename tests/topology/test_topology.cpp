#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "masep/topology/topology.hpp"

using masep::topology::Fabric;
using masep::topology::GpuSpec;
using masep::topology::NicSpec;
using masep::topology::Route;
using masep::topology::Topology;
using masep::topology::TopologySpec;
using masep::topology::VertexKind;

namespace {

GpuSpec a100() {
  GpuSpec g;
  g.name = "A100-SXM4-80GB";
  g.bf16_tflops = 312;
  g.fp16_tflops = 312;
  g.hbm_gb = 80;
  g.hbm_GBps = 2039;
  g.sm_count = 108;
  g.nvlink_GBps = 300;
  return g;
}

TopologySpec single(Fabric f, int gpus, double GBps = 300, double latency_ns = 100) {
  TopologySpec s;
  s.name = "test";
  s.gpu = a100();
  s.nodes = 1;
  s.gpus_per_node = gpus;
  s.intra = f;
  s.intra_GBps = GBps;
  s.intra_latency_ns = latency_ns;
  return s;
}

// nodes × 4 GPUs on NVSwitch (300 GB/s, 100 ns per hop), two NICs per node: GPUs {0,1} on
// nic0 (25 GB/s, 1000 ns), GPUs {2,3} on nic1 (20 GB/s, 1500 ns), switch 200 ns.
TopologySpec cluster(int nodes) {
  TopologySpec s = single(Fabric::kNVSwitch, 4);
  s.nodes = nodes;
  s.nics = {NicSpec{25, 1000, {0, 1}}, NicSpec{20, 1500, {2, 3}}};
  s.switch_latency_ns = 200;
  return s;
}

std::vector<std::string> hop_names(const Topology& t, const Route& r) {
  std::vector<std::string> out;
  for (int l : r.links) out.push_back(t.links()[l].name);
  return out;
}

std::string invalid_message(const TopologySpec& s) {
  try {
    s.validate();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(valid)";
}

}  // namespace

TEST(Topology, NVSwitchRouteIsTwoHopsThroughTheSwitch) {
  const Topology t(single(Fabric::kNVSwitch, 4, 300, 100));
  EXPECT_EQ(t.vertex_count(), 5);
  for (int g = 0; g < 4; ++g) EXPECT_EQ(t.vertex_kind(g), VertexKind::kGpu);
  EXPECT_EQ(t.vertex_kind(4), VertexKind::kNodeSwitch);
  EXPECT_EQ(t.links().size(), 8u);
  const Route& r = t.route(1, 3);
  EXPECT_EQ(hop_names(t, r),
            (std::vector<std::string>{"n0.gpu1->n0.nvswitch", "n0.nvswitch->n0.gpu3"}));
  EXPECT_DOUBLE_EQ(r.latency_ns, 200);
  EXPECT_DOUBLE_EQ(r.bottleneck_GBps, 300);
  // Full duplex: the reverse route uses the other two directed edges.
  const Route& back = t.route(3, 1);
  ASSERT_EQ(back.links.size(), 2u);
  EXPECT_NE(back.links[0], r.links[1]);
  EXPECT_EQ(t.links()[back.links[0]].from, 3);
}

TEST(Topology, SelfRouteIsEmpty) {
  const Topology t(single(Fabric::kNVSwitch, 4));
  EXPECT_TRUE(t.route(2, 2).links.empty());
  EXPECT_DOUBLE_EQ(t.route(2, 2).latency_ns, 0);
}

TEST(Topology, NVLinkMeshRouteIsDirect) {
  const Topology t(single(Fabric::kNVLinkMesh, 4, 100, 50));
  EXPECT_EQ(t.vertex_count(), 4);    // no switch
  EXPECT_EQ(t.links().size(), 12u);  // 6 pairs, both directions
  EXPECT_EQ(t.node_switch_vertex(0), -1);
  for (int s = 0; s < 4; ++s) {
    for (int d = 0; d < 4; ++d) {
      if (s == d) continue;
      const Route& r = t.route(s, d);
      ASSERT_EQ(r.links.size(), 1u);
      EXPECT_EQ(t.links()[r.links[0]].from, s);
      EXPECT_EQ(t.links()[r.links[0]].to, d);
      EXPECT_DOUBLE_EQ(r.latency_ns, 50);
      EXPECT_DOUBLE_EQ(r.bottleneck_GBps, 100);
    }
  }
}

TEST(Topology, PCIeRouteGoesThroughThePCIeSwitch) {
  const Topology t(single(Fabric::kPCIe, 8, 32, 700));
  EXPECT_EQ(t.vertex_name(t.node_switch_vertex(0)), "n0.pcie");
  const Route& r = t.route(0, 7);
  EXPECT_EQ(hop_names(t, r), (std::vector<std::string>{"n0.gpu0->n0.pcie", "n0.pcie->n0.gpu7"}));
  EXPECT_DOUBLE_EQ(r.latency_ns, 1400);
  EXPECT_DOUBLE_EQ(r.bottleneck_GBps, 32);
}

TEST(Topology, MultiNodeRouteCrossesNicSwitchNic) {
  const Topology t(cluster(4));
  // 16 GPUs, 4 NVSwitches, 8 NICs, 1 network switch.
  EXPECT_EQ(t.vertex_count(), 16 + 4 + 8 + 1);
  EXPECT_EQ(t.vertex_kind(t.network_switch_vertex()), VertexKind::kNetworkSwitch);
  EXPECT_EQ(t.vertex_kind(t.nic_vertex(2, 1)), VertexKind::kNic);
  EXPECT_EQ(t.nic_of(5), 0);
  EXPECT_EQ(t.nic_of(7), 1);

  // node0.gpu1 -> node1.gpu1: both on nic0.
  const Route& r = t.route(1, 5);
  EXPECT_EQ(hop_names(t, r), (std::vector<std::string>{"n0.gpu1->n0.nic0", "n0.nic0->net.switch",
                                                       "net.switch->n1.nic0", "n1.nic0->n1.gpu1"}));
  EXPECT_DOUBLE_EQ(r.latency_ns, 2 * 1000 + 200);  // two NIC hops + one switch crossing
  EXPECT_DOUBLE_EQ(r.bottleneck_GBps, 25);         // the NIC, not NVLink

  // node0.gpu1 -> node3.gpu3: leaves through nic0, arrives through the slower nic1.
  const Route& r2 = t.route(1, 15);
  EXPECT_EQ(hop_names(t, r2),
            (std::vector<std::string>{"n0.gpu1->n0.nic0", "n0.nic0->net.switch",
                                      "net.switch->n3.nic1", "n3.nic1->n3.gpu3"}));
  EXPECT_DOUBLE_EQ(r2.latency_ns, 1000 + 200 + 1500);
  EXPECT_DOUBLE_EQ(r2.bottleneck_GBps, 20);

  // Inside a node the NVSwitch is used, never the NIC.
  const Route& r3 = t.route(12, 14);
  EXPECT_EQ(hop_names(t, r3),
            (std::vector<std::string>{"n3.gpu0->n3.nvswitch", "n3.nvswitch->n3.gpu2"}));
}

TEST(Topology, MeshNodesJoinedByNics) {
  TopologySpec s = cluster(2);
  s.intra = Fabric::kNVLinkMesh;
  const Topology t(s);
  EXPECT_EQ(t.route(0, 3).links.size(), 1u);
  EXPECT_EQ(t.route(0, 7).links.size(), 4u);  // own NIC, not via a peer GPU
  EXPECT_EQ(t.vertex_name(t.links()[t.route(0, 7).links[0]].to), "n0.nic0");
}

// Inter-node routes are route_out(src) + route_in(dst), latency summed in route order (the
// simulator's fluid tier times exchanges from the halves without a per-pair look-up).
TEST(Topology, InterNodeRoutesAreTheirHalves) {
  for (const Fabric f : {Fabric::kNVSwitch, Fabric::kNVLinkMesh}) {
    TopologySpec s = cluster(3);
    s.intra = f;
    const Topology t(s);
    for (int a = 0; a < t.gpus(); ++a) {
      for (int b = 0; b < t.gpus(); ++b) {
        if (t.node_of(a) == t.node_of(b)) continue;
        const Route r = t.route(a, b);
        const auto out = t.route_out(a), in = t.route_in(b);
        ASSERT_EQ(r.links, (std::vector<int>{out[0], out[1], in[0], in[1]})) << a << "->" << b;
        double lat = 0;
        for (int l : r.links) lat += t.links()[l].latency_ns;
        EXPECT_EQ(r.latency_ns, lat) << a << "->" << b;
      }
    }
    EXPECT_THROW(t.route_out(t.gpus()), std::out_of_range);
    EXPECT_THROW(t.route_in(-1), std::out_of_range);
  }
  const Topology one(single(Fabric::kNVSwitch, 4));
  EXPECT_THROW(one.route_out(0), std::logic_error);
  EXPECT_THROW(one.route_in(0), std::logic_error);
}

TEST(Topology, AllRoutesOfALargeClusterHaveExpectedHops) {
  TopologySpec s = single(Fabric::kNVSwitch, 8, 450, 100);
  s.nodes = 128;
  s.nics.clear();
  for (int i = 0; i < 8; ++i) s.nics.push_back(NicSpec{50, 1000, {i}});
  s.switch_latency_ns = 300;
  const Topology t(s);
  EXPECT_EQ(t.gpus(), 1024);
  EXPECT_EQ(t.vertex_name(1023), "n127.gpu7");
  // Spot-check rows from several sources against every destination.
  for (int src : {0, 517, 1023}) {
    for (int dst = 0; dst < t.gpus(); ++dst) {
      const Route& r = t.route(src, dst);
      const size_t hops = src == dst ? 0 : t.node_of(src) == t.node_of(dst) ? 2 : 4;
      ASSERT_EQ(r.links.size(), hops) << src << "->" << dst;
      if (hops == 4) {
        ASSERT_DOUBLE_EQ(r.latency_ns, 2300);
        ASSERT_DOUBLE_EQ(r.bottleneck_GBps, 50);
        ASSERT_EQ(t.links()[r.links[0]].to, t.nic_vertex(t.node_of(src), t.local_of(src)));
        ASSERT_EQ(t.links()[r.links[3]].from, t.nic_vertex(t.node_of(dst), t.local_of(dst)));
      }
    }
  }
}

TEST(Topology, RoutesAreConsistentAcrossThreadsAndCopies) {
  const Topology t(cluster(4));
  std::vector<std::vector<std::vector<int>>> seen(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&t, &seen, i] {
      for (int s = 0; s < t.gpus(); ++s) {
        for (int d = 0; d < t.gpus(); ++d) seen[i].push_back(t.route(s, d).links);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 1; i < 4; ++i) EXPECT_EQ(seen[i], seen[0]);

  const Topology copy = t;  // NOLINT: copy on purpose
  const Topology moved = Topology(t);
  for (int s = 0; s < t.gpus(); ++s) {
    for (int d = 0; d < t.gpus(); ++d) {
      EXPECT_EQ(copy.route(s, d).links, t.route(s, d).links);
      EXPECT_EQ(moved.route(s, d).links, t.route(s, d).links);
    }
  }
}

TEST(Topology, OutOfRangeRankThrowsWithTheRank) {
  const Topology t(cluster(2));
  try {
    t.route(0, 8);
    FAIL() << "no exception";
  } catch (const std::out_of_range& e) {
    EXPECT_NE(std::string(e.what()).find("8"), std::string::npos) << e.what();
  }
  EXPECT_THROW(t.route(-1, 0), std::out_of_range);
  EXPECT_THROW(t.nic_of(99), std::out_of_range);
}

TEST(TopologySpec, ValidClustersPass) {
  EXPECT_NO_THROW(cluster(4).validate());
  EXPECT_NO_THROW(single(Fabric::kPCIe, 1).validate());
}

TEST(TopologySpec, InvalidSpecsNameTheField) {
  TopologySpec s = cluster(4);
  s.nodes = 0;
  EXPECT_EQ(invalid_message(s), "nodes: must be positive, got 0");

  s = cluster(4);
  s.gpus_per_node = -2;
  EXPECT_EQ(invalid_message(s), "gpus_per_node: must be positive, got -2");

  s = cluster(4);
  s.intra_GBps = 0;
  EXPECT_EQ(invalid_message(s), "intra_GBps: must be positive, got 0");

  s = cluster(4);
  s.nics[1].gpus = {2, 5};
  EXPECT_EQ(invalid_message(s), "nics[1].gpus: 5 out of range 0..3");

  s = cluster(4);
  s.nics[1].gpus = {1, 2, 3};
  EXPECT_EQ(invalid_message(s), "nics[1].gpus: GPU 1 already uses nics[0]");

  s = cluster(4);
  s.nics[1].gpus = {2};
  EXPECT_EQ(invalid_message(s), "nics: GPU 3 of each node is in no NIC's gpus list");

  s = cluster(4);
  s.nics.clear();
  EXPECT_EQ(invalid_message(s), "nics: a topology with 4 nodes needs NICs");

  s = cluster(4);
  s.nics[0].GBps = 0;
  EXPECT_EQ(invalid_message(s), "nics[0].GBps: must be positive, got 0");

  s = cluster(4);
  s.gpu.hbm_gb = 0;
  EXPECT_EQ(invalid_message(s), "gpu.hbm_gb: must be positive, got 0");

  s = cluster(4);
  s.switch_latency_ns = -1;
  EXPECT_EQ(invalid_message(s), "switch_latency_ns: must not be negative, got -1");

  // The constructor validates too.
  s = cluster(4);
  s.nics.clear();
  EXPECT_THROW(Topology{s}, std::invalid_argument);
}

TEST(GpuSpec, ValidateNamesTheField) {
  GpuSpec g = a100();
  EXPECT_NO_THROW(g.validate());
  g.sm_count = 0;
  EXPECT_THROW(g.validate(), std::invalid_argument);
  g = a100();
  g.fp8_tflops = 0;  // A100 has no fp8: allowed
  EXPECT_NO_THROW(g.validate());
  EXPECT_DOUBLE_EQ(g.hbm_bytes(), 80e9);
}

TEST(Fabric, ToString) {
  EXPECT_STREQ(to_string(Fabric::kNVSwitch), "nvswitch");
  EXPECT_STREQ(to_string(Fabric::kNVLinkMesh), "nvlink_mesh");
  EXPECT_STREQ(to_string(Fabric::kPCIe), "pcie");
}

// route() derives routes from the structure; reference_route() runs Dijkstra on the graph with
// the documented tie-breaks. They must agree link for link and bit for bit on every pair of
// every shape: fabrics, node counts, NIC sharing, NIC latencies below, equal to (exactly and
// within the 1e-9 tolerance) and above the node switch's.
TEST(Topology, StructuralRoutesEqualTheDijkstraReference) {
  int shapes = 0, nic_shortcuts = 0;
  for (Fabric f : {Fabric::kNVSwitch, Fabric::kNVLinkMesh, Fabric::kPCIe}) {
    for (int nodes : {1, 2, 3}) {
      for (int sharing : {1, 2, 4}) {  // GPUs per NIC (4 GPUs per node)
        for (double nic_lat : {10.0, 50.0, 50.0 * (1 + 1e-12), 100.0, 1000.0}) {
          TopologySpec s = single(f, 4, 300, 50);  // node switch path: 2 x 50 ns
          s.nodes = nodes;
          s.switch_latency_ns = 300;
          if (nodes > 1) {
            for (int first = 0; first < 4; first += sharing) {
              NicSpec nic{25.0 + first, nic_lat, {}};
              for (int g = first; g < first + sharing; ++g) nic.gpus.push_back(g);
              s.nics.push_back(nic);
            }
          }
          const Topology t(s);
          ++shapes;
          for (int src = 0; src < t.gpus(); ++src) {
            for (int dst = 0; dst < t.gpus(); ++dst) {
              const Route got = t.route(src, dst);
              const Route want = t.reference_route(src, dst);
              ASSERT_EQ(got.links, want.links)
                  << to_string(f) << " nodes " << nodes << " sharing " << sharing << " nic "
                  << nic_lat << ": " << src << "->" << dst;
              ASSERT_EQ(got.latency_ns, want.latency_ns);
              ASSERT_EQ(got.bottleneck_GBps, want.bottleneck_GBps);
              if (!got.links.empty() && t.node_of(src) == t.node_of(dst) &&
                  t.vertex_kind(t.links()[got.links[0]].to) == VertexKind::kNic) {
                ++nic_shortcuts;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(shapes, 135);
  EXPECT_GT(nic_shortcuts, 0);  // the shared-NIC shortcut case is exercised
}

TEST(Topology, SharedNicFasterThanTheSwitchCarriesIntraNodeTraffic) {
  TopologySpec s = cluster(2);  // GPUs {0,1} share nic0 (1000 ns); NVSwitch hops 100 ns
  s.nics[0].latency_ns = 40;
  const Topology t(s);
  EXPECT_EQ(hop_names(t, t.route(0, 1)),
            (std::vector<std::string>{"n0.gpu0->n0.nic0", "n0.nic0->n0.gpu1"}));
  EXPECT_EQ(hop_names(t, t.route(0, 2)),  // different NICs: the switch
            (std::vector<std::string>{"n0.gpu0->n0.nvswitch", "n0.nvswitch->n0.gpu2"}));
  s.nics[0].latency_ns = 100;  // equal: the switch (lower vertex) wins
  const Topology tie(s);
  EXPECT_EQ(hop_names(tie, tie.route(0, 1)),
            (std::vector<std::string>{"n0.gpu0->n0.nvswitch", "n0.nvswitch->n0.gpu1"}));
}

TEST(Topology, ClusterOf16384GpusKeepsNoPerPairState) {
  TopologySpec s = single(Fabric::kNVSwitch, 8, 450, 500);
  s.nodes = 2048;
  for (int i = 0; i < 8; ++i) s.nics.push_back(NicSpec{50, 2000, {i}});
  s.switch_latency_ns = 1500;
  const Topology t(s);
  EXPECT_EQ(t.gpus(), 16384);
  EXPECT_EQ(t.links().size(), 16384u * 6);  // NVSwitch, NIC and uplink, both directions
  const Route r = t.route(3, 16383);
  EXPECT_EQ(hop_names(t, r),
            (std::vector<std::string>{"n0.gpu3->n0.nic3", "n0.nic3->net.switch",
                                      "net.switch->n2047.nic7", "n2047.nic7->n2047.gpu7"}));
  EXPECT_DOUBLE_EQ(r.latency_ns, 5500);
  EXPECT_EQ(t.reference_route(3, 16383).links, r.links);
}
