// The launcher's supervision and recovery protocol (issue 18), with fake rank processes
// (fake_rank.cpp) instead of GPUs: child death -> survivors notified -> their reports ->
// the recovery callback -> new world directives; a survivor that never reports is killed;
// without a callback everyone is stopped. Plus the protocol's message format.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "masep/exec/supervisor.hpp"

namespace masep::exec {
namespace {

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "masep-sup-XXXXXX").string();
    path = mkdtemp(t.data());
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

SupervisorOptions fake(int ranks, const TempDir& dir, std::vector<std::pair<std::string, std::string>> env) {
  SupervisorOptions o;
  o.ranks = ranks;
  o.exe = FAKE_RANK_BIN;
  o.argv = {"fake_rank"};
  env.emplace_back("FAKE_OUT", dir.path.string());
  o.env = env;
  int ids = 0;
  o.new_id = [ids]() mutable { return "id" + std::to_string(ids++); };
  o.report_timeout_s = 1.5;
  o.grace_s = 1;
  o.log = nullptr;
  return o;
}

TEST(Directive, FormatAndParseRoundTrip) {
  Directive d;
  d.kind = Directive::kRecover;
  d.new_rank = 1;
  d.new_world = 3;
  d.resume_step = 7;
  d.shrink = true;
  d.exclude = {2, 5};
  d.program_path = "/tmp/p.json";
  const std::string line = format_directive(d);
  EXPECT_EQ(line, "recover 1 3 7 shrink - 2,5 /tmp/p.json");
  const Directive back = parse_directive(line);
  EXPECT_EQ(back.kind, Directive::kRecover);
  EXPECT_EQ(back.exclude, (std::vector<int>{2, 5}));
  EXPECT_EQ(back.program_path, "/tmp/p.json");
  EXPECT_EQ(parse_directive("dead 3,4").ranks, (std::vector<int>{3, 4}));
  EXPECT_EQ(parse_directive("leave").kind, Directive::kLeave);
  EXPECT_THROW(parse_directive("recover 3 3 0 shrink - - p"), std::invalid_argument);  // rank 3 of 3
  EXPECT_THROW(parse_directive("recover 0 2 0 reinit - - p"), std::invalid_argument);  // no id
  EXPECT_THROW(parse_directive("dead x"), std::invalid_argument);
  EXPECT_THROW(parse_directive("resume"), std::invalid_argument);
}

// The rank's end: `dead` is seen once by poll_dead, a directive read on the way is kept for
// await, await skips `dead`, times out, and reports a closed pipe.
TEST(RankChannel, PollAwaitTimeoutAndClosedPipe) {
  int ctl[2], st[2];
  ASSERT_EQ(pipe(ctl), 0);
  ASSERT_EQ(pipe(st), 0);
  RankChannel ch(ctl[0], st[1]);
  EXPECT_FALSE(ch.poll_dead());
  const std::string lines = "dead 2\nleave\n";
  ASSERT_EQ(write(ctl[1], lines.data(), lines.size()), static_cast<ssize_t>(lines.size()));
  std::vector<int> dead;
  EXPECT_TRUE(ch.poll_dead(&dead));
  EXPECT_EQ(dead, (std::vector<int>{2}));
  EXPECT_FALSE(ch.poll_dead());  // seen once
  EXPECT_EQ(ch.await(1).kind, Directive::kLeave);
  const std::string more = "dead 1\nrecover 0 1 3 reinit ab - p.json\n";
  ASSERT_EQ(write(ctl[1], more.data(), more.size()), static_cast<ssize_t>(more.size()));
  const Directive d = ch.await(1);
  EXPECT_EQ(d.kind, Directive::kRecover);
  EXPECT_EQ(d.nccl_id_hex, "ab");
  EXPECT_THROW(ch.await(0.1), std::runtime_error);  // nothing more: timeout
  ch.report_interrupted(7);
  char buf[32] = {};
  ASSERT_GT(read(st[0], buf, sizeof buf - 1), 0);
  EXPECT_STREQ(buf, "interrupted 7\n");
  close(ctl[1]);
  EXPECT_THROW(ch.await(1), std::runtime_error);  // the launcher is gone
  close(ctl[0]);
  close(st[0]);
  close(st[1]);
}

TEST(Supervisor, NormalEndReturnsZero) {
  TempDir dir;
  const SupervisorResult r = supervise(fake(2, dir, {{"FAKE_NONE", "1"}}));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.recoveries, 0);
  EXPECT_TRUE(r.events.empty());
}

