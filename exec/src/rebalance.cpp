// The executor's load-balancing path on the CPU: see rebalance.hpp.
#include "masep/exec/rebalance.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "masep/plan/expert_load.hpp"
#include "masep/plan/placement.hpp"
#include "masep/plan/routing_trace.hpp"

namespace masep::exec {

std::vector<int64_t> expert_counts_from_slots(const plan::Program& p, const GatingLayout& lay,
                                              const std::vector<std::vector<int32_t>>& counts) {
  std::vector<int64_t> out(static_cast<size_t>(std::max(0, p.model.experts)), 0);
  if (static_cast<int>(counts.size()) != lay.attention_ranks ||
      static_cast<int>(lay.slot_base.size()) != lay.moe_ranks + 1 ||
      static_cast<int64_t>(lay.moe_base) + lay.moe_ranks > static_cast<int64_t>(p.ranks.size())) {
    throw std::invalid_argument(
        "expert_counts_from_slots: counts or layout do not match the Program");
  }
  for (const auto& row : counts) {
    if (static_cast<int>(row.size()) != lay.slots()) {
      throw std::invalid_argument(
          fmt::format("expert_counts_from_slots: {} slot counts, the layout has {} slots",
                      row.size(), lay.slots()));
    }
    for (int g = 0; g < lay.moe_ranks; ++g) {
      const auto& experts = p.ranks[static_cast<size_t>(lay.moe_base + g)].experts;
      for (int32_t sl = lay.slot_base[g]; sl < lay.slot_base[g + 1]; ++sl) {
        const size_t l = static_cast<size_t>(sl - lay.slot_base[g]);
        if (l >= experts.size() || experts[l] < 0 || experts[l] >= p.model.experts) {
          throw std::invalid_argument(fmt::format(
              "expert_counts_from_slots: slot {} of MoE GPU {} holds no expert", sl, g));
        }
        out[static_cast<size_t>(experts[l])] += row[static_cast<size_t>(sl)];
      }
    }
  }
  return out;
}

RoutingTraceRecorder::RoutingTraceRecorder(int experts, int top_k, int batch, int layers)
    : experts_(experts), top_k_(top_k), batch_(batch), layers_(layers) {
  if (experts <= 0 || top_k <= 0 || batch <= 0 || layers <= 0) {
    throw std::invalid_argument("RoutingTraceRecorder: sizes must be positive");
  }
}

void RoutingTraceRecorder::add(int step, int layer, const std::vector<int64_t>& expert_counts) {
  if (step < 0 || layer < 0 || layer >= layers_ ||
      static_cast<int>(expert_counts.size()) != experts_) {
    throw std::invalid_argument(fmt::format(
        "RoutingTraceRecorder::add: step {} layer {} with {} counts (layers {}, experts {})", step,
        layer, expert_counts.size(), layers_, experts_));
  }
  const size_t at = static_cast<size_t>(step) * layers_ + static_cast<size_t>(layer);
  if (counts_.size() <= at) counts_.resize((static_cast<size_t>(step) + 1) * layers_);
  auto& c = counts_[at];
  if (c.empty()) c.assign(static_cast<size_t>(experts_), 0);
  for (size_t e = 0; e < c.size(); ++e) c[e] += expert_counts[e];
}

void RoutingTraceRecorder::write(std::ostream& out) const {
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i].empty()) continue;
    int64_t sum = 0;
    for (int64_t x : counts_[i]) sum += x;
    if (sum != static_cast<int64_t>(batch_) * top_k_) {
      throw std::invalid_argument(fmt::format(
          "RoutingTraceRecorder: step {} layer {} has {} routed tokens, not batch × top_k = {} "
          "(a micro-batch missing?)",
          i / layers_, i % layers_, sum, static_cast<int64_t>(batch_) * top_k_));
    }
  }
  plan::write_routing_trace_counts(out, experts_, top_k_, batch_, layers_, counts_);
}

std::vector<WeightMove> weight_moves(const plan::ExpertPlacement& prev,
                                     const plan::ExpertPlacement& next) {
  std::vector<WeightMove> out;
  std::vector<int64_t> sent;
  for (size_t e = 0; e < next.holders.size() && e < prev.holders.size(); ++e) {
    const auto& old = prev.holders[e];
    for (int g : next.holders[e]) {
      if (std::find(old.begin(), old.end(), g) != old.end()) continue;
      int src = old.front();
      for (int o : old) {
        if (static_cast<size_t>(std::max(o, src)) >= sent.size()) {
          sent.resize(static_cast<size_t>(std::max(o, src)) + 1, 0);
        }
        if (sent[static_cast<size_t>(o)] < sent[static_cast<size_t>(src)]) src = o;
      }
      if (static_cast<size_t>(src) >= sent.size()) sent.resize(static_cast<size_t>(src) + 1, 0);
      sent[static_cast<size_t>(src)]++;
      out.push_back({static_cast<int32_t>(e), src, g});
    }
  }
  return out;
}

Replacement relower_for_placement(const plan::ExpertPlacement& current, plan::ExpertPlacement next,
                                  plan::Program program, const PlanOptions& options) {
  if (program.layout.expert_holders.size() != next.holders.size()) {
    throw std::invalid_argument(
        fmt::format("relower_for_placement: the Program places {} experts, the placement {}",
                    program.layout.expert_holders.size(), next.holders.size()));
  }
  Replacement r;
  r.moves = weight_moves(current, next);
  r.placement = std::move(next);
  r.program = std::move(program);
  for (int rank = 0; rank < r.program.rank_count(); ++rank) {
    r.ranks.push_back(build_rank_plan(r.program, rank, options));
  }
  return r;
}

}  // namespace masep::exec
