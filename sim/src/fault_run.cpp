// A run with faults, segment by segment: see fault_run.hpp.
#include "masep/sim/fault_run.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>

#include "masep/plan/compiler.hpp"
#include "masep/plan/json_text.hpp"
#include "masep/plan/metrics.hpp"
#include "masep/plan/recovery.hpp"
#include "masep/plan/remap.hpp"
#include "masep/plan/routing.hpp"
#include "masep/sim/compute_model.hpp"
#include "masep/sim/platform.hpp"
#include "masep/topology/topology.hpp"

namespace masep::sim {
namespace {

// Defaults: heartbeats every 100 ms and 3 misses (a common serving-framework setting);
// 1 s op timeout (DeepEP's elastic mode detects a dead rank by a dispatch/combine timeout);
// 200 ms to shrink / rebuild communicators (assumed: ncclCommShrink skips topology
// detection, a full ncclCommInitRank at scale takes seconds); 20 GB/s host-to-GPU (PCIe Gen4
// x16, ~25 GB/s peak, pinned host memory).
const std::array<FaultParamInfo, 5> kTable = {{
    {"fault_heartbeat_interval_ns", "ns", 100e6, "period of the ranks' heartbeats",
     &FaultParams::heartbeat_interval_ns, 1, 1e12},
    {"fault_heartbeat_misses", "count", 3, "missed heartbeats that declare a rank dead",
     &FaultParams::heartbeat_misses, 1, 1e6},
    {"fault_op_timeout_ns", "ns", 1e9,
     "a dispatch/combine or collective blocked on a dead peer gives up after this (DeepEP-style "
     "timeout detection)",
     &FaultParams::op_timeout_ns, 1, 1e12},
    {"fault_comm_rebuild_ns", "ns", 200e6,
     "communicator shrink/rebuild (ncclCommShrink or re-init) on every rank of the new plan "
     "(assumed)",
     &FaultParams::comm_rebuild_ns, 0, 1e12},
    {"fault_host_load_GBps", "GB/s", 20,
     "rate of re-loading weights from host memory onto a GPU (PCIe Gen4 x16, pinned)",
     &FaultParams::host_load_GBps, 1e-3, 1e4},
}};

// Times recovery roles and slows stragglers; everything else goes to the inner model.
class FaultComputeModel final : public ComputeModel {
 public:
  FaultComputeModel(std::shared_ptr<const ComputeModel> inner, const FaultParams& p,
                    std::vector<double> rank_slowdown)
      : inner_(std::move(inner)), p_(p), slow_(std::move(rank_slowdown)) {}
  int64_t duration_ns(const plan::Op& op) const override {
    if (op.role == plan::OpRole::kCommRebuild) return static_cast<int64_t>(p_.comm_rebuild_ns);
    if (op.role == plan::OpRole::kWeightLoad) {
      return static_cast<int64_t>(std::ceil(static_cast<double>(op.hbm_bytes) / p_.host_load_GBps));
    }
    const int64_t d = inner_->duration_ns(op);
    const double f = op.rank >= 0 && op.rank < static_cast<int>(slow_.size()) ? slow_[op.rank] : 1;
    return f == 1 ? d : static_cast<int64_t>(std::ceil(static_cast<double>(d) * f));
  }

