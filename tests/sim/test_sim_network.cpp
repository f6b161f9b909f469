// Network model closed forms: max-min fair sharing, bottlenecks, integer-ns completion.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "masep/sim/network_model.hpp"

namespace masep::sim {
namespace {

struct Done {
  int64_t time;
  uint32_t tag;
};

// Runs the model to the end, returning (time, tag) of every completion in order.
std::vector<Done> run_all(NetworkModel& net) {
  std::vector<Done> out;
  std::vector<uint32_t> tags;
  for (int64_t t = net.next_event_time(); t != NetworkModel::kNever; t = net.next_event_time()) {
    tags.clear();
    net.advance(t, tags);
    for (uint32_t tag : tags) out.push_back({t, tag});
  }
  return out;
}

TEST(SimNetwork, OneFlowOneLinkIsBytesOverBandwidth) {
  NetworkModel net({10.0});  // 10 bytes/ns = 10 GB/s
  const std::vector<int> route{0};
  net.start_flow(0, route, 1000, 7);
  const auto done = run_all(net);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].time, 100);
  EXPECT_EQ(done[0].tag, 7u);
}

TEST(SimNetwork, CompletionRoundsUp) {
  NetworkModel net({3.0});
  const std::vector<int> route{0};
  net.start_flow(0, route, 10, 1);  // 3.33 ns -> 4
  EXPECT_EQ(run_all(net)[0].time, 4);
}

TEST(SimNetwork, TwoFlowsShareALinkHalfEach) {
  NetworkModel net({10.0});
  const std::vector<int> route{0};
  const int a = net.start_flow(0, route, 1000, 1);
  const int b = net.start_flow(0, route, 1000, 2);
  EXPECT_EQ(net.next_event_time(), 200);
  EXPECT_DOUBLE_EQ(net.rate(a), 5.0);
  EXPECT_DOUBLE_EQ(net.rate(b), 5.0);
  const auto done = run_all(net);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].time, 200);
  EXPECT_EQ(done[1].time, 200);
}

TEST(SimNetwork, RatesChangeWhenFlowsStartAndEnd) {
  // A (1000 B) alone for 50 ns at 10 B/ns -> 500 left; B (250 B) joins: both at 5 B/ns;
  // B ends at 100; A has 250 left and finishes alone at 10 B/ns: 125.
  NetworkModel net({10.0});
  const std::vector<int> route{0};
  net.start_flow(0, route, 1000, 1);
  EXPECT_EQ(net.next_event_time(), 100);
  std::vector<uint32_t> tags;
  net.advance(50, tags);
  EXPECT_TRUE(tags.empty());
  net.start_flow(50, route, 250, 2);
  const auto done = run_all(net);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].tag, 2u);
  EXPECT_EQ(done[0].time, 100);
  EXPECT_EQ(done[1].tag, 1u);
  EXPECT_EQ(done[1].time, 125);
}

TEST(SimNetwork, ClassicMaxMinThreeFlowsTwoLinks) {
  // Link 0: 10 B/ns shared by A and B; link 1: 30 B/ns shared by A and C. Link 0 is the
  // bottleneck (10/2 < 30/2): A = B = 5; C takes the rest of link 1: 25.
  NetworkModel net({10.0, 30.0});
  const std::vector<int> ab{0, 1}, b{0}, c{1};
  const int fa = net.start_flow(0, ab, 1000, 1);
  const int fb = net.start_flow(0, b, 1000, 2);
  const int fc = net.start_flow(0, c, 1000, 3);
  net.next_event_time();
  EXPECT_DOUBLE_EQ(net.rate(fa), 5.0);
  EXPECT_DOUBLE_EQ(net.rate(fb), 5.0);
  EXPECT_DOUBLE_EQ(net.rate(fc), 25.0);
  // C ends at 40; A and B keep 5 (link 0 still binds): both end at 200.
  const auto done = run_all(net);
  ASSERT_EQ(done.size(), 3u);
  EXPECT_EQ(done[0].tag, 3u);
  EXPECT_EQ(done[0].time, 40);
  EXPECT_EQ(done[1].time, 200);
  EXPECT_EQ(done[2].time, 200);
}

TEST(SimNetwork, FlowRateIsItsBottleneckLink) {
  NetworkModel net({100.0, 10.0, 50.0});
  const std::vector<int> route{0, 1, 2};
  const int f = net.start_flow(0, route, 1000, 1);
  EXPECT_EQ(net.next_event_time(), 100);
  EXPECT_DOUBLE_EQ(net.rate(f), 10.0);
}

