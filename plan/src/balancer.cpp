// Expert load balancing: see balancer.hpp for the policies.
#include "masep/plan/balancer.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>

#include "masep/plan/expert_load.hpp"
#include "masep/plan/placement.hpp"

namespace masep::plan {

namespace {

[[noreturn]] void bad(const std::string& msg) { throw std::invalid_argument(msg); }

// Items (weights) onto `packs` packs of `cap` items each: heaviest first (ties: lower item),
// each to the lightest pack with room (ties: lower pack). Returns the pack of each item.
// DeepSeek EPLB's balanced packing.
std::vector<int> balanced_packing(const std::vector<double>& w, int packs, int cap) {
  std::vector<size_t> order(w.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return w[a] > w[b]; });
  std::vector<double> load(static_cast<size_t>(packs), 0.0);
  std::vector<int> count(static_cast<size_t>(packs), 0), out(w.size(), -1);
  for (size_t i : order) {
    int best = -1;
    for (int p = 0; p < packs; ++p) {
      if (count[p] < cap && (best < 0 || load[p] < load[best])) best = p;
    }
    if (best < 0) bad("balanced packing: more items than room");
    out[i] = best;
    load[best] += w[i];
    count[best]++;
  }
  return out;
}

// Expected cost of one expert copy getting `t` tokens per launch (mean): it reads its weights
// only when it gets at least one token (Poisson chance 1 − e^−t).
double copy_cost(const TimePredictor& tp, const models::Model& m, double t) {
  if (!(t > 0)) return 0;
  return (1.0 - std::exp(-t)) * tp.expert_ns(m, std::max(t, 1.0));
}

// Predicted expert (compute) and exchange time of every MoE GPU in one launch.
struct Times {
  std::vector<double> compute, comm;
};

// The predicted step of a launch: the slowest GPU's compute plus the slowest GPU's exchange.
// Dispatch and return are group calls that every attention rank takes part in, so one GPU's
// slow transfers hold up every rank's communication stream (the DeepSeek-V3-class runs in
// docs/load-balancing.md show the gap), while the compute of different GPUs overlaps.
double step_of(const Times& t) {
  return *std::max_element(t.compute.begin(), t.compute.end()) +
         *std::max_element(t.comm.begin(), t.comm.end());
}

// True when `a` predicts a shorter step than `b`, or the same (within a relative 1e-3) with
// fewer GPUs at the compute maximum. Copies that only lower GPUs below the maximum are not
// worth their weight reads: per launch, a GPU's realised time with more copies is higher than
// their expectation, and the slowest GPU sets the step.
bool better(const Times& a, const Times& b) {
  const double sa = step_of(a), sb = step_of(b);
  const double tol = 1e-3 * std::max(1.0, sb);
  if (sa < sb - tol) return true;
  if (sa > sb + tol) return false;
  auto at_max = [&](const std::vector<double>& v) {
    const double m = *std::max_element(v.begin(), v.end());
    return std::count_if(v.begin(), v.end(), [&](double x) { return x >= m - tol; });
  };
  return at_max(a.compute) < at_max(b.compute);
}

}  // namespace

int ExpertPlacement::gpu_for(int a, int e) const {
  if (!route.empty()) return route[static_cast<size_t>(a)][static_cast<size_t>(e)];
  const auto& h = holders[static_cast<size_t>(e)];
  return h[static_cast<size_t>(a) % h.size()];
}

