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
// - Grouped point-to-point (kExchange): see `Exchange` below. One NCCL group call per rank
//   (ncclGroupStart; ncclSend / ncclRecv per transfer; ncclGroupEnd): the rank pays the
//   per-call latency once and its transfers run concurrently.
// - Bytes: `hbm_bytes` is what a compute op reads and writes in HBM (weights read once per
//   launch, activations, KV cache); `comm_bytes` is the payload: for kSend/kRecv the message,
//   for collectives the per-rank buffer size as nccl-tests counts it, for kExchange the total
//   bytes the op sends plus the total bytes it receives.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "masep/models/model.hpp"
#include "masep/topology/gpu_spec.hpp"

namespace masep::plan {

/// An op's short label ("qkv", "dispatch"): a 16-byte view of characters in static storage
/// that lives as long as the process. Built from a string literal or a std::string / char
/// pointer, it copies the text once into a process-wide intern pool (thread-safe; equal texts
/// share storage), so an OpName never dangles. `OpName::literal` skips the pool for pointers
/// the caller guarantees are static (the compiler's literals: no look-up per op).
/// Compares and converts like a std::string_view; always NUL-terminated (c_str()).
class OpName {
 public:
  OpName() = default;
  OpName(const char* s) : v_(intern(s == nullptr ? std::string_view{} : std::string_view{s})) {}
  OpName(const std::string& s) : v_(intern(s)) {}
  explicit OpName(std::string_view s) : v_(intern(s)) {}
  /// `s` must be NUL-terminated and outlive every use (a string literal).
  static OpName literal(const char* s) {
    OpName n;
    n.v_ = std::string_view{s};
    return n;
  }

  std::string_view view() const { return v_; }
  operator std::string_view() const { return v_; }
  operator std::string() const { return std::string(v_); }
  std::string str() const { return std::string(v_); }
  const char* c_str() const { return v_.empty() ? "" : v_.data(); }
  const char* data() const { return c_str(); }
  size_t size() const { return v_.size(); }
  bool empty() const { return v_.empty(); }

  friend bool operator==(const OpName& a, const OpName& b) { return a.v_ == b.v_; }
  friend bool operator==(const OpName& a, std::string_view b) { return a.v_ == b; }
  friend bool operator==(const OpName& a, const char* b) { return a.v_ == std::string_view{b}; }
  friend bool operator==(const OpName& a, const std::string& b) { return a.v_ == b; }
  friend std::strong_ordering operator<=>(const OpName& a, const OpName& b) {
    return a.v_ <=> b.v_;
  }
  friend std::string operator+(const std::string& a, const OpName& b) {
    return a + std::string(b.v_);
  }
  friend std::string operator+(const OpName& a, const std::string& b) {
    return std::string(a.v_) + b;
  }

 private:
  static std::string_view intern(std::string_view s);
  std::string_view v_{};
};
std::ostream& operator<<(std::ostream& os, const OpName& n);

using OpId = int32_t;

/// What an op does. Compute kinds carry shapes; communication kinds carry bytes.
/// The ops one op waits for (Op::deps). A small vector of OpIds: up to kInline ids are held
/// in the object itself, more on the heap (the compiler's ops have 0 or 1, so compiling and
/// simulating millions of ops allocates nothing for them). Owns its storage; copyable and
/// movable like std::vector, with the subset of its interface the code uses (push_back,
/// size, empty, iteration, indexing, clear) and assignment from a std::vector or a braced
/// list.
class OpDeps {
 public:
  static constexpr uint32_t kInline = 2;

  OpDeps() = default;
  OpDeps(std::initializer_list<OpId> ids) { append(ids.begin(), ids.end()); }
  OpDeps(const std::vector<OpId>& ids) { append(ids.data(), ids.data() + ids.size()); }
  OpDeps(const OpDeps& o) { append(o.begin(), o.end()); }
  OpDeps(OpDeps&& o) noexcept { take(o); }
  OpDeps& operator=(const OpDeps& o) {
    if (this != &o) {
      clear();
      append(o.begin(), o.end());
    }
    return *this;
  }
  OpDeps& operator=(OpDeps&& o) noexcept {
    if (this != &o) {
      release();
      take(o);
    }
    return *this;
  }
  ~OpDeps() { release(); }

