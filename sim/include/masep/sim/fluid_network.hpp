// Fluid network model: the coarse network tier (`--network fluid`, parameter network_tier =
// 1). Same narrow interface as the flow-level NetworkModel (network_model.hpp) — start a flow,
// next event time, advance — so the engine drives either tier alike (SimGrid's
// NetworkModelIntf / ASTRA-sim's AstraNetworkAPI style); it never re-solves rates.
//
// Model. Every directed link is a fluid queue that drains at its capacity. Flows that start
// at one instant form a phase (an exchange's or a collective phase's transfers start
// together when their ops post together); when the phase is timed, each of its links gets the
// phase's bytes on it as load:
//     drain(l) = max(busy_until(l) - now, 0) + phase bytes on l / capacity(l)
//     busy_until(l) = now + drain(l)
// and each flow of the phase completes when the most loaded link of its route has drained:
//     finish = now + ceil(max over its links of drain(l))      (ns, rounded up as in the flow tier)
// Cost O(hops) per flow; each flow is timed once, when its phase is timed, and never again.
//
// Against per-flow max-min (the flow tier, the reference):
// - identical for a flow alone on its links (bytes / bottleneck bandwidth, same rounding),
//   and for n equal flows that start together on one shared bottleneck (n · bytes / capacity,
//   up to the last bit of the division);
// - flows of one phase that share a bottleneck all end when it drains (max-min lets a smaller
//   one end first: its op may end later here);
// - a later phase queues behind the backlog of earlier ones on shared links (max-min shares);
//   the link drains at the same time either way, so the last transfer on a bottleneck ends
//   alike, while earlier-posted ones end earlier here;
// - a flow limited by another link is charged at full speed on its other links (max-min would
//   give their spare capacity to others).
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
  /// `links` must stay valid until then. Returns the flow's slot id (reused after completion).
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
    const int* links;
    int nlinks;
    int flow;
    double bytes;
  };
  struct HeapEntry {
    int64_t time;
    int flow;
  };

  void time_phase();
  void heap_push(HeapEntry e);
  void heap_pop();

  std::vector<double> capacity_;
  std::vector<double> busy_until_;   // per link: when its committed load has drained, ns
  std::vector<double> phase_bytes_;  // per link: bytes of the pending phase (scratch)
  std::vector<double> drain_;        // per link: drain time of the pending phase (scratch)
  std::vector<int> phase_links_;     // links the pending phase touches (scratch)
  std::vector<Pending> pending_;     // the pending phase's flows
  int64_t phase_now_ = 0;            // start time of the pending phase
  std::vector<uint32_t> tags_;       // per flow slot
  std::vector<int> free_;
  std::vector<HeapEntry> heap_;  // min-heap on (time, flow)
  int active_ = 0;
  int64_t now_ = 0;
};

}  // namespace masep::sim
