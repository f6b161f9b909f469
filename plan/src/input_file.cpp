#include "masep/plan/input_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "masep/plan/errors.hpp"

namespace masep::plan {
namespace {

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

[[noreturn]] void refuse(const std::string& path, std::string_view what, const std::string& why) {
  throw InputError(path, 0, 0, "", fmt::format("cannot read {}: {}", what, why));
}

std::string too_long(std::string_view what, uint64_t max_bytes) {
  return fmt::format("longer than the {} limit of {} MiB", what, max_bytes >> 20);
}

// Reads fd to the end, at most max_bytes (one byte more tells that the limit was passed).
std::string read_all(int fd, const std::string& path, std::string_view what, uint64_t max_bytes,
                     uint64_t size_hint) {
  std::string out;
  if (size_hint > 0) out.reserve(static_cast<size_t>(size_hint));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      refuse(path, what, std::strerror(errno));
    }
    if (n == 0) break;
    if (out.size() + static_cast<uint64_t>(n) > max_bytes)
      refuse(path, what, too_long(what, max_bytes));
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

bool input_exists(const std::string& path) {
  struct stat st {};
  return path == "-" || ::lstat(path.c_str(), &st) == 0;
}

std::string read_input_file(const std::string& path, std::string_view what, uint64_t max_bytes) {
  if (path == "-") return read_all(STDIN_FILENO, "<stdin>", what, max_bytes, 0);
  if (path.empty()) refuse(path, what, "empty file name");
  // O_NONBLOCK: opening a FIFO without a writer returns at once instead of waiting.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) refuse(path, what, std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) refuse(path, what, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) {
    refuse(path, what,
           fmt::format("{}; give a regular file (or - for standard input)", kind_of(st.st_mode)));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    refuse(path, what, fmt::format("{} bytes, {}", st.st_size, too_long(what, max_bytes)));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return read_all(fd, path, what, max_bytes, static_cast<uint64_t>(st.st_size));
}

}  // namespace masep::plan