BalanceProblem balance_problem(const Scenario& s, std::vector<double> load) {
  if (expert_tensor_parallel(s) > 1) {
    throw std::invalid_argument(
        "expert load balancing places experts on single GPUs; it does not support expert "
        "tensor parallelism (expert_tensor_parallel " +
        std::to_string(expert_tensor_parallel(s)) + ")");
  }
  BalanceProblem b;
  const bool ma = s.plan.kind == PlanKind::kMaSeparation;
  b.gpus = expert_gpu_count(s);
  const int experts = s.model.experts;
  if (s.plan.balance.policy == BalancePolicy::kStatic) {
    int mx = 0;
    for (const auto& held : gpu_experts(s)) mx = std::max(mx, static_cast<int>(held.size()));
    b.slots_per_gpu = mx;
  } else {
    b.slots_per_gpu = b.gpus > 0 ? (experts + s.plan.balance.redundant_experts) / b.gpus : 0;
  }
  b.expert_groups = s.plan.balance.expert_groups;
  b.attention_ranks = ma ? s.plan.attention.gpus : s.plan.colocated.gpus;
  b.load = std::move(load);
  // Nodes of the MoE GPUs: equal contiguous blocks of MoE-local indices, else one "node".
  const int base = ma ? s.plan.attention.gpus : 0;
  const int per = std::max(1, s.topology.gpus_per_node);
  auto node = [&](int g) {
    const int rank = base + g;
    const int gpu = s.plan.gpu_ranks.empty() ? rank : s.plan.gpu_ranks[static_cast<size_t>(rank)];
    return gpu / per;
  };
  int nodes = 0;
  std::vector<int> block_sizes;
  for (int g = 0; g < b.gpus; ++g) {
    if (g == 0 || node(g) != node(g - 1)) {
      ++nodes;
      block_sizes.push_back(0);
    }
    block_sizes.back()++;
  }
  bool even = nodes > 0;
  for (int x : block_sizes) even = even && x == block_sizes.front();
  std::vector<int> seen;
  for (int g = 0; g < b.gpus; ++g) seen.push_back(node(g));
  std::sort(seen.begin(), seen.end());
  even = even && std::unique(seen.begin(), seen.end()) - seen.begin() == nodes;
  b.nodes = even ? nodes : 1;
  // Rows cross nodes when any attention GPU shares no node with the MoE GPUs (MA separation
  // on the paper cluster, DeepSeek deployments); co-located rows go GPU to GPU.
  b.colocated = !ma;
  std::vector<int> moe_nodes;
  for (int g = 0; g < b.gpus; ++g) moe_nodes.push_back(node(g));
  bool cross = !ma && nodes > 1;
  for (int a = 0; ma && a < s.plan.attention.gpus && !cross; ++a) {
    const int gpu = s.plan.gpu_ranks.empty() ? a : s.plan.gpu_ranks[static_cast<size_t>(a)];
    cross = std::find(moe_nodes.begin(), moe_nodes.end(), gpu / per) == moe_nodes.end();
  }
  const TimePredictor tp(s.topology);
  b.row_ns = 2.0 * s.model.hidden * models::dtype_bytes(s.model.dtype) / tp.link_GBps(cross);
  return b;
}

ExpertPlacement static_placement(const Scenario& s) {
  ExpertPlacement pl;
  pl.holders = expert_gpus(s);
  return pl;
}

