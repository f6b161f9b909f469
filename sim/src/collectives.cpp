#include "masep/sim/collectives.hpp"

#include <stdexcept>

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
    case CollAlgorithm::kRing:
      return kind == plan::OpKind::kAllReduce ? 2 * (n - 1) : n - 1;
  }
  return 0;
}

void CollectivePlan::phase_flows(int p, std::vector<PhaseFlow>& out) const {
  const std::vector<int>& r = *ring_gpus;
  const int n = static_cast<int>(r.size());
  switch (algorithm) {
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

}  // namespace masep::sim
