// The cluster: nodes of GPUs joined inside a node by NVSwitch, an NVLink mesh or PCIe, and
// between nodes by NICs and an InfiniBand switch. `TopologySpec` is the validated plain
// description (what YAML holds); `Topology` is the sealed graph built from it (a Boost
// adjacency_list of GPUs, switches and NICs joined by directed links), with a route between
// any two GPUs. Links are full duplex, modelled as two directed edges with the same
// bandwidth, so traffic in one direction never slows the other.
#pragma once

#include <cstdint>
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
  double GBps = 0;          ///< per direction, GB/s (HDR 200 Gb/s ≈ 25 GB/s)
  double latency_ns = 0;    ///< one-way latency added by this NIC hop, ns
  std::vector<int> gpus;    ///< local GPU indices (0-based) that use this NIC
};

/// Plain description of a cluster; validate() throws std::invalid_argument naming the field.
struct TopologySpec {
  std::string name;
  GpuSpec gpu;
  int nodes = 1;
  int gpus_per_node = 1;
  Fabric intra = Fabric::kNVSwitch;
  double intra_GBps = 0;          ///< per direction, GB/s (see Fabric for what it applies to)
  double intra_latency_ns = 0;    ///< one-way latency per intra-node hop, ns
  std::vector<NicSpec> nics;      ///< per node (every node identical); empty for one node
  double switch_latency_ns = 0;   ///< one-way latency of the inter-node switch, ns

  void validate() const;
  int total_gpus() const { return nodes * gpus_per_node; }
};

/// Kind of vertex in the topology graph.
enum class VertexKind { kGpu, kNodeSwitch, kNic, kNetworkSwitch };

/// One directed link (an edge of the graph). Owned by Topology; referred to by index.
struct Link {
  int from = 0;              ///< vertex index
  int to = 0;                ///< vertex index
  double GBps = 0;           ///< bandwidth, GB/s (1e9 bytes/s) == bytes per ns
  double latency_ns = 0;     ///< one-way latency of this hop
  std::string name;          ///< e.g. "n0.gpu1->n0.nvswitch"
};

/// A route: the links a transfer from one GPU to another crosses, in order.
struct Route {
  std::vector<int> links;    ///< indices into Topology::links()
  double latency_ns = 0;     ///< sum of the hops' latencies
  double bottleneck_GBps = 0;///< smallest link bandwidth on the route
};

/// Sealed graph built from a TopologySpec. GPU ranks are global: node * gpus_per_node + local.
/// Routes are computed once at construction (shortest hop count, ties broken by lowest
/// latency then lowest vertex index, so the choice is deterministic).
class Topology {
 public:
  explicit Topology(TopologySpec spec);

  const TopologySpec& spec() const { return spec_; }
  int gpus() const { return spec_.total_gpus(); }
  int node_of(int gpu) const { return gpu / spec_.gpus_per_node; }
  int local_of(int gpu) const { return gpu % spec_.gpus_per_node; }

  int vertex_count() const { return static_cast<int>(vertex_kind_.size()); }
  VertexKind vertex_kind(int v) const { return vertex_kind_[v]; }
  const std::string& vertex_name(int v) const { return vertex_name_[v]; }
  const std::vector<Link>& links() const { return links_; }

  /// Route from GPU `src` to GPU `dst` (global ranks). src == dst gives an empty route.
  /// Throws std::out_of_range for a rank outside the topology, std::runtime_error when the
  /// graph has no path (a plan that needs a link the topology lacks).
  const Route& route(int src, int dst) const;

 private:
  TopologySpec spec_;
  std::vector<VertexKind> vertex_kind_;
  std::vector<std::string> vertex_name_;
  std::vector<Link> links_;
  std::vector<Route> routes_;  // gpus × gpus, row-major by src
};

}  // namespace masep::topology
