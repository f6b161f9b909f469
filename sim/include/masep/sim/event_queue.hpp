// The discrete-event engine's clock and queue: integer nanoseconds, events ordered by
// (time, sequence number) where the sequence is a counter bumped on every push, so events at
// the same instant run in the order they were scheduled and a rerun is bit-identical.
// Events are small PODs (no std::function, no allocation per event once the heap has grown).
#pragma once

#include <algorithm>
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

/// Binary min-heap of events on (time_ns, seq).
class EventQueue {
 public:
  void reserve(size_t n) { heap_.reserve(n); }
  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  /// Time of the earliest event; undefined when empty.
  int64_t top_time() const { return heap_.front().time_ns; }

  void push(int64_t time_ns, uint32_t type, int32_t a, uint32_t b = 0) {
    heap_.push_back(Event{time_ns, seq_++, type, a, b});
    std::push_heap(heap_.begin(), heap_.end(), Later{});
  }
  /// Removes and returns the earliest event.
  Event pop() {
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    Event e = heap_.back();
    heap_.pop_back();
    return e;
  }

 private:
  // A function object (not a function pointer) so the heap operations inline it.
  struct Later {
    bool operator()(const Event& x, const Event& y) const {
      return x.time_ns != y.time_ns ? x.time_ns > y.time_ns : x.seq > y.seq;
    }
  };
  std::vector<Event> heap_;
  uint64_t seq_ = 0;
};

}  // namespace masep::sim
