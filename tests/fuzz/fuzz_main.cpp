// Built-in mutation fuzzer for masep's readers (no libFuzzer needed; any compiler, and under
// the CI's ASan + UBSan tree it runs sanitized). Usage:
//
//   masep_fuzz READER CORPUS_DIR [--seconds S] [--runs N] [--seed N] [--max-len BYTES]
//                                [--hang-seconds S] [--out DIR]
//
// READER is scenario, calibration, sweep, trace or program. Every file in CORPUS_DIR is a seed; each
// execution mutates one pool entry (bit/byte edits, insert/delete/duplicate ranges, dictionary
// tokens, extreme numbers, splicing two entries) and runs it through the reader
// (fuzz_targets.hpp). Accepted inputs join the pool (up to 512), so mutations reach past the
// first checks. A finding writes the input to OUT/<kind>-<reader>.bin and exits non-zero:
// a crash or abort (signal; under a sanitizer, its death callback), an exception that is not
// a std::exception, or an execution longer than --hang-seconds (default 5). At the end it
// prints executions, rate, accepted/refused, the slowest execution and the peak RSS.
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "fuzz_targets.hpp"

extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

namespace {

using masep::fuzz::Reader;

// The input being executed, for the signal and death handlers (async-signal-safe writes).
const std::string* g_current = nullptr;
char g_crash_path[4096] = {0};
char g_hang_path[4096] = {0};

void save(const char* path) {
  if (g_current == nullptr || path[0] == 0) return;
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  const char* p = g_current->data();
  size_t left = g_current->size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
  ::close(fd);
}

void write_err(const char* a, const char* b) {
  (void)!::write(2, a, std::strlen(a));
  (void)!::write(2, b, std::strlen(b));
  (void)!::write(2, "\n", 1);
}

void on_death() {
  save(g_crash_path);
  write_err("masep_fuzz: crash; input saved to ", g_crash_path);
}

void on_signal(int sig) {
  on_death();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void on_alarm(int) {
  save(g_hang_path);
  write_err("masep_fuzz: hang (execution past --hang-seconds); input saved to ", g_hang_path);
  _exit(3);
}

class Mutator {
 public:
  Mutator(Reader r, uint64_t seed, size_t max_len)
      : rng_(seed), dict_(masep::fuzz::dictionary(r)), max_(max_len) {}

  std::string mutate(const std::vector<std::string>& pool) {
    std::string s = pool[below(pool.size())];
    const int edits = 1 + static_cast<int>(below(4));
    for (int e = 0; e < edits; ++e) edit(s, pool);
    if (s.size() > max_) s.resize(max_);
    return s;
  }

 private:
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(rng_() % n); }

  void edit(std::string& s, const std::vector<std::string>& pool) {
    const size_t at = below(s.size() + 1);
    switch (below(10)) {
      case 0:  // flip a bit
        if (!s.empty()) s[below(s.size())] ^= static_cast<char>(1u << below(8));
        break;
      case 1:  // set a byte
        if (!s.empty()) s[below(s.size())] = static_cast<char>(below(256));
        break;
      case 2:  // insert a byte
        s.insert(at, 1, static_cast<char>(below(256)));
        break;
      case 3:  // delete a range
        if (!s.empty()) s.erase(at, 1 + below(std::min<size_t>(64, s.size())));
        break;
      case 4: {  // duplicate a range
        if (s.empty()) break;
        const size_t from = below(s.size()),
                     len = 1 + below(std::min<size_t>(256, s.size() - from));
        if (s.size() + len <= max_) s.insert(at, s.substr(from, len));
        break;
      }
      case 5:
      case 6:  // insert a dictionary token
        s.insert(at, dict_[below(dict_.size())]);
        break;
      case 7: {  // replace a number with an extreme one
        static const char* kNums[] = {"0",
                                      "-1",
                                      "1e300",
                                      "1e-300",
                                      "-1e300",
                                      "nan",
                                      ".inf",
                                      "2147483647",
                                      "2147483648",
                                      "4294967296",
                                      "9223372036854775807",
                                      "99999999999999999999",
                                      "1.5",
                                      "0.000001",
                                      "65537",
                                      "1000000",
                                      "16777217"};
        const size_t d = s.find_first_of("0123456789", at);
        if (d == std::string::npos) break;
        size_t end = d;
        while (end < s.size() &&
               (std::isdigit(static_cast<unsigned char>(s[end])) || s[end] == '.'))
          ++end;
        s.replace(d, end - d, kNums[below(std::size(kNums))]);
        break;
      }
      case 8: {  // splice with another pool entry
        const std::string& o = pool[below(pool.size())];
        if (o.empty()) break;
        const size_t from = below(o.size());
        s = s.substr(0, at) + o.substr(from, below(o.size() - from + 1));
        break;
      }
      default: {  // swap two lines
        std::vector<std::string> lines;
        std::istringstream in(s);
        for (std::string l; std::getline(in, l);) lines.push_back(l);
        if (lines.size() < 2) break;
        std::swap(lines[below(lines.size())], lines[below(lines.size())]);
        s.clear();
        for (const auto& l : lines) s += l + "\n";
      }
    }
  }

  std::mt19937_64 rng_;
  std::span<const std::string_view> dict_;
  size_t max_;
};

int usage() {
  std::fprintf(stderr,
               "usage: masep_fuzz READER CORPUS_DIR [--seconds S] [--runs N] [--seed N] "
               "[--max-len BYTES] [--hang-seconds S] [--out DIR]\n"
               "READER: scenario, calibration, sweep, trace, program\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  // Nothing a fuzzed input names may wait on the terminal.
  if (std::freopen("/dev/null", "r", stdin) == nullptr) return 2;
  const auto reader = masep::fuzz::reader_named(argv[1]);
  if (!reader) return usage();
  const std::filesystem::path corpus = argv[2];
  double seconds = 2;
  long long runs = -1;
  uint64_t seed = 1;
  size_t max_len = 64 * 1024;
  unsigned hang_s = 5;
  std::string out = ".";
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--seconds")
      seconds = std::atof(v.c_str());
    else if (k == "--runs")
      runs = std::atoll(v.c_str());
    else if (k == "--seed")
      seed = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--max-len")
      max_len = std::strtoull(v.c_str(), nullptr, 10);
    else if (k == "--hang-seconds")
      hang_s = static_cast<unsigned>(std::atoi(v.c_str()));
    else if (k == "--out")
      out = v;
    else
      return usage();
  }
  std::vector<std::string> pool;
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(corpus, ec)) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    pool.push_back(ss.str());
  }
  if (pool.empty()) {
    std::fprintf(stderr, "masep_fuzz: no seeds in %s\n", corpus.c_str());
    return 2;
  }
  const char* name = masep::fuzz::name_of(*reader);
  std::snprintf(g_crash_path, sizeof g_crash_path, "%s/crash-%s.bin", out.c_str(), name);
  std::snprintf(g_hang_path, sizeof g_hang_path, "%s/hang-%s.bin", out.c_str(), name);
  if (__sanitizer_set_death_callback != nullptr) {
    __sanitizer_set_death_callback(on_death);
  } else {
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) std::signal(sig, on_signal);
  }
  std::signal(SIGALRM, on_alarm);

  // Seeds first, unmutated: each must run (accepted or refused) without a finding.
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  long long execs = 0, accepted = 0;
  double slowest_ms = 0;
  std::string current;
  g_current = &current;
  auto exec = [&](std::string input) {
    current = std::move(input);
    const auto t0 = Clock::now();
    alarm(hang_s);
    bool ok = false;
    try {
      ok = masep::fuzz::run_one(*reader, current);
    } catch (...) {
      alarm(0);
      save(g_crash_path);
      std::fprintf(stderr,
                   "masep_fuzz: %s: an exception that is not a std::exception; input in %s\n", name,
                   g_crash_path);
      std::exit(4);
    }
    alarm(0);
    slowest_ms =
        std::max(slowest_ms, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    ++execs;
    accepted += ok;
    return ok;
  };
  for (const auto& s : std::vector<std::string>(pool)) exec(s);
  Mutator m(*reader, seed, max_len);
  const size_t seeds = pool.size();
  while (true) {
    if (runs >= 0 ? execs >= runs
                  : std::chrono::duration<double>(Clock::now() - start).count() >= seconds) {
      break;
    }
    std::string in = m.mutate(pool);
    if (exec(in) && pool.size() < 512) pool.push_back(current);
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "masep_fuzz %s: %lld executions in %.1f s (%.0f/s), %lld accepted, %lld refused, "
      "pool %zu (%zu seeds), slowest %.1f ms, peak RSS %.0f MB, 0 crashes, 0 hangs\n",
      name, execs, elapsed, execs / std::max(elapsed, 1e-9), accepted, execs - accepted,
      pool.size(), seeds, slowest_ms, ru.ru_maxrss / 1024.0);
  return 0;
}
