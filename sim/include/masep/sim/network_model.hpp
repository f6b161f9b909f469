// Flow-level network model: max-min fair sharing of directed link bandwidth among the flows
// that cross each link (SimGrid's "progressive filling"). The engine knows it only through
// next_event_time() and advance(t).
//
// A flow here is the bandwidth phase of a transfer: the route latency is paid by the caller
// (the simulator starts the flow once the latency has elapsed). While active, a flow moves
// bytes at its max-min rate; rates are recomputed whenever a flow starts or ends, only over
// the connected component of flows that share links with the changed ones. Completion times
// are integer ns, rounded up.
//
// Example: two links of 10 and 30 bytes/ns; flow A on both, B on link 0, C on link 1:
// link 0 is the bottleneck (10/2 = 5 < 30/2), so A = B = 5 and C = 30 - 5 = 25 bytes/ns.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace masep::sim {

class NetworkModel {
 public:
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

  /// `capacity_bytes_per_ns[l]` is link l's bandwidth in bytes/ns (== GB/s); all > 0.
  explicit NetworkModel(std::vector<double> capacity_bytes_per_ns);

  /// Starts a flow of `bytes` (> 0) over `links` at time `now` (>= the last advance time).
  /// `links` must stay valid while the flow is active (the caller owns route storage).
  /// `tag` is returned on completion. Returns the flow's slot id (reused after completion).
  int start_flow(int64_t now, std::span<const int> links, double bytes, uint32_t tag);

  /// Time of the earliest flow completion, or kNever. Re-solves rates first if flows
  /// started or ended since the last call (so starts at one instant are solved together).
  int64_t next_event_time();

  /// Moves time to `t` (<= next_event_time()) and appends the tags of flows completed at or
  /// before t to `completed` (in completion-time, then flow-id order).
  void advance(int64_t t, std::vector<uint32_t>& completed);

  /// Current rate of an active flow, bytes/ns (after next_event_time() has re-solved).
  double rate(int flow) const { return flows_[flow].rate; }
  int active_flows() const { return active_; }
  int link_count() const { return static_cast<int>(capacity_.size()); }

 private:
  struct Flow {
    const int* links = nullptr;
    int nlinks = 0;
    bool active = false;
    double remaining = 0;  // bytes left as of `updated`
    double rate = 0;       // bytes/ns
    int64_t updated = 0;   // time `remaining` refers to
    int64_t finish = 0;    // predicted completion, ns
    uint32_t version = 0;  // bumps on every re-rate (heap entries carry it)
    uint32_t tag = 0;
    int bneck = -1;        // link at which the last solve froze it (-1: not solved yet)
    std::vector<int> pos;  // index of this flow in each link's flow list (per hop)
  };
  struct HeapEntry {
    int64_t time;
    int flow;
    uint32_t version;
  };
  struct LinkState {
    std::vector<int> flows;  // active flows crossing the link
    std::vector<int> hop;    // for each entry of `flows`, its hop index in that flow
  };

  void detach(int f);
  void solve_dirty();
  void push_heap(int f);

  std::vector<double> capacity_;
  std::vector<LinkState> links_;
  std::vector<Flow> flows_;
  std::vector<int> free_;
  std::vector<HeapEntry> heap_;   // min-heap on (time, flow)
  std::vector<int> dirty_links_;  // links whose flow set changed since the last solve
  std::vector<int> bneck_count_;  // per link: active flows whose bottleneck it is
  int active_ = 0;
  int64_t now_ = 0;

  // Scratch of the solver (kept to avoid per-event allocation).
  std::vector<uint32_t> link_mark_, flow_mark_;
  uint32_t epoch_ = 0;
  std::vector<int> comp_links_, stack_, tied_;  // sized to the link count
  std::vector<double> cap_left_;
  std::vector<int> unfrozen_;
};

}  // namespace masep::sim
