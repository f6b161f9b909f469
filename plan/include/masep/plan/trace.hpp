// Chrome Trace Event / Perfetto JSON for a (Program, Timeline) pair: one process per GPU
// named with its role, one thread per stream, one complete ("ph":"X") event per op with
// microsecond timestamps and args {op, layer, step, mb, bytes, flops, kind} (plus peer for
// send/recv, collective and group for collectives, exchange, sent_bytes and recv_bytes for
// kExchange ops; bytes is comm_bytes for communication ops). The simulator
// and the executor both write traces with this function, so they join on op id.
#pragma once

#include <cstdint>
#include <cstdio>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"
#include "masep/plan/program_chunk.hpp"
#include "masep/plan/timeline.hpp"

namespace masep::plan {

/// Optional presentation details of a trace.
struct TraceOptions {
  /// GPUs per node of the topology, to name GPUs "n<node>.<local>" in process names;
  /// 0 = unknown (names read "gpu <global rank>").
  int gpus_per_node = 0;
};

/// Writes the trace JSON to `out`. Byte-identical for identical inputs. Layout:
/// {"traceEvents":[metadata..., {"name","cat","ph":"X","ts","dur","pid","tid","args"}...],
///  "displayTimeUnit":"ns","otherData":{scenario, source, device, ...}}; pid = plan rank,
/// tid = stream (0 compute, 1 comm); ts/dur in µs with exactly 3 decimals (exact ns).
/// Ops with start_ns < 0 (not run) are left out.
void write_trace(std::ostream& out, const Program& p, const Timeline& t,
                 const TraceOptions& options = {});

/// Writes to `path` atomically (temporary file + rename); throws std::runtime_error naming
/// the path on failure, leaving no half-written file.
void write_trace_file(const std::string& path, const Program& p, const Timeline& t,
                      const TraceOptions& options = {});

/// The same trace, written from a Program handed over chunk by chunk (program_chunk.hpp; the
/// simulator's streaming path): byte-identical to write_trace of the whole Program and its
/// Timeline. The trace lists events rank by rank and stream by stream, so add() formats a
/// chunk's events at once into a temporary file (std::tmpfile, removed on close) as one
/// segment per (rank, stream), and finish() writes the header, the segments in rank / stream
/// / chunk order and the footer. Memory: the segment list (16 bytes per rank, stream and
/// chunk) and one chunk's text. Owns the temporary file; not copyable.
class TraceStreamWriter {
 public:
  /// `header`: ranks, groups, scenario, steps, layers, micro-batches (no ops needed); copied.
  TraceStreamWriter(const Program& header, const TraceOptions& options = {});
  ~TraceStreamWriter();
  TraceStreamWriter(const TraceStreamWriter&) = delete;
  TraceStreamWriter& operator=(const TraceStreamWriter&) = delete;

  /// The next chunk (in order) and its ops' timings (t[i] for c.ops[i]).
  void add(const ProgramChunk& c, std::span<const OpTiming> t);
  /// Writes the whole trace; `source`, `device` and `makespan_ns` as in the Timeline.
  void finish(std::ostream& out, const std::string& source, const std::string& device,
              int64_t makespan_ns);
  /// The same to `path`, atomically (as write_trace_file).
  void finish_file(const std::string& path, const std::string& source, const std::string& device,
                   int64_t makespan_ns);

 private:
  struct Segment {
    int64_t offset = 0;
    size_t bytes = 0;
  };
  Program header_;
  TraceOptions options_;
  std::FILE* spool_ = nullptr;
  int64_t spooled_ = 0, ops_ = 0;
  std::vector<std::vector<Segment>> segments_;  // [rank * kStreamCount + stream]
};

}  // namespace masep::plan
