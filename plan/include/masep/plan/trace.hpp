// Chrome Trace Event / Perfetto JSON for a (Program, Timeline) pair: one process per GPU
// named with its role, one thread per stream, one complete ("ph":"X") event per op with
// microsecond timestamps and args {op, layer, step, mb, bytes, flops, kind} (plus peer for
// send/recv, collective and group for collectives, exchange, sent_bytes and recv_bytes for
// kExchange ops; bytes is comm_bytes for communication ops). The simulator
// and the executor both write traces with this function, so they join on op id.
#pragma once

#include <ostream>
#include <string>

#include "masep/plan/program.hpp"
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

}  // namespace masep::plan
