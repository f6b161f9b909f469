// The executor's recovery plan after ranks fail: see rank_recovery.hpp.
#include "masep/plan/rank_recovery.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

namespace masep::plan {
namespace {

std::string list(const std::vector<int>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
  return out.empty() ? "none" : out;
}

// The global sequences an attention rank serves (every micro-batch's chunk).
std::set<int64_t> sequences_of(const RankInfo& r) {
  std::set<int64_t> out;
  if (r.role != Role::kAttention) return out;
  for (const RankBatch& b : r.batches) {
    for (int64_t q = 0; q < b.sequences; ++q) out.insert(b.first_sequence + q);
  }
  return out;
}

// Compressed ranges of sequence indices for describe(): "0-3,12-15".
std::string ranges(const std::vector<int64_t>& v) {
  std::string out;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    out += (out.empty() ? "" : ",") +
           (j == i ? std::to_string(v[i]) : fmt::format("{}-{}", v[i], v[j]));
    i = j + 1;
  }
  return out;
}

}  // namespace

std::vector<std::string> RankRecovery::describe() const {
  std::vector<std::string> out;
  out.push_back(fmt::format("failed plan ranks {}; resume at step {}", list(failed_ranks),
                            resume_step));
  if (!idle_ranks.empty()) {
    out.push_back(fmt::format("ranks {} stay alive but leave (their replica is lost)",
                              list(idle_ranks)));
  }
  out.push_back(fmt::format(
      "new world: {} ranks (old ranks {}), communicators {}", old_rank_of_new.size(),
      list(old_rank_of_new),
      shrink ? "shrunk (ncclCommShrink)" : "re-initialised (new NCCL id from the launcher)"));
  for (const std::string& line : remap.describe()) out.push_back(line);
  for (const RankRebuild& r : rebuild) {
    if (r.nothing()) continue;
    std::string what;
    if (!r.new_experts.empty()) {
      what += fmt::format("experts {} ({:.2f} GB", list(r.new_experts), r.expert_bytes / 1e9);
      std::set<int> src(r.expert_sources.begin(), r.expert_sources.end());
      std::vector<std::string> from;
      for (int g : src) from.push_back(g < 0 ? "host memory" : fmt::format("GPU {}", g));
      what += " from ";
      for (size_t i = 0; i < from.size(); ++i) what += (i ? ", " : "") + from[i];
      what += ")";
    }
    if (!r.new_sequences.empty()) {
      what += fmt::format("{}KV of {} sequence(s) ({})", what.empty() ? "" : "; ",
                          r.new_sequences.size(), ranges(r.new_sequences));
    }
    if (r.attention_weights) what += fmt::format("{}attention weights", what.empty() ? "" : "; ");
    out.push_back(fmt::format("new rank {} (old {}, GPU {}) rebuilds {}", r.new_rank, r.old_rank,
                              r.gpu, what));
  }
  return out;
}

RankRecovery recover_ranks(const Scenario& s, const Program& p, std::vector<int> failed_ranks,
                           int resume_step, const CompileOptions& options) {
  const int n = p.rank_count();
  std::sort(failed_ranks.begin(), failed_ranks.end());
  failed_ranks.erase(std::unique(failed_ranks.begin(), failed_ranks.end()), failed_ranks.end());
  if (failed_ranks.empty()) throw std::invalid_argument("recover_ranks: no failed rank");
  for (int r : failed_ranks) {
    if (r < 0 || r >= n) {
      throw std::invalid_argument(
          fmt::format("recover_ranks: failed rank {} is not a rank of the plan (0..{})", r, n - 1));
    }
  }
  const int end_step = p.first_step + p.steps;
  if (resume_step < p.first_step || resume_step >= end_step) {
    throw std::invalid_argument(fmt::format(
        "recover_ranks: resume step {} is outside the Program's steps {}..{}", resume_step,
        p.first_step, end_step - 1));
  }
  std::vector<int> failed_gpus;
  for (int r : failed_ranks) failed_gpus.push_back(p.ranks[static_cast<size_t>(r)].gpu);

  Scenario base = s;
  base.faults.clear();
  RankRecovery out;
  out.resume_step = resume_step;
  out.failed_ranks = failed_ranks;
  out.remap = remap(base, failed_gpus, resume_step);
  if (!out.remap.covered()) {
    std::string what;
    for (const std::string& l : out.remap.losses) what += (what.empty() ? "" : "; ") + l;
    throw FaultNotCovered(fmt::format("the plan's redundancy cannot cover the failure of plan "
                                      "ranks {} (GPUs {}): {}",
                                      list(failed_ranks), list(failed_gpus), what));
  }
  CompileOptions co = options;
  co.first_step = resume_step;
  co.steps = end_step - resume_step;
  out.program = compile(out.remap.degraded, co);

  // Ranks by GPU: the degraded plan's ranks are the surviving and standby GPUs.
  std::map<int, int> old_rank_of_gpu;
  for (int r = 0; r < n; ++r) old_rank_of_gpu[p.ranks[static_cast<size_t>(r)].gpu] = r;
  const int m = out.program.rank_count();
  out.new_rank_of_old.assign(static_cast<size_t>(n), -1);
  out.old_rank_of_new.assign(static_cast<size_t>(m), -1);
  for (int q = 0; q < m; ++q) {
    const auto it = old_rank_of_gpu.find(out.program.ranks[static_cast<size_t>(q)].gpu);
    if (it == old_rank_of_gpu.end()) continue;  // a standby joining
    out.old_rank_of_new[static_cast<size_t>(q)] = it->second;
    out.new_rank_of_old[static_cast<size_t>(it->second)] = q;
  }
  for (int r = 0; r < n; ++r) {
    if (out.new_rank_of_old[static_cast<size_t>(r)] < 0 &&
        !std::binary_search(failed_ranks.begin(), failed_ranks.end(), r)) {
      out.idle_ranks.push_back(r);
    }
  }
  out.shrink = std::is_sorted(out.old_rank_of_new.begin(), out.old_rank_of_new.end()) &&
               std::find(out.old_rank_of_new.begin(), out.old_rank_of_new.end(), -1) ==
                   out.old_rank_of_new.end();

  // What each new rank rebuilds.
  const int64_t ebytes = s.model.expert_weight_bytes() * s.model.layers;
  std::map<std::pair<int, int>, int> source;  // (expert, dst GPU) -> src GPU (-1 host)
  for (const WeightLoad& w : out.remap.weight_loads) source[{w.expert, w.dst_gpu}] = w.src_gpu;
  for (int q = 0; q < m; ++q) {
    const RankInfo& now = out.program.ranks[static_cast<size_t>(q)];
    RankRebuild rb;
    rb.new_rank = q;
    rb.old_rank = out.old_rank_of_new[static_cast<size_t>(q)];
    rb.gpu = now.gpu;
    static const RankInfo kNone = [] {
      RankInfo r;
      r.role = Role::kMoe;
      return r;
    }();
    const RankInfo& before = rb.old_rank >= 0 ? p.ranks[static_cast<size_t>(rb.old_rank)] : kNone;
    if (now.role == Role::kMoe) {
      for (int e : now.experts) {
        const bool held = before.role == Role::kMoe &&
                          std::find(before.experts.begin(), before.experts.end(), e) !=
                              before.experts.end();
        if (held) continue;
        rb.new_experts.push_back(e);
        const auto it = source.find({e, now.gpu});
        rb.expert_sources.push_back(it == source.end() ? -1 : it->second);
        rb.expert_bytes += ebytes;
      }
    }
    if (now.role == Role::kAttention) {
      const std::set<int64_t> had = sequences_of(before);
      for (int64_t q2 : sequences_of(now)) {
        if (!had.count(q2)) rb.new_sequences.push_back(q2);
      }
      rb.attention_weights =
          before.role != Role::kAttention || before.group_index != now.group_index;
    }
    out.rebuild.push_back(std::move(rb));
  }
  return out;
}