ExpertPlacement eplb_placement(const BalanceProblem& b) {
  const int E = static_cast<int>(b.load.size()), G = b.gpus, S = b.slots_per_gpu;
  if (G <= 0 || S <= 0) bad("eplb: no MoE GPU slots");
  if (static_cast<int64_t>(G) * S < E) {
    bad("eplb: " + std::to_string(G * S) + " slots cannot hold " + std::to_string(E) + " experts");
  }
  int groups = std::max(1, b.expert_groups), nodes = std::max(1, b.nodes);
  if (groups % nodes != 0 || E % groups != 0 || G % nodes != 0) groups = nodes = 1;  // global
  const int gpn = G / nodes, phys_per_node = gpn * S, per_group = E / groups;
  // 1. Expert groups onto nodes by token load.
  std::vector<double> gload(static_cast<size_t>(groups), 0.0);
  for (int e = 0; e < E; ++e) gload[static_cast<size_t>(e / per_group)] += b.load[e];
  const std::vector<int> node_of_group = balanced_packing(gload, nodes, groups / nodes);
  ExpertPlacement pl;
  pl.holders.assign(static_cast<size_t>(E), {});
  for (int n = 0; n < nodes; ++n) {
    std::vector<int> mine;  // logical experts of this node, ascending
    for (int e = 0; e < E; ++e) {
      if (node_of_group[static_cast<size_t>(e / per_group)] == n) mine.push_back(e);
    }
    if (static_cast<int>(mine.size()) > phys_per_node) {
      bad("eplb: node " + std::to_string(n) + " has " + std::to_string(mine.size()) +
          " experts for " + std::to_string(phys_per_node) + " slots");
    }
    // 2. Replicate: each next copy to the expert with the most tokens per copy (at most one
    //    copy per GPU of the node).
    std::vector<int> copies(mine.size(), 1);
    for (int extra = phys_per_node - static_cast<int>(mine.size()); extra > 0; --extra) {
      int best = -1;
      for (size_t i = 0; i < mine.size(); ++i) {
        if (copies[i] >= gpn) continue;
        if (best < 0 || b.load[mine[i]] / copies[i] > b.load[mine[best]] / copies[best]) {
          best = static_cast<int>(i);
        }
      }
      if (best < 0) break;  // every expert on every GPU of the node
      copies[static_cast<size_t>(best)]++;
    }
    // 3. Copies onto the node's GPUs, S each, by tokens per copy.
    std::vector<double> w;
    std::vector<int> item_expert;
    for (size_t i = 0; i < mine.size(); ++i) {
      for (int c = 0; c < copies[i]; ++c) {
        w.push_back(b.load[mine[i]] / copies[i]);
        item_expert.push_back(mine[i]);
      }
    }
    // Balanced packing (heaviest first, to the lightest GPU with room) that also keeps the
    // copies of one expert on distinct GPUs.
    std::vector<std::vector<int>> held(static_cast<size_t>(gpn));
    std::vector<double> load(static_cast<size_t>(gpn), 0.0);
    std::vector<int> count(static_cast<size_t>(gpn), 0);
    std::vector<size_t> order(w.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t c) { return w[a] > w[c]; });
    for (size_t i : order) {
      const int e = item_expert[i];
      auto has = [&](int p) {
        const auto& h = held[static_cast<size_t>(p)];
        return std::find(h.begin(), h.end(), e) != h.end();
      };
      int p = -1;
      for (int q = 0; q < gpn; ++q) {
        if (count[q] >= S || has(q)) continue;
        if (p < 0 || load[q] < load[p]) p = q;
      }
      if (p < 0) continue;  // no GPU of the node lacks it: the copy is dropped
      held[static_cast<size_t>(p)].push_back(e);
      load[p] += w[i];
      count[p]++;
      pl.holders[static_cast<size_t>(e)].push_back(n * gpn + p);
    }
  }
  for (auto& h : pl.holders) std::sort(h.begin(), h.end());
  return pl;
}

