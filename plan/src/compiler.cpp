// The plan compiler. See compiler.hpp for the layer it emits; the comments here say why the
// ops are ordered the way they are.
//
// Stream order and deadlock freedom. Collectives and exchanges (kExchange: one NCCL group
// call per rank, see program.hpp) are rendezvous: they start when their participants have
// reached them. Every rank's comm stream visits the calls of a (decode step, layer,
// micro-batch) in one global order,
//   for f = (step·L + layer)·m + mb:   [expert_reduce(f − m)], return(f − m), all_gather(f),
//                                      [all_reduce(f)], reduce_scatter(f), dispatch(f)
// (expert_reduce: expert tensor parallelism, one reduce-scatter per expert group, disjoint
// groups, emitted with the return so that the MoE comm stream still receives dispatch(f)
// before it waits for the experts of f)
// and each dispatch or return is one exchange with one op per participating rank (a group
// call has no internal order), so no rank can wait for a partner that waits for it. With
// plan.expert_exchange.mode hierarchical each is two exchanges (dispatch_rdma, dispatch_nvl;
// return_nvl, return_rdma), visited in that order by every rank taking part, which keeps the
// argument.
// check_program() verifies this (Kahn's algorithm over rendezvous classes).
//
// Ping-pong. The attention compute stream runs combine(f − m) then the attention part of f:
// while the MoE GPUs work on micro-batch mb, the attention GPUs work on the others. The MoE
// comm stream runs return(f − m) then dispatch(f), so it receives up to m − 1 micro-batches
// ahead of what it returns.
#include "masep/plan/compiler.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "masep/plan/attention_balance.hpp"
#include "masep/plan/balancer.hpp"
#include "masep/plan/batch_split.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/expert_load.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/placement.hpp"
#include "masep/plan/routing.hpp"

namespace masep::plan {

namespace {

// i-th of k near-equal parts of n (sizes differ by at most one), and where it begins.
int64_t part(int64_t n, int64_t k, int64_t i) { return n * (i + 1) / k - n * i / k; }
int64_t part_begin(int64_t n, int64_t k, int64_t i) { return n * i / k; }

std::string join_ints(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s;
}

std::string experts_label(const std::vector<int>& e) {
  if (e.size() <= 8) return "experts " + join_ints(e);
  return std::to_string(e.size()) + " experts";
}

struct Xfer {
  int32_t src = 0, dst = 0;  // plan ranks
  int64_t bytes = 0;
  OpId producer = -1;  // op on src whose output is sent
  OpId send = -1, recv = -1;
};

class Compiler {
 public:
  Compiler(const Scenario& s, const CompileOptions& opts)
      : s_(s), m_(s.model), sampler_(s.workload, s.model.experts, s.model.top_k) {
    setup(opts);
  }

  Program run() {
    for (int step = first_step_; step < first_step_ + steps_; ++step) {
      if (step == first_step_ + 1) reserve_rest();
      emit_step(step);
    }
    for (int mb = 0; mb < mbs_; ++mb) finish(mb);
    return std::move(p_);
  }

  // ---- window by window (ProgramStream) -------------------------------------------------------
  // The Program as set up, before any op: the stream's header.
  Program header() const { return p_; }
  // Layers not yet emitted (of all steps).
  int64_t layers_left() const {
    return static_cast<int64_t>(first_step_ + steps_ - next_step_) * m_.layers - next_layer_;
  }
  int steps_left() const {
    return static_cast<int>((layers_left() + m_.layers - 1) / std::max(1, m_.layers));
  }
  // Emits the next `layers` (step, layer) pairs (the last chunk also the final returns and
  // combines), then moves what was emitted into `out` and advances the id bases. False once
  // the last chunk has been handed out.
  bool next_chunk(int64_t layers, ProgramChunk& out) {
    if (streamed_last_) return false;
    if (layers < 1) throw std::invalid_argument("ProgramStream::next: steps must be >= 1");
    out = ProgramChunk{};
    out.first_step = next_step_;
    out.first_op = op_base_;
    out.first_collective = coll_base_;
    out.first_exchange = exch_base_;
    const int end_step = first_step_ + steps_;
    for (int64_t k = 0; k < layers && next_step_ < end_step; ++k) {
      emit_layer(next_step_, next_layer_);
      if (++next_layer_ == m_.layers) {
        next_layer_ = 0;
        ++next_step_;
      }
    }
    out.steps = next_step_ - out.first_step + (next_layer_ > 0 ? 1 : 0);
    out.last = next_step_ == end_step;
    if (out.last) {
      for (int mb = 0; mb < mbs_; ++mb) finish(mb);
      streamed_last_ = true;
    }
    op_base_ += static_cast<OpId>(p_.ops.size());
    coll_base_ += static_cast<int32_t>(p_.collectives.size());
    exch_base_ += static_cast<int32_t>(p_.exchanges.size());
    out.ops = std::move(p_.ops);
    out.collectives = std::move(p_.collectives);
    out.exchanges = std::move(p_.exchanges);
    out.routing = std::move(p_.routing);
    out.stream_ops = std::move(p_.stream_ops);
    p_.ops.clear();
    p_.collectives.clear();
    p_.exchanges.clear();
    p_.routing.clear();
    p_.stream_ops.clear();
    p_.stream_ops.resize(static_cast<size_t>(total_ranks_));
    return true;
  }

 private:
  // One decode step: for every (layer, micro-batch), the pending return and combine of the
  // same micro-batch's previous layer, then the attention part and the MoE part.
  void emit_step(int step) {
    for (int layer = 0; layer < m_.layers; ++layer) emit_layer(step, layer);
  }
  void emit_layer(int step, int layer) {
    if (layer == 0) {
      // Load balancing (plan.balance.rebalance_every): a new placement at an epoch's start.
      if (!fixed_placement_ && step > first_step_ && placement_epoch_start(s_, step) == step) {
        rebalance(step);
      }
      step_kv(step);
    }
    for (int mb = 0; mb < mbs_; ++mb) {
      finish(mb);
      attention_front(step, layer, mb);
      moe(step, layer, mb);
      // fault_tolerance.kv_copies 2: the step's new KV entries to the mirrors.
      if (layer == m_.layers - 1 && mb == mbs_ - 1) kv_mirror();
    }
  }

