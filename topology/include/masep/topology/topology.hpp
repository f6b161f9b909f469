// The cluster: nodes of GPUs joined inside a node by NVSwitch, an NVLink mesh or PCIe, and
// between nodes by NICs and an InfiniBand switch. `TopologySpec` is the validated plain
// description (what YAML holds); `Topology` is the sealed graph built from it (GPUs,
// switches and NICs joined by directed links), with a route between any two GPUs. Links are full
// duplex, modelled as two directed edges with the same bandwidth, so traffic in one direction never
// slows the other.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "masep/topology/gpu_spec.hpp"

namespace masep::topology {

/// Fabric inside a node.
enum class Fabric {
  kNVSwitch,    ///< every GPU has one link of `intra_GBps` to a node switch (DGX, HGX)
  kNVLinkMesh,  ///< every GPU pair joined directly, `intra_GBps` per pair
  kPCIe,        ///< every GPU has one link of `intra_GBps` to a PCIe switch
};
const char* to_string(Fabric f);

/// One NIC of a node: bandwidth, latency and the local GPUs that send through it.
struct NicSpec {
  double GBps = 0;        ///< per direction, GB/s (HDR 200 Gb/s ≈ 25 GB/s)
  double latency_ns = 0;  ///< one-way latency added by this NIC hop, ns
  std::vector<int> gpus;  ///< local GPU indices (0-based) that use this NIC
  /// The NIC and the InfiniBand switches do in-network reduction (SHARP): NCCL's CollNet
  /// algorithms (and NVLS across nodes) become available. Descriptive: routes are unchanged.
  bool sharp = false;
};

/// How the GPUs of an NVLink mesh are joined (descriptive; routes still join every pair).
enum class NVLinkLayout {
  kFullMesh,        ///< every pair joined by intra_GBps (HGX A100 4-GPU boards)
  kHybridCubeMesh,  ///< DGX-1 class: each GPU reaches 4 of 7 peers directly
};
const char* to_string(NVLinkLayout l);

/// Plain description of a cluster; validate() throws std::invalid_argument naming the field.
struct TopologySpec {
  std::string name;
  GpuSpec gpu;
  int nodes = 1;
  int gpus_per_node = 1;
  Fabric intra = Fabric::kNVSwitch;
  double intra_GBps = 0;         ///< per direction, GB/s (see Fabric for what it applies to)
  double intra_latency_ns = 0;   ///< one-way latency per intra-node hop, ns
  std::vector<NicSpec> nics;     ///< per node (every node identical); empty for one node
  double switch_latency_ns = 0;  ///< one-way latency of the inter-node switch, ns
  // Descriptive fields for the NCCL model (sim/nccl_model.hpp); they do not change links or
  // routes. Defaults keep a topology that omits them meaning what it did before.
  /// NVSwitch generation (kNVSwitch only): 2 (DGX A100), 3 (DGX H100, with NVLink SHARP);
  /// 0 = not given.
  int nvswitch_generation = 0;
  /// The NVSwitches do NVLink SHARP (multicast and in-switch reduction) and NCCL may use its
  /// NVLS algorithms. Needs kNVSwitch, generation 0 or >= 3 and a GPU of compute capability
  /// >= 90. Default false (the GPU test hosts run with NCCL_NVLS_ENABLE=0).
  bool nvls = false;
  NVLinkLayout nvlink_layout = NVLinkLayout::kFullMesh;  ///< kNVLinkMesh only

  void validate() const;
  int total_gpus() const { return nodes * gpus_per_node; }
};

/// Kind of vertex in the topology graph.
enum class VertexKind { kGpu, kNodeSwitch, kNic, kNetworkSwitch };

/// One directed link (an edge of the graph). Owned by Topology; referred to by index.
struct Link {
  int from = 0;           ///< vertex index
  int to = 0;             ///< vertex index
  double GBps = 0;        ///< bandwidth, GB/s (1e9 bytes/s) == bytes per ns
  double latency_ns = 0;  ///< one-way latency of this hop
  std::string name;       ///< e.g. "n0.gpu1->n0.nvswitch"
};

/// A route: the links a transfer from one GPU to another crosses, in order.
struct Route {
  std::vector<int> links;      ///< indices into Topology::links()
  double latency_ns = 0;       ///< sum of the hops' latencies
  double bottleneck_GBps = 0;  ///< smallest link bandwidth on the route
};

/// Sealed graph built from a TopologySpec. GPU ranks are global: node * gpus_per_node + local.
///
/// Vertices, in this order: the GPUs (vertex index == global GPU rank), then per node its
/// node switch (NVSwitch or PCIe switch; none for an NVLink mesh) and its NICs (only when
/// nodes > 1), then one network switch (only when nodes > 1). Links, each as two directed
/// edges of the same bandwidth and latency:
///   kNVSwitch    gpu <-> node switch, intra_GBps, intra_latency_ns per hop
///                (GPU -> GPU inside a node = 2 hops, 2 · intra_latency_ns)
///   kNVLinkMesh  gpu <-> gpu for every pair, intra_GBps, intra_latency_ns
///   kPCIe        gpu <-> PCIe switch, intra_GBps, intra_latency_ns per hop
///   nodes > 1    gpu <-> its NIC (GPUDirect RDMA), nic.GBps, nic.latency_ns;
///                NIC <-> network switch, nic.GBps, switch_latency_ns / 2 per hop, so one
///                crossing of the switch adds switch_latency_ns in total.
/// A GPU on another node is reached as gpu -> NIC -> switch -> NIC -> gpu (4 hops, latency
/// 2 · nic.latency_ns + switch_latency_ns), never through a peer GPU.
///
/// Routes: shortest hop count, ties broken by lowest total latency, then (walking back from
/// the destination) by the lowest predecessor vertex index, so the choice is deterministic.
/// They follow from the structure, so route() derives them in O(hops) from per-GPU link
/// tables (no per-pair state: memory is linear in GPUs, a 16,384-GPU cluster builds in tens
/// of milliseconds): a GPU on the same node is reached directly (NVLink mesh, 1 hop) or
/// through the node switch (2 hops) — or through a NIC the two GPUs share, when that NIC's
/// two hops are strictly faster than the switch's (2 hops either way; equal latencies take
/// the switch, the lower vertex) —, a GPU on another node by gpu -> NIC -> switch -> NIC ->
/// gpu. reference_route() finds the same routes by Dijkstra on the Boost graph (tests
/// compare the two).
class Topology {
 public:
  /// Validates `spec` (std::invalid_argument naming the field) and builds the graph.
  explicit Topology(TopologySpec spec);
  Topology(const Topology& other);
  Topology& operator=(const Topology& other);
  Topology(Topology&&) noexcept;
  Topology& operator=(Topology&&) noexcept;
  ~Topology();

