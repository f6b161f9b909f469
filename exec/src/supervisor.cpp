// Supervision of the rank processes and the recovery protocol: see supervisor.hpp.
#include "masep/exec/supervisor.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace masep::exec {

namespace {

std::string join(const std::vector<int>& v) {
  if (v.empty()) return "-";
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

int to_int(const std::string& s, const std::string& line) {
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size()) {
    throw std::invalid_argument(fmt::format("recovery message '{}': '{}' is not a number", line, s));
  }
  return v;
}

std::vector<int> split_ints(const std::string& s, const std::string& line) {
  std::vector<int> out;
  if (s == "-") return out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(to_int(item, line));
  return out;
}

void write_all(int fd, const std::string& text) {
  size_t at = 0;
  while (at < text.size()) {
    const ssize_t n = ::write(fd, text.data() + at, text.size() - at);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // the peer is gone: its death is seen by waitpid / poll
    }
    at += static_cast<size_t>(n);
  }
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    return fmt::format("was killed by signal {} ({})", sig, strsignal(sig));
  }
  return fmt::format("ended with wait status {}", status);
}

}  // namespace

std::string format_directive(const Directive& d) {
  switch (d.kind) {
    case Directive::kDead:
      return "dead " + join(d.ranks);
    case Directive::kLeave:
      return "leave";
    case Directive::kRecover:
      return fmt::format("recover {} {} {} {} {} {} {}", d.new_rank, d.new_world, d.resume_step,
                         d.shrink ? "shrink" : "reinit",
                         d.nccl_id_hex.empty() ? "-" : d.nccl_id_hex, join(d.exclude),
                         d.program_path);
  }
  return "?";
}

Directive parse_directive(const std::string& line) {
  std::stringstream in(line);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  Directive d;
  if (w.size() == 2 && w[0] == "dead") {
    d.kind = Directive::kDead;
    d.ranks = split_ints(w[1], line);
    return d;
  }
  if (w.size() == 1 && w[0] == "leave") {
    d.kind = Directive::kLeave;
    return d;
  }
  if (w.size() == 8 && w[0] == "recover" && (w[4] == "shrink" || w[4] == "reinit")) {
    d.kind = Directive::kRecover;
    d.new_rank = to_int(w[1], line);
    d.new_world = to_int(w[2], line);
    d.resume_step = to_int(w[3], line);
    d.shrink = w[4] == "shrink";
    d.nccl_id_hex = w[5] == "-" ? "" : w[5];
    d.exclude = split_ints(w[6], line);
    d.program_path = w[7];
    if (d.new_world <= 0 || d.new_rank < 0 || d.new_rank >= d.new_world || d.resume_step < 0 ||
        (!d.shrink && d.nccl_id_hex.empty())) {
      throw std::invalid_argument(fmt::format("recovery message '{}': inconsistent fields", line));
    }
    return d;
  }
  throw std::invalid_argument(fmt::format("recovery message '{}' is not dead, recover or leave", line));
}

// ---- the launcher's side ---------------------------------------------------------------------

