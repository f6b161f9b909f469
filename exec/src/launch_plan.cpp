// Program → launches for one rank (see launch_plan.hpp for the mapping).
#include "masep/exec/launch_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <stdexcept>
#include <tuple>

#include "masep/kernels/attention_config.hpp"
#include "masep/kernels/mla_attention_config.hpp"
#include "masep/plan/seeded_hash.hpp"

namespace masep::exec {

namespace {

using plan::Op;
using plan::OpId;
using plan::OpKind;
using plan::OpRole;

constexpr int64_t kBf16 = 2;

using Key = std::tuple<int32_t, int32_t, int32_t>;  // step, layer, mb
Key key_of(const Op& o) { return {o.step, o.layer, o.micro_batch}; }

// The kind each role is compiled as (a role on another kind is a broken Program).
OpKind kind_of(OpRole r) {
  switch (r) {
    case OpRole::kNorm:
    case OpRole::kRope:
    case OpRole::kAddNorm:
    case OpRole::kAct:
      return OpKind::kElementwise;
    case OpRole::kQkv:
    case OpRole::kOutProj:
    case OpRole::kRouterGemm:
      return OpKind::kGemm;
    case OpRole::kAttention:
      return OpKind::kAttention;
    case OpRole::kAttnReduce:
      return OpKind::kAllReduce;
    case OpRole::kGather:
      return OpKind::kAllGather;
    case OpRole::kScatter:
    case OpRole::kExpertReduce:  // expert tensor parallelism: refused by check_model_supported
      return OpKind::kReduceScatter;
    case OpRole::kRouter:
      return OpKind::kRouter;
    case OpRole::kPermute:
    case OpRole::kMoePermute:
      return OpKind::kPermute;
    case OpRole::kDispatch:
    case OpRole::kReturn:
    case OpRole::kExpertMove:
    case OpRole::kKvMirror:  // fault tolerance: the step's new KV entries to the mirrors
      return OpKind::kExchange;
    case OpRole::kExpertUp:
    case OpRole::kExpertDown:
      return OpKind::kGroupedGemm;
    case OpRole::kMoeUnpermute:
    case OpRole::kCombine:
      return OpKind::kCombine;
    // Issue 15's roles (refused by check_model_features before any lowering).
    case OpRole::kMlaDown:
    case OpRole::kMlaQUp:
    case OpRole::kDenseUp:
    case OpRole::kDenseDown:
      return OpKind::kGemm;
    case OpRole::kMlaNorm:
    case OpRole::kMlaRope:
    case OpRole::kDenseAct:
      return OpKind::kElementwise;
    case OpRole::kMlaAbsorbK:
    case OpRole::kMlaAbsorbV:
    case OpRole::kSharedUp:
    case OpRole::kSharedDown:
      return OpKind::kGroupedGemm;
    case OpRole::kSharedAct:
      return OpKind::kElementwise;
    case OpRole::kMlaAttention:
      return OpKind::kAttention;
    case OpRole::kOther:
    case OpRole::kCommRebuild:  // recovery work: refused by check_roles
    case OpRole::kWeightLoad:
    case OpRole::kKvRebuild:
    case OpRole::kReprefill:
      break;
  }
  return OpKind::kGemm;
}

// Name of a weight tensor (part of its seeded identity, so that every rank and the one-GPU
// reference holding the same tensor fill it alike).
const char* weight_name(OpRole r) { return r == OpRole::kNorm ? "rmsnorm" : plan::to_string(r); }

// Token routing of one (step, layer, micro-batch), resolved to ranks and rows (real data
// flow). Attention rank a (0..A-1) owns a slice of u tokens; MoE-local GPU g holds experts
// ge[g]; slot of (g, local expert l) = slot_base[g] + l.
struct MbRoute {
  std::vector<int64_t> slice_begin, slice_tokens;         // [a]
  std::vector<std::vector<int32_t>> orig, slot;           // [a][u·k]
  std::vector<std::vector<int32_t>> slot_counts;          // [a][slots]
  std::vector<std::vector<int64_t>> seg_begin, seg_rows;  // [a][g]: rows of a's permute output
  std::vector<std::vector<int64_t>> recv_begin;           // [g][a]: rows of g's receive buffer
  std::vector<std::vector<std::vector<int32_t>>> cnt;     // [g][a][l]
};

}  // namespace

bool executor_runs_precision(const models::Precision& p) {
  using models::DType;
  return (p.weights == DType::kBF16 || p.weights == DType::kFP8) && p.kv_cache == DType::kBF16 &&
         p.activations == DType::kBF16 && p.dispatch == DType::kBF16 && p.combine == DType::kBF16;
}

void check_model_supported(const plan::Program& p) {
  const models::Model& m = p.model;
  std::string what;
  if (m.is_mla() &&
      (m.mla.kv_lora_rank != kernels::kMlaLatentDim ||
       m.mla.qk_rope_head_dim != kernels::kMlaRopeDim || m.mla.qk_nope_head_dim % 8 != 0 ||
       m.mla.v_head_dim % 8 != 0 || m.mla.q_lora_rank % 8 != 0)) {
    what = fmt::format(
        "MLA attention with kv_lora_rank {}, qk_rope_head_dim {}, qk_nope_head_dim {}, "
        "v_head_dim {}, q_lora_rank {} (the MLA kernel is built for kv_lora_rank {} and "
        "qk_rope_head_dim {}; the other widths must be multiples of 8)",
        m.mla.kv_lora_rank, m.mla.qk_rope_head_dim, m.mla.qk_nope_head_dim, m.mla.v_head_dim,
        m.mla.q_lora_rank, kernels::kMlaLatentDim, kernels::kMlaRopeDim);
  } else if (m.sliding_window > 0) {
    what = fmt::format("sliding-window attention (sliding_window: {}; no windowed kernel yet)",
                       m.sliding_window);
  } else if (!executor_runs_precision(m.precision)) {
    const models::Precision& pr = m.precision;
    what = fmt::format(
        "precision other than bf16 (weights {}, kv_cache {}, activations {}, dispatch {}, "
        "combine {}; the executor runs bf16 everywhere or fp8 weights (block-scaled, W8A16) "
        "with everything else bf16, no FP8 KV/activation/payload or FP16/INT8/FP4 path yet)",
        models::to_string(pr.weights), models::to_string(pr.kv_cache),
        models::to_string(pr.activations), models::to_string(pr.dispatch),
        models::to_string(pr.combine));
  } else if (m.is_mla() && m.precision.weights != models::DType::kBF16) {
    what = fmt::format(
        "MLA attention with {} weights (the MLA projections run as bf16 cuBLAS GEMMs; FP8 "
        "weights are lowered for the qkv, out_proj and expert matrices only)",
        models::to_string(m.precision.weights));
  } else if (m.dense_layers > 0 && m.precision.weights != models::DType::kBF16) {
    what = fmt::format(
        "dense FFN layers with {} weights (dense_layers: {}; the dense down projection adds the "
        "residual in a bf16 cuBLAS GEMM, the FP8 GEMM has no residual input)",
        models::to_string(m.precision.weights), m.dense_layers);
  }
  if (!what.empty()) {
    throw std::invalid_argument(fmt::format(
        "masep exec cannot run model {}: {}. `masep sim` models it; the executor does not", m.name,
        what));
  }
  // A plan feature, not a model one: the lowering places whole experts on a GPU.
  bool tp_ops = false;
  for (const plan::Op& o : p.ops) tp_ops = tp_ops || o.role == OpRole::kExpertReduce;
  if (p.layout.expert_tensor_parallel > 1 || tp_ops) {
    throw std::invalid_argument(fmt::format(
        "masep exec cannot run expert tensor parallelism (expert_tensor_parallel: {}; each "
        "expert's FFN split over GPUs, op role expert_reduce): the executor's lowering places "
        "whole experts on a GPU. `masep sim` models it; run masep exec with "
        "expert_tensor_parallel: 1",
        p.layout.expert_tensor_parallel));
  }
}

namespace {

class Builder {
 public:
  Builder(const plan::Program& p, int rank, const PlanOptions& opt)
      : p_(p), rank_(rank), opt_(opt), m_(p.model) {
    if (rank < 0 || rank >= p.rank_count()) {
      throw std::invalid_argument(
          fmt::format("rank {} is not in the Program ({} ranks)", rank, p.rank_count()));
    }
    check_model_features();
    check_roles();
    rp_.rank = rank;
    if (m_.precision.weights == models::DType::kFP8) wfmt_ = kernels::WeightFormat::kFP8Block;
    rp_.micro_batches = std::max(1, p.micro_batches);
    for (auto& v : rp_.buffer_bytes) v.assign(static_cast<size_t>(rp_.micro_batches), 0);
    routed_rows_.assign(static_cast<size_t>(rp_.micro_batches), 0);
    h_ = m_.hidden;
    setup_layout();
  }

  RankPlan run() {
    scan_attention();
    std::array<std::vector<Launch>, plan::kStreamCount> per_stream;
    for (int st = 0; st < plan::kStreamCount; ++st) {
      const auto& ids = p_.stream_ops[static_cast<size_t>(rank_)][static_cast<size_t>(st)];
      for (size_t i = 0; i < ids.size(); ++i) {
        const Op& o = p_.ops[static_cast<size_t>(ids[i])];
        if (o.kind == OpKind::kSend || o.kind == OpKind::kRecv) {
          // A run: consecutive p2p ops of one exchange.
          size_t j = i + 1;
          while (j < ids.size()) {
            const Op& q = p_.ops[static_cast<size_t>(ids[j])];
            if ((q.kind != OpKind::kSend && q.kind != OpKind::kRecv) || q.role != o.role ||
                key_of(q) != key_of(o)) {
              break;
            }
            ++j;
          }
          std::vector<OpId> run(ids.begin() + static_cast<long>(i),
                                ids.begin() + static_cast<long>(j));
          per_stream[st].push_back(p2p(run));
          i = j - 1;
        } else {
          per_stream[st].push_back(map_op(o));
        }
        per_stream[st].back().stream = static_cast<uint8_t>(st);
        per_stream[st].back().step = o.step;
      }
    }
    merge(per_stream);
    if (rank_ < att_) {
      for (int mb = 0; mb < rp_.micro_batches; ++mb) {
        if (rp_.buffer_bytes[static_cast<size_t>(Buf::kHidden)][static_cast<size_t>(mb)] == 0) {
          continue;
        }
        const plan::RankBatch& b = batch_of(rank_, mb);
        rp_.hidden_first_seq[static_cast<size_t>(mb)] = b.first_sequence;
        if (t_ == 1) {
          rp_.outputs.push_back(
              OutputRows{BufRef{Buf::kHidden, mb, 0}, b.first_sequence, b.sequences});
        }
      }
    }
    for (const Op& o : p_.ops) {
      if (o.rank == rank_) rp_.op_ids.push_back(o.id);
    }
    if (opt_.real_gating) size_for_real_gating();
    std::sort(groups_.begin(), groups_.end());
    groups_.erase(std::unique(groups_.begin(), groups_.end()), groups_.end());
    rp_.groups = groups_;
    return std::move(rp_);
  }

 private:
  void need(Buf b, int mb, int64_t bytes) {
    auto& v = rp_.buffer_bytes[static_cast<size_t>(b)][static_cast<size_t>(mb)];
    v = std::max(v, (bytes + 255) / 256 * 256);
  }
  BufRef ref(Buf b, int mb, int64_t bytes_needed, int64_t offset = 0) {
    need(b, mb, offset + bytes_needed);
    return BufRef{b, mb, offset};
  }

