// Clock alignment: turning every rank's CUDA-event times into one Timeline (pure CPU).
//
// Method (one host). All ranks leave a barrier together (a tiny ncclAllReduce on the world
// communicator, then a stream synchronisation); each rank then records a reference event on
// its compute stream, waits for it, and reads CLOCK_MONOTONIC: ref_host_ns. Every op's start
// and end events are read relative to that reference event (cudaEventElapsedTime), so the
// op's time on the common base is ref_host_ns + relative time. On one host CLOCK_MONOTONIC
// is one clock for all processes, so the residual error is the lag between a reference
// event's completion and its host read (a few µs, bounded by the event-synchronise wake-up);
// the barrier's exit spread (barrier_exit_host_ns over ranks) is reported beside it as the
// measured upper bound. Across hosts, see docs/executor.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"
#include "masep/plan/timeline.hpp"

namespace masep::exec {

/// One rank's raw timings.
struct RankTimings {
  int32_t rank = 0;
  int64_t ref_host_ns = 0;           ///< CLOCK_MONOTONIC when the reference event completed
  int64_t barrier_exit_host_ns = 0;  ///< CLOCK_MONOTONIC right after the barrier
  /// Per op of the rank (its op ids ascending, as in the Program): start and end relative to
  /// the reference event, ns. start < 0 with end < 0 = not run.
  std::vector<int64_t> start_rel_ns, end_rel_ns;
};

/// Flat int64 form sent to rank 0: [ref, barrier, n, start0, end0, start1, end1, ...].
std::vector<int64_t> encode(const RankTimings& t);
/// Inverse of encode; throws std::invalid_argument if the size does not match `ops`.
RankTimings decode(int32_t rank, const std::vector<int64_t>& flat, size_t ops);
/// Number of int64 values encode() gives for a rank with `ops` ops.
inline size_t encoded_size(size_t ops) { return 3 + 2 * ops; }

struct AlignedRun {
  plan::Timeline timeline;
  int64_t origin_host_ns = 0;     ///< host time of timeline 0 (the earliest op start)
  int64_t barrier_spread_ns = 0;  ///< max − min barrier exit over ranks
};

/// Builds the measured Timeline of `p` from every rank's timings (index = plan rank): op
/// start = ref_host_ns + start_rel_ns, shifted so the earliest start is 0. Throws
/// std::invalid_argument when a rank's timings do not cover its ops.
AlignedRun align(const plan::Program& p, const std::vector<RankTimings>& ranks,
                 const std::string& device);

/// The op ids of plan rank `rank`, ascending (the order RankTimings uses).
std::vector<plan::OpId> rank_ops(const plan::Program& p, int rank);

}  // namespace masep::exec