SupervisorResult supervise(const SupervisorOptions& o) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto after = [](double seconds) {
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                              std::chrono::duration<double>(seconds));
  };
  auto since = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  SupervisorResult res;
  auto event = [&](const std::string& line) {
    res.events.push_back(line);
    if (o.log) {
      std::fprintf(o.log, "masep exec: %s\n", line.c_str());
      std::fflush(o.log);
    }
  };

  struct Child {
    pid_t pid = -1;
    int rank = 0;  // current numbering
    int ctl = -1, st = -1;
    std::string in;
    bool alive = false, reported = false, leaving = false;
    int step = 0;
  };
  const int n = o.ranks;
  std::vector<Child> kids(static_cast<size_t>(n));
  const std::string id0 = o.new_id ? o.new_id() : std::string("00");

  std::vector<std::string> argv_s = o.argv.empty() ? std::vector<std::string>{o.exe} : o.argv;
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  auto kill_started = [&] {
    for (Child& c : kids) {
      if (c.pid > 0) {
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
      }
    }
  };
  for (int r = 0; r < n; ++r) {
    int ctl[2], st[2];
    if (pipe2(ctl, O_CLOEXEC) != 0 || pipe2(st, O_CLOEXEC) != 0) {
      const int e = errno;
      kill_started();
      throw std::runtime_error(fmt::format("pipe for rank {} failed: {}", r, std::strerror(e)));
    }
    const pid_t pid = fork();
    if (pid < 0) {
      const int e = errno;
      kill_started();
      throw std::runtime_error(fmt::format("fork for rank {} failed: {}", r, std::strerror(e)));
    }
    if (pid == 0) {
      // dup() clears close-on-exec: only this child's ends survive the exec.
      const int my_ctl = dup(ctl[0]);
      const int my_st = dup(st[1]);
      setenv("MASEP_EXEC_RANK", std::to_string(r).c_str(), 1);
      setenv("MASEP_EXEC_WORLD", std::to_string(n).c_str(), 1);
      setenv("MASEP_EXEC_LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("MASEP_NCCL_ID", id0.c_str(), 1);
      setenv("MASEP_EXEC_CONTROL_FD", std::to_string(my_ctl).c_str(), 1);
      setenv("MASEP_EXEC_STATUS_FD", std::to_string(my_st).c_str(), 1);
      for (const auto& [key, value] : o.env) setenv(key.c_str(), value.c_str(), 1);
      execv(o.exe.c_str(), argv.data());
      std::fprintf(stderr, "masep exec: rank %d: exec of %s failed: %s\n", r, o.exe.c_str(),
                   std::strerror(errno));
      _exit(127);
    }
    close(ctl[0]);
    close(st[1]);
    Child& c = kids[static_cast<size_t>(r)];
    c.pid = pid;
    c.rank = r;
    c.ctl = ctl[1];
    c.st = st[0];
    c.alive = true;
  }
  // A child that has gone must not kill the launcher through SIGPIPE.
  struct sigaction ign {}, old_pipe {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old_pipe);

  auto close_child = [](Child& c) {
    if (c.ctl >= 0) close(c.ctl);
    if (c.st >= 0) close(c.st);
    c.ctl = c.st = -1;
    c.alive = false;
  };
  auto alive_count = [&] {
    return static_cast<int>(std::count_if(kids.begin(), kids.end(), [](const Child& c) {
      return c.alive;
    }));
  };
  // Stops every child (SIGTERM, SIGKILL after the grace period).
  auto stop_all = [&] {
    for (Child& c : kids) {
      if (c.alive) kill(c.pid, SIGTERM);
    }
    const auto deadline = after(o.grace_s);
    while (alive_count() > 0 && Clock::now() < deadline) {
      int status = 0;
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid > 0) {
        for (Child& c : kids) {
          if (c.alive && c.pid == pid) close_child(c);
        }
        continue;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    for (Child& c : kids) {
      if (!c.alive) continue;
      event(fmt::format("rank {} did not stop after SIGTERM; sending SIGKILL", c.rank));
      kill(c.pid, SIGKILL);
      waitpid(c.pid, nullptr, 0);
      close_child(c);
    }
  };

  bool collecting = false;
  std::vector<int> failed;  // current numbering
  Clock::time_point deadline{};
  int first_failure_status = 0;
  bool unrecovered = false;
  auto notify_dead = [&] {
    Directive d;
    d.kind = Directive::kDead;
    d.ranks = failed;
    const std::string line = format_directive(d) + "\n";
    for (Child& c : kids) {
      if (c.alive && !c.leaving) write_all(c.ctl, line);
    }
  };

  while (alive_count() > 0) {
    // Deaths.
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (Child& c : kids) {
        if (!c.alive || c.pid != pid) continue;
        close_child(c);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) break;
        if (c.leaving) break;  // a leaving rank's end does not matter
        event(fmt::format("rank {} {} at +{:.3f} s", c.rank, describe_status(status), since()));
        if (!o.on_failure) {
          first_failure_status = status;
          unrecovered = true;
          break;
        }
        failed.push_back(c.rank);
        std::sort(failed.begin(), failed.end());
        if (!collecting) {
          collecting = true;
          deadline = after(o.report_timeout_s);
        }
        notify_dead();
        break;
      }
    }
    if (unrecovered) break;
    if (alive_count() == 0) break;

    // Reports.
    std::vector<pollfd> fds;
    std::vector<Child*> who;
    for (Child& c : kids) {
      if (c.alive) {
        fds.push_back({c.st, POLLIN, 0});
        who.push_back(&c);
      }
    }
    if (poll(fds.data(), fds.size(), 20) > 0) {
      for (size_t i = 0; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        char buf[512];
        const ssize_t k = read(fds[i].fd, buf, sizeof buf);
        if (k <= 0) continue;  // end of file: its death comes through waitpid
        Child& c = *who[i];
        c.in.append(buf, static_cast<size_t>(k));
        size_t nl;
        while ((nl = c.in.find('\n')) != std::string::npos) {
          const std::string line = c.in.substr(0, nl);
          c.in.erase(0, nl + 1);
          int step = 0;
          if (std::sscanf(line.c_str(), "interrupted %d", &step) == 1) {
            c.reported = true;
            c.step = step;
          }
        }
      }
    }

    if (!collecting) continue;
    bool all = true;
    for (const Child& c : kids) all = all && (!c.alive || c.leaving || c.reported);
    if (!all && Clock::now() < deadline) continue;
    for (Child& c : kids) {
      if (c.alive && !c.leaving && !c.reported) {
        event(fmt::format("rank {} did not report its interruption within {:.0f} s; killing it",
                          c.rank, o.report_timeout_s));
        kill(c.pid, SIGKILL);
        waitpid(c.pid, nullptr, 0);
        close_child(c);
        failed.push_back(c.rank);
      }
    }
    std::sort(failed.begin(), failed.end());
    int resume = -1;
    for (const Child& c : kids) {
      if (c.alive && !c.leaving) resume = resume < 0 ? c.step : std::min(resume, c.step);
    }
    if (resume < 0) {
      event("no rank survived");
      first_failure_status = 1 << 8;  // exit status 1
      unrecovered = true;
      break;
    }
    WorldChange wc;
    try {
      wc = o.on_failure(failed, resume);
    } catch (const std::exception& e) {
      event(fmt::format("recovery impossible: {}", e.what()));
      first_failure_status = 1 << 8;
      unrecovered = true;
      break;
    }
    Directive d;
    d.kind = Directive::kRecover;
    d.resume_step = wc.resume_step;
    d.shrink = wc.shrink;
    d.program_path = wc.program_path;
    d.new_world = 0;
    for (size_t r = 0; r < wc.new_rank_of_old.size(); ++r) {
      if (wc.new_rank_of_old[r] >= 0) {
        ++d.new_world;
      } else {
        d.exclude.push_back(static_cast<int>(r));
      }
    }
    if (!wc.shrink) d.nccl_id_hex = o.new_id ? o.new_id() : std::string("00");
    for (Child& c : kids) {
      if (!c.alive || c.leaving) continue;
      const int nr = c.rank < static_cast<int>(wc.new_rank_of_old.size())
                         ? wc.new_rank_of_old[static_cast<size_t>(c.rank)]
                         : -1;
      if (nr < 0) {
        Directive leave;
        leave.kind = Directive::kLeave;
        write_all(c.ctl, format_directive(leave) + "\n");
        c.leaving = true;
        continue;
      }
      d.new_rank = nr;
      write_all(c.ctl, format_directive(d) + "\n");
      c.rank = nr;
      c.reported = false;
    }
    ++res.recoveries;
    event(fmt::format("recovery {}: ranks {} failed; {} rank(s) resume at step {} ({}) at +{:.3f} s",
                      res.recoveries, join(failed), d.new_world, wc.resume_step,
                      wc.shrink ? "communicators shrunk" : "communicators re-initialised",
                      since()));
    failed.clear();
    collecting = false;
  }

  if (unrecovered) {
    const int running = alive_count();
    if (running > 0) event(fmt::format("stopping the other {} rank(s)", running));
    stop_all();
    res.exit_code = WIFEXITED(first_failure_status) && WEXITSTATUS(first_failure_status) != 0
                        ? WEXITSTATUS(first_failure_status)
                        : 5;
  }
  sigaction(SIGPIPE, &old_pipe, nullptr);
  return res;
}