  void push_back(OpId id) {
    if (size_ == cap_) grow(cap_ * 2);
    data()[size_++] = id;
  }
  void clear() { size_ = 0; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const OpId* begin() const { return data(); }
  const OpId* end() const { return data() + size_; }
  OpId* begin() { return data(); }
  OpId* end() { return data() + size_; }
  OpId operator[](size_t i) const { return data()[i]; }
  OpId& operator[](size_t i) { return data()[i]; }
  friend bool operator==(const OpDeps& a, const OpDeps& b) {
    if (a.size_ != b.size_) return false;
    for (uint32_t i = 0; i < a.size_; ++i) {
      if (a[i] != b[i]) return false;
    }
    return true;
  }
  /// A copy as a std::vector (for serialisation).
  std::vector<OpId> to_vector() const { return {begin(), end()}; }

 private:
  bool on_heap() const { return cap_ > kInline; }
  OpId* data() { return on_heap() ? heap_ : inline_; }
  const OpId* data() const { return on_heap() ? heap_ : inline_; }
  void append(const OpId* first, const OpId* last) {
    for (; first != last; ++first) push_back(*first);
  }
  void grow(uint32_t cap) {
    OpId* p = new OpId[cap];
    for (uint32_t i = 0; i < size_; ++i) p[i] = data()[i];
    release();
    heap_ = p;
    cap_ = cap;
  }
  void release() {
    if (on_heap()) delete[] heap_;
    cap_ = kInline;
  }
  void take(OpDeps& o) {  // *this holds nothing on the heap
    size_ = o.size_;
    cap_ = o.cap_;
    if (o.on_heap()) {
      heap_ = o.heap_;
    } else {
      for (uint32_t i = 0; i < size_; ++i) inline_[i] = o.inline_[i];
    }
    o.size_ = 0;
    o.cap_ = kInline;
  }

  uint32_t size_ = 0;
  uint32_t cap_ = kInline;
  union {
    OpId inline_[kInline];
    OpId* heap_;
  };
};
static_assert(sizeof(OpDeps) == 16);

enum class OpKind : uint8_t {
  kGemm,         ///< C[m×n] = A[m×k]·B[k×n] (one weight matrix)
  kGroupedGemm,  ///< one GEMM per expert: m = group_m[e], shared n and k (expert FFNs)
  kAttention,    ///< decode attention: batch queries against their KV caches (+ KV append)
  kElementwise,  ///< norms, RoPE, activations, residual adds: cost is hbm_bytes
  kRouter,       ///< gate logits → softmax → top-k (the GEMM is a separate kGemm)
  kPermute,      ///< scatter tokens into expert-contiguous buffers
  kCombine,      ///< weighted sum of expert outputs back into token order
  kSend,
  kRecv,
  kAllReduce,
  kAllGather,
  kReduceScatter,
  kAllToAll,
  kExchange,  ///< grouped point-to-point: one NCCL group call of sends and receives
};
const char* to_string(OpKind k);
/// All-reduce, all-gather, reduce-scatter, all-to-all (ops that name a Collective).
constexpr bool is_collective(OpKind k) { return k >= OpKind::kAllReduce && k <= OpKind::kAllToAll; }
/// Ops that run on the communication stream: send, recv, collectives, exchanges.
constexpr bool is_communication(OpKind k) { return k >= OpKind::kSend; }
static_assert(is_communication(OpKind::kExchange) && !is_communication(OpKind::kCombine) &&
              is_collective(OpKind::kAllToAll) && !is_collective(OpKind::kExchange));

/// Streams of one rank. Compute kernels serialise on kCompute; NCCL calls on kComm.
enum Stream : uint8_t { kCompute = 0, kComm = 1, kStreamCount = 2 };
const char* stream_name(int s);

enum class Role : uint8_t { kAttention, kMoe, kColocated };
const char* to_string(Role r);

/// What an op means in the decoder layer: the compiler states it, and a back end that needs
/// more than a cost (the executor's lowering) reads it from here, never from Op::name or by
/// inverting byte counts. Shapes of each role (T = the attention group's tokens of the
/// micro-batch, u = this rank's token slice, R = expert rows on an MoE rank; see compiler.hpp):
///   kNorm        kElementwise  rmsnorm of the layer input            m = T, n = hidden
///   kQkv         kGemm         fused QKV projection                  m/n/k
///   kRope        kElementwise  rotary embedding of q and k           m = T,
///   heads/kv_heads/head_dim kAttention   kAttention    decode attention (+ KV append)
///   batch/heads/…/kv_tokens kAttnReduce  kAllReduce    merge of sequence-parallel partials
///   kOutProj     kGemm         output projection                     m/n/k
///   kGather      kAllGather    previous layer's slices → layer input
///   kScatter     kReduceScatter out_proj partial sums → token slices
///   kAddNorm     kElementwise  residual add + rmsnorm of the slice   m = u, n = hidden
///   kRouterGemm  kGemm         gate logits                           m = u, n = experts
///   kRouter      kRouter       softmax + top-k                       m = u, n = experts
///   kPermute     kPermute      slice rows → rows by destination      m = u, n = hidden
///   kDispatch    kExchange     rows to the MoE ranks
///   kMoePermute  kPermute      received rows → rows by local expert  m = R, n = hidden,
///                              k = rows it reads (received and kept locally)
///   kExpertUp    kGroupedGemm  gate/up projection of every expert
///   kAct         kElementwise  SwiGLU / GELU                         m = R, n = expert_ffn
///   kExpertDown  kGroupedGemm  down projection
///   kMoeUnpermute kCombine     expert rows → rows by sender          m = R, n = hidden,
///                              k = rows it writes back (one per dispatched row)
///   kReturn      kExchange     rows back to the attention ranks
///   kCombine     kCombine      weighted sum of a token's rows + residual  m = u, n = hidden
/// Multi-head Latent Attention (model.attention mla; heads_l = this rank's query heads, ql/kl =
/// q/kv_lora_rank, dn/dr/dv = qk_nope/qk_rope/v head dims), in place of kQkv, kRope and
/// kAttention (kNorm, kOutProj and the rest as above):
///   kMlaDown     kGemm         fused W_DQ | W_DKV: m = T, n = ql + kl + dr (ql = 0: the query
///                              projection heads_l·(dn+dr) instead of ql), k = hidden
///   kMlaNorm     kElementwise  rmsnorm of the q and kv latents        m = T, n = ql + kl
///   kMlaQUp      kGemm         W_UQ: m = T, n = heads_l·(dn+dr), k = ql (absent when ql = 0)
///   kMlaAbsorbK  kGroupedGemm  q_nope · W_UK per head: group_m = T per head, n = kl, k = dn
///   kMlaRope     kElementwise  rotary embedding of q_rope and k_rope   m = T, heads = heads_l,
///                              kv_heads = 1, head_dim = dr
///   kMlaAttention kAttention   attention over the latent cache (+ append of c_kv | k_rope):
///                              batch/heads = heads_l/kv_heads = 1/head_dim = kl + dr/kv_tokens
///   kMlaAbsorbV  kGroupedGemm  latent output · W_UV per head: group_m = rows per head,
///                              n = dv, k = kl (then kOutProj with k = heads_l·dv)
/// Dense FFN layers (the first model.dense_layers layers), in place of the router and experts,
/// on each attention (or co-located) rank for its token slice u:
///   kDenseUp     kGemm         gate/up projection                    m = u, n = 2·dense_ffn
///                              (GELU: dense_ffn), k = hidden
///   kDenseAct    kElementwise  SwiGLU / GELU                         m = u, n = dense_ffn
///   kDenseDown   kGemm         down projection + residual (the layer output)  m = u,
///                              n = hidden, k = dense_ffn
/// Shared experts of their own width (model.shared_expert_ffn != expert_ffn; otherwise they are
/// the last groups of kExpertUp/kExpertDown), on an MoE rank after the routed experts' kAct:
///   kSharedUp    kGroupedGemm  gate/up of each shared expert: group_m = its rows,
///                              n = 2·shared_ffn (GELU: shared_ffn), k = hidden
///   kSharedAct   kElementwise  SwiGLU / GELU                         m = shared rows,
///                              n = shared_ffn
///   kSharedDown  kGroupedGemm  down projection: n = hidden, k = shared_ffn
/// Expert tensor parallelism (plan.moe / plan.colocated expert_tensor_parallel t > 1; the
/// expert ops above then work on each expert's column slice: kExpertUp n = in/t, kAct n =
/// expert_ffn/t, kExpertDown k = expert_ffn/t, likewise the shared ones; kMoeUnpermute writes
/// the rows' partial sums):
///   kExpertReduce kReduceScatter sum of the partial down outputs of an expert group's t ranks
///                              (rows by sender, the activations' format): rank j of the group
///                              keeps near-equal part j of the rows and returns those
///   kExpertMove  kExchange     expert weights copied between MoE ranks when the load balancer
///                              re-places experts (plan.balance.rebalance_every): one exchange
///                              per layer, each transfer one expert's weights of that layer
/// Fault tolerance (issue 18; simulator only, `masep exec` refuses them):
///   kKvMirror    kExchange     the step's new KV entries to the mirror replicas (kv_copies 2)
///   kCommRebuild kElementwise  communicator shrink/rebuild after a failure (timed by a
///                              recovery parameter, not by bytes)
///   kWeightLoad  kElementwise  expert weights re-loaded from host memory (hbm_bytes = weight
///                              bytes, timed at the host link rate); kExchange: from a peer
///   kKvRebuild   kExchange     KV shards copied from mirrors to a GPU that took over
///   kReprefill   kGemm         re-computing lost KV caches (prefill FLOPs and bytes)
/// kOther: an op with no meaning beyond its cost (synthetic programs, tests): the simulator
/// times it; the executor lowers it to a device copy of hbm_bytes / 2 and counts it as generic.
///
/// Enum order is part of the contract: ranges are tested by comparison (is_mla_role,
/// is_dense_role, kSharedUp .. kSharedDown, cmd_balance's kMoePermute .. kMoeUnpermute) and
/// is_fault_tolerance() takes the tail from kKvMirror on. A new role goes after kSharedDown and
/// before kExpertMove (never inside a range, never after kReprefill); roles are serialised by
/// name (to_string), so the numbering may shift.
enum class OpRole : uint8_t {
  kOther,
  kNorm,
  kQkv,
  kRope,
  kAttention,
  kAttnReduce,
  kOutProj,
  kGather,
  kScatter,
  kAddNorm,
  kRouterGemm,
  kRouter,
  kPermute,
  kDispatch,
  kMoePermute,
  kExpertUp,
  kAct,
  kExpertDown,
  kMoeUnpermute,
  kReturn,
  kCombine,
  kMlaDown,
  kMlaNorm,
  kMlaQUp,
  kMlaAbsorbK,
  kMlaRope,
  kMlaAttention,
  kMlaAbsorbV,
  kDenseUp,
  kDenseAct,
  kDenseDown,
  kSharedUp,
  kSharedAct,
  kSharedDown,
  kExpertReduce,
  kExpertMove,
  kKvMirror,
  kCommRebuild,
  kWeightLoad,
  kKvRebuild,
  kReprefill,
};
inline constexpr int kOpRoleCount = static_cast<int>(OpRole::kReprefill) + 1;
/// Whether a role belongs to MLA attention (kMlaDown .. kMlaAbsorbV).
constexpr bool is_mla_role(OpRole r) { return r >= OpRole::kMlaDown && r <= OpRole::kMlaAbsorbV; }
/// Whether a role belongs to a dense FFN layer (kDenseUp .. kDenseDown).
constexpr bool is_dense_role(OpRole r) { return r >= OpRole::kDenseUp && r <= OpRole::kDenseDown; }
/// Roles of fault-tolerance work (kv mirroring, recovery), which only the simulator runs.
constexpr bool is_fault_tolerance(OpRole r) { return r >= OpRole::kKvMirror; }
const char* to_string(OpRole r);

struct Op {
  OpId id = 0;
  int32_t rank = 0;  ///< plan rank (index into Program::ranks), not a topology GPU
  int32_t layer = 0;
  int32_t step = 0;  ///< decode step
  int32_t micro_batch = 0;
  uint8_t stream = kCompute;
  OpKind kind = OpKind::kGemm;
  OpRole role = OpRole::kOther;  ///< what the op means (the executor lowers by it)
  /// Format the op computes in (GEMMs: the weight format when it is 8-bit or narrower, else
  /// the activations'; everything else: the activations'): picks the GPU's peak rate.
  models::DType dtype = models::DType::kBF16;
  OpName name;  ///< label for people only ("qkv", "attn", "dispatch"); no back end reads it

