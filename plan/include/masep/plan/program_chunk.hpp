// A ProgramChunk is one window of a Program compiled piece by piece (plan::ProgramStream):
// the ops, collectives, exchanges and stream lists of some consecutive decode steps, with the
// same ids they have in the whole Program. The whole Program is the header (ranks, groups,
// layout; ProgramStream::header) followed by its chunks in order: concatenating the chunks'
// ops, collectives, exchanges, routing samples and per-(rank, stream) lists gives exactly
// plan::compile's Program. A back end consumes the chunks in order and frees each when done
// (the simulator's streaming path), so memory is bounded by a window, not by the run.
//
// Ids are global: ops[i].id == first_op + i; collectives[i] is collective first_collective + i
// (Op::collective), exchanges[i] is exchange first_exchange + i (Op::exchange). An op's deps
// and its stream predecessor may lie in an earlier chunk (never a later one); every member of
// a collective and every op of an exchange lie in the same chunk as the collective or
// exchange. Owned by value.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "masep/plan/program.hpp"

namespace masep::plan {

struct ProgramChunk {
  int32_t first_step = 0;  ///< the decode step of the chunk's first (step, layer) pair
  int32_t steps = 0;       ///< decode steps the chunk's (step, layer) pairs touch
  bool last = false;       ///< no chunk follows
  OpId first_op = 0;
  int32_t first_collective = 0;
  int32_t first_exchange = 0;
  std::vector<Op> ops;
  std::vector<Collective> collectives;
  std::vector<Exchange> exchanges;
  /// stream_ops[r][s]: this chunk's ops of plan rank r's stream s, in execution order (they
  /// follow the rank's stream in the previous chunks).
  std::vector<std::array<std::vector<OpId>, kStreamCount>> stream_ops;
  std::vector<RoutingSample> routing;
};

}  // namespace masep::plan
