// Chrome Trace Event / Perfetto JSON for a (Program, Timeline) pair: one process per GPU
// named with its role, one thread per stream, one complete ("ph":"X") event per op with
// microsecond timestamps and args {op, layer, step, mb, bytes, flops, kind}. The simulator
// and the executor both write traces with this function, so they join on op id.
#pragma once

#include <ostream>
#include <string>

#include "masep/plan/program.hpp"
#include "masep/plan/timeline.hpp"

namespace masep::plan {

/// Writes the trace JSON to `out`. Byte-identical for identical inputs.
void write_trace(std::ostream& out, const Program& p, const Timeline& t);

/// Writes to `path` atomically (temporary file + rename); throws std::runtime_error naming
/// the path on failure, leaving no half-written file.
void write_trace_file(const std::string& path, const Program& p, const Timeline& t);

}  // namespace masep::plan
