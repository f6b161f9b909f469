// Supervision of a self-launched run's rank processes, and the messages of its recovery
// protocol (issue 18). Plain POSIX and C++, no CUDA: unit-tested with a fake rank process in
// every tree, the sanitizer one included.
//
// The launcher (`masep exec` on one host) starts one child per plan rank with two pipes each:
// a control pipe (launcher -> rank) and a status pipe (rank -> launcher), one text line per
// message. When a child dies (the launcher's waitpid sees it at once):
//   1. without a recovery callback: the others get SIGTERM, then SIGKILL (the old behaviour);
//   2. with one: every survivor gets `dead R,...`; its watchdog interrupts its run (stops its
//      NCCL work), and it answers `interrupted S` (the first decode step it had not finished);
//      a survivor that does not answer within report_timeout_s is killed and counted failed,
//      so the launcher never waits for ever;
//   3. the callback gets the failed ranks and the step to resume (the smallest S) and returns
//      the new world (old rank -> new rank, shrink or re-init, the new Program's file);
//   4. each survivor gets `recover NEW_RANK NEW_WORLD STEP shrink|reinit ID|- EXCLUDED|- PATH`
//      (EXCLUDED: the old ranks that leave the world, for ncclCommShrink; ID: a new NCCL id for
//      a re-init) or `leave` (alive but not in the new plan: it exits 0).
// Failures after a recovery repeat the cycle in the new numbering.
#pragma once

#include <cstdio>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace masep::exec {

/// A launcher -> rank message.
struct Directive {
  enum Kind { kDead, kRecover, kLeave };
  Kind kind = kDead;
  std::vector<int> ranks;  ///< kDead: ranks (current numbering) that died
  // kRecover:
  int new_rank = 0, new_world = 0;
  int resume_step = 0;          ///< first decode step of the new Program
  bool shrink = false;          ///< ncclCommShrink(world, exclude); else re-init with nccl_id_hex
  std::vector<int> exclude;     ///< old ranks not in the new world (failed and leaving)
  std::string nccl_id_hex;      ///< re-init: the new world's NCCL id
  std::string program_path;     ///< the new Program (JSON), written by the launcher
};
/// One line without the newline; parse_directive throws std::invalid_argument on anything
/// else than format_directive writes (naming the line).
std::string format_directive(const Directive& d);
Directive parse_directive(const std::string& line);

/// What the launcher's recovery callback decides (see rank_recovery.hpp for the plan side).
struct WorldChange {
  std::vector<int> new_rank_of_old;  ///< [current rank] -> new rank; -1: failed or leaving
  bool shrink = false;
  std::string program_path;
  int resume_step = 0;
};

struct SupervisorOptions {
  int ranks = 1;
  std::string exe = "/proc/self/exe";
  std::vector<std::string> argv;  ///< argv[0] first
  /// Added to every child's environment (after the supervisor's own variables).
  std::vector<std::pair<std::string, std::string>> env;
  /// A fresh NCCL id in hex: for the first world, and for every re-initialised one.
  std::function<std::string()> new_id;
  /// Recovery: the failed ranks (current numbering, ascending) and the step to resume; throws
  /// to give up (the run then stops, printing the message). Empty: no recovery.
  std::function<WorldChange(const std::vector<int>& failed, int resume_step)> on_failure;
  double report_timeout_s = 30;  ///< how long survivors may take to report their interruption
  double grace_s = 5;            ///< SIGTERM -> SIGKILL when stopping everything
  FILE* log = stderr;
};

/// What happened, for the caller's report.
struct SupervisorResult {
  int exit_code = 0;  ///< 0: every rank of the last world ended successfully
  int recoveries = 0;
  /// One line per event ("rank 3 was killed by signal 9 (Killed) at +1.234 s", ...).
  std::vector<std::string> events;
};

/// Starts the children (environment: MASEP_EXEC_RANK, MASEP_EXEC_WORLD,
/// MASEP_EXEC_LOCAL_RANK = the first rank = GPU index, MASEP_NCCL_ID, MASEP_EXEC_CONTROL_FD,
/// MASEP_EXEC_STATUS_FD, then `env`) and supervises them as above. Throws std::runtime_error
/// when a fork or pipe fails (children already started are killed).
SupervisorResult supervise(const SupervisorOptions& o);

/// A rank's end of the pipes (from MASEP_EXEC_CONTROL_FD / MASEP_EXEC_STATUS_FD). Thread-safe:
/// the watchdog thread polls for `dead` while the main thread may wait for a directive.
class RankChannel {
 public:
  /// From the environment; nullopt when the process was not started by supervise().
  static std::optional<RankChannel> from_env();
  RankChannel(int control_fd, int status_fd) : control_(control_fd), status_(status_fd) {}
  RankChannel(const RankChannel& o) : control_(o.control_), status_(o.status_) {}

  /// Non-blocking: a `dead` directive has arrived (its ranks in *dead when not null). Other
  /// directives read on the way are kept for await().
  bool poll_dead(std::vector<int>* dead = nullptr);
  /// Tells the launcher this rank stopped; `step` is the first step it had not finished.
  void report_interrupted(int step);
  /// Blocks (up to timeout_s) for the next kRecover or kLeave directive (skipping kDead).
  /// Throws std::runtime_error on timeout or when the launcher closed the pipe.
  Directive await(double timeout_s);

 private:
  bool read_available(int timeout_ms);  // appends to buf_; false at end of file
  std::optional<Directive> next_line();

  int control_ = -1, status_ = -1;
  std::mutex mu_;
  std::string buf_;
  std::vector<Directive> pending_;
  bool dead_seen_ = false;
  std::vector<int> dead_;
  bool eof_ = false;
};

}  // namespace masep::exec