  // Real gating: the MoE side's buffers for the worst case, every token of every attention
  // rank routed to this GPU (top_k rows each, all to one expert at worst); the slot-count
  // receive buffer and the uploaded row map on every rank.
  void size_for_real_gating() {
    const int64_t k = m_.top_k;
    const int g = moe_index(rank_);
    const bool moe = g >= 0 && g < moe_n_;
    for (int mb = 0; mb < rp_.micro_batches; ++mb) {
      int64_t all_rows = 0, remote_rows = 0;
      for (int a = 0; a < att_; ++a) {
        const int64_t u = batch_of(a, mb).slice_tokens;
        all_rows += u * k;
        if (!(moe && is_local(a, g))) remote_rows += u * k;
      }
      need(Buf::kRouteCounts, mb, static_cast<int64_t>(att_) * slots_ * 4);
      if (!moe) continue;
      const int64_t in_cols = m_.expert_in_columns(), ffn = m_.expert_ffn;
      if (remote_rows > 0) {
        need(Buf::kRecv, mb, remote_rows * h_ * kBf16);
        need(Buf::kRetSend, mb, remote_rows * h_ * kBf16);
      }
      need(Buf::kExpertIn, mb, all_rows * h_ * kBf16);
      need(Buf::kExpertMid, mb, all_rows * in_cols * kBf16);
      need(Buf::kExpertAct, mb, all_rows * ffn * kBf16);
      need(Buf::kExpertOut, mb, all_rows * h_ * kBf16);
      need(Buf::kRealRowMap, mb, all_rows * 4);
    }
  }

  // Every op's role is one this lowering knows, on the kind the compiler emits it as.
  // Issue 15's model features (check_model_supported), then this rank's ops: an op of an MLA,
  // dense-layer or own-width shared-expert role in a Program whose model has no such part is
  // refused alike.
  void check_model_features() const {
    check_model_supported(p_);
    for (OpId id : p_.stream_ops[static_cast<size_t>(rank_)][plan::kCompute]) {
      const Op& o = p_.ops[static_cast<size_t>(id)];
      const bool shared_role = o.role >= OpRole::kSharedUp && o.role <= OpRole::kSharedDown;
      if ((plan::is_mla_role(o.role) && !m_.is_mla()) ||
          (plan::is_dense_role(o.role) && m_.dense_layers == 0) ||
          (shared_role && !m_.shared_own_width())) {
        throw std::invalid_argument(fmt::format(
            "masep exec cannot run model {}: op {} ({}) of role {}. `masep sim` models it; the "
            "executor does not",
            m_.name, o.id, o.name, plan::to_string(o.role)));
      }
    }
  }

  void check_roles() const {
    for (const auto& list : p_.stream_ops[static_cast<size_t>(rank_)]) {
      for (OpId id : list) {
        const Op& o = p_.ops[static_cast<size_t>(id)];
        if (plan::is_fault_tolerance(o.role) && o.role != OpRole::kKvMirror) {
          throw std::invalid_argument(fmt::format(
              "op {} ({}): role {} is recovery work as the simulator models it (a "
              "compile_recovery Program, issue 18); the executor recovers for real instead",
              o.id, o.name, plan::to_string(o.role)));
        }
        if (o.role == OpRole::kExpertMove) {
          // Expert re-placement (plan.balance.rebalance_every) moves weights between steps.
          throw std::invalid_argument(
              "expert weight moves (op role expert_move, from plan.balance.rebalance_every: "
              "load-balancing re-placement) are not supported by masep exec yet; run it with "
              "rebalance_every: 0 (one placement) or simulate it with masep sim");
        }
      }
    }
    for (OpId id : p_.stream_ops[static_cast<size_t>(rank_)][plan::kCompute]) {
      const Op& o = p_.ops[static_cast<size_t>(id)];
      if (o.role != OpRole::kOther && kind_of(o.role) != o.kind) {
        throw std::invalid_argument(fmt::format("op {} ({}): role {} on an op of kind {}", o.id,
                                                o.name, plan::to_string(o.role),
                                                plan::to_string(o.kind)));
      }
    }
    for (OpId id : p_.stream_ops[static_cast<size_t>(rank_)][plan::kComm]) {
      const Op& o = p_.ops[static_cast<size_t>(id)];
      if (o.role != OpRole::kOther && kind_of(o.role) != o.kind &&
          !((o.role == OpRole::kDispatch || o.role == OpRole::kReturn) &&
            (o.kind == OpKind::kSend || o.kind == OpKind::kRecv))) {
        throw std::invalid_argument(fmt::format("op {} ({}): role {} on an op of kind {}", o.id,
                                                o.name, plan::to_string(o.role),
                                                plan::to_string(o.kind)));
      }
    }
  }

  // This rank's place in the plan, expert placement and whether the Program carries
  // per-token routing (see "Data flow" in launch_plan.hpp), all read from the Program.
  void setup_layout() {
    const plan::ProgramLayout& lay = p_.layout;
    const int n = p_.rank_count();
    ma_ = lay.separated;
    att_ = lay.attention_ranks;
    moe_base_ = lay.moe_base;
    moe_n_ = lay.moe_ranks;
    t_ = std::max(1, lay.group_size);
    if (att_ < 0 || att_ > n || moe_n_ < 0 || moe_base_ < 0 || moe_base_ + moe_n_ > n) {
      throw std::invalid_argument(
          fmt::format("layout: {} attention ranks and MoE ranks {}..{} do not fit {} ranks", att_,
                      moe_base_, moe_base_ + moe_n_ - 1, n));
    }
    // Attention replicas of unequal size (layout.replica_shapes): t_ is this rank's own
    // group's GPUs (what decides in-place residuals and gathers); an MoE rank keeps the
    // largest.
    if (!lay.replica_shapes.empty() && rank_ < att_) {
      const int r = p_.ranks[static_cast<size_t>(rank_)].replica;
      if (r < 0 || r >= static_cast<int>(lay.replica_shapes.size())) {
        throw std::invalid_argument(fmt::format("rank {}: replica {} is not in the layout's {}",
                                                rank_, r, lay.replica_shapes.size()));
      }
      t_ = std::max(1, lay.replica_shape(r).size());
    }
    for (int a = 0; a < att_; ++a) {
      if (static_cast<int>(p_.ranks[a].batches.size()) != rp_.micro_batches) {
        throw std::invalid_argument(fmt::format("rank {}: {} batches for {} micro-batches", a,
                                                p_.ranks[a].batches.size(), rp_.micro_batches));
      }
    }
    // Experts held by each MoE-local GPU (RankInfo::experts, ascending: the local slot order)
    // and the holders of each expert (ProgramLayout::expert_holders), checked against each
    // other: a Program whose two views disagree has no real data flow.
    ge_.assign(static_cast<size_t>(moe_n_), {});
    for (int g = 0; g < moe_n_; ++g) {
      const auto& held = p_.ranks[static_cast<size_t>(moe_base_ + g)].experts;
      ge_[g].assign(held.begin(), held.end());
    }
    bool placement_ok = static_cast<int>(lay.expert_holders.size()) == m_.experts;
    for (size_t e = 0; placement_ok && e < lay.expert_holders.size(); ++e) {
      placement_ok = !lay.expert_holders[e].empty();
      for (int g : lay.expert_holders[e]) {
        placement_ok = placement_ok && g >= 0 && g < moe_n_ &&
                       std::binary_search(ge_[g].begin(), ge_[g].end(), static_cast<int>(e));
      }
    }
    if (placement_ok) {
      eg_.reserve(lay.expert_holders.size());
      for (const auto& h : lay.expert_holders) eg_.emplace_back(h.begin(), h.end());
    }
    slot_base_.assign(static_cast<size_t>(moe_n_) + 1, 0);
    for (int g = 0; g < moe_n_; ++g) {
      slot_base_[g + 1] = slot_base_[g] + static_cast<int32_t>(ge_[g].size());
    }
    slots_ = slot_base_.back();
    for (const auto& rs : p_.routing) routing_[{rs.step, rs.layer, rs.micro_batch}] = &rs;
    real_ = m_.shared_experts == 0 && !p_.routing.empty() && slots_ <= 1024 && !eg_.empty();
    for (const auto& rs : p_.routing) real_ = real_ && !rs.token_experts.empty();
    rp_.real_data_flow = real_;
    if (real_) {
      rp_.gating.attention_ranks = att_;
      rp_.gating.moe_base = moe_base_;
      rp_.gating.moe_ranks = moe_n_;
      rp_.gating.colocated = !ma_;
      rp_.gating.slot_base = slot_base_;
      rp_.expert_slot.assign(static_cast<size_t>(att_),
                             std::vector<int32_t>(static_cast<size_t>(m_.experts), -1));
      for (int a = 0; a < att_; ++a) {
        for (int e = 0; e < m_.experts && e < static_cast<int>(eg_.size()); ++e) {
          if (eg_[static_cast<size_t>(e)].empty()) continue;
          const int g = holder_for(a, e);
          const auto& list = ge_[g];
          const int l =
              static_cast<int>(std::lower_bound(list.begin(), list.end(), e) - list.begin());
          rp_.expert_slot[a][e] = slot_base_[g] + l;
        }
      }
    }
    if (opt_.real_gating && !real_) {
      throw std::invalid_argument(
          "real gating needs the executor's real data flow, which this plan does not have: " +
          (m_.shared_experts > 0 ? std::string("the model has shared experts")
                                 : std::string("the Program carries no per-token routing")));
    }
    rp_.real_gating = opt_.real_gating;
    if (!real_) {
      rp_.verify_blocker = m_.shared_experts > 0
                               ? "the model has shared experts (not in the executor's data flow)"
                               : "the Program carries no per-token routing";
    } else if (p_.layout.group_size != 1) {
      rp_.verify_blocker =
          "the attention group has more than one GPU (head or sequence parallelism): weight "
          "sharding is not seeded consistently with the single-GPU reference";
    } else if (m_.dtype != models::DType::kBF16) {
      rp_.verify_blocker = "the model's dtype is not bf16";
    }
    rp_.hidden_first_seq.assign(static_cast<size_t>(rp_.micro_batches), -1);
    kv_append_ = p_.ranks[static_cast<size_t>(rank_)].kv_append;
  }

  // The MoE-local GPU serving expert e for attention rank a: the layout's expert_route when
  // the load balancer set one, else holders[a mod copies] (ProgramLayout).
  int holder_for(int a, int e) const {
    const auto& route = p_.layout.expert_route;
    if (!route.empty()) return route.at(static_cast<size_t>(a)).at(static_cast<size_t>(e));
    const auto& holders = eg_.at(static_cast<size_t>(e));
    return holders[static_cast<size_t>(a) % holders.size()];
  }

  // The sequences of attention rank `a` in micro-batch `mb` (the compiler's partition).
  const plan::RankBatch& batch_of(int a, int mb) const {
    return p_.ranks[static_cast<size_t>(a)].batches[static_cast<size_t>(mb)];
  }