  // ---- set-up ------------------------------------------------------------------------------
  void setup(const CompileOptions& opts) {
    const PlanSpec& plan = s_.plan;
    ma_ = plan.kind == PlanKind::kMaSeparation;
    if (ma_) {
      hp_ = plan.attention.head_parallel;
      sp_ = plan.attention.sequence_parallel;
      replicas_ = plan.attention.replicas;
      att_ranks_ = plan.attention.gpus;
      moe_ranks_ = plan.moe.gpus;
      moe_base_ = att_ranks_;
    } else {
      hp_ = plan.colocated.tensor_parallel;
      sp_ = 1;
      att_ranks_ = plan.colocated.gpus;
      replicas_ = hp_ > 0 ? att_ranks_ / hp_ : 0;
      moe_ranks_ = att_ranks_;
      moe_base_ = 0;
    }
    t_ = hp_ * sp_;
    per_replica_ = ma_ && plan.attention.per_replica();
    etp_ = plan.expert_tensor_parallel();
    mbs_ = plan.micro_batches;
    const std::string key = ma_ ? "plan.attention" : "plan.colocated";
    if (hp_ <= 0 || sp_ <= 0 || replicas_ <= 0 || mbs_ <= 0 || moe_ranks_ <= 0 || etp_ <= 0) {
      throw std::invalid_argument(key + ": parallel sizes and micro_batches must be positive");
    }
    const std::string moe_key = ma_ ? "plan.moe" : "plan.colocated";
    if (moe_ranks_ % etp_ != 0 || m_.expert_ffn % etp_ != 0 ||
        (m_.shared_experts > 0 && m_.shared_ffn() % etp_ != 0)) {
      throw std::invalid_argument(moe_key + ".expert_tensor_parallel: " + std::to_string(etp_) +
                                  " must divide the expert GPUs and every expert FFN width");
    }
    groups_ = moe_ranks_ / etp_;
    if (etp_ > 1 && opts.placement != nullptr) {
      throw std::invalid_argument(moe_key +
                                  ".expert_tensor_parallel: a given expert placement "
                                  "(CompileOptions::placement) places whole experts on GPUs");
    }
    // Each replica's split (equal ones unless plan.attention.replicas lists them).
    rep_.clear();
    int first = 0;
    for (int r = 0; r < replicas_; ++r) {
      const AttentionReplica a = ma_ ? plan.attention.replica(r) : AttentionReplica{hp_, 1, 0};
      if (a.head_parallel <= 0 || a.sequence_parallel <= 0) {
        throw std::invalid_argument(key + ": parallel sizes must be positive");
      }
      if (m_.heads % a.head_parallel != 0) {
        throw std::invalid_argument(key + ": head parallelism " + std::to_string(a.head_parallel) +
                                    " does not divide " + std::to_string(m_.heads) + " heads");
      }
      ReplicaSplit x;
      x.hp = a.head_parallel;
      x.sp = a.sequence_parallel;
      x.t = x.hp * x.sp;
      x.base = first;
      x.heads_l = m_.heads / x.hp;
      // With more head-parallel GPUs than KV heads (GQA), each GPU keeps one KV head replica.
      x.kvh_l = std::max(1, m_.kv_heads / x.hp);
      first += x.t;
      sp_max_ = std::max(sp_max_, x.sp);
      t_max_ = std::max(t_max_, x.t);
      rep_.push_back(x);
    }
    if (first != att_ranks_) {
      throw std::invalid_argument(key + ".gpus: " + std::to_string(att_ranks_) +
                                  " is not replicas × head_parallel × sequence_parallel");
    }
    if (per_replica_ && (s_.fault_tolerance.kv_copies > 1 || !s_.faults.empty())) {
      throw std::invalid_argument(key +
                                  ".replicas: replicas listed one by one are not supported with "
                                  "fault tolerance");
    }
    total_ranks_ = ma_ ? att_ranks_ + moe_ranks_ : att_ranks_;
    const int topo_gpus = s_.topology.total_gpus();
    if (!plan.gpu_ranks.empty() && static_cast<int>(plan.gpu_ranks.size()) != total_ranks_) {
      throw std::invalid_argument("plan.gpu_ranks: lists " + std::to_string(plan.gpu_ranks.size()) +
                                  " GPUs, the plan uses " + std::to_string(total_ranks_));
    }
    if (total_ranks_ > topo_gpus) {
      throw InfeasiblePlan("the plan uses " + std::to_string(total_ranks_) + " GPUs, topology " +
                           s_.topology.name + " has " + std::to_string(topo_gpus));
    }
    const int batch = s_.workload.batch;
    if (batch < replicas_ * mbs_) {
      throw InfeasiblePlan("workload.batch " + std::to_string(batch) + " is smaller than " +
                           std::to_string(replicas_) + " attention replicas × " +
                           std::to_string(mbs_) +
                           " micro-batches: some replica would have no sequence");
    }
    split_ = split_batch(s_);
    if (split_.replicas != replicas_ || split_.smallest_chunk() < 1) {
      throw InfeasiblePlan("workload.batch " + std::to_string(batch) + " shared over " +
                           std::to_string(replicas_) + " attention replicas × " +
                           std::to_string(mbs_) + " micro-batches leaves a chunk with no sequence");
    }
    if (opts.first_step < 0 || opts.steps < -1) {
      throw std::invalid_argument("CompileOptions: first_step must be >= 0, steps >= -1");
    }
    first_step_ = opts.first_step;
    next_step_ = first_step_;
    record_routing_ = opts.record_token_routing;
    per_sequence_routing_ = opts.per_sequence_routing;
    steps_ = opts.steps < 0 ? std::max(0, s_.workload.decode_steps - first_step_) : opts.steps;

    const models::Precision& pr = m_.precision;
    wt_ = pr.weights;
    act_ = pr.activations;
    kvt_ = pr.kv_cache;
    dis_ = pr.dispatch;
    cmb_ = pr.combine;
    // GEMMs compute in the weight format when it is a narrow one (activations are quantized
    // to it on the fly, as DeepSeek-V3's FP8 GEMMs do), else in the activations' format.
    gemm_dt_ = (wt_ == models::DType::kBF16 || wt_ == models::DType::kFP16) ? act_ : wt_;
    // Small weights (norm vectors, router gate) are 16-bit: fp16 with fp16 activations, else bf16.
    small_dt_ = act_ == models::DType::kFP16 ? models::DType::kFP16 : models::DType::kBF16;
    h_ = m_.hidden;
    hd_ = m_.head_dim;
    enter_replica(0);
    in_cols_ = m_.expert_in_columns();
    ffn_l_ = m_.expert_ffn / etp_;  // this GPU's slice of an expert's FFN width
    in_l_ = m_.ffn_in_columns(ffn_l_);
    row_dis_ = models::vector_bytes(dis_, 1, m_.hidden);
    row_cmb_ = models::vector_bytes(cmb_, 1, m_.hidden);
    shared_ = m_.shared_experts;

    fixed_placement_ = opts.placement != nullptr;
    if (fixed_placement_) {
      check_placement(*opts.placement,
                      balance_problem(s_, std::vector<double>(static_cast<size_t>(m_.experts), 0)));
      set_placement(*opts.placement);
    } else {
      set_placement(s_.plan.balance.policy == BalancePolicy::kStatic
                        ? static_placement(s_)
                        : placement_at_step(s_, first_step_, per_sequence_routing_));
    }
    // plan.balance.attention: which sequences fill each (replica, micro-batch) chunk.
    ctx_ = placed_context_lengths(s_);

    p_.scenario = s_.name;
    p_.model = m_;
    ProgramLayout& lay = p_.layout;
    lay.separated = ma_;
    lay.attention_ranks = att_ranks_;
    lay.moe_base = moe_base_;
    lay.moe_ranks = moe_ranks_;
    lay.expert_tensor_parallel = etp_;
    lay.group_size = t_max_;
    lay.sequence_parallel = sp_max_;
    lay.replicas = replicas_;
    if (per_replica_) {
      for (const ReplicaSplit& x : rep_) lay.replica_shapes.push_back({x.base, x.hp, x.sp});
    }
    lay.batch = s_.workload.batch;
    lay.seed = s_.workload.seed;
    lay.intra_node_GBps = s_.topology.intra_GBps;
    lay.expert_holders.reserve(eg_.size());
    for (const auto& holders : eg_) lay.expert_holders.emplace_back(holders.begin(), holders.end());
    lay.expert_route = placement_.route;
    lay.context_lengths = ctx_;
    p_.first_step = first_step_;
    p_.steps = steps_;
    p_.layers = m_.layers;
    p_.micro_batches = mbs_;
    p_.stream_ops.resize(static_cast<size_t>(total_ranks_));
    build_ranks();
    build_groups();

    last_combine_.assign(static_cast<size_t>(mbs_), std::vector<OpId>(att_ranks_, -1));
    pending_.resize(static_cast<size_t>(mbs_));
    group_m_.resize(static_cast<size_t>(moe_ranks_));
    moe_recvs_.resize(static_cast<size_t>(moe_ranks_));
    moe_local_rows_.resize(static_cast<size_t>(moe_ranks_));
    slice_.resize(static_cast<size_t>(att_ranks_));
    last_attn_.assign(static_cast<size_t>(att_ranks_), -1);
    dest_count_.assign(static_cast<size_t>(moe_ranks_), 0);
    for (int g = 0; g < moe_ranks_; ++g) {
      group_m_[g].assign(ge_[g].size() + static_cast<size_t>(shared_), 0);
    }
    last_moe_op_.assign(static_cast<size_t>(moe_ranks_), -1);
    routing_counts_.assign(static_cast<size_t>(m_.experts), 0);
    pend_slices_.resize(static_cast<size_t>(mbs_));
    rank_op_.assign(static_cast<size_t>(total_ranks_), -1);
    xprod_.assign(static_cast<size_t>(total_ranks_), -1);
    xbytes_.assign(static_cast<size_t>(total_ranks_), 0);
    xseen_.assign(static_cast<size_t>(total_ranks_), 0);
    xmode_ = s_.plan.expert_exchange.mode;
    xsms_ = s_.plan.expert_exchange.sms();
    xlast_.assign(static_cast<size_t>(total_ranks_), -1);
    if (xmode_ == ExchangeMode::kHierarchical) {
      // Plan ranks by node, ascending GPU; a rank's node and its place there (the proxy rule).
      const int gpn = std::max(1, s_.topology.gpus_per_node);
      node_of_.resize(static_cast<size_t>(total_ranks_));
      std::vector<std::pair<int, int>> by_gpu;
      for (int r = 0; r < total_ranks_; ++r) by_gpu.emplace_back(p_.ranks[r].gpu, r);
      std::sort(by_gpu.begin(), by_gpu.end());
      int nodes = 0;
      for (const auto& [gpu, r] : by_gpu) {
        const int node = gpu / gpn;
        node_of_[r] = node;
        nodes = std::max(nodes, node + 1);
      }
      node_ranks_.assign(static_cast<size_t>(nodes), {});
      for (const auto& [gpu, r] : by_gpu) node_ranks_[gpu / gpn].push_back(r);
      node_stamp_.assign(static_cast<size_t>(nodes), -1);
      node_count_.assign(static_cast<size_t>(nodes), 0);
      gpu_stamp_.assign(static_cast<size_t>(moe_ranks_), -1);
    }
  }

  // Hierarchical exchange: the plan rank on `node` that receives the inter-node copies of
  // `sender`: the rank there whose GPU has the sender's local index (DeepEP's rule), or, where
  // the plan leaves that GPU out, the (local index mod ranks on the node)-th rank there.
  int proxy(int node, int sender) const {
    const std::vector<int>& on = node_ranks_[static_cast<size_t>(node)];
    const int gpn = std::max(1, s_.topology.gpus_per_node);
    const int local = p_.ranks[sender].gpu % gpn;
    for (int r : on) {
      if (p_.ranks[r].gpu % gpn == local) return r;
    }
    return on[static_cast<size_t>(local) % on.size()];
  }

  // Installs an expert placement: holders, each GPU's experts, each holder's local index and
  // the (attention rank, expert) → holder slot table the token routing reads.
  void set_placement(ExpertPlacement pl) {
    placement_ = std::move(pl);
    eg_ = placement_.holders;
    // Expert tensor parallelism: holders are expert groups; every GPU of group k holds
    // group k's experts (ge_ is per GPU, the same list on each of the group's GPUs).
    ge_ = gpu_experts(eg_, groups_);
    if (etp_ > 1) {
      std::vector<std::vector<int>> per_gpu;
      per_gpu.reserve(static_cast<size_t>(moe_ranks_));
      for (const auto& held : ge_) {
        for (int j = 0; j < etp_; ++j) per_gpu.push_back(held);
      }
      ge_ = std::move(per_gpu);
    }
    local_index_.assign(eg_.size(), {});
    for (size_t e = 0; e < eg_.size(); ++e) {
      for (int g : eg_[e]) {
        const auto& list = ge_[static_cast<size_t>(g) * etp_];
        local_index_[e].push_back(static_cast<int32_t>(
            std::lower_bound(list.begin(), list.end(), static_cast<int>(e)) - list.begin()));
      }
    }
    route_slot_.clear();
    if (!placement_.route.empty()) {
      route_slot_.assign(static_cast<size_t>(att_ranks_) * eg_.size(), 0);
      for (int a = 0; a < att_ranks_; ++a) {
        for (size_t e = 0; e < eg_.size(); ++e) {
          const auto& h = eg_[e];
          route_slot_[static_cast<size_t>(a) * eg_.size() + e] = static_cast<int32_t>(
              std::find(h.begin(), h.end(), placement_.route[a][e]) - h.begin());
        }
      }
    }
  }

