// The discrete-event engine's clock and queue: integer nanoseconds, events ordered by
// (time, sequence number) where the sequence is a counter bumped on every push, so events at
// the same instant run in the order they were scheduled and a rerun is bit-identical.
// Events are small PODs (no std::function, no allocation per event once the buffers have grown).
#pragma once

#include <cstdint>
#include <vector>

namespace masep::sim {

/// One scheduled event: what to do (`type`, interpreted by the simulator) and two operands.
struct Event {
  int64_t time_ns = 0;
  uint64_t seq = 0;
  uint32_t type = 0;
  int32_t a = 0;
  uint32_t b = 0;
};

/// Min-priority queue of events on (time_ns, seq). Owns its events (buffers that only grow).
/// time_ns must be >= 0. pop() always returns the event of the smallest (time_ns, seq), and
/// seq is unique, so the pop order is fully determined by the pushes, whichever of the two
/// push calls stored an event:
/// - push(time, ...): any time; stored in a binary heap, whose entries carry (time, seq) as one
///   unsigned 128-bit key (time in the high half); pop() moves the hole down to a leaf with
///   one comparison per level and moves the heap's last entry up from there.
/// - push_after(now, delay, ...): time = now + delay. Up to kLanes distinct delays get a FIFO
///   lane each, on first use. Precondition for the lane: the calls for one delay come at
///   non-decreasing `now` (a simulator's clock), so each lane's times, and with the global
///   seq its keys, increase in push order. Only a lane's first event is in the heap; the rest
///   wait in the lane's ring buffer, and popping the first one puts the next in its place in
///   the heap (one sift, usually a level: the next often has the same time). So the heap stays
///   small (one entry per lane plus the push() events) and a lane's push is O(1). A call that
///   would break its lane's order (time below the lane's last time) is guarded: it goes to the
///   heap as a push() would (counted by lane_fallbacks()), as do delays beyond kLanes distinct
///   ones. Either way the order stays exact.
class EventQueue {
 public:
  static constexpr int kLanes = 8;

  void reserve(size_t n) { heap_.reserve(n); }
  bool empty() const { return heap_.empty(); }
  /// Events queued (the heap's plus those waiting in lanes; O(kLanes)).
  size_t size() const {
    size_t n = heap_.size();
    for (int i = 0; i < nlanes_; ++i) n += lanes_[i].count;
    return n;
  }
  /// Time of the earliest event; undefined when empty.
  int64_t top_time() const { return time_of(heap_[0].k); }
  /// push_after() calls that found their lane's order broken and went to the heap.
  uint64_t lane_fallbacks() const { return fallbacks_; }

  void push(int64_t time_ns, uint32_t type, int32_t a, uint32_t b = 0) {
    heap_push(Entry{make_key(time_ns, seq_++), type, a, b, -1});
  }

  /// Pushes an event at now + delay; see the class comment for the lanes and their
  /// precondition (non-decreasing `now` per delay; guarded).
  [[gnu::always_inline]] void push_after(int64_t now, int64_t delay, uint32_t type, int32_t a,
                                         uint32_t b = 0) {
    const int64_t time_ns = now + delay;
    int i = last_lane_;  // bursts of one delay are common: try the last lane first
    if (i >= nlanes_ || lane_delay_[i] != delay) {
      i = 0;
      while (i < nlanes_ && lane_delay_[i] != delay) ++i;
    }
    if (i == nlanes_) {
      if (nlanes_ == kLanes) {
        push(time_ns, type, a, b);
        return;
      }
      lane_delay_[nlanes_++] = delay;
    }
    last_lane_ = i;
    Lane& l = lanes_[i];
    if (time_ns < l.tail_time) {  // order broken (never from a clock): the heap keeps it exact
      ++fallbacks_;
      push(time_ns, type, a, b);
      return;
    }
    l.tail_time = time_ns;
    const Entry e{make_key(time_ns, seq_++), type, a, b, i};
    if (!l.in_heap) {  // the lane's first event: into the heap
      l.in_heap = true;
      heap_push(e);
      return;
    }
    if (l.count == l.buf.size()) grow(l);
    l.buf[(l.head + l.count++) & (l.buf.size() - 1)] = e;
  }