  // The routing of (step, layer, mb) resolved to ranks and rows; throws when the Program's
  // table is inconsistent with its plan.
  const MbRoute& route(const Key& k) {
    auto it = routes_.find(k);
    if (it != routes_.end()) return it->second;
    const auto rit = routing_.find(k);
    if (rit == routing_.end()) {
      throw std::invalid_argument(fmt::format("no routing sample for step {} layer {} mb {}",
                                              std::get<0>(k), std::get<1>(k), std::get<2>(k)));
    }
    const plan::RoutingSample& rs = *rit->second;
    const int mb = std::get<2>(k), topk = m_.top_k;
    MbRoute r;
    r.slice_begin.assign(att_, 0);
    r.slice_tokens.assign(att_, 0);
    r.orig.resize(att_);
    r.slot.resize(att_);
    r.slot_counts.assign(att_, std::vector<int32_t>(static_cast<size_t>(slots_), 0));
    r.seg_begin.assign(att_, std::vector<int64_t>(static_cast<size_t>(moe_n_), 0));
    r.seg_rows.assign(att_, std::vector<int64_t>(static_cast<size_t>(moe_n_), 0));
    r.cnt.assign(moe_n_, std::vector<std::vector<int32_t>>(att_));
    for (int g = 0; g < moe_n_; ++g) {
      for (int a = 0; a < att_; ++a) r.cnt[g][a].assign(ge_[g].size(), 0);
    }
    for (int a = 0; a < att_; ++a) {
      const int64_t b = batch_of(a, mb).slice_first, u = batch_of(a, mb).slice_tokens;
      r.slice_begin[a] = b;
      r.slice_tokens[a] = u;
      for (int64_t q = b; q < b + u; ++q) {
        const int64_t row = q - rs.first_sequence;
        if (row < 0 || (row + 1) * topk > static_cast<int64_t>(rs.token_experts.size())) {
          throw std::invalid_argument(
              fmt::format("routing sample (step {}, layer {}, mb {}) does not cover sequence {}",
                          rs.step, rs.layer, rs.micro_batch, q));
        }
        for (int j = 0; j < topk; ++j) {
          const int e = rs.token_experts[static_cast<size_t>(row * topk + j)];
          const int g = holder_for(a, e);
          const auto& list = ge_[g];
          const int l =
              static_cast<int>(std::lower_bound(list.begin(), list.end(), e) - list.begin());
          const int32_t sl = slot_base_[g] + l;
          r.orig[a].push_back(e);
          r.slot[a].push_back(sl);
          r.slot_counts[a][sl]++;
          r.seg_rows[a][g]++;
          r.cnt[g][a][l]++;
        }
      }
      int64_t acc = 0;
      for (int g = 0; g < moe_n_; ++g) {
        r.seg_begin[a][g] = acc;
        acc += r.seg_rows[a][g];
      }
    }
    r.recv_begin.assign(moe_n_, std::vector<int64_t>(static_cast<size_t>(att_), 0));
    for (int g = 0; g < moe_n_; ++g) {
      int64_t acc = 0;
      for (int a = 0; a < att_; ++a) {
        r.recv_begin[g][a] = acc;
        if (!is_local(a, g)) acc += r.seg_rows[a][g];
      }
    }
    return routes_.emplace(k, std::move(r)).first->second;
  }

  bool is_local(int a, int g) const { return !ma_ && a == g; }
  int moe_index(int rank) const { return rank - moe_base_; }

  // Row offset (bytes) of a point-to-point part in its buffer under the real data flow:
  // dispatch send a→g at a's segment for g; dispatch receive at g from a and return send g→a
  // at g's receive position of a; return receive at a from g at a's segment for g.
  int64_t real_offset(const Op& o, bool send, int peer, int64_t bytes) {
    const MbRoute& r = route(key_of(o));
    const bool ret = o.role == OpRole::kReturn;
    const int a = ret ? (send ? peer : rank_) : (send ? rank_ : peer);
    const int g = moe_index(ret ? (send ? rank_ : peer) : (send ? peer : rank_));
    if (a < 0 || a >= att_ || g < 0 || g >= moe_n_) {
      throw std::invalid_argument(
          fmt::format("op {} ({}): peer {} is not an attention/MoE pair", o.id, o.name, peer));
    }
    const int64_t rows = r.seg_rows[a][g];
    if (rows * h_ * kBf16 != bytes) {
      throw std::invalid_argument(
          fmt::format("op {} ({}): {} bytes, but the routing gives {} rows of hidden {} from rank "
                      "{} to rank {}",
                      o.id, o.name, bytes, rows, h_, a, moe_base_ + g));
    }
    const bool at_attention = (ret && !send) || (!ret && send);
    const int64_t row = at_attention ? r.seg_begin[a][g] : r.recv_begin[g][a];
    return row * h_ * kBf16;
  }

  // Row map of (step, layer, mb) on this MoE rank: expert-input row → received row (≥ 0) or
  // local permute-output row (−row−1), grouped by local expert, senders ascending.
  int64_t row_map(const Op& o, int64_t expect_rows) {
    const auto k = key_of(o);
    auto it = maps_.find(k);
    if (it != maps_.end()) return it->second;
    const MbRoute& r = route(k);
    const int g = moe_index(rank_);
    const int64_t off = static_cast<int64_t>(rp_.int_pool.size());
    for (size_t l = 0; l < ge_[g].size(); ++l) {
      for (int a = 0; a < att_; ++a) {
        int64_t start = 0;
        for (size_t l2 = 0; l2 < l; ++l2) start += r.cnt[g][a][l2];
        const int32_t c = r.cnt[g][a][l];
        for (int32_t j = 0; j < c; ++j) {
          if (is_local(a, g)) {
            rp_.int_pool.push_back(-static_cast<int32_t>(r.seg_begin[a][g] + start + j) - 1);
          } else {
            rp_.int_pool.push_back(static_cast<int32_t>(r.recv_begin[g][a] + start + j));
          }
        }
      }
    }
    const int64_t rows = static_cast<int64_t>(rp_.int_pool.size()) - off;
    if (rows != expect_rows) {
      throw std::invalid_argument(
          fmt::format("op {} ({}): the routing gives {} rows, the Program's expert loads {}", o.id,
                      o.name, rows, expect_rows));
    }
    maps_[k] = off;
    return off;
  }

  // The attention op of each (step, layer, micro-batch) on this rank: its rope launch takes
  // the attention's KV lengths as positions.
  void scan_attention() {
    for (OpId id : p_.stream_ops[static_cast<size_t>(rank_)][plan::kCompute]) {
      const Op& o = p_.ops[static_cast<size_t>(id)];
      if (o.role == OpRole::kAttention || o.role == OpRole::kMlaAttention) {
        attn_of_[key_of(o)] = &o;
      }
      // The local query heads of MLA attention (every MLA op of the rank has them).
      if (o.role == OpRole::kMlaAttention && mla_heads_ <= 0) mla_heads_ = o.heads;
    }
  }

  // A weight matrix [n, k] of a GEMM: in the model's weight format (fp8 block-scaled or bf16).
  int64_t matrix_weight(const Op& o, int index, int64_t n, int64_t k, Launch& l) {
    l.weight_format = wfmt_;
    const int64_t bytes = kernels::weight_bytes(wfmt_, n, k);
    return weight(o, weight_name(o.role), index, bytes, wfmt_, n, k);
  }

  // A weight tensor of `bytes`, registered once per (layer, name, index); a matrix from
  // matrix_weight gives its format and shape [rows, cols] (an FP8 one's scales are in `bytes`).
  int64_t weight(const Op& o, const std::string& name, int index, int64_t bytes,
                 kernels::WeightFormat format = kernels::WeightFormat::kBF16, int64_t rows = 0,
                 int64_t cols = 0) {
    const auto key = std::make_tuple(o.layer, name, index);
    auto it = weights_.find(key);
    if (it != weights_.end()) {
      if (it->second.second < bytes) {
        throw std::invalid_argument(
            fmt::format("op {} ({}): weight {} changes size", o.id, o.name, name));
      }
      return it->second.first;
    }
    const int64_t off = rp_.weight_bytes;
    rp_.weight_bytes += (bytes + 255) / 256 * 256;
    weights_.emplace(key, std::make_pair(off, bytes));
    // Global identity of the tensor: experts by their global index (shared ones after the
    // routed ones), everything else by (layer, name).
    int64_t global = index;
    if (o.kind == OpKind::kGroupedGemm) {
      const auto& held = p_.ranks[static_cast<size_t>(rank_)].experts;
      global = index < static_cast<int>(held.size())
                   ? held[static_cast<size_t>(index)]
                   : m_.experts + (index - static_cast<int64_t>(held.size()));
    }
    WeightTensor wt;
    wt.offset_bytes = off;
    wt.format = format;
    wt.rows = rows;
    wt.cols = cols;
    wt.elements = rows > 0 ? rows * cols : bytes / kBf16;
    using plan::splitmix64;
    wt.tag =
        splitmix64(splitmix64(splitmix64(static_cast<uint64_t>(o.layer)) ^ plan::fnv1a64(name)) ^
                   static_cast<uint64_t>(global));
    if (o.role == OpRole::kNorm || o.role == OpRole::kAddNorm ||
        o.role == OpRole::kMlaNorm) {  // norm gains around 1
      wt.scale = 0.1f;
      wt.shift = 1.0f;
    }
    rp_.weight_tensors.push_back(wt);
    return off;
  }

  Launch base(const Op& o, LaunchKind kind) {
    Launch l;
    l.kind = kind;
    l.ops = {o.id};
    return l;
  }

  // A dense FFN layer on an attention (or co-located) rank, for its token slice u (after
  // add_norm: kSliceNormed, and the residual updated in place in kHidden's slice rows):
  //   kDenseUp   → kGemm  kSliceNormed [u, h] · W[in, h]ᵀ → kExpertMid [u, in]
  //   kDenseAct  → kSwiGlu / kGelu  kExpertMid → kExpertAct [u, f]
  //   kDenseDown → kGemm with `residual`: kExpertAct [u, f] · W[h, f]ᵀ + the residual (aux =
  //                kHidden's slice) → the layer output, where combine writes it in a MoE layer
  //                (kHidden in place for a one-GPU group, else kLayerOut for the next gather)
  // The expert buffers are free here: a dense layer has no MoE work on this rank.
  Launch dense(const Op& o) {
    const int mb = o.micro_batch;
    const int64_t dt = kBf16;
    if (rank_ >= att_) bad_shape(o, "a dense-layer op on a rank that is not an attention rank");
    const plan::RankBatch& b = batch_of(rank_, mb);
    const int64_t u = b.slice_tokens, f = m_.dense_ffn, in = m_.ffn_in_columns(m_.dense_ffn);
    switch (o.role) {
      case OpRole::kDenseUp:
      case OpRole::kDenseDown: {
        const bool up = o.role == OpRole::kDenseUp;
        if (o.m != u || o.n != (up ? in : h_) || o.k != (up ? h_ : f)) {
          bad_shape(o, up ? "dense_up needs m = slice tokens, n = gate/up columns, k = hidden"
                          : "dense_down needs m = slice tokens, n = hidden, k = dense_ffn");
        }
        Launch l = base(o, LaunchKind::kGemm);
        l.m = o.m;
        l.n = o.n;
        l.k = o.k;
        l.in = ref(up ? Buf::kSliceNormed : Buf::kExpertAct, mb, o.m * o.k * dt);
        l.weight_offsets = {matrix_weight(o, 0, o.n, o.k, l)};
        if (up) {
          l.out = ref(Buf::kExpertMid, mb, o.m * o.n * dt);
        } else {
          l.residual = true;
          l.aux = ref(Buf::kHidden, mb, u * h_ * dt, b.slice_offset * h_ * dt);
          l.out = t_ == 1 ? l.aux : ref(Buf::kLayerOut, mb, u * h_ * dt);
        }
        return l;
      }
      default: {  // kDenseAct
        if (o.m != u || o.n != f) bad_shape(o, "dense_act needs m = slice tokens, n = dense_ffn");
        const bool swiglu = m_.activation == models::Activation::kSwiGLU;
        Launch l = base(o, swiglu ? LaunchKind::kSwiGlu : LaunchKind::kGelu);
        l.tokens = o.m;
        l.cols = f;
        l.in = ref(Buf::kExpertMid, mb, o.m * in * dt);
        l.out = ref(Buf::kExpertAct, mb, o.m * f * dt);
        return l;
      }
    }
  }