ExpertPlacement predicted_placement(const BalanceProblem& b, const TimePredictor& tp,
                                    const models::Model& m) {
  const int E = static_cast<int>(b.load.size()), G = b.gpus, S = b.slots_per_gpu;
  const int A = std::max(1, b.attention_ranks);
  if (G <= 0 || S <= 0) bad("predicted placement: no MoE GPU slots");
  if (static_cast<int64_t>(G) * S < E) {
    bad("predicted placement: " + std::to_string(G * S) + " slots cannot hold " +
        std::to_string(E) + " experts");
  }
  auto cost = [&](double t) { return copy_cost(tp, m, t); };
  // Exchange time of `rows` rows of attention rank a served on GPU g.
  auto comm = [&](int a, int g, double rows) {
    return b.colocated && a == g ? 0.0 : b.row_ns * rows;
  };
  std::vector<std::vector<int>> holders(static_cast<size_t>(E));
  std::vector<std::vector<int>> assign(static_cast<size_t>(E), std::vector<int>(A, -1));
  std::vector<int> free_slots(static_cast<size_t>(G), S);
  Times T{std::vector<double>(static_cast<size_t>(G), 0.0),
          std::vector<double>(static_cast<size_t>(G), 0.0)};
  // Per-copy tokens of expert e under assign[e], and the exchange time they add on g.
  auto copy_tokens = [&](int e, int g) {
    int chunks = 0;
    for (int a = 0; a < A; ++a) chunks += assign[e][a] == g ? 1 : 0;
    return b.load[e] * chunks / A;
  };
  auto copy_comm = [&](int e, int g) {
    double t = 0;
    for (int a = 0; a < A; ++a) t += assign[e][a] == g ? comm(a, g, b.load[e] / A) : 0.0;
    return t;
  };
  auto total = [&](int g) { return T.compute[g] + T.comm[g]; };
  // 1. Copies per expert: while redundant slots remain, one more copy of the expert whose
  //    copies' exchange time most exceeds their compute (rows, not weights, dominate it).
  std::vector<int> copies(static_cast<size_t>(E), 1);
  const int max_copies = std::min(G, A);
  for (int spare = G * S - E; spare > 0; --spare) {
    int pick = -1;
    double pick_gap = 0;
    for (int e = 0; e < E; ++e) {
      if (copies[e] >= max_copies) continue;
      const double t = b.load[e] / copies[e];
      const double gap = b.row_ns * t - cost(t);
      if (gap > 0 && (pick < 0 || gap > pick_gap)) {
        pick = e;
        pick_gap = gap;
      }
    }
    if (pick < 0) break;
    copies[pick]++;
  }
  //    Then every copy (tokens split evenly: attention rank a to copy a mod copies), heaviest
  //    first, on the GPU with the least predicted time that has room and lacks the expert;
  //    at most ceil(copies / GPUs) per GPU here, so that the remaining slots stay spread.
  struct Copy {
    int e, j;
    double cost;
  };
  std::vector<Copy> items;
  int placed = 0;
  for (int e = 0; e < E; ++e) {
    for (int j = 0; j < copies[e]; ++j) items.push_back({e, j, cost(b.load[e] / copies[e])});
    placed += copies[e];
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const Copy& x, const Copy& y) { return x.cost > y.cost; });
  const int first_cap = std::min(S, (placed + G - 1) / G);
  for (const Copy& c : items) {
    int best = -1;
    for (int pass = 0; pass < 2 && best < 0; ++pass) {
      for (int g = 0; g < G; ++g) {
        const int used = S - free_slots[g];
        if (used >= (pass == 0 ? first_cap : S)) continue;
        if (std::find(holders[c.e].begin(), holders[c.e].end(), g) != holders[c.e].end()) continue;
        if (best < 0 || total(g) < total(best)) best = g;
      }
    }
    if (best < 0) continue;  // no GPU lacks it (cannot happen: copies <= GPUs)
    holders[c.e].push_back(best);
    free_slots[best]--;
    const int n = copies[c.e];
    double rows = 0;
    for (int a = 0; a < A; ++a) {
      if (a % n != c.j) continue;
      assign[c.e][a] = best;
      rows += b.load[c.e] / A;
      T.comm[best] += comm(a, best, b.load[c.e] / A);
    }
    T.compute[best] += cost(rows);
  }
  // Splits expert e's attention-rank chunks over copies `hs` given the others' times `base`:
  // chunk by chunk to the copy whose GPU would finish first. Writes the times into `out`.
  auto split = [&](int e, const std::vector<int>& hs, const Times& base, std::vector<int>& asg,
                   Times& out) {
    std::vector<double> x(hs.size(), 0.0), c(hs.size(), 0.0);
    const double chunk = b.load[e] / A;
    for (int a = 0; a < A; ++a) {
      size_t best = 0;
      double best_t = 0;
      for (size_t i = 0; i < hs.size(); ++i) {
        const int g = hs[i];
        const double t = base.compute[g] + base.comm[g] + c[i] + comm(a, g, chunk) +
                         cost(x[i] + chunk);
        if (i == 0 || t < best_t) {
          best = i;
          best_t = t;
        }
      }
      x[best] += chunk;
      c[best] += comm(a, hs[best], chunk);
      asg[a] = hs[best];
    }
    out = base;
    for (size_t i = 0; i < hs.size(); ++i) {
      out.compute[hs[i]] += cost(x[i]);
      out.comm[hs[i]] += c[i];
    }
  };
  // 2. Redundant copies while they lower the predicted step (or how many GPUs set it).
  for (;;) {
    int best_e = -1, best_g = -1;
    Times best_T = T;
    std::vector<int> best_asg;
    for (int e = 0; e < E; ++e) {
      if (static_cast<int>(holders[e].size()) >= std::min(G, A)) continue;
      int g2 = -1;
      for (int g = 0; g < G; ++g) {
        if (free_slots[g] <= 0) continue;
        if (std::find(holders[e].begin(), holders[e].end(), g) != holders[e].end()) continue;
        if (g2 < 0 || total(g) < total(g2)) g2 = g;
      }
      if (g2 < 0) continue;
      Times base = T;
      for (int g : holders[e]) {
        base.compute[g] -= cost(copy_tokens(e, g));
        base.comm[g] -= copy_comm(e, g);
      }
      std::vector<int> hs = holders[e];
      hs.push_back(g2);
      // Two splits: chunk by chunk to the copy that would finish first, and an even split
      // (attention rank a to copy a mod copies), which evens the exchanges.
      std::vector<int> asg(static_cast<size_t>(A)), even(static_cast<size_t>(A));
      Times nt, ne = base;
      split(e, hs, base, asg, nt);
      std::vector<double> x(hs.size(), 0.0);
      for (int a = 0; a < A; ++a) {
        const size_t i = static_cast<size_t>(a) % hs.size();
        even[a] = hs[i];
        x[i] += b.load[e] / A;
        ne.comm[hs[i]] += comm(a, hs[i], b.load[e] / A);
      }
      for (size_t i = 0; i < hs.size(); ++i) ne.compute[hs[i]] += cost(x[i]);
      if (better(ne, nt)) {
        nt = ne;
        asg = even;
      }
      if (better(nt, best_T)) {
        best_T = nt;
        best_e = e;
        best_g = g2;
        best_asg = asg;
      }
    }
    if (best_e < 0) break;
    holders[best_e].push_back(best_g);
    assign[best_e] = best_asg;
    free_slots[best_g]--;
    T = best_T;
  }
  ExpertPlacement pl;
  bool replicated = false;
  for (int e = 0; e < E; ++e) {
    std::sort(holders[e].begin(), holders[e].end());
    replicated = replicated || holders[e].size() > 1;
  }
  pl.holders = holders;
  if (replicated) {
    pl.route.assign(static_cast<size_t>(A), std::vector<int32_t>(static_cast<size_t>(E), 0));
    for (int a = 0; a < A; ++a) {
      for (int e = 0; e < E; ++e) pl.route[a][e] = assign[e][a];
    }
  }
  return pl;
}

