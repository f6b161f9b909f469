// Clock alignment arithmetic and launcher environment handling (CPU only).
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

#include "masep/exec/clock.hpp"
#include "masep/exec/process_env.hpp"

using namespace masep;

namespace {

plan::Program two_rank_program() {
  plan::Program p;
  p.ranks.resize(2);
  p.stream_ops.resize(2);
  for (int i = 0; i < 4; ++i) {
    plan::Op o;
    o.id = i;
    o.rank = i % 2;  // ops 0, 2 on rank 0; 1, 3 on rank 1
    p.ops.push_back(o);
  }
  return p;
}

exec::ProcessEnv detect(const std::map<std::string, std::string>& vars) {
  return exec::detect_process_env([&](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

}  // namespace

TEST(Clock, AlignsRanksOnTheirReferenceTimes) {
  const plan::Program p = two_rank_program();
  exec::RankTimings r0{0, 1'000'000, 999'000, {100, 5'000}, {2'000, 6'000}};
  // Rank 1's reference event completed 700 ns after rank 0's.
  exec::RankTimings r1{1, 1'000'700, 999'400, {50, 3'000}, {1'000, 9'000}};
  const exec::AlignedRun a = exec::align(p, {r0, r1}, "GPU");
  EXPECT_EQ(a.timeline.source, "measured");
  EXPECT_EQ(a.timeline.device, "GPU");
  EXPECT_EQ(a.origin_host_ns, 1'000'100);  // earliest start: rank 0's op 0
  EXPECT_EQ(a.timeline.ops[0].start_ns, 0);
  EXPECT_EQ(a.timeline.ops[0].end_ns, 1'900);
  EXPECT_EQ(a.timeline.ops[1].start_ns, 650);  // 1'000'700 + 50 - 1'000'100
  EXPECT_EQ(a.timeline.ops[1].end_ns, 1'600);
  EXPECT_EQ(a.timeline.ops[2].start_ns, 4'900);
  EXPECT_EQ(a.timeline.ops[3].end_ns, 9'600);
  EXPECT_EQ(a.timeline.makespan_ns, 9'600);
  EXPECT_EQ(a.barrier_spread_ns, 400);
}

TEST(Clock, NotRunOpsStayUnset) {
  const plan::Program p = two_rank_program();
  exec::RankTimings r0{0, 10, 10, {-1, 0}, {-1, 5}};
  exec::RankTimings r1{1, 10, 10, {0, 1}, {1, 2}};
  const exec::AlignedRun a = exec::align(p, {r0, r1}, "x");
  EXPECT_LT(a.timeline.ops[0].start_ns, 0);
  EXPECT_EQ(a.timeline.ops[2].start_ns, 0);
}

TEST(Clock, EncodeDecodeRoundTripAndSizeChecks) {
  exec::RankTimings t{1, 42, 41, {1, 2, 3}, {4, 5, 6}};
  const auto flat = exec::encode(t);
  EXPECT_EQ(flat.size(), exec::encoded_size(3));
  const exec::RankTimings back = exec::decode(1, flat, 3);
  EXPECT_EQ(back.ref_host_ns, 42);
  EXPECT_EQ(back.barrier_exit_host_ns, 41);
  EXPECT_EQ(back.start_rel_ns, t.start_rel_ns);
  EXPECT_EQ(back.end_rel_ns, t.end_rel_ns);
  EXPECT_THROW(exec::decode(1, flat, 2), std::invalid_argument);
  const plan::Program p = two_rank_program();
  EXPECT_THROW(exec::align(p, {t}, "x"), std::invalid_argument);
  EXPECT_THROW(exec::align(p, {t, t}, "x"), std::invalid_argument);  // 3 timings for 2 ops
}

TEST(ProcessEnv, LauncherWhenNothingIsSet) {
  const auto e = detect({});
  EXPECT_EQ(e.mode, exec::LaunchMode::kLauncher);
}

TEST(ProcessEnv, ReadsOpenMpiSlurmPmiAndChild) {
  auto e = detect({{"OMPI_COMM_WORLD_RANK", "3"},
                   {"OMPI_COMM_WORLD_SIZE", "8"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}});
  EXPECT_EQ(e.mode, exec::LaunchMode::kMpi);
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world, 8);
  EXPECT_EQ(e.local_rank, 1);
  e = detect({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "6"}, {"SLURM_LOCALID", "2"}});
  EXPECT_EQ(e.mode, exec::LaunchMode::kSlurm);
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.local_rank, 2);
  e = detect({{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}});
  EXPECT_EQ(e.mode, exec::LaunchMode::kMpi);
  EXPECT_EQ(e.local_rank, 1) << "no local rank given: one host assumed";
  // A self-launched child under mpirun is a child.
  e = detect({{"MASEP_EXEC_RANK", "1"},
              {"MASEP_EXEC_WORLD", "2"},
              {"MASEP_NCCL_ID", "ab"},
              {"OMPI_COMM_WORLD_RANK", "0"},
              {"OMPI_COMM_WORLD_SIZE", "1"}});
  EXPECT_EQ(e.mode, exec::LaunchMode::kChild);
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.nccl_id_hex, "ab");
}

TEST(ProcessEnv, RejectsBadValues) {
  EXPECT_THROW(detect({{"SLURM_PROCID", "x"}, {"SLURM_NTASKS", "2"}}), std::invalid_argument);
  EXPECT_THROW(detect({{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "2"}}), std::invalid_argument);
  EXPECT_THROW(detect({{"OMPI_COMM_WORLD_RANK", "0"}}), std::invalid_argument);
  EXPECT_THROW(detect({{"MASEP_EXEC_RANK", "0"}, {"MASEP_EXEC_WORLD", "2"}}),
               std::invalid_argument);
}

TEST(ProcessEnv, HexRoundTrip) {
  const unsigned char bytes[4] = {0x00, 0x7f, 0xa5, 0xff};
  const std::string hex = exec::hex_encode(bytes, 4);
  EXPECT_EQ(hex, "007fa5ff");
  unsigned char back[4] = {};
  exec::hex_decode(hex, back, 4);
  EXPECT_EQ(std::memcmp(bytes, back, 4), 0);
  EXPECT_THROW(exec::hex_decode("007fa5f", back, 4), std::invalid_argument);
  EXPECT_THROW(exec::hex_decode("007fa5fg", back, 4), std::invalid_argument);
}
