// The fluid network tier (fluid_network.hpp) against the flow tier (network_model.hpp): equal
// where nothing contends or equal flows share one bottleneck, and its documented queueing
// where phases overlap.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "masep/sim/fluid_network.hpp"
#include "masep/sim/network_model.hpp"

namespace masep::sim {
namespace {

struct Done {
  int64_t time;
  uint32_t tag;
  bool operator==(const Done& o) const { return time == o.time && tag == o.tag; }
};

template <class Net>
std::vector<Done> run_all(Net& net) {
  std::vector<Done> out;
  std::vector<uint32_t> tags;
  for (int64_t t = net.next_event_time(); t != Net::kNever; t = net.next_event_time()) {
    tags.clear();
    net.advance(t, tags);
    for (uint32_t tag : tags) out.push_back({t, tag});
  }
  return out;
}

// One flow at a time on random multi-hop routes of random capacities: both tiers give
// latency-free completion = ceil(bytes / bottleneck), bit for bit.
TEST(SimFluid, LoneFlowsEqualTheFlowTier) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> cap(1.0, 500.0), bytes(1.0, 1e8);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<double> caps(6);
    for (double& c : caps) c = cap(rng);
    NetworkModel flow(caps);
    FluidNetwork fluid(caps);
    std::vector<std::vector<int>> routes;
    int64_t now = 0;
    for (int k = 0; k < 5; ++k) {
      std::vector<int> r;
      for (int l = 0; l < 6; ++l) {
        if (rng() % 2) r.push_back(l);
      }
      if (r.empty()) r.push_back(static_cast<int>(rng() % 6));
      routes.push_back(r);
    }
    std::vector<Done> a, b;
    for (size_t k = 0; k < routes.size(); ++k) {  // sequential: each starts after the last ends
      const double by = bytes(rng);
      flow.start_flow(now, routes[k], by, static_cast<uint32_t>(k));
      fluid.start_flow(now, routes[k], by, static_cast<uint32_t>(k));
      const auto da = run_all(flow), db = run_all(fluid);
      ASSERT_EQ(da.size(), 1u);
      ASSERT_EQ(da, db) << "trial " << trial << " flow " << k;
      now = da[0].time + static_cast<int64_t>(rng() % 3);  // sometimes the very next ns
    }
  }
}

// Flows on disjoint links at overlapping times do not interact in either tier.
TEST(SimFluid, DisjointConcurrentFlowsEqualTheFlowTier) {
  const std::vector<double> caps{10, 20, 30, 40};
  NetworkModel flow(caps);
  FluidNetwork fluid(caps);
  const std::vector<std::vector<int>> routes{{0, 1}, {2}, {3}};
  for (int k = 0; k < 3; ++k) {
    flow.start_flow(0, routes[k], 1000.0 * (k + 1), static_cast<uint32_t>(k));
    fluid.start_flow(0, routes[k], 1000.0 * (k + 1), static_cast<uint32_t>(k));
  }
  const auto a = run_all(flow), b = run_all(fluid);
  EXPECT_EQ(a, b);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[0].time, 67);  // 2000 / 30 = 66.7 -> 67 (flow 1); 3000 / 40 = 75; 1000 / 10
}

// n equal flows that start together on one shared bottleneck: max-min gives each capacity / n,
// fluid drains n · bytes at capacity; both end at n · bytes / capacity.
TEST(SimFluid, EqualFlowsOnOneBottleneckEqualTheFlowTier) {
  for (int n = 1; n <= 12; ++n) {
    const std::vector<double> caps{50, 400, 25};
    NetworkModel flow(caps);
    FluidNetwork fluid(caps);
    std::vector<std::vector<int>> routes(static_cast<size_t>(n), std::vector<int>{1, 0});
    for (int k = 0; k < n; ++k) {
      flow.start_flow(1000, routes[k], 4096, static_cast<uint32_t>(k));
      fluid.start_flow(1000, routes[k], 4096, static_cast<uint32_t>(k));
    }
    const auto a = run_all(flow), b = run_all(fluid);
    EXPECT_EQ(a, b) << n;
    EXPECT_EQ(b.back().time, 1000 + (4096 * n + 49) / 50) << n;
  }
}

// Documented differences: a flow that starts while another holds the link queues behind its
// backlog (first-come first-drained), where max-min shares; the link drains at the same time.
TEST(SimFluid, LaterPhaseQueuesBehindTheBacklog) {
  const std::vector<double> caps{10};
  const std::vector<int> route{0};
  FluidNetwork fluid(caps);
  NetworkModel flow(caps);
  for (auto* f : {&fluid}) f->start_flow(0, route, 1000, 1);
  flow.start_flow(0, route, 1000, 1);
  std::vector<uint32_t> tags;
  EXPECT_EQ(fluid.next_event_time(), 100);
  EXPECT_EQ(flow.next_event_time(), 100);
  // At t = 50 a second flow of 500 bytes: fluid waits 50 ns of backlog then 50 ns of its own.
  fluid.start_flow(50, route, 500, 2);
  flow.start_flow(50, route, 500, 2);
  const auto b = run_all(fluid), a = run_all(flow);
  EXPECT_EQ(b, (std::vector<Done>{{100, 1}, {150, 2}}));
  EXPECT_EQ(a, (std::vector<Done>{{150, 1}, {150, 2}}));  // shared 5 + 5 bytes/ns from t = 50
  EXPECT_EQ(fluid.active_flows(), 0);
}

