#include "masep/sim/fluid_network.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace masep::sim {

FluidNetwork::FluidNetwork(std::vector<double> capacity_bytes_per_ns)
    : capacity_(std::move(capacity_bytes_per_ns)) {
  for (size_t l = 0; l < capacity_.size(); ++l) {
    if (!(capacity_[l] > 0)) {
      throw std::invalid_argument("FluidNetwork: link " + std::to_string(l) +
                                  " has non-positive bandwidth");
    }
  }
  busy_until_.assign(capacity_.size(), 0.0);
  slot_.assign(capacity_.size(), -1);
}

int FluidNetwork::start_flow(int64_t now, std::span<const int> links, double bytes, uint32_t tag) {
  if (links.empty() || !(bytes > 0)) {
    throw std::invalid_argument("FluidNetwork::start_flow needs a route and bytes > 0");
  }
  if (!pending_.empty() && now != phase_now_) time_phase();  // a new instant: a new phase
  now_ = std::max(now_, now);
  phase_now_ = now;
  int f;
  if (!free_.empty()) {
    f = free_.back();
    free_.pop_back();
  } else {
    f = static_cast<int>(tags_.size());
    tags_.push_back(0);
  }
  tags_[f] = tag;
  for (int l : links) {
    if (l < 0 || l >= static_cast<int>(capacity_.size())) {
      throw std::out_of_range("FluidNetwork::start_flow: link " + std::to_string(l) +
                              " out of range");
    }
    if (slot_[l] < 0) {
      slot_[l] = static_cast<int>(phase_links_.size());
      phase_links_.push_back(l);
    }
  }
  pending_.push_back(
      {static_cast<int>(pending_links_.size()), static_cast<int>(links.size()), f, bytes});
  pending_links_.insert(pending_links_.end(), links.begin(), links.end());
  ++active_;
  return f;
}

