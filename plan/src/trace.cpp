// Chrome Trace Event JSON writer. Hand-written streaming output rather than nlohmann-json:
// traces of big scenarios hold millions of events, and building a DOM first would double
// the memory; fixed-point microseconds (integer ns split at the thousands) keep the bytes
// deterministic with no floating-point formatting in the time fields.
#include "masep/plan/trace.hpp"
#include "masep/plan/json_text.hpp"

#include "masep/plan/output_file.hpp"

#include <fmt/format.h>

#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <system_error>

namespace masep::plan {
namespace {

using Buffer = fmt::memory_buffer;

void put_string(Buffer& b, const std::string& s) { append_json_string(b, s); }

// Nanoseconds as microseconds with exactly three decimals ("12.345"); ns >= 0.
void put_us(Buffer& b, int64_t ns) {
  fmt::format_to(std::back_inserter(b), "{}.{:03d}", ns / 1000, static_cast<int>(ns % 1000));
}

void put_double(Buffer& b, double v) {
  if (std::isfinite(v)) {
    fmt::format_to(std::back_inserter(b), "{}", v);
  } else {
    b.append(std::string_view("null"));
  }
}

std::string gpu_name(int gpu, int gpus_per_node) {
  if (gpus_per_node > 0) return fmt::format("gpu n{}.{}", gpu / gpus_per_node, gpu % gpus_per_node);
  return fmt::format("gpu {}", gpu);
}

void flush(std::ostream& out, Buffer& b) {
  out.write(b.data(), static_cast<std::streamsize>(b.size()));
  b.clear();
}

}  // namespace

void write_trace(std::ostream& out, const Program& p, const Timeline& t,
                 const TraceOptions& options) {
  if (t.ops.size() != p.ops.size()) {
    throw std::invalid_argument(
        fmt::format("write_trace: timeline has {} ops, program {}", t.ops.size(), p.ops.size()));
  }
  Buffer b;
  auto it = std::back_inserter(b);
  b.append(std::string_view("{\"traceEvents\":[\n"));
  bool first = true;
  auto sep = [&] {
    if (!first) b.append(std::string_view(",\n"));
    first = false;
  };

  // Metadata: process (rank) names and sort order, thread (stream) names.
  for (int r = 0; r < p.rank_count(); ++r) {
    const auto& info = p.ranks[r];
    sep();
    fmt::format_to(it,
                   "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{},\"tid\":0,"
                   "\"args\":{{\"name\":",
                   r);
    put_string(b, fmt::format("rank {}: {} ({})", r, info.label,
                              gpu_name(info.gpu, options.gpus_per_node)));
    b.append(std::string_view("}}"));
    sep();
    fmt::format_to(it,
                   "{{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":{},\"tid\":0,"
                   "\"args\":{{\"sort_index\":{}}}}}",
                   r, r);
    for (int s = 0; s < kStreamCount; ++s) {
      sep();
      fmt::format_to(it,
                     "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{},\"tid\":{},"
                     "\"args\":{{\"name\":\"{}\"}}}}",
                     r, s, stream_name(s));
    }
  }

  const std::vector<int64_t> sent = exchange_sent_bytes(p);
  // One complete event per op that ran, rank by rank, stream by stream, in stream order.
  for (int r = 0; r < p.rank_count(); ++r) {
    for (int s = 0; s < kStreamCount; ++s) {
      if (static_cast<size_t>(r) >= p.stream_ops.size()) break;
      for (OpId id : p.stream_ops[r][s]) {
        const Op& op = p.ops[static_cast<size_t>(id)];
        const OpTiming& ot = t.ops[static_cast<size_t>(id)];
        if (ot.start_ns < 0) continue;
        const bool comm = is_communication(op.kind);
        sep();
        b.append(std::string_view("{\"name\":"));
        put_string(b, op.name);
        fmt::format_to(it, ",\"cat\":\"{}\",\"ph\":\"X\",\"ts\":", comm ? "comm" : "compute");
        put_us(b, ot.start_ns);
        b.append(std::string_view(",\"dur\":"));
        put_us(b, std::max<int64_t>(0, ot.end_ns - ot.start_ns));
        fmt::format_to(it,
                       ",\"pid\":{},\"tid\":{},\"args\":{{\"op\":{},\"layer\":{},\"step\":{},"
                       "\"mb\":{},\"kind\":\"{}\",\"bytes\":{},\"flops\":",
                       op.rank, static_cast<int>(op.stream), op.id, op.layer, op.step,
                       op.micro_batch, to_string(op.kind), comm ? op.comm_bytes : op.hbm_bytes);
        put_double(b, op.flops);
        if (op.peer >= 0) fmt::format_to(it, ",\"peer\":{}", op.peer);
        if (op.exchange >= 0) {
          fmt::format_to(it, ",\"exchange\":{},\"sent_bytes\":{},\"recv_bytes\":{}", op.exchange,
                         sent[static_cast<size_t>(id)],
                         op.comm_bytes - sent[static_cast<size_t>(id)]);
        }
        if (op.collective >= 0 && static_cast<size_t>(op.collective) < p.collectives.size()) {
          const auto& c = p.collectives[static_cast<size_t>(op.collective)];
          fmt::format_to(it, ",\"collective\":{}", op.collective);
          if (c.group >= 0 && static_cast<size_t>(c.group) < p.groups.size()) {
            b.append(std::string_view(",\"group\":"));
            put_string(b, p.groups[static_cast<size_t>(c.group)].name);
          }
        }
        b.append(std::string_view("}}"));
        if (b.size() > (1u << 20)) flush(out, b);
      }
    }
  }

  b.append(std::string_view("\n],\n\"displayTimeUnit\":\"ns\",\n\"otherData\":{\"scenario\":"));
  put_string(b, p.scenario);
  b.append(std::string_view(",\"source\":"));
  put_string(b, t.source);
  b.append(std::string_view(",\"device\":"));
  put_string(b, t.device);
  fmt::format_to(it,
                 ",\"ranks\":{},\"steps\":{},\"layers\":{},\"micro_batches\":{},"
                 "\"ops\":{},\"makespan_ns\":{}}}\n}}\n",
                 p.rank_count(), p.steps, p.layers, p.micro_batches, p.ops.size(), t.makespan_ns);
  flush(out, b);
}

void write_trace_file(const std::string& path, const Program& p, const Timeline& t,
                      const TraceOptions& options) {
  write_output_file(path, "trace", [&](std::ostream& o) { write_trace(o, p, t, options); });
}

}  // namespace masep::plan
