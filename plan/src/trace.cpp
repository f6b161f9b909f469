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

// Metadata: process (rank) names and sort order, thread (stream) names; `first` is cleared.
void put_header(Buffer& b, const Program& p, const TraceOptions& options) {
  auto it = std::back_inserter(b);
  b.append(std::string_view("{\"traceEvents\":[\n"));
  bool first = true;
  auto sep = [&] {
    if (!first) b.append(std::string_view(",\n"));
    first = false;
  };
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
}

// One complete event of an op that ran; `sent` = the bytes it sends in its exchange;
// `collective` = its collective (null if none or out of range), `groups` to name its group.
void put_op(Buffer& b, const Op& op, const OpTiming& ot, int64_t sent, const Collective* collective,
            const std::vector<Group>& groups) {
  auto it = std::back_inserter(b);
  const bool comm = is_communication(op.kind);
  b.append(std::string_view("{\"name\":"));
  put_string(b, op.name);
  fmt::format_to(it, ",\"cat\":\"{}\",\"ph\":\"X\",\"ts\":", comm ? "comm" : "compute");
  put_us(b, ot.start_ns);
  b.append(std::string_view(",\"dur\":"));
  put_us(b, std::max<int64_t>(0, ot.end_ns - ot.start_ns));
  fmt::format_to(it,
                 ",\"pid\":{},\"tid\":{},\"args\":{{\"op\":{},\"layer\":{},\"step\":{},"
                 "\"mb\":{},\"kind\":\"{}\",\"bytes\":{},\"flops\":",
                 op.rank, static_cast<int>(op.stream), op.id, op.layer, op.step, op.micro_batch,
                 to_string(op.kind), comm ? op.comm_bytes : op.hbm_bytes);
  put_double(b, op.flops);
  if (op.peer >= 0) fmt::format_to(it, ",\"peer\":{}", op.peer);
  if (op.exchange >= 0) {
    fmt::format_to(it, ",\"exchange\":{},\"sent_bytes\":{},\"recv_bytes\":{}", op.exchange, sent,
                   op.comm_bytes - sent);
  }
  if (collective != nullptr) {
    const auto& c = *collective;
    fmt::format_to(it, ",\"collective\":{}", op.collective);
    if (c.group >= 0 && static_cast<size_t>(c.group) < groups.size()) {
      b.append(std::string_view(",\"group\":"));
      put_string(b, groups[static_cast<size_t>(c.group)].name);
    }
  }
  b.append(std::string_view("}}"));
}

void put_footer(Buffer& b, const Program& p, const std::string& source, const std::string& device,
                int64_t ops, int64_t makespan_ns) {
  b.append(std::string_view("\n],\n\"displayTimeUnit\":\"ns\",\n\"otherData\":{\"scenario\":"));
  put_string(b, p.scenario);
  b.append(std::string_view(",\"source\":"));
  put_string(b, source);
  b.append(std::string_view(",\"device\":"));
  put_string(b, device);
  fmt::format_to(std::back_inserter(b),
                 ",\"ranks\":{},\"steps\":{},\"layers\":{},\"micro_batches\":{},"
                 "\"ops\":{},\"makespan_ns\":{}}}\n}}\n",
                 p.rank_count(), p.steps, p.layers, p.micro_batches, ops, makespan_ns);
}

}  // namespace

void write_trace(std::ostream& out, const Program& p, const Timeline& t,
                 const TraceOptions& options) {
  if (t.ops.size() != p.ops.size()) {
    throw std::invalid_argument(
        fmt::format("write_trace: timeline has {} ops, program {}", t.ops.size(), p.ops.size()));
  }
  Buffer b;
  put_header(b, p, options);
  bool first = p.rank_count() == 0;  // no metadata written: the first event has no separator
  const std::vector<int64_t> sent = exchange_sent_bytes(p);
  // One complete event per op that ran, rank by rank, stream by stream, in stream order.
  for (int r = 0; r < p.rank_count(); ++r) {
    for (int s = 0; s < kStreamCount; ++s) {
      if (static_cast<size_t>(r) >= p.stream_ops.size()) break;
      for (OpId id : p.stream_ops[r][s]) {
        const Op& op = p.ops[static_cast<size_t>(id)];
        const OpTiming& ot = t.ops[static_cast<size_t>(id)];
        if (ot.start_ns < 0) continue;
        if (!first) b.append(std::string_view(",\n"));
        first = false;
        const bool has_coll =
            op.collective >= 0 && static_cast<size_t>(op.collective) < p.collectives.size();
        put_op(b, op, ot, sent[static_cast<size_t>(id)],
               has_coll ? &p.collectives[static_cast<size_t>(op.collective)] : nullptr, p.groups);
        if (b.size() > (1u << 20)) flush(out, b);
      }
    }
  }
  put_footer(b, p, t.source, t.device, static_cast<int64_t>(p.ops.size()), t.makespan_ns);
  flush(out, b);
}