  // Shared experts of their own width on an MoE (or co-located) rank: their rows follow the
  // routed experts' rows in kExpertIn and kExpertOut (as shared experts of the routed width do
  // in the routed GEMMs' last groups), so moe_unpermute reads all rows alike; the routed
  // experts' kExpertMid / kExpertAct are consumed by then and are reused:
  //   kSharedUp   → kGroupedGemm  kExpertIn rows R.. (R = routed rows) → kExpertMid [S, in_s]
  //   kSharedAct  → kSwiGlu / kGelu  kExpertMid → kExpertAct [S, f_s]
  //   kSharedDown → kGroupedGemm  kExpertAct → kExpertOut rows R..
  // The weights are the shared experts' (global index experts + s, as in the routed GEMMs).
  Launch shared_expert(const Op& o) {
    const int mb = o.micro_batch;
    const int64_t dt = kBf16;
    const int64_t sf = m_.shared_ffn(), s_in = m_.ffn_in_columns(sf);
    const auto& held = p_.ranks[static_cast<size_t>(rank_)].experts;
    const int64_t R = routed_rows_[static_cast<size_t>(mb)];
    if (o.role == OpRole::kSharedAct) {
      const int64_t rows = o.m;
      if (rows <= 0 || o.n != sf) bad_shape(o, "shared_act needs m = shared rows, n = its width");
      const bool swiglu = m_.activation == models::Activation::kSwiGLU;
      Launch l = base(o, swiglu ? LaunchKind::kSwiGlu : LaunchKind::kGelu);
      l.tokens = rows;
      l.cols = sf;
      l.in = ref(Buf::kExpertMid, mb, rows * s_in * dt);
      l.out = ref(Buf::kExpertAct, mb, rows * sf * dt);
      return l;
    }
    const bool up = o.role == OpRole::kSharedUp;
    if (static_cast<int>(o.group_m.size()) != m_.shared_experts || o.n != (up ? s_in : h_) ||
        o.k != (up ? h_ : sf)) {
      bad_shape(o, "a shared-expert GEMM needs one group per shared expert and its width");
    }
    int64_t rows = 0;
    for (int32_t g : o.group_m) {
      if (g < 0) bad_shape(o, "negative rows");
      rows += g;
    }
    Launch l = base(o, LaunchKind::kGroupedGemm);
    l.n = o.n;
    l.k = o.k;
    l.m = rows;
    l.group_m = o.group_m;
    l.in = up ? ref(Buf::kExpertIn, mb, rows * h_ * dt, R * h_ * dt)
              : ref(Buf::kExpertAct, mb, rows * sf * dt);
    l.out = up ? ref(Buf::kExpertMid, mb, rows * s_in * dt)
               : ref(Buf::kExpertOut, mb, rows * h_ * dt, R * h_ * dt);
    for (size_t e = 0; e < o.group_m.size(); ++e) {
      l.weight_offsets.push_back(matrix_weight(o, static_cast<int>(held.size() + e), o.n, o.k, l));
    }
    return l;
  }

  Launch copy(const Op& o) {
    Launch l = base(o, LaunchKind::kCopy);
    l.bytes = std::max<int64_t>(o.hbm_bytes / 2, 0) / 16 * 16;
    l.in = ref(Buf::kScratchA, 0, l.bytes);
    l.out = ref(Buf::kScratchB, 0, l.bytes);
    rp_.generic_copies++;
    return l;
  }

  Launch copy_between(const Op& o, Buf from, Buf to, int64_t bytes) {
    Launch l = base(o, LaunchKind::kCopy);
    l.bytes = bytes;
    l.in = ref(from, o.micro_batch, bytes);
    l.out = ref(to, o.micro_batch, bytes);
    return l;
  }

  // Throws: the op's shape fields do not hold what its role needs.
  [[noreturn]] void bad_shape(const Op& o, const char* what) const {
    throw std::invalid_argument(
        fmt::format("op {} ({}, role {}): {}", o.id, o.name, plan::to_string(o.role), what));
  }

  // The rows an op works on are those the compiler gave this rank: the group chunk's
  // sequences (T) for the ops before the reduce-scatter, the rank's token slice (u) after it,
  // and at most every token's top_k + shared rows on the MoE side. A Program read from a file
  // is untrusted input: its sizes bound what this plan allocates.
  void check_rows(const Op& o) const {
    if (o.role == OpRole::kOther || o.micro_batch < 0 || o.micro_batch >= rp_.micro_batches) {
      return;
    }
    const bool attention_side = rank_ < att_;
    const int64_t T = attention_side ? batch_of(rank_, o.micro_batch).sequences : 0;
    const int64_t u = attention_side ? batch_of(rank_, o.micro_batch).slice_tokens : 0;
    int64_t want = -1;
    switch (o.role) {
      case OpRole::kNorm:
      case OpRole::kQkv:
      case OpRole::kRope:
      case OpRole::kMlaDown:
      case OpRole::kMlaNorm:
      case OpRole::kMlaQUp:
      case OpRole::kMlaRope:
        want = T;
        break;
      case OpRole::kAttention:
      case OpRole::kMlaAttention:
        if (o.batch != T) bad_shape(o, "attention batch is not the rank's sequences");
        break;
      case OpRole::kMlaAbsorbK:
        for (int32_t g : o.group_m) {
          if (g != T) bad_shape(o, "absorbed-K rows per head are not the rank's sequences");
        }
        break;
      case OpRole::kMlaAbsorbV:
        for (int32_t g : o.group_m) {
          if (g < 0 || g > T) bad_shape(o, "absorbed-V rows per head exceed the rank's sequences");
        }
        break;
      case OpRole::kAddNorm:
      case OpRole::kRouterGemm:
      case OpRole::kRouter:
      case OpRole::kPermute:
      case OpRole::kCombine:
        want = u;
        break;
      case OpRole::kMoePermute:
      case OpRole::kMoeUnpermute:
      case OpRole::kAct: {
        const int64_t most = p_.layout.batch * (m_.top_k + m_.shared_experts);
        if (o.m > most) bad_shape(o, "more expert rows than every token's experts");
        break;
      }
      default:
        break;
    }
    if (want >= 0 && o.m != want) {
      bad_shape(
          o, fmt::format("m = {} rows, the rank holds {} in this micro-batch", o.m, want).c_str());
    }
  }