  /// Removes and returns the earliest event; undefined when empty.
  [[gnu::always_inline]] Event pop() {
    Entry* h = heap_.data();
    const Entry top = h[0];
    if (top.lane >= 0) {
      Lane& l = lanes_[top.lane];
      if (l.count > 0) {  // the lane's next event replaces it at the root
        const Entry next = l.buf[l.head];
        l.head = (l.head + 1) & (l.buf.size() - 1);
        --l.count;
        sift_down(next, heap_.size());
        return event(top);
      }
      l.in_heap = false;
    }
    const Entry last = heap_.back();
    heap_.pop_back();
    if (!heap_.empty()) sift_down_leaf(last, heap_.size());
    return event(top);
  }

 private:
  __extension__ typedef unsigned __int128 Key;  // GCC and Clang (__extension__: no -Wpedantic)
  static Key make_key(int64_t time_ns, uint64_t seq) {
    return (static_cast<Key>(static_cast<uint64_t>(time_ns)) << 64) | seq;
  }
  static int64_t time_of(Key k) { return static_cast<int64_t>(static_cast<uint64_t>(k >> 64)); }
  // A stored event: its key, its operands, and the lane it came through (-1: push()).
  struct Entry {
    Key k;
    uint32_t type;
    int32_t a;
    uint32_t b;
    int32_t lane;
  };
  static Event event(const Entry& e) {
    return Event{time_of(e.k), static_cast<uint64_t>(e.k), e.type, e.a, e.b};
  }

  // A lane: its first event sits in the heap (in_heap), the later ones in a FIFO ring
  // buffer whose capacity is 0 or a power of two.
  struct Lane {
    std::vector<Entry> buf;
    size_t head = 0, count = 0;
    int64_t tail_time = 0;  // time of the last event pushed through the lane
    bool in_heap = false;
  };
  static void grow(Lane& l) {
    std::vector<Entry> b(l.buf.empty() ? 64 : 2 * l.buf.size());
    for (size_t j = 0; j < l.count; ++j) b[j] = l.buf[(l.head + j) & (l.buf.size() - 1)];
    l.buf.swap(b);
    l.head = 0;
  }

  void heap_push(const Entry& e) {
    heap_.push_back(e);
    sift_up(heap_.size() - 1, e);
  }
  // Puts e into the hole at index i, moving it up past larger parents.
  void sift_up(size_t i, const Entry& e) {
    Entry* h = heap_.data();
    while (i > 0) {
      const size_t parent = (i - 1) / 2;
      if (h[parent].k < e.k) break;
      h[i] = h[parent];
      i = parent;
    }
    h[i] = e;
  }
  // Puts e into the hole at the root of a heap of n entries.
  void sift_down(const Entry& e, size_t n) {
    Entry* h = heap_.data();
    size_t i = 0;
    for (;;) {
      size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && h[c + 1].k < h[c].k) ++c;
      if (e.k < h[c].k) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = e;
  }

  // The same for a large e (the heap's last entry): the hole goes down to a leaf along the
  // smaller children (one comparison per level), then e moves up from there (rarely far).
  void sift_down_leaf(const Entry& e, size_t n) {
    Entry* h = heap_.data();
    size_t i = 0;
    for (;;) {
      size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && h[c + 1].k < h[c].k) ++c;
      h[i] = h[c];
      i = c;
    }
    sift_up(i, e);
  }

  std::vector<Entry> heap_;
  Lane lanes_[kLanes];
  int64_t lane_delay_[kLanes] = {};
  int nlanes_ = 0;
  int last_lane_ = 0;  // the lane of the last push_after()
  uint64_t seq_ = 0;
  uint64_t fallbacks_ = 0;
};

}  // namespace masep::sim
