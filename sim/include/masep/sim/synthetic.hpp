// Hand-made Programs for the simulator's tests and benchmarks: a small builder that keeps
// Program's conventions (dense ids, stream lists in creation order, matched send/recv,
// collectives with member ops), and a synthetic MA-separation decode program shaped like
// the paper's scenario (attention ranks -> MoE ranks -> back, per layer and micro-batch).
// Not used by the plan compiler; the real Programs come from plan::compile.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"

namespace masep::sim {

/// Builds a Program op by op. Ops join their rank's stream in the order they are created.
class ProgramBuilder {
 public:
  /// `ranks` plan ranks; rank r runs on GPU gpus[r] (or GPU r when `gpus` is empty).
  explicit ProgramBuilder(int ranks, std::vector<int> gpus = {});

  /// Layer / step / micro-batch stamped on the ops created from now on.
  void set_tags(int layer, int step, int micro_batch);

  /// A compute op on rank's kCompute stream.
  plan::OpId compute(int rank, plan::OpKind kind, std::string name, double flops, int64_t hbm_bytes,
                     std::vector<plan::OpId> deps = {});
  /// Send / recv halves on the kComm stream; pair them with connect().
  plan::OpId send(int rank, int peer, int64_t bytes, std::vector<plan::OpId> deps = {});
  plan::OpId recv(int rank, int peer, int64_t bytes, std::vector<plan::OpId> deps = {});
  void connect(plan::OpId send, plan::OpId recv);

  /// A new, empty grouped point-to-point call (plan::Exchange); returns its index.
  int exchange();
  /// Rank's op of exchange `x` on its kComm stream (comm_bytes grows with its transfers).
  plan::OpId exchange_op(int rank, int x, std::vector<plan::OpId> deps = {});
  /// A transfer of exchange `x` from one of its ops to another; adds `bytes` to both ops'
  /// comm_bytes.
  void transfer(int x, plan::OpId src_op, plan::OpId dst_op, int64_t bytes);

  /// A named group of ranks; returns its index.
  int group(std::string name, std::vector<int32_t> ranks);
  /// One collective over `group`: a member op on each rank's kComm stream (group order),
  /// member i depending on member_deps[i] (if given). Returns the member op ids.
  std::vector<plan::OpId> collective(plan::OpKind kind, int group, int64_t bytes,
                                     std::vector<std::vector<plan::OpId>> member_deps = {},
                                     std::vector<std::vector<int64_t>> matrix = {});

  plan::Op& op(plan::OpId id) { return p_.ops[id]; }
  /// The finished Program (the builder is left empty).
  plan::Program build();

 private:
  plan::OpId add(int rank, uint8_t stream, plan::OpKind kind, std::string name,
                 std::vector<plan::OpId> deps);
  plan::Program p_;
  int layer_ = 0, step_ = 0, mb_ = 0;
};

/// Shape of the synthetic MA-separation program.
struct SyntheticSpec {
  int attention_ranks = 12;  ///< attention GPUs (ranks 0..A-1, GPUs 0..A-1)
  int moe_ranks = 4;         ///< MoE GPUs (ranks A..A+M-1)
  int layers = 4;
  int micro_batches = 2;
  int steps = 1;                            ///< decode steps
  int64_t attn_weight_bytes = 48 << 20;     ///< per attention rank per layer (QKV + out), bytes
  int64_t kv_bytes = 64 << 20;              ///< KV cache read per attention op, bytes
  int64_t expert_weight_bytes = 256 << 20;  ///< per MoE rank per layer (all its experts), bytes
  int64_t token_bytes = 256 << 10;          ///< activations one attention rank sends per MoE rank
};

/// Per step, layer and micro-batch: every attention rank runs qkv, attention, out-proj and a
/// norm, sends tokens to every MoE rank, receives their outputs and combines; every MoE rank
/// receives from every attention rank, runs up-proj, activation and down-proj, and sends
/// back. ~2.1k ops per step for 12:4, 4 layers, 2 micro-batches.
plan::Program synthetic_ma_program(const SyntheticSpec& spec);

}  // namespace masep::sim
