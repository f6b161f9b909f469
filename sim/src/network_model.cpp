#include "masep/sim/network_model.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "masep/plan/time_ns.hpp"

namespace masep::sim {
namespace {
template <class E>
bool heap_before(const E& a, const E& b) {
  return a.time != b.time ? a.time < b.time : a.flow < b.flow;
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
  const size_t n = capacity_.size();
  links_.resize(n);
  link_mark_.assign(n, 0);
  fill_.assign(n, Fill{0, 0});
  stack_.assign(n, 0);
  bneck_count_.assign(n, 0);
  comp_links_.assign(n, 0);
  tied_.assign(n, 0);
  partner_.assign(n, -1);
  twin_skip_.assign(n, 0);
}

void NetworkModel::learn_twins(int x, int y) {
  int& px = partner_[x];
  if (px == y || px == -2) return;
  if (px == -1) {
    px = y >= 0 && y != x && capacity_[y] == capacity_[x] ? y : -2;
    if (px >= 0 && partner_[px] == x) twin_skip_[std::max(x, px)] = 1;
    return;
  }
  // x was paired with another link before: no longer a twin of anything.
  const int old = px;
  px = -2;
  twin_skip_[x] = 0;
  if (partner_[old] == x) {
    partner_[old] = -2;
    twin_skip_[old] = 0;
  }
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
  }
  {  // hops (0, 1), (2, 3), ...: learn or check twins (cheap once known)
    const size_t n = links.size();
    size_t i = 0;
    for (; i + 1 < n; i += 2) {
      const int x = links[i], y = links[i + 1];
      const int px = partner_[x], py = partner_[y];
      if ((px != y && px != -2) || (py != x && py != -2)) {
        learn_twins(x, y);
        learn_twins(y, x);
      }
    }
    if (i < n && partner_[links[i]] != -2) learn_twins(links[i], -2);
  }
  Flow& fl = flows_[f];
  const int n = static_cast<int>(links.size());
  if (n > fl.pos_cap) {  // a slot keeps its position block; a longer route gets a new one
    fl.pos_off = static_cast<int>(pos_pool_.size());
    fl.pos_cap = n;
    pos_pool_.resize(pos_pool_.size() + static_cast<size_t>(n));
  }
  fl.links = links.data();
  fl.nlinks = n;
  fl.active = true;
  fl.remaining = bytes;
  fl.rate = 0;
  fl.updated = now;
  fl.finish = kNever;
  fl.heap_pos = -1;
  fl.tag = tag;
  fl.bneck = -1;
  int* const pos = pos_pool_.data() + fl.pos_off;
  for (int i = 0; i < n; ++i) {
    std::vector<LinkEntry>& ls = links_[links[i]];
    pos[i] = static_cast<int>(ls.size());
    ls.push_back({f, fl.pos_off + i});
    dirty_links_.push_back(links[i]);
  }
  ++active_;
  return f;
}

void NetworkModel::set_bneck(Flow& fl, int b) {
  if (fl.bneck >= 0) --bneck_count_[fl.bneck];
  fl.bneck = b;
  if (b >= 0) ++bneck_count_[b];
}

// Removing a flow changes no other flow's max-min rate unless one of its links is the
// bottleneck of another active flow: every flow crossing those links is then limited
// elsewhere, at links whose load does not change, so the progressive filling without the flow
// freezes everyone at the same level. Only then are its links marked for a re-solve.
void NetworkModel::detach(int f) {
  Flow& fl = flows_[f];
  set_bneck(fl, -1);
  bool affects = false;
  for (int i = 0; i < fl.nlinks; ++i) affects = affects || bneck_count_[fl.links[i]] > 0;
  int* const pos = pos_pool_.data();
  const int* const mypos = pos + fl.pos_off;
  for (int i = 0; i < fl.nlinks; ++i) {
    const int l = fl.links[i];
    std::vector<LinkEntry>& ls = links_[l];
    const int idx = mypos[i];
    const LinkEntry last = ls.back();
    ls[idx] = last;
    pos[last.slot] = idx;
    ls.pop_back();
    if (affects) dirty_links_.push_back(l);
  }
  fl.active = false;
  --active_;
  free_.push_back(f);
}

// The completion queue: a binary min-heap on (time, flow) holding each timed flow once, with
// the flow's index kept in Flow::heap_pos, so a re-timed flow moves in place (no stale
// entries). Keys are unique, so the pop order is the (time, flow) order whatever the layout.
inline void NetworkModel::heap_place(int i, HeapEntry e) {
  heap_[static_cast<size_t>(i)] = e;
  flows_[e.flow].heap_pos = i;
}

void NetworkModel::heap_update(int f) {
  Flow& fl = flows_[f];
  const HeapEntry e{fl.finish, f};
  int i = fl.heap_pos;
  if (i < 0) {
    i = static_cast<int>(heap_.size());
    heap_.push_back(e);
  }
  // Up.
  bool moved = false;
  while (i > 0) {
    const int parent = (i - 1) / 2;
    if (!heap_before(e, heap_[static_cast<size_t>(parent)])) break;
    heap_place(i, heap_[static_cast<size_t>(parent)]);
    i = parent;
    moved = true;
  }
  if (!moved) {  // down
    const int n = static_cast<int>(heap_.size());
    for (;;) {
      int c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n &&
          heap_before(heap_[static_cast<size_t>(c + 1)], heap_[static_cast<size_t>(c)])) {
        ++c;
      }
      if (!heap_before(heap_[static_cast<size_t>(c)], e)) break;
      heap_place(i, heap_[static_cast<size_t>(c)]);
      i = c;
    }
  }
  heap_place(i, e);
}

