#include "masep/sim/platform.hpp"

#include <stdexcept>
#include <string>

namespace masep::sim {

Platform::Platform(topology::GpuSpec gpu, int gpus, int gpus_per_node,
                   std::vector<PlatformLink> links, RouteSource routes)
    : gpu_(std::move(gpu)),
      gpus_(gpus),
      gpus_per_node_(gpus_per_node),
      links_(std::move(links)),
      source_(std::move(routes)) {
  if (gpus_ <= 0 || gpus_per_node_ <= 0) {
    throw std::invalid_argument("Platform: gpus and gpus_per_node must be positive");
  }
  for (size_t l = 0; l < links_.size(); ++l) {
    if (!(links_[l].GBps > 0) || !(links_[l].latency_ns >= 0)) {
      throw std::invalid_argument("Platform: link " + std::to_string(l) +
                                  " needs GBps > 0 and latency_ns >= 0");
    }
  }
}

Platform Platform::star(topology::GpuSpec gpu, int gpus, int gpus_per_node, double GBps,
                        double latency_ns) {
  std::vector<PlatformLink> links(static_cast<size_t>(2 * gpus), PlatformLink{GBps, latency_ns});
  return Platform(std::move(gpu), gpus, gpus_per_node, std::move(links),
                  [latency_ns](int src, int dst) {
                    return PlatformRoute{{2 * src, 2 * dst + 1}, 2 * latency_ns};
                  });
}

const PlatformRoute& Platform::route(int src, int dst) const {
  if (src < 0 || src >= gpus_ || dst < 0 || dst >= gpus_) {
    throw std::out_of_range("Platform::route: GPU " +
                            std::to_string(src < 0 || src >= gpus_ ? src : dst) +
                            " is outside the platform's " + std::to_string(gpus_) + " GPUs");
  }
  const uint64_t key = static_cast<uint64_t>(src) * static_cast<uint64_t>(gpus_) + dst;
  if (const auto it = route_index_.find(key); it != route_index_.end()) return routes_[it->second];
  PlatformRoute r = source_(src, dst);
  if (src != dst && r.links.empty()) {
    throw std::runtime_error("no route from GPU " + std::to_string(src) + " to GPU " +
                             std::to_string(dst));
  }
  for (int l : r.links) {
    if (l < 0 || l >= static_cast<int>(links_.size())) {
      throw std::runtime_error("route from GPU " + std::to_string(src) + " to GPU " +
                               std::to_string(dst) + " names an unknown link");
    }
  }
  routes_.push_back(std::move(r));
  route_index_.emplace(key, static_cast<int32_t>(routes_.size() - 1));
  return routes_.back();
}

void Platform::set_route_halves(std::vector<std::array<int, 2>> out,
                                std::vector<std::array<int, 2>> in) {
  if (out.size() != static_cast<size_t>(gpus_) || in.size() != static_cast<size_t>(gpus_)) {
    throw std::invalid_argument("Platform::set_route_halves: one entry per GPU needed");
  }
  for (const auto* v : {&out, &in}) {
    for (const std::array<int, 2>& h : *v) {
      for (int l : h) {
        if (l < 0 || l >= static_cast<int>(links_.size())) {
          throw std::invalid_argument("Platform::set_route_halves: link " + std::to_string(l) +
                                      " out of range");
        }
      }
    }
  }
  out_half_ = std::move(out);
  in_half_ = std::move(in);
}

void Platform::scale_bandwidth(double factor) {
  if (!(factor > 0)) throw std::invalid_argument("Platform::scale_bandwidth: factor must be > 0");
  for (PlatformLink& l : links_) l.GBps *= factor;
}

}  // namespace masep::sim
