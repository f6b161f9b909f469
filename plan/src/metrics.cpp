// Metrics of a (Program, Timeline) pair; see metrics.hpp for the definitions.
#include "masep/plan/metrics.hpp"
#include "masep/plan/json_text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
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

// Nearest-rank percentile (q in (0, 100]) of sorted values.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<size_t>(std::ceil(q / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace

RunMetrics compute_metrics(const Scenario& s, const Program& p, const Timeline& t) {
  if (t.ops.size() != p.ops.size()) {
    throw std::invalid_argument(fmt::format("compute_metrics: timeline has {} ops, program {}",
                                            t.ops.size(), p.ops.size()));
  }
  RunMetrics m;
  m.batch = s.workload.batch;

  // Makespan: the timeline's, or the last op end if the timeline left it unset.
  int64_t last_end = 0;
  for (const auto& ot : t.ops) {
    if (ot.start_ns >= 0) last_end = std::max(last_end, ot.end_ns);
  }
  m.makespan_ns = std::max(t.makespan_ns, last_end);

  // Step durations from the end of each step's last op.
  // (Indexed by step - the smallest step; -1 = no op of that step ran.)
  int32_t lo_step = 0, hi_step = -1;
  for (const auto& op : p.ops) {
    if (t.ops[static_cast<size_t>(op.id)].start_ns < 0) continue;
    if (hi_step < lo_step) {
      lo_step = hi_step = op.step;
    } else {
      lo_step = std::min(lo_step, op.step);
      hi_step = std::max(hi_step, op.step);
    }
  }
  std::vector<int64_t> step_end(static_cast<size_t>(std::max(0, hi_step - lo_step + 1)), -1);
  for (const auto& op : p.ops) {
    const auto& ot = t.ops[static_cast<size_t>(op.id)];
    if (ot.start_ns < 0) continue;
    int64_t& e = step_end[static_cast<size_t>(op.step - lo_step)];
    e = std::max(e, ot.end_ns);
  }
  int64_t prev_end = 0;
  for (const int64_t end : step_end) {
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
    m.tpot_p50_ms = percentile(sorted, 50);
    m.tpot_p99_ms = percentile(sorted, 99);
  }
  if (m.makespan_ns > 0) {
    m.tokens_per_s =
        static_cast<double>(m.batch) * m.steps * 1e9 / static_cast<double>(m.makespan_ns);
  }

  // Memory per rank, when the plan's memory model can be computed.
  std::vector<MemoryBreakdown> mem;
  try {
    mem = plan_memory(s);
    m.memory_available = static_cast<int>(mem.size()) == p.rank_count();
  } catch (const std::exception&) {
    m.memory_available = false;
  }

  const auto& gpu = s.topology.gpu;
  const int n = p.rank_count();

  // A communication op's time before its partners arrive (the peer of a send/recv, the last
  // member of a collective) is waiting, not transfer: it counts as comm wait, not comm busy.
  std::vector<int64_t> coll_start(p.collectives.size(), -1);
  for (size_t c = 0; c < p.collectives.size(); ++c) {
    for (OpId id : p.collectives[c].ops) {
      if (id < 0 || static_cast<size_t>(id) >= t.ops.size()) continue;
      coll_start[c] = std::max(coll_start[c], t.ops[static_cast<size_t>(id)].start_ns);
    }
  }
  // An exchange op (a group call) communicates from the moment its first transfer starts:
  // the earliest time any of its partners has posted its side (and it has posted its own).
  std::vector<int64_t> first_partner;
  if (!p.exchanges.empty()) {
    first_partner.assign(p.ops.size(), -1);
    auto earliest = [&](OpId self, OpId partner) {
      if (self < 0 || partner < 0 || static_cast<size_t>(self) >= t.ops.size() ||
          static_cast<size_t>(partner) >= t.ops.size()) {
        return;
      }
      const int64_t ps = t.ops[static_cast<size_t>(partner)].start_ns;
      if (ps < 0) return;
      int64_t& f = first_partner[static_cast<size_t>(self)];
      f = f < 0 ? ps : std::min(f, ps);
    };
    for (const Exchange& x : p.exchanges) {
      for (const Transfer& tr : x.transfers) {
        earliest(tr.src_op, tr.dst_op);
        earliest(tr.dst_op, tr.src_op);
      }
    }
  }
  auto transfer_start = [&](const Op& op, const OpTiming& ot) {
    int64_t start = ot.start_ns;
    if (op.kind == OpKind::kExchange && !first_partner.empty()) {
      start = std::max(start, first_partner[static_cast<size_t>(op.id)]);
    } else if ((op.kind == OpKind::kSend || op.kind == OpKind::kRecv) && op.match >= 0 &&
               static_cast<size_t>(op.match) < t.ops.size()) {
      start = std::max(start, t.ops[static_cast<size_t>(op.match)].start_ns);
    } else if (op.collective >= 0 && static_cast<size_t>(op.collective) < coll_start.size()) {
      start = std::max(start, coll_start[static_cast<size_t>(op.collective)]);
    }
    return std::min(start, ot.end_ns);
  };

  std::vector<std::vector<Interval>> compute(n), comm(n), wait(n), all(n);
  std::vector<int64_t> bytes(n, 0);
  std::vector<double> flops(n, 0);
  for (const auto& op : p.ops) {
    if (op.rank < 0 || op.rank >= n) {
      throw std::invalid_argument(
          fmt::format("compute_metrics: op {} on rank {} of {}", op.id, op.rank, n));
    }
    bytes[op.rank] += op.hbm_bytes;
    flops[op.rank] += op.flops;
    const auto& ot = t.ops[static_cast<size_t>(op.id)];
    if (ot.start_ns < 0) continue;
    if (is_communication(op.kind)) {
      const int64_t xfer = transfer_start(op, ot);
      wait[op.rank].emplace_back(ot.start_ns, xfer);
      comm[op.rank].emplace_back(xfer, ot.end_ns);
    } else {
      compute[op.rank].emplace_back(ot.start_ns, ot.end_ns);
    }
  }

  double util_sum = 0;
  const double steps = std::max(1, m.steps);
  for (int r = 0; r < n; ++r) {
    RankMetrics rm;
    rm.rank = r;
    rm.role = p.ranks[r].role;
    rm.label = p.ranks[r].label;
    merge(compute[r]);
    merge(comm[r]);
    // The union of both (the same merged set as sorting `all` itself, in linear time).
    all[r].resize(compute[r].size() + comm[r].size());
    std::merge(compute[r].begin(), compute[r].end(), comm[r].begin(), comm[r].end(),
               all[r].begin());
    merge(all[r]);
    merge(wait[r]);
    rm.compute_busy_ns = total(compute[r]);
    rm.comm_busy_ns = total(comm[r]);
    rm.exposed_comm_ns = uncovered(comm[r], compute[r]);
    rm.idle_ns = m.makespan_ns - total(all[r]);
    rm.comm_wait_ns = uncovered(wait[r], all[r]);
    rm.utilisation = m.makespan_ns > 0 ? static_cast<double>(rm.compute_busy_ns) /
                                             static_cast<double>(m.makespan_ns)
                                       : 0.0;
    if (m.memory_available) rm.memory_bytes = mem[r].total();
    rm.step_hbm_bytes = std::llround(static_cast<double>(bytes[r]) / steps);
    rm.step_flops = flops[r] / steps;
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
