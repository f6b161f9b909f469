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
  phase_bytes_.assign(capacity_.size(), 0.0);
  drain_.assign(capacity_.size(), 0.0);
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
    if (phase_bytes_[l] == 0) phase_links_.push_back(l);
    phase_bytes_[l] += bytes;
  }
  pending_.push_back({links.data(), static_cast<int>(links.size()), f, bytes});
  ++active_;
  return f;
}

// The pending phase's load on each of its links, then each flow's completion at the drain of
// its most loaded link. Links are visited in first-touch order and flows in start order, so
// reruns are identical.
void FluidNetwork::time_phase() {
  if (pending_.empty()) return;
  const double now = static_cast<double>(phase_now_);
  for (int l : phase_links_) {
    double wait = busy_until_[l] - now;
    if (wait < 1e-6) wait = 0;  // drained (allow for the rounding of earlier sums)
    drain_[l] = wait + phase_bytes_[l] / capacity_[l];
    busy_until_[l] = now + drain_[l];
  }
  for (const Pending& p : pending_) {
    double d = 0;
    for (int i = 0; i < p.nlinks; ++i) d = std::max(d, drain_[p.links[i]]);
    int64_t finish = phase_now_ + static_cast<int64_t>(std::ceil(d - 1e-9));
    if (finish < phase_now_) finish = phase_now_;
    heap_push({finish, p.flow});
  }
  for (int l : phase_links_) phase_bytes_[l] = 0;
  phase_links_.clear();
  pending_.clear();
}

int64_t FluidNetwork::next_event_time() {
  time_phase();
  return heap_.empty() ? kNever : heap_.front().time;
}

void FluidNetwork::advance(int64_t t, std::vector<uint32_t>& completed) {
  time_phase();
  now_ = std::max(now_, t);
  while (!heap_.empty() && heap_.front().time <= t) {
    const int f = heap_.front().flow;
    heap_pop();
    completed.push_back(tags_[f]);
    free_.push_back(f);
    --active_;
  }
}

namespace {
bool before(int64_t at, int af, int64_t bt, int bf) { return at != bt ? at < bt : af < bf; }
}  // namespace

void FluidNetwork::heap_push(HeapEntry e) {
  size_t i = heap_.size();
  heap_.push_back(e);
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!before(e.time, e.flow, heap_[parent].time, heap_[parent].flow)) break;
    heap_[i] = heap_[parent];
    i = parent;
  }
  heap_[i] = e;
}

void FluidNetwork::heap_pop() {
  const HeapEntry e = heap_.back();
  heap_.pop_back();
  const size_t n = heap_.size();
  if (n == 0) return;
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && before(heap_[c + 1].time, heap_[c + 1].flow, heap_[c].time, heap_[c].flow)) {
      ++c;
    }
    if (!before(heap_[c].time, heap_[c].flow, e.time, e.flow)) break;
    heap_[i] = heap_[c];
    i = c;
  }
  heap_[i] = e;
}

}  // namespace masep::sim
