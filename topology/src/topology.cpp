#include "masep/topology/topology.hpp"

#include <algorithm>
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/dijkstra_shortest_paths.hpp>
#include <boost/property_map/property_map.hpp>
#include <cmath>
#include <limits>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace masep::topology {

const char* to_string(Fabric f) {
  switch (f) {
    case Fabric::kNVSwitch:
      return "nvswitch";
    case Fabric::kNVLinkMesh:
      return "nvlink_mesh";
    case Fabric::kPCIe:
      return "pcie";
  }
  return "?";
}

// ---- TopologySpec::validate ----------------------------------------------------------------

namespace {

std::string num(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

}  // namespace

void TopologySpec::validate() const {
  if (name.empty()) fail("name: must not be empty");
  try {
    gpu.validate();
  } catch (const std::invalid_argument& e) {
    fail(std::string("gpu.") + e.what());
  }
  if (nodes <= 0) fail("nodes: must be positive, got " + std::to_string(nodes));
  if (gpus_per_node <= 0) {
    fail("gpus_per_node: must be positive, got " + std::to_string(gpus_per_node));
  }
  if (gpus_per_node > 1 && !(intra_GBps > 0)) {
    fail("intra_GBps: must be positive, got " + num(intra_GBps));
  }
  if (!(intra_GBps >= 0)) fail("intra_GBps: must not be negative, got " + num(intra_GBps));
  if (!(intra_latency_ns >= 0)) {
    fail("intra_latency_ns: must not be negative, got " + num(intra_latency_ns));
  }
  if (!(switch_latency_ns >= 0)) {
    fail("switch_latency_ns: must not be negative, got " + num(switch_latency_ns));
  }
  if (nodes > 1 && nics.empty()) {
    fail("nics: a topology with " + std::to_string(nodes) + " nodes needs NICs");
  }
  // owner[g] = the NIC local GPU g sends through, -1 for none yet.
  std::vector<int> owner(static_cast<size_t>(gpus_per_node), -1);
  for (size_t i = 0; i < nics.size(); ++i) {
    const std::string key = "nics[" + std::to_string(i) + "]";
    const NicSpec& nic = nics[i];
    if (!(nic.GBps > 0)) fail(key + ".GBps: must be positive, got " + num(nic.GBps));
    if (!(nic.latency_ns >= 0)) {
      fail(key + ".latency_ns: must not be negative, got " + num(nic.latency_ns));
    }
    if (nic.gpus.empty()) fail(key + ".gpus: a NIC needs at least one GPU");
    for (int g : nic.gpus) {
      if (g < 0 || g >= gpus_per_node) {
        fail(key + ".gpus: " + std::to_string(g) + " out of range 0.." +
             std::to_string(gpus_per_node - 1));
      }
      if (owner[g] >= 0) {
        fail(key + ".gpus: GPU " + std::to_string(g) + " already uses nics[" +
             std::to_string(owner[g]) + "]");
      }
      owner[g] = static_cast<int>(i);
    }
  }
  if (nodes > 1) {
    for (int g = 0; g < gpus_per_node; ++g) {
      if (owner[g] < 0) {
        fail("nics: GPU " + std::to_string(g) + " of each node is in no NIC's gpus list");
      }
    }
  }
  // Descriptive NCCL-model fields (sim/nccl_model.hpp).
  if (nvswitch_generation != 0) {
    if (intra != Fabric::kNVSwitch) {
      fail("intra_node.nvswitch_generation: only a nvswitch fabric has one (fabric is " +
           std::string(to_string(intra)) + ")");
    }
    if (nvswitch_generation < 1 || nvswitch_generation > 5) {
      fail("intra_node.nvswitch_generation: " + std::to_string(nvswitch_generation) +
           " is not an NVSwitch generation (1..5)");
    }
  }
  if (nvls) {
    if (intra != Fabric::kNVSwitch) {
      fail("intra_node.nvls: NVLink SHARP needs a nvswitch fabric (fabric is " +
           std::string(to_string(intra)) + ")");
    }
    if (nvswitch_generation != 0 && nvswitch_generation < 3) {
      fail("intra_node.nvls: NVSwitch generation " + std::to_string(nvswitch_generation) +
           " has no NVLink SHARP (needs generation 3 or later)");
    }
    if (gpu.compute_capability != 0 && gpu.compute_capability < 90) {
      fail("intra_node.nvls: " + gpu.name + " (compute capability " +
           std::to_string(gpu.compute_capability) + ") cannot use NVLink SHARP (needs 90+)");
    }
  }
  if (nvlink_layout != NVLinkLayout::kFullMesh && intra != Fabric::kNVLinkMesh) {
    fail("intra_node.layout: a hybrid cube-mesh needs fabric nvlink_mesh (fabric is " +
         std::string(to_string(intra)) + ")");
  }
}

const char* to_string(NVLinkLayout l) {
  switch (l) {
    case NVLinkLayout::kFullMesh:
      return "full_mesh";
    case NVLinkLayout::kHybridCubeMesh:
      return "hybrid_cube_mesh";
  }
  return "?";
}

// ---- Topology: graph -----------------------------------------------------------------------

namespace {

/// Path length in the order routes compare: hops first, then latency.
struct Dist {
  int hops = 0;
  double latency_ns = 0;
};

constexpr Dist kInfinity{std::numeric_limits<int>::max(), std::numeric_limits<double>::infinity()};

bool same_latency(double a, double b) {
  return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::max(std::fabs(a), std::fabs(b)));
}

struct DistLess {
  bool operator()(const Dist& a, const Dist& b) const {
    if (a.hops != b.hops) return a.hops < b.hops;
    if (same_latency(a.latency_ns, b.latency_ns)) return false;
    return a.latency_ns < b.latency_ns;
  }
};

struct DistPlus {
  Dist operator()(const Dist& a, const Dist& b) const {
    if (a.hops == kInfinity.hops || b.hops == kInfinity.hops) return kInfinity;
    return {a.hops + b.hops, a.latency_ns + b.latency_ns};
  }
};

struct EdgeProps {
  int link = 0;  // index into Topology::links()
  Dist weight;   // {1, link latency}
};

}  // namespace

