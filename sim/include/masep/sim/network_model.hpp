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
  // Per-flow state (positions in the links' lists live in pos_pool_, not in a vector each).
  struct Flow {
    const int* links = nullptr;
    double remaining = 0;  // bytes left as of `updated`
    double rate = 0;       // bytes/ns
    int64_t updated = 0;   // time `remaining` refers to
    int64_t finish = 0;    // predicted completion, ns
    int nlinks = 0;
    int bneck = -1;     // link at which the last solve froze it (-1: not solved yet)
    int heap_pos = -1;  // index in heap_ while a completion is queued, else -1
    uint32_t tag = 0;
    uint32_t mark = 0;  // solver epoch mark (component / frozen)
    int pos_off = 0;    // this flow's per-hop positions: pos_pool_[pos_off, + pos_cap)
    int pos_cap = 0;
    bool active = false;
  };
  struct HeapEntry {
    int64_t time;  // the flow's predicted completion
    int flow;
  };
  struct LinkEntry {
    int flow;  // active flow crossing the link
    int slot;  // where pos_pool_ keeps this entry's index in the link's list
  };

  void detach(int f);
  void solve_dirty();
  void retime(int f, double share);
  void set_bneck(Flow& fl, int b);
  void learn_twins(int x, int y);
  void heap_place(int i, HeapEntry e);
  void heap_update(int f);
  void heap_pop();

  std::vector<double> capacity_;
  std::vector<std::vector<LinkEntry>> links_;  // per link: its active flows
  std::vector<Flow> flows_;
  std::vector<int> pos_pool_;  // index of a flow in each of its links' lists (per hop)
  std::vector<int> free_;
  std::vector<HeapEntry> heap_;   // min-heap on (time, flow), one entry per timed flow
  std::vector<int> dirty_links_;  // links whose flow set changed since the last solve
  std::vector<int> bneck_count_;  // per link: active flows whose bottleneck it is
  // Twin links: partner_[l] is the link paired with l (hops 2k and 2k+1 of a route, equal
  // capacity) in every route seen so far that crosses l (-1: l not seen yet; -2: none). Two
  // links that are each other's partner carry the same flows, so their fair shares are
  // equal bit for bit at every step of a solve; twin_skip_[l] marks the higher-numbered one,
  // which the bottleneck scan leaves out (its twin stands for it).
  std::vector<int> partner_;
  std::vector<uint8_t> twin_skip_;
  int active_ = 0;
  int64_t now_ = 0;

  // Scratch of the solver (kept to avoid per-event allocation), all sized to the link count.
  struct Fill {
    double cap_left;  // capacity not yet given to frozen flows
    int unfrozen;     // flows not yet frozen
  };
  std::vector<uint32_t> link_mark_;
  uint32_t epoch_ = 0;
  std::vector<int> comp_links_, stack_, tied_;
  std::vector<Fill> fill_;
};

}  // namespace masep::sim