// The pending phase on each of its links: the link serves the phase's flows as a processor
// shared equally among those still unfinished (after the backlog of earlier phases), so with
// sizes b1 <= b2 <= ... <= bk the i-th ends after (b1 + ... + b(i-1) + (k - i + 1) · bi) /
// capacity — the max-min result for flows that meet only on this link — and the largest when
// the link has drained. A flow ends at the latest of its links' ends. Links are visited in
// first-touch order and flows in start order (ties in size keep it), so reruns are identical.
void FluidNetwork::time_phase() {
  if (pending_.empty()) return;
  const double now = static_cast<double>(phase_now_);
  const size_t nl = phase_links_.size();
  // CSR of (pending flow, bytes) per phase link.
  off_.assign(nl + 1, 0);
  const int* const plinks = pending_links_.data();
  for (const Pending& p : pending_) {
    for (int i = 0; i < p.nlinks; ++i) ++off_[static_cast<size_t>(slot_[plinks[p.links + i]]) + 1];
  }
  for (size_t k = 0; k < nl; ++k) off_[k + 1] += off_[k];
  entries_.resize(static_cast<size_t>(off_[nl]));
  fill_.assign(off_.begin(), off_.end() - 1);
  for (size_t j = 0; j < pending_.size(); ++j) {
    const Pending& p = pending_[j];
    for (int i = 0; i < p.nlinks; ++i) {
      entries_[static_cast<size_t>(fill_[static_cast<size_t>(slot_[plinks[p.links + i]])]++)] = {
          static_cast<int>(j), p.bytes};
    }
  }
  finish_.assign(pending_.size(), 0.0);
  for (size_t k = 0; k < nl; ++k) {
    const int l = phase_links_[k];
    double wait = busy_until_[l] - now;
    if (wait < 1e-6) wait = 0;  // drained (allow for the rounding of earlier sums)
    Entry* const first = entries_.data() + off_[k];
    Entry* const last = entries_.data() + off_[k + 1];
    if (last - first > 1) {  // by size, ties in start order (keys are unique: no stable sort)
      const auto by_size = [](const Entry& x, const Entry& y) {
        return x.bytes != y.bytes ? x.bytes < y.bytes : x.pending < y.pending;
      };
      // Entries are filled in start order, so equal sizes (an exchange's rows) are in order.
      if (!std::is_sorted(first, last, by_size)) std::sort(first, last, by_size);
    }
    const double cap = capacity_[l];
    const auto n = static_cast<double>(last - first);
    double before = 0, end = 0;
    for (Entry* e = first; e != last; ++e) {
      if (e == first || e->bytes != e[-1].bytes) {
        end = wait + (before + (n - static_cast<double>(e - first)) * e->bytes) / cap;
      }
      before += e->bytes;
      double& f = finish_[static_cast<size_t>(e->pending)];
      f = std::max(f, end);
    }
    busy_until_[l] = now + wait + before / cap;
    slot_[l] = -1;
  }
  int ri;
  if (!free_runs_.empty()) {
    ri = free_runs_.back();
    free_runs_.pop_back();
  } else {
    ri = static_cast<int>(runs_.size());
    runs_.emplace_back();
  }
  Run& run = runs_[static_cast<size_t>(ri)];
  run.entries.clear();
  run.next = 0;
  // Flow ids are unique among active flows, so (time, flow) keys are unique. Sorted as one
  // 64-bit key (time after the phase start, flow) where both fit (the usual case), else by
  // the pair; the order is the same.
  bool packed = true;
  keys_.clear();
  for (size_t j = 0; j < pending_.size(); ++j) {
    int64_t finish = phase_now_ + static_cast<int64_t>(std::ceil(finish_[j] - 1e-9));
    if (finish < phase_now_) finish = phase_now_;
    run.entries.push_back({finish, pending_[j].flow});
    const auto rel = static_cast<uint64_t>(finish - phase_now_);
    const auto flow = static_cast<uint64_t>(pending_[j].flow);
    packed = packed && rel < (uint64_t{1} << 40) && flow < (uint64_t{1} << 24);
    keys_.push_back(rel << 24 | flow);
  }
  if (packed) {
    std::sort(keys_.begin(), keys_.end());
    for (size_t j = 0; j < keys_.size(); ++j) {
      run.entries[j] = {phase_now_ + static_cast<int64_t>(keys_[j] >> 24),
                        static_cast<int>(keys_[j] & ((uint64_t{1} << 24) - 1))};
    }
  } else {
    std::sort(run.entries.begin(), run.entries.end(),
              [](const HeapEntry& a, const HeapEntry& b) { return before(a, b); });
  }
  run_push(ri);
  phase_links_.clear();
  pending_.clear();
  pending_links_.clear();
}

int64_t FluidNetwork::next_event_time() {
  time_phase();
  return run_heap_.empty() ? kNever : top_of(run_heap_.front()).time;
}

void FluidNetwork::advance(int64_t t, std::vector<uint32_t>& completed) {
  time_phase();
  now_ = std::max(now_, t);
  while (!run_heap_.empty()) {
    Run& r = runs_[static_cast<size_t>(run_heap_.front())];
    const HeapEntry& e = r.entries[r.next];
    if (e.time > t) break;
    completed.push_back(tags_[e.flow]);
    free_.push_back(e.flow);
    --active_;
    ++r.next;
    run_pop_top();
  }
}

void FluidNetwork::run_push(int ri) {
  const HeapEntry key = top_of(ri);
  size_t i = run_heap_.size();
  run_heap_.push_back(ri);
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!before(key, top_of(run_heap_[parent]))) break;
    run_heap_[i] = run_heap_[parent];
    i = parent;
  }
  run_heap_[i] = ri;
}

void FluidNetwork::run_pop_top() {
  int ri = run_heap_.front();
  Run& top = runs_[static_cast<size_t>(ri)];
  if (top.next == top.entries.size()) {  // exhausted: the last run takes its place
    free_runs_.push_back(ri);
    ri = run_heap_.back();
    run_heap_.pop_back();
    if (run_heap_.empty()) return;
  }
  const HeapEntry key = top_of(ri);
  const size_t n = run_heap_.size();
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && before(top_of(run_heap_[c + 1]), top_of(run_heap_[c]))) ++c;
    if (!before(top_of(run_heap_[c]), key)) break;
    run_heap_[i] = run_heap_[c];
    i = c;
  }
  run_heap_[i] = ri;
}

}  // namespace masep::sim