  // Compute shapes (zero where unused).
  /// kGemm: C[m×n] = A[m×k]·B[k×n]; n/k of kGroupedGemm; element-wise, router, permute and
  /// combine ops: m = rows (tokens) and n = columns they work on (see OpRole).
  int64_t m = 0, n = 0, k = 0;
  int32_t batch = 0;                              ///< kAttention: sequences
  int32_t heads = 0, kv_heads = 0, head_dim = 0;  ///< kAttention: local heads
  int64_t kv_tokens = 0;                          ///< kAttention: sum of KV lengths over the batch
  double flops = 0;                               ///< 2 per multiply-add
  int64_t hbm_bytes = 0;                          ///< bytes read + written in HBM
  int64_t weight_bytes = 0;                       ///< part of hbm_bytes that is weights

  // Communication (zero/-1 where unused).
  int64_t comm_bytes = 0;
  int32_t peer = -1;        ///< kSend/kRecv: the other rank
  OpId match = -1;          ///< kSend/kRecv: the matching op on the peer
  int32_t collective = -1;  ///< collectives: index into Program::collectives
  int32_t exchange = -1;    ///< kExchange: index into Program::exchanges

  std::vector<int32_t> group_m;  ///< kGroupedGemm: tokens per local expert
  OpDeps deps;                   ///< ops that must finish before this one starts
};

/// A named communicator (the set of ranks a collective runs over).
struct Group {
  std::string name;            ///< e.g. "attn.r0", "world"
  std::vector<int32_t> ranks;  ///< plan ranks
};

/// One collective call: its kind, group, bytes and member ops (one per group rank, in the
/// group's rank order).
struct Collective {
  OpKind kind = OpKind::kAllReduce;
  int32_t group = 0;
  int64_t bytes = 0;  ///< per-rank buffer, as nccl-tests counts "size"
  std::vector<OpId> ops;
  /// kAllToAll only: bytes[src_index][dst_index] within the group (may be uneven).
  std::vector<std::vector<int64_t>> matrix;
};

/// One grouped point-to-point call (kExchange) across ranks: every participating rank has
/// exactly one kExchange op naming this exchange (Op::exchange), and the op carries all of
/// that rank's sends and receives of the call.
///
/// Semantics (simulator and executor):
/// - An exchange op becomes ready when its stream predecessor and its deps are done (like any
///   op). The executor then issues, on the rank's comm stream,
///     ncclGroupStart(); for each transfer with src_op == op: ncclSend(bytes, dst rank);
///                       for each transfer with dst_op == op: ncclRecv(bytes, src rank);
///     ncclGroupEnd();
///   in the transfers' listed order (the order inside a group call does not matter to NCCL).
/// - Each transfer starts when both its src and dst ops are ready; a group call has no
///   internal order, so transfers of one op proceed concurrently (sharing links).
/// - The per-call latency (alpha) is paid once per op, not per transfer.
/// - The op ends when every transfer it takes part in (as src or dst) has been delivered.
/// - One op may be src of some transfers and dst of others (a rank that sends and receives
///   in one group call, e.g. the co-located all-to-all). src_op != dst_op; their ranks may
///   share a GPU (a local copy). An op with no transfer is never emitted by the compiler.
/// - Bytes: Op::comm_bytes of an exchange op = Σ bytes of transfers it sends + Σ bytes of
///   transfers it receives.
struct Transfer {
  OpId src_op = -1;   ///< kExchange op on the sending rank
  OpId dst_op = -1;   ///< kExchange op on the receiving rank
  int64_t bytes = 0;  ///< payload, > 0
};
/// What carries an exchange's transfers, which sets its per-call latency, its wire rate and
/// the SMs it takes from compute (plan.expert_exchange; docs/simulator-model.md).
enum class ExchangeTransport : uint8_t {
  kNccl,              ///< one NCCL group call per rank (ncclSend / ncclRecv); eager launch
  kDeepEpNormal,      ///< DeepEP-style normal kernels (NVLink / RDMA copies by SMs); eager
  kDeepEpLowLatency,  ///< DeepEP-style low-latency kernels (RDMA writes), in a CUDA graph
};
/// nccl, deepep_normal, deepep_low_latency.
const char* to_string(ExchangeTransport t);

struct Exchange {
  std::vector<Transfer> transfers;  ///< sorted by (src rank, dst rank) by the compiler
  ExchangeTransport transport = ExchangeTransport::kNccl;
  /// SMs the call's kernels occupy on each participating GPU while its op runs there (0 =
  /// none modelled beyond the simulator's comm_resident_interference).
  int32_t sms = 0;
};

/// Sequences one attention (or co-located) rank works on in one micro-batch.
struct RankBatch {
  int64_t first_sequence = 0;  ///< global index of the group chunk's first sequence
  int64_t sequences = 0;       ///< T: sequences of the group's chunk (KV caches, qkv rows)
  int64_t slice_first = 0;     ///< global index of this rank's token slice (after reduce-scatter)
  int64_t slice_tokens = 0;    ///< u: tokens of the slice (router, permute, combine rows)
  int64_t slice_offset = 0;    ///< slice_first − first_sequence: the slice's row in the chunk
};

/// What one rank is and holds.
struct RankInfo {
  int32_t gpu = 0;  ///< the topology GPU this plan rank runs on
  Role role = Role::kAttention;
  std::string label;             ///< e.g. "attn r0 h1" or "moe 2 (experts 2,6,10,14)"
  std::vector<int32_t> experts;  ///< experts held (MoE / co-located ranks)
  int32_t replica = -1;          ///< attention replica group index, -1 if none
  int32_t sequences = 0;         ///< sequences whose KV cache lives here (per micro-batch sum)
  int32_t group_index = -1;      ///< index within the attention (or TP) group, -1 on MoE ranks
  /// Whether this rank's attention appends the step's new token to its KV cache (false on a
  /// sequence-parallel shard other than the first: it holds older tokens only).
  bool kv_append = true;
  std::vector<RankBatch> batches;  ///< [micro-batch], attention and co-located ranks only
};

/// One attention (or tensor-parallel) replica group of its own size: plan ranks first_rank ..
/// first_rank + head_parallel · sequence_parallel − 1 (index within the group = h · sp + s).
struct ReplicaShape {
  int32_t first_rank = 0;
  int32_t head_parallel = 1;
  int32_t sequence_parallel = 1;
  int32_t size() const { return head_parallel * sequence_parallel; }
};

/// The plan's shape as a back end needs it beyond the ops: who routes tokens where, which
/// sequences exist and how long their caches start, the seed of the generated data. Set by the
/// compiler; nothing past plan/ needs the Scenario.
struct ProgramLayout {
  bool separated = true;  ///< MA separation (attention ranks, then MoE ranks); else co-located
  int32_t attention_ranks = 0;  ///< A: ranks 0..A-1 run attention and route tokens
  int32_t moe_base = 0;         ///< plan rank of MoE-local GPU 0 (0 when co-located)
  int32_t moe_ranks = 0;        ///< G: ranks moe_base..moe_base+G-1 hold experts
  /// Expert tensor parallelism x: MoE-local GPUs k·x .. k·x + x − 1 form expert group k and
  /// each holds 1/x of the group's experts (1 = none).
  int32_t expert_tensor_parallel = 1;
  int32_t group_size = 1;       ///< t: GPUs of one attention (TP) group = head × sequence parallel
  int32_t sequence_parallel = 1;  ///< KV shards per sequence inside a group
  int32_t replicas = 1;           ///< attention (data-parallel) groups
  /// Attention replicas of unequal size (plan.attention.replicas listed one by one): replica
  /// r's ranks and split, replicas entries in rank order; group_size and sequence_parallel are
  /// then the largest replica's. Empty = replica r is ranks r·group_size .. (r+1)·group_size − 1
  /// with group_size / sequence_parallel each. Read it through replica_shape().
  std::vector<ReplicaShape> replica_shapes;
  /// Replica r's ranks and split, whichever way the layout gives them.
  ReplicaShape replica_shape(int r) const {
    if (!replica_shapes.empty()) return replica_shapes.at(static_cast<size_t>(r));
    return ReplicaShape{r * group_size, group_size / sequence_parallel, sequence_parallel};
  }
  int64_t batch = 0;              ///< sequences in all
  uint64_t seed = 0;              ///< the workload's seed (routing, contexts, generated data)
  double intra_node_GBps = 0;     ///< the topology's GPU–GPU link rate inside a node (rooflines)
  /// expert_holders[e]: MoE-local GPUs holding expert e, ascending; a token of attention rank
  /// a goes to holders[a mod holders.size()] (replicated experts). With expert tensor
  /// parallelism x > 1: the expert *groups* holding e (the token goes to every GPU of group
  /// holders[a mod holders.size()]).
  std::vector<std::vector<int32_t>> expert_holders;
  /// Optional (load balancing, plan/balancer.hpp): expert_route[a][e] is the MoE-local GPU
  /// (one of expert_holders[e]) serving expert e for attention rank a, replacing the
  /// `a mod holders` rule. Empty = that rule. Holds for the Program's first step; a Program
  /// whose placement changes later carries kExpertMove ops.
  std::vector<std::vector<int32_t>> expert_route;
  std::vector<int32_t> context_lengths;  ///< [sequence]: KV tokens before decode step 0
};

/// Expert load of one (step, layer, micro-batch): tokens routed to each expert.
struct RoutingSample {
  int32_t step = 0, layer = 0, micro_batch = 0;
  std::vector<int32_t> tokens_per_expert;
  /// Per-token routing, only when compiled with CompileOptions::record_token_routing (the
  /// executor's real data flow): token_experts[(q − first_sequence)·top_k + j] is the j-th
  /// expert of global sequence q, for the sequences of this micro-batch over all replicas
  /// (contiguous: the chunks of one micro-batch are adjacent).
  int64_t first_sequence = 0;
  std::vector<int32_t> token_experts;
};

/// What the metrics, tables and traces need of the scenario a Program was compiled from, so
/// that a dumped Program is run and measured without its scenario (`masep exec --program`).
/// Set by compile() and ProgramStream (plan_target in memory.hpp); written and read with the
/// Program's JSON (an older dump has none: `known` is false). Owns its data.
struct ProgramTarget {
  bool known = false;         ///< false: a hand-built Program or a dump written without it
  std::string origin;         ///< the scenario's file path, or "built-in"
  std::string plan_kind;      ///< plan::to_string(PlanKind): "ma_separation" or "colocated"
  topology::GpuSpec gpu;      ///< the topology's GPU datasheet (roofline floors)
  int32_t gpus_per_node = 0;  ///< the topology's (trace: one process per node); 0 = unknown
  /// Bytes each plan rank needs by the plan's memory model (plan_memory().total(), rank
  /// order); empty when that model could not be computed.
  std::vector<int64_t> memory_bytes;
};

struct Program {
  std::string scenario;  ///< scenario name
  models::Model model;   ///< the model the ops were compiled from (dims, dtype, activation)
  ProgramLayout layout;
  ProgramTarget target;    ///< the scenario's hardware and memory figures (metrics, tables)
  int32_t first_step = 0;  ///< first decode step compiled (CompileOptions)
  int32_t steps = 0, layers = 0, micro_batches = 0;  ///< steps compiled from first_step
  std::vector<RankInfo> ranks;                       ///< index = position in the plan (0..N-1)
  std::vector<Group> groups;
  std::vector<Collective> collectives;
  std::vector<Exchange> exchanges;  ///< grouped point-to-point calls (kExchange ops)
  std::vector<Op> ops;              ///< ops[i].id == i
  /// stream_ops[r][s]: op ids of plan rank r's stream s in execution order.
  std::vector<std::array<std::vector<OpId>, kStreamCount>> stream_ops;
  std::vector<RoutingSample> routing;

  int rank_count() const { return static_cast<int>(ranks.size()); }
};

/// Bytes each op sends in its exchange (kExchange ops; 0 elsewhere), indexed by OpId. The
/// received part is comm_bytes minus this.
std::vector<int64_t> exchange_sent_bytes(const Program& p);

/// Checks the Program's structural invariants (dense ids, matched send/recv with equal bytes,
/// collective membership, exchanges consistent with their ops, dependencies acyclic across
/// streams, every rendezvous — send/recv pair, collective, exchange transfer — deadlock-free).
/// Throws std::logic_error describing the first violation. The compiler's output always passes; the
/// tests use it.
void check_program(const Program& p);

}  // namespace masep::plan
