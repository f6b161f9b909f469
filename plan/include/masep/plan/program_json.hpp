// The Program as JSON, for `masep plan --dump` and for tools outside C++ that want to read a
// Program (plots, notebooks). One document:
//   {"format": "masep-program", "version": 2, "scenario": ..., "first_step", "steps", "layers",
//    "micro_batches", "ranks": [{gpu, role, label, experts, replica, sequences}],
//    "groups": [{name, ranks}], "collectives": [{kind, group, bytes, ops, matrix}],
//    "exchanges": [{transfers: [[src_op, dst_op, bytes], ...]}],
//    "routing": [{step, layer, micro_batch, tokens_per_expert}],
//    "stream_ops": [[compute ids], [comm ids]] per rank,
//    "ops": [{id, rank, stream, kind, name, layer, step, micro_batch, m, n, k, group_m, batch,
//             heads, kv_heads, head_dim, kv_tokens, flops, hbm_bytes, weight_bytes,
//             comm_bytes, peer, match, collective, exchange, deps}]}
// (version 2 added kExchange ops, "exchanges" and the op field "exchange".)
// Kinds, roles and streams are written as the strings of to_string()/stream_name(). Every
// field of every op is written (zeros included), so the dump is the whole Program.
#pragma once

#include <ostream>
#include <string>

#include "masep/plan/program.hpp"

namespace masep::plan {

/// Streams the Program as JSON to `out` (op by op: no document tree of the whole Program is
/// built, so large Programs stream in constant extra memory).
void write_program_json(const Program& p, std::ostream& out);

/// Writes the JSON to `path` atomically: a temporary file beside it, then rename. Throws
/// std::runtime_error naming the path when it cannot be written.
void write_program_json_file(const Program& p, const std::string& path);

}  // namespace masep::plan
