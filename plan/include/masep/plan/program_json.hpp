// The Program as JSON: `masep plan --dump` writes it, `masep exec --program` runs it (the
// executor's ranks all read the one Program the launcher compiled), and tools outside C++
// (plots, notebooks) can read it. One document:
//   {"format": "masep-program", "version": 3, "scenario": ..., "first_step", "steps", "layers",
//    "micro_batches",
//    "model": {name, layers, hidden, heads, kv_heads, head_dim, experts, top_k, expert_ffn,
//              shared_experts, activation, dtype, attention, mla: {q_lora_rank, kv_lora_rank,
//              qk_nope_head_dim, qk_rope_head_dim, v_head_dim}, shared_expert_ffn,
//              dense_layers, dense_ffn, vocab, sliding_window, sliding_pattern, precision: {weights, kv_cache, activations,
//              dispatch, combine}},
//    "layout": {separated, attention_ranks, moe_base, moe_ranks, group_size,
//               sequence_parallel, replicas, batch, seed, intra_node_GBps, expert_holders,
//               context_lengths, expert_route?, expert_tensor_parallel?,
//               replica_shapes?: [[first_rank, head_parallel, sequence_parallel]]},
//    "ranks": [{gpu, role, label, experts, replica, sequences, group_index, kv_append,
//               batches: [[first_sequence, sequences, slice_first, slice_tokens, slice_offset]]}],
//    "groups": [{name, ranks}], "collectives": [{kind, group, bytes, ops, matrix}],
//    "exchanges": [{transfers: [[src_op, dst_op, bytes], ...]}],
//    "routing": [{step, layer, micro_batch, tokens_per_expert, first_sequence, token_experts}],
//    "stream_ops": [[compute ids], [comm ids]] per rank,
//    "ops": [{id, rank, stream, kind, role, dtype, name, layer, step, micro_batch, m, n, k, group_m,
//    batch,
//             heads, kv_heads, head_dim, kv_tokens, flops, hbm_bytes, weight_bytes,
//             comm_bytes, peer, match, collective, exchange, deps}]}
// (version 2 added kExchange ops, "exchanges" and the op field "exchange"; version 3 the op
// role, "model", "layout", the ranks' batches and the per-token routing. Issue 15 added, still
// as version 3 and optional when read, the model's attention/mla/dense/precision keys and the op
// "dtype": a Program written before them reads as MHA/GQA, bf16 ops, one format per model; and
// layout.replica_shapes, written only for attention replicas of unequal size.)
// Kinds, roles and streams are written as the strings of to_string()/stream_name(). Every
// field of every op is written (zeros included), so the dump is the whole Program.
#pragma once

#include <istream>
#include <ostream>
#include <string>

#include "masep/plan/program.hpp"

namespace masep::plan {

/// The format version written and read.
inline constexpr int kProgramJsonVersion = 3;
/// Size limit of a Program file read back (bytes): the JSON tree takes ~8x the text, so 1 GiB
/// is ~8 GB of host memory (the paper's 32-step Program is 17 MB).
inline constexpr uint64_t kMaxProgramInputBytes = 1ull << 30;

/// Streams the Program as JSON to `out` (op by op: no document tree of the whole Program is
/// built, so large Programs stream in constant extra memory).
void write_program_json(const Program& p, std::ostream& out);

/// Writes the JSON to `path` atomically: a temporary file beside it, then rename. Throws
/// std::runtime_error naming the path when it cannot be written.
void write_program_json_file(const Program& p, const std::string& path);

/// Reads a Program written by write_program_json (this version only) and checks it
/// (check_program). Throws std::invalid_argument "SOURCE: key.path: what" for a file that is
/// not such a Program, is truncated, has a field of the wrong type or breaks an invariant.
Program read_program_json(std::istream& in, const std::string& source);
/// The same from a regular file (or `-`), at most kMaxProgramInputBytes (plan::read_input_file:
/// devices, FIFOs and larger files are refused with InputError naming the path).
Program read_program_json_file(const std::string& path);

}  // namespace masep::plan