TEST(SimNetwork, TiedBottlenecksFreezeAtTheSameLevelAndTheRestFillsUp) {
  // Links 0 and 1 (12 B/ns) each carry three flows, one of them (E) on both and on link 2
  // (30 B/ns), which also carries F. Links 0 and 1 tie at 4 B/ns, so A, B, C, D and E get 4;
  // F takes what E leaves of link 2: 26. Max-min by hand; the solver freezes both tied links
  // in one step.
  NetworkModel net({12.0, 12.0, 30.0});
  const std::vector<int> l0{0}, l1{1}, e{0, 1, 2}, l2{2};
  const int a = net.start_flow(0, l0, 400, 1);
  const int b = net.start_flow(0, l0, 400, 2);
  const int c = net.start_flow(0, l1, 400, 3);
  const int d = net.start_flow(0, l1, 400, 4);
  const int ef = net.start_flow(0, e, 400, 5);
  const int f = net.start_flow(0, l2, 2600, 6);
  EXPECT_EQ(net.next_event_time(), 100);
  for (int x : {a, b, c, d, ef}) EXPECT_DOUBLE_EQ(net.rate(x), 4.0);
  EXPECT_DOUBLE_EQ(net.rate(f), 26.0);
  const auto done = run_all(net);
  ASSERT_EQ(done.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(done[i].time, 100) << "flow " << done[i].tag;
}

TEST(SimNetwork, SimultaneousCompletionsComeInFlowOrder) {
  // Same finish time (100 ns): completions are reported in flow-id (slot) order, whatever the
  // tags; a flow re-timed to that instant (C: 5 B/ns while sharing with D, 10 alone after D
  // ends at 40) joins in its slot's place.
  NetworkModel net({10.0, 10.0, 10.0, 10.0});
  const std::vector<int> l0{0}, l1{1}, l2{2}, l3{3};
  const int a = net.start_flow(0, l2, 1000, 30);
  const int b = net.start_flow(0, l0, 1000, 10);
  const int c = net.start_flow(0, l3, 800, 20);
  const int d = net.start_flow(0, l3, 200, 40);
  const int e = net.start_flow(0, l1, 1000, 50);
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_LT(c, e);
  const auto done = run_all(net);
  ASSERT_EQ(done.size(), 5u);
  EXPECT_EQ(done[0].time, 40);
  EXPECT_EQ(done[0].tag, 40u);
  const std::vector<uint32_t> want{30, 10, 20, 50};
  for (int i = 1; i < 5; ++i) {
    EXPECT_EQ(done[i].time, 100);
    EXPECT_EQ(done[i].tag, want[i - 1]);
  }
  (void)d;
}

TEST(SimNetwork, DisjointFlowsDoNotInteract) {
  NetworkModel net({10.0, 10.0});
  const std::vector<int> l0{0}, l1{1};
  net.start_flow(0, l0, 1000, 1);
  net.start_flow(0, l1, 500, 2);
  const auto done = run_all(net);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].time, 50);
  EXPECT_EQ(done[1].time, 100);
}

// Reference: max-min rates solved from scratch at every event (progressive filling on
// doubles), no incremental shortcuts. The model re-solves only components that changed and
// skips removals that cannot change any rate; both must give the same completion times.
std::vector<double> reference_completions(const std::vector<double>& cap,
                                          const std::vector<std::vector<int>>& routes,
                                          const std::vector<int64_t>& start,
                                          const std::vector<double>& bytes) {
  const size_t n = routes.size();
  std::vector<double> left(bytes), done(n, -1), rate(n, 0);
  double now = 0;
  for (;;) {
    std::vector<int> act;
    for (size_t f = 0; f < n; ++f) {
      if (done[f] < 0 && start[f] <= now + 1e-9) act.push_back(static_cast<int>(f));
    }
    // Progressive filling.
    std::vector<double> c(cap);
    std::vector<int> frozen(n, 0);
    size_t unfrozen = act.size();
    while (unfrozen > 0) {
      double best = 1e300;
      for (size_t l = 0; l < cap.size(); ++l) {
        int k = 0;
        for (int f : act) {
          if (!frozen[f] && std::count(routes[f].begin(), routes[f].end(), l)) ++k;
        }
        if (k > 0) best = std::min(best, c[l] / k);
      }
      for (size_t l = 0; l < cap.size(); ++l) {
        int k = 0;
        for (int f : act) {
          if (!frozen[f] && std::count(routes[f].begin(), routes[f].end(), l)) ++k;
        }
        if (k == 0 || c[l] / k > best * (1 + 1e-12)) continue;
        for (int f : act) {
          if (frozen[f] || !std::count(routes[f].begin(), routes[f].end(), l)) continue;
          frozen[f] = 1;
          --unfrozen;
          rate[f] = best;
          for (int l2 : routes[f]) c[l2] -= best;
        }
      }
    }
    double next = 1e300;
    for (size_t f = 0; f < n; ++f) {
      if (done[f] < 0 && start[f] > now + 1e-9) next = std::min(next, double(start[f]));
    }
    for (int f : act) next = std::min(next, now + left[f] / rate[f]);
    if (next >= 1e299) break;
    for (int f : act) {
      left[f] -= rate[f] * (next - now);
      if (left[f] <= 1e-6 * bytes[f]) done[f] = next;
    }
    now = next;
  }
  return done;
}

// A random network: `links` links, `flows` flows with random routes, starts and sizes.
struct RandomCase {
  std::vector<double> cap;
  std::vector<std::vector<int>> routes;
  std::vector<int64_t> start;
  std::vector<double> bytes;
};