  // Re-placement at the start of decode step `step` (plan.balance.rebalance_every): the next
  // placement (balancer.hpp next_placement); the experts a GPU gains are copied to it
  // by one kExpertMove exchange per layer, emitted before that layer's first dispatch.
  void rebalance(int step) {
    ExpertPlacement next = next_placement(s_, placement_, step, per_sequence_routing_);
    moves_.clear();
    std::vector<int64_t> sent(static_cast<size_t>(moe_ranks_), 0);
    for (size_t e = 0; e < next.holders.size(); ++e) {
      const auto& old = placement_.holders[e];
      for (int g : next.holders[e]) {
        if (std::find(old.begin(), old.end(), g) != old.end()) continue;
        int src = old.front();
        for (int o : old) {
          if (sent[o] < sent[src]) src = o;
        }
        sent[src]++;
        moves_.push_back({src, g});
      }
    }
    move_step_ = step;
    const size_t counts = group_m_.size();
    set_placement(std::move(next));
    for (size_t g = 0; g < counts; ++g) {
      group_m_[g].assign(ge_[g].size() + static_cast<size_t>(shared_), 0);
    }
  }

  // The expert weight moves of layer `layer` (one exchange, MoE ranks only). A receiving
  // rank waits for its MoE compute so far (the slot it overwrites is free).
  void emit_moves(int layer) {
    if (moves_.empty()) return;
    std::vector<Xfer> ts;
    const int64_t bytes = m_.expert_weight_bytes();
    for (const auto& [src, dst] : moves_) {
      ts.push_back(Xfer{moe_base_ + src, moe_base_ + dst, bytes, -1});
    }
    // Merge transfers between the same pair (several experts): one transfer each pair.
    std::sort(ts.begin(), ts.end(), [](const Xfer& a, const Xfer& b) {
      return std::tie(a.src, a.dst) < std::tie(b.src, b.dst);
    });
    std::vector<Xfer> merged;
    for (const Xfer& t : ts) {
      if (!merged.empty() && merged.back().src == t.src && merged.back().dst == t.dst) {
        merged.back().bytes += t.bytes;
      } else {
        merged.push_back(t);
      }
    }
    cur_layer_ = layer;
    group_exchange(merged, OpRole::kExpertMove, "expert_move");
    for (const Xfer& t : merged) {
      const OpId d = last_moe_op_[static_cast<size_t>(t.dst - moe_base_)];
      Op& op = op_at(t.recv);
      if (d >= 0 && std::find(op.deps.begin(), op.deps.end(), d) == op.deps.end()) {
        op.deps.push_back(d);
      }
    }
  }

  // The sequences of (replica r, micro-batch mb): batch_split.hpp's partition.
  int64_t chunk_begin(int r, int mb) const { return split_.first(r, mb); }
  int64_t chunk_size(int r, int mb) const { return split_.size(r, mb); }

  // Makes replica r's split current: hp_, sp_, t_, heads_l_, kvh_l_ (the same for every
  // replica unless plan.attention.replicas lists them).
  void enter_replica(int r) {
    const ReplicaSplit& x = rep_[static_cast<size_t>(r)];
    hp_ = x.hp;
    sp_ = x.sp;
    t_ = x.t;
    heads_l_ = x.heads_l;
    kvh_l_ = x.kvh_l;
  }
  // The replica of attention rank a.
  int replica_of(int a) const {
    int r = 0;
    while (r + 1 < replicas_ && rep_[static_cast<size_t>(r) + 1].base <= a) ++r;
    return r;
  }

  void build_ranks() {
    const auto& gr = s_.plan.gpu_ranks;
    p_.ranks.resize(static_cast<size_t>(total_ranks_));
    for (int i = 0; i < total_ranks_; ++i) {
      RankInfo& ri = p_.ranks[i];
      ri.gpu = gr.empty() ? i : gr[i];
      if (ri.gpu < 0 || ri.gpu >= s_.topology.total_gpus()) {
        throw std::invalid_argument("plan.gpu_ranks[" + std::to_string(i) + "]: GPU " +
                                    std::to_string(ri.gpu) + " is not in topology " +
                                    s_.topology.name);
      }
      if (i < att_ranks_) {
        const int r = per_replica_ ? replica_of(i) : i / t_;
        enter_replica(r);
        const int idx = i - rep_[static_cast<size_t>(r)].base;
        ri.replica = r;
        ri.group_index = idx;
        ri.kv_append = idx % sp_ == 0;  // KV shard 0 takes the new token (see step_kv)
        for (int mb = 0; mb < mbs_; ++mb) {
          RankBatch b;
          b.first_sequence = chunk_begin(r, mb);
          b.sequences = chunk_size(r, mb);
          b.slice_offset = part_begin(b.sequences, t_, idx);
          b.slice_first = b.first_sequence + b.slice_offset;
          b.slice_tokens = part(b.sequences, t_, idx);
          ri.sequences += static_cast<int32_t>(b.sequences);
          ri.batches.push_back(b);
        }
        if (ma_) {
          ri.role = Role::kAttention;
          ri.label = "attn r" + std::to_string(r) + " h" + std::to_string(idx / sp_);
          if (sp_ > 1) ri.label += " s" + std::to_string(idx % sp_);
        } else {
          ri.role = Role::kColocated;
          ri.experts = ge_[i];
          ri.label = "coloc r" + std::to_string(r) + " t" + std::to_string(idx) + " (" +
                     experts_label(ri.experts) + tp_label(i) + ")";
        }
      } else {
        const int g = i - moe_base_;
        ri.role = Role::kMoe;
        ri.experts = ge_[g];
        ri.label =
            "moe " + std::to_string(g) + " (" + experts_label(ri.experts) + tp_label(g) + ")";
      }
    }
  }

  void build_groups() {
    Group world{"world", {}};
    for (int i = 0; i < total_ranks_; ++i) world.ranks.push_back(i);
    p_.groups.push_back(std::move(world));
    replica_group_.resize(static_cast<size_t>(replicas_));
    sp_group_.assign(static_cast<size_t>(replicas_), {});
    for (int r = 0; r < replicas_; ++r) {
      enter_replica(r);
      const int base = rep_[static_cast<size_t>(r)].base;
      sp_group_[r].assign(static_cast<size_t>(hp_), -1);
      Group g{(ma_ ? "attn.r" : "tp.r") + std::to_string(r), {}};
      for (int i = 0; i < t_; ++i) g.ranks.push_back(base + i);
      replica_group_[r] = static_cast<int>(p_.groups.size());
      p_.groups.push_back(std::move(g));
      if (sp_ > 1) {
        for (int h = 0; h < hp_; ++h) {
          Group sg{"attn.r" + std::to_string(r) + ".h" + std::to_string(h), {}};
          for (int s = 0; s < sp_; ++s) sg.ranks.push_back(base + h * sp_ + s);
          sp_group_[r][h] = static_cast<int>(p_.groups.size());
          p_.groups.push_back(std::move(sg));
        }
      }
    }
    if (ma_) {
      Group moe{"moe", {}};
      for (int g = 0; g < moe_ranks_; ++g) moe.ranks.push_back(moe_base_ + g);
      p_.groups.push_back(std::move(moe));
    }
    // Expert tensor parallelism: one communicator per expert group (its reduce-scatter).
    expert_group_.assign(static_cast<size_t>(etp_ > 1 ? groups_ : 0), -1);
    for (int k = 0; k < static_cast<int>(expert_group_.size()); ++k) {
      Group g{(ma_ ? "moe.x" : "ep.x") + std::to_string(k), {}};
      for (int j = 0; j < etp_; ++j) g.ranks.push_back(moe_base_ + k * etp_ + j);
      expert_group_[k] = static_cast<int>(p_.groups.size());
      p_.groups.push_back(std::move(g));
    }
  }

  // ", tp j/x" for an MoE-local GPU under expert tensor parallelism, else nothing.
  std::string tp_label(int g) const {
    if (etp_ == 1) return {};
    return ", tp " + std::to_string(g % etp_) + "/" + std::to_string(etp_);
  }

  // Every step has nearly the same ops (routing varies the exchange count a little): when the
  // second step starts, reserve for all steps so that the op vector is not regrown (a regrowth
  // doubles the capacity and copies every op: twice the memory, all of it page-faulted). The
  // estimate has a 25% margin because the first step's count is taken before its last ops
  // (those the next step's first layer emits for it) exist: paper, 100 steps: 1,488 ops at
  // that point, 1,568 per step in the end.
  void reserve_rest() {
    constexpr double kMargin = 1.25;
    const double ops = static_cast<double>(p_.ops.size()) * steps_ * kMargin;
    const double colls = static_cast<double>(p_.collectives.size()) * steps_ * kMargin;
    p_.ops.reserve(static_cast<size_t>(ops));
    p_.collectives.reserve(static_cast<size_t>(colls));
    for (auto& r : p_.stream_ops) {
      for (auto& list : r) list.reserve(static_cast<size_t>(list.size() * steps_ * kMargin));
    }
  }

