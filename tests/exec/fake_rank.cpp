// A fake rank process for test_supervisor: speaks the recovery protocol of supervisor.hpp
// without a GPU. FAKE_DIE_RANK=R: rank R is killed by SIGKILL after 50 ms. FAKE_HANG_RANK=R:
// rank R never reports its interruption. Other ranks wait for `dead` (10 s at most), report
// `interrupted 10+rank`, wait for their directive and append it to FAKE_OUT/rank-FIRST.txt
// (FIRST: their rank at start); after `recover` they wait for the next one, after `leave`
// they exit 0. With no failure announced they exit 0 (a normal end).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "masep/exec/supervisor.hpp"

int main() {
  using masep::exec::Directive;
  const int rank = std::atoi(std::getenv("MASEP_EXEC_RANK"));
  const char* die = std::getenv("FAKE_DIE_RANK");
  const char* hang = std::getenv("FAKE_HANG_RANK");
  const std::string out = std::string(std::getenv("FAKE_OUT")) + "/rank-" + std::to_string(rank) + ".txt";
  auto ch = masep::exec::RankChannel::from_env();
  if (!ch) return 3;
  if (die && std::atoi(die) == rank) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    kill(getpid(), SIGKILL);
  }
  int current = rank;
  for (int round = 0; round < 3; ++round) {
    bool dead = false;
    const int polls = die && round == 0 ? 1000 : 20;  // 10 s for the failure, then 0.2 s
    for (int i = 0; i < polls && !dead; ++i) {
      dead = ch->poll_dead();
      if (!dead) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!dead) return 0;  // nothing failed: a normal end
    if (hang && std::atoi(hang) == rank) pause();
    ch->report_interrupted(10 + current);
    const Directive d = ch->await(10);
    std::ofstream(out, std::ios::app) << masep::exec::format_directive(d) << "\n";
    if (d.kind == Directive::kLeave) return 0;
    current = d.new_rank;
  }
  return 0;
}
