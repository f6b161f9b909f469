#include "masep/plan/output_file.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <ostream>
#include <streambuf>
#include <system_error>

#include "masep/plan/errors.hpp"

namespace masep::plan {
namespace {

namespace fs = std::filesystem;

// A write-only stream buffer over a POSIX descriptor (not owned). Hand-written because the
// standard library has no ostream over a descriptor and the temporary file must be created
// with O_EXCL; the first write error's errno is kept for the message.
class FdBuf : public std::streambuf {
 public:
  explicit FdBuf(int fd) : fd_(fd) { setp(buf_, buf_ + sizeof buf_); }
  int error() const { return error_; }

 protected:
  int_type overflow(int_type ch) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() {
    const char* p = pbase();
    while (p < pptr()) {
      const ssize_t n = ::write(fd_, p, static_cast<size_t>(pptr() - p));
      if (n < 0) {
        if (errno == EINTR) continue;
        error_ = errno;
        return false;
      }
      p += n;
    }
    setp(buf_, buf_ + sizeof buf_);
    return error_ == 0;
  }

  int fd_;
  int error_ = 0;
  char buf_[1 << 16];
};

[[noreturn]] void fail(std::string_view what, const std::string& path, const std::string& why) {
  throw OutputError(fmt::format("cannot write {} '{}': {}", what, path, why));
}

// The descriptor a path names directly ("-", /dev/stdout, /dev/fd/N, ...), or -1.
int named_descriptor(const std::string& p) {
  if (p == "-" || p == "/dev/stdout") return STDOUT_FILENO;
  if (p == "/dev/stderr") return STDERR_FILENO;
  for (const std::string_view prefix :
       {std::string_view("/dev/fd/"), std::string_view("/proc/self/fd/")}) {
    if (p.size() > prefix.size() && p.size() <= prefix.size() + 6 &&
        p.compare(0, prefix.size(), prefix) == 0 &&
        p.find_first_not_of("0123456789", prefix.size()) == std::string::npos) {
      return std::stoi(p.substr(prefix.size()));
    }
  }
  return -1;
}

void write_to_fd(int fd, const std::string& path, std::string_view what,
                 const std::function<void(std::ostream&)>& fill) {
  FdBuf buf(fd);
  std::ostream os(&buf);
  fill(os);
  os.flush();
  if (!os) fail(what, path, std::strerror(buf.error() ? buf.error() : EIO));
}

const char* kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory; give a file name";
  if (S_ISBLK(m))
    return "a block device; masep writes only regular files, character devices and FIFOs";
  if (S_ISSOCK(m)) return "a socket; masep writes only regular files, character devices and FIFOs";
  return "not a regular file, character device or FIFO";
}

}  // namespace

void write_output_file(const std::string& path, std::string_view what,
                       const std::function<void(std::ostream&)>& fill) {
  if (path.empty()) fail(what, path, "empty file name");
  if (const int fd = named_descriptor(path); fd >= 0) {
    // Standard output/error: flush what the process already wrote so the order holds.
    std::cout.flush();
    std::cerr.flush();
    std::fflush(nullptr);
    write_to_fd(fd, path, what, fill);
    return;
  }

  struct stat st {};
  std::string target = path;
  mode_t keep_mode = 0;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
      // Written through in place: a device or a pipe is never replaced by a file.
      const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
      if (fd < 0) fail(what, path, std::strerror(errno));
      try {
        write_to_fd(fd, path, what, fill);
      } catch (...) {
        ::close(fd);
        throw;
      }
      if (::close(fd) != 0) fail(what, path, std::strerror(errno));
      return;
    }
    if (!S_ISREG(st.st_mode)) fail(what, path, kind_of(st.st_mode));
    keep_mode = st.st_mode & 07777;
    // Through a symbolic link: replace the file it points to, keep the link.
    struct stat lst {};
    if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
      std::error_code ec;
      const fs::path real = fs::canonical(path, ec);
      if (ec) fail(what, path, ec.message());
      target = real.string();
    }
  } else if (errno == ENOENT) {
    struct stat lst {};
    if (::lstat(path.c_str(), &lst) == 0) fail(what, path, "a symbolic link to nothing");
    const fs::path parent = fs::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty() && !fs::is_directory(parent, ec)) {
      fail(what, path, fmt::format("the folder '{}' does not exist", parent.string()));
    }
  } else {
    fail(what, path, std::strerror(errno));
  }

  // The temporary sits beside the target so rename() stays on one file system; O_EXCL so
  // that it never opens (and truncates) something that is already there.
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0; ++attempt) {
    tmp = fmt::format("{}.tmp.{}.{}", target, static_cast<long>(::getpid()), attempt);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0666);
    if (fd < 0 && (errno != EEXIST || attempt >= 100)) {
      fail(what, path,
           fmt::format("cannot create the temporary file '{}': {}", tmp, std::strerror(errno)));
    }
  }
  try {
    write_to_fd(fd, path, what, fill);
    if (keep_mode != 0 && ::fchmod(fd, keep_mode) != 0) fail(what, path, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail(what, path, std::strerror(e));
  }
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    fail(what, path, std::strerror(e));
  }
}

void write_output_file(const std::string& path, std::string_view what, std::string_view text) {
  write_output_file(path, what, [&](std::ostream& o) {
    o.write(text.data(), static_cast<std::streamsize>(text.size()));
  });
}

fs::path path_inside(const fs::path& dir, std::string_view name, std::string_view what) {
  const fs::path rel{std::string(name)};
  bool ok = !name.empty() && rel.is_relative() && !rel.has_root_name();
  for (const auto& part : rel) {
    if (part == "..") ok = false;
  }
  if (!ok) {
    throw OutputError(
        fmt::format("{} '{}': must be a plain name inside '{}' (no '..', not absolute)", what, name,
                    dir.string()));
  }
  return dir / rel;
}

}  // namespace masep::plan