  // KV tokens of each (replica, micro-batch, sequence shard) at this step: every sequence
  // holds its initial context plus one token per step so far, plus the one appended now.
  // kv_win_: the same for a sliding-window layer, which attends to min(length, window)
  // tokens (split over the sp shards alike).
  void step_kv(int step) {
    kv_.assign(static_cast<size_t>(replicas_) * mbs_ * sp_max_, 0);
    const int64_t w = m_.sliding_window;
    if (w > 0) kv_win_.assign(kv_.size(), 0);
    for (int mb = 0; mb < mbs_; ++mb) {
      for (int r = 0; r < replicas_; ++r) {
        const int64_t b = chunk_begin(r, mb), n = chunk_size(r, mb);
        const int sp = rep_[static_cast<size_t>(r)].sp;
        for (int64_t j = b; j < b + n; ++j) {
          const int64_t len = static_cast<int64_t>(ctx_[j]) + step + 1;
          for (int sh = 0; sh < sp; ++sh) {
            kv_[(mb * replicas_ + r) * sp_max_ + sh] += part(len, sp, sh);
            if (w > 0) {
              kv_win_[(mb * replicas_ + r) * sp_max_ + sh] += part(std::min(len, w), sp, sh);
            }
          }
        }
      }
    }
  }

  // ---- op construction ---------------------------------------------------------------------
  Op make(int rank, Stream stream, OpKind kind, OpRole role, const char* name) const {
    Op o;
    o.rank = rank;
    o.stream = stream;
    o.kind = kind;
    o.role = role;
    o.name = OpName::literal(name);  // the compiler's names are string literals
    o.layer = cur_layer_;
    o.step = cur_step_;
    o.micro_batch = cur_mb_;
    return o;
  }

  OpId add(Op&& o, bool place = true) {
    const OpId id = op_base_ + static_cast<OpId>(p_.ops.size());
    o.id = id;
    const int rank = o.rank, stream = o.stream;
    p_.ops.push_back(std::move(o));
    if (place) p_.stream_ops[rank][stream].push_back(id);
    return id;
  }

  // An op emitted in the current window (ids are global; p_ holds the window's ops).
  Op& op_at(OpId id) { return p_.ops[static_cast<size_t>(id - op_base_)]; }

  static void dep(Op& o, OpId d) {
    if (d >= 0) o.deps.push_back(d);
  }

  // Bytes of `rows` vectors of `cols` elements in format t (scales included).
  static int64_t vb(models::DType t, int64_t rows, int64_t cols) {
    return models::vector_bytes(t, rows, cols);
  }

  // A weight GEMM C[m×n] = A[m×k]·B[k×n]: B in the weight format (16-bit when `small`), A and
  // C in the activations' format unless `in` says otherwise.
  OpId gemm(int rank, OpRole role, const char* name, int64_t m, int64_t n, int64_t k, OpId d = -1,
            bool small = false) {
    Op o = make(rank, kCompute, OpKind::kGemm, role, name);
    o.m = m;
    o.n = n;
    o.k = k;
    o.dtype = small ? small_dt_ : gemm_dt_;
    o.flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
    o.weight_bytes = models::matrix_bytes(small ? small_dt_ : wt_, k, n);
    o.hbm_bytes = o.weight_bytes + vb(act_, m, k) + vb(act_, m, n);
    dep(o, d);
    return add(std::move(o));
  }

  // One GEMM per group (expert, or head for MLA's absorbed projections): group e multiplies
  // group_m[e] rows of format `in` by its own k×n weight matrix, writing format `out`.
  OpId grouped_gemm(int rank, OpRole role, const char* name, const std::vector<int32_t>& gm,
                    int64_t n, int64_t k, models::DType in, models::DType out, OpId d = -1) {
    Op o = make(rank, kCompute, OpKind::kGroupedGemm, role, name);
    o.n = n;
    o.k = k;
    o.dtype = gemm_dt_;
    o.group_m = gm;
    int64_t rows = 0;
    const int64_t w = models::matrix_bytes(wt_, k, n);
    for (int32_t m : gm) {
      o.flops += 2.0 * m * static_cast<double>(n) * static_cast<double>(k);
      if (m > 0) o.weight_bytes += w;  // an expert with no tokens is not read
      rows += m;
    }
    o.hbm_bytes = o.weight_bytes + vb(in, rows, k) + vb(out, rows, n);
    dep(o, d);
    return add(std::move(o));
  }

  // A compute op that is not a GEMM or attention: `rows` × `cols` is the tensor it works on
  // (Op::m, Op::n), `hbm` its bytes.
  OpId simple(int rank, OpKind kind, OpRole role, const char* name, int64_t rows, int64_t cols,
              int64_t hbm, int64_t weights = 0, OpId d = -1) {
    Op o = make(rank, kCompute, kind, role, name);
    o.m = rows;
    o.n = cols;
    o.dtype = act_;
    o.hbm_bytes = hbm;
    o.weight_bytes = weights;
    dep(o, d);
    return add(std::move(o));
  }

  // One collective over `group`; member i depends on deps[i] (-1 = none). Returns the
  // member op ids in the group's rank order.
  std::vector<OpId> collective(OpKind kind, OpRole role, const char* name, int group, int64_t bytes,
                               const std::vector<OpId>& deps) {
    const int c = coll_base_ + static_cast<int>(p_.collectives.size());
    p_.collectives.push_back(Collective{kind, group, bytes, {}, {}});
    std::vector<OpId> ids;
    const auto& ranks = p_.groups[group].ranks;
    for (size_t i = 0; i < ranks.size(); ++i) {
      Op o = make(ranks[i], kComm, kind, role, name);
      o.comm_bytes = bytes;
      o.collective = c;
      dep(o, deps[i]);
      ids.push_back(add(std::move(o)));
    }
    p_.collectives[c - coll_base_].ops = ids;
    return ids;
  }

  // One grouped exchange (kExchange, one NCCL group call per rank): one op per participating
  // rank in ascending rank order, one Program transfer per element of `ts` (sorted by
  // (src, dst)). The op of a sending rank depends on the producer of its rows. Sets each
  // element's send/recv to its src/dst rank's op; rank_op_[r] is rank r's op (or -1) until
  // the next call. Nothing is emitted when `ts` is empty.
  void group_exchange(std::vector<Xfer>& ts, OpRole role, const char* name) {
    for (int r : xranks_) rank_op_[r] = -1;
    xranks_.clear();
    if (ts.empty()) return;
    std::sort(ts.begin(), ts.end(), [](const Xfer& a, const Xfer& b) {
      return std::tie(a.src, a.dst) < std::tie(b.src, b.dst);
    });
    auto touch = [&](int r) {
      if (!xseen_[r]) {
        xseen_[r] = 1;
        xranks_.push_back(r);
      }
    };
    for (const Xfer& t : ts) {
      if (t.src == t.dst) throw std::logic_error("compiler: a transfer to its own rank");
      touch(t.src);
      touch(t.dst);
      xbytes_[t.src] += t.bytes;
      xbytes_[t.dst] += t.bytes;
      if (t.producer >= 0) {
        if (xprod_[t.src] >= 0 && xprod_[t.src] != t.producer) {
          throw std::logic_error("compiler: one rank's sends of an exchange have two producers");
        }
        xprod_[t.src] = t.producer;
      }
    }
    std::sort(xranks_.begin(), xranks_.end());
    const int x = exch_base_ + static_cast<int>(p_.exchanges.size());
    p_.exchanges.emplace_back();
    for (int r : xranks_) {
      Op o = make(r, kComm, OpKind::kExchange, role, name);
      o.comm_bytes = xbytes_[r];
      o.exchange = x;
      dep(o, xprod_[r]);
      rank_op_[r] = add(std::move(o));
      xbytes_[r] = 0;
      xprod_[r] = -1;
      xseen_[r] = 0;
    }
    auto& list = p_.exchanges[x - exch_base_].transfers;
    list.reserve(ts.size());
    for (Xfer& t : ts) {
      t.send = rank_op_[t.src];
      t.recv = rank_op_[t.dst];
      list.push_back(masep::plan::Transfer{t.send, t.recv, t.bytes});
    }
  }

  // ---- the layer -----------------------------------------------------------------------------
  struct Slice {
    int64_t begin = 0, tokens = 0;  // sequence index range of this rank's token slice
    int64_t rows = 0;               // dispatched rows (token·expert pairs + shared rows)
    OpId permute = -1;
  };

  struct Pending {
    bool valid = false;
    int step = 0, layer = 0;
    std::vector<Xfer> returns;
    std::vector<Xfer> returns_rdma;  // hierarchical: the second (inter-node) return stage
    // Expert tensor parallelism: each MoE GPU's moe_unpermute (-1: no rows) and each expert
    // group's rows; returns then carry the MoE-local GPU as producer until finish() emits
    // the group's reduce-scatter.
    std::vector<OpId> unpermute;
    std::vector<int64_t> group_rows;
  };

  // One stage of the expert exchange: a group_exchange tagged with the mode's transport and SMs;
  // records each rank's op in xlast_ (its last op of the exchange so far).
  void exchange_stage(std::vector<Xfer>& ts, OpRole role, const char* name) {
    group_exchange(ts, role, name);
    if (ts.empty()) return;
    Exchange& x = p_.exchanges.back();
    x.transport = xmode_ == ExchangeMode::kNccl           ? ExchangeTransport::kNccl
                  : xmode_ == ExchangeMode::kHierarchical ? ExchangeTransport::kDeepEpNormal
                                                          : ExchangeTransport::kDeepEpLowLatency;
    x.sms = xsms_;
    for (int r : xranks_) {
      if (xlast_[r] < 0) xlast_ranks_.push_back(r);
      xlast_[r] = rank_op_[r];
    }
  }
  void exchange_begin() {
    for (int r : xlast_ranks_) xlast_[r] = -1;
    xlast_ranks_.clear();
  }

