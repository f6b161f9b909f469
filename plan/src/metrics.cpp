// Metrics of a (Program, Timeline) pair; see metrics.hpp for the definitions.
#include "masep/plan/metrics.hpp"
#include "masep/plan/json_text.hpp"
#include "masep/plan/metrics_folder.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <utility>

#include "masep/plan/memory.hpp"
#include "masep/plan/time_ns.hpp"

namespace masep::plan {
namespace {

using Interval = std::pair<int64_t, int64_t>;  // [start, end) in ns

// Sorts and merges overlapping or touching intervals in place. (One stream's intervals
// arrive in start order, so the sort is usually skipped.)
void merge(std::vector<Interval>& v) {
  if (!std::is_sorted(v.begin(), v.end())) std::sort(v.begin(), v.end());
  size_t out = 0;
  for (const auto& iv : v) {
    if (iv.second <= iv.first) continue;
    if (out > 0 && iv.first <= v[out - 1].second) {
      v[out - 1].second = std::max(v[out - 1].second, iv.second);
    } else {
      v[out++] = iv;
    }
  }
  v.resize(out);
}

int64_t total(const std::vector<Interval>& merged) {
  int64_t sum = 0;
  for (const auto& iv : merged) sum += iv.second - iv.first;
  return sum;
}

// Length of `a` (merged) not covered by `b` (merged).
int64_t uncovered(const std::vector<Interval>& a, const std::vector<Interval>& b) {
  int64_t covered = 0;
  size_t j = 0;
  for (const auto& iv : a) {
    while (j < b.size() && b[j].second <= iv.first) ++j;
    for (size_t k = j; k < b.size() && b[k].first < iv.second; ++k) {
      covered += std::min(iv.second, b[k].second) - std::max(iv.first, b[k].first);
    }
  }
  return total(a) - covered;
}

}  // namespace

double nearest_rank_percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<size_t>(std::ceil(q / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

namespace {

RunMetrics fold_whole(MetricsFolder& f, const Program& p, const Timeline& t) {
  if (t.ops.size() != p.ops.size()) {
    throw std::invalid_argument(fmt::format("compute_metrics: timeline has {} ops, program {}",
                                            t.ops.size(), p.ops.size()));
  }
  f.add(p.ops, t.ops, 0, p.collectives, 0, p.exchanges);
  return f.finish(t.makespan_ns);
}

}  // namespace

RunMetrics compute_metrics(const Program& p, const Timeline& t) {
  MetricsFolder f(p, /*incremental=*/false);
  return fold_whole(f, p, t);
}

RunMetrics compute_metrics(const Scenario& s, const Program& p, const Timeline& t) {
  MetricsFolder f(s, p, /*incremental=*/false);
  return fold_whole(f, p, t);
}

MetricsFolder::MetricsFolder(const Program& header, bool incremental)
    : batch_(header.layout.batch),
      target_(header.target),
      ranks_(header.ranks),
      incremental_(incremental),
      acc_(header.ranks.size()) {}

MetricsFolder::MetricsFolder(const Scenario& s, const Program& header, bool incremental)
    : batch_(s.workload.batch),
      target_(plan_target(s)),
      ranks_(header.ranks),
      incremental_(incremental),
      acc_(header.ranks.size()) {}

void MetricsFolder::add(std::span<const Op> ops, std::span<const OpTiming> t, OpId first_op,
                        std::span<const Collective> collectives, int32_t first_collective,
                        std::span<const Exchange> exchanges) {
  const int n = static_cast<int>(acc_.size());
  const auto local = [&](OpId id) -> int64_t {  // index into ops / t, or -1 outside them
    const int64_t i = static_cast<int64_t>(id) - first_op;
    return i >= 0 && i < static_cast<int64_t>(t.size()) ? i : -1;
  };
  // Steps: the end of each step's last op.
  for (size_t i = 0; i < ops.size(); ++i) {
    const auto& ot = t[i];
    if (ot.start_ns < 0) continue;
    last_end_ = std::max(last_end_, ot.end_ns);
    const int32_t step = ops[i].step;
    if (step_end_.empty()) {
      lo_step_ = step;
    } else if (step < lo_step_) {
      step_end_.insert(step_end_.begin(), static_cast<size_t>(lo_step_ - step), -1);
      lo_step_ = step;
    }
    const auto at = static_cast<size_t>(step - lo_step_);
    if (at >= step_end_.size()) step_end_.resize(at + 1, -1);
    step_end_[at] = std::max(step_end_[at], ot.end_ns);
  }

  // A communication op's time before its partners arrive (the peer of a send/recv, the last
  // member of a collective) is waiting, not transfer: it counts as comm wait, not comm busy.
  std::vector<int64_t> coll_start(collectives.size(), -1);
  for (size_t c = 0; c < collectives.size(); ++c) {
    for (OpId id : collectives[c].ops) {
      const int64_t i = local(id);
      if (i < 0) continue;
      coll_start[c] = std::max(coll_start[c], t[static_cast<size_t>(i)].start_ns);
    }
  }
  // An exchange op (a group call) communicates from the moment its first transfer starts:
  // the earliest time any of its partners has posted its side (and it has posted its own).
  std::vector<int64_t> first_partner;
  if (!exchanges.empty()) {
    first_partner.assign(ops.size(), -1);
    auto earliest = [&](OpId self, OpId partner) {
      const int64_t si = local(self), pi = local(partner);
      if (si < 0 || pi < 0) return;
      const int64_t ps = t[static_cast<size_t>(pi)].start_ns;
      if (ps < 0) return;
      int64_t& f = first_partner[static_cast<size_t>(si)];
      f = f < 0 ? ps : std::min(f, ps);
    };
    for (const Exchange& x : exchanges) {
      for (const Transfer& tr : x.transfers) {
        earliest(tr.src_op, tr.dst_op);
        earliest(tr.dst_op, tr.src_op);
      }
    }
  }
  auto transfer_start = [&](const Op& op, size_t i, const OpTiming& ot) {
    int64_t start = ot.start_ns;
    if (op.kind == OpKind::kExchange && !first_partner.empty()) {
      start = std::max(start, first_partner[i]);
    } else if ((op.kind == OpKind::kSend || op.kind == OpKind::kRecv) && local(op.match) >= 0) {
      start = std::max(start, t[static_cast<size_t>(local(op.match))].start_ns);
    } else if (op.collective >= first_collective &&
               op.collective - first_collective < static_cast<int64_t>(coll_start.size())) {
      start = std::max(start, coll_start[static_cast<size_t>(op.collective - first_collective)]);
    }
    return std::min(start, ot.end_ns);
  };

  for (size_t i = 0; i < ops.size(); ++i) {
    const Op& op = ops[i];
    if (op.rank < 0 || op.rank >= n) {
      throw std::invalid_argument(
          fmt::format("compute_metrics: op {} on rank {} of {}", op.id, op.rank, n));
    }
    Rank& r = acc_[static_cast<size_t>(op.rank)];
    r.bytes += op.hbm_bytes;
    r.flops += op.flops;
    const auto& ot = t[i];
    if (ot.start_ns < 0) continue;
    if (is_communication(op.kind)) {
      const int64_t xfer = transfer_start(op, i, ot);
      r.wait.emplace_back(ot.start_ns, xfer);
      r.comm.emplace_back(xfer, ot.end_ns);
      r.end_comm = std::max(r.end_comm, ot.end_ns);
    } else {
      r.compute.emplace_back(ot.start_ns, ot.end_ns);
      r.end_compute = std::max(r.end_compute, ot.end_ns);
    }
  }
  if (incremental_) {
    for (Rank& r : acc_) fold(r, std::min(r.end_compute, r.end_comm));
  }
}

// Folds the parts of a rank's intervals before `horizon` into its totals and keeps the rest.
// Every total is a length of a union or a difference of interval sets, additive over the cut.
void MetricsFolder::fold(Rank& r, int64_t horizon) {
  std::vector<Interval> keep_c, keep_m, keep_w;
  auto split = [&](std::vector<Interval>& v, std::vector<Interval>& rest) {
    size_t out = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      const Interval iv = v[i];  // a copy: v[out] may be this very element
      if (iv.second <= horizon) {
        v[out++] = iv;
      } else if (iv.first >= horizon) {
        rest.push_back(iv);
      } else {
        v[out++] = {iv.first, horizon};
        rest.emplace_back(horizon, iv.second);
      }
    }
    v.resize(out);
  };
  split(r.compute, keep_c);
  split(r.comm, keep_m);
  split(r.wait, keep_w);
  merge(r.compute);
  merge(r.comm);
  // The union of both (the same merged set as sorting it, in linear time).
  std::vector<Interval> all(r.compute.size() + r.comm.size());
  std::merge(r.compute.begin(), r.compute.end(), r.comm.begin(), r.comm.end(), all.begin());
  merge(all);
  merge(r.wait);
  r.compute_busy += total(r.compute);
  r.comm_busy += total(r.comm);
  r.exposed += uncovered(r.comm, r.compute);
  r.all += total(all);
  r.wait_uncovered += uncovered(r.wait, all);
  r.compute = std::move(keep_c);
  r.comm = std::move(keep_m);
  r.wait = std::move(keep_w);
}

RunMetrics MetricsFolder::finish(int64_t makespan_ns) {
  RunMetrics m;
  m.batch = static_cast<int>(batch_);
  m.makespan_ns = std::max(makespan_ns, last_end_);
  int64_t prev_end = 0;
  for (const int64_t end : step_end_) {
    if (end < 0) continue;
    m.step_ms.push_back(static_cast<double>(end - prev_end) / 1e6);
    prev_end = end;
  }
  m.steps = static_cast<int>(m.step_ms.size());
  if (!m.step_ms.empty()) {
    double sum = 0;
    for (double v : m.step_ms) sum += v;
    m.tpot_mean_ms = sum / static_cast<double>(m.step_ms.size());
    auto sorted = m.step_ms;
    std::sort(sorted.begin(), sorted.end());
    m.tpot_p50_ms = nearest_rank_percentile(sorted, 50);
    m.tpot_p99_ms = nearest_rank_percentile(sorted, 99);
  }
  if (m.makespan_ns > 0) {
    m.tokens_per_s =
        static_cast<double>(m.batch) * m.steps * 1e9 / static_cast<double>(m.makespan_ns);
  }

  // Memory per rank, when the plan's memory model could be computed.
  const std::vector<int64_t>& mem = target_.memory_bytes;
  m.memory_available = !mem.empty() && mem.size() == ranks_.size();

  const auto& gpu = target_.gpu;
  const int n = static_cast<int>(ranks_.size());
  double util_sum = 0;
  const double steps = std::max(1, m.steps);
  for (int i = 0; i < n; ++i) {
    Rank& a = acc_[static_cast<size_t>(i)];
    fold(a, std::numeric_limits<int64_t>::max());
    RankMetrics rm;
    rm.rank = i;
    rm.role = ranks_[static_cast<size_t>(i)].role;
    rm.label = ranks_[static_cast<size_t>(i)].label;
    rm.compute_busy_ns = a.compute_busy;
    rm.comm_busy_ns = a.comm_busy;
    rm.exposed_comm_ns = a.exposed;
    rm.idle_ns = m.makespan_ns - a.all;
    rm.comm_wait_ns = a.wait_uncovered;
    rm.utilisation = m.makespan_ns > 0 ? static_cast<double>(rm.compute_busy_ns) /
                                             static_cast<double>(m.makespan_ns)
                                       : 0.0;
    if (m.memory_available) rm.memory_bytes = mem[static_cast<size_t>(i)];
    rm.step_hbm_bytes = std::llround(static_cast<double>(a.bytes) / steps);
    rm.step_flops = a.flops / steps;
    // GB/s == bytes per ns; TFLOP/s · 1e3 == FLOPs per ns.
    double floor_ns = 0;
    if (gpu.hbm_GBps > 0) floor_ns = static_cast<double>(rm.step_hbm_bytes) / gpu.hbm_GBps;
    if (gpu.bf16_tflops > 0) floor_ns = std::max(floor_ns, rm.step_flops / (gpu.bf16_tflops * 1e3));
    rm.roofline_floor_ns = checked_ns(std::round(floor_ns), "roofline floor");

    util_sum += rm.utilisation;
    m.exposed_comm_ns += rm.exposed_comm_ns;
    if (rm.role == Role::kMoe) {
      m.moe_idle_ns += rm.idle_ns;
    } else {
      // Attention ranks; a co-located rank does both jobs and counts as attention side.
      m.attention_idle_ns += rm.idle_ns;
    }
    m.ranks.push_back(std::move(rm));
  }
  m.mean_utilisation = n > 0 ? util_sum / n : 0.0;
  return m;
}

namespace {

// Doubles as JSON numbers: shortest round-trip form; non-finite values become null.
void append_double(fmt::memory_buffer& b, double v) {
  if (!std::isfinite(v)) {
    fmt::format_to(std::back_inserter(b), "null");
  } else {
    fmt::format_to(std::back_inserter(b), "{}", v);
  }
}

}  // namespace

void write_metrics_json(std::ostream& out, const RunMetrics& m) {
  fmt::memory_buffer b;
  auto it = std::back_inserter(b);
  fmt::format_to(it, "{{\n  \"steps\": {},\n  \"batch\": {},\n", m.steps, m.batch);
  auto field = [&](const char* name, double v) {
    fmt::format_to(it, "  \"{}\": ", name);
    append_double(b, v);
    fmt::format_to(it, ",\n");
  };
  field("tpot_mean_ms", m.tpot_mean_ms);
  field("tpot_p50_ms", m.tpot_p50_ms);
  field("tpot_p99_ms", m.tpot_p99_ms);
  field("tokens_per_s", m.tokens_per_s);
  field("mean_utilisation", m.mean_utilisation);
  fmt::format_to(it,
                 "  \"attention_idle_ns\": {},\n  \"moe_idle_ns\": {},\n"
                 "  \"exposed_comm_ns\": {},\n  \"makespan_ns\": {},\n"
                 "  \"memory_available\": {},\n  \"step_ms\": [",
                 m.attention_idle_ns, m.moe_idle_ns, m.exposed_comm_ns, m.makespan_ns,
                 m.memory_available ? "true" : "false");
  for (size_t i = 0; i < m.step_ms.size(); ++i) {
    if (i) fmt::format_to(it, ", ");
    append_double(b, m.step_ms[i]);
  }
  fmt::format_to(it, "],\n  \"ranks\": [");
  for (size_t i = 0; i < m.ranks.size(); ++i) {
    const auto& r = m.ranks[i];
    fmt::format_to(it, "{}\n    {{\"rank\": {}, \"role\": \"{}\", \"label\": ", i ? "," : "",
                   r.rank, to_string(r.role));
    append_json_string(b, r.label);
    fmt::format_to(it, ", \"utilisation\": ");
    append_double(b, r.utilisation);
    fmt::format_to(it,
                   ", \"compute_busy_ns\": {}, \"comm_busy_ns\": {}, \"exposed_comm_ns\": {}, "
                   "\"idle_ns\": {}, \"comm_wait_ns\": {}, \"memory_bytes\": {}, "
                   "\"step_hbm_bytes\": {}, "
                   "\"step_flops\": ",
                   r.compute_busy_ns, r.comm_busy_ns, r.exposed_comm_ns, r.idle_ns, r.comm_wait_ns,
                   r.memory_bytes, r.step_hbm_bytes);
    append_double(b, r.step_flops);
    fmt::format_to(it, ", \"roofline_floor_ns\": {}}}", r.roofline_floor_ns);
  }
  fmt::format_to(it, "\n  ]\n}}\n");
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
}

}  // namespace masep::plan
