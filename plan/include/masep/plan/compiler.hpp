// The plan compiler: Scenario → Program. Deterministic: the same scenario (and seed) gives
// the same Program, op for op. Routing is sampled here, once (routing.hpp), so every back end
// sees the same expert loads; memory is checked first (check_memory: InfeasiblePlan).
//
// Plan ranks. MA separation: attention ranks 0..A-1 (replica r owns ranks r·t .. r·t+t-1,
// t = head_parallel·sequence_parallel, index within the replica = h·sp + s; replicas of
// unequal size, plan.attention.replicas listed: each its own t, one after another, as
// ProgramLayout::replica_shapes records), then the MoE
// ranks (MoE-local index g = rank − A). Co-located: G ranks in tensor-parallel groups of
// tensor_parallel, every rank also holds experts (Role::kColocated). RankInfo::gpu is
// plan.gpu_ranks[i], or i when that list is empty.
//
// Sequences: the batch is cut into replicas × micro_batches contiguous chunks, near-equal or
// by the replicas' batch shares (batch_split.hpp); chunk (replica r, micro-batch mb) is number
// mb·replicas + r. A sequence's KV length at step
// s is its sampled initial context + s + 1 (the token appended this step).
//
// One layer of MA separation, per micro-batch, on an attention replica group of t GPUs
// (T = the chunk's tokens; collectives are skipped when their group has one GPU):
//   all_gather(T·hidden) of the previous layer's output slices (at layer 0 of a step > 0:
//     the previous step's last-layer output, which feeds the LM head and sampling, not
//     modelled; at step 0 layer 0 there is none)
//   rmsnorm → qkv GEMM (T × (heads/hp + 2·kv_heads/hp)·head_dim × hidden) → rope →
//   attention (T queries, heads/hp heads, KV shard s of each sequence; +KV append)
//   [sp>1] all_reduce of the partial outputs over the sp peers of a head group
//   out_proj GEMM (sp>1: the sp peers split the T tokens) → reduce_scatter(T·hidden): each
//     group GPU now owns a near-equal slice of u tokens
//   add_norm (residual + rmsnorm) → router GEMM (u × experts × hidden) → router (top-k) →
//   permute → "dispatch" exchange to every MoE GPU that receives rows: one row of hidden per
//     (token, expert) pair (two experts of a token on one GPU = two rows), plus one row per
//     token for the shared experts, if any, to MoE GPU (sequence index mod MoE GPUs), which
//     runs all shared experts for it. A replicated expert is served by its replica
//     (attention rank mod replicas).
// on each MoE GPU that receives rows: "dispatch" exchange receiving from every sender →
//   moe_permute →
//   expert_up grouped GEMM (group_m = rows per local expert, zeros included, then the shared
//   experts; only experts with rows read weights) → act → expert_down grouped GEMM →
//   moe_unpermute (also sums a token's shared-expert outputs) → "return" exchange (to each
//   sender the same bytes as its dispatch transfer)
// back on the attention GPU: "return" exchange receiving from its MoE GPUs → combine
//   (weighted sum + residual).
// Dispatch and return are grouped point-to-point calls (OpKind::kExchange, one
// ncclGroupStart/End per rank): per (step, layer, micro-batch) one Exchange holds every
// attention→MoE transfer of the dispatch, with one kExchange op on each participating rank
// (an attention rank's op sends to all its MoE GPUs; an MoE rank's op receives from all its
// senders); likewise one Exchange for the return. Ops with no transfer are not emitted.
// The co-located baseline runs the same layer with hp = tensor_parallel and sp = 1; its MoE
// part runs on the same GPUs; rows for the GPU's own experts (and all shared-expert rows)
// stay local (no transfer to itself). Its token exchange among the EP ranks is one
// kExchange op per rank per direction, sending and receiving in the same group call.
//
// Expert tensor parallelism (EP × TP; plan.moe / plan.colocated expert_tensor_parallel x > 1,
// scenario.hpp): the MoE GPUs form G / x expert groups of x consecutive MoE-local GPUs and
// experts are placed on groups. A token's row for expert e is dispatched to *every* GPU of the
// group serving e (x transfers of the same row; a shared-expert row likewise to every GPU of
// its group): as in gpt-fast's and TensorRT-LLM's Mixtral, where each TP rank has every token
// of the layer when its expert slice runs, here by the dispatch instead of an all-reduce. GPU
// j of a group runs expert_up on its in/x gate/up columns, act on ffn/x, expert_down with
// k = ffn/x (FLOPs and weight bytes / x), moe_unpermute writes its partial rows by sender;
// then, at finish time (before the return), one "expert_reduce" reduce-scatter per group with
// rows (OpRole::kExpertReduce, R·hidden in the activations' format) sums the partials, GPU j
// keeping rows part(R, x, j) from part_begin(R, x, j) (rows ordered by sender rank), and the
// return sends each sender its share of those rows from whichever GPU holds it (co-located:
// a GPU's own share stays, and its combine also waits for its expert_reduce). gpt-fast's
// Mixtral on t GPUs is the co-located plan gpus = tensor_parallel = expert_tensor_parallel = t.
//
// Order and ping-pong: see compiler.cpp. Per rank the compute stream runs, for every
// (step, layer, micro-batch) f in order, combine(f − m) then the attention part of f, so
// attention works on one micro-batch while the MoE GPUs work on another; step s+1 follows
// step s's last layer (the all_gather above depends on its combine). The result passes
// check_program (deadlock-free rendezvous order).
//
// Model variants (issue 15; per-op costs in docs/simulator-model.md): an MLA model replaces
// qkv → rope → attention by mla_down → mla_norm → mla_q_up → mla_absorb_k → mla_rope →
// mla_attention and puts mla_absorb_v before out_proj; a dense layer (l < dense_layers) runs
// add_norm → dense_up → dense_act → dense_down on each attention rank's slice after the
// reduce-scatter, with no router, dispatch, experts, return or combine (its dense_down is the
// layer output the next layer gathers); shared experts of their own width get their own
// grouped GEMMs after the routed ones; a sliding-window layer's attention attends to
// min(length, window) tokens per sequence. Every tensor's bytes follow its precision class
// (models::vector_bytes / matrix_bytes) and every op carries the format it computes in
// (Op::dtype).
//
// FLOPs: the ops of one step sum exactly to model.step_flops(batch, Σ KV lengths, Σ windowed
// KV lengths) for sp = 1 and head_parallel dividing kv_heads (more head-parallel GPUs than KV
// heads keep one KV head each: redundant QKV work; an MLA group repeats mla_down and
// mla_norm on every head-parallel GPU).
#pragma once