  Launch map_op(const Op& o) {
    const int mb = o.micro_batch;
    const int64_t dt = kBf16;
    const int64_t shared = m_.shared_experts > 0 ? 1 : 0;
    if (o.role != OpRole::kOther && rank_ >= att_ &&
        (o.role == OpRole::kNorm || o.role == OpRole::kQkv || o.role == OpRole::kRope ||
         o.role == OpRole::kAttention || o.role == OpRole::kOutProj || o.role == OpRole::kAddNorm ||
         o.role == OpRole::kRouterGemm || o.role == OpRole::kRouter || o.role == OpRole::kPermute ||
         o.role == OpRole::kCombine || plan::is_mla_role(o.role))) {
      bad_shape(o, "an attention-side op on a rank that is not an attention rank");
    }
    check_rows(o);
    switch (o.role) {
      case OpRole::kQkv:
      case OpRole::kOutProj:
      case OpRole::kRouterGemm: {
        Launch l = base(o, LaunchKind::kGemm);
        l.m = o.m;
        l.n = o.n;
        l.k = o.k;
        Buf a = Buf::kNormed, cb = Buf::kQkv;
        if (o.role == OpRole::kOutProj) {
          a = m_.is_mla() ? Buf::kMlaV : Buf::kAttnOut;
          cb = t_ == 1 ? Buf::kAttnSlice : Buf::kProj;
        }
        if (o.role == OpRole::kRouterGemm) a = Buf::kSliceNormed, cb = Buf::kLogits;
        l.in = ref(a, mb, o.m * o.k * dt);
        l.out = ref(cb, mb, o.m * o.n * dt);
        l.weight_offsets = {o.role == OpRole::kRouterGemm
                                ? weight(o, weight_name(o.role), 0, o.n * o.k * dt)
                                : matrix_weight(o, 0, o.n, o.k, l)};
        return l;
      }
      case OpRole::kExpertUp:
      case OpRole::kExpertDown: {
        Launch l = base(o, LaunchKind::kGroupedGemm);
        l.n = o.n;
        l.k = o.k;
        l.group_m = o.group_m;
        int64_t rows = 0;
        for (int32_t g : o.group_m) rows += g;
        l.m = rows;
        Buf a = Buf::kExpertIn, cb = Buf::kExpertMid;
        if (o.role == OpRole::kExpertDown) a = Buf::kExpertAct, cb = Buf::kExpertOut;
        // Shared experts of their own width take the rows after these (shared_expert()).
        routed_rows_[static_cast<size_t>(mb)] = rows;
        l.in = ref(a, mb, rows * o.k * dt);
        l.out = ref(cb, mb, rows * o.n * dt);
        for (size_t e = 0; e < o.group_m.size(); ++e) {
          l.weight_offsets.push_back(matrix_weight(o, static_cast<int>(e), o.n, o.k, l));
        }
        return l;
      }
      case OpRole::kNorm: {
        if (o.m <= 0 || o.n != h_) bad_shape(o, "rmsnorm needs m = tokens > 0, n = hidden");
        Launch l = base(o, LaunchKind::kRmsNorm);
        l.tokens = o.m;
        l.cols = h_;
        l.in = ref(Buf::kHidden, mb, o.m * h_ * dt);
        l.out = ref(Buf::kNormed, mb, o.m * h_ * dt);
        l.weight_offsets = {weight(o, weight_name(o.role), 0, h_ * dt)};
        return l;
      }
      case OpRole::kAddNorm: {
        if (o.m <= 0 || o.n != h_) bad_shape(o, "add_norm needs m = tokens > 0, n = hidden");
        Launch l = base(o, LaunchKind::kAddRmsNorm);
        l.tokens = o.m;
        l.cols = h_;
        l.in = ref(Buf::kAttnSlice, mb, o.m * h_ * dt);  // x
        l.aux = ref(Buf::kHidden, mb, o.m * h_ * dt,
                    batch_of(rank_, mb).slice_offset * h_ * dt);  // residual
        l.out = ref(Buf::kSliceNormed, mb, o.m * h_ * dt);
        l.weight_offsets = {weight(o, weight_name(o.role), 0, h_ * dt)};
        return l;
      }
      case OpRole::kRope: {
        const auto it = attn_of_.find(key_of(o));
        if (it == attn_of_.end())
          bad_shape(o, "no attention op in its step, layer and micro-batch");
        if (o.m <= 0 || o.heads <= 0 || o.kv_heads <= 0 || o.head_dim <= 0) {
          bad_shape(o, "rope needs m = tokens and the local head counts");
        }
        Launch l = base(o, LaunchKind::kRope);
        l.tokens = o.m;
        l.heads = o.heads;
        l.kv_heads = o.kv_heads;
        l.head_dim = o.head_dim;
        l.cols = static_cast<int64_t>(o.heads + 2 * o.kv_heads) * o.head_dim;
        l.in = ref(Buf::kQkv, mb, o.m * l.cols * dt);
        // positions: the attention op's KV lengths (filled when the attention is mapped)
        rope_waiting_[it->second->id].push_back(rope_count_++);
        return l;  // kv_lens_offset is set by finish_rope()
      }
      case OpRole::kAct: {
        if (o.m <= 0 || o.n != m_.expert_ffn) bad_shape(o, "act needs m = rows, n = expert_ffn");
        const int64_t rows = o.m, ffn = m_.expert_ffn;
        const int64_t in_cols = m_.expert_in_columns();
        const bool swiglu = m_.activation == models::Activation::kSwiGLU;
        Launch l = base(o, swiglu ? LaunchKind::kSwiGlu : LaunchKind::kGelu);
        l.tokens = rows;
        l.cols = ffn;
        l.in = ref(Buf::kExpertMid, mb, rows * in_cols * dt);
        l.out = ref(Buf::kExpertAct, mb, rows * ffn * dt);
        return l;
      }
      case OpRole::kAttention:
        return attention(o);
      case OpRole::kRouter: {
        const int64_t u = o.m;
        if (u <= 0 || o.n != m_.experts) bad_shape(o, "router needs m = tokens, n = experts");
        Launch l = base(o, LaunchKind::kRouter);
        l.tokens = u;
        l.experts = m_.experts;
        l.top_k = m_.top_k;
        l.in = ref(Buf::kLogits, mb, u * m_.experts * dt);
        l.out = ref(Buf::kTopkIds, mb, u * m_.top_k * 4);
        l.aux = ref(Buf::kTopkWeights, mb, u * m_.top_k * 4);
        l.in2 = ref(Buf::kExpertCounts, mb, std::max(m_.experts, slots_) * 4);
        if (real_ && opt_.real_gating) {
          l.route_offset = static_cast<int64_t>(rp_.int_pool.size());
          l.slots = slots_;
          l.real_gating = true;
          const auto& table = rp_.expert_slot[static_cast<size_t>(rank_)];
          rp_.int_pool.insert(rp_.int_pool.end(), table.begin(), table.end());
        } else if (real_) {
          const MbRoute& r = route(key_of(o));
          if (r.slice_tokens[rank_] != u) {
            throw std::invalid_argument(
                fmt::format("op {} (router): {} tokens, the routing gives this rank {}", o.id, u,
                            r.slice_tokens[rank_]));
          }
          l.route_offset = static_cast<int64_t>(rp_.int_pool.size());
          l.slots = slots_;
          auto& pool = rp_.int_pool;
          pool.insert(pool.end(), r.orig[rank_].begin(), r.orig[rank_].end());
          pool.insert(pool.end(), r.slot[rank_].begin(), r.slot[rank_].end());
          pool.insert(pool.end(), r.slot_counts[rank_].begin(), r.slot_counts[rank_].end());
        }
        return l;
      }
      case OpRole::kPermute: {
        const int64_t u = o.m;
        if (u <= 0 || o.n != h_) bad_shape(o, "permute needs m = tokens, n = hidden");
        Launch l = base(o, LaunchKind::kPermute);
        l.tokens = u;
        l.cols = h_;
        l.experts = real_ ? slots_ : m_.experts;
        l.top_k = m_.top_k;
        const int64_t rows = u * m_.top_k;
        l.in = ref(Buf::kSliceNormed, mb, u * h_ * dt);
        l.out = ref(Buf::kSend, mb, rows * h_ * dt);
        // router outputs and permute bookkeeping
        need(Buf::kTopkIds, mb, rows * 4);
        need(Buf::kExpertCounts, mb, l.experts * 4);
        need(Buf::kPermutedRow, mb, rows * 4);
        need(Buf::kSourceToken, mb, rows * 4);
        need(Buf::kExpertOffsets, mb, (l.experts + 1) * 4);
        return l;
      }
      case OpRole::kMoePermute: {
        const int64_t rows = o.m;
        if (rows <= 0 || o.n != h_) bad_shape(o, "moe_permute needs m = expert rows, n = hidden");
        if (!real_) return copy_between(o, Buf::kRecv, Buf::kExpertIn, o.k * h_ * dt);
        Launch l = base(o, LaunchKind::kGatherRows);
        l.tokens = rows;
        l.cols = h_;
        l.map_offset = row_map(o, rows);
        const MbRoute& r = route(key_of(o));
        const int g = moe_index(rank_);
        int64_t recv_rows = 0, local_rows = 0;
        for (int a = 0; a < att_; ++a) {
          (is_local(a, g) ? local_rows : recv_rows) += r.seg_rows[a][g];
        }
        if (is_local(rank_, g)) local_rows = r.seg_begin[rank_][g] + r.seg_rows[rank_][g];
        l.in = ref(Buf::kRecv, mb, recv_rows * h_ * dt);
        l.in2 = ref(Buf::kSend, mb, local_rows * h_ * dt);
        l.out = ref(Buf::kExpertIn, mb, rows * h_ * dt);
        return l;
      }
      case OpRole::kCombine: {
        const int64_t u = o.m;
        if (u <= 0 || o.n != h_) bad_shape(o, "combine needs m = tokens, n = hidden");
        (void)shared;
        Launch l = base(o, LaunchKind::kCombine);
        l.tokens = u;
        l.cols = h_;
        l.top_k = m_.top_k;
        l.in = ref(Buf::kRetRecv, mb, u * m_.top_k * h_ * dt);
        l.aux = ref(Buf::kHidden, mb, u * h_ * dt,
                    batch_of(rank_, mb).slice_offset * h_ * dt);  // residual
        // One-GPU attention group: no all-gather, the next layer reads kHidden (in place).
        l.out = t_ == 1 ? l.aux : ref(Buf::kLayerOut, mb, u * h_ * dt);
        need(Buf::kPermutedRow, mb, u * m_.top_k * 4);
        need(Buf::kTopkWeights, mb, u * m_.top_k * 4);
        return l;
      }
      case OpRole::kMoeUnpermute: {
        const int64_t rows = o.m;
        if (rows <= 0 || o.n != h_) bad_shape(o, "moe_unpermute needs m = expert rows, n = hidden");
        if (!real_) {
          need(Buf::kExpertOut, mb, rows * h_ * dt);
          return copy_between(o, Buf::kExpertOut, Buf::kRetSend, std::min(o.k, rows) * h_ * dt);
        }
        Launch l = base(o, LaunchKind::kScatterRows);
        l.tokens = rows;
        l.cols = h_;
        l.map_offset = row_map(o, rows);
        const MbRoute& r = route(key_of(o));
        const int g = moe_index(rank_);
        int64_t recv_rows = 0;
        for (int a = 0; a < att_; ++a) recv_rows += is_local(a, g) ? 0 : r.seg_rows[a][g];
        const int64_t local_rows =
            is_local(rank_, g) ? r.seg_begin[rank_][g] + r.seg_rows[rank_][g] : 0;
        l.in = ref(Buf::kExpertOut, mb, rows * h_ * dt);
        l.out = ref(Buf::kRetSend, mb, recv_rows * h_ * dt);
        l.aux = ref(Buf::kRetRecv, mb, local_rows * h_ * dt);
        return l;
      }
      case OpRole::kAttnReduce:
      case OpRole::kGather:
      case OpRole::kScatter:
        return collective(o);
      case OpRole::kDispatch:
      case OpRole::kReturn:
        return exchange(o);
      case OpRole::kMlaDown:
      case OpRole::kMlaNorm:
      case OpRole::kMlaQUp:
      case OpRole::kMlaAbsorbK:
      case OpRole::kMlaRope:
      case OpRole::kMlaAttention:
      case OpRole::kMlaAbsorbV:
        return mla(o);
      case OpRole::kDenseUp:
      case OpRole::kDenseAct:
      case OpRole::kDenseDown:
        return dense(o);
      case OpRole::kSharedUp:
      case OpRole::kSharedAct:
      case OpRole::kSharedDown:
        return shared_expert(o);
      case OpRole::kExpertReduce:  // refused by check_model_supported
      case OpRole::kExpertMove:    // refused by check_roles
      case OpRole::kKvMirror:  // the step's new KV entries to the mirrors: their bytes
        return exchange(o);
      case OpRole::kCommRebuild:
      case OpRole::kWeightLoad:
      case OpRole::kKvRebuild:
      case OpRole::kReprefill:
        // check_model_features / check_roles refused these before; never reached.
        throw std::invalid_argument(fmt::format("op {} ({}): role {} has no lowering", o.id,
                                                o.name, plan::to_string(o.role)));
      case OpRole::kOther:
        break;
    }
    // No role: a compute op is timed as a device copy of its bytes (counted as generic); a
    // communication op runs as what its kind says.
    switch (o.kind) {
      case OpKind::kAllReduce:
      case OpKind::kAllGather:
      case OpKind::kReduceScatter:
        return collective(o);
      case OpKind::kAllToAll:
        return all_to_all(o);
      case OpKind::kExchange:
        return exchange(o);
      case OpKind::kSend:
      case OpKind::kRecv:
        throw std::invalid_argument(
            fmt::format("op {} ({}): a send/recv outside a run of them", o.id, o.name));
      default:
        return copy(o);
    }
  }

  Launch attention(const Op& o) {
    const int mb = o.micro_batch;
    Launch l = base(o, LaunchKind::kAttention);
    l.batch = o.batch;
    l.heads = o.heads;
    l.kv_heads = o.kv_heads;
    l.head_dim = o.head_dim;
    const int32_t longest = kv_lengths(o, l);
    const int64_t qkv_cols = static_cast<int64_t>(o.heads + 2 * o.kv_heads) * o.head_dim;
    l.in = ref(Buf::kQkv, mb, o.batch * qkv_cols * kBf16);
    l.out = ref(Buf::kAttnOut, mb, static_cast<int64_t>(o.batch) * o.heads * o.head_dim * kBf16);
    l.num_splits = kernels::decode_attention_num_splits(o.batch, o.heads, o.kv_heads, o.head_dim,
                                                        static_cast<int>(longest), opt_.sm_count,
                                                        opt_.peak_memory_GBps);
    const auto ws =
        kernels::decode_attention_workspace_bytes(o.batch, o.heads, o.head_dim, l.num_splits);
    l.aux = ref(Buf::kAttnWorkspace, mb, static_cast<int64_t>(ws));
    return l;
  }

