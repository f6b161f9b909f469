// The one way masep writes an output file (traces, Program dumps, DOT graphs, calibration,
// comparison reports, sweep tables and plot data). Issue 21: a writer must never replace
// what is not a regular file, and never leave a half-written target.
//
//   write_output_file("out/trace.json", "trace", [&](std::ostream& o) { write_trace(o, ...); });
//   write_output_file("/dev/null", "trace", text);   // writes through; /dev/null stays a device
//
// What happens by the kind of `path` (symbolic links followed):
//   - missing, or a regular file: the text goes to a temporary file beside the (resolved)
//     target, `NAME.tmp.PID.N`, created exclusively, and is renamed over the target only
//     once complete; a failure removes the temporary and leaves the target untouched. An
//     existing target keeps its permission bits.
//   - a character device or a FIFO (`/dev/null`, a named pipe): written through in place
//     (a FIFO blocks until a reader opens it, as a shell redirection does).
//   - `-`, `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`: written to that open
//     descriptor (standard output shares its position with the rest of the output).
//   - a directory, a block device, a socket: refused with OutputError, nothing written.
//   - a missing parent folder: OutputError naming it (folders are not created here).
#pragma once

#include <filesystem>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>

namespace masep::plan {

/// Writes the output `path`; `fill` streams the content. `what` names the output in
/// messages ("trace", "calibration"). Throws OutputError (errors.hpp) on any failure;
/// exceptions from `fill` propagate after the temporary file is removed.
void write_output_file(const std::string& path, std::string_view what,
                       const std::function<void(std::ostream&)>& fill);

/// Same, with the whole content given as text.
void write_output_file(const std::string& path, std::string_view what, std::string_view text);

/// `dir / name` for a file that must stay inside `dir` (sweep results, plot files): `name`
/// must be a plain relative path without `..` components. Throws OutputError otherwise.
std::filesystem::path path_inside(const std::filesystem::path& dir, std::string_view name,
                                  std::string_view what);

}  // namespace masep::plan
