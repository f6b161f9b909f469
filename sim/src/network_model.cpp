#include "masep/sim/network_model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace masep::sim {
namespace {
bool heap_later(const auto& a, const auto& b) {
  return a.time != b.time ? a.time > b.time : a.flow > b.flow;
}
}  // namespace

NetworkModel::NetworkModel(std::vector<double> capacity_bytes_per_ns)
    : capacity_(std::move(capacity_bytes_per_ns)) {
  for (size_t l = 0; l < capacity_.size(); ++l) {
    if (!(capacity_[l] > 0)) {
      throw std::invalid_argument("NetworkModel: link " + std::to_string(l) +
                                  " has non-positive bandwidth");
    }
  }
  links_.resize(capacity_.size());
  link_mark_.assign(capacity_.size(), 0);
  cap_left_.assign(capacity_.size(), 0);
  unfrozen_.assign(capacity_.size(), 0);
  stack_.assign(capacity_.size(), 0);
  bneck_count_.assign(capacity_.size(), 0);
  comp_links_.assign(capacity_.size(), 0);
  tied_.assign(capacity_.size(), 0);
}

int NetworkModel::start_flow(int64_t now, std::span<const int> links, double bytes, uint32_t tag) {
  if (links.empty() || !(bytes > 0)) {
    throw std::invalid_argument("NetworkModel::start_flow needs a route and bytes > 0");
  }
  now_ = now;
  int f;
  if (!free_.empty()) {
    f = free_.back();
    free_.pop_back();
  } else {
    f = static_cast<int>(flows_.size());
    flows_.emplace_back();
    flow_mark_.push_back(0);
  }
  Flow& fl = flows_[f];
  fl.links = links.data();
  fl.nlinks = static_cast<int>(links.size());
  fl.active = true;
  fl.remaining = bytes;
  fl.rate = 0;
  fl.updated = now;
  fl.finish = kNever;
  ++fl.version;
  fl.tag = tag;
  fl.bneck = -1;
  fl.pos.resize(links.size());
  for (int i = 0; i < fl.nlinks; ++i) {
    LinkState& ls = links_[links[i]];
    fl.pos[i] = static_cast<int>(ls.flows.size());
    ls.flows.push_back(f);
    ls.hop.push_back(i);
    dirty_links_.push_back(links[i]);
  }
  ++active_;
  return f;
}

// Removing a flow changes no other flow's max-min rate unless one of its links is the
// bottleneck of another active flow: every flow crossing those links is then limited
// elsewhere, at links whose load does not change, so the progressive filling without the flow
// freezes everyone at the same level. Only then are its links marked for a re-solve.
void NetworkModel::detach(int f) {
  Flow& fl = flows_[f];
  if (fl.bneck >= 0) {
    --bneck_count_[fl.bneck];
    fl.bneck = -1;
  }
  bool affects = false;
  for (int i = 0; i < fl.nlinks; ++i) affects = affects || bneck_count_[fl.links[i]] > 0;
  for (int i = 0; i < fl.nlinks; ++i) {
    const int l = fl.links[i];
    LinkState& ls = links_[l];
    const int idx = fl.pos[i];
    const int last = ls.flows.back();
    const int last_hop = ls.hop.back();
    ls.flows[idx] = last;
    ls.hop[idx] = last_hop;
    flows_[last].pos[last_hop] = idx;
    ls.flows.pop_back();
    ls.hop.pop_back();
    if (affects) dirty_links_.push_back(l);
  }
  fl.active = false;
  ++fl.version;
  --active_;
  free_.push_back(f);
}

void NetworkModel::push_heap(int f) {
  heap_.push_back({flows_[f].finish, f, flows_[f].version});
  std::push_heap(heap_.begin(), heap_.end(),
                 [](const HeapEntry& a, const HeapEntry& b) { return heap_later(a, b); });
}