  // The dispatch of the current (step, layer, mb) from dispatch_ (one logical transfer per
  // (attention rank, MoE GPU)): one exchange, or with the hierarchical mode an inter-node
  // stage (node_tokens_: one copy per token and destination node, to the proxy there) and an
  // NVLink stage (direct sends inside the sender's node, forwarding by the proxies).
  void emit_dispatch() {
    exchange_begin();
    if (xmode_ != ExchangeMode::kHierarchical) {
      exchange_stage(dispatch_, OpRole::kDispatch, "dispatch");
      return;
    }
    std::vector<Xfer> rdma;
    for (const Xfer& t : node_tokens_) {
      rdma.push_back(Xfer{t.src, t.dst, t.bytes * row_dis_, t.producer});
    }
    exchange_stage(rdma, OpRole::kDispatch, "dispatch_rdma");
    std::vector<Xfer> nvl;
    for (const Xfer& t : dispatch_) {
      if (node_of_[t.src] == node_of_[t.dst]) {
        nvl.push_back(t);
        continue;
      }
      const int p = proxy(node_of_[t.dst], t.src);
      if (p != t.dst) nvl.push_back(Xfer{p, t.dst, t.bytes, -1});
    }
    merge_pairs(nvl);
    exchange_stage(nvl, OpRole::kDispatch, "dispatch_nvl");
  }

  // Sums transfers of the same (src, dst) (forwarded rows of several senders); keeps the
  // first producer (a rank's sends have at most one, see group_exchange).
  static void merge_pairs(std::vector<Xfer>& ts) {
    std::stable_sort(ts.begin(), ts.end(), [](const Xfer& a, const Xfer& b) {
      return std::tie(a.src, a.dst) < std::tie(b.src, b.dst);
    });
    size_t out = 0;
    for (size_t i = 0; i < ts.size(); ++i) {
      if (out > 0 && ts[out - 1].src == ts[i].src && ts[out - 1].dst == ts[i].dst) {
        ts[out - 1].bytes += ts[i].bytes;
        if (ts[out - 1].producer < 0) ts[out - 1].producer = ts[i].producer;
      } else {
        ts[out++] = ts[i];
      }
    }
    ts.resize(out);
  }

  // Hierarchical mode: turns pend.returns (one logical transfer per (MoE GPU, attention rank),
  // produced by the GPU's moe_unpermute) into the NVLink stage (direct inside a node, else to
  // the proxy on the MoE GPU's node) and the inter-node stage (each proxy returns one row per
  // token of the node to its sender: the dispatch's node copies reversed). `un_of[g]`: MoE GPU
  // g's moe_unpermute of this micro-batch (-1: none).
  void hierarchical_returns(Pending& pend, const std::vector<OpId>& un_of) {
    std::vector<Xfer> nvl;
    for (const Xfer& t : pend.returns) {
      if (node_of_[t.src] == node_of_[t.dst]) {
        nvl.push_back(t);
        continue;
      }
      const int p = proxy(node_of_[t.src], t.dst);
      if (p != t.src) nvl.push_back(Xfer{t.src, p, t.bytes, t.producer});
    }
    merge_pairs(nvl);
    pend.returns = std::move(nvl);
    pend.returns_rdma.clear();
    for (const Xfer& t : node_tokens_) {
      const int p = t.dst;
      const OpId prod = p >= moe_base_ && p < moe_base_ + moe_ranks_
                            ? un_of[static_cast<size_t>(p - moe_base_)]
                            : -1;
      pend.returns_rdma.push_back(Xfer{p, t.src, t.bytes * row_cmb_, prod});
    }
    merge_pairs(pend.returns_rdma);
  }

  // The attention part of (step, layer, mb) on every attention rank, up to the permute (MoE
  // layers) or through the dense FFN (dense layers).
  void attention_front(int step, int layer, int mb) {
    cur_step_ = step;
    cur_layer_ = layer;
    cur_mb_ = mb;
    const bool gather = layer > 0 || step > 0;
    const bool dense = m_.is_dense_layer(layer);
    for (int r = 0; r < replicas_; ++r) {
      enter_replica(r);
      const int64_t T = chunk_size(r, mb);
      const int base = rep_[static_cast<size_t>(r)].base;
      std::vector<OpId> prev(t_), ag(t_, -1), attn(t_), ar(t_, -1), out(t_), rs(t_, -1);
      for (int i = 0; i < t_; ++i) prev[i] = last_combine_[mb][base + i];
      // Gathers the previous layer's (or step's) output slices: every group GPU needs all
      // tokens. At layer 0 it carries the last layer's output of the previous step (input of
      // the LM head and sampling, which masep does not model).
      if (gather && t_ > 1) {
        ag = collective(OpKind::kAllGather, OpRole::kGather, "all_gather", replica_group_[r],
                        vb(act_, T, h_), prev);
      }
      for (int i = 0; i < t_; ++i) {
        const int a = base + i, sh = i % sp_;
        simple(a, OpKind::kElementwise, OpRole::kNorm, "rmsnorm", T, h_,
               2 * vb(act_, T, h_) + 2 * h_, 2 * h_, ag[i]);
        const auto& kv = m_.is_sliding_layer(layer) ? kv_win_ : kv_;
        const int64_t kv_tokens = kv[(mb * replicas_ + r) * sp_max_ + sh];
        attn[i] = m_.is_mla() ? mla_attention(a, T, kv_tokens, sh == 0)
                              : mha_attention(a, T, kv_tokens, sh == 0);
      }
      // Width of one token's attention output per rank (what sequence parallelism merges):
      // MLA merges the latent outputs before W_UV.
      const int64_t attn_out = m_.is_mla() ? static_cast<int64_t>(heads_l_) * m_.mla.kv_lora_rank
                                           : static_cast<int64_t>(heads_l_) * hd_;
      if (sp_ > 1) {
        // Partial attention outputs of the KV shards are merged across the sp peers.
        for (int h = 0; h < hp_; ++h) {
          std::vector<OpId> d(sp_);
          for (int sh = 0; sh < sp_; ++sh) d[sh] = attn[h * sp_ + sh];
          auto ids = collective(OpKind::kAllReduce, OpRole::kAttnReduce, "attn_reduce",
                                sp_group_[r][h], vb(act_, T, attn_out), d);
          for (int sh = 0; sh < sp_; ++sh) ar[h * sp_ + sh] = ids[sh];
        }
      }
      for (int i = 0; i < t_; ++i) {
        // With sequence parallelism the sp peers split the tokens for the output
        // projection (no redundant GEMM); the reduce-scatter sums over head groups.
        const int64_t m = sp_ > 1 ? part(T, sp_, i % sp_) : T;
        OpId d = ar[i];
        int64_t out_k = static_cast<int64_t>(heads_l_) * hd_;
        if (m_.is_mla()) {
          const int64_t kl = m_.mla.kv_lora_rank, dv = m_.mla.v_head_dim;
          d = grouped_gemm(base + i, OpRole::kMlaAbsorbV, "mla_absorb_v",
                           std::vector<int32_t>(static_cast<size_t>(heads_l_),
                                                static_cast<int32_t>(m)),
                           dv, kl, act_, act_, ar[i]);
          out_k = static_cast<int64_t>(heads_l_) * dv;
        }
        out[i] = gemm(base + i, OpRole::kOutProj, "out_proj", m, h_, out_k, d);
      }
      if (t_ > 1) {
        rs = collective(OpKind::kReduceScatter, OpRole::kScatter, "reduce_scatter",
                        replica_group_[r], vb(act_, T, h_), out);
      }
      const int64_t b0 = chunk_begin(r, mb);
      if (dense) {
        for (int i = 0; i < t_; ++i) dense_ffn(base + i, mb, b0, T, i, rs[i]);
        continue;
      }
      if (per_sequence_routing_ || sampler_.replays_trace()) {
        sampler_.sample_sequences(step, layer, chunk_begin(r, mb), static_cast<int>(T), route_);
      } else {
        sampler_.sample(step, layer, mb, r, static_cast<int>(T), route_);
      }
      if (record_routing_) {
        if (r == 0) {
          token_route_.clear();
          token_first_ = chunk_begin(0, mb);
        }
        token_route_.insert(token_route_.end(), route_.begin(), route_.end());
      }
      for (int64_t q = 0; q < T * m_.top_k; ++q) routing_counts_[route_[q]]++;
      for (int i = 0; i < t_; ++i) {
        const int a = base + i;
        Slice& sl = slice_[a];
        sl.begin = b0 + part_begin(T, t_, i);
        sl.tokens = part(T, t_, i);
        sl.rows = sl.tokens * (m_.top_k + (shared_ > 0 ? 1 : 0));
        sl.permute = -1;
        if (sl.tokens == 0) continue;
        const int64_t u = sl.tokens;
        simple(a, OpKind::kElementwise, OpRole::kAddNorm, "add_norm", u, h_,
               vb(act_, 4 * u, h_) + 2 * h_, 2 * h_, rs[i]);
        gemm(a, OpRole::kRouterGemm, "router_gemm", u, m_.experts, h_, -1, /*small=*/true);
        simple(a, OpKind::kRouter, OpRole::kRouter, "router", u, m_.experts,
               vb(act_, u, m_.experts) + u * m_.top_k * 8);
        sl.permute = simple(a, OpKind::kPermute, OpRole::kPermute, "permute", u, h_,
                            vb(act_, u, h_) + sl.rows * row_dis_);
        route_slice(a, sl, sl.begin - b0);
      }
    }
  }

