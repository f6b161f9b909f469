// Program → launches for one rank (the executor's CPU lowering, library masep_lower): which
// kernel, cuBLAS or NCCL call each op becomes, on which stream, reading and writing which
// buffer at which offset, and which launch on the other stream it must wait for. It reads
// only the Program (ops with their roles and shapes, Program::model, Program::layout, the
// ranks' batches and experts, the routing): no Scenario, no CUDA types, so it is built and
// unit-tested in every tree, the CUDA-off sanitizer one included; exec/src/rank_runner.cpp
// turns a RankPlan into real calls.
//
// Buffers. Every rank owns one weight arena (bf16, offsets below), one KV-cache arena (bf16),
// an int32 pool of per-op KV lengths (uploaded once) and activation/communication buffers
// (`Buf`), one set per micro-batch so that micro-batches in flight never share memory. Sizes
// are the maxima over the ops that use them, in bytes.
//
// Data flow. Shapes, bytes and expert loads are exactly the Program's: GEMM m/n/k and
// grouped-GEMM group_m from the ops, rows and columns of the other compute ops from their
// m/n (see plan::OpRole), message sizes from comm_bytes, attention batch from the op and KV
// lengths per sequence (ProgramLayout::context_lengths + step + 1 when they sum to the op's
// kv_tokens, else kv_tokens spread evenly: sequence-parallel shards). When the Program
// carries its per-token routing (RoutingSample::token_experts; no shared experts), the token
// contents follow the model ("real data flow"): the router's top-k ids are replaced by the
// Program's (kForceRoute data, weights = the gate's softmax renormalised over the forced
// experts), the permute orders rows by destination MoE GPU then local expert ("slots"), each
// dispatch transfer carries exactly the rows of its destination, the MoE side regroups the
// received rows by local expert (kGatherRows with a host-built row map) and sends each row
// back to the place it came from (kScatterRows), and combine sums them into the residual.
// Otherwise (no token routing, or shared experts) the MoE side regroups with a plain copy and
// the numbers are not the model's (timing only).
//
// Op → launch mapping, by plan::OpRole (never by name; a role on a kind it is not compiled as,
// or without the shape it needs, throws std::invalid_argument):
//   kQkv, kOutProj, kRouterGemm → kGemm: C[m,n] = A[m,k] · W[n,k]^T (cublasGemmEx, bf16)
//   kExpertUp, kExpertDown      → kGroupedGemm: one cublasGemmEx per expert with group_m[e] > 0
//   kNorm → kRmsNorm; kAddNorm → kAddRmsNorm; kRope → kRope; kAct → kSwiGlu / kGelu
//   kAttention  → kAttention (masep::kernels decode attention; appends K/V unless
//                 RankInfo::kv_append is false: a non-first KV shard)
//   MLA (kv_lora_rank 512 and qk_rope_head_dim 64, the kernel's widths; others are refused):
//   kMlaDown → kMlaDown (three GEMMs: c_q, c_kv, k_rope); kMlaNorm → kMlaNorm; kMlaQUp →
//   kGemm (c_q → kMlaQ); kMlaAbsorbK / kMlaAbsorbV → kMlaAbsorb (q_nope·W_UK per head into
//   kMlaQLat, latent output·W_UV per head into kMlaV); kMlaRope → kMlaRope; kMlaAttention →
//   kMlaAttention (masep::kernels MLA decode attention, latent output [T, heads, kl] in
//   kAttnOut, one [batch][max_len][kl + dr] cache block per layer); kOutProj reads kMlaV
//   kRouter → kRouter; kPermute → kPermute; kCombine → kCombine
//   kMoePermute → kGatherRows, kMoeUnpermute → kScatterRows (real data flow), else kCopy
//   Dense FFN layers (model.dense_layers; bf16 weights): kDenseUp → kGemm (kSliceNormed →
//   kExpertMid), kDenseAct → kSwiGlu / kGelu, kDenseDown → kGemm with `residual` (the
//   residual in kHidden's slice rows; the output where combine writes a MoE layer's)
//   Shared experts of their own width: kSharedUp / kSharedDown → kGroupedGemm over the rows
//   after the routed experts' in kExpertIn / kExpertOut, kSharedAct → kSwiGlu / kGelu
//   kAttnReduce, kGather, kScatter → the NCCL collective on the group's communicator
//   kDispatch, kReturn (kExchange) → kP2p: one ncclGroupStart/End with a ncclSend per
//                 transfer the op sends and a ncclRecv per transfer it receives
//   kOther: compute ops → kCopy of hbm_bytes/2 (counted in RankPlan::generic_copies);
//           kAllReduce/kAllGather/kReduceScatter → the collective; kAllToAll → kP2p from the
//           collective's byte matrix; kExchange → kP2p; runs of kSend/kRecv of one role,
//           step, layer and micro-batch → one kP2p group call
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "masep/kernels/weight_format.hpp"
#include "masep/plan/program.hpp"