TEST(Supervisor, DeadRankSurvivorsReportAndGetTheNewWorld) {
  TempDir dir;
  SupervisorOptions o = fake(4, dir, {{"FAKE_DIE_RANK", "1"}});
  std::vector<int> seen_failed;
  int seen_step = -1;
  o.on_failure = [&](const std::vector<int>& failed, int step) {
    seen_failed = failed;
    seen_step = step;
    WorldChange wc;
    wc.new_rank_of_old = {0, -1, 1, -1};  // rank 3 leaves (e.g. its replica is lost)
    wc.shrink = true;
    wc.program_path = "/tmp/next.json";
    wc.resume_step = step;
    return wc;
  };
  const SupervisorResult r = supervise(o);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.recoveries, 1);
  EXPECT_EQ(seen_failed, (std::vector<int>{1}));
  EXPECT_EQ(seen_step, 10);  // min over survivors' reports (10 + rank)
  EXPECT_EQ(slurp(dir.path / "rank-0.txt"), "recover 0 2 10 shrink - 1,3 /tmp/next.json\n");
  EXPECT_EQ(slurp(dir.path / "rank-2.txt"), "recover 1 2 10 shrink - 1,3 /tmp/next.json\n");
  EXPECT_EQ(slurp(dir.path / "rank-3.txt"), "leave\n");
  EXPECT_FALSE(std::filesystem::exists(dir.path / "rank-1.txt"));
  ASSERT_FALSE(r.events.empty());
  EXPECT_NE(r.events[0].find("rank 1 was killed by signal 9"), std::string::npos) << r.events[0];
}

TEST(Supervisor, ReinitGetsAFreshIdAndSilentSurvivorsAreKilled) {
  TempDir dir;
  SupervisorOptions o = fake(3, dir, {{"FAKE_DIE_RANK", "0"}, {"FAKE_HANG_RANK", "2"}});
  std::vector<int> seen_failed;
  o.on_failure = [&](const std::vector<int>& failed, int step) {
    seen_failed = failed;
    WorldChange wc;
    wc.new_rank_of_old = {-1, 0, -1};
    wc.shrink = false;
    wc.program_path = "p.json";
    wc.resume_step = step;
    return wc;
  };
  const SupervisorResult r = supervise(o);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(seen_failed, (std::vector<int>{0, 2}));  // rank 2 never reported: killed, failed
  EXPECT_EQ(slurp(dir.path / "rank-1.txt"), "recover 0 1 11 reinit id1 0,2 p.json\n");
}

TEST(Supervisor, WithoutRecoveryOrWhenItIsImpossibleEveryoneStops) {
  TempDir dir;
  const SupervisorResult a = supervise(fake(3, dir, {{"FAKE_DIE_RANK", "2"}}));
  EXPECT_NE(a.exit_code, 0);
  EXPECT_EQ(a.recoveries, 0);
  SupervisorOptions o = fake(3, dir, {{"FAKE_DIE_RANK", "2"}});
  o.on_failure = [](const std::vector<int>&, int) -> WorldChange {
    throw std::invalid_argument("experts 1,5 lose every copy");
  };
  const SupervisorResult b = supervise(o);
  EXPECT_NE(b.exit_code, 0);
  bool said = false;
  for (const auto& e : b.events) said = said || e.find("experts 1,5 lose every copy") != std::string::npos;
  EXPECT_TRUE(said);
}

}  // namespace
}  // namespace masep::exec
