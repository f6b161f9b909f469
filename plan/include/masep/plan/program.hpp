// The Program: masep's shared intermediate form. For every GPU (rank), an ordered list of
// ops on named streams with explicit dependencies. The simulator gives each op a duration
// and schedules it; the executor launches it for real. Both write traces keyed by the same
// op ids, so comparing them is a join on `Op::id`.
//
// Conventions
// - Op ids are dense: Program::ops[i].id == i. They are stable for a given scenario and seed.
// - Each rank has kStreamCount streams; ops on one stream run in their listed order
//   (Program::stream_ops). `deps` name ops (any rank) that must finish first; a dependency on
//   the previous op of the same stream is implied and not listed.
// - Point-to-point: a kSend on one rank and a kRecv on its peer name each other in `match`
//   and carry the same bytes; the transfer starts when both are ready. Collectives: every
//   member rank has one op with the same `collective` index; the collective starts when all
//   members are ready and each member finishes with it.
// - Bytes: `hbm_bytes` is what a compute op reads and writes in HBM (weights read once per
//   launch, activations, KV cache); `comm_bytes` is the payload: for kSend/kRecv the message,
//   for collectives the per-rank buffer size as nccl-tests counts it.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace masep::plan {

using OpId = int32_t;

/// What an op does. Compute kinds carry shapes; communication kinds carry bytes.
enum class OpKind : uint8_t {
  kGemm,          ///< C[m×n] = A[m×k]·B[k×n] (one weight matrix)
  kGroupedGemm,   ///< one GEMM per expert: m = group_m[e], shared n and k (expert FFNs)
  kAttention,     ///< decode attention: batch queries against their KV caches (+ KV append)
  kElementwise,   ///< norms, RoPE, activations, residual adds: cost is hbm_bytes
  kRouter,        ///< gate logits → softmax → top-k (the GEMM is a separate kGemm)
  kPermute,       ///< scatter tokens into expert-contiguous buffers
  kCombine,       ///< weighted sum of expert outputs back into token order
  kSend,
  kRecv,
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kAllToAll,
};
const char* to_string(OpKind k);
bool is_communication(OpKind k);
bool is_collective(OpKind k);

/// Streams of one rank. Compute kernels serialise on kCompute; NCCL calls on kComm.
enum Stream : uint8_t { kCompute = 0, kComm = 1, kStreamCount = 2 };
const char* stream_name(int s);

enum class Role : uint8_t { kAttention, kMoe, kColocated };
const char* to_string(Role r);

struct Op {
  OpId id = 0;
  int32_t rank = 0;          ///< plan rank (index into Program::ranks), not a topology GPU
  uint8_t stream = kCompute;
  OpKind kind = OpKind::kGemm;
  std::string name;          ///< short label, e.g. "qkv", "attn", "dispatch", "expert_up"
  int32_t layer = 0;
  int32_t step = 0;          ///< decode step
  int32_t micro_batch = 0;

  // Compute shapes (zero where unused).
  int64_t m = 0, n = 0, k = 0;             ///< kGemm, and n/k of kGroupedGemm
  std::vector<int32_t> group_m;            ///< kGroupedGemm: tokens per local expert
  int32_t batch = 0;                       ///< kAttention: sequences
  int32_t heads = 0, kv_heads = 0, head_dim = 0;  ///< kAttention: local heads
  int64_t kv_tokens = 0;                   ///< kAttention: sum of KV lengths over the batch
  double flops = 0;                        ///< 2 per multiply-add
  int64_t hbm_bytes = 0;                   ///< bytes read + written in HBM
  int64_t weight_bytes = 0;                ///< part of hbm_bytes that is weights

  // Communication (zero/-1 where unused).
  int64_t comm_bytes = 0;
  int32_t peer = -1;        ///< kSend/kRecv: the other rank
  OpId match = -1;          ///< kSend/kRecv: the matching op on the peer
  int32_t collective = -1;  ///< collectives: index into Program::collectives

  std::vector<OpId> deps;   ///< ops that must finish before this one starts
};

/// A named communicator (the set of ranks a collective runs over).
struct Group {
  std::string name;          ///< e.g. "attn.r0", "world"
  std::vector<int32_t> ranks;  ///< plan ranks
};

/// One collective call: its kind, group, bytes and member ops (one per group rank, in the
/// group's rank order).
struct Collective {
  OpKind kind = OpKind::kAllReduce;
  int32_t group = 0;
  int64_t bytes = 0;          ///< per-rank buffer, as nccl-tests counts "size"
  std::vector<OpId> ops;
  /// kAllToAll only: bytes[src_index][dst_index] within the group (may be uneven).
  std::vector<std::vector<int64_t>> matrix;
};

/// What one rank is and holds.
struct RankInfo {
  int32_t gpu = 0;            ///< the topology GPU this plan rank runs on
  Role role = Role::kAttention;
  std::string label;          ///< e.g. "attn r0 h1" or "moe 2 (experts 2,6,10,14)"
  std::vector<int32_t> experts;    ///< experts held (MoE / co-located ranks)
  int32_t replica = -1;            ///< attention replica group index, -1 if none
  int32_t sequences = 0;           ///< sequences whose KV cache lives here (per micro-batch sum)
};

/// Expert load of one (step, layer, micro-batch): tokens routed to each expert.
struct RoutingSample {
  int32_t step = 0, layer = 0, micro_batch = 0;
  std::vector<int32_t> tokens_per_expert;
};

struct Program {
  std::string scenario;                 ///< scenario name
  int32_t first_step = 0;               ///< first decode step compiled (CompileOptions)
  int32_t steps = 0, layers = 0, micro_batches = 0;  ///< steps compiled from first_step
  std::vector<RankInfo> ranks;          ///< index = position in the plan (0..N-1)
  std::vector<Group> groups;
  std::vector<Collective> collectives;
  std::vector<Op> ops;                  ///< ops[i].id == i
  /// stream_ops[r][s]: op ids of plan rank r's stream s in execution order.
  std::vector<std::array<std::vector<OpId>, kStreamCount>> stream_ops;
  std::vector<RoutingSample> routing;

  int rank_count() const { return static_cast<int>(ranks.size()); }
};

/// Checks the Program's structural invariants (dense ids, matched send/recv with equal bytes,
/// collective membership, dependencies acyclic across streams). Throws std::logic_error
/// describing the first violation. The compiler's output always passes; the tests use it.
void check_program(const Program& p);

}  // namespace masep::plan