namespace masep::exec {

/// Activation and communication buffers of one rank (one instance per micro-batch).
enum class Buf : uint8_t {
  kHidden,         ///< bf16 [T, h]: layer input (all tokens of the attention group)
  kNormed,         ///< bf16 [T, h]: rmsnorm output
  kQkv,            ///< bf16 [T, (heads+2·kv_heads)·head_dim]
  kAttnOut,        ///< bf16 [T, heads·head_dim]
  kProj,           ///< bf16 [T, h]: out_proj output (reduce-scatter input)
  kAttnSlice,      ///< bf16 [u, h]: this rank's token slice after reduce-scatter
  kSliceNormed,    ///< bf16 [u, h]
  kLogits,         ///< bf16 [u, experts]
  kTopkIds,        ///< int32 [u, top_k]
  kTopkWeights,    ///< fp32 [u, top_k]
  kExpertCounts,   ///< int32 [experts]
  kPermutedRow,    ///< int32 [u·top_k]
  kSourceToken,    ///< int32 [rows]
  kExpertOffsets,  ///< int32 [experts+1]
  kLayerOut,       ///< bf16 [u, h]: combine output (all-gather input of the next layer)
  kSend,           ///< dispatch send arena (permute output)
  kRecv,           ///< dispatch receive arena
  kRetSend,        ///< return send arena (MoE output)
  kRetRecv,        ///< return receive arena (combine input)
  kExpertIn,       ///< bf16 [rows, h]
  kExpertMid,      ///< bf16 [rows, in_columns]
  kExpertAct,      ///< bf16 [rows, ffn]
  kExpertOut,      ///< bf16 [rows, h]
  kAttnWorkspace,  ///< decode-attention split-KV workspace
  kScratchA,       ///< generic copy source / GEMM input of unknown ops
  kScratchB,       ///< generic copy destination / GEMM output of unknown ops
  kRouteCounts,    ///< real gating: int32 [attention ranks, slots] slot counts received
  kRealRowMap,     ///< real gating: int32 [rows] expert-input row map (uploaded per layer)
  // MLA attention (model.attention mla; ql, kl, dn, dr, dv as in plan::OpRole):
  kMlaCq,     ///< bf16 [T, ql]: c_q (normed in place); ql = 0: the query [T, heads·(dn+dr)]
  kMlaCkv,    ///< bf16 [T, kl]: c_kv of the new token (normed in place; appended to the cache)
  kMlaKRope,  ///< bf16 [T, dr]: k_rope of the new token (rotated in place; appended)
  kMlaQ,      ///< bf16 [T, heads·(dn+dr)]: the query, q_nope of every head then q_rope of every
              ///< head ([T][heads·dn | heads·dr])
  kMlaQLat,   ///< bf16 [heads, T, kl]: absorbed queries q_nope·W_UK, head-major
  kMlaV,      ///< bf16 [T, heads·dv]: latent outputs · W_UV (the output projection's input)
  kCount
};
constexpr int kBufCount = static_cast<int>(Buf::kCount);
const char* to_string(Buf b);

/// A place in a rank's memory: a buffer of one micro-batch plus a byte offset.
struct BufRef {
  Buf buf = Buf::kScratchA;
  int32_t mb = 0;
  int64_t offset_bytes = 0;
};

enum class LaunchKind : uint8_t {
  kGemm,
  kGroupedGemm,
  kRmsNorm,
  kAddRmsNorm,
  kRope,
  kAttention,
  kRouter,
  kPermute,
  kCombine,
  kSwiGlu,
  kGelu,
  kCopy,
  kP2p,
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kGatherRows,   ///< out = rows of in (map ≥ 0) or in2 (map < 0), map at int_pool[map_offset]
  kScatterRows,  ///< rows of in → out (map ≥ 0) or aux (map < 0)
  // MLA attention (see the mapping above and rank_runner.cpp for the operands):
  kMlaDown,       ///< x·[W_DQ | W_DKV | W_KR]^T as three GEMMs into kMlaCq, kMlaCkv, kMlaKRope
  kMlaNorm,       ///< rmsnorm of c_q (when ql > 0) and of c_kv, in place
  kMlaAbsorb,     ///< per-head GEMMs, one strided-batched cuBLAS call (absorbed W_UK / W_UV)
  kMlaRope,       ///< RoPE of q_rope (every head) and k_rope
  kMlaAttention,  ///< masep::kernels MLA decode attention over the latent cache (+ append)
};
const char* to_string(LaunchKind k);

/// One send or receive of a kP2p launch.
struct P2pPart {
  bool send = true;
  int32_t peer = -1;  ///< plan rank (= world rank)
  BufRef buf;
  int64_t bytes = 0;
  plan::OpId op = -1;
};

/// One host-side launch. Which fields matter depends on `kind` (see the mapping above).
struct Launch {
  LaunchKind kind = LaunchKind::kCopy;
  uint8_t stream = plan::kCompute;
  std::vector<plan::OpId> ops;  ///< ops this launch carries (one, or a p2p run)
  int32_t step = 0;             ///< decode step of its ops
  /// Index (in RankPlan::launches) of the launch on the other stream whose end event this
  /// launch waits for (cudaStreamWaitEvent), -1 = none.
  int32_t wait_for = -1;