ExecFaultPlan plan_exec_faults(const Scenario& s, const Program& p, const CompileOptions& options) {
  ExecFaultPlan out;
  if (s.faults.empty()) return out;
  if (s.fault_tolerance.standby_gpus > 0) {
    throw std::invalid_argument(
        "fault_tolerance.standby_gpus: masep exec does not start processes for standby GPUs "
        "yet (the survivors re-map among themselves); simulate standbys with masep sim");
  }
  for (const FaultSpec& f : s.faults) {
    if (f.kind != FaultKind::kGpu && f.kind != FaultKind::kStraggler) {
      throw std::invalid_argument(fmt::format(
          "{}.kind: {} faults are simulated only (masep sim); masep exec kills a GPU's rank "
          "(kind gpu) or slows it (kind straggler)",
          f.key, to_string(f.kind)));
    }
    if (f.step < 0) {
      throw std::invalid_argument(fmt::format(
          "{}.at_ms: masep exec injects faults at a decode step; give step: instead", f.key));
    }
    ExecFault ef;
    ef.gpu = f.gpu;
    ef.step = f.step;
    if (f.kind == FaultKind::kGpu) {
      if (f.steps > 0) {
        throw std::invalid_argument(fmt::format(
            "{}.steps: masep exec kills a rank for good (a GPU re-joining is simulated only); "
            "drop steps:",
            f.key));
      }
      ef.kind = ExecFault::kKill;
    } else {
      ef.kind = ExecFault::kStraggler;
      ef.speed = f.speed;
      ef.last_step = f.steps > 0 ? f.step + f.steps - 1 : -1;
    }
    out.faults.push_back(ef);
  }
  std::stable_sort(out.faults.begin(), out.faults.end(),
                   [](const ExecFault& a, const ExecFault& b) { return a.step < b.step; });
  // Chain the kills: each re-maps the plan the previous one left.
  Scenario cur = s;
  cur.faults.clear();
  Program prog = p;
  for (size_t i = 0; i < out.faults.size(); ++i) {
    const ExecFault& f = out.faults[i];
    if (f.kind != ExecFault::kKill) continue;
    std::vector<int> ranks;
    for (int r = 0; r < prog.rank_count(); ++r) {
      if (prog.ranks[static_cast<size_t>(r)].gpu == f.gpu) ranks.push_back(r);
    }
    if (ranks.empty()) {
      throw std::invalid_argument(fmt::format(
          "faults: GPU {} fails at step {} but an earlier fault already took it out of the plan",
          f.gpu, f.step));
    }
    if (f.step >= prog.first_step + prog.steps) {
      throw std::invalid_argument(
          fmt::format("faults: GPU {} fails at step {}, past the run's last step {}", f.gpu,
                      f.step, prog.first_step + prog.steps - 1));
    }
    RankRecovery rr = recover_ranks(cur, prog, ranks, f.step, options);
    cur = rr.remap.degraded;
    prog = rr.program;
    out.recoveries.push_back(std::move(rr));
  }
  return out;
}

}  // namespace masep::plan
