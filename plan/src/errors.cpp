#include "masep/plan/errors.hpp"

#include <string>
#include <utility>

namespace masep::plan {

namespace {
// "FILE:LINE:COL: KEY: message"; the location is dropped when line <= 0 (no single place,
// e.g. a command-line override) and the key when empty.
std::string format(const std::string& file, int line, int column, const std::string& key,
                   const std::string& message) {
  std::string out;
  if (!file.empty()) {
    out += file;
    if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(column > 0 ? column : 1);
    out += ": ";
  }
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}
}  // namespace

InputError::InputError(std::string file, int line, int column, std::string key, std::string message)
    : std::runtime_error(format(file, line, column, key, message)),
      file_(std::move(file)),
      line_(line),
      column_(column),
      key_(std::move(key)),
      message_(std::move(message)) {}

}  // namespace masep::plan