ExpertPlacement balance_experts(const Scenario& s, const std::vector<double>& load) {
  const BalanceProblem b = balance_problem(s, load);
  ExpertPlacement pl;
  switch (s.plan.balance.policy) {
    case BalancePolicy::kStatic:
      pl = static_placement(s);
      break;
    case BalancePolicy::kEplb:
      pl = eplb_placement(b);
      break;
    case BalancePolicy::kPredicted:
      pl = predicted_placement(b, TimePredictor(s.topology), s.model);
      break;
  }
  check_placement(pl, b);
  return pl;
}

int placement_epoch_start(const Scenario& s, int step) {
  const int k = s.plan.balance.rebalance_every;
  if (s.plan.balance.policy == BalancePolicy::kStatic || k <= 0 || step <= 0) return 0;
  return step / k * k;
}

ExpertPlacement keep_in_place(const ExpertPlacement& prev, ExpertPlacement next, int gpus) {
  std::vector<std::vector<char>> had(static_cast<size_t>(gpus),
                                     std::vector<char>(prev.holders.size(), 0));
  for (size_t e = 0; e < prev.holders.size(); ++e) {
    for (int g : prev.holders[e]) had[g][e] = 1;
  }
  std::vector<std::vector<int>> held(static_cast<size_t>(gpus));
  for (size_t e = 0; e < next.holders.size(); ++e) {
    for (int g : next.holders[e]) held[g].push_back(static_cast<int>(e));
  }
  // Greedy: the (new GPU, old GPU) pair with the largest overlap first (ties: lower indices).
  std::vector<int> to(static_cast<size_t>(gpus), -1), used(static_cast<size_t>(gpus), 0);
  for (int round = 0; round < gpus; ++round) {
    int bn = -1, bo = -1, bv = -1;
    for (int n = 0; n < gpus; ++n) {
      if (to[n] >= 0) continue;
      for (int o = 0; o < gpus; ++o) {
        if (used[o]) continue;
        int v = 0;
        for (int e : held[n]) v += had[o][e];
        if (v > bv) {
          bv = v;
          bn = n;
          bo = o;
        }
      }
    }
    to[bn] = bo;
    used[bo] = 1;
  }
  for (auto& h : next.holders) {
    for (int& g : h) g = to[g];
    std::sort(h.begin(), h.end());
  }
  for (auto& row : next.route) {
    for (int32_t& g : row) g = to[g];
  }
  return next;
}

