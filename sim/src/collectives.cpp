#include "masep/sim/collectives.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <utility>

#include "masep/sim/platform.hpp"

namespace masep::sim {

CollAlgorithm parse_allreduce_algorithm(const std::string& name, bool& is_auto) {
  is_auto = false;
  if (name == "ring") return CollAlgorithm::kRing;
  if (name == "tree") return CollAlgorithm::kTree;
  if (name == "hierarchical") return CollAlgorithm::kHierarchical;
  if (name == "auto") {
    is_auto = true;
    return CollAlgorithm::kRing;
  }
  throw std::invalid_argument("allreduce_algorithm '" + name +
                              "' is not one of ring, tree, hierarchical, auto");
}

namespace {
int floor_log2(int n) {
  int d = 0;
  while ((2 << d) <= n) ++d;
  return n >= 2 ? d : 0;
}
int depth_of(int i) { return floor_log2(i + 1); }

// kNccl flow pattern of an all-reduce / all-gather / reduce-scatter (collectives.hpp), with
// bytes = weight. Members are node-major (ring_gpus is sorted), so a node's are contiguous.
void nccl_ring_pattern(const std::vector<int>& r, int gpus_per_node, std::vector<PhaseFlow>& out) {
  std::vector<std::pair<size_t, size_t>> nodes;  // [begin, end) per node
  for (size_t i = 0; i < r.size(); ++i) {
    if (i == 0 || r[i] / gpus_per_node != r[i - 1] / gpus_per_node) nodes.push_back({i, i});
    nodes.back().second = i + 1;
  }
  const size_t k = nodes.size();
  for (size_t nd = 0; nd < k; ++nd) {
    const auto [b, e] = nodes[nd];
    const size_t g = e - b;
    const double intra = k == 1 ? 1.0 / static_cast<double>(g - 1) : 1.0 / static_cast<double>(g);
    for (size_t j = b; j < e; ++j) {
      if (g > 1) {
        for (size_t m = b; m < e; ++m) {
          if (m != j) out.push_back({r[j], r[m], intra});
        }
      }
      if (k > 1) {
        const auto [nb, ne] = nodes[(nd + 1) % k];
        out.push_back({r[j], r[nb + (j - b) % (ne - nb)], 1.0 / static_cast<double>(g)});
      }
    }
  }
}
}  // namespace

CollectivePlan make_collective_plan(plan::OpKind kind, const std::vector<int>& ring_gpus,
                                    const std::vector<int>& group_gpus,
                                    const std::vector<std::vector<int64_t>>* matrix, double bytes,
                                    int gpus_per_node, CollAlgorithm algorithm, bool is_auto) {
  CollectivePlan p;
  p.kind = kind;
  p.ring_gpus = &ring_gpus;
  p.group_gpus = &group_gpus;
  p.matrix = (matrix != nullptr && !matrix->empty()) ? matrix : nullptr;
  p.bytes = bytes;
  p.gpus_per_node = gpus_per_node;
  switch (kind) {
    case plan::OpKind::kAllToAll:
      p.algorithm = CollAlgorithm::kAllToAll;
      break;
    case plan::OpKind::kAllGather:
    case plan::OpKind::kReduceScatter:
      p.algorithm = CollAlgorithm::kRing;
      break;
    case plan::OpKind::kAllReduce: {
      // Nodes spanned, and members per node (ring_gpus is sorted, so nodes are contiguous).
      int k = 0, g = -1, run = 0, prev_node = -1;
      bool even = true;
      for (int gpu : ring_gpus) {
        const int node = gpu / gpus_per_node;
        if (node != prev_node) {
          if (prev_node >= 0) {
            if (g < 0)
              g = run;
            else if (g != run)
              even = false;
          }
          ++k;
          run = 0;
          prev_node = node;
        }
        ++run;
      }
      if (prev_node >= 0) {
        if (g < 0)
          g = run;
        else if (g != run)
          even = false;
      }
      CollAlgorithm a =
          is_auto ? (k > 1 ? CollAlgorithm::kHierarchical : CollAlgorithm::kRing) : algorithm;
      if (a == CollAlgorithm::kHierarchical && !even) a = CollAlgorithm::kRing;
      p.algorithm = a;
      p.hier_g = g;
      p.hier_k = k;
      break;
    }
    default:
      throw std::invalid_argument("make_collective_plan: not a collective kind");
  }
  return p;
}

int CollectivePlan::phases() const {
  const int n = static_cast<int>(ring_gpus->size());
  if (n <= 1) return 0;
  switch (algorithm) {
    case CollAlgorithm::kAllToAll:
      return 1;
    case CollAlgorithm::kTree:
      return 2 * floor_log2(n);
    case CollAlgorithm::kHierarchical:
      return 2 * (hier_g - 1) + 2 * (hier_k - 1);
    case CollAlgorithm::kNccl:
      return 1;
    case CollAlgorithm::kRing:
      return kind == plan::OpKind::kAllReduce ? 2 * (n - 1) : n - 1;
  }
  return 0;
}

void CollectivePlan::phase_flows(int p, std::vector<PhaseFlow>& out) const {
  const std::vector<int>& r = *ring_gpus;
  const int n = static_cast<int>(r.size());
  switch (algorithm) {
    case CollAlgorithm::kNccl: {
      const size_t first = out.size();
      if (kind == plan::OpKind::kAllToAll) {
        CollectivePlan uniform = *this;
        uniform.algorithm = CollAlgorithm::kAllToAll;
        uniform.phase_flows(0, out);
      } else {
        nccl_ring_pattern(r, gpus_per_node, out);
      }
      for (size_t i = first; i < out.size(); ++i) out[i].bytes *= flow_scale;
      return;
    }
    case CollAlgorithm::kRing: {
      const double b = bytes / n;
      for (int i = 0; i < n; ++i) out.push_back({r[i], r[(i + 1) % n], b});
      return;
    }
    case CollAlgorithm::kAllToAll: {
      const std::vector<int>& gg = *group_gpus;
      const int m = static_cast<int>(gg.size());
      for (int i = 0; i < m; ++i) {
        for (int j = 0; j < m; ++j) {
          if (i == j) continue;
          const double b = matrix != nullptr ? static_cast<double>((*matrix)[i][j]) : bytes / m;
          if (b > 0) out.push_back({gg[i], gg[j], b});
        }
      }
      return;
    }
    case CollAlgorithm::kTree: {
      const int d = floor_log2(n);
      if (p < d) {  // reduce: level (d - p) sends up
        const int level = d - p;
        for (int i = 1; i < n; ++i) {
          if (depth_of(i) == level) out.push_back({r[i], r[(i - 1) / 2], bytes});
        }
      } else {  // broadcast: level (p - d) sends down
        const int level = p - d;
        for (int i = 1; i < n; ++i) {
          if (depth_of(i) == level + 1) out.push_back({r[(i - 1) / 2], r[i], bytes});
        }
      }
      return;
    }
    case CollAlgorithm::kHierarchical: {
      const int g = hier_g, k = hier_k;
      const int intra = g - 1, inter = 2 * (k - 1);
      if (p < intra || p >= intra + inter) {  // intra-node ring (reduce-scatter / all-gather)
        const double b = bytes / g;
        for (int node = 0; node < k; ++node) {
          for (int i = 0; i < g; ++i) {
            out.push_back({r[node * g + i], r[node * g + (i + 1) % g], b});
          }
        }
      } else {  // inter-node ring all-reduce of the S/g shard among same local positions
        const double b = bytes / g / k;
        for (int i = 0; i < g; ++i) {
          for (int node = 0; node < k; ++node) {
            out.push_back({r[node * g + i], r[((node + 1) % k) * g + i], b});
          }
        }
      }
      return;
    }
  }
}

void apply_nccl_model(CollectivePlan& plan, const NcclModel& model, const Platform& platform,
                      double call_overhead_ns) {
  const int n = static_cast<int>(plan.ring_gpus->size());
  plan.nccl = model.choose(plan.kind, plan.bytes);
  plan.algorithm = CollAlgorithm::kNccl;
  plan.flow_scale = 1;
  if (n <= 1) {
    plan.alpha_ns = static_cast<int64_t>(std::ceil(call_overhead_ns));
    return;
  }
  // The pattern at unit scale; for all-to-all the uniform matrix (S/n per pair) stands for
  // the model's S, and the scale found from it applies to the real matrix.
  std::vector<PhaseFlow> flows;
  CollectivePlan unit = plan;
  if (plan.kind == plan::OpKind::kAllToAll) unit.matrix = nullptr;
  unit.phase_flows(0, flows);
  // Per-link load (sorted (link, load) pairs), the busiest link's time and the largest route
  // latency.
  std::vector<std::pair<int, double>> load;
  double max_latency = 0;
  for (const PhaseFlow& f : flows) {
    if (f.src_gpu == f.dst_gpu) continue;
    const PlatformRoute& route = platform.route(f.src_gpu, f.dst_gpu);
    max_latency = std::max(max_latency, std::ceil(route.latency_ns));
    for (int l : route.links) load.push_back({l, f.bytes});
  }
  std::sort(load.begin(), load.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  double idle_ns = 0;
  for (size_t i = 0; i < load.size();) {
    double sum = 0;
    size_t j = i;
    for (; j < load.size() && load[j].first == load[i].first; ++j) sum += load[j].second;
    idle_ns = std::max(idle_ns, sum / platform.links()[static_cast<size_t>(load[i].first)].GBps);
    i = j;
  }
  const double bw_ns = plan.nccl.time_ns - plan.nccl.latency_ns;  // S / bandwidth
  plan.flow_scale = idle_ns > 0 ? bw_ns / idle_ns : 0;
  const double alpha = plan.nccl.latency_ns + call_overhead_ns - max_latency;
  plan.alpha_ns = static_cast<int64_t>(std::ceil(std::max(0.0, alpha)));
}

}  // namespace masep::sim
