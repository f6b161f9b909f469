// The one way masep reads an input file (scenario, model, topology, GPU, calibration, sweep,
// trace). Issue 21: a reader must never read forever or hang, and must say why it refused.
//
//   const std::string text = read_input_file(path, "calibration", kMaxYamlInputBytes);
//
// Only regular files (symbolic links followed) and `-` (standard input) are read. A
// directory, a character device (`/dev/zero`), a FIFO, a socket or a block device is refused
// at once: the file is opened non-blocking and checked with fstat() before the first read,
// so a FIFO without a writer cannot hang the reader. A file (or standard input) longer than
// `max_bytes` is refused with the limit in the message; nothing past the limit is read.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace masep::plan {

/// Size limit for YAML inputs (scenario, model, topology, GPU, calibration, sweep), bytes.
/// The largest shipped input is a few kB; yaml-cpp holds ~20x the text in nodes.
inline constexpr uint64_t kMaxYamlInputBytes = 16ull << 20;  // 16 MiB
/// Size limit for trace inputs (`masep compare`), bytes. A trace is parsed into a JSON tree
/// of roughly 8x its size; the paper scenario's 32-step trace is ~10 MB.
inline constexpr uint64_t kMaxTraceInputBytes = 256ull << 20;  // 256 MiB

/// The whole content of `path` (a regular file, or `-` for standard input). `what` names
/// the input in messages ("calibration", "trace"). Throws InputError(path, 0, 0, "", why)
/// when the file is missing, unreadable, not a regular file, or longer than `max_bytes`.
std::string read_input_file(const std::string& path, std::string_view what, uint64_t max_bytes);

/// Whether `path` names something read_input_file() would try to read: `-`, or an existing
/// file system entry of any kind (so that "not a regular file" is reported, not "not found").
bool input_exists(const std::string& path);

}  // namespace masep::plan