struct Topology::Graph {
  using Adjacency = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS,
                                          boost::no_property, EdgeProps>;
  Adjacency g;
};

Topology::Topology(TopologySpec spec)
    : spec_(std::move(spec)), graph_mu_(std::make_unique<std::mutex>()) {
  spec_.validate();
  build();
}

Topology::Topology(const Topology& other) : Topology(other.spec_) {}

Topology& Topology::operator=(const Topology& other) {
  if (this != &other) *this = Topology(other.spec_);
  return *this;
}

Topology::Topology(Topology&&) noexcept = default;
Topology& Topology::operator=(Topology&&) noexcept = default;
Topology::~Topology() = default;

void Topology::build() {
  const int n_gpus = spec_.total_gpus();
  const int gpn = spec_.gpus_per_node;
  const bool multi = spec_.nodes > 1;
  const int n_nics = multi ? static_cast<int>(spec_.nics.size()) : 0;

  auto add_vertex = [&](VertexKind k, std::string name) {
    vertex_kind_.push_back(k);
    vertex_name_.push_back(std::move(name));
    return static_cast<int>(vertex_kind_.size()) - 1;
  };
  const auto node_prefix = [](int node) { return "n" + std::to_string(node) + "."; };

  for (int r = 0; r < n_gpus; ++r) {
    add_vertex(VertexKind::kGpu, node_prefix(r / gpn) + "gpu" + std::to_string(r % gpn));
  }
  node_switch_.assign(static_cast<size_t>(spec_.nodes), -1);
  for (int node = 0; node < spec_.nodes; ++node) {
    if (spec_.intra == Fabric::kNVSwitch) {
      node_switch_[node] = add_vertex(VertexKind::kNodeSwitch, node_prefix(node) + "nvswitch");
    } else if (spec_.intra == Fabric::kPCIe) {
      node_switch_[node] = add_vertex(VertexKind::kNodeSwitch, node_prefix(node) + "pcie");
    }
    for (int i = 0; i < n_nics; ++i) {
      nic_vertex_.push_back(
          add_vertex(VertexKind::kNic, node_prefix(node) + "nic" + std::to_string(i)));
    }
  }
  if (multi) {
    network_switch_ = add_vertex(VertexKind::kNetworkSwitch, "net.switch");
    gpu_nic_.assign(static_cast<size_t>(gpn), -1);
    for (int i = 0; i < n_nics; ++i) {
      for (int g : spec_.nics[i].gpus) gpu_nic_[g] = i;
    }
  }

  auto add_duplex = [&](int a, int b, double GBps, double latency_ns) {
    for (auto [from, to] : {std::pair{a, b}, std::pair{b, a}}) {
      links_.push_back({from, to, GBps, latency_ns, vertex_name_[from] + "->" + vertex_name_[to]});
    }
    return static_cast<int>(links_.size()) - 2;  // the a -> b link; b -> a follows it
  };

  // Every node is built alike, so the node-relative offsets of node 0 hold for all.
  node_link_base_.assign(static_cast<size_t>(spec_.nodes), 0);
  intra_local_.assign(static_cast<size_t>(spec_.intra == Fabric::kNVLinkMesh ? gpn * gpn : gpn),
                      -1);
  nic_local_.assign(static_cast<size_t>(gpn), -1);
  uplink_local_.assign(static_cast<size_t>(n_nics), -1);
  for (int node = 0; node < spec_.nodes; ++node) {
    const int base = node * gpn;
    const int lbase = static_cast<int>(links_.size());
    node_link_base_[node] = lbase;
    const bool first = node == 0;
    if (spec_.intra == Fabric::kNVLinkMesh) {
      for (int a = 0; a < gpn; ++a) {
        for (int b = a + 1; b < gpn; ++b) {
          const int l = add_duplex(base + a, base + b, spec_.intra_GBps, spec_.intra_latency_ns);
          if (first) {
            intra_local_[a * gpn + b] = l - lbase;
            intra_local_[b * gpn + a] = l + 1 - lbase;
          }
        }
      }
    } else {
      for (int a = 0; a < gpn; ++a) {
        const int l =
            add_duplex(base + a, node_switch_[node], spec_.intra_GBps, spec_.intra_latency_ns);
        if (first) intra_local_[a] = l - lbase;
      }
    }
    for (int i = 0; i < n_nics; ++i) {
      const NicSpec& nic = spec_.nics[i];
      const int nv = nic_vertex_[node * n_nics + i];
      for (int local : nic.gpus) {
        const int l = add_duplex(base + local, nv, nic.GBps, nic.latency_ns);
        if (first) nic_local_[local] = l - lbase;
      }
      // Half the switch latency on each side, so one crossing adds switch_latency_ns.
      const int l = add_duplex(nv, network_switch_, nic.GBps, spec_.switch_latency_ns / 2);
      if (first) uplink_local_[i] = l - lbase;
    }
  }
}