TraceStreamWriter::TraceStreamWriter(const Program& header, const TraceOptions& options)
    : header_(header), options_(options), spool_(std::tmpfile()) {
  if (spool_ == nullptr) {
    throw std::runtime_error(
        fmt::format("trace: cannot create a temporary file: {}", std::strerror(errno)));
  }
  segments_.resize(static_cast<size_t>(header.rank_count()) * kStreamCount);
}

TraceStreamWriter::~TraceStreamWriter() {
  if (spool_ != nullptr) std::fclose(spool_);
}

void TraceStreamWriter::add(const ProgramChunk& c, std::span<const OpTiming> t) {
  if (t.size() != c.ops.size()) {
    throw std::invalid_argument(
        fmt::format("TraceStreamWriter: timeline has {} ops, chunk {}", t.size(), c.ops.size()));
  }
  ops_ += static_cast<int64_t>(c.ops.size());
  std::vector<int64_t> sent(c.ops.size(), 0);
  for (const Exchange& x : c.exchanges) {
    for (const Transfer& tr : x.transfers) {
      const int64_t i = static_cast<int64_t>(tr.src_op) - c.first_op;
      if (i >= 0 && i < static_cast<int64_t>(sent.size())) sent[static_cast<size_t>(i)] += tr.bytes;
    }
  }
  Buffer b;
  const int ranks = std::min(header_.rank_count(), static_cast<int>(c.stream_ops.size()));
  for (int r = 0; r < ranks; ++r) {
    for (int s = 0; s < kStreamCount; ++s) {
      b.clear();
      for (OpId id : c.stream_ops[r][s]) {
        const auto i = static_cast<size_t>(id - c.first_op);
        const Op& op = c.ops[i];
        if (t[i].start_ns < 0) continue;
        b.append(std::string_view(",\n"));  // the header's metadata always precedes
        const int64_t ci = static_cast<int64_t>(op.collective) - c.first_collective;
        const bool has_coll =
            op.collective >= 0 && ci >= 0 && ci < static_cast<int64_t>(c.collectives.size());
        put_op(b, op, t[i], sent[i], has_coll ? &c.collectives[static_cast<size_t>(ci)] : nullptr,
               header_.groups);
      }
      if (b.size() == 0) continue;
      if (std::fwrite(b.data(), 1, b.size(), spool_) != b.size()) {
        throw std::runtime_error(
            fmt::format("trace: writing the temporary file failed: {}", std::strerror(errno)));
      }
      segments_[static_cast<size_t>(r) * kStreamCount + s].push_back({spooled_, b.size()});
      spooled_ += static_cast<int64_t>(b.size());
    }
  }
}

void TraceStreamWriter::finish(std::ostream& out, const std::string& source,
                               const std::string& device, int64_t makespan_ns) {
  Buffer b;
  put_header(b, header_, options_);
  flush(out, b);
  if (std::fflush(spool_) != 0) {
    throw std::runtime_error(
        fmt::format("trace: writing the temporary file failed: {}", std::strerror(errno)));
  }
  std::vector<char> buf;
  for (const auto& list : segments_) {
    for (const Segment& seg : list) {
      buf.resize(seg.bytes);
      if (std::fseek(spool_, static_cast<long>(seg.offset), SEEK_SET) != 0 ||
          std::fread(buf.data(), 1, seg.bytes, spool_) != seg.bytes) {
        throw std::runtime_error("trace: reading back the temporary file failed");
      }
      out.write(buf.data(), static_cast<std::streamsize>(seg.bytes));
    }
  }
  put_footer(b, header_, source, device, ops_, makespan_ns);
  flush(out, b);
}

void TraceStreamWriter::finish_file(const std::string& path, const std::string& source,
                                    const std::string& device, int64_t makespan_ns) {
  write_output_file(path, "trace",
                    [&](std::ostream& o) { finish(o, source, device, makespan_ns); });
}

void write_trace_file(const std::string& path, const Program& p, const Timeline& t,
                      const TraceOptions& options) {
  write_output_file(path, "trace", [&](std::ostream& o) { write_trace(o, p, t, options); });
}

}  // namespace masep::plan
