// Sweep shards and point records (tools/sweep_shard.hpp): which shard the flag or the
// launcher's environment gives, exact round trips of a record, and records refused when they
// belong to another sweep or point.
#include "sweep_shard.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

namespace masep::tools {
namespace {

std::map<std::string, std::string> g_env;
const char* fake_env(const char* name) {
  auto it = g_env.find(name);
  return it == g_env.end() ? nullptr : it->second.c_str();
}

TEST(SweepShard, FlagAndEnvironment) {
  g_env.clear();
  ShardSpec s = parse_shard("2/5", fake_env);
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 5);
  EXPECT_TRUE(s.owns(7));
  EXPECT_FALSE(s.owns(8));
  s = parse_shard("", fake_env);  // nothing set: the whole sweep
  EXPECT_EQ(s.count, 1);
  EXPECT_TRUE(s.owns(123));
  for (const char* bad : {"5/5", "-1/2", "1/0", "a/2", "1/", "1", "1/2/3", " 1/2"}) {
    EXPECT_THROW(parse_shard(bad, fake_env), std::invalid_argument) << bad;
  }
  // A Slurm job array --array=4-7: task ids 4..7, shard = id - min.
  g_env = {{"SLURM_ARRAY_TASK_ID", "6"}, {"SLURM_ARRAY_TASK_COUNT", "4"},
           {"SLURM_ARRAY_TASK_MIN", "4"}};
  s = parse_shard("auto", fake_env);
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 4);
  g_env.erase("SLURM_ARRAY_TASK_COUNT");
  EXPECT_THROW(parse_shard("", fake_env), std::invalid_argument);
  // MPI launchers.
  g_env = {{"PMI_RANK", "1"}, {"PMI_SIZE", "3"}};
  s = parse_shard("", fake_env);
  EXPECT_EQ(s.index, 1);
  EXPECT_EQ(s.count, 3);
  g_env = {{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "2"}};
  EXPECT_THROW(parse_shard("", fake_env), std::invalid_argument);
  // The flag wins over the environment.
  g_env = {{"PMI_RANK", "1"}, {"PMI_SIZE", "3"}};
  EXPECT_EQ(parse_shard("0/2", fake_env).count, 2);
  g_env.clear();
}

TEST(SweepShard, RecordsRoundTripExactlyAndRefuseOthers) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("masep_shard_" + std::to_string(::getpid())))
                              .string();
  PointResult r;
  r.ok = true;
  r.plan_kind = "ma_separation";
  r.gpus = 16;
  r.attention_gpus = 12;
  r.moe_gpus = 4;
  r.batch = 24;
  r.events = 123456789012ULL;
  r.metrics.tpot_mean_ms = 0.1 + 0.2;  // not a short decimal: must round-trip bit for bit
  r.metrics.tpot_p50_ms = 1.0 / 3.0;
  r.metrics.tpot_p99_ms = 5.994712345678901;
  r.metrics.tokens_per_s = 4003.6666666666665;
  r.metrics.mean_utilisation = 0.7;
  r.metrics.attention_idle_ns = 11;
  r.metrics.moe_idle_ns = 12;
  r.metrics.exposed_comm_ns = 13;
  r.metrics.makespan_ns = 14;
  r.metrics.steps = 2;
  r.metrics.batch = 24;
  write_point_record(dir, 7, "k1", r);
  const auto back = read_point_record(dir, 7, "k1");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->metrics.tpot_mean_ms, r.metrics.tpot_mean_ms);
  EXPECT_EQ(back->metrics.tpot_p50_ms, r.metrics.tpot_p50_ms);
  EXPECT_EQ(back->metrics.tpot_p99_ms, r.metrics.tpot_p99_ms);
  EXPECT_EQ(back->metrics.tokens_per_s, r.metrics.tokens_per_s);
  EXPECT_EQ(back->events, r.events);
  EXPECT_EQ(back->plan_kind, r.plan_kind);
  EXPECT_EQ(back->metrics.makespan_ns, 14);
  // An error point keeps its text.
  PointResult e;
  e.error = "infeasible: \"quoted\", with a comma";
  write_point_record(dir, 8, "k1", e);
  EXPECT_EQ(read_point_record(dir, 8, "k1")->error, e.error);
  EXPECT_FALSE(read_point_record(dir, 9, "k1").has_value());  // none yet
  EXPECT_THROW(read_point_record(dir, 7, "k2"), std::runtime_error);  // another sweep
  std::filesystem::copy_file(point_record_path(dir, 7), point_record_path(dir, 9));
  EXPECT_THROW(read_point_record(dir, 9, "k1"), std::runtime_error);  // point 7's record
  std::ofstream(point_record_path(dir, 10)) << "{not json";
  EXPECT_THROW(read_point_record(dir, 10, "k1"), std::runtime_error);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace masep::tools