  // The KV lengths of an attention op (MHA or MLA) into the length pool (l.kv_lens_offset,
  // l.append_kv), its cache region sized for the longest sequence of any step, and the
  // positions of the rope launches of its (step, layer, micro-batch). Returns the longest
  // length after this step's token.
  int32_t kv_lengths(const Op& o, Launch& l) {
    const int mb = o.micro_batch;
    l.append_kv = kv_append_;
    if (o.batch <= 0) throw std::invalid_argument(fmt::format("op {}: attention batch 0", o.id));
    // Per-sequence lengths (after the append): the workload's contexts + step + 1 when they
    // add up to the op's kv_tokens (sequence parallelism 1), else kv_tokens spread evenly.
    if (rank_ >= att_) bad_shape(o, "attention on a rank that is not an attention rank");
    const int64_t first_seq = batch_of(rank_, mb).first_sequence;
    const auto& ctx_lens = p_.layout.context_lengths;
    std::vector<int64_t> lens(static_cast<size_t>(o.batch));
    int64_t exact_sum = 0;
    bool exact = static_cast<int64_t>(ctx_lens.size()) >= first_seq + o.batch;
    for (int b = 0; exact && b < o.batch; ++b) {
      lens[b] = static_cast<int64_t>(ctx_lens[static_cast<size_t>(first_seq + b)]) + o.step + 1;
      exact_sum += lens[b];
    }
    if (!exact || exact_sum != o.kv_tokens) {
      const int64_t base_len = o.kv_tokens / o.batch, extra = o.kv_tokens % o.batch;
      for (int b = 0; b < o.batch; ++b) lens[b] = base_len + (b < extra ? 1 : 0);
    }
    l.kv_lens_offset = static_cast<int64_t>(rp_.kv_lens.size());
    int32_t longest = 0;
    for (int b = 0; b < o.batch; ++b) {
      const int64_t len = lens[b];
      // tokens already cached before this step (the kernel attends over kv_lens + 1 when it
      // appends, over kv_lens otherwise)
      const int64_t before = kv_append_ ? len - 1 : len;
      if (before < (kv_append_ ? 0 : 1)) {
        throw std::invalid_argument(fmt::format("op {}: KV length {} too short", o.id, len));
      }
      rp_.kv_lens.push_back(static_cast<int32_t>(before));
      longest = std::max(longest, static_cast<int32_t>(len));
    }
    // One cache per (layer, micro-batch), sized for the longest sequence of any step.
    auto& region = kv_regions_[{o.layer, mb}];
    region.batch = std::max(region.batch, o.batch);
    region.first_seq = first_seq;
    region.max_len = std::max(region.max_len, longest + 1);
    // Rope ops of this (step, layer, mb) use these lengths as positions.
    auto it = rope_waiting_.find(o.id);
    if (it != rope_waiting_.end()) {
      for (int idx : it->second) rope_positions_[idx] = l.kv_lens_offset;
    }
    return longest;
  }

  // MLA attention's ops (launch_plan.hpp: "MLA"). Buffers per micro-batch: kMlaCq / kMlaCkv /
  // kMlaKRope from the down projection, kMlaQ the query ([T][heads·dn | heads·dr]; with
  // ql = 0 the down projection writes it into kMlaCq), kMlaQLat the absorbed queries
  // (head-major), kAttnOut the latent outputs [T][heads][kl], kMlaV the out_proj input.
  Launch mla(const Op& o) {
    const int mb = o.micro_batch;
    const int64_t dt = kBf16;
    Launch::MlaDims d;
    d.ql = m_.mla.q_lora_rank;
    d.kl = m_.mla.kv_lora_rank;
    d.dn = m_.mla.qk_nope_head_dim;
    d.dr = m_.mla.qk_rope_head_dim;
    d.dv = m_.mla.v_head_dim;
    const int64_t T = batch_of(rank_, mb).sequences;
    if (mla_heads_ <= 0) bad_shape(o, "an MLA op on a rank without an MLA attention op");
    const int64_t heads = mla_heads_;
    d.q_cols = d.ql > 0 ? d.ql : static_cast<int32_t>(heads * (d.dn + d.dr));
    const int64_t q_row = heads * (d.dn + d.dr);
    const Buf qbuf = d.ql > 0 ? Buf::kMlaQ : Buf::kMlaCq;
    switch (o.role) {
      case OpRole::kMlaDown: {
        if (o.n != d.q_cols + d.kl + d.dr || o.k != h_) {
          bad_shape(o,
                    "mla_down needs n = q columns + kv_lora_rank + qk_rope_head_dim, k = hidden");
        }
        Launch l = base(o, LaunchKind::kMlaDown);
        l.mla = d;
        l.m = T;
        l.n = o.n;
        l.k = h_;
        l.in = ref(Buf::kNormed, mb, T * h_ * dt);
        l.out = ref(Buf::kMlaCq, mb, T * d.q_cols * dt);
        l.in2 = ref(Buf::kMlaCkv, mb, T * d.kl * dt);
        l.aux = ref(Buf::kMlaKRope, mb, T * d.dr * dt);
        l.weight_offsets = {weight(o, weight_name(o.role), 0, o.n * h_ * dt)};
        return l;
      }
      case OpRole::kMlaNorm: {
        if (o.n != d.ql + d.kl) bad_shape(o, "mla_norm needs n = q_lora_rank + kv_lora_rank");
        Launch l = base(o, LaunchKind::kMlaNorm);
        l.mla = d;
        l.tokens = T;
        l.cols = o.n;
        l.in = ref(Buf::kMlaCq, mb, T * d.q_cols * dt);
        l.in2 = ref(Buf::kMlaCkv, mb, T * d.kl * dt);
        l.weight_offsets = {d.ql > 0 ? weight(o, "mla_norm_q", 0, d.ql * dt) : -1,
                            weight(o, "mla_norm_kv", 0, d.kl * dt)};
        return l;
      }
      case OpRole::kMlaQUp: {
        if (d.ql <= 0 || o.k != d.ql || o.n != q_row) {
          bad_shape(o, "mla_q_up needs k = q_lora_rank, n = heads·(qk_nope + qk_rope)");
        }
        Launch l = base(o, LaunchKind::kGemm);
        l.m = T;
        l.n = o.n;
        l.k = o.k;
        l.in = ref(Buf::kMlaCq, mb, T * d.ql * dt);
        l.out = ref(Buf::kMlaQ, mb, T * q_row * dt);
        l.weight_offsets = {weight(o, weight_name(o.role), 0, o.n * o.k * dt)};
        return l;
      }
      case OpRole::kMlaAbsorbK:
      case OpRole::kMlaAbsorbV: {
        const bool k_side = o.role == OpRole::kMlaAbsorbK;
        if (static_cast<int64_t>(o.group_m.size()) != heads ||
            (k_side ? (o.n != d.kl || o.k != d.dn) : (o.n != d.dv || o.k != d.kl))) {
          bad_shape(o, k_side ? "mla_absorb_k needs one group per local head, n = kv_lora_rank, "
                                "k = qk_nope_head_dim"
                              : "mla_absorb_v needs one group per local head, n = v_head_dim, "
                                "k = kv_lora_rank");
        }
        const int64_t rows = o.group_m.empty() ? 0 : o.group_m.front();
        for (int32_t g : o.group_m) {
          if (g != rows) bad_shape(o, "absorb GEMMs need the same rows for every head");
        }
        Launch l = base(o, LaunchKind::kMlaAbsorb);
        l.mla = d;
        l.heads = static_cast<int32_t>(heads);
        l.m = rows;
        l.n = o.n;
        l.k = o.k;
        if (k_side) {  // q_nope of head h: columns [h·dn, h·dn + dn) of the query rows
          l.in = ref(qbuf, mb, T * q_row * dt);
          l.in_ld = q_row;
          l.in_stride = d.dn;
          l.out = ref(Buf::kMlaQLat, mb, heads * T * d.kl * dt);
          l.out_ld = d.kl;
          l.out_stride = T * d.kl;
        } else {  // latent output of head h: [T][heads][kl] → kMlaV columns [h·dv, h·dv + dv)
          l.in = ref(Buf::kAttnOut, mb, T * heads * d.kl * dt);
          l.in_ld = heads * d.kl;
          l.in_stride = d.kl;
          l.out = ref(Buf::kMlaV, mb, T * heads * d.dv * dt);
          l.out_ld = heads * d.dv;
          l.out_stride = d.dv;
        }
        l.weight_offsets = {weight(o, weight_name(o.role), 0, heads * o.n * o.k * dt)};
        return l;
      }
      case OpRole::kMlaRope: {
        const auto it = attn_of_.find(key_of(o));
        if (it == attn_of_.end()) {
          bad_shape(o, "no attention op in its step, layer and micro-batch");
        }
        if (o.heads != heads || o.head_dim != d.dr || o.kv_heads != 1) {
          bad_shape(o, "mla_rope needs the local heads, kv_heads 1 and head_dim qk_rope_head_dim");
        }
        Launch l = base(o, LaunchKind::kMlaRope);
        l.mla = d;
        l.tokens = T;
        l.heads = static_cast<int32_t>(heads);
        l.kv_heads = 1;
        l.head_dim = d.dr;
        l.cols = q_row;
        l.in = ref(qbuf, mb, T * q_row * dt);
        l.in2 = ref(Buf::kMlaKRope, mb, T * d.dr * dt);
        rope_waiting_[it->second->id].push_back(rope_count_++);
        return l;  // kv_lens_offset is set by finish_rope()
      }
      case OpRole::kMlaAttention: {
        if (o.heads != heads || o.kv_heads != 1 || o.head_dim != d.kl + d.dr) {
          bad_shape(o,
                    "mla_attn needs the local heads, kv_heads 1, head_dim kv_lora_rank + "
                    "qk_rope_head_dim");
        }
        Launch l = base(o, LaunchKind::kMlaAttention);
        l.mla = d;
        l.batch = o.batch;
        l.heads = o.heads;
        l.kv_heads = 1;
        l.head_dim = o.head_dim;
        const int32_t longest = kv_lengths(o, l);
        l.in = ref(Buf::kMlaQLat, mb, heads * T * d.kl * dt);
        l.in2 = ref(qbuf, mb, T * q_row * dt);
        l.in3 = ref(Buf::kMlaCkv, mb, T * d.kl * dt);
        l.in4 = ref(Buf::kMlaKRope, mb, T * d.dr * dt);
        l.out = ref(Buf::kAttnOut, mb, T * heads * d.kl * dt);
        l.num_splits = kernels::mla_attention_num_splits(o.batch, o.heads, longest, opt_.sm_count);
        const auto ws = kernels::mla_attention_workspace_bytes(o.batch, o.heads, l.num_splits);
        l.aux = ref(Buf::kAttnWorkspace, mb, static_cast<int64_t>(ws));
        return l;
      }
      default:
        break;
    }
    bad_shape(o, "not an MLA role");
  }

  Launch collective(const Op& o) {
    const plan::Collective& col = p_.collectives.at(static_cast<size_t>(o.collective));
    const plan::Group& g = p_.groups.at(static_cast<size_t>(col.group));
    const int64_t n = static_cast<int64_t>(g.ranks.size());
    const int mb = o.micro_batch;
    const int64_t elems = (col.bytes + kBf16 - 1) / kBf16;
    Launch l;
    l.ops = {o.id};
    l.group = col.group;
    groups_.push_back(col.group);
    if (o.kind == OpKind::kAllReduce) {
      l.kind = LaunchKind::kAllReduce;
      l.count = elems;
      const Buf b = o.role == OpRole::kAttnReduce ? Buf::kAttnOut : Buf::kScratchA;
      l.in = ref(b, mb, elems * kBf16);
      l.out = l.in;
    } else if (o.kind == OpKind::kAllGather) {
      l.kind = LaunchKind::kAllGather;
      l.count = (elems + n - 1) / n;  // send count per rank
      l.in = ref(Buf::kLayerOut, mb, l.count * kBf16);
      l.out = ref(Buf::kHidden, mb, l.count * n * kBf16);
    } else {
      l.kind = LaunchKind::kReduceScatter;
      l.count = (elems + n - 1) / n;  // receive count per rank
      l.in = ref(Buf::kProj, mb, l.count * n * kBf16);
      l.out = ref(Buf::kAttnSlice, mb, l.count * kBf16);
    }
    return l;
  }

