// Fluid network model: the coarse network tier (`--network fluid`, parameter network_tier =
// 1). Same narrow interface as the flow-level NetworkModel (network_model.hpp) — start a flow,
// next event time, advance — so the engine drives either tier alike (SimGrid's
// NetworkModelIntf / ASTRA-sim's AstraNetworkAPI style); it never re-solves rates.
//
// Model. Flows that start at one instant form a phase (an exchange's or a collective phase's
// transfers start together when their ops post together). When the phase is timed, each of
// its links serves the phase's flows on it as an equally shared processor, after the backlog
// of earlier phases: with wait = max(busy_until(l) - now, 0) and the phase's sizes on l sorted
// b1 <= ... <= bk, the i-th ends on l at
//     wait + (b1 + ... + b(i-1) + (k - i + 1) · bi) / capacity(l)
// (the largest when l has drained: busy_until(l) = now + wait + Σb / capacity(l)), and each
// flow completes at the latest of its links' ends, rounded up to whole ns as in the flow tier.
// Cost O(hops · log) per flow; each flow is timed once, when its phase is timed, and never
// again. Completions leave in (time, flow id) order.
//
// Against per-flow max-min (the flow tier, the reference):
// - identical for a flow alone on its links (bytes / bottleneck bandwidth, same rounding),
//   for flows of one phase that meet on one link only (that is max-min's result), and for n
//   equal flows that start together on one shared bottleneck (up to the last bit);
// - flows that meet on several links: each link is shared as if alone, so a flow does not
//   get the capacity another flow leaves because it is limited elsewhere (max-min does);
// - a later phase queues behind the backlog of earlier ones on shared links (max-min shares);
//   the link drains at the same time either way, so the last transfer on a bottleneck ends
//   alike, while earlier-posted ones end earlier here.
// The measured TPOT and per-op differences are in docs/simulator-model.md.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace masep::sim {

class FluidNetwork {
 public:
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

  /// `capacity_bytes_per_ns[l]` is link l's bandwidth in bytes/ns (== GB/s); all > 0.
  explicit FluidNetwork(std::vector<double> capacity_bytes_per_ns);

  /// Starts a flow of `bytes` (> 0) over `links` at time `now` (>= the last advance time).
  /// Flows started at one `now` before the next next_event_time()/advance() form one phase.
  /// `links` is copied. Returns the flow's slot id (reused after completion).
  int start_flow(int64_t now, std::span<const int> links, double bytes, uint32_t tag);

  /// Time of the earliest flow completion, or kNever. Times the pending phase first.
  int64_t next_event_time();

  /// Moves time to `t` (<= next_event_time()) and appends the tags of flows completed at or
  /// before t to `completed` (in completion-time, then flow-id order).
  void advance(int64_t t, std::vector<uint32_t>& completed);

  int active_flows() const { return active_; }
  int link_count() const { return static_cast<int>(capacity_.size()); }

 private:
  struct Pending {
    int links;  // offset of its links in pending_links_
    int nlinks;
    int flow;
    double bytes;
  };
  struct HeapEntry {
    int64_t time;
    int flow;
  };

  // The timed phases' flows wait as sorted runs (by (time, flow)), one per phase; a min-heap
  // of runs by their next entry merges them, so completions come out in exactly the (time,
  // flow) order of one heap of all flows, with a heap only as deep as the phases in flight.
  struct Run {
    std::vector<HeapEntry> entries;  // sorted by (time, flow)
    size_t next = 0;                 // first entry not yet completed
  };
  void time_phase();
  void run_push(int run);
  void run_pop_top();  // after the top run's next moved: restores the heap (or drops the run)
  const HeapEntry& top_of(int run) const {
    const Run& r = runs_[static_cast<size_t>(run)];
    return r.entries[r.next];
  }
  [[gnu::always_inline]] static bool before(const HeapEntry& a, const HeapEntry& b) {
    return a.time != b.time ? a.time < b.time : a.flow < b.flow;
  }

  struct Entry {
    int pending;  // index into pending_
    double bytes;
  };

  std::vector<double> capacity_;
  std::vector<double> busy_until_;  // per link: when its committed load has drained, ns
  std::vector<int> slot_;           // per link: its index in phase_links_, -1 if untouched
  std::vector<int> phase_links_;    // links the pending phase touches, first-touch order
  // Scratch of time_phase(): per phase link its flows (CSR), per pending flow its end.
  std::vector<int> off_, fill_;
  std::vector<Entry> entries_;
  std::vector<double> finish_;
  std::vector<Pending> pending_;  // the pending phase's flows
  std::vector<int> pending_links_;
  int64_t phase_now_ = 0;         // start time of the pending phase
  std::vector<uint32_t> tags_;    // per flow slot
  std::vector<int> free_;
  std::vector<Run> runs_;  // storage; runs not in run_heap_ are listed in free_runs_
  std::vector<int> free_runs_;
  std::vector<uint64_t> keys_;  // scratch of time_phase(): packed (time, flow) sort keys
  std::vector<int> run_heap_;   // min-heap of runs on their next entry's (time, flow)
  int active_ = 0;
  int64_t now_ = 0;
};

}  // namespace masep::sim