  // Operands.
  BufRef in, in2, out, aux;  ///< see the kind's comment in rank_runner.cpp
  // GEMMs: weight offsets (bytes into the weight arena), one per expert for grouped GEMMs,
  // and how those weights are stored (kFP8Block: model precision weights fp8; then every
  // GEMM of the launch runs as masep::kernels grouped decode GEMM, kGemm as one group).
  std::vector<int64_t> weight_offsets;
  kernels::WeightFormat weight_format = kernels::WeightFormat::kBF16;
  int64_t m = 0, n = 0, k = 0;
  std::vector<int32_t> group_m;
  /// kGemm: out = in·Wᵀ + aux (the residual; copied to out first when out is elsewhere;
  /// cuBLAS beta = 1, bf16 weights only). The dense FFN's down projection.
  bool residual = false;
  // Element-wise, router, permute, combine, rope: token and column counts.
  int64_t tokens = 0;
  int64_t cols = 0;
  int32_t experts = 0, top_k = 0;
  // Attention.
  int32_t batch = 0, heads = 0, kv_heads = 0, head_dim = 0, max_kv_len = 0, num_splits = 1;
  bool append_kv = true;
  int64_t k_cache_offset = 0, v_cache_offset = 0;  ///< bytes into the KV arena
  int64_t kv_lens_offset = 0;                      ///< int32 index into the KV-length pool
  // MLA launches: the model's widths (ql = q_lora_rank, kl = kv_lora_rank, dn / dr / dv =
  // qk_nope / qk_rope / v head dims, q_cols = the down projection's query columns).
  struct MlaDims {
    int32_t ql = 0, kl = 0, dn = 0, dr = 0, dv = 0, q_cols = 0;
  } mla;
  // kMlaAbsorb: `heads` GEMMs C_h[m×n] = X_h[m×k]·W_h[n×k]^T, X_h at `in` + h·in_stride with
  // row stride in_ld, C_h at `out` + h·out_stride with row stride out_ld (elements), W_h at
  // weight_offsets[0] + h·n·k elements. kMlaAttention: in3 / in4 = the new token's c_kv and
  // k_rope (kMlaCkv, kMlaKRope).
  int64_t in_ld = 0, in_stride = 0, out_ld = 0, out_stride = 0;
  BufRef in3, in4;
  // kCopy: bytes copied from `in` to `out`.
  int64_t bytes = 0;
  // Collectives: group index (Program::groups) and element counts (bf16).
  int32_t group = -1;
  int64_t count = 0;
  // kP2p.
  std::vector<P2pPart> parts;
  // kGatherRows / kScatterRows: row map (int32, `tokens` entries) at int_pool[map_offset].
  int64_t map_offset = -1;
  // kRouter with forced routing: at int_pool[route_offset]: the Program's expert ids
  // [tokens·top_k], their slot ids [tokens·top_k], then slot counts [slots].
  // kRouter with real gating (real_gating): at int_pool[route_offset]: this attention rank's
  // slot of every global expert [experts].
  int64_t route_offset = -1;
  int32_t slots = 0;
  bool real_gating = false;
};

/// Real gating (`masep exec --routing real`): the router kernel's own top-k decides where
/// each token goes, so the sizes of the dispatch/return transfers, the MoE side's row maps
/// and the expert GEMMs are known only at run time. The layout below is fixed by the plan;
/// the functions after it turn per-(layer, micro-batch) slot counts into those sizes (pure,
/// unit-tested; the forced routing's plan-time tables are the same arithmetic).
///
/// Slots number (MoE GPU g, local expert l) as slot_base[g] + l, so a permute over slots
/// orders an attention rank's rows by destination GPU, then local expert.
struct GatingLayout {
  int32_t attention_ranks = 0;     ///< A: plan ranks 0..A-1 route tokens
  int32_t moe_base = 0;            ///< plan rank of MoE GPU 0 (0 when co-located)
  int32_t moe_ranks = 0;           ///< G
  bool colocated = false;          ///< attention rank a and MoE GPU a are one rank (local rows)
  std::vector<int32_t> slot_base;  ///< [G+1]; slots = slot_base[G]
  int32_t slots() const { return slot_base.empty() ? 0 : slot_base.back(); }
  bool is_local(int a, int g) const { return colocated && a == g; }
};

/// Row counts and offsets of one (layer, micro-batch) from every attention rank's slot
/// counts (counts[a][slot], rows of a's permute output per slot).
struct RouteSizes {
  std::vector<std::vector<int64_t>> seg_rows;   ///< [a][g]: rows a sends to g
  std::vector<std::vector<int64_t>> seg_begin;  ///< [a][g]: first row of them in a's permute output
  std::vector<std::vector<int64_t>> recv_begin;  ///< [g][a]: first row of them in g's receive
                                                 ///< buffer (local rows take no space there)
};
RouteSizes route_sizes(const GatingLayout& lay, const std::vector<std::vector<int32_t>>& counts);

/// Rows per local expert of MoE GPU g (the grouped GEMMs' group_m).
std::vector<int32_t> moe_group_m(const GatingLayout& lay,
                                 const std::vector<std::vector<int32_t>>& counts, int g);

/// MoE GPU g's expert-input row map (kGatherRows / kScatterRows): grouped by local expert,
/// senders ascending; entry = row of the receive buffer (≥ 0) or −(row of the local permute
/// output)−1.
std::vector<int32_t> moe_row_map(const GatingLayout& lay, const RouteSizes& sz,
                                 const std::vector<std::vector<int32_t>>& counts, int g);

/// One send/receive of a dispatch (ret = false) or return (ret = true) transfer on plan rank
/// `rank` with `peer`: its rows and first row in its buffer (send/recv/ret_send/ret_recv).
/// Throws std::invalid_argument when the two ranks are not an attention/MoE pair.
struct PartRows {
  int64_t rows = 0, first_row = 0;
};
PartRows route_part(const GatingLayout& lay, const RouteSizes& sz, int rank, bool ret, bool send,
                    int peer);

/// One weight tensor of the arena, generated from (seed, tag) so that every rank (and the
/// single-GPU reference) holding the same tensor fills it with the same values.
struct WeightTensor {
  int64_t offset_bytes = 0;
  int64_t elements = 0;  ///< elements (n·k of a matrix; bf16, or e4m3 for kFP8Block)
  kernels::WeightFormat format = kernels::WeightFormat::kBF16;
  int64_t rows = 0, cols = 0;  ///< kFP8Block: the matrix [n, k] (its scales follow the bytes)
  uint64_t tag = 0;      ///< hash of (layer, name, global expert index)
  float scale = 0.02f;   ///< values in shift ± scale
  float shift = 0.0f;    ///< 1 for norm weights
};

/// One K or V block of the KV arena, filled per (global sequence, head, position, dim).
struct KvBlock {
  int64_t offset_bytes = 0;
  int32_t layer = 0;
  bool value = false;  ///< V (else K)
  int32_t batch = 0, kv_heads = 0, max_len = 0, head_dim = 0;
  int64_t first_seq = 0;  ///< global sequence index of batch row 0
};

/// Where this rank holds the final hidden states of some sequences (attention ranks with a
/// one-GPU attention group, after the last layer of the first step; for --verify).
struct OutputRows {
  BufRef buf;
  int64_t first_seq = 0, tokens = 0;
};

/// Sizes the plan needs that depend on the device.
struct PlanOptions {
  int sm_count = 132;  ///< SMs of the GPU (split-KV count)
  /// Peak memory bandwidth of the GPU in GB/s (kernels::decode_attention_peak_memory_GBps;
  /// the split-KV count's one-split rule), 0 = unknown: the head-count model alone.
  double peak_memory_GBps = 0;
  /// Real gating: router launches map the kernel's top-k to slots (no forced route), and the
  /// MoE side's buffers are sized for the worst case (every token of every attention rank to
  /// this GPU, top_k rows each). Needs the real data flow (throws std::invalid_argument).
  bool real_gating = false;
};

/// Memory one rank allocates, by part (bytes).
struct RankMemory {
  int64_t weights = 0, kv_cache = 0, activations = 0, comm_buffers = 0, workspace = 0;
  int64_t total() const { return weights + kv_cache + activations + comm_buffers + workspace; }
};

/// Everything one rank launches, in host issue order.
struct RankPlan {
  int32_t rank = 0;
  std::vector<Launch> launches;  ///< a topological order of the rank's op graph
  /// buffer_bytes[buf][mb]: bytes of each buffer (0 = unused).
  std::array<std::vector<int64_t>, kBufCount> buffer_bytes;
  int64_t weight_bytes = 0;        ///< weight arena
  int64_t kv_cache_bytes = 0;      ///< KV arena
  std::vector<int32_t> kv_lens;    ///< KV-length pool (tokens before each step)
  std::vector<int32_t> groups;     ///< Program::groups indices with collectives here
  std::vector<plan::OpId> op_ids;  ///< the rank's ops, ascending
  int32_t micro_batches = 1;
  int32_t generic_copies = 0;     ///< compute ops mapped to the generic kCopy
  bool real_data_flow = false;    ///< see "Data flow" above
  std::vector<int32_t> int_pool;  ///< row maps and forced routes (uploaded once)
  std::vector<WeightTensor> weight_tensors;
  std::vector<KvBlock> kv_blocks;
  std::vector<int64_t> hidden_first_seq;  ///< per micro-batch: global sequence of kHidden row 0
                                          ///< (-1: this rank has no kHidden)
  std::vector<OutputRows> outputs;        ///< empty unless the verify layout applies
  std::string verify_blocker;             ///< why --verify cannot run this plan ("" = it can)
  bool real_gating = false;               ///< built with PlanOptions::real_gating
  GatingLayout gating;                    ///< set whenever real_data_flow
  /// Real gating: expert → slot for each attention rank [A][experts] (the holder of an
  /// expert with replicas is chosen by attention rank, as in the forced routing).
  std::vector<std::vector<int32_t>> expert_slot;
  RankMemory memory() const;
};

/// Whether the executor's kernels take these formats: bf16 everywhere, or FP8 weights
/// (block-scaled, W8A16) with everything else bf16.
bool executor_runs_precision(const models::Precision& p);

/// Throws std::invalid_argument naming the feature when the Program's model uses something the
/// executor has no kernels for (issue 15: MLA attention of other widths than the kernel's
/// (kv_lora_rank 512, qk_rope_head_dim 64) or with FP8 weights, dense FFN layers with FP8
/// weights, sliding windows, a precision other than bf16 everywhere or FP8 weights with the
/// rest bf16), or a plan with expert tensor parallelism (layout
/// expert_tensor_parallel > 1 or any expert_reduce op). build_rank_plan calls it; `masep exec`
/// calls it once, right after compiling or reading the Program, before anything is launched.
void check_model_supported(const plan::Program& p);

/// Builds rank `rank`'s launches. Throws std::invalid_argument for a Program it cannot map
/// (an unknown communication kind, a dependency cycle across the two streams).
RankPlan build_rank_plan(const plan::Program& p, int rank, const PlanOptions& options = {});

/// The launches warm-up run `pass` (0-based) issues, untimed, before the timed run (1 = issue):
/// pass 0 every launch, so each GEMM shape (under skewed routing later steps bring new
/// per-expert row counts), kernel configuration and NCCL peer of the timed run has run once
/// before timing; later passes the launches of `first_step` only (closed under dependencies).
std::vector<char> warmup_launches(const RankPlan& plan, int first_step, int pass);

/// One line per launch ("12 compute gemm ops[40] m=8 n=12288 k=4096 wait=11"), for tests and
/// `masep exec --dump-launches`.
std::string describe(const RankPlan& plan, const plan::Program& p);

}  // namespace masep::exec