  Launch all_to_all(const Op& o) {
    const plan::Collective& col = p_.collectives.at(static_cast<size_t>(o.collective));
    const plan::Group& g = p_.groups.at(static_cast<size_t>(col.group));
    const auto me = std::find(g.ranks.begin(), g.ranks.end(), rank_) - g.ranks.begin();
    Launch l = base(o, LaunchKind::kP2p);
    int64_t soff = 0, roff = 0;
    for (size_t j = 0; j < g.ranks.size(); ++j) {
      if (static_cast<long>(j) == me) continue;
      const int64_t sb = col.matrix.empty() ? col.bytes / static_cast<int64_t>(g.ranks.size())
                                            : col.matrix.at(static_cast<size_t>(me)).at(j);
      const int64_t rb = col.matrix.empty() ? sb : col.matrix.at(j).at(static_cast<size_t>(me));
      if (sb > 0) {
        l.parts.push_back({true, g.ranks[j], ref(Buf::kSend, o.micro_batch, sb, soff), sb, o.id});
        soff += (sb + 255) / 256 * 256;
      }
      if (rb > 0) {
        l.parts.push_back({false, g.ranks[j], ref(Buf::kRecv, o.micro_batch, rb, roff), rb, o.id});
        roff += (rb + 255) / 256 * 256;
      }
    }
    return l;
  }

  Launch p2p(const std::vector<OpId>& run) {
    Launch l;
    l.kind = LaunchKind::kP2p;
    l.ops = run;
    int64_t soff = 0, roff = 0;
    for (OpId id : run) {
      const Op& o = p_.ops[static_cast<size_t>(id)];
      const bool send = o.kind == OpKind::kSend;
      const bool ret = o.role == OpRole::kReturn;
      const Buf b = send ? (ret ? Buf::kRetSend : Buf::kSend) : (ret ? Buf::kRetRecv : Buf::kRecv);
      int64_t& off = send ? soff : roff;
      const int64_t at = real_ ? real_offset(o, send, o.peer, o.comm_bytes) : off;
      l.parts.push_back({send, o.peer, ref(b, o.micro_batch, o.comm_bytes, at), o.comm_bytes, id});
      off += (o.comm_bytes + 255) / 256 * 256;
    }
    return l;
  }

  // kExchange: one group call with a send per transfer this op sends and a receive per
  // transfer it receives, in the Exchange's listed order.
  Launch exchange(const Op& o) {
    const plan::Exchange& ex = p_.exchanges.at(static_cast<size_t>(o.exchange));
    Launch l = base(o, LaunchKind::kP2p);
    const bool ret = o.role == OpRole::kReturn;
    int64_t soff = 0, roff = 0;
    for (const plan::Transfer& tr : ex.transfers) {
      const bool send = tr.src_op == o.id;
      if (!send && tr.dst_op != o.id) continue;
      const Op& peer_op = p_.ops.at(static_cast<size_t>(send ? tr.dst_op : tr.src_op));
      const int peer = peer_op.rank;
      const Buf b = send ? (ret ? Buf::kRetSend : Buf::kSend) : (ret ? Buf::kRetRecv : Buf::kRecv);
      int64_t& off = send ? soff : roff;
      const bool routed = real_ && o.role != OpRole::kKvMirror;
      const int64_t at = routed ? real_offset(o, send, peer, tr.bytes) : off;
      l.parts.push_back({send, peer, ref(b, o.micro_batch, tr.bytes, at), tr.bytes, o.id});
      off += (tr.bytes + 255) / 256 * 256;
    }
    if (l.parts.empty()) {
      throw std::invalid_argument(fmt::format("op {} ({}): exchange {} has no transfer of this op",
                                              o.id, o.name, o.exchange));
    }
    return l;
  }

  // Orders the two streams' launches into one host issue order in which every launch comes
  // after the launches it depends on, and sets wait_for (the latest launch on the other
  // stream it depends on).
  void merge(std::array<std::vector<Launch>, plan::kStreamCount>& ps) {
    finish_rope(ps);
    finish_kv(ps);
    // op id → (stream, position)
    std::map<OpId, std::pair<int, int>> where;
    for (int st = 0; st < plan::kStreamCount; ++st) {
      for (size_t i = 0; i < ps[st].size(); ++i) {
        for (OpId id : ps[st][i].ops) where[id] = {st, static_cast<int>(i)};
      }
    }
    // need[st][i]: position on the other stream that must be issued first (-1 none)
    std::array<std::vector<int>, plan::kStreamCount> need;
    for (int st = 0; st < plan::kStreamCount; ++st) {
      need[st].assign(ps[st].size(), -1);
      for (size_t i = 0; i < ps[st].size(); ++i) {
        for (OpId id : ps[st][i].ops) {
          for (OpId d : p_.ops[static_cast<size_t>(id)].deps) {
            if (p_.ops[static_cast<size_t>(d)].rank != rank_) continue;  // NCCL matches it
            const auto [ds, di] = where.at(d);
            if (ds == st) {
              if (di > static_cast<int>(i)) {
                throw std::invalid_argument(fmt::format(
                    "op {} depends on op {}, which comes later on the same stream", id, d));
              }
              continue;
            }
            need[st][i] = std::max(need[st][i], di);
          }
        }
      }
    }
    std::array<size_t, plan::kStreamCount> next{0, 0};
    std::array<std::vector<int>, plan::kStreamCount> global;
    for (int st = 0; st < plan::kStreamCount; ++st) global[st].assign(ps[st].size(), -1);
    const size_t total = ps[0].size() + ps[1].size();
    while (rp_.launches.size() < total) {
      int pick = -1;
      for (int st = 0; st < plan::kStreamCount; ++st) {
        if (next[st] >= ps[st].size()) continue;
        const int other = 1 - st;
        if (need[st][next[st]] >= static_cast<int>(next[other])) continue;  // not issued yet
        if (pick < 0 || ps[st][next[st]].ops.front() < ps[pick][next[pick]].ops.front()) {
          pick = st;
        }
      }
      if (pick < 0) {
        throw std::invalid_argument(fmt::format(
            "rank {}: the compute and comm streams depend on each other in a cycle (at op {})",
            rank_, ps[0].size() > next[0] ? ps[0][next[0]].ops.front() : -1));
      }
      Launch l = std::move(ps[pick][next[pick]]);
      const int nd = need[pick][next[pick]];
      l.wait_for = nd >= 0 ? global[1 - pick][static_cast<size_t>(nd)] : -1;
      global[pick][next[pick]] = static_cast<int>(rp_.launches.size());
      rp_.launches.push_back(std::move(l));
      ++next[pick];
    }
  }

  void finish_rope(std::array<std::vector<Launch>, plan::kStreamCount>& ps) {
    // Rope launches were emitted before their attention op gave the positions; patch them.
    int idx = 0;
    for (Launch& l : ps[plan::kCompute]) {
      if (l.kind != LaunchKind::kRope && l.kind != LaunchKind::kMlaRope) continue;
      const auto it = rope_positions_.find(idx);
      if (it == rope_positions_.end()) {
        throw std::invalid_argument(fmt::format("op {}: rope without attention op", l.ops[0]));
      }
      l.kv_lens_offset = it->second;
      ++idx;
    }
  }

  void finish_kv(std::array<std::vector<Launch>, plan::kStreamCount>& ps) {
    // Lay out the KV arena: per (layer, mb) a K and a V block of
    // [batch, kv_heads, max_len, head_dim] bf16.
    // MLA: one block of [batch, 1, max_len, kv_lora_rank + qk_rope_head_dim] (c_kv | k_rope per
    // token), its "K"; no V.
    for (auto& st : ps) {
      for (Launch& l : st) {
        if (l.kind != LaunchKind::kAttention && l.kind != LaunchKind::kMlaAttention) continue;
        const Op& o = p_.ops[static_cast<size_t>(l.ops[0])];
        auto& r = kv_regions_.at({o.layer, o.micro_batch});
        if (r.bytes == 0 && l.kind == LaunchKind::kMlaAttention) {
          r.kv_heads = 1;
          r.head_dim = o.head_dim;
          r.bytes = static_cast<int64_t>(r.batch) * r.max_len * o.head_dim * kBf16;
          r.k_offset = rp_.kv_cache_bytes;
          r.v_offset = r.k_offset;
          rp_.kv_cache_bytes = r.k_offset + (r.bytes + 255) / 256 * 256;
          KvBlock kb;
          kb.offset_bytes = r.k_offset;
          kb.layer = o.layer;
          kb.value = false;
          kb.batch = r.batch;
          kb.kv_heads = 1;
          kb.max_len = r.max_len;
          kb.head_dim = r.head_dim;
          kb.first_seq = r.first_seq;
          rp_.kv_blocks.push_back(kb);
        } else if (r.bytes == 0) {
          r.kv_heads = o.kv_heads;
          r.head_dim = o.head_dim;
          r.bytes = static_cast<int64_t>(r.batch) * o.kv_heads * r.max_len * o.head_dim * kBf16;
          r.k_offset = rp_.kv_cache_bytes;
          r.v_offset = r.k_offset + (r.bytes + 255) / 256 * 256;
          rp_.kv_cache_bytes = r.v_offset + (r.bytes + 255) / 256 * 256;
          for (int v = 0; v < 2; ++v) {
            KvBlock kb;
            kb.offset_bytes = v ? r.v_offset : r.k_offset;
            kb.layer = o.layer;
            kb.value = v == 1;
            kb.batch = r.batch;
            kb.kv_heads = r.kv_heads;
            kb.max_len = r.max_len;
            kb.head_dim = r.head_dim;
            kb.first_seq = r.first_seq;
            rp_.kv_blocks.push_back(kb);
          }
        }
        l.k_cache_offset = r.k_offset;
        l.v_cache_offset = r.v_offset;
        l.max_kv_len = r.max_len;
      }
    }
  }

  struct KvRegion {
    int batch = 0, max_len = 0, kv_heads = 0, head_dim = 0;
    int64_t bytes = 0, k_offset = 0, v_offset = 0, first_seq = 0;
  };

