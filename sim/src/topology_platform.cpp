// The Topology-facing entry points, kept in their own object so that code using only
// hand-made Platforms (tests, benchmarks) does not link the topology graph.
#include "masep/sim/platform.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/topology/topology.hpp"

#include <utility>

namespace masep::sim {

Platform Platform::from_topology(const topology::Topology& topo) {
  std::vector<PlatformLink> links;
  links.reserve(topo.links().size());
  for (const topology::Link& l : topo.links()) links.push_back({l.GBps, l.latency_ns});
  const topology::Topology* t = &topo;
  return Platform(topo.spec().gpu, topo.gpus(), topo.spec().gpus_per_node, std::move(links),
                  [t](int src, int dst) {
                    topology::Route r = t->route(src, dst);
                    return PlatformRoute{std::move(r.links), r.latency_ns};
                  });
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