void NetworkModel::heap_pop() {
  flows_[heap_.front().flow].heap_pos = -1;
  const HeapEntry e = heap_.back();
  heap_.pop_back();
  const int n = static_cast<int>(heap_.size());
  if (n == 0) return;
  int i = 0;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && heap_before(heap_[static_cast<size_t>(c + 1)], heap_[static_cast<size_t>(c)]))
      ++c;
    if (!heap_before(heap_[static_cast<size_t>(c)], e)) break;
    heap_place(i, heap_[static_cast<size_t>(c)]);
    i = c;
  }
  heap_place(i, e);
}

// A frozen flow's rate is final: re-time it (the heap orders entries by (time, flow), so the
// order of pushes does not matter). Unchanged rate: the queued completion stays right.
inline void NetworkModel::retime(int f, double share) {
  Flow& fl = flows_[f];
  if (share == fl.rate && fl.finish != kNever) return;
  fl.rate = share;
  const double rem = std::max(fl.remaining, 0.0);
  if (!(fl.rate > 0)) {
    throw std::logic_error("NetworkModel: a flow got zero bandwidth");
  }
  fl.finish = now_ + plan::checked_ns(std::ceil(rem / fl.rate - 1e-9), "network transfer");
  if (fl.finish < now_) fl.finish = now_;
  heap_update(f);
}