  const plan::Program& p_;
  int rank_;
  PlanOptions opt_;
  const models::Model& m_;
  int64_t h_ = 0;
  bool ma_ = true, real_ = false;
  int att_ = 0, moe_base_ = 0, moe_n_ = 0, t_ = 1;
  std::vector<int64_t> routed_rows_;  // [mb]: rows of the latest routed expert GEMMs lowered
  int32_t slots_ = 0;
  std::vector<std::vector<int>> eg_, ge_;
  std::vector<int32_t> slot_base_;
  std::map<Key, const plan::RoutingSample*> routing_;
  std::map<Key, MbRoute> routes_;
  std::map<Key, int64_t> maps_;
  bool kv_append_ = true;
  RankPlan rp_;
  std::map<Key, const Op*> attn_of_;  // the attention op of each (step, layer, mb)
  int64_t mla_heads_ = 0;             // local query heads of the MLA attention ops
  std::map<std::tuple<int, std::string, int>, std::pair<int64_t, int64_t>> weights_;
  // Format of the GEMM weight matrices (qkv, out_proj, experts): fp8 block-scaled when the
  // model's precision says weights fp8; the router gate and norms stay bf16 (models/model.hpp).
  kernels::WeightFormat wfmt_ = kernels::WeightFormat::kBF16;
  std::map<std::pair<int, int>, KvRegion> kv_regions_;
  std::map<OpId, std::vector<int>> rope_waiting_;  // attention op → pending rope indices
  int rope_count_ = 0;
  std::map<int, int64_t> rope_positions_;  // rope index → kv_lens offset
  std::vector<int32_t> groups_;
};

}  // namespace

const char* to_string(Buf b) {
  static const char* const kNames[] = {
      "hidden",        "normed",       "qkv",          "attn_out",       "proj",
      "attn_slice",    "slice_normed", "logits",       "topk_ids",       "topk_weights",
      "expert_counts", "permuted_row", "source_token", "expert_offsets", "layer_out",
      "send",          "recv",         "ret_send",     "ret_recv",       "expert_in",
      "expert_mid",    "expert_act",   "expert_out",   "attn_workspace", "scratch_a",
      "scratch_b",     "route_counts", "real_row_map", "mla_cq",         "mla_ckv",
      "mla_k_rope",    "mla_q",        "mla_q_lat",    "mla_v"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == kBufCount);
  return kNames[static_cast<int>(b)];
}

const char* to_string(LaunchKind k) {
  switch (k) {
    case LaunchKind::kGemm:
      return "gemm";
    case LaunchKind::kGroupedGemm:
      return "grouped_gemm";
    case LaunchKind::kRmsNorm:
      return "rmsnorm";
    case LaunchKind::kAddRmsNorm:
      return "add_rmsnorm";
    case LaunchKind::kRope:
      return "rope";
    case LaunchKind::kAttention:
      return "attention";
    case LaunchKind::kRouter:
      return "router";
    case LaunchKind::kPermute:
      return "permute";
    case LaunchKind::kCombine:
      return "combine";
    case LaunchKind::kSwiGlu:
      return "swiglu";
    case LaunchKind::kGelu:
      return "gelu";
    case LaunchKind::kCopy:
      return "copy";
    case LaunchKind::kP2p:
      return "p2p";
    case LaunchKind::kAllReduce:
      return "all_reduce";
    case LaunchKind::kAllGather:
      return "all_gather";
    case LaunchKind::kReduceScatter:
      return "reduce_scatter";
    case LaunchKind::kGatherRows:
      return "gather_rows";
    case LaunchKind::kScatterRows:
      return "scatter_rows";
    case LaunchKind::kMlaDown:
      return "mla_down";
    case LaunchKind::kMlaNorm:
      return "mla_norm";
    case LaunchKind::kMlaAbsorb:
      return "mla_absorb";
    case LaunchKind::kMlaRope:
      return "mla_rope";
    case LaunchKind::kMlaAttention:
      return "mla_attention";
  }
  return "?";
}

RankMemory RankPlan::memory() const {
  RankMemory m;
  m.weights = weight_bytes;
  m.kv_cache = kv_cache_bytes + static_cast<int64_t>(kv_lens.size()) * 4;
  for (int b = 0; b < kBufCount; ++b) {
    int64_t sum = 0;
    for (int64_t v : buffer_bytes[static_cast<size_t>(b)]) sum += v;
    const Buf buf = static_cast<Buf>(b);
    if (buf == Buf::kSend || buf == Buf::kRecv || buf == Buf::kRetSend || buf == Buf::kRetRecv) {
      m.comm_buffers += sum;
    } else if (buf == Buf::kAttnWorkspace) {
      m.workspace += sum;
    } else {
      m.activations += sum;
    }
  }
  return m;
}

RouteSizes route_sizes(const GatingLayout& lay, const std::vector<std::vector<int32_t>>& counts) {
  const int A = lay.attention_ranks, G = lay.moe_ranks;
  if (static_cast<int>(counts.size()) != A) {
    throw std::invalid_argument(
        fmt::format("route_sizes: {} rows of counts for {} attention ranks", counts.size(), A));
  }
  RouteSizes sz;
  sz.seg_rows.assign(static_cast<size_t>(A), std::vector<int64_t>(static_cast<size_t>(G), 0));
  sz.seg_begin = sz.seg_rows;
  sz.recv_begin.assign(static_cast<size_t>(G), std::vector<int64_t>(static_cast<size_t>(A), 0));
  for (int a = 0; a < A; ++a) {
    if (static_cast<int>(counts[a].size()) != lay.slots()) {
      throw std::invalid_argument(
          fmt::format("route_sizes: attention rank {} has {} counts, {} slots", a, counts[a].size(),
                      lay.slots()));
    }
    int64_t acc = 0;
    for (int g = 0; g < G; ++g) {
      int64_t rows = 0;
      for (int32_t sl = lay.slot_base[g]; sl < lay.slot_base[g + 1]; ++sl) {
        if (counts[a][sl] < 0) throw std::invalid_argument("route_sizes: negative count");
        rows += counts[a][sl];
      }
      sz.seg_rows[a][g] = rows;
      sz.seg_begin[a][g] = acc;
      acc += rows;
    }
  }
  for (int g = 0; g < G; ++g) {
    int64_t acc = 0;
    for (int a = 0; a < A; ++a) {
      sz.recv_begin[g][a] = acc;
      if (!lay.is_local(a, g)) acc += sz.seg_rows[a][g];
    }
  }
  return sz;
}

std::vector<int32_t> moe_group_m(const GatingLayout& lay,
                                 const std::vector<std::vector<int32_t>>& counts, int g) {
  std::vector<int32_t> m(static_cast<size_t>(lay.slot_base.at(g + 1) - lay.slot_base.at(g)), 0);
  for (const auto& row : counts) {
    for (size_t l = 0; l < m.size(); ++l) m[l] += row.at(lay.slot_base[g] + l);
  }
  return m;
}

std::vector<int32_t> moe_row_map(const GatingLayout& lay, const RouteSizes& sz,
                                 const std::vector<std::vector<int32_t>>& counts, int g) {
  std::vector<int32_t> map;
  const int nl = lay.slot_base.at(g + 1) - lay.slot_base.at(g);
  for (int l = 0; l < nl; ++l) {
    for (int a = 0; a < lay.attention_ranks; ++a) {
      int64_t start = 0;
      for (int l2 = 0; l2 < l; ++l2) start += counts[a][lay.slot_base[g] + l2];
      const int32_t c = counts[a][lay.slot_base[g] + l];
      for (int32_t j = 0; j < c; ++j) {
        if (lay.is_local(a, g)) {
          map.push_back(-static_cast<int32_t>(sz.seg_begin[a][g] + start + j) - 1);
        } else {
          map.push_back(static_cast<int32_t>(sz.recv_begin[g][a] + start + j));
        }
      }
    }
  }
  return map;
}

PartRows route_part(const GatingLayout& lay, const RouteSizes& sz, int rank, bool ret, bool send,
                    int peer) {
  const int a = ret ? (send ? peer : rank) : (send ? rank : peer);
  const int g = (ret ? (send ? rank : peer) : (send ? peer : rank)) - lay.moe_base;
  if (a < 0 || a >= lay.attention_ranks || g < 0 || g >= lay.moe_ranks) {
    throw std::invalid_argument(fmt::format("rank {} {} {} rank {}: not an attention/MoE pair",
                                            rank, send ? "sends to" : "receives from",
                                            ret ? "(return)" : "(dispatch)", peer));
  }
  const bool at_attention = ret != send;
  PartRows pr;
  pr.rows = sz.seg_rows[a][g];
  pr.first_row = at_attention ? sz.seg_begin[a][g] : sz.recv_begin[g][a];
  return pr;
}

RankPlan build_rank_plan(const plan::Program& p, int rank, const PlanOptions& options) {
  // The executor issues every exchange as one NCCL group call; DeepEP-style exchanges
  // (plan.expert_exchange.mode hierarchical / low_latency) are simulated only.
  for (size_t x = 0; x < p.exchanges.size(); ++x) {
    if (p.exchanges[x].transport != plan::ExchangeTransport::kNccl) {
      throw std::invalid_argument(fmt::format(
          "exchange {} uses transport {}: the executor runs NCCL exchanges only "
          "(plan.expert_exchange.mode hierarchical and low_latency are simulated only; use mode "
          "nccl for masep exec)",
          x, plan::to_string(p.exchanges[x].transport)));
    }
  }
  return Builder(p, rank, options).run();
}

std::vector<char> warmup_launches(const RankPlan& plan, int first_step, int pass) {
  std::vector<char> on(plan.launches.size(), 1);
  if (pass == 0) return on;
  for (size_t i = 0; i < plan.launches.size(); ++i) {
    on[i] = plan.launches[i].step == first_step ? 1 : 0;
  }
  return on;
}

std::string describe(const RankPlan& rp, const plan::Program& p) {
  std::string out;
  for (size_t i = 0; i < rp.launches.size(); ++i) {
    const Launch& l = rp.launches[i];
    const auto& o = p.ops[static_cast<size_t>(l.ops.front())];
    out += fmt::format("{} {} {} {} ops[{}", i, plan::stream_name(l.stream), to_string(l.kind),
                       o.name, l.ops.front());
    for (size_t j = 1; j < l.ops.size(); ++j) out += fmt::format(",{}", l.ops[j]);
    out += "]";
    switch (l.kind) {
      case LaunchKind::kGemm:
        out += fmt::format(" m={} n={} k={}{}", l.m, l.n, l.k, l.residual ? " +residual" : "");
        break;
      case LaunchKind::kGroupedGemm:
        out += fmt::format(" rows={} n={} k={} experts={}", l.m, l.n, l.k, l.group_m.size());
        break;
      case LaunchKind::kAttention:
        out += fmt::format(" batch={} heads={}/{} d={} max_kv={} splits={}{}", l.batch, l.heads,
                           l.kv_heads, l.head_dim, l.max_kv_len, l.num_splits,
                           l.append_kv ? "" : " no-append");
        break;
      case LaunchKind::kMlaAttention:
        out += fmt::format(" batch={} heads={} d={}+{} max_kv={} splits={}{}", l.batch, l.heads,
                           l.mla.kl, l.mla.dr, l.max_kv_len, l.num_splits,
                           l.append_kv ? "" : " no-append");
        break;
      case LaunchKind::kMlaDown:
        out += fmt::format(" m={} n={}+{}+{} k={}", l.m, l.mla.q_cols, l.mla.kl, l.mla.dr, l.k);
        break;
      case LaunchKind::kMlaAbsorb:
        out += fmt::format(" heads={} m={} n={} k={}", l.heads, l.m, l.n, l.k);
        break;
      case LaunchKind::kCopy:
        out += fmt::format(" bytes={}", l.bytes);
        break;
      case LaunchKind::kP2p:
        for (const auto& part : l.parts) {
          out += fmt::format(" {}{}:{}", part.send ? "send>" : "recv<", part.peer, part.bytes);
        }
        break;
      case LaunchKind::kAllReduce:
      case LaunchKind::kAllGather:
      case LaunchKind::kReduceScatter:
        out +=
            fmt::format(" group={} count={}", p.groups[static_cast<size_t>(l.group)].name, l.count);
        break;
      default:
        if (l.tokens > 0) out += fmt::format(" tokens={}", l.tokens);
        break;
    }
    if (l.wait_for >= 0) out += fmt::format(" wait={}", l.wait_for);
    out += "\n";
  }
  return out;
}

}  // namespace masep::exec
