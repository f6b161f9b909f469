// Re-mapping after failures: see remap.hpp for the rules.
#include "masep/plan/remap.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <stdexcept>

#include "masep/plan/attention_balance.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/placement.hpp"
#include "masep/plan/routing.hpp"

namespace masep::plan {
namespace {

int64_t part(int64_t n, int64_t k, int64_t i) { return n * (i + 1) / k - n * i / k; }

std::string list(const std::vector<int>& v, size_t max = 12) {
  std::string out;
  for (size_t i = 0; i < v.size() && i < max; ++i) out += (i ? "," : "") + std::to_string(v[i]);
  if (v.size() > max) out += fmt::format(",... ({} in all)", v.size());
  return out;
}

std::string gb(int64_t bytes) { return fmt::format("{:.2f} GB", static_cast<double>(bytes) / 1e9); }

}  // namespace

bool PlanGpus::uses(int gpu) const {
  for (const auto& r : replicas) {
    if (std::find(r.begin(), r.end(), gpu) != r.end()) return true;
  }
  return std::find(moe.begin(), moe.end(), gpu) != moe.end();
}

PlanGpus plan_gpus(const Scenario& s) {
  if (s.plan.kind != PlanKind::kMaSeparation) {
    throw std::invalid_argument(
        "fault tolerance supports MA-separation plans only (plan.kind is colocated)");
  }
  const AttentionPlan& a = s.plan.attention;
  if (a.per_replica()) {
    throw std::invalid_argument(
        "fault tolerance supports attention replicas of equal size only (plan.attention.replicas "
        "is a list)");
  }
  PlanGpus pg;
  pg.group_size = a.head_parallel * a.sequence_parallel;
  const int total = a.gpus + s.plan.moe.gpus;
  auto gpu_of = [&](int rank) { return s.plan.gpu_ranks.empty() ? rank : s.plan.gpu_ranks[rank]; };
  pg.replicas.resize(static_cast<size_t>(a.replicas));
  for (int r = 0; r < a.replicas; ++r) {
    for (int i = 0; i < pg.group_size; ++i) pg.replicas[r].push_back(gpu_of(r * pg.group_size + i));
    int64_t seqs = 0;  // the compiler's chunking: micro-batch mb, replica r
    for (int mb = 0; mb < s.plan.micro_batches; ++mb) {
      seqs += part(s.workload.batch, static_cast<int64_t>(a.replicas) * s.plan.micro_batches,
                   static_cast<int64_t>(mb) * a.replicas + r);
    }
    pg.replica_sequences.push_back(seqs);
  }
  for (int g = 0; g < s.plan.moe.gpus; ++g) pg.moe.push_back(gpu_of(a.gpus + g));
  pg.holders = expert_gpus(s);
  std::set<int> used;
  for (int i = 0; i < total; ++i) used.insert(gpu_of(i));
  if (!s.fault_tolerance.standby_list.empty()) {
    pg.standby = s.fault_tolerance.standby_list;
    return pg;
  }
  for (int g = 0; g < s.topology.total_gpus() &&
                  static_cast<int>(pg.standby.size()) < s.fault_tolerance.standby_gpus;
       ++g) {
    if (!used.count(g)) pg.standby.push_back(g);
  }
  return pg;
}

Remap remap(const Scenario& s, const std::vector<int>& failed_gpus, int step) {
  const PlanGpus pg = plan_gpus(s);
  const FaultTolerance& ft = s.fault_tolerance;
  const models::Model& m = s.model;
  Remap out;
  std::set<int> failed;
  for (int g : failed_gpus) {
    if (pg.uses(g) || std::find(pg.standby.begin(), pg.standby.end(), g) != pg.standby.end()) {
      failed.insert(g);
    }
  }
  out.failed.assign(failed.begin(), failed.end());
  std::vector<int> spares;
  for (int g : pg.standby) {
    if (!failed.count(g)) spares.push_back(g);
  }
  size_t next_spare = 0;
  auto take_spare = [&](int failed_gpu) -> int {
    if (next_spare >= spares.size()) return -1;
    const int g = spares[next_spare++];
    out.replacements.emplace_back(failed_gpu, g);
    out.joined.push_back(g);
    return g;
  };

  // ---- attention -------------------------------------------------------------------------
  const int R = static_cast<int>(pg.replicas.size());
  const int t = pg.group_size;
  const int sp = s.plan.attention.sequence_parallel;
  const int hp = s.plan.attention.head_parallel;
  const int64_t kvh_l = std::max(1, m.kv_heads / hp);
  const int64_t kv_tok_bytes =  // one token, all layers, one GPU's heads, one KV shard
      static_cast<int64_t>(m.layers) * 2 * kvh_l * m.head_dim * models::dtype_bytes(m.dtype);
  const std::vector<int32_t> ctx = placed_context_lengths(s);  // the compiler's order
  // Sequences of each replica in the replica's order (the compiler's chunks, mb-major).
  std::vector<std::vector<int64_t>> seqs(static_cast<size_t>(R));
  {
    const int mbs = s.plan.micro_batches;
    const int64_t chunks = static_cast<int64_t>(R) * mbs;
    for (int mb = 0; mb < mbs; ++mb) {
      for (int r = 0; r < R; ++r) {
        const int64_t idx = static_cast<int64_t>(mb) * R + r;
        const int64_t b = s.workload.batch * idx / chunks;
        const int64_t n = part(s.workload.batch, chunks, idx);
        for (int64_t q = b; q < b + n; ++q) seqs[r].push_back(q);
      }
    }
  }
  auto kv_len = [&](int64_t q) { return static_cast<int64_t>(ctx[q]) + step; };
  // Pass 1: which replicas survive (repaired by standbys or intact), with their GPUs.
  std::vector<std::vector<int>> gpus = pg.replicas;
  std::vector<bool> lost(static_cast<size_t>(R), false);
  std::vector<std::vector<int>> replaced_idx(static_cast<size_t>(R));  // group indices replaced
  for (int r = 0; r < R; ++r) {
    std::vector<int> bad;
    for (int i = 0; i < t; ++i) {
      if (failed.count(pg.replicas[r][i])) bad.push_back(i);
    }
    if (bad.empty()) continue;
    if (spares.size() - next_spare >= bad.size()) {
      for (int i : bad) gpus[r][i] = take_spare(pg.replicas[r][i]);
      replaced_idx[r] = bad;
    } else {
      lost[r] = true;
      out.lost_replicas.push_back(r);
      for (int i = 0; i < t; ++i) {
        if (!failed.count(pg.replicas[r][i])) out.idle.push_back(pg.replicas[r][i]);
      }
    }
  }
  std::vector<int> survivors;
  for (int r = 0; r < R; ++r) {
    if (!lost[r]) survivors.push_back(r);
  }
  // The mirror replica of sequence j of replica r (kv_copies 2): the (j mod )-th other.
  auto mirror_of = [&](int r, size_t j) {
    const int k = static_cast<int>(j % static_cast<size_t>(R - 1));
    return k < r ? k : k + 1;
  };
  const bool mirrored = ft.kv_copies >= 2 && R >= 2;
  std::vector<int64_t> reprefill_seqs(static_cast<size_t>(R), 0), reprefill_tok(R, 0);
  int64_t dropped = 0;
  int spread = 0;  // round-robin over survivors for re-prefill of lost replicas' sequences
  int from = 0;    // the replica whose sequence handle_lost_kv decides on
  auto handle_lost_kv = [&](int64_t q, int target) {
    switch (ft.on_kv_loss) {
      case KvLossPolicy::kReprefill:
        out.moves.push_back({q, from, target, SequenceMove::kReprefill});
        ++reprefill_seqs[target];
        reprefill_tok[target] += kv_len(q);
        ++out.sequences_reprefilled;
        out.reprefill_tokens += kv_len(q);
        return true;
      case KvLossPolicy::kDrop:
        out.moves.push_back({q, from, -1, SequenceMove::kDropped});
        ++dropped;
        return true;
      case KvLossPolicy::kFail:
        break;
    }
    return false;
  };
  int64_t unrecoverable = 0;
  std::vector<int> unrecoverable_replicas;
  for (int r = 0; r < R; ++r) {
    bool any_lost_here = false;
    from = r;
    if (lost[r]) {
      for (size_t j = 0; j < seqs[r].size(); ++j) {
        const int64_t q = seqs[r][j];
        const int mr = mirrored ? mirror_of(r, j) : -1;
        if (mr >= 0 && !lost[mr] && replaced_idx[mr].empty()) {
          out.moves.push_back({q, r, mr, SequenceMove::kMirror});
          ++out.sequences_migrated;
          continue;
        }
        if (survivors.empty() ||
            !handle_lost_kv(q, survivors[static_cast<size_t>(spread++) % survivors.size()])) {
          ++unrecoverable;
          any_lost_here = true;
        }
      }
    } else if (!replaced_idx[r].empty()) {
      // Each replaced GPU needs its KV shard of every sequence of the replica back: from the
      // sequence's mirror when it holds that shard, else re-prefill (all shards at once).
      for (size_t j = 0; j < seqs[r].size(); ++j) {
        const int64_t q = seqs[r][j];
        const int mr = mirrored ? mirror_of(r, j) : -1;
        bool have = mr >= 0 && !lost[mr];
        for (int i : replaced_idx[r]) {
          have = have && std::find(replaced_idx[mr].begin(), replaced_idx[mr].end(), i) ==
                             replaced_idx[mr].end();
        }
        if (!have) {
          if (!handle_lost_kv(q, r)) {
            ++unrecoverable;
            any_lost_here = true;
          }
          continue;
        }
        for (int i : replaced_idx[r]) {
          const int src = gpus[mr][i], dst = gpus[r][i];
          const int64_t bytes = part(kv_len(q), sp, i % sp) * kv_tok_bytes;
          auto it = std::find_if(out.kv_copies.begin(), out.kv_copies.end(), [&](const KvCopy& c) {
            return c.src_gpu == src && c.dst_gpu == dst;
          });
          if (it == out.kv_copies.end()) {
            out.kv_copies.push_back({src, dst, bytes});
          } else {
            it->bytes += bytes;
          }
        }
      }
    }
    if (any_lost_here) unrecoverable_replicas.push_back(r);
  }
  if (survivors.empty()) {
    out.losses.push_back(fmt::format(
        "every attention replica is lost (GPUs {} fail, {} standby GPUs): no GPU is left to "
        "serve the {} sequences",
        list(out.failed), pg.standby.size(), s.workload.batch));
  } else if (unrecoverable > 0) {
    out.losses.push_back(fmt::format(
        "the KV caches of {} sequences (attention replicas {}) have no surviving copy and "
        "fault_tolerance.on_kv_loss is fail: set kv_copies: 2 (a mirror on another replica), "
        "standby_gpus, or on_kv_loss: re_prefill or drop",
        unrecoverable, list(unrecoverable_replicas)));
  }
  out.sequences_dropped = dropped;

  // ---- experts ---------------------------------------------------------------------------
  const int G = static_cast<int>(pg.moe.size());
  std::vector<int> moe_gpu = pg.moe;                   // after replacements; -1 = removed
  std::vector<std::vector<int>> holders = pg.holders;  // MoE-local indices
  const int64_t ebytes = m.expert_weight_bytes() * m.layers;
  std::vector<bool> removed(static_cast<size_t>(G), false);
  std::vector<int> replaced_moe;
  for (int g = 0; g < G; ++g) {
    if (!failed.count(pg.moe[g])) continue;
    const int spare = take_spare(pg.moe[g]);
    if (spare >= 0) {
      moe_gpu[g] = spare;
      replaced_moe.push_back(g);
    } else {
      removed[g] = true;
    }
  }
  std::vector<int> count(static_cast<size_t>(G), 0);  // experts per surviving MoE GPU
  for (const auto& h : holders) {
    for (int g : h) ++count[g];
  }
  auto alive_holder = [&](const std::vector<int>& h, int except) {
    for (int g : h) {
      if (g != except && !removed[g] &&
          std::find(replaced_moe.begin(), replaced_moe.end(), g) == replaced_moe.end()) {
        return g;
      }
    }
    return -1;
  };
  auto least_loaded = [&](const std::vector<int>& exclude) {
    int best = -1;
    for (int g = 0; g < G; ++g) {
      if (removed[g] || std::find(exclude.begin(), exclude.end(), g) != exclude.end()) continue;
      if (best < 0 || count[g] < count[best]) best = g;
    }
    return best;
  };
  std::vector<int> lost_experts;
  for (int e = 0; e < m.experts; ++e) {
    auto& h = holders[e];
    bool touched = false;
    // Standby replacements keep their local index: fill them.
    for (int g : h) {
      if (std::find(replaced_moe.begin(), replaced_moe.end(), g) == replaced_moe.end()) continue;
      touched = true;
      const int src = alive_holder(h, g);
      if (src >= 0 && ft.restore_experts != WeightSource::kHost) {
        out.weight_loads.push_back({e, moe_gpu[g], moe_gpu[src], ebytes});
      } else {
        out.weight_loads.push_back({e, moe_gpu[g], -1, ebytes});
      }
    }
    std::vector<int> gone;
    for (int g : h) {
      if (removed[g]) gone.push_back(g);
    }
    if (gone.empty()) {
      if (touched && std::find(out.reloaded_experts.begin(), out.reloaded_experts.end(), e) ==
                         out.reloaded_experts.end()) {
        // A standby re-filled: counts as fail-over when another copy served meanwhile.
        if (h.size() > 1) out.failover_experts.push_back(e);
      }
      continue;
    }
    std::vector<int> keep;
    for (int g : h) {
      if (!removed[g]) keep.push_back(g);
    }
    for (int g : gone) --count[g];
    if (!keep.empty()) {
      out.failover_experts.push_back(e);
      if (ft.restore_experts != WeightSource::kNone) {
        for (size_t k = 0; k < gone.size(); ++k) {
          const int dst = least_loaded(keep);
          if (dst < 0) break;
          const int src = alive_holder(keep, -1);
          out.weight_loads.push_back(
              {e, moe_gpu[dst],
               ft.restore_experts == WeightSource::kPeer && src >= 0 ? moe_gpu[src] : -1, ebytes});
          keep.push_back(dst);
          ++count[dst];
        }
      }
      h = keep;
      continue;
    }
    const int dst = least_loaded({});
    if (dst < 0) {
      lost_experts.push_back(e);
      h.clear();
      continue;
    }
    switch (ft.on_expert_loss) {
      case ExpertLossPolicy::kReload:
        out.reloaded_experts.push_back(e);
        out.weight_loads.push_back({e, moe_gpu[dst], -1, ebytes});
        break;
      case ExpertLossPolicy::kReroute:
        out.rerouted_experts.push_back(e);  // placeholder holder: receives no token
        break;
      case ExpertLossPolicy::kFail:
        lost_experts.push_back(e);
        break;
    }
    h = {dst};
    ++count[dst];
  }
  int alive_moe = 0;
  for (int g = 0; g < G; ++g) alive_moe += removed[g] ? 0 : 1;
  if (alive_moe == 0) {
    out.losses.push_back(fmt::format("every MoE GPU is lost (GPUs {} fail): no GPU holds experts",
                                     list(out.failed)));
  } else if (!lost_experts.empty()) {
    out.losses.push_back(fmt::format(
        "experts {} lose every copy and fault_tolerance.on_expert_loss is fail: set "
        "expert_replicas >= 2 (or an explicit map with copies), standby_gpus, or on_expert_loss: "
        "reload or reroute",
        list(lost_experts)));
  }
  if (!out.rerouted_experts.empty()) {
    const auto prob = routing_probabilities(s.workload, m.experts);
    int positive = 0;
    for (int e = 0; e < m.experts; ++e) {
      const bool gone = std::find(out.rerouted_experts.begin(), out.rerouted_experts.end(), e) !=
                        out.rerouted_experts.end();
      positive += !gone && prob[e] > 0 ? 1 : 0;
    }
    if (positive < m.top_k) {
      out.losses.push_back(
          fmt::format("re-routing leaves {} experts for top-{} routing", positive, m.top_k));
    }
  }

  // ---- the degraded plan -----------------------------------------------------------------
  Scenario d = s;
  d.faults.clear();
  std::vector<int> ranks;
  int new_replicas = 0;
  for (int r = 0; r < R; ++r) {
    if (lost[r]) continue;
    ++new_replicas;
    ranks.insert(ranks.end(), gpus[r].begin(), gpus[r].end());
  }
  // MoE: survivors in local-index order, renumbered.
  std::vector<int> new_index(static_cast<size_t>(G), -1);
  int next = 0;
  for (int g = 0; g < G; ++g) {
    if (removed[g]) continue;
    new_index[g] = next++;
    ranks.push_back(moe_gpu[g]);
  }
  d.plan.gpu_ranks = ranks;
  d.plan.attention.replicas = std::max(1, new_replicas);
  d.plan.attention.gpus = std::max(1, new_replicas) * t;
  d.plan.moe.gpus = std::max(1, next);
  d.plan.moe.placement = Placement::kExplicit;
  d.plan.moe.expert_map.assign(static_cast<size_t>(m.experts), {});
  int max_copies = 1;
  for (int e = 0; e < m.experts; ++e) {
    for (int g : holders[e]) {
      if (g >= 0 && g < G && new_index[g] >= 0) d.plan.moe.expert_map[e].push_back(new_index[g]);
    }
    std::sort(d.plan.moe.expert_map[e].begin(), d.plan.moe.expert_map[e].end());
    if (d.plan.moe.expert_map[e].empty() && next > 0) d.plan.moe.expert_map[e].push_back(0);
    max_copies = std::max(max_copies, static_cast<int>(d.plan.moe.expert_map[e].size()));
  }
  d.plan.moe.expert_replicas = max_copies;
  d.workload.batch = static_cast<int>(s.workload.batch - dropped);
  if (d.workload.routing.kind == RoutingKind::kTrace && d.workload.batch != s.workload.batch) {
    // A routing trace is per batch position; with sequences dropped the degraded plan routes
    // by the trace's expert frequencies instead.
    d.workload.routing.expert_weights = routing_probabilities(s.workload, m.experts);
    d.workload.routing.kind = RoutingKind::kExplicit;
    d.workload.routing.trace.reset();
    d.workload.routing.trace_file.clear();
  }
  if (!out.rerouted_experts.empty()) {
    auto prob = routing_probabilities(s.workload, m.experts);
    for (int e : out.rerouted_experts) prob[e] = 0;
    d.workload.routing.kind = RoutingKind::kExplicit;
    d.workload.routing.expert_weights = prob;
  }
  if (new_replicas < 2) d.fault_tolerance.kv_copies = 1;  // no other replica to mirror on
  d.fault_tolerance.standby_list.assign(spares.begin() + static_cast<std::ptrdiff_t>(next_spare),
                                        spares.end());
  d.fault_tolerance.standby_gpus = static_cast<int>(d.fault_tolerance.standby_list.size());
  // Re-prefill work lands on the degraded plan's replicas (index among the survivors).
  for (size_t i = 0; i < survivors.size(); ++i) {
    const int r = survivors[i];
    if (reprefill_seqs[r] > 0) {
      out.reprefills.push_back({static_cast<int>(i), reprefill_seqs[r], reprefill_tok[r]});
    }
  }
  std::sort(out.failover_experts.begin(), out.failover_experts.end());
  out.failover_experts.erase(std::unique(out.failover_experts.begin(), out.failover_experts.end()),
                             out.failover_experts.end());
  out.degraded = std::move(d);
  return out;
}

std::vector<std::string> Remap::describe() const {
  std::vector<std::string> out;
  out.push_back(fmt::format("failed GPUs: {}", failed.empty() ? "none" : list(failed)));
  for (const auto& [f, s] : replacements) out.push_back(fmt::format("GPU {} -> standby {}", f, s));
  if (!lost_replicas.empty()) {
    out.push_back(fmt::format("attention replicas lost: {} (GPUs left idle: {})",
                              list(lost_replicas), idle.empty() ? "none" : list(idle)));
  }
  if (sequences_migrated + sequences_reprefilled + sequences_dropped > 0) {
    out.push_back(fmt::format(
        "sequences: {} served from KV mirrors, {} re-prefilled ({} tokens), {} dropped",
        sequences_migrated, sequences_reprefilled, reprefill_tokens, sequences_dropped));
  }
  int64_t kv = 0;
  for (const KvCopy& c : kv_copies) kv += c.bytes;
  if (!kv_copies.empty()) {
    out.push_back(
        fmt::format("KV rebuilt from mirrors: {} in {} copies", gb(kv), kv_copies.size()));
  }
  if (!failover_experts.empty()) {
    out.push_back(fmt::format("experts failing over to a copy: {}", list(failover_experts)));
  }
  if (!reloaded_experts.empty()) {
    out.push_back(fmt::format("experts re-loaded from host memory: {}", list(reloaded_experts)));
  }
  if (!rerouted_experts.empty()) {
    out.push_back(fmt::format("experts re-routed (degraded): {}", list(rerouted_experts)));
  }
  int64_t peer = 0, host = 0;
  for (const WeightLoad& w : weight_loads) (w.src_gpu >= 0 ? peer : host) += w.bytes;
  if (!weight_loads.empty()) {
    out.push_back(
        fmt::format("weights re-loaded: {} from peers, {} from host memory", gb(peer), gb(host)));
  }
  for (const std::string& l : losses) out.push_back("LOST: " + l);
  return out;
}

std::vector<int> gpus_cut_off(const topology::TopologySpec& t,
                              const std::vector<std::pair<int, int>>& failed_nics) {
  std::vector<int> out;
  for (int node = 0; node < t.nodes; ++node) {
    std::vector<bool> down(t.nics.size(), false);
    bool any = false;
    for (const auto& [n, i] : failed_nics) {
      if (n == node && i >= 0 && i < static_cast<int>(t.nics.size())) down[i] = any = true;
    }
    if (!any || std::find(down.begin(), down.end(), false) != down.end()) continue;
    for (size_t i = 0; i < t.nics.size(); ++i) {
      for (int local : t.nics[i].gpus) out.push_back(node * t.gpus_per_node + local);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

void validate_faults(const Scenario& s) {
  const FaultTolerance& ft = s.fault_tolerance;
  if (!has_fault_features(ft, s.faults)) return;
  auto fail = [](const std::string& key, const std::string& msg) {
    throw InputError("", 0, 0, key, msg);
  };
  if (s.plan.kind != PlanKind::kMaSeparation) {
    fail(s.faults.empty() ? "fault_tolerance" : s.faults.front().key,
         "fault tolerance supports MA-separation plans only (plan.kind is colocated)");
  }
  if (s.plan.moe.expert_tensor_parallel > 1) {
    fail(s.faults.empty() ? "fault_tolerance" : s.faults.front().key,
         "fault tolerance is not modelled with expert tensor parallelism "
         "(plan.moe.expert_tensor_parallel is " +
             std::to_string(s.plan.moe.expert_tensor_parallel) + ")");
  }
  if (ft.kv_copies > 2) {
    fail("fault_tolerance.kv_copies",
         std::to_string(ft.kv_copies) + " KV copies: masep models 1 (none) or 2 (a mirror)");
  }
  if (ft.kv_copies == 2 && s.plan.attention.replicas < 2) {
    fail("fault_tolerance.kv_copies",
         "a KV mirror needs at least 2 attention replicas (plan.attention.replicas is " +
             std::to_string(s.plan.attention.replicas) + ")");
  }
  const PlanGpus pg = plan_gpus(s);
  if (static_cast<int>(pg.standby.size()) < ft.standby_gpus) {
    fail(
        "fault_tolerance.standby_gpus",
        fmt::format("{} standby GPUs asked, but topology {} has only {} GPUs the plan does not use",
                    ft.standby_gpus, s.topology.name, pg.standby.size()));
  }
  std::vector<int> all_failed;
  std::vector<std::pair<int, int>> nics;
  for (const FaultSpec& f : s.faults) {
    if (f.step >= s.workload.decode_steps) {
      fail(f.key + ".step", fmt::format("step {} is past the run (workload.decode_steps is {})",
                                        f.step, s.workload.decode_steps));
    }
    if (f.kind == FaultKind::kGpu || f.kind == FaultKind::kStraggler) {
      if (!pg.uses(f.gpu)) {
        const bool spare =
            std::find(pg.standby.begin(), pg.standby.end(), f.gpu) != pg.standby.end();
        fail(f.key + ".gpu",
             fmt::format("GPU {} is {} (the plan runs on GPUs {})", f.gpu,
                         f.gpu >= s.topology.total_gpus() ? "not in topology " + s.topology.name
                         : spare                          ? "a standby, not used by the plan"
                                                          : std::string("not used by the plan"),
                         list(
                             [&] {
                               std::vector<int> v;
                               for (const auto& r : pg.replicas)
                                 v.insert(v.end(), r.begin(), r.end());
                               v.insert(v.end(), pg.moe.begin(), pg.moe.end());
                               std::sort(v.begin(), v.end());
                               return v;
                             }(),
                             24)));
      }
      if (f.kind == FaultKind::kGpu) all_failed.push_back(f.gpu);
    } else {
      if (s.topology.nodes < 2 || s.topology.nics.empty()) {
        fail(f.key + ".kind", "topology " + s.topology.name + " has one node and no NICs");
      }
      if (f.node >= s.topology.nodes) {
        fail(f.key + ".node", fmt::format("node {} does not exist (topology {} has {} nodes)",
                                          f.node, s.topology.name, s.topology.nodes));
      }
      if (f.nic >= static_cast<int>(s.topology.nics.size())) {
        fail(f.key + ".nic", fmt::format("NIC {} does not exist (a node of {} has {} NICs)", f.nic,
                                         s.topology.name, s.topology.nics.size()));
      }
      bool serves = false;
      for (int local : s.topology.nics[static_cast<size_t>(f.nic)].gpus) {
        serves = serves || pg.uses(f.node * s.topology.gpus_per_node + local);
      }
      if (!serves) {
        fail(f.key + ".nic",
             fmt::format("NIC {} of node {} serves no GPU the plan uses", f.nic, f.node));
      }
      nics.emplace_back(f.node, f.nic);
    }
  }
  const auto cut = gpus_cut_off(s.topology, nics);
  all_failed.insert(all_failed.end(), cut.begin(), cut.end());
  if (all_failed.empty()) return;
  // Coverage, the faults taken together (a conservative check: faults that never overlap in
  // time are still counted at once).
  const Remap rm = remap(s, all_failed, 0);
  if (!rm.covered()) {
    std::string what;
    for (const auto& l : rm.losses) what += (what.empty() ? "" : "; ") + l;
    fail(s.faults.front().key.substr(0, s.faults.front().key.find('[')),
         "the plan's redundancy cannot cover these faults (failed GPUs " + list(rm.failed) +
             (cut.empty() ? "" : ", " + list(cut) + " cut off by NIC faults") + "): " + what);
  }
}

}  // namespace masep::plan