  // MHA/GQA attention of T tokens on one rank: qkv GEMM, rope, decode attention (+ KV append
  // on the first KV shard). Returns the attention op.
  OpId mha_attention(int a, int64_t T, int64_t kv_tokens, bool append) {
    gemm(a, OpRole::kQkv, "qkv", T, static_cast<int64_t>(heads_l_ + 2 * kvh_l_) * hd_, h_);
    Op rope = make(a, kCompute, OpKind::kElementwise, OpRole::kRope, "rope");
    rope.m = T;
    rope.n = static_cast<int64_t>(heads_l_ + 2 * kvh_l_) * hd_;  // the qkv rows it rotates in
    rope.heads = heads_l_;
    rope.kv_heads = kvh_l_;
    rope.head_dim = hd_;
    rope.dtype = act_;
    rope.hbm_bytes = 2 * vb(act_, T, static_cast<int64_t>(heads_l_ + kvh_l_) * hd_);
    add(std::move(rope));
    Op o = make(a, kCompute, OpKind::kAttention, OpRole::kAttention, "attn");
    o.batch = static_cast<int32_t>(T);
    o.heads = heads_l_;
    o.kv_heads = kvh_l_;
    o.head_dim = hd_;
    o.dtype = act_;
    o.kv_tokens = kv_tokens;
    o.flops = 4.0 * static_cast<double>(o.kv_tokens) * heads_l_ * hd_;
    const int64_t kv_tok_bytes = vb(kvt_, 2LL * kvh_l_, hd_);
    o.hbm_bytes = o.kv_tokens * kv_tok_bytes                                // KV cache read
                  + vb(act_, T, static_cast<int64_t>(heads_l_ + 2 * kvh_l_) * hd_)  // q, k, v
                  + vb(act_, T, static_cast<int64_t>(heads_l_) * hd_)        // output
                  + (append ? T * kv_tok_bytes : 0);                        // KV append
    return add(std::move(o));
  }

  // MLA attention of T tokens on one rank, decoded with absorbed projections (DeepSeek-V2
  // section 2.1.3; FlashMLA's decode path). heads_l query heads; ql, kl, dn, dr, dv as in
  // program.hpp. Per token:
  //   mla_down     [c_q | c_kv | k_rope] = x·[W_DQ | W_DKV]      2·H·(ql + kl + dr) FLOPs
  //   mla_norm     rmsnorm of c_q and c_kv
  //   mla_q_up     q = c_q·W_UQ (heads_l·(dn + dr))             2·ql·heads_l·(dn + dr)
  //   mla_absorb_k q_lat[h] = q_nope[h]·W_UK[h] (dn → kl)       2·heads_l·dn·kl
  //   mla_rope     rotary embedding of q_rope (heads_l·dr) and k_rope (dr)
  //   mla_attention over the cache of kv tokens of kl + dr elements (one latent per token,
  //                shared by every head): scores 2·kv·heads_l·(kl + dr), values 2·kv·heads_l·kl;
  //                appends [c_kv | k_rope] (first KV shard)
  // then (attention_front) mla_absorb_v o[h] = o_lat[h]·W_UV[h] (kl → dv) and out_proj.
  // The down projection (and its norm) is replicated on every head-parallel rank: each needs
  // the whole latent. Returns the attention op.
  OpId mla_attention(int a, int64_t T, int64_t kv_tokens, bool append) {
    const models::Mla& x = m_.mla;
    const int64_t ql = x.q_lora_rank, kl = x.kv_lora_rank, dn = x.qk_nope_head_dim,
                  dr = x.qk_rope_head_dim;
    const int64_t nq = heads_l_;
    const int64_t q_cols = ql > 0 ? ql : nq * (dn + dr);
    gemm(a, OpRole::kMlaDown, "mla_down", T, q_cols + kl + dr, h_);
    const int64_t normed = ql + kl;
    simple(a, OpKind::kElementwise, OpRole::kMlaNorm, "mla_norm", T, normed,
           2 * vb(act_, T, normed) + 2 * normed, 2 * normed);
    if (ql > 0) gemm(a, OpRole::kMlaQUp, "mla_q_up", T, nq * (dn + dr), ql);
    grouped_gemm(a, OpRole::kMlaAbsorbK, "mla_absorb_k",
                 std::vector<int32_t>(static_cast<size_t>(nq), static_cast<int32_t>(T)), kl, dn,
                 act_, act_);
    Op rope = make(a, kCompute, OpKind::kElementwise, OpRole::kMlaRope, "mla_rope");
    rope.m = T;
    rope.n = (nq + 1) * dr;
    rope.heads = heads_l_;
    rope.kv_heads = 1;
    rope.head_dim = static_cast<int32_t>(dr);
    rope.dtype = act_;
    rope.hbm_bytes = 2 * vb(act_, T, (nq + 1) * dr);
    add(std::move(rope));
    Op o = make(a, kCompute, OpKind::kAttention, OpRole::kMlaAttention, "mla_attn");
    o.batch = static_cast<int32_t>(T);
    o.heads = heads_l_;
    o.kv_heads = 1;
    o.head_dim = static_cast<int32_t>(kl + dr);
    o.dtype = act_;
    o.kv_tokens = kv_tokens;
    const double kv = static_cast<double>(kv_tokens);
    o.flops = 2.0 * kv * nq * (kl + dr) + 2.0 * kv * nq * kl;
    const int64_t kv_tok_bytes = vb(kvt_, 1, kl + dr);
    o.hbm_bytes = kv_tokens * kv_tok_bytes          // latent cache read
                  + vb(act_, T, nq * (kl + dr))     // absorbed queries (latent + rope part)
                  + vb(act_, T, nq * kl)            // latent outputs
                  + (append ? T * kv_tok_bytes : 0);  // append of [c_kv | k_rope]
    return add(std::move(o));
  }

  // The dense FFN of a dense layer on attention rank a (index i of its group): the token
  // slice left by the reduce-scatter goes through add_norm, gate/up GEMM, activation and the
  // down GEMM (which adds the residual and is the layer's output: what the next layer
  // gathers). Every attention rank holds the dense FFN whole (data parallel over slices).
  void dense_ffn(int a, int mb, int64_t b0, int64_t T, int i, OpId rs) {
    Slice& sl = slice_[a];
    sl.begin = b0 + part_begin(T, t_, i);
    sl.tokens = part(T, t_, i);
    sl.rows = 0;
    sl.permute = -1;
    if (sl.tokens == 0) {
      last_combine_[mb][a] = -1;
      return;
    }
    const int64_t u = sl.tokens, f = m_.dense_ffn, in = m_.ffn_in_columns(m_.dense_ffn);
    simple(a, OpKind::kElementwise, OpRole::kAddNorm, "add_norm", u, h_,
           vb(act_, 4 * u, h_) + 2 * h_, 2 * h_, rs);
    gemm(a, OpRole::kDenseUp, "dense_up", u, in, h_);
    simple(a, OpKind::kElementwise, OpRole::kDenseAct, "dense_act", u, f,
           vb(act_, u, in) + vb(act_, u, f));
    const OpId down = gemm(a, OpRole::kDenseDown, "dense_down", u, h_, f);
    op_at(down).hbm_bytes += vb(act_, u, h_);  // the residual it adds
    last_combine_[mb][a] = down;
  }

  // Routes the tokens of one attention rank's slice: counts rows per destination MoE GPU and
  // per (MoE GPU, local expert). Tokens go to each of their top-k experts (one row per
  // token·expert pair, even when two experts of a token sit on the same GPU) and, when the
  // model has shared experts, once more to the MoE GPU (sequence index mod MoE GPUs) that
  // runs all shared experts for that token (co-located: the token's own GPU).
  void route_slice(int a, const Slice& sl, int64_t q0) {
    touched_.clear();
    const bool hier = xmode_ == ExchangeMode::kHierarchical;
    // Hierarchical: one row per token and destination GPU (counted once per token), and the
    // token's destination nodes other than a's own (one inter-node copy each).
    int64_t token = -1;
    auto hit = [&](int g, int li) {
      group_m_[g][li]++;
      if (hier) {
        if (gpu_stamp_[g] == token) return;
        gpu_stamp_[g] = token;
        const int node = node_of_[moe_base_ + g];
        if (node != node_of_[a] && node_stamp_[node] != token) {
          node_stamp_[node] = token;
          if (node_count_[node]++ == 0) touched_nodes_.push_back(node);
        }
      }
      if (dest_count_[g]++ == 0) touched_.push_back(g);
    };
    if (hier) touched_nodes_.clear();
    for (int64_t q = q0; q < q0 + sl.tokens; ++q) {
      token = ++token_serial_;  // a fresh stamp per routed token (never reused)
      for (int j = 0; j < m_.top_k; ++j) {
        const int e = route_[q * m_.top_k + j];
        const int slot = route_slot_.empty()
                             ? a % static_cast<int>(eg_[e].size())
                             : route_slot_[static_cast<size_t>(a) * eg_.size() + e];
        if (etp_ == 1) {
          hit(eg_[e][slot], local_index_[e][slot]);
        } else {  // every GPU of the expert's group computes its slice for the row
          for (int j = 0; j < etp_; ++j) hit(eg_[e][slot] * etp_ + j, local_index_[e][slot]);
        }
      }
      if (shared_ > 0) {
        // The group (GPU without expert TP) running the token's shared experts.
        const int unit = ma_ ? static_cast<int>((sl.begin + (q - q0)) % groups_) : a / etp_;
        for (int j = 0; j < etp_; ++j) {
          const int g = unit * etp_ + j;
          const int nloc = static_cast<int>(ge_[g].size());
          for (int x = 0; x < shared_; ++x) {
            if (!hier && x == 0) {
              if (dest_count_[g]++ == 0) touched_.push_back(g);
            }
            if (hier) {
              hit(g, nloc + x);
            } else {
              group_m_[g][nloc + x]++;
            }
          }
        }
      }
    }
    std::sort(touched_.begin(), touched_.end());
    for (int g : touched_) {
      const int64_t rows = dest_count_[g];
      dest_count_[g] = 0;
      if (!ma_ && g == a) {
        moe_local_rows_[g] += rows;  // stays on the GPU: the permute already placed it
        continue;
      }
      dispatch_.push_back(Xfer{a, moe_base_ + g, rows * row_dis_, sl.permute});
    }
    if (hier) {  // (a, node) pairs: tokens with a destination there, in the bytes field
      std::sort(touched_nodes_.begin(), touched_nodes_.end());
      for (int node : touched_nodes_) {
        node_tokens_.push_back(Xfer{a, proxy(node, a), node_count_[node], sl.permute});
        node_count_[node] = 0;
      }
    }
  }