// Progressive filling over the connected component(s) of the dirty links: repeatedly find
// the link with the smallest fair share (capacity left / unfrozen flows), freeze its flows at
// that share, and charge the share on every link they cross.
void NetworkModel::solve_dirty() {
  if (dirty_links_.empty()) return;
  if (epoch_ > std::numeric_limits<uint32_t>::max() - 4) {  // marks wrap: start over
    std::fill(link_mark_.begin(), link_mark_.end(), 0);
    for (Flow& fl : flows_) fl.mark = 0;
    epoch_ = 0;
  }
  epoch_ += 2;
  const uint32_t in_comp = epoch_, frozen = epoch_ + 1;
  // Scratch arrays are sized to the link count once (each link enters the component at most
  // once per solve), so the loops below write through raw pointers without capacity checks.
  int* const stack = stack_.data();
  int* const comp = comp_links_.data();
  int nstack = 0, ncomp = 0;
  size_t left = 0;  // unfrozen flows of the component
  int last_found = -1;
  for (int l : dirty_links_) {
    if (link_mark_[l] != in_comp) {
      link_mark_[l] = in_comp;
      stack[nstack++] = l;
    }
  }
  dirty_links_.clear();
  while (nstack > 0) {
    const int l = stack[--nstack];
    const std::vector<LinkEntry>& ls = links_[l];
    if (ls.size() == 1 && flows_[ls[0].flow].nlinks == 1) {
      // A one-link flow alone on its link is a component of its own: it gets the link's
      // capacity (capacity / 1, what the filling would give it), its only link is its
      // bottleneck, and no other link or flow needs to see it.
      const int f = ls[0].flow;
      Flow& fl = flows_[f];
      fl.remaining -= fl.rate * static_cast<double>(now_ - fl.updated);
      fl.updated = now_;
      fl.mark = frozen;
      if (fl.bneck != l) set_bneck(fl, l);
      retime(f, capacity_[l]);
      continue;
    }
    comp[ncomp++] = l;
    for (const LinkEntry& e : ls) {
      Flow& fl = flows_[e.flow];
      if (fl.mark == in_comp) continue;
      fl.mark = in_comp;
      ++left;
      last_found = e.flow;
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
  if (left == 0) return;
  if (left == 1) {
    // One flow: every link with a flow is one of its links, with share capacity / 1; it
    // freezes at the first of them (in discovery order) with the smallest capacity.
    int b = -1;
    for (int i = 0; i < ncomp; ++i) {
      const int l = comp[i];
      if (links_[l].empty()) continue;
      if (b < 0 || capacity_[l] < capacity_[b]) b = l;
    }
    Flow& fl = flows_[last_found];
    fl.mark = frozen;
    if (fl.bneck != b) set_bneck(fl, b);
    retime(last_found, std::max(capacity_[b], 0.0));
    return;
  }
  // No sort needed: the discovery order follows the dirty-link order and the links' flow
  // lists, both deterministic functions of the history, so reruns are identical.
  //
  // comp[0, nactive) are the links still carrying unfrozen flows; a link leaves once all its
  // flows froze. tied[0, ntied) are the links at the current bottleneck level: the smallest
  // fair share among the active links, and every link that has exactly it. They all saturate
  // at this level (freezing one tied link's flows at share s leaves another tied link at
  // (C - k*s) / (n - k) = s), so they are frozen in one pass. The first scan also sets up
  // each link's fill state.
  Fill* const fs = fill_.data();
  int* const tied = tied_.data();
  double best_share = 0;
  int nactive = 0, ntied = 0;
  // Link l with fair share `share`: a new smallest level, or one more link tied at it.
  const auto consider = [&](int l, double share) {
    if (ntied == 0 || share < best_share) {
      best_share = share;
      tied[0] = l;
      ntied = 1;
    } else if (share == best_share) {
      tied[ntied++] = l;
    }
  };
  for (int i = 0; i < ncomp; ++i) {
    const int l = comp[i];
    const int n = static_cast<int>(links_[l].size());
    fs[l] = {capacity_[l], n};
    if (n == 0 || twin_skip_[l]) continue;
    comp[nactive++] = l;
    consider(l, capacity_[l] / n);
  }
  for (;;) {
    if (ntied == 0) throw std::logic_error("NetworkModel: unfrozen flows on no link");
    best_share = std::max(best_share, 0.0);
    for (int t = 0; t < ntied; ++t) {
      const int b = tied[t];
      // A tied link whose flows all froze already (e.g. through another tied link carrying
      // the same flows) has nothing left to do; and its list can be left once its last
      // unfrozen flow froze.
      if (fs[b].unfrozen == 0) continue;
      for (const LinkEntry& e : links_[b]) {
        Flow& fl = flows_[e.flow];
        if (fl.mark == frozen) continue;
        fl.mark = frozen;
        --left;
        if (fl.bneck != b) set_bneck(fl, b);
        for (int i = 0; i < fl.nlinks; ++i) {
          Fill& x = fs[fl.links[i]];
          x.cap_left -= best_share;
          --x.unfrozen;
        }
        retime(e.flow, best_share);
        if (fs[b].unfrozen == 0) break;
      }
    }
    if (left == 0) break;
    int keep = 0;
    ntied = 0;
    for (int i = 0; i < nactive; ++i) {
      const int l = comp[i];
      const Fill x = fs[l];
      if (x.unfrozen == 0) continue;
      comp[keep++] = l;
      consider(l, x.cap_left / x.unfrozen);
    }
    nactive = keep;
  }
}

int64_t NetworkModel::next_event_time() {
  solve_dirty();
  return heap_.empty() ? kNever : heap_.front().time;
}

void NetworkModel::advance(int64_t t, std::vector<uint32_t>& completed) {
  solve_dirty();
  now_ = std::max(now_, t);
  while (!heap_.empty() && heap_.front().time <= t) {
    const int f = heap_.front().flow;
    heap_pop();
    completed.push_back(flows_[f].tag);
    detach(f);
  }
}

}  // namespace masep::sim
