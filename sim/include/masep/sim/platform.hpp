// Platform: the simulator's sealed view of a cluster — the GPU spec, the directed links with
// bandwidth and latency, and routes between GPUs. Built from a topology::Topology (the normal
// path) or by hand (unit tests, synthetic benchmarks). Routes are fetched from the source on
// first use and cached per pair actually used (a hash map, so memory grows with the pairs a
// program uses, not with GPUs²).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "masep/topology/gpu_spec.hpp"

namespace masep::topology {
class Topology;
}

namespace masep::sim {

/// One directed link: bandwidth in GB/s (== bytes/ns) and one-way latency in ns.
struct PlatformLink {
  double GBps = 0;
  double latency_ns = 0;
};

/// Links crossed from one GPU to another, in order, and their summed latency (ns).
struct PlatformRoute {
  std::vector<int> links;
  double latency_ns = 0;
};

class Platform {
 public:
  /// Returns the route from GPU src to GPU dst (src != dst); throws std::runtime_error when
  /// there is none. Called once per pair, during setup.
  using RouteSource = std::function<PlatformRoute(int src, int dst)>;

  Platform(topology::GpuSpec gpu, int gpus, int gpus_per_node, std::vector<PlatformLink> links,
           RouteSource routes);

  /// A view of `topo` (which must outlive the Platform): its links and routes.
  static Platform from_topology(const topology::Topology& topo);

  /// A hand-made star: every GPU has one up and one down link of `GBps` and `latency_ns` to
  /// a switch (links 2g and 2g+1 for GPU g), so a route is 2 hops. For tests and benchmarks.
  static Platform star(topology::GpuSpec gpu, int gpus, int gpus_per_node, double GBps,
                       double latency_ns);

  const topology::GpuSpec& gpu() const { return gpu_; }
  int gpus() const { return gpus_; }
  int gpus_per_node() const { return gpus_per_node_; }
  int node_of(int gpu) const { return gpu / gpus_per_node_; }
  const std::vector<PlatformLink>& links() const { return links_; }

  /// Route from `src` to `dst` (src != dst), cached; the reference stays valid for the
  /// Platform's lifetime. Throws std::out_of_range for a GPU outside [0, gpus()), and what
  /// the RouteSource throws when there is no path.
  const PlatformRoute& route(int src, int dst) const;

  /// Multiplies every link's bandwidth by `factor` (> 0); for what-if runs and tests.
  void scale_bandwidth(double factor);

  /// Inter-node routes in two halves (from_topology sets them on a multi-node cluster, from
  /// Topology::route_out / route_in): for GPUs on different nodes, route(src, dst).links is
  /// out(src) followed by in(dst), and its latency the four links' latencies summed in that
  /// order from 0. Lets the simulator time inter-node transfers without a per-pair look-up.
  /// `out` and `in` have one entry per GPU with link ids in range (std::invalid_argument);
  /// the caller guarantees they agree with the RouteSource (from_topology checks one pair
  /// per GPU each way).
  void set_route_halves(std::vector<std::array<int, 2>> out, std::vector<std::array<int, 2>> in);
  bool has_route_halves() const { return !out_half_.empty(); }
  const std::array<int, 2>& route_out(int gpu) const { return out_half_[gpu]; }
  const std::array<int, 2>& route_in(int gpu) const { return in_half_[gpu]; }

 private:
  topology::GpuSpec gpu_;
  int gpus_ = 0;
  int gpus_per_node_ = 1;
  std::vector<PlatformLink> links_;
  RouteSource source_;
  std::vector<std::array<int, 2>> out_half_, in_half_;         // per GPU; empty = not known
  mutable std::unordered_map<uint64_t, int32_t> route_index_;  // src * gpus + dst -> routes_
  mutable std::deque<PlatformRoute> routes_;  // deque: references stay valid on growth
};

}  // namespace masep::sim