  // Expert tensor parallelism: the return transfers of MoE-local GPU g (index j of its expert
  // group), which holds `rows` partial rows by sender (senders ascending; a co-located GPU's
  // own rows at its own rank) produced by `un`. After the group's reduce-scatter GPU j holds
  // the summed rows part(rows, x, j) starting at part_begin(rows, x, j) and returns each
  // sender's share of them; its own (co-located) share stays. The producer is set to g here
  // and replaced by g's reduce-scatter op in finish().
  void tp_returns(int g, int64_t rows, OpId un, Pending& pend) {
    const int rank = moe_base_ + g, j = g % etp_;
    pend.unpermute[static_cast<size_t>(g)] = un;
    pend.group_rows[static_cast<size_t>(g / etp_)] = rows;
    senders_.clear();
    for (const Xfer& t : moe_recvs_[g]) senders_.emplace_back(t.src, t.bytes / row_dis_);
    if (moe_local_rows_[g] > 0) senders_.emplace_back(rank, moe_local_rows_[g]);
    std::sort(senders_.begin(), senders_.end());
    const int64_t lo = part_begin(rows, etp_, j), hi = lo + part(rows, etp_, j);
    int64_t off = 0;
    for (const auto& [src, n] : senders_) {
      const int64_t o = std::min(hi, off + n) - std::max(lo, off);
      off += n;
      if (o <= 0 || src == rank) continue;
      pend.returns.push_back(Xfer{rank, src, o * row_cmb_, g});
    }
  }

  // Dispatch exchange, the MoE side of (step, layer, mb), and the pending return exchange.
  void moe(int step, int layer, int mb) {
    if (m_.is_dense_layer(layer)) return;  // the dense FFN ran on the attention ranks
    if (step == move_step_ && mb == 0) emit_moves(layer);
    emit_dispatch();
    for (const Xfer& t : dispatch_) moe_recvs_[t.dst - moe_base_].push_back(t);
    Pending& pend = pending_[mb];
    pend.valid = true;
    pend.step = step;
    pend.layer = layer;
    pend.returns.clear();
    pend.returns_rdma.clear();
    std::vector<OpId> un_of;
    if (xmode_ == ExchangeMode::kHierarchical) un_of.assign(static_cast<size_t>(moe_ranks_), -1);
    pend.unpermute.assign(etp_ > 1 ? static_cast<size_t>(moe_ranks_) : 0, -1);
    pend.group_rows.assign(etp_ > 1 ? static_cast<size_t>(groups_) : 0, 0);
    for (int g = 0; g < moe_ranks_; ++g) {
      const int rank = moe_base_ + g;
      int64_t rows = moe_local_rows_[g];
      for (const Xfer& t : moe_recvs_[g]) rows += t.bytes / row_dis_;
      if (rows > 0) {
        int64_t expert_rows = 0;
        for (int32_t x : group_m_[g]) expert_rows += x;
        // The permute's m is the expert rows it writes (shared-expert rows included); it reads
        // the `rows` received or kept locally.
        const OpId perm =
            simple(rank, OpKind::kPermute, OpRole::kMoePermute, "moe_permute", expert_rows, h_,
                   2 * rows * row_dis_, 0,
                   xlast_[rank]);  // the rank's last dispatch group call (all its receives)
        op_at(perm).k = rows;
        // Expert inputs stay in the dispatch format (an fp8 payload feeds fp8 GEMMs as is).
        // Shared experts of the routed width are the last groups of the routed GEMMs; of
        // their own width they run in their own grouped GEMMs after the routed ones.
        const bool own = m_.shared_own_width();
        const size_t nloc = group_m_[g].size() - static_cast<size_t>(shared_);
        const std::vector<int32_t> routed_m(group_m_[g].begin(),
                                            own ? group_m_[g].begin() + static_cast<long>(nloc)
                                                : group_m_[g].end());
        int64_t routed_rows = 0;
        for (int32_t x : routed_m) routed_rows += x;
        // With expert tensor parallelism each GPU computes its column slice (in_l_, ffn_l_).
        grouped_gemm(rank, OpRole::kExpertUp, "expert_up", routed_m, in_l_, h_, dis_, act_);
        simple(rank, OpKind::kElementwise, OpRole::kAct, "act", routed_rows, ffn_l_,
               vb(act_, routed_rows, in_l_) + vb(act_, routed_rows, ffn_l_));
        grouped_gemm(rank, OpRole::kExpertDown, "expert_down", routed_m, h_, ffn_l_, act_, act_);
        if (own) {
          const std::vector<int32_t> shared_m(group_m_[g].begin() + static_cast<long>(nloc),
                                              group_m_[g].end());
          const int64_t sf = m_.shared_ffn() / etp_, s_in = m_.ffn_in_columns(sf);
          const int64_t shared_rows = expert_rows - routed_rows;
          grouped_gemm(rank, OpRole::kSharedUp, "shared_up", shared_m, s_in, h_, dis_, act_);
          simple(rank, OpKind::kElementwise, OpRole::kSharedAct, "shared_act", shared_rows, sf,
                 vb(act_, shared_rows, s_in) + vb(act_, shared_rows, sf));
          grouped_gemm(rank, OpRole::kSharedDown, "shared_down", shared_m, h_, sf, act_, act_);
        }
        // Reads the expert outputs, writes one combine-format row per dispatched row.
        const OpId un = simple(rank, OpKind::kCombine, OpRole::kMoeUnpermute, "moe_unpermute",
                               expert_rows, h_, vb(act_, expert_rows, h_) + rows * row_cmb_);
        op_at(un).k = rows;
        last_moe_op_[static_cast<size_t>(g)] = un;
        if (!un_of.empty()) un_of[static_cast<size_t>(g)] = un;
        if (etp_ == 1) {
          for (const Xfer& t : moe_recvs_[g]) {
            pend.returns.push_back(Xfer{rank, t.src, t.bytes / row_dis_ * row_cmb_, un});
          }
        } else {
          tp_returns(g, rows, un, pend);
        }
      }
      moe_recvs_[g].clear();
      moe_local_rows_[g] = 0;
      std::fill(group_m_[g].begin(), group_m_[g].end(), 0);
    }
    if (xmode_ == ExchangeMode::kHierarchical) {
      hierarchical_returns(pend, un_of);
      node_tokens_.clear();
    }
    dispatch_.clear();
    RoutingSample rsmp;
    rsmp.step = step;
    rsmp.layer = layer;
    rsmp.micro_batch = mb;
    rsmp.tokens_per_expert = routing_counts_;
    if (record_routing_) {
      rsmp.first_sequence = token_first_;
      rsmp.token_experts = std::move(token_route_);
      token_route_.clear();
    }
    p_.routing.push_back(std::move(rsmp));
    std::fill(routing_counts_.begin(), routing_counts_.end(), 0);
    // Slices of this mb are needed again by finish(mb); keep a copy.
    pend_slices_[mb] = slice_;
  }

  // fault_tolerance.kv_copies 2 (issue 18, remap.hpp): after the step's last attention, every
  // KV-appending attention GPU sends the step's new KV entries (all layers, its heads) of
  // sequence j of its replica to the (j mod )-th other replica's GPU of the same group
  // index, in one grouped exchange (role kKvMirror) on the comm stream.
  void kv_mirror() {
    if (!ma_ || s_.fault_tolerance.kv_copies < 2 || replicas_ < 2) return;
    enter_replica(0);  // equal replicas only (setup refuses listed ones with kv_copies 2)
    // Bytes of one token's KV entries on this GPU, all layers (MLA: the whole latent).
    const int64_t kv_tok = m_.is_mla() ? vb(kvt_, 1, m_.mla.kv_lora_rank + m_.mla.qk_rope_head_dim)
                                       : vb(kvt_, 2LL * kvh_l_, hd_);
    const int64_t per_seq = static_cast<int64_t>(m_.layers) * kv_tok;
    std::vector<Xfer> ts;
    for (int r = 0; r < replicas_; ++r) {
      std::vector<int64_t> to(static_cast<size_t>(replicas_), 0);  // sequences per mirror
      int64_t j = 0;
      for (int mb = 0; mb < mbs_; ++mb) {
        for (int64_t q = 0; q < chunk_size(r, mb); ++q, ++j) {
          const int k = static_cast<int>(j % (replicas_ - 1));
          ++to[k < r ? k : k + 1];
        }
      }
      for (int i = 0; i < t_; ++i) {
        const int a = r * t_ + i;
        if (i % sp_ != 0) continue;  // only KV shard 0 appends the new token
        for (int mr = 0; mr < replicas_; ++mr) {
          if (to[mr] > 0) ts.push_back(Xfer{a, mr * t_ + i, to[mr] * per_seq, last_attn_[a]});
        }
      }
    }
    group_exchange(ts, OpRole::kKvMirror, "kv_mirror");
  }

