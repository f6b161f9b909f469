// Collective algorithms through simulate(): closed forms on a star platform where every GPU
// has an up and a down link of B = 100 B/ns and 500 ns per hop (route latency 1000 ns).
#include <gtest/gtest.h>

#include "masep/sim/collectives.hpp"
#include "masep/sim/parameters.hpp"
#include "masep/sim/simulator.hpp"
#include "masep/sim/synthetic.hpp"
#include "sim_test_util.hpp"

namespace masep::sim {
namespace {

using plan::OpKind;

constexpr double kB = 100;        // bytes/ns per link
constexpr int64_t kRoute = 1000;  // 2 hops × 500 ns

// One collective of `kind` over ranks 0..n-1 (GPU r); returns when all members ended.
int64_t time_collective(OpKind kind, int n, int64_t bytes, const std::string& alg = "ring",
                        int per_node = 0, std::vector<std::vector<int64_t>> matrix = {}) {
  ProgramBuilder b(n);
  std::vector<int32_t> ranks;
  for (int r = 0; r < n; ++r) ranks.push_back(r);
  const int g = b.group("all", ranks);
  const auto ops = b.collective(kind, g, bytes, {}, std::move(matrix));
  const plan::Program p = b.build();
  SimOptions o;
  o.allreduce_algorithm = alg;
  const SimResult r = simulate(p, testing::star(n, kB, 500, per_node), o);
  for (auto id : ops) {
    EXPECT_EQ(r.timeline.ops[id].start_ns, 0);
    EXPECT_EQ(r.timeline.ops[id].end_ns, r.timeline.makespan_ns);
  }
  return r.timeline.makespan_ns;
}

TEST(SimCollectives, RingAllReduceClosedForm) {
  // T = alpha + 2(n-1)·(route latency + S/(n·B)) = alpha + 2(n-1)/n·S/B + 2(n-1)·latency.
  const SimParams d;
  for (int n : {2, 4, 8}) {
    const int64_t S = 8'000'000;
    const int64_t want = static_cast<int64_t>(d.alpha_allreduce_ns) +
                         2 * (n - 1) * (kRoute + static_cast<int64_t>(S / n / kB));
    EXPECT_EQ(time_collective(OpKind::kAllReduce, n, S), want) << "n = " << n;
  }
}

TEST(SimCollectives, AllGatherAndReduceScatterAreNMinusOneRingPhases) {
  const SimParams d;
  const int n = 4;
  const int64_t S = 4'000'000;
  const int64_t phase = kRoute + static_cast<int64_t>(S / n / kB);
  EXPECT_EQ(time_collective(OpKind::kAllGather, n, S),
            static_cast<int64_t>(d.alpha_allgather_ns) + (n - 1) * phase);
  EXPECT_EQ(time_collective(OpKind::kReduceScatter, n, S),
            static_cast<int64_t>(d.alpha_reducescatter_ns) + (n - 1) * phase);
}

TEST(SimCollectives, AllToAllSharesEachUplinkAmongNMinusOneFlows) {
  // Each GPU's up link carries n-1 flows of S/n: time = alpha + latency + (n-1)·(S/n)/B.
  const SimParams d;
  const int n = 4;
  const int64_t S = 4'000'000;
  EXPECT_EQ(time_collective(OpKind::kAllToAll, n, S),
            static_cast<int64_t>(d.alpha_alltoall_ns) + kRoute + (n - 1) * S / n / 100);
}

TEST(SimCollectives, AllToAllUsesTheMatrix) {
  // Only 0 -> 1 carries bytes: one flow alone on its links.
  const SimParams d;
  std::vector<std::vector<int64_t>> m(3, std::vector<int64_t>(3, 0));
  m[0][1] = 1'000'000;
  EXPECT_EQ(time_collective(OpKind::kAllToAll, 3, 0, "ring", 0, m),
            static_cast<int64_t>(d.alpha_alltoall_ns) + kRoute + 10'000);
}

TEST(SimCollectives, TreeAllReduceOnFourRanks) {
  // Heap tree 0 <- {1, 2}, 1 <- {3}: reduce 3->1 (S/B), then 1,2->0 share 0's down link
  // (2S/B); broadcast 0->1,2 share 0's up link (2S/B), then 1->3 (S/B): 6·S/B + 4 latencies.
  const SimParams d;
  const int64_t S = 1'000'000;
  EXPECT_EQ(time_collective(OpKind::kAllReduce, 4, S, "tree"),
            static_cast<int64_t>(d.alpha_allreduce_ns) + 4 * kRoute + 6 * S / 100);
}

TEST(SimCollectives, HierarchicalAllReduceTwoNodesOfTwo) {
  // g = 2, k = 2: reduce-scatter S/2, inter-node ring 2 phases of S/4, all-gather S/2.
  const SimParams d;
  const int64_t S = 4'000'000;
  const int64_t want = static_cast<int64_t>(d.alpha_allreduce_ns) + 4 * kRoute +
                       (S / 2 + S / 4 + S / 4 + S / 2) / 100;
  EXPECT_EQ(time_collective(OpKind::kAllReduce, 4, S, "hierarchical", 2), want);
  EXPECT_EQ(time_collective(OpKind::kAllReduce, 4, S, "auto", 2), want);
  // "auto" inside one node is the ring.
  EXPECT_EQ(time_collective(OpKind::kAllReduce, 4, S, "auto", 4),
            time_collective(OpKind::kAllReduce, 4, S, "ring", 4));
}

TEST(SimCollectives, PhaseCounts) {
  const std::vector<int> gpus{0, 1, 2, 3, 4, 5, 6, 7};
  bool is_auto = false;
  const auto ring = make_collective_plan(OpKind::kAllReduce, gpus, gpus, nullptr, 8, 8,
                                         parse_allreduce_algorithm("ring", is_auto), false);
  EXPECT_EQ(ring.phases(), 14);
  const auto tree = make_collective_plan(OpKind::kAllReduce, gpus, gpus, nullptr, 8, 8,
                                         CollAlgorithm::kTree, false);
  EXPECT_EQ(tree.phases(), 6);  // 2·log2(8)
  const auto hier = make_collective_plan(OpKind::kAllReduce, gpus, gpus, nullptr, 8, 4,
                                         CollAlgorithm::kHierarchical, false);
  EXPECT_EQ(hier.phases(), 2 * 3 + 2 * 1);
  // Uneven nodes (3 + 1 members) fall back to the ring.
  const std::vector<int> uneven{0, 1, 2, 4};
  EXPECT_EQ(make_collective_plan(OpKind::kAllReduce, uneven, uneven, nullptr, 8, 4,
                                 CollAlgorithm::kHierarchical, false)
                .algorithm,
            CollAlgorithm::kRing);
  EXPECT_THROW(parse_allreduce_algorithm("butterfly", is_auto), std::invalid_argument);
}

TEST(SimCollectives, SingleMemberCostsAlphaOnly) {
  const SimParams d;
  EXPECT_EQ(time_collective(OpKind::kAllReduce, 1, 1'000'000),
            static_cast<int64_t>(d.alpha_allreduce_ns));
}

}  // namespace
}  // namespace masep::sim
