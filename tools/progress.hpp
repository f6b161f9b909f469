// A progress indicator on stderr for long runs: a redrawn bar when stderr is a terminal,
// otherwise one line per 10% (so logs stay readable).
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

namespace masep::tools {

class Progress {
 public:
  explicit Progress(std::string what) : what_(std::move(what)), tty_(::isatty(2) != 0) {}

  /// Reports `done` of `total`; callers serialise calls.
  void update(int done, int total) {
    if (total <= 0) return;
    if (tty_) {
      constexpr int kWidth = 30;
      const int filled = done * kWidth / total;
      std::fprintf(stderr, "\r%s [%s%s] %d/%d (%d%%)", what_.c_str(),
                   std::string(static_cast<size_t>(filled), '#').c_str(),
                   std::string(static_cast<size_t>(kWidth - filled), '.').c_str(), done, total,
                   done * 100 / total);
      if (done == total) std::fprintf(stderr, "\n");
    } else {
      const int decile = done * 10 / total;
      if (decile > last_decile_) {
        last_decile_ = decile;
        std::fprintf(stderr, "%s: %d/%d (%d%%)\n", what_.c_str(), done, total, done * 100 / total);
      }
    }
    std::fflush(stderr);
  }

  /// Adapter for run_sweep's C-style callback.
  static void callback(void* self, int done, int total) {
    static_cast<Progress*>(self)->update(done, total);
  }

 private:
  std::string what_;
  bool tty_;
  int last_decile_ = 0;
};

}  // namespace masep::tools