  // Expert tensor parallelism: one reduce-scatter per expert group with rows (role
  // kExpertReduce, the rows' partial sums in the activations' format), each member after its
  // moe_unpermute; then each return transfer's producer becomes its GPU's reduce-scatter op.
  void expert_reduce(Pending& pend) {
    reduce_op_.assign(static_cast<size_t>(moe_ranks_), -1);
    for (int k = 0; k < groups_; ++k) {
      const int64_t rows = pend.group_rows[static_cast<size_t>(k)];
      if (rows == 0) continue;
      std::vector<OpId> deps(static_cast<size_t>(etp_));
      for (int j = 0; j < etp_; ++j) deps[j] = pend.unpermute[static_cast<size_t>(k * etp_ + j)];
      const auto ids = collective(OpKind::kReduceScatter, OpRole::kExpertReduce, "expert_reduce",
                                  expert_group_[k], rows * row_cmb_, deps);
      for (int j = 0; j < etp_; ++j) reduce_op_[static_cast<size_t>(k * etp_ + j)] = ids[j];
    }
    for (Xfer& t : pend.returns) t.producer = reduce_op_[static_cast<size_t>(t.producer)];
  }

  // Return exchange and attention-side combine of the pending (step, layer) of `mb`.
  void finish(int mb) {
    Pending& pend = pending_[mb];
    if (!pend.valid) return;
    cur_step_ = pend.step;
    cur_layer_ = pend.layer;
    cur_mb_ = mb;
    if (etp_ > 1) expert_reduce(pend);
    exchange_begin();
    if (xmode_ == ExchangeMode::kHierarchical) {
      exchange_stage(pend.returns, OpRole::kReturn, "return_nvl");
      exchange_stage(pend.returns_rdma, OpRole::kReturn, "return_rdma");
    } else {
      exchange_stage(pend.returns, OpRole::kReturn, "return");
    }
    const auto& slices = pend_slices_[mb];
    for (int a = 0; a < att_ranks_; ++a) {
      const Slice& sl = slices[a];
      if (sl.tokens == 0) {
        last_combine_[mb][a] = -1;
        continue;
      }
      Op o = make(a, kCompute, OpKind::kCombine, OpRole::kCombine, "combine");
      o.m = sl.tokens;
      o.n = h_;
      o.dtype = act_;
      o.hbm_bytes = sl.rows * row_cmb_ + 2 * vb(act_, sl.tokens, h_);
      dep(o, xlast_[a]);  // the rank's last return group call (all its receives)
      // Co-located expert TP: the rank's own rows may come back through its reduce-scatter.
      if (!ma_ && etp_ > 1) dep(o, reduce_op_[a]);
      last_combine_[mb][a] = add(std::move(o));
    }
    pend.valid = false;
  }

  const Scenario& s_;
  const models::Model& m_;
  RoutingSampler sampler_;
  bool record_routing_ = false, per_sequence_routing_ = false;  // CompileOptions
  std::vector<int32_t> token_route_;  // this (step, layer, mb)'s token routing, replica order
  int64_t token_first_ = 0;
  Program p_;

  bool ma_ = true;
  // The split of the replica being compiled (enter_replica): heads, KV shards, GPUs.
  int hp_ = 1, sp_ = 1, t_ = 1, replicas_ = 1, mbs_ = 1;
  // Every replica's split (attention or TP group): plan ranks base .. base + t − 1.
  struct ReplicaSplit {
    int hp = 1, sp = 1, t = 1, base = 0, heads_l = 0, kvh_l = 0;
  };
  std::vector<ReplicaSplit> rep_;
  bool per_replica_ = false;    // plan.attention.replicas listed one by one
  int sp_max_ = 1, t_max_ = 1;  // the largest replica's KV shards and GPUs
  BatchSplit split_;            // sequences of each (replica, micro-batch)
  // Expert tensor parallelism: GPUs per expert group, and the groups (placement units).
  int etp_ = 1, groups_ = 0;
  int64_t ffn_l_ = 0, in_l_ = 0;   // one GPU's slice of expert_ffn and of the gate/up columns
  std::vector<int> expert_group_;  // [group]: its Group index (expert TP only)
  std::vector<OpId> reduce_op_;    // [MoE gpu]: its expert_reduce op being finished
  std::vector<std::pair<int32_t, int64_t>> senders_;  // tp_returns scratch: (rank, rows)
  int att_ranks_ = 0, moe_ranks_ = 0, moe_base_ = 0, total_ranks_ = 0;
  int first_step_ = 0, steps_ = 0;
  models::DType wt_{}, act_{}, kvt_{}, dis_{}, cmb_{}, gemm_dt_{}, small_dt_{};  // formats
  int64_t row_dis_ = 0, row_cmb_ = 0;  // bytes of one hidden-wide dispatch / combine row
  // Window by window: the next step to emit, and the global ids of p_'s first op, collective
  // and exchange (all 0 for a whole compile).
  int next_step_ = 0, next_layer_ = 0;
  OpId op_base_ = 0;
  int32_t coll_base_ = 0, exch_base_ = 0;
  bool streamed_last_ = false;
  int64_t h_ = 0, hd_ = 0, in_cols_ = 0;
  int heads_l_ = 0, kvh_l_ = 0, shared_ = 0;

  std::vector<std::vector<int>> eg_, ge_;
  std::vector<std::vector<int32_t>> local_index_;  // [e][slot]: index of e in ge_[eg_[e][slot]]
  ExpertPlacement placement_;          // in force for the step being compiled
  std::vector<int32_t> route_slot_;    // [a · experts + e]: slot in eg_[e]; empty = a mod copies
  std::vector<std::pair<int, int>> moves_;  // (source, destination) MoE GPU per moved copy
  int move_step_ = -1;                 // step whose layers emit moves_
  bool fixed_placement_ = false;       // CompileOptions::placement: no re-placement
  std::vector<OpId> last_moe_op_;      // [MoE gpu]: its latest moe_unpermute
  std::vector<int32_t> ctx_;
  std::vector<int> replica_group_;
  std::vector<std::vector<int>> sp_group_;
  std::vector<int64_t> kv_, kv_win_;  // per (replica, mb, shard): full and windowed layers

  int cur_step_ = 0, cur_layer_ = 0, cur_mb_ = 0;
  std::vector<std::vector<OpId>> last_combine_;  // [mb][attention rank]
  std::vector<Pending> pending_;                 // [mb]
  std::vector<std::vector<Slice>> pend_slices_;  // [mb][attention rank]
  std::vector<Slice> slice_;                     // [attention rank], current (step, layer, mb)
  std::vector<int32_t> route_;
  std::vector<OpId> last_attn_;  // [attention rank]: its latest attention op (kv_mirror)
  std::vector<int32_t> routing_counts_;
  std::vector<std::vector<int32_t>> group_m_;  // [MoE gpu][local expert, then shared]
  std::vector<std::vector<Xfer>> moe_recvs_;   // [MoE gpu]
  std::vector<int64_t> moe_local_rows_;        // [MoE gpu] (co-located self rows)
  std::vector<Xfer> dispatch_;
  std::vector<int> dest_count_, touched_;
  // plan.expert_exchange: its mode, the SMs its kernels take, each rank's last op of the
  // current (possibly two-stage) expert exchange.
  ExchangeMode xmode_ = ExchangeMode::kNccl;
  int xsms_ = 0;
  std::vector<OpId> xlast_;
  std::vector<int> xlast_ranks_;
  // Hierarchical mode: node of each plan rank, plan ranks per node (ascending GPU), per-node
  // and per-MoE-GPU stamps of the token being routed, tokens per destination node of the
  // slice, and the (sender, proxy, tokens) inter-node copies of the current dispatch.
  std::vector<int> node_of_;
  std::vector<std::vector<int>> node_ranks_;
  std::vector<int64_t> node_stamp_, gpu_stamp_;
  std::vector<int64_t> node_count_;
  std::vector<int> touched_nodes_;
  std::vector<Xfer> node_tokens_;
  int64_t token_serial_ = 0;
  // group_exchange scratch, per plan rank.
  std::vector<OpId> rank_op_, xprod_;
  std::vector<int64_t> xbytes_;
  std::vector<char> xseen_;
  std::vector<int> xranks_;
};

}  // namespace

Program compile(const Scenario& s, const CompileOptions& opts) {
  Compiler c(s, opts);  // checks the plan's shape first (clearer errors than memory's)
  const std::vector<MemoryBreakdown> mem = plan_memory(s);
  check_memory(s, mem);
  Program p = c.run();
  p.target = plan_target(s, mem);
  return p;
}

struct ProgramStream::Impl {
  Impl(const Scenario& s, const CompileOptions& opts) : c(s, opts), header(c.header()) {}
  Compiler c;
  Program header;
};

ProgramStream::ProgramStream(const Scenario& s, const CompileOptions& opts) {
  auto impl = std::make_unique<Impl>(s, opts);  // the compiler checks the plan's shape first
  const std::vector<MemoryBreakdown> mem = plan_memory(s);
  check_memory(s, mem);
  impl->header.target = plan_target(s, mem);
  impl_ = std::move(impl);
}
ProgramStream::~ProgramStream() = default;
const Program& ProgramStream::header() const { return impl_->header; }
bool ProgramStream::next(int steps, ProgramChunk& out) {
  if (steps < 1) throw std::invalid_argument("ProgramStream::next: steps must be >= 1");
  return impl_->c.next_chunk(static_cast<int64_t>(steps) * std::max(1, impl_->header.layers), out);
}
bool ProgramStream::next_layers(int layers, ProgramChunk& out) {
  if (layers < 1) throw std::invalid_argument("ProgramStream::next_layers: layers must be >= 1");
  return impl_->c.next_chunk(layers, out);
}
int ProgramStream::steps_left() const { return impl_->c.steps_left(); }
int64_t ProgramStream::layers_left() const { return impl_->c.layers_left(); }

}  // namespace masep::plan
