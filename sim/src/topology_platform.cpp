// The Topology-facing entry points, kept in their own object so that code using only
// hand-made Platforms (tests, benchmarks) does not link the topology graph.
#include "masep/sim/platform.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/topology/topology.hpp"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace masep::sim {

Platform Platform::from_topology(const topology::Topology& topo) {
  std::vector<PlatformLink> links;
  links.reserve(topo.links().size());
  for (const topology::Link& l : topo.links()) links.push_back({l.GBps, l.latency_ns});
  const topology::Topology* t = &topo;
  Platform p(topo.spec().gpu, topo.gpus(), topo.spec().gpus_per_node, std::move(links),
             [t](int src, int dst) {
               topology::Route r = t->route(src, dst);
               return PlatformRoute{std::move(r.links), r.latency_ns};
             });
  const int gpn = topo.spec().gpus_per_node, n = topo.gpus();
  if (n > gpn) {  // several nodes: inter-node routes come in halves
    std::vector<std::array<int, 2>> out(static_cast<size_t>(n)), in(static_cast<size_t>(n));
    for (int g = 0; g < n; ++g) {
      out[g] = topo.route_out(g);
      in[g] = topo.route_in(g);
    }
    // A check of the halves' promise, one pair per GPU each way (g and the same local GPU
    // of the next node).
    for (int g = 0; g < n; ++g) {
      const int h = (g + gpn) % n;
      for (const auto& [s, d] : {std::pair{g, h}, std::pair{h, g}}) {
        const topology::Route r = topo.route(s, d);
        const std::vector<int> want{out[s][0], out[s][1], in[d][0], in[d][1]};
        if (r.links != want) {
          throw std::logic_error("Platform::from_topology: route " + std::to_string(s) + " -> " +
                                 std::to_string(d) + " is not route_out + route_in");
        }
      }
    }
    p.set_route_halves(std::move(out), std::move(in));
  }
  return p;
}

SimResult simulate(const plan::Program& program, const topology::Topology& topo,
                   const SimOptions& options) {
  if (options.topology != nullptr) return simulate(program, Platform::from_topology(topo), options);
  SimOptions with_topology = options;  // the NCCL model reads the cluster description
  with_topology.topology = &topo.spec();
  return simulate(program, Platform::from_topology(topo), with_topology);
}

SimResult simulate_stream(const plan::Program& header, ChunkSource& source, ChunkSink& sink,
                          const topology::Topology& topo, const SimOptions& options) {
  if (options.topology != nullptr) {
    return simulate_stream(header, source, sink, Platform::from_topology(topo), options);
  }
  SimOptions with_topology = options;  // the NCCL model reads the cluster description
  with_topology.topology = &topo.spec();
  return simulate_stream(header, source, sink, Platform::from_topology(topo), with_topology);
}

}  // namespace masep::sim