ExpertPlacement placement_at_step(const Scenario& s, int step, bool per_sequence_routing) {
  if (s.plan.balance.policy == BalancePolicy::kStatic) return static_placement(s);
  const int k = s.plan.balance.rebalance_every;
  ExpertPlacement pl = balance_experts(s, expected_expert_load(s, 0).per_launch());
  const int last = placement_epoch_start(s, step);
  for (int start = k; k > 0 && start <= last; start += k) {
    pl = next_placement(s, pl, start, per_sequence_routing);
  }
  return pl;
}

ExpertPlacement next_placement(const Scenario& s, const ExpertPlacement& prev, int start,
                               bool per_sequence_routing) {
  const int k = s.plan.balance.rebalance_every;
  const int gpus = expert_gpu_count(s);
  const auto load = sampled_expert_load(s, start - k, k, per_sequence_routing).per_launch();
  ExpertPlacement next = keep_in_place(prev, balance_experts(s, load), gpus);
  if (s.plan.balance.policy != BalancePolicy::kPredicted || next == prev) return next;
  const BalanceProblem b = balance_problem(s, load);
  const TimePredictor tp(s.topology);
  auto peak = [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); };
  const double launches = static_cast<double>(k) * s.model.layers * s.plan.micro_batches;
  const double gain = (peak(predicted_gpu_ns(prev, b, tp, s.model)) -
                       peak(predicted_gpu_ns(next, b, tp, s.model))) *
                      launches;
  std::vector<double> in(static_cast<size_t>(gpus), 0.0);
  for (size_t e = 0; e < next.holders.size(); ++e) {
    for (int g : next.holders[e]) {
      const auto& old = prev.holders[e];
      if (std::find(old.begin(), old.end(), g) == old.end()) {
        in[static_cast<size_t>(g)] += static_cast<double>(s.model.expert_weight_bytes()) *
                                      s.model.layers;
      }
    }
  }
  const double cost = peak(in) / tp.link_GBps(b.nodes > 1);
  return gain > cost ? next : prev;
}

std::vector<double> gpu_tokens(const ExpertPlacement& pl, const BalanceProblem& b) {
  std::vector<double> out(static_cast<size_t>(b.gpus), 0.0);
  const int A = std::max(1, b.attention_ranks);
  for (size_t e = 0; e < b.load.size(); ++e) {
    for (int a = 0; a < A; ++a) out[pl.gpu_for(a, static_cast<int>(e))] += b.load[e] / A;
  }
  return out;
}