// Unequal flows of one phase on one link share it like max-min: the smaller ends when it has
// had its equal share, the larger when the link has drained.
TEST(SimFluid, OnePhaseSharesALinkLikeMaxMin) {
  FluidNetwork fluid({10.0});
  NetworkModel flow({10.0});
  const std::vector<int> route{0};
  for (uint32_t k = 0; k < 3; ++k) {
    const double bytes = k == 1 ? 900 : 100 + 50 * k;  // 100, 900, 200
    fluid.start_flow(0, route, bytes, k);
    flow.start_flow(0, route, bytes, k);
  }
  const auto b = run_all(fluid);
  EXPECT_EQ(b, (std::vector<Done>{{30, 0}, {50, 2}, {120, 1}}));  // 3·100, 100 + 2·200, all
  EXPECT_EQ(b, run_all(flow));
}

// Where flows meet on several links the fluid tier is not max-min: each link is shared as if
// alone, and a flow ends at the latest of its links. Flow 0 crosses links 0 and 1, flow 1
// link 0, flow 2 link 1 (all 1000 bytes, 10 bytes/ns): fluid ends all three at 200 ns; max-min
// too (every link carries two equal flows); with a faster link 1 flow 2 still waits for flow
// 0's equal share there (fluid 200 + 0) while max-min gives it the rest of link 1.
TEST(SimFluid, FlowsMeetingOnSeveralLinks) {
  FluidNetwork fluid({10.0, 30.0});
  NetworkModel flow({10.0, 30.0});
  const std::vector<int> both{0, 1}, first{0}, second{1};
  for (auto* n : {&fluid}) {
    n->start_flow(0, both, 1000, 0);
    n->start_flow(0, first, 1000, 1);
    n->start_flow(0, second, 1000, 2);
  }
  flow.start_flow(0, both, 1000, 0);
  flow.start_flow(0, first, 1000, 1);
  flow.start_flow(0, second, 1000, 2);
  // Fluid: link 0 serves two flows of 1000 at 10 -> both end at 200; link 1 serves two of
  // 1000 at 30 -> both at 66.7 -> 67; flow 0 ends at max(200, 67).
  EXPECT_EQ(run_all(fluid), (std::vector<Done>{{67, 2}, {200, 0}, {200, 1}}));
  // Max-min: flows 0 and 1 get 5 each (link 0), flow 2 gets 30 - 5 = 25 -> 40 ns; then flows
  // 0 and 1 keep 5 each until 200.
  EXPECT_EQ(run_all(flow), (std::vector<Done>{{40, 2}, {200, 0}, {200, 1}}));
}

// Completions leave in (time, flow id) order across overlapping phases (the merge of per-phase
// sorted runs), also for flows too long for the packed sort keys (> 2^40 ns after their phase
// start), with flow ids reused; the links passed in need not outlive start_flow.
TEST(SimFluid, CompletionsInTimeThenFlowIdOrder) {
  std::mt19937 rng(11);
  std::vector<double> caps(8, 10.0);
  caps[7] = 1e-3;  // a slow link: 1e10 bytes take 1e13 ns > 2^40
  FluidNetwork net(caps);
  std::vector<int> id_of_tag;
  std::vector<uint32_t> done;
  int64_t now = 0;
  size_t completed = 0;
  for (int phase = 0; phase < 200; ++phase) {
    const int n = 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) {
      std::vector<int> route{static_cast<int>(rng() % 7)};
      if (rng() % 2) route.push_back(static_cast<int>(rng() % 7));
      const bool slow = rng() % 50 == 0;
      if (slow) route.push_back(7);
      const double bytes = slow ? 1e10 : static_cast<double>(1 + rng() % 4) * 1000.0;
      const auto tag = static_cast<uint32_t>(id_of_tag.size());
      id_of_tag.push_back(net.start_flow(now, route, bytes, tag));
    }
    // Advance to a random point, checking the order of what completes.
    const int64_t until = now + static_cast<int64_t>(rng() % 1500);
    int64_t last_t = -1;
    int last_id = -1;
    for (int64_t t = net.next_event_time(); t <= until; t = net.next_event_time()) {
      done.clear();
      net.advance(t, done);
      ASSERT_FALSE(done.empty());
      ASSERT_GE(t, last_t);
      if (t != last_t) last_id = -1;
      for (uint32_t tag : done) {
        ASSERT_GT(id_of_tag[tag], last_id) << "phase " << phase << " t " << t;
        last_id = id_of_tag[tag];
      }
      last_t = t;
      completed += done.size();
    }
    now = until;
  }
  int64_t last_t = -1;
  for (int64_t t = net.next_event_time(); t != FluidNetwork::kNever; t = net.next_event_time()) {
    ASSERT_GT(t, last_t);
    done.clear();
    net.advance(t, done);
    completed += done.size();
    last_t = t;
  }
  EXPECT_GT(last_t, int64_t{1} << 40);  // the unpacked keys were used
  EXPECT_EQ(completed, id_of_tag.size());
  EXPECT_EQ(net.active_flows(), 0);
}

TEST(SimFluid, RejectsBadInput) {
  EXPECT_THROW(FluidNetwork({10.0, 0.0}), std::invalid_argument);
  FluidNetwork fluid({10.0});
  const std::vector<int> none, bad{3}, ok{0};
  EXPECT_THROW(fluid.start_flow(0, none, 10, 0), std::invalid_argument);
  EXPECT_THROW(fluid.start_flow(0, ok, 0, 0), std::invalid_argument);
  EXPECT_THROW(fluid.start_flow(0, bad, 10, 0), std::out_of_range);
}

}  // namespace
}  // namespace masep::sim