// Runs the model over a case (flows started at their start times, those of one instant
// together) and returns each flow's completion time.
std::vector<int64_t> run_case(const RandomCase& c) {
  const int flows = static_cast<int>(c.routes.size());
  NetworkModel net(c.cap);
  std::vector<int> order(flows);
  for (int f = 0; f < flows; ++f) order[f] = f;
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return c.start[a] < c.start[b]; });
  std::vector<int64_t> got(flows, -1);
  std::vector<uint32_t> tags;
  size_t next_start = 0;
  for (;;) {
    const int64_t tn = net.next_event_time();
    const int64_t ts =
        next_start < order.size() ? c.start[order[next_start]] : NetworkModel::kNever;
    if (tn == NetworkModel::kNever && ts == NetworkModel::kNever) break;
    if (ts <= tn) {
      while (next_start < order.size() && c.start[order[next_start]] == ts) {
        const int f = order[next_start++];
        net.start_flow(ts, c.routes[f], c.bytes[f], static_cast<uint32_t>(f));
      }
      continue;
    }
    tags.clear();
    net.advance(tn, tags);
    for (uint32_t t : tags) got[t] = tn;
  }
  EXPECT_EQ(net.active_flows(), 0);
  return got;
}

void expect_matches_reference(const RandomCase& c, int trial) {
  const int flows = static_cast<int>(c.routes.size());
  const auto want = reference_completions(c.cap, c.routes, c.start, c.bytes);
  const auto got = run_case(c);
  for (int f = 0; f < flows; ++f) {
    ASSERT_GE(got[f], 0) << "trial " << trial << " flow " << f;
    // Integer-ns completions (rounded up at every re-rate) against exact doubles.
    EXPECT_NEAR(static_cast<double>(got[f]), want[f], 2.0 * flows)
        << "trial " << trial << " flow " << f;
  }
}

TEST(SimNetwork, IncrementalSolverMatchesFromScratchMaxMin) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 40; ++trial) {
    const int links = 3 + static_cast<int>(rng() % 5), flows = 4 + static_cast<int>(rng() % 12);
    RandomCase c;
    c.cap.resize(links);
    for (double& x : c.cap) x = 5.0 * (1 + rng() % 4);
    c.routes.resize(flows);
    c.start.resize(flows);
    c.bytes.resize(flows);
    for (int f = 0; f < flows; ++f) {
      for (int l = 0; l < links; ++l) {
        if (rng() % 3 == 0) c.routes[f].push_back(l);
      }
      if (c.routes[f].empty()) c.routes[f].push_back(static_cast<int>(rng() % links));
      c.start[f] = static_cast<int64_t>(rng() % 4) * 250;
      c.bytes[f] = 1000.0 * (1 + rng() % 9);
    }
    expect_matches_reference(c, trial);
  }
}

// Shaped like the co-located all-to-all: equal-capacity NIC links in pairs that always carry
// the same flows (a GPU's egress and its NIC's uplink, ingress likewise), so many links tie at
// every level (the model leaves one link of such a pair out of its bottleneck scan); in half
// the trials some flows cross one link of a pair without the other, which ends the pairing
// mid-run; single-link flows on private links; starts spread over time so that flows join
// and leave shared components one by one. Also checks that a rerun gives the same times.
TEST(SimNetwork, TiedPairedLinksMatchFromScratchMaxMin) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 60; ++trial) {
    const int gpus = 3 + static_cast<int>(rng() % 4);
    // Links: per GPU egress pair (2g, 2g+1), ingress pair (2G+2g, 2G+2g+1), private 4G+g.
    RandomCase c;
    c.cap.assign(5 * gpus, 25.0);
    for (int g = 0; g < gpus; ++g) c.cap[4 * gpus + g] = 100.0;
    const int flows = 6 + static_cast<int>(rng() % 20);
    for (int f = 0; f < flows; ++f) {
      const int src = static_cast<int>(rng() % gpus);
      int dst = static_cast<int>(rng() % gpus);
      if (dst == src) {
        c.routes.push_back({4 * gpus + src});
      } else if (trial % 2 == 1 && rng() % 8 == 0) {
        // Half the trials also use one link of a pair alone (the pair stops being twins).
        c.routes.push_back({2 * src + 1, 4 * gpus + dst});
      } else {
        c.routes.push_back({2 * src, 2 * src + 1, 2 * gpus + 2 * dst + 1, 2 * gpus + 2 * dst});
      }
      c.start.push_back(static_cast<int64_t>(rng() % 8) * 40);
      c.bytes.push_back(rng() % 2 == 0 ? 8192.0 : 16384.0);
    }
    expect_matches_reference(c, trial);
    EXPECT_EQ(run_case(c), run_case(c)) << "trial " << trial;
  }
}

TEST(SimNetwork, RejectsBadInput) {
  EXPECT_THROW(NetworkModel({0.0}), std::invalid_argument);
  NetworkModel net({1.0});
  const std::vector<int> empty;
  EXPECT_THROW(net.start_flow(0, empty, 10, 0), std::invalid_argument);
}

}  // namespace
}  // namespace masep::sim