// ---- the rank's side -------------------------------------------------------------------------

std::optional<RankChannel> RankChannel::from_env() {
  const char* c = std::getenv("MASEP_EXEC_CONTROL_FD");
  const char* s = std::getenv("MASEP_EXEC_STATUS_FD");
  if (!c || !s || !*c || !*s) return std::nullopt;
  const int cfd = std::atoi(c), sfd = std::atoi(s);
  if (cfd <= 2 || sfd <= 2) return std::nullopt;
  return RankChannel(cfd, sfd);
}

bool RankChannel::read_available(int timeout_ms) {
  pollfd p{control_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return true;
  char buf[512];
  const ssize_t k = read(control_, buf, sizeof buf);
  if (k == 0) {
    eof_ = true;
    return false;
  }
  if (k > 0) buf_.append(buf, static_cast<size_t>(k));
  return true;
}

std::optional<Directive> RankChannel::next_line() {
  const size_t nl = buf_.find('\n');
  if (nl == std::string::npos) return std::nullopt;
  const std::string line = buf_.substr(0, nl);
  buf_.erase(0, nl + 1);
  return parse_directive(line);
}

bool RankChannel::poll_dead(std::vector<int>* dead) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!eof_) read_available(0);
  while (auto d = next_line()) {
    if (d->kind == Directive::kDead) {
      dead_seen_ = true;
      dead_ = d->ranks;
    } else {
      pending_.push_back(*d);
    }
  }
  if (dead && dead_seen_) *dead = dead_;
  const bool seen = dead_seen_;
  dead_seen_ = false;
  return seen;
}

void RankChannel::report_interrupted(int step) {
  write_all(status_, fmt::format("interrupted {}\n", step));
}

Directive RankChannel::await(double timeout_s) {
  using Clock = std::chrono::steady_clock;
  const auto deadline =
      Clock::now() +
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  std::lock_guard<std::mutex> lk(mu_);
  for (;;) {
    while (auto d = next_line()) {
      if (d->kind != Directive::kDead) pending_.push_back(*d);
    }
    if (!pending_.empty()) {
      Directive d = pending_.front();
      pending_.erase(pending_.begin());
      return d;
    }
    if (eof_) throw std::runtime_error("the launcher closed the control pipe");
    if (Clock::now() >= deadline) {
      throw std::runtime_error(
          fmt::format("no recovery directive from the launcher within {:.0f} s", timeout_s));
    }
    read_available(50);
  }
}

}  // namespace masep::exec