const Topology::Graph& Topology::graph() const {
  std::lock_guard<std::mutex> lock(*graph_mu_);
  if (!graph_) {
    auto gr = std::make_unique<Graph>();
    gr->g = Graph::Adjacency(static_cast<size_t>(vertex_count()));
    for (size_t l = 0; l < links_.size(); ++l) {
      boost::add_edge(static_cast<size_t>(links_[l].from), static_cast<size_t>(links_[l].to),
                      EdgeProps{static_cast<int>(l), Dist{1, links_[l].latency_ns}}, gr->g);
    }
    graph_ = std::move(gr);
  }
  return *graph_;
}

int Topology::node_switch_vertex(int node) const {
  if (node < 0 || node >= spec_.nodes) {
    throw std::out_of_range("node " + std::to_string(node) + " out of range 0.." +
                            std::to_string(spec_.nodes - 1));
  }
  return node_switch_[node];
}

int Topology::nic_vertex(int node, int nic) const {
  if (network_switch_ < 0) return -1;
  const int n_nics = static_cast<int>(spec_.nics.size());
  if (node < 0 || node >= spec_.nodes || nic < 0 || nic >= n_nics) {
    throw std::out_of_range("NIC " + std::to_string(nic) + " of node " + std::to_string(node) +
                            " out of range");
  }
  return nic_vertex_[node * n_nics + nic];
}

int Topology::nic_of(int gpu) const {
  check_rank(gpu, "GPU");
  return gpu_nic_.empty() ? -1 : gpu_nic_[local_of(gpu)];
}

void Topology::check_rank(int gpu, const char* what) const {
  if (gpu < 0 || gpu >= gpus()) {
    throw std::out_of_range(std::string(what) + " rank " + std::to_string(gpu) +
                            " out of range 0.." + std::to_string(gpus() - 1) + " of topology '" +
                            spec_.name + "'");
  }
}

// ---- Topology: routes ----------------------------------------------------------------------

namespace {

// Hop count and latency of `links` in route order, as the Dijkstra sums them.
void finish_route(Route& r, const std::vector<Link>& links) {
  r.bottleneck_GBps = std::numeric_limits<double>::infinity();
  for (int l : r.links) {
    r.latency_ns += links[l].latency_ns;
    r.bottleneck_GBps = std::min(r.bottleneck_GBps, links[l].GBps);
  }
}

}  // namespace