#include <memory>

#include "masep/plan/program.hpp"
#include "masep/plan/program_chunk.hpp"
#include "masep/plan/scenario.hpp"

namespace masep::plan {

/// A window of decode steps to compile (the simulator compiles long runs window by window).
/// Op ids are dense within one Program; routing and context samples depend only on the
/// absolute step, so a window reproduces the same steps of a full compile.
struct ExpertPlacement;  // balancer.hpp

struct CompileOptions {
  int first_step = 0;   ///< first decode step to compile
  int steps = -1;       ///< steps to compile; -1 = from first_step to the workload's decode_steps
  /// Record every token's experts in Program::routing (RoutingSample::token_experts); off by
  /// default (large runs would hold batch·top_k ints per layer and step).
  bool record_token_routing = false;
  /// Sample routing per sequence (RoutingSampler::sample_sequences) instead of per (micro-
  /// batch, replica) chunk, so that any plan of the scenario routes each token alike (the
  /// executor's --verify compares two plans).
  bool per_sequence_routing = false;
  /// Use this expert placement (and its routes) for every compiled step instead of the one
  /// plan.balance chooses, and do not re-place (the executor's re-lowering after its own
  /// balancing: exec/rebalance.hpp). Not owned; must outlive the call. Null = plan.balance.
  const ExpertPlacement* placement = nullptr;
};

/// Compiles a validated scenario. Throws InfeasiblePlan for plans that cannot run.
Program compile(const Scenario& s, const CompileOptions& opts = {});

/// The same compilation, handed out a window of decode steps at a time (program_chunk.hpp):
/// the header (everything of the Program but its ops, collectives, exchanges, stream lists and
/// routing) at once, then chunks in order. The chunks hold exactly the ops of compile(s, opts)
/// with the same ids, in the same order (a chunk of steps [a, b) holds what the compiler emits
/// while working through those steps: the return exchange and combine of step a−1's last
/// layer open it, and the last chunk also holds those of the final step; with next_layers, a
/// chunk of layers [a, b) opens with the returns and combines of layer a−1). Checks what compile
/// checks, in its constructor. Owns its compiler state; not copyable.
class ProgramStream {
 public:
  ProgramStream(const Scenario& s, const CompileOptions& opts = {});
  ~ProgramStream();
  ProgramStream(const ProgramStream&) = delete;
  ProgramStream& operator=(const ProgramStream&) = delete;

  /// The Program without ops (ranks, groups, layout, model, steps, layers, micro-batches;
  /// stream_ops has one empty entry per rank).
  const Program& header() const;
  /// Compiles the next `steps` (>= 1) decode steps into `out` (replacing its contents);
  /// false when the previous chunk was the last. A run of zero steps yields one empty last
  /// chunk.
  bool next(int steps, ProgramChunk& out);
  /// The same with a window of `layers` (>= 1) decoder layers, which may end inside a step (a
  /// smaller window for models with many ops per step): the next `layers` (step, layer)
  /// pairs in compile order.
  bool next_layers(int layers, ProgramChunk& out);
  /// Decode steps not yet wholly compiled, and (step, layer) pairs not yet compiled.
  int steps_left() const;
  int64_t layers_left() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace masep::plan