std::vector<double> predicted_gpu_ns(const ExpertPlacement& pl, const BalanceProblem& b,
                                     const TimePredictor& tp, const models::Model& m) {
  std::vector<double> out(static_cast<size_t>(b.gpus), 0.0);
  const int A = std::max(1, b.attention_ranks);
  std::vector<double> x(static_cast<size_t>(b.gpus));
  for (size_t e = 0; e < b.load.size(); ++e) {
    std::fill(x.begin(), x.end(), 0.0);
    for (int a = 0; a < A; ++a) {
      const int g = pl.gpu_for(a, static_cast<int>(e));
      x[g] += b.load[e] / A;
      if (!(b.colocated && a == g)) out[g] += b.row_ns * b.load[e] / A;
    }
    for (int g : pl.holders[e]) out[g] += copy_cost(tp, m, x[g]);
  }
  return out;
}

double max_over_mean(const std::vector<double>& v) {
  double mx = 0, sum = 0;
  for (double x : v) {
    mx = std::max(mx, x);
    sum += x;
  }
  return sum > 0 ? mx * static_cast<double>(v.size()) / sum : 0;
}

void check_placement(const ExpertPlacement& pl, const BalanceProblem& b) {
  auto fail = [](const std::string& m) { throw std::logic_error("placement: " + m); };
  if (pl.holders.size() != b.load.size()) fail("holders do not list every expert");
  std::vector<int> count(static_cast<size_t>(b.gpus), 0);
  for (size_t e = 0; e < pl.holders.size(); ++e) {
    const auto& h = pl.holders[e];
    if (h.empty()) fail("expert " + std::to_string(e) + " has no copy");
    for (size_t i = 0; i < h.size(); ++i) {
      if (h[i] < 0 || h[i] >= b.gpus) fail("expert " + std::to_string(e) + " on a GPU out of range");
      if (i > 0 && h[i] <= h[i - 1]) fail("expert " + std::to_string(e) + " holders not ascending");
      count[h[i]]++;
    }
  }
  for (int g = 0; g < b.gpus; ++g) {
    if (count[g] > b.slots_per_gpu) {
      fail("GPU " + std::to_string(g) + " holds " + std::to_string(count[g]) + " experts, " +
           std::to_string(b.slots_per_gpu) + " slots");
    }
  }
  if (!pl.route.empty()) {
    if (static_cast<int>(pl.route.size()) != b.attention_ranks) fail("route rows != attention ranks");
    for (const auto& row : pl.route) {
      if (row.size() != pl.holders.size()) fail("route row does not list every expert");
      for (size_t e = 0; e < row.size(); ++e) {
        const auto& h = pl.holders[e];
        if (std::find(h.begin(), h.end(), row[e]) == h.end()) {
          fail("route of expert " + std::to_string(e) + " names a GPU that does not hold it");
        }
      }
    }
  }
}

ExpertPlacement placement_from_router_counts(const Scenario& s, const ExpertPlacement& current,
                                             const std::vector<std::vector<int64_t>>& counts,
                                             int steps) {
  if (s.plan.balance.policy == BalancePolicy::kStatic) {
    throw std::invalid_argument("placement_from_router_counts: plan.balance.policy is static");
  }
  const int layers = s.model.layers, experts = s.model.experts;
  if (static_cast<int>(counts.size()) != layers) {
    throw std::invalid_argument("router counts: " + std::to_string(counts.size()) +
                                " layers, model " + s.model.name + " has " +
                                std::to_string(layers));
  }
  ExpertLoad load;
  load.layers = layers;
  load.experts = experts;
  load.steps = std::max(1, steps);
  load.micro_batches = s.plan.micro_batches;
  for (int l = 0; l < layers; ++l) {
    const auto& row = counts[static_cast<size_t>(l)];
    if (static_cast<int>(row.size()) != experts) {
      throw std::invalid_argument("router counts: layer " + std::to_string(l) + " has " +
                                  std::to_string(row.size()) + " experts, model " +
                                  std::to_string(experts));
    }
    for (int64_t c : row) {
      if (c < 0) {
        throw std::invalid_argument("router counts: layer " + std::to_string(l) + " negative");
      }
      load.tokens.push_back(static_cast<double>(c));
    }
  }
  return keep_in_place(current, balance_experts(s, load.per_launch()), expert_gpu_count(s));
}

}  // namespace masep::plan