Route Topology::reference_route(int src, int dst) const {
  check_rank(src, "source GPU");
  check_rank(dst, "destination GPU");
  Route r;
  if (src == dst) return r;
  const auto& g = graph().g;
  const size_t n_vertices = boost::num_vertices(g);
  std::vector<Dist> dist(n_vertices, kInfinity);
  boost::dijkstra_shortest_paths(g, static_cast<size_t>(src),
                                 boost::weight_map(boost::get(&EdgeProps::weight, g))
                                     .distance_map(boost::make_iterator_property_map(
                                         dist.begin(), boost::get(boost::vertex_index, g)))
                                     .distance_compare(DistLess{})
                                     .distance_combine(DistPlus{})
                                     .distance_inf(kInfinity)
                                     .distance_zero(Dist{0, 0.0}));
  if (dist[dst].hops == kInfinity.hops) {
    throw std::runtime_error("topology '" + spec_.name + "': no path from " + vertex_name_[src] +
                             " to " + vertex_name_[dst]);
  }
  // Per vertex, the predecessor on a shortest path with the lowest vertex id (then link id).
  std::vector<int> pred_link(n_vertices, -1);
  for (auto [it, end] = boost::edges(g); it != end; ++it) {
    const int u = static_cast<int>(boost::source(*it, g));
    const int v = static_cast<int>(boost::target(*it, g));
    if (dist[u].hops == kInfinity.hops || v == src) continue;
    const EdgeProps& e = g[*it];
    const Dist via = DistPlus{}(dist[u], e.weight);
    if (via.hops != dist[v].hops || !same_latency(via.latency_ns, dist[v].latency_ns)) continue;
    const int cur = pred_link[v];
    if (cur < 0 || u < links_[cur].from || (u == links_[cur].from && e.link < cur)) {
      pred_link[v] = e.link;
    }
  }
  std::vector<int> back;  // links from dst back to src
  for (int v = dst; v != src; v = links_[pred_link[v]].from) back.push_back(pred_link[v]);
  r.links.assign(back.rbegin(), back.rend());
  finish_route(r, links_);
  return r;
}

// The shortest paths of the graph build() makes, by case (the reference is reference_route):
// - same node, NVLink mesh: the direct link (1 hop; every other path is longer);
// - same node, switch fabric: gpu -> node switch -> gpu (2 hops), unless both GPUs use one NIC
//   and its two hops are strictly faster (the other 2-hop path; on equal latency the lower
//   predecessor vertex wins, and the node switch is numbered before the node's NICs);
// - other node: gpu -> own NIC -> network switch -> peer's NIC -> peer (4 hops, unique: a GPU
//   touches the network only through its own NIC).
Route Topology::route(int src, int dst) const {
  check_rank(src, "source GPU");
  check_rank(dst, "destination GPU");
  Route r;
  if (src == dst) return r;
  const int gpn = spec_.gpus_per_node;
  const int sn = src / gpn, dn = dst / gpn, sl = src % gpn, dl = dst % gpn;
  if (sn == dn) {
    const int base = node_link_base_[sn];
    if (spec_.intra == Fabric::kNVLinkMesh) {
      r.links = {base + intra_local_[sl * gpn + dl]};
    } else {
      r.links = {base + intra_local_[sl], base + intra_local_[dl] + 1};
      if (!gpu_nic_.empty() && gpu_nic_[sl] == gpu_nic_[dl]) {
        const int up = base + nic_local_[sl], down = base + nic_local_[dl] + 1;
        const double via_switch =
            0.0 + links_[r.links[0]].latency_ns + links_[r.links[1]].latency_ns;
        const double via_nic = 0.0 + links_[up].latency_ns + links_[down].latency_ns;
        if (via_nic < via_switch && !same_latency(via_nic, via_switch)) r.links = {up, down};
      }
    }
  } else {
    const std::array<int, 2> out = route_out(src), in = route_in(dst);
    r.links = {out[0], out[1], in[0], in[1]};
  }
  finish_route(r, links_);
  return r;
}

std::array<int, 2> Topology::route_out(int gpu) const {
  check_rank(gpu, "source GPU");
  if (gpu_nic_.empty()) throw std::logic_error("Topology::route_out: a single node has no NICs");
  const int gpn = spec_.gpus_per_node;
  const int b = node_link_base_[gpu / gpn], l = gpu % gpn;
  return {b + nic_local_[l], b + uplink_local_[gpu_nic_[l]]};
}

std::array<int, 2> Topology::route_in(int gpu) const {
  check_rank(gpu, "destination GPU");
  if (gpu_nic_.empty()) throw std::logic_error("Topology::route_in: a single node has no NICs");
  const int gpn = spec_.gpus_per_node;
  const int b = node_link_base_[gpu / gpn], l = gpu % gpn;
  return {b + uplink_local_[gpu_nic_[l]] + 1, b + nic_local_[l] + 1};
}

void Topology::compute_all_routes() const {
  for (int s = 0; s < gpus(); ++s) {
    for (int d = 0; d < gpus(); ++d) route(s, d);
  }
}

}  // namespace masep::topology