// Progressive filling over the connected component(s) of the dirty links: repeatedly find
// the link with the smallest fair share (capacity left / unfrozen flows), freeze its flows
// at that share, and charge the share on every link they cross.
void NetworkModel::solve_dirty() {
  if (dirty_links_.empty()) return;
  epoch_ += 2;
  const uint32_t in_comp = epoch_, frozen = epoch_ + 1;
  // Scratch arrays are sized to the link count once (each link enters the component at most
  // once per solve), so the loops below write through raw pointers without capacity checks.
  int* const stack = stack_.data();
  int* const comp = comp_links_.data();
  int nstack = 0, ncomp = 0;
  size_t left = 0;  // unfrozen flows of the component
  for (int l : dirty_links_) {
    if (link_mark_[l] != in_comp) {
      link_mark_[l] = in_comp;
      stack[nstack++] = l;
    }
  }
  dirty_links_.clear();
  while (nstack > 0) {
    const int l = stack[--nstack];
    comp[ncomp++] = l;
    for (int f : links_[l].flows) {
      if (flow_mark_[f] == in_comp) continue;
      flow_mark_[f] = in_comp;
      ++left;
      Flow& fl = flows_[f];
      // Bring the flow's bytes up to now while its cache line is here (one pass fewer).
      fl.remaining -= fl.rate * static_cast<double>(now_ - fl.updated);
      fl.updated = now_;
      for (int i = 0; i < fl.nlinks; ++i) {
        const int l2 = fl.links[i];
        if (link_mark_[l2] != in_comp) {
          link_mark_[l2] = in_comp;
          stack[nstack++] = l2;
        }
      }
    }
  }
  // No sort needed: the discovery order follows the dirty-link order and the links' flow
  // lists, both deterministic functions of the history, so reruns are identical.
  for (int i = 0; i < ncomp; ++i) {
    const int l = comp[i];
    cap_left_[l] = capacity_[l];
    unfrozen_[l] = static_cast<int>(links_[l].flows.size());
  }
  // comp[0, nactive) are the links still carrying unfrozen flows; a link leaves once all its
  // flows froze. tied[0, ntied) are the links at the current bottleneck level.
  int* const tied = tied_.data();
  int nactive = ncomp;
  while (left > 0) {
    // The smallest fair share among the active links, and every link that has exactly it:
    // they all saturate at this level (freezing one tied link's flows at share s leaves
    // another tied link at (C - k*s) / (n - k) = s), so they are frozen in one pass.
    double best_share = 0;
    int keep = 0, ntied = 0;
    for (int i = 0; i < nactive; ++i) {
      const int l = comp[i];
      if (unfrozen_[l] == 0) continue;
      comp[keep++] = l;
      const double share = cap_left_[l] / unfrozen_[l];
      if (ntied == 0 || share < best_share) {
        best_share = share;
        tied[0] = l;
        ntied = 1;
      } else if (share == best_share) {
        tied[ntied++] = l;
      }
    }
    nactive = keep;
    if (ntied == 0) throw std::logic_error("NetworkModel: unfrozen flows on no link");
    best_share = std::max(best_share, 0.0);
    for (int t = 0; t < ntied; ++t) {
      for (int f : links_[tied[t]].flows) {
        if (flow_mark_[f] == frozen) continue;
        flow_mark_[f] = frozen;
        --left;
        Flow& fl = flows_[f];
        if (fl.bneck != tied[t]) {
          if (fl.bneck >= 0) --bneck_count_[fl.bneck];
          fl.bneck = tied[t];
          ++bneck_count_[fl.bneck];
        }
        for (int i = 0; i < fl.nlinks; ++i) {
          cap_left_[fl.links[i]] -= best_share;
          --unfrozen_[fl.links[i]];
        }
        // The flow's rate is final: re-time it now (the heap orders entries by (time, flow),
        // so the order of pushes does not matter). Unchanged rate: the queued completion
        // stays right (saves heap churn).
        if (best_share == fl.rate && fl.finish != kNever) continue;
        fl.rate = best_share;
        ++fl.version;
        const double rem = std::max(fl.remaining, 0.0);
        if (!(fl.rate > 0)) {
          throw std::logic_error("NetworkModel: a flow got zero bandwidth");
        }
        fl.finish = now_ + static_cast<int64_t>(std::ceil(rem / fl.rate - 1e-9));
        if (fl.finish < now_) fl.finish = now_;
        push_heap(f);
      }
    }
  }
}

int64_t NetworkModel::next_event_time() {
  solve_dirty();
  while (!heap_.empty()) {
    const HeapEntry& top = heap_.front();
    const Flow& fl = flows_[top.flow];
    if (fl.active && fl.version == top.version) return top.time;
    std::pop_heap(heap_.begin(), heap_.end(),
                  [](const HeapEntry& a, const HeapEntry& b) { return heap_later(a, b); });
    heap_.pop_back();
  }
  return kNever;
}

void NetworkModel::advance(int64_t t, std::vector<uint32_t>& completed) {
  solve_dirty();
  now_ = std::max(now_, t);
  const auto cmp = [](const HeapEntry& a, const HeapEntry& b) { return heap_later(a, b); };
  while (!heap_.empty() && heap_.front().time <= t) {
    const HeapEntry top = heap_.front();
    std::pop_heap(heap_.begin(), heap_.end(), cmp);
    heap_.pop_back();
    Flow& fl = flows_[top.flow];
    if (!fl.active || fl.version != top.version) continue;
    completed.push_back(fl.tag);
    detach(top.flow);
  }
}

}  // namespace masep::sim
