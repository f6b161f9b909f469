// The discrete-event engine's clock and queue: integer nanoseconds, events ordered by
// (time, sequence number) where the sequence is a counter bumped on every push, so events at
// the same instant run in the order they were scheduled and a rerun is bit-identical.
// Events are small PODs (no std::function, no allocation per event once the heap has grown).
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

/// Binary min-heap of events on (time_ns, seq). Owns its events (a vector that only grows).
/// time_ns must be >= 0. The two keys are compared as one unsigned 128-bit number (time in
/// the high half), and pop() moves the hole down with one comparison per level: the order
/// is exactly (time_ns, seq), as with std::push_heap/pop_heap on that comparison.
class EventQueue {
 public:
  void reserve(size_t n) { heap_.reserve(n); }
  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  /// Time of the earliest event; undefined when empty.
  int64_t top_time() const { return heap_.front().time_ns; }

  void push(int64_t time_ns, uint32_t type, int32_t a, uint32_t b = 0) {
    const Event e{time_ns, seq_++, type, a, b};
    const Key k = key(e);
    size_t i = heap_.size();
    heap_.push_back(e);
    Event* h = heap_.data();
    while (i > 0) {
      const size_t parent = (i - 1) / 2;
      if (key(h[parent]) < k) break;
      h[i] = h[parent];
      i = parent;
    }
    h[i] = e;
  }
  /// Removes and returns the earliest event; undefined when empty.
  Event pop() {
    Event* h = heap_.data();
    const Event top = h[0];
    const Event last = heap_.back();
    heap_.pop_back();
    const size_t n = heap_.size();
    if (n == 0) return top;
    const Key k = key(last);
    size_t i = 0;
    for (;;) {
      size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && key(h[c + 1]) < key(h[c])) ++c;
      if (k < key(h[c])) break;
      h[i] = h[c];
      i = c;
    }
    h[i] = last;
    return top;
  }

 private:
  __extension__ typedef unsigned __int128 Key;  // GCC and Clang (__extension__: no -Wpedantic)
  static Key key(const Event& e) {
    return (static_cast<Key>(static_cast<uint64_t>(e.time_ns)) << 64) | e.seq;
  }
  std::vector<Event> heap_;
  uint64_t seq_ = 0;
};

}  // namespace masep::sim
