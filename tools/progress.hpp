// A progress indicator on stderr for long runs: a redrawn bar when stderr is a terminal,
// otherwise one line per 10% (so logs stay readable), with the time left estimated from the
// rate so far (elapsed since the object was made × undone / done).
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace masep::tools {

class Progress {
 public:
  explicit Progress(std::string what)
      : what_(std::move(what)), tty_(::isatty(2) != 0), start_(std::chrono::steady_clock::now()) {}

  /// Reports `done` of `total`; callers serialise calls.
  /// (64-bit: a streamed run's ops exceed 2^31 / 100.) `done` is clamped to `total` (a
  /// streamed run's total is an estimate until its last window).
  void update(int64_t done, int64_t total) {
    if (total <= 0) return;
    done = std::min(done, total);
    const auto pct = static_cast<int>(done * 100 / total);
    if (tty_) {
      constexpr int64_t kWidth = 30;
      const int64_t filled = done * kWidth / total;
      std::fprintf(stderr, "\r%s [%s%s] %lld/%lld (%d%%)%s   ", what_.c_str(),
                   std::string(static_cast<size_t>(filled), '#').c_str(),
                   std::string(static_cast<size_t>(kWidth - filled), '.').c_str(),
                   static_cast<long long>(done), static_cast<long long>(total), pct,
                   eta(done, total).c_str());
      if (done == total) std::fprintf(stderr, "\n");
    } else {
      const auto decile = static_cast<int>(done * 10 / total);
      if (decile > last_decile_) {
        last_decile_ = decile;
        std::fprintf(stderr, "%s: %lld/%lld (%d%%)%s\n", what_.c_str(),
                     static_cast<long long>(done), static_cast<long long>(total), pct,
                     eta(done, total).c_str());
      }
    }
    std::fflush(stderr);
  }

  /// Adapter for run_sweep's C-style callback.
  static void callback(void* self, int done, int total) {
    static_cast<Progress*>(self)->update(done, total);
  }

 private:
  // ", ETA 1m23s" from the rate so far; empty before any progress and at the end.
  std::string eta(int64_t done, int64_t total) const {
    if (done <= 0 || done >= total) return "";
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const long left = static_cast<long>(
        elapsed * static_cast<double>(total - done) / static_cast<double>(done) + 0.5);
    char buf[48];
    if (left >= 3600) {
      std::snprintf(buf, sizeof buf, ", ETA %ldh%02ldm", left / 3600, left / 60 % 60);
    } else if (left >= 60) {
      std::snprintf(buf, sizeof buf, ", ETA %ldm%02lds", left / 60, left % 60);
    } else {
      std::snprintf(buf, sizeof buf, ", ETA %lds", left);
    }
    return buf;
  }

  std::string what_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  int last_decile_ = 0;
};

}  // namespace masep::tools
