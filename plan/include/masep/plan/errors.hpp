// Typed errors thrown by masep's library code (only `main` turns them into exit codes).
#pragma once

#include <stdexcept>
#include <string>

namespace masep::plan {

/// Bad user input: a malformed or inconsistent scenario/model/topology file or override.
/// what() reads "FILE:LINE:COL: KEY.PATH: message" (line/column 1-based; omitted when the
/// problem has no single location, e.g. an override from the command line).
class InputError : public std::runtime_error {
 public:
  InputError(std::string file, int line, int column, std::string key, std::string message);

  const std::string& file() const { return file_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& key() const { return key_; }
  const std::string& message() const { return message_; }

 private:
  std::string file_;
  int line_;
  int column_;
  std::string key_;
  std::string message_;
};

/// A plan that is well-formed but cannot run: it does not fit in GPU memory, or needs more
/// GPUs than the topology has. what() holds the full explanation (e.g. the memory breakdown).
class InfeasiblePlan : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An output file that cannot be written (output_file.hpp): a missing folder, a directory or
/// block device given as the target, a full disk. what() names the output and the path.
class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A duration that cannot be an integer number of nanoseconds (time_ns.hpp): not finite or
/// beyond 2^53 ns. Load-time range checks should have caught its input; this is the net.
class DurationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace masep::plan