 private:
  std::shared_ptr<const ComputeModel> inner_;
  FaultParams p_;
  std::vector<double> slow_;
};

// The topology's links, with cross-node routes of GPUs whose NIC is down sent through the
// first GPU of the node whose NIC works (PXN: NVLink to it, then its NIC).
Platform platform_with(const topology::Topology& topo,
                       const std::vector<std::pair<int, int>>& down) {
  if (down.empty()) return Platform::from_topology(topo);
  std::vector<PlatformLink> links;
  for (const topology::Link& l : topo.links()) links.push_back({l.GBps, l.latency_ns});
  const topology::Topology* t = &topo;
  auto via = [t, down](int g) {
    const int gpn = t->spec().gpus_per_node, node = g / gpn;
    auto is_down = [&](int gpu) {
      return std::find(down.begin(), down.end(), std::make_pair(node, t->nic_of(gpu))) !=
             down.end();
    };
    if (!is_down(g)) return g;
    for (int l = 0; l < gpn; ++l) {
      if (!is_down(node * gpn + l)) return node * gpn + l;
    }
    throw std::runtime_error(
        fmt::format("GPU {} is cut off: every NIC of node {} is down", g, node));
  };
  return Platform(topo.spec().gpu, topo.gpus(), topo.spec().gpus_per_node, std::move(links),
                  [t, via](int src, int dst) {
                    if (t->node_of(src) == t->node_of(dst)) {
                      topology::Route r = t->route(src, dst);
                      return PlatformRoute{std::move(r.links), r.latency_ns};
                    }
                    const int s2 = via(src), d2 = via(dst);
                    PlatformRoute out;
                    auto append = [&](int a, int b) {
                      if (a == b) return;
                      topology::Route r = t->route(a, b);
                      out.links.insert(out.links.end(), r.links.begin(), r.links.end());
                      out.latency_ns += r.latency_ns;
                    };
                    append(src, s2);
                    append(s2, d2);
                    append(d2, dst);
                    return out;
                  });
}

struct Segment {
  std::vector<double> step_ns;  // duration of each step
  int64_t makespan = 0;
};

}  // namespace

std::span<const FaultParamInfo> fault_parameter_table() { return kTable; }

FaultParams resolve_fault_params(const std::vector<std::pair<std::string, double>>& overrides) {
  FaultParams p;
  for (const auto& [name, value] : overrides) {
    const FaultParamInfo* info = nullptr;
    for (const FaultParamInfo& x : kTable) {
      if (name == x.name) info = &x;
    }
    if (info == nullptr) {
      std::string known;
      for (const FaultParamInfo& x : kTable)
        known += fmt::format("{}{}", known.empty() ? "" : ", ", x.name);
      throw std::invalid_argument(
          fmt::format("unknown fault parameter '{}' (known: {})", name, known));
    }
    if (!(value >= info->min_value && value <= info->max_value)) {
      throw std::invalid_argument(fmt::format("fault parameter {} = {} is outside [{}, {}]", name,
                                              value, info->min_value, info->max_value));
    }
    p.*(info->field) = value;
  }
  return p;
}

std::string fault_parameter_table_markdown() {
  std::string out = "| name | unit | default | meaning |\n|---|---|---|---|\n";
  for (const FaultParamInfo& p : kTable) {
    out += fmt::format("| `{}` | {} | {} | {} |\n", p.name, p.unit, p.default_value, p.doc);
  }
  return out;
}

int64_t detection_ns(const FaultParams& p) {
  return static_cast<int64_t>(
      std::min(p.heartbeat_interval_ns * p.heartbeat_misses, p.op_timeout_ns));
}

FaultRunResult simulate_faults(const plan::Scenario& s, const SimOptions& options,
                               const FaultParams& fp) {
  const topology::Topology topo(s.topology);
  const int N = s.workload.decode_steps;
  FaultRunResult res;
  const plan::PlanGpus pg0 = plan::plan_gpus(s);
  res.plan_gpus = s.plan.total_gpus();
  res.standby_gpus = static_cast<int>(pg0.standby.size());

  auto run_program = [&](const plan::Program& p, const std::vector<std::pair<int, int>>& nics,
                         const std::map<int, double>& slow) {
    SimOptions o = options;
    o.topology = &topo.spec();
    std::vector<double> slowdown(static_cast<size_t>(p.rank_count()), 1.0);
    for (int r = 0; r < p.rank_count(); ++r) {
      auto it = slow.find(p.ranks[r].gpu);
      if (it != slow.end()) slowdown[r] = 1.0 / it->second;
    }
    auto prev = options.wrap_compute_model;
    o.wrap_compute_model = [prev, fp, slowdown](std::shared_ptr<const ComputeModel> cm) {
      if (prev) cm = prev(std::move(cm));
      return std::shared_ptr<const ComputeModel>(
          std::make_shared<FaultComputeModel>(std::move(cm), fp, slowdown));
    };
    return simulate(p, platform_with(topo, nics), o);
  };
  auto run_segment = [&](const plan::Scenario& sc, int first, int steps,
                         const std::vector<std::pair<int, int>>& nics,
                         const std::map<int, double>& slow) {
    plan::CompileOptions co;
    co.first_step = first;
    co.steps = steps;
    const plan::Program p = plan::compile(sc, co);
    const SimResult r = run_program(p, nics, slow);
    const plan::RunMetrics m = plan::compute_metrics(sc, p, r.timeline);
    Segment seg;
    for (double ms : m.step_ms) seg.step_ns.push_back(ms * 1e6);
    seg.makespan = r.timeline.makespan_ns;
    return seg;
  };

  // Fault-free baseline.
  {
    plan::Scenario base = s;
    base.faults.clear();
    const Segment b = run_segment(base, 0, N, {}, {});
    res.baseline_makespan_ns = b.makespan;
    res.baseline_tpot_ms = static_cast<double>(b.makespan) / 1e6 / std::max(1, N);
  }

  // Events at step boundaries: (step, start?, fault index).
  struct Ev {
    int step;
    bool start;
    size_t fault;
  };
  std::vector<Ev> evs;
  std::vector<size_t> timed;  // at_ms faults, by time
  for (size_t i = 0; i < s.faults.size(); ++i) {
    const plan::FaultSpec& f = s.faults[i];
    if (f.step >= 0) {
      evs.push_back({f.step, true, i});
      if (f.steps > 0 && f.step + f.steps < N) evs.push_back({f.step + f.steps, false, i});
    } else {
      timed.push_back(i);
    }
  }
  std::stable_sort(timed.begin(), timed.end(),
                   [&](size_t a, size_t b) { return s.faults[a].at_ms < s.faults[b].at_ms; });
  size_t next_timed = 0;

  std::set<int> failed;                   // GPU faults in force
  std::vector<std::pair<int, int>> nics;  // NIC / link faults in force (node, nic)
  std::map<int, double> slow;             // stragglers in force
  std::set<int> effective;                // failed GPUs incl. those NICs cut off
  plan::Scenario cur = s;
  cur.faults.clear();
  std::vector<int> rerouted;
  const std::vector<double> prob = plan::routing_probabilities(s.workload, s.model.experts);
  auto pairs_per_token = [&]() {
    double x = 0;
    for (int e : rerouted) x += std::min(1.0, s.model.top_k * prob[e]);
    return x * s.model.layers;
  };
  int64_t now = 0;
  int step = 0;
  std::string next_phase = "normal";
  int64_t outage = 0;

  auto effective_now = [&]() {
    std::set<int> e = failed;
    for (int g : plan::gpus_cut_off(s.topology, nics)) e.insert(g);
    return e;
  };
  auto reachable_nics = [&]() {  // NIC faults whose node keeps a NIC (routes go around)
    std::vector<std::pair<int, int>> out;
    const auto cut = plan::gpus_cut_off(s.topology, nics);
    for (const auto& [n, i] : nics) {
      bool node_cut = false;
      for (int g : cut) node_cut = node_cut || g / s.topology.gpus_per_node == n;
      if (!node_cut) out.emplace_back(n, i);
    }
    return out;
  };
  auto fault_text = [&](const plan::FaultSpec& f, bool start) {
    std::string who =
        f.kind == plan::FaultKind::kGpu || f.kind == plan::FaultKind::kStraggler
            ? fmt::format("GPU {}", f.gpu)
            : fmt::format("{} {} of node {}",
                          f.kind == plan::FaultKind::kNic ? "NIC" : "link to NIC", f.nic, f.node);
    if (f.kind == plan::FaultKind::kStraggler) {
      return fmt::format("{}: {} {}", f.key, who,
                         start ? fmt::format("slows to {:.0f}% speed", 100 * f.speed)
                               : std::string("back to full speed"));
    }
    return fmt::format("{}: {} {}", f.key, who, start ? "fails" : "comes back");
  };

  // Applies the faults starting / ending at `st` (the run clock is `now`).
  auto apply = [&](int st, const std::vector<std::pair<size_t, bool>>& changes, int64_t wasted) {
    std::vector<int> rejoin;
    std::string what;
    bool hard = false, nic_change = false;
    for (const auto& [i, start] : changes) {
      const plan::FaultSpec& f = s.faults[i];
      what += (what.empty() ? "" : "; ") + fault_text(f, start);
      switch (f.kind) {
        case plan::FaultKind::kGpu:
          if (start) {
            failed.insert(f.gpu);
            hard = true;
          } else {
            failed.erase(f.gpu);
            rejoin.push_back(f.gpu);
          }
          break;
        case plan::FaultKind::kNic:
        case plan::FaultKind::kLink:
          nic_change = true;
          if (start) {
            nics.emplace_back(f.node, f.nic);
            hard = true;
          } else {
            nics.erase(std::find(nics.begin(), nics.end(), std::make_pair(f.node, f.nic)));
          }
          break;
        case plan::FaultKind::kStraggler:
          if (start) {
            slow[f.gpu] = f.speed;
          } else {
            slow.erase(f.gpu);
          }
          break;
      }
    }
    FaultEvent ev;
    ev.step = st;
    ev.at_ns = now;
    ev.what = what;
    ev.wasted_ns = wasted;
    const std::set<int> eff = effective_now();
    std::vector<int> newly;
    for (int g : eff) {
      if (!effective.count(g)) newly.push_back(g);
    }
    std::vector<int> back;
    for (int g : effective) {
      if (!eff.count(g)) back.push_back(g);
    }
    if (!newly.empty() || (hard && nic_change)) {
      // A failure: detect, then recover on the survivors.
      const plan::Remap rm = plan::remap(cur, newly, st);
      if (!rm.covered()) {
        std::string l;
        for (const auto& x : rm.losses) l += (l.empty() ? "" : "; ") + x;
        throw std::runtime_error(fmt::format("step {}: {}: cannot be survived: {}", st, what, l));
      }
      ev.detect_ns = detection_ns(fp);
      const plan::Program rp = plan::compile_recovery(rm, st);
      ev.recovery_ns = run_program(rp, reachable_nics(), slow).timeline.makespan_ns;
      ev.recovery_ops = static_cast<int64_t>(rp.ops.size());
      ev.remap = rm.describe();
      res.tokens_recomputed += rm.reprefill_tokens;
      rerouted.insert(rerouted.end(), rm.rerouted_experts.begin(), rm.rerouted_experts.end());
      cur = rm.degraded;
      next_phase = "fault";
    } else if (!back.empty()) {
      // GPUs come back: the plan of the remaining failures (from the original plan).
      if (eff.empty()) {
        cur = s;
        cur.faults.clear();
        rerouted.clear();
      } else {
        const plan::Remap rm = plan::remap(s, std::vector<int>(eff.begin(), eff.end()), st);
        cur = rm.degraded;
        rerouted = rm.rerouted_experts;
      }
      const plan::PlanGpus pg = plan::plan_gpus(cur);
      for (int g : back) {
        if (pg.uses(g)) rejoin.push_back(g);
      }
      std::vector<int> in_plan;
      for (int g : rejoin) {
        if (pg.uses(g) && std::find(in_plan.begin(), in_plan.end(), g) == in_plan.end())
          in_plan.push_back(g);
      }
      const plan::Program rp = plan::compile_rejoin(cur, in_plan, st);
      ev.recovery_ns = run_program(rp, reachable_nics(), slow).timeline.makespan_ns;
      ev.recovery_ops = static_cast<int64_t>(rp.ops.size());
      ev.remap.push_back(fmt::format("re-joined: GPUs {}", fmt::join(in_plan, ",")));
      next_phase = "rejoin";
    } else if (nic_change) {
      // A NIC came back: communicators are rebuilt onto it (no detection).
      const plan::Remap rm = plan::remap(cur, {}, st);
      const plan::Program rp = plan::compile_recovery(rm, st);
      ev.recovery_ns = run_program(rp, reachable_nics(), slow).timeline.makespan_ns;
      ev.recovery_ops = static_cast<int64_t>(rp.ops.size());
      next_phase = "rejoin";
    }
    effective = eff;
    outage += ev.wasted_ns + ev.detect_ns + ev.recovery_ns;
    now += ev.detect_ns + ev.recovery_ns;
    res.events.push_back(std::move(ev));
  };

  size_t next_ev = 0;
  std::stable_sort(evs.begin(), evs.end(),
                   [](const Ev& a, const Ev& b) { return a.step < b.step; });
  auto apply_step_events = [&](int st) {
    std::vector<std::pair<size_t, bool>> ch;
    while (next_ev < evs.size() && evs[next_ev].step == st) {
      ch.emplace_back(evs[next_ev].fault, evs[next_ev].start);
      ++next_ev;
    }
    if (!ch.empty()) apply(st, ch, 0);
  };
  apply_step_events(0);
  while (step < N) {
    const int end = next_ev < evs.size() ? std::max(step + 1, evs[next_ev].step) : N;
    const Segment seg = run_segment(cur, step, end - step, reachable_nics(), slow);
    const std::string phase = [&] {
      if (!slow.empty()) return std::string("straggler");
      return effective.empty() && nics.empty() ? std::string("normal") : std::string("degraded");
    }();
    int64_t t = now;
    int cut = -1;
    for (size_t k = 0; k < seg.step_ns.size(); ++k) {
      const int64_t end_k = t + static_cast<int64_t>(std::llround(seg.step_ns[k]));
      if (next_timed < timed.size() && s.faults[timed[next_timed]].at_ms * 1e6 < end_k) {
        cut = static_cast<int>(k);
        break;
      }
      FaultStep fs;
      fs.step = step + static_cast<int>(k);
      fs.end_ns = end_k;
      fs.tpot_ms =
          static_cast<double>(end_k - (res.steps.empty() ? 0 : res.steps.back().end_ns)) / 1e6;
      fs.tokens = cur.workload.batch;
      fs.gpus = cur.plan.total_gpus();
      fs.phase = k == 0 && next_phase != "normal" ? next_phase : phase;
      res.steps.push_back(fs);
      res.degraded_pairs += pairs_per_token() * cur.workload.batch;
      t = end_k;
    }
    next_phase = "normal";
    if (cut >= 0) {
      // An at_ms fault inside step `step + cut`: its work so far is wasted; it is re-done.
      const int st = step + cut;
      const plan::FaultSpec& f = s.faults[timed[next_timed]];
      const int64_t at = static_cast<int64_t>(std::llround(f.at_ms * 1e6));
      // A failure interrupts the step (its work so far is wasted); a straggler only slows it,
      // from the step's start here.
      const bool interrupts = f.kind != plan::FaultKind::kStraggler && at > t;
      const int64_t wasted = interrupts ? at - t : 0;
      now = interrupts ? at : t;
      if (interrupts) res.tokens_recomputed += cur.workload.batch;  // the step's tokens
      std::vector<std::pair<size_t, bool>> ch{{timed[next_timed], true}};
      ++next_timed;
      step = st;
      apply(st, ch, wasted);
      continue;
    }
    now = t;
    step = end;
    if (step < N) apply_step_events(step);
  }
  // Temporary at_ms faults are applied for good (their end is not modelled): noted in docs.
  res.makespan_ns = now;
  res.tokens_offered = static_cast<int64_t>(s.workload.batch) * N;
  for (const FaultStep& f : res.steps) res.tokens_served += f.tokens;
  res.tokens_lost = res.tokens_offered - res.tokens_served;
  res.availability =
      res.tokens_offered > 0 ? static_cast<double>(res.tokens_served) / res.tokens_offered : 1.0;
  res.uptime = now > 0 ? 1.0 - static_cast<double>(outage) / static_cast<double>(now) : 1.0;
  const int first_ev = res.events.empty() ? N : res.events.front().step;
  const int last_ev = res.events.empty() ? 0 : res.events.back().step;
  double before = 0, after = 0;
  int nb = 0, na = 0;
  int64_t after_tokens = 0;
  for (const FaultStep& f : res.steps) {
    if (f.step < first_ev) before += f.tpot_ms, ++nb;
    if (f.step > last_ev) after += f.tpot_ms, ++na, after_tokens += f.tokens;
    if (f.phase == "fault" || f.phase == "rejoin")
      res.tpot_fault_ms = std::max(res.tpot_fault_ms, f.tpot_ms);
  }
  res.tpot_before_ms = nb ? before / nb : 0;
  res.tpot_after_ms = na ? after / na : 0;
  res.tokens_per_s_after = after > 0 ? static_cast<double>(after_tokens) / (after / 1e3) : 0;
  return res;
}

void write_fault_json(std::ostream& out, const FaultRunResult& r) {
  using plan::json_quoted;
  out << "{\n";
  out << fmt::format(
      "  \"makespan_ms\": {:.6f},\n  \"baseline_makespan_ms\": {:.6f},\n"
      "  \"baseline_tpot_ms\": {:.6f},\n  \"tokens_offered\": {},\n  \"tokens_served\": {},\n"
      "  \"tokens_lost\": {},\n  \"tokens_recomputed\": {},\n  \"degraded_pairs\": {:.1f},\n"
      "  \"availability\": {:.6f},\n  \"uptime\": {:.6f},\n  \"plan_gpus\": {},\n"
      "  \"standby_gpus\": {},\n  \"tpot_before_ms\": {:.6f},\n  \"tpot_fault_ms\": {:.6f},\n"
      "  \"tpot_after_ms\": {:.6f},\n  \"tokens_per_s_after\": {:.3f},\n",
      r.makespan_ns / 1e6, r.baseline_makespan_ns / 1e6, r.baseline_tpot_ms, r.tokens_offered,
      r.tokens_served, r.tokens_lost, r.tokens_recomputed, r.degraded_pairs, r.availability,
      r.uptime, r.plan_gpus, r.standby_gpus, r.tpot_before_ms, r.tpot_fault_ms, r.tpot_after_ms,
      r.tokens_per_s_after);
  out << "  \"events\": [";
  for (size_t i = 0; i < r.events.size(); ++i) {
    const FaultEvent& e = r.events[i];
    out << (i ? ",\n" : "\n")
        << fmt::format(
               "    {{\"step\": {}, \"at_ms\": {:.6f}, \"what\": {}, \"wasted_ms\": {:.6f}, "
               "\"detect_ms\": {:.6f}, \"recovery_ms\": {:.6f}, \"recovery_ops\": {}, \"remap\": [",
               e.step, e.at_ns / 1e6, json_quoted(e.what), e.wasted_ns / 1e6, e.detect_ns / 1e6,
               e.recovery_ns / 1e6, e.recovery_ops);
    for (size_t j = 0; j < e.remap.size(); ++j) out << (j ? ", " : "") << json_quoted(e.remap[j]);
    out << "]}";
  }
  out << (r.events.empty() ? "],\n" : "\n  ],\n");
  out << "  \"steps\": [";
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const FaultStep& f = r.steps[i];
    out << (i ? ",\n" : "\n")
        << fmt::format(
               "    {{\"step\": {}, \"end_ms\": {:.6f}, \"tpot_ms\": {:.6f}, \"tokens\": {}, "
               "\"gpus\": {}, \"phase\": {}}}",
               f.step, f.end_ns / 1e6, f.tpot_ms, f.tokens, f.gpus, json_quoted(f.phase));
  }
  out << (r.steps.empty() ? "]\n}\n" : "\n  ]\n}\n");
}

void write_fault_csv(std::ostream& out, const FaultRunResult& r) {
  out << "step,end_ms,tpot_ms,tokens,gpus,phase\n";
  for (const FaultStep& f : r.steps) {
    out << fmt::format("{},{:.6f},{:.6f},{},{},{}\n", f.step, f.end_ns / 1e6, f.tpot_ms, f.tokens,
                       f.gpus, f.phase);
  }
}

}  // namespace masep::sim