  const TopologySpec& spec() const { return spec_; }
  int gpus() const { return spec_.total_gpus(); }
  int node_of(int gpu) const { return gpu / spec_.gpus_per_node; }
  int local_of(int gpu) const { return gpu % spec_.gpus_per_node; }

  int vertex_count() const { return static_cast<int>(vertex_kind_.size()); }
  VertexKind vertex_kind(int v) const { return vertex_kind_[v]; }
  const std::string& vertex_name(int v) const { return vertex_name_[v]; }
  const std::vector<Link>& links() const { return links_; }

  /// Vertex of a node's switch (NVSwitch / PCIe switch); -1 for an NVLink mesh.
  int node_switch_vertex(int node) const;
  /// Vertex of NIC `nic` (index into spec().nics) of `node`; -1 on a single node.
  int nic_vertex(int node, int nic) const;
  /// Vertex of the network switch; -1 on a single node.
  int network_switch_vertex() const { return network_switch_; }
  /// Index into spec().nics of the NIC a GPU sends through; -1 on a single node.
  int nic_of(int gpu) const;

  /// Route from GPU `src` to GPU `dst` (global ranks), by value (at most 4 links). src == dst
  /// gives an empty route (no links, latency 0, bottleneck 0: nothing to transfer). Pure and
  /// thread-safe. Throws std::out_of_range for a rank outside the topology.
  Route route(int src, int dst) const;

  /// The two halves of every route between GPUs on different nodes (multi-node clusters):
  /// route(src, dst).links == {out[0], out[1], in[0], in[1]} with out = route_out(src), in =
  /// route_in(dst) (GPU -> its NIC -> network switch; switch -> NIC -> GPU), and its latency
  /// the links' latencies summed in that order. route() is built from them. Lets a caller
  /// time inter-node transfers without a per-pair look-up. Throws std::out_of_range for a
  /// rank outside the topology, std::logic_error on a single node.
  std::array<int, 2> route_out(int gpu) const;
  std::array<int, 2> route_in(int gpu) const;

  /// The same route found by Dijkstra on the (hops, latency) graph with the tie-breaks above:
  /// the definition route() implements. For tests and checks only (builds the Boost graph on
  /// first use, O(vertices log vertices) per call; thread-safe). Throws like route(), and
  /// std::runtime_error when the graph has no path.
  Route reference_route(int src, int dst) const;

  /// Computes every route now (e.g. to check that every GPU reaches every other; O(GPUs²)
  /// time, no memory kept). Throws like route().
  void compute_all_routes() const;

 private:
  struct Graph;  // Boost adjacency_list over the vertices above (topology.cpp), built lazily

  void build();
  void check_rank(int gpu, const char* what) const;
  const Graph& graph() const;

  TopologySpec spec_;
  std::vector<VertexKind> vertex_kind_;
  std::vector<std::string> vertex_name_;
  std::vector<Link> links_;
  std::vector<int> node_switch_;  // per node; -1 for a mesh
  std::vector<int> nic_vertex_;   // node * nics + nic; empty on one node
  std::vector<int> gpu_nic_;      // per local GPU: index into spec_.nics; empty on one node
  int network_switch_ = -1;
  // Link tables for route() (indices into links_; every node is built alike).
  std::vector<int> node_link_base_;  // per node: its first link
  std::vector<int> intra_local_;     // mesh: [a * gpn + b] = link a -> b; switch fabrics:
                                     // [a] = a -> switch, +1 = back (node-relative)
  std::vector<int> nic_local_;       // per local GPU: gpu -> NIC, +1 = NIC -> gpu (node-relative)
  std::vector<int> uplink_local_;    // per NIC: NIC -> net switch, +1 = back (node-relative)
  mutable std::unique_ptr<Graph> graph_;
  mutable std::unique_ptr<std::mutex> graph_mu_;
};

}  // namespace masep::topology
