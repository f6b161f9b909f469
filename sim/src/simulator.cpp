// The simulator: a discrete-event engine that runs a Program's ops on modelled GPU streams,
// with compute durations from a ComputeModel and transfers as flows in the NetworkModel.
// See docs/simulator-model.md for the semantics and every parameter.
#include "masep/sim/simulator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <stdexcept>

#include "masep/plan/calibration.hpp"
#include "masep/plan/time_ns.hpp"
#include "masep/sim/calibrated_model.hpp"
#include "masep/sim/collectives.hpp"
#include "masep/sim/compute_model.hpp"
#include "masep/sim/event_queue.hpp"
#include "masep/sim/nccl_model.hpp"
#include "masep/sim/fluid_network.hpp"
#include "masep/sim/network_model.hpp"
#include "masep/sim/parameters.hpp"
#include "masep/sim/platform.hpp"

namespace masep::sim {
namespace {

using plan::OpId;
using plan::OpKind;

const char* kind_name(OpKind k) { return plan::to_string(k); }
bool is_p2p(OpKind k) { return k == OpKind::kSend || k == OpKind::kRecv; }
bool is_coll(OpKind k) { return plan::is_collective(k); }
bool is_comm(OpKind k) { return plan::is_communication(k); }

int64_t ceil_ns(double x) {
  const double c = std::ceil(x - 1e-9);
  return c <= 0 ? 0 : plan::checked_ns(c, "simulator");
}

enum EventType : uint32_t {
  kComputeEnd = 0,      // a = op, b = version
  kFlowStart = 1,       // a = pending-flow slot
  kPhaseStart = 2,      // a = collective
  kExchangeLaunch = 3,  // a = exchange op: its alpha has elapsed, its side is posted
};

// Flow tags: (index << 2) | type.
enum FlowType : uint32_t { kFlowP2p = 0, kFlowColl = 1, kFlowXfer = 2 };
constexpr uint32_t tag_of(int64_t index, FlowType type) {
  return (static_cast<uint32_t>(index) << 2) | type;
}

enum OpState : uint8_t { kWaiting = 0, kReady = 1, kDone = 2 };

// What the hot path needs of each op, packed (plan::Op is large: strings and vectors).
struct OpInfo {
  OpKind kind = OpKind::kGemm;
  uint8_t stream = 0;
  int32_t rank = 0;
  int32_t gpu = 0;
  int32_t other = -1;  // kSend/kRecv: the matching op; collectives: the collective index;
                       // kExchange: the op's index among exchange ops (xop_* arrays)
  int64_t bytes = 0;   // comm ops: comm_bytes; compute ops: duration from the model, ns
};

// Per-op arrays of the last simulate() call on this thread, kept (cleared, capacity intact)
// so that repeated runs (benchmarks, sweeps) neither allocate nor page-fault them again.
struct EngineArrays {
  std::vector<int32_t> pending, succ_off, succ, stream_prev, pred;
  std::vector<uint8_t> state;
  std::vector<uint16_t> listed;
  std::vector<OpId> xsrc, xdst;
  std::vector<int64_t> xbytes;
  std::vector<uint8_t> xsides;
  std::vector<int32_t> xop_off, xop_list, xop_left;
  std::vector<OpInfo> info;
};
thread_local EngineArrays t_arrays;

// The network tier of a run: the flow-level max-min model (the reference) or the fluid model,
// chosen once per run. Both offer the same three calls (start a flow, next event time,
// advance); the engine's event loop is instantiated for each model (Engine::run_events), so
// the calls are direct.
class NetworkTier {
 public:
  static_assert(FluidNetwork::kNever == NetworkModel::kNever);
  NetworkTier(std::vector<double> capacities, bool fluid) {
    if (fluid) {
      fl_.emplace(std::move(capacities));
    } else {
      mm_.emplace(std::move(capacities));
    }
  }
  NetworkModel* flow() { return mm_ ? &*mm_ : nullptr; }
  FluidNetwork* fluid() { return fl_ ? &*fl_ : nullptr; }

 private:
  std::optional<NetworkModel> mm_;
  std::optional<FluidNetwork> fl_;
};

// Routes of the (src, dst) GPU pairs a run uses, by key src * gpus + dst: open addressing with
// linear probing in a power-of-two table kept at most half full, so memory follows the pairs
// used (a dense gpus x gpus table needs 4 GB at 16,384 GPUs). slot() returns the entry of a
// key, claiming an empty one (links == nullptr) for a new key; the caller fills it and calls
// filled(). Entries move when the table grows, so a reference is valid only until filled().
class RouteTable {
 public:
  struct Entry {
    uint64_t key = 0;
    const int* links = nullptr;  // into the Platform's route (stable for its lifetime)
    int32_t nlinks = 0;
    int64_t latency_ns = 0;  // route latency rounded up to whole ns
  };
  void clear() {
    entries_.assign(64, Entry{});
    used_ = 0;
    shift_ = 64 - 6;
  }
  Entry& slot(uint64_t key) {
    size_t i = index(key);
    for (;;) {
      Entry& e = entries_[i];
      if (e.links == nullptr) {
        e.key = key;
        return e;
      }
      if (e.key == key) return e;
      i = (i + 1) & (entries_.size() - 1);
    }
  }
  void filled() {
    if (++used_ * 2 <= entries_.size()) return;
    std::vector<Entry> old(entries_.size() * 2, Entry{});
    old.swap(entries_);
    --shift_;
    for (const Entry& e : old) {
      if (e.links != nullptr) slot(e.key) = e;
    }
  }

 private:
  size_t index(uint64_t key) const {
    return static_cast<size_t>((key * 0x9E3779B97F4A7C15ull) >> shift_);  // Fibonacci hashing
  }
  std::vector<Entry> entries_;
  size_t used_ = 0;
  int shift_ = 64 - 6;
};

// What the NCCL collective model needs besides the Platform (SimOptions::collective_model).
struct NcclSetup {
  const topology::TopologySpec* topology = nullptr;
  NcclSelection selection;
};

class Engine {
 public:
  Engine(const plan::Program& p, const Platform& plat, const SimParams& prm, const ComputeModel& cm,
         CollAlgorithm allreduce, bool allreduce_auto, bool fluid,
         std::vector<int64_t> coll_fixed_ns = {})
      : P_(p),
        plat_(plat),
        prm_(prm),
        cm_(cm),
        allreduce_(allreduce),
        allreduce_auto_(allreduce_auto),
        net_(capacities(plat, prm), fluid) {
    coll_fixed_ns_ = std::move(coll_fixed_ns);
    EngineArrays& a = t_arrays;
    info_.swap(a.info);
    pending_.swap(a.pending);
    succ_off_.swap(a.succ_off);
    succ_.swap(a.succ);
    stream_prev_.swap(a.stream_prev);
    pred_.swap(a.pred);
    state_.swap(a.state);
    listed_.swap(a.listed);
    xsrc_.swap(a.xsrc);
    xdst_.swap(a.xdst);
    xbytes_.swap(a.xbytes);
    xsides_.swap(a.xsides);
    xop_off_.swap(a.xop_off);
    xop_list_.swap(a.xop_list);
    xop_left_.swap(a.xop_left);
  }
  ~Engine() {
    EngineArrays& a = t_arrays;
    const auto give = [](auto& mine, auto& cache) {
      mine.clear();
      if (mine.capacity() >= cache.capacity()) mine.swap(cache);
    };
    give(info_, a.info);
    give(pending_, a.pending);
    give(succ_off_, a.succ_off);
    give(succ_, a.succ);
    give(stream_prev_, a.stream_prev);
    give(pred_, a.pred);
    give(state_, a.state);
    give(listed_, a.listed);
    give(xsrc_, a.xsrc);
    give(xdst_, a.xdst);
    give(xbytes_, a.xbytes);
    give(xsides_, a.xsides);
    give(xop_off_, a.xop_off);
    give(xop_list_, a.xop_list);
    give(xop_left_, a.xop_left);
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Not inlined into simulate(): keeps one symbol for profiles (callgrind
  // --toggle-collect='*Engine::run()'; a pattern that also matches run_events toggles it off).
  [[gnu::noinline]] SimResult run();
  // The event loop on network model `net` (NetworkModel or FluidNetwork); returns the time of
  // the last event.
  template <class Net>
  [[gnu::noinline]] int64_t run_events(Net& net);
  /// See SimOptions::progress; the function must outlive run().
  void set_progress(const std::function<void(int64_t, int64_t)>* f) { progress_ = f; }
  /// Times collectives with NCCL's model (SimOptions::collective_model "nccl"); `setup` must
  /// outlive run(). Call before run().
  void set_nccl(const NcclSetup* setup) {
    nccl_ = setup;
    p2p_intra_wire_ = 1.0 / nccl_p2p_intra_efficiency(*setup->topology);
  }
  // Bytes a point-to-point transfer puts on the wire per payload byte: NCCL's p2p reaches its
  // per-link bandwidth (nccl_model.hpp) on NVLink inside a node; 1 across nodes, on PCIe, on
  // one GPU and in the phases model.
  double p2p_wire(int src, int dst) const {
    return src != dst && plat_.node_of(src) == plat_.node_of(dst) ? p2p_intra_wire_ : 1.0;
  }

 private:
  static std::vector<double> capacities(const Platform& plat, const SimParams& prm) {
    std::vector<double> c;
    c.reserve(plat.links().size() + plat.gpus());
    for (const PlatformLink& l : plat.links()) c.push_back(l.GBps);
    // One pseudo-link per GPU for same-GPU copies: each byte is read and written.
    for (int g = 0; g < plat.gpus(); ++g) {
      c.push_back(plat.gpu().hbm_GBps * prm.eff_hbm_local_copy / 2);
    }
    return c;
  }

  void prepare();
  // Routes through a per-Engine hash table of the pairs used (Platform::route checks bounds
  // and hashes a std::unordered_map; the flows' hot path only needs the cached entry). By
  // value: filled() may grow the table, which moves its entries.
  RouteTable::Entry cached_route(int src, int dst) {
    RouteTable::Entry& e = routes_.slot(pair_key(src, dst));
    if (e.links != nullptr) return e;
    const PlatformRoute& r = plat_.route(src, dst);
    e.links = r.links.data();
    e.nlinks = static_cast<int32_t>(r.links.size());
    e.latency_ns = ceil_ns(r.latency_ns);
    const RouteTable::Entry got = e;
    routes_.filled();
    return got;
  }
  uint64_t pair_key(int src, int dst) const {
    return static_cast<uint64_t>(src) * static_cast<uint64_t>(plat_.gpus()) +
           static_cast<uint64_t>(dst);
  }
  double alpha(OpKind k) const {
    switch (k) {
      case OpKind::kAllReduce:
        return prm_.alpha_allreduce_ns;
      case OpKind::kAllGather:
        return prm_.alpha_allgather_ns;
      case OpKind::kReduceScatter:
        return prm_.alpha_reducescatter_ns;
      case OpKind::kAllToAll:
        return prm_.alpha_alltoall_ns;
      default:
        return prm_.alpha_sendrecv_ns;
    }
  }
  CollectivePlan collective_plan(int c) {
    const plan::Collective& col = P_.collectives[c];
    CollectivePlan cp = make_collective_plan(
        col.kind, ring_gpus_[col.group], group_gpus_[col.group], &col.matrix,
        static_cast<double>(col.bytes), plat_.gpus_per_node(), allreduce_, allreduce_auto_);
    if (nccl_ != nullptr) {
      // NCCL's model, one per group (its members fix the communicator), built on first use.
      std::unique_ptr<NcclModel>& m = group_nccl_[col.group];
      if (!m) {
        m = std::make_unique<NcclModel>(
            NcclSystem::from_topology(*nccl_->topology, ring_gpus_[col.group]), nccl_->selection);
      }
      const int n = static_cast<int>(ring_gpus_[col.group].size());
      const double overhead = col.kind == OpKind::kAllToAll
                                  ? prm_.nccl_p2p_call_overhead_ns * std::max(0, n - 1)
                                  : prm_.nccl_call_overhead_ns;
      apply_nccl_model(cp, *m, plat_, overhead);
    }
    return cp;
  }

  void mark_ready(OpId op, int64_t t);
  void finish(OpId op, int64_t t);
  void drain(int64_t t);
  void start_flow_after(int64_t t, int src, int dst, double bytes, uint32_t tag);
  void flow_done(uint32_t tag, int64_t t);
  void start_phase(int c, int64_t t);
  void launch_exchange(OpId op, int64_t t);
  // +1 / -1 on a per-GPU interference counter (comm_active_ or comm_ops_); its GPU's compute
  // speed is re-derived when the counter reaches or leaves 0.
  void count_begin(std::vector<int32_t>& counter, int gpu, int64_t t);
  void count_end(std::vector<int32_t>& counter, int gpu, int64_t t);
  void update_speed(int gpu, int64_t t);
  void respeed(int gpu, int64_t t, double speed);
  void schedule_compute_end(int rank, int64_t t);
  [[noreturn]] void report_stuck(int64_t t);
  std::string describe(OpId op) const;

  const plan::Program& P_;
  const Platform& plat_;
  SimParams prm_;
  const ComputeModel& cm_;
  CollAlgorithm allreduce_;
  bool allreduce_auto_;
  NetworkTier net_;
  EventQueue q_;

  int n_ = 0;
  std::vector<int32_t> pending_;          // unfinished predecessors per op
  std::vector<int32_t> succ_off_, succ_;  // CSR: ops waiting on each op
  std::vector<int32_t> stream_prev_;      // previous op on the same stream, -1 if first
  std::vector<int32_t> pred_;  // listed deps of all ops, concatenated (pending_ holds counts)
  std::vector<OpInfo> info_;
  std::vector<int32_t> coll_members_;
  std::vector<uint8_t> state_;
  std::vector<uint16_t> listed_;
  std::vector<int> local_link_;  // per GPU: its local-copy pseudo-link
  std::vector<std::vector<int>> group_gpus_, ring_gpus_;
  std::vector<std::vector<int32_t>> gpu_ranks_;

  // Per-rank compute stream state (for interference re-timing).
  struct RankRun {
    OpId op = -1;
    double remaining_ns = 0;  // full-speed ns left as of `updated`
    double speed = 1;
    int64_t updated = 0;
    uint32_t version = 0;
  };
  std::vector<RankRun> run_;
  // Per GPU: transfers moving bytes to or from it now (network flows after their route latency,
  // calibrated collectives for their table time); > 0 slows its compute (comm_interference).
  std::vector<int32_t> comm_active_;
  std::vector<int32_t> comm_ops_;  // per GPU: comm ops running (posted, not finished)
  std::vector<double> gpu_speed_;  // per GPU: current compute speed (1 = no interference)
  bool interference_ = false;      // either interference factor > 0

  struct CollState {
    CollectivePlan plan;
    int ready = 0;
    int phase = 0;
    int outstanding = 0;
    bool fixed = false;  // timed from a calibration table (no flows)
  };
  std::vector<CollState> coll_;
  // Per collective: its calibrated time in ns (calibrated_collective_ns), or -1 (or empty) to
  // run its phases' flows.
  std::vector<int64_t> coll_fixed_ns_;

  // A transfer between its start_flow_after() and its completion: waiting out the route
  // latency, then (bytes > 0) moving as a network flow whose tag is this slot's index.
  struct PendingFlow {
    std::span<const int> links;
    double bytes;
    uint32_t tag;  // what completes: tag_of(index, type)
    int32_t src, dst;
  };
  RouteTable routes_;  // (src, dst) pairs used so far: links and ceil of the latency
  // Parameters rounded up to whole ns once (ceil is a libm call without SSE4.1).
  int64_t gap_ns_ = 0, alpha_sr_ns_ = 0, phase_overhead_ns_ = 0;
  // Exchanges. Transfers flattened over all exchanges (index = tag index); per exchange op
  // (dense index k = OpInfo::other): its transfers (CSR) and how many are undelivered.
  std::vector<OpId> xsrc_, xdst_;
  std::vector<int64_t> xbytes_;
  std::vector<uint8_t> xsides_;  // sides posted (0..2) per transfer
  std::vector<int32_t> xop_off_, xop_list_, xop_left_;
  std::vector<int32_t> xop_exchange_;  // per exchange op: its Op::exchange (read once)

  std::vector<PendingFlow> pflow_;
  std::vector<int32_t> pflow_free_;

  std::vector<OpId> work_;
  std::vector<uint32_t> completed_;
  std::vector<PhaseFlow> scratch_;
  plan::Timeline tl_;
  int done_ = 0;
  // The clock: the time of the events being handled. Pushes with a fixed delay from it use
  // EventQueue::push_after (its lanes need non-decreasing `now`, which this is).
  int64_t now_ = 0;
  uint64_t events_ = 0;
  const std::function<void(int64_t, int64_t)>* progress_ = nullptr;
  uint64_t next_progress_ = 0;                          // events_ at which progress_ is called next
  const NcclSetup* nccl_ = nullptr;                     // null: the phases model
  double p2p_intra_wire_ = 1;                           // see p2p_wire()
  std::vector<std::unique_ptr<NcclModel>> group_nccl_;  // per group, built on first use
};

// One pass over the Program's (large) Op structs: checks, compact per-op records, compute
// durations and the predecessor lists; everything after works on the compact arrays.
void Engine::prepare() {
  const plan::Program& P = P_;
  const int R = P.rank_count();
  n_ = static_cast<int>(P.ops.size());
  routes_.clear();
  gap_ns_ = ceil_ns(prm_.launch_gap_ns);
  alpha_sr_ns_ = ceil_ns(prm_.alpha_sendrecv_ns);
  phase_overhead_ns_ = ceil_ns(prm_.coll_phase_overhead_ns);
  for (int r = 0; r < R; ++r) {
    const int g = P.ranks[r].gpu;
    if (g < 0 || g >= plat_.gpus()) {
      throw std::runtime_error(fmt::format(
          "plan rank {} runs on GPU {}, but the topology has GPUs 0..{}", r, g, plat_.gpus() - 1));
    }
  }
  if (static_cast<int>(P.stream_ops.size()) != R && n_ > 0) {
    throw std::runtime_error(
        fmt::format("program has {} ranks but stream_ops for {}", R, P.stream_ops.size()));
  }
  info_.assign(n_, OpInfo{});
  pending_.assign(n_, 0);
  pred_.clear();
  pred_.reserve(static_cast<size_t>(n_) * 2);
  if (n_ >= (1 << 29)) throw std::runtime_error("the simulator supports at most 2^29 ops");
  // Successor counts (CSR offsets, shifted by one) are taken where the edges are read: the
  // listed deps here, the stream predecessors in the stream-list pass.
  succ_off_.assign(static_cast<size_t>(n_) + 1, 0);
  int32_t exchange_ops = 0;
  xop_exchange_.clear();
  for (int i = 0; i < n_; ++i) {
    const plan::Op& o = P.ops[i];
    if (o.id != i) throw std::runtime_error(fmt::format("op at index {} has id {}", i, o.id));
    if (o.rank < 0 || o.rank >= R) {
      throw std::runtime_error(
          fmt::format("op {} '{}' names rank {} outside 0..{}", i, o.name, o.rank, R - 1));
    }
    if (o.stream >= plan::kStreamCount) {
      throw std::runtime_error(fmt::format("op {} '{}' has stream {}", i, o.name, o.stream));
    }
    for (OpId d : o.deps) {
      if (d < 0 || d >= n_ || d == i) {
        throw std::runtime_error(fmt::format("op {} '{}' depends on invalid op {}", i, o.name, d));
      }
      pred_.push_back(d);
      ++succ_off_[d + 1];
    }
    pending_[i] = static_cast<int32_t>(o.deps.size());
    OpInfo& in = info_[i];
    in.kind = o.kind;
    in.stream = o.stream;
    in.rank = o.rank;
    in.gpu = P.ranks[o.rank].gpu;
    in.bytes = o.comm_bytes;
    if (is_p2p(o.kind)) {
      in.other = o.match;
      if (o.match < 0 || o.match >= n_) {
        throw std::runtime_error(fmt::format("{} op {} (rank {} '{}') has no matching {}",
                                             kind_name(o.kind), i, o.rank, o.name,
                                             o.kind == OpKind::kSend ? "recv" : "send"));
      }
    } else if (is_coll(o.kind)) {
      in.other = o.collective;
      if (o.collective < 0 || o.collective >= static_cast<int>(P.collectives.size())) {
        throw std::runtime_error(fmt::format("{} op {} (rank {} '{}') names collective {}",
                                             kind_name(o.kind), i, o.rank, o.name, o.collective));
      }
    } else if (o.kind == OpKind::kExchange) {
      if (o.exchange < 0 || o.exchange >= static_cast<int>(P.exchanges.size())) {
        throw std::runtime_error(fmt::format("exchange op {} (rank {} '{}') names exchange {}", i,
                                             o.rank, o.name, o.exchange));
      }
      in.other = exchange_ops++;
      xop_exchange_.push_back(o.exchange);
    } else {
      in.bytes = cm_.duration_ns(o);
      if (in.bytes < 0) {
        throw std::runtime_error(fmt::format(
            "the compute model timed op {} ({} '{}' on rank {}, step {}, layer {}) at {} ns, a "
            "negative duration: check the calibration table of this op kind or the compute "
            "model given in SimOptions",
            i, kind_name(o.kind), o.name, o.rank, o.step, o.layer, in.bytes));
      }
    }
  }
  // Send/recv pairs: matched both ways, same bytes, a route between their GPUs. Collective
  // ops counted per collective (compared with the member lists below).
  std::vector<int32_t> named_by(P.collectives.size(), 0);
  for (int i = 0; i < n_; ++i) {
    const OpInfo& in = info_[i];
    if (in.kind == OpKind::kSend) {
      const OpInfo& mo = info_[in.other];
      if (mo.kind != OpKind::kRecv || mo.other != i) {
        throw std::runtime_error(
            fmt::format("send op {} (rank {} '{}') names op {} as its recv, which does not "
                        "match it back",
                        i, in.rank, P.ops[i].name, in.other));
      }
      if (mo.bytes != in.bytes) {
        throw std::runtime_error(
            fmt::format("send/recv ops {} and {} carry different bytes ({} vs {})", i, in.other,
                        in.bytes, mo.bytes));
      }
      if (in.gpu != mo.gpu) cached_route(in.gpu, mo.gpu);  // throws when there is no path
    } else if (in.kind == OpKind::kRecv) {
      if (info_[in.other].kind != OpKind::kSend || info_[in.other].other != i) {
        throw std::runtime_error(fmt::format(
            "recv op {} (rank {} '{}') names op {} as its send, which does not match it back", i,
            in.rank, P.ops[i].name, in.other));
      }
    } else if (is_coll(in.kind)) {
      ++named_by[in.other];
    }
  }
  std::vector<uint16_t>& listed = listed_;
  // Exchanges: flatten the transfers, check both ends, build each exchange op's transfer list.
  {
    size_t total = 0;
    for (const plan::Exchange& x : P.exchanges) total += x.transfers.size();
    if (total >= (size_t{1} << 29)) throw std::runtime_error("too many exchange transfers");
    xsrc_.clear();
    xdst_.clear();
    xbytes_.clear();
    xsrc_.reserve(total);
    xdst_.reserve(total);
    xbytes_.reserve(total);
    xop_off_.assign(static_cast<size_t>(exchange_ops) + 1, 0);
    for (size_t x = 0; x < P.exchanges.size(); ++x) {
      for (const plan::Transfer& t : P.exchanges[x].transfers) {
        for (OpId id : {t.src_op, t.dst_op}) {
          if (id < 0 || id >= n_ || info_[id].kind != OpKind::kExchange ||
              xop_exchange_[info_[id].other] != static_cast<int>(x)) {
            throw std::runtime_error(fmt::format(
                "exchange {}: transfer names op {}, which is not an exchange op of it", x, id));
          }
        }
        if (t.src_op == t.dst_op || t.bytes < 0) {
          throw std::runtime_error(
              fmt::format("exchange {}: transfer from op {} to op {} of {} bytes is invalid", x,
                          t.src_op, t.dst_op, t.bytes));
        }
        const int gs = info_[t.src_op].gpu, gd = info_[t.dst_op].gpu;
        if (gs != gd) cached_route(gs, gd);  // throws when there is no path
        xsrc_.push_back(t.src_op);
        xdst_.push_back(t.dst_op);
        xbytes_.push_back(t.bytes);
        ++xop_off_[info_[t.src_op].other + 1];
        ++xop_off_[info_[t.dst_op].other + 1];
      }
    }
    for (int32_t k = 0; k < exchange_ops; ++k) xop_off_[k + 1] += xop_off_[k];
    xop_list_.assign(static_cast<size_t>(xop_off_[exchange_ops]), 0);
    std::vector<int32_t> at(xop_off_.begin(), xop_off_.end() - 1);
    for (size_t t = 0; t < xsrc_.size(); ++t) {
      xop_list_[at[info_[xsrc_[t]].other]++] = static_cast<int32_t>(t);
      xop_list_[at[info_[xdst_[t]].other]++] = static_cast<int32_t>(t);
    }
    xop_left_.resize(static_cast<size_t>(exchange_ops));
    for (int32_t k = 0; k < exchange_ops; ++k) xop_left_[k] = xop_off_[k + 1] - xop_off_[k];
    xsides_.assign(xsrc_.size(), 0);
  }
  // Every op exactly once on its own rank's stream list; stream predecessors. (The lists
  // visit ids in a strided order, so only small arrays are touched here; the rank/stream
  // check against info_ is in the sequential pass below.)
  stream_prev_.assign(n_, -1);
  {
    // rank * kStreamCount + stream + 1 of the listing, 0 = not listed (uint16: small array).
    if (R * plan::kStreamCount >= 65535) {
      throw std::runtime_error("the simulator supports at most 32767 plan ranks");
    }
    listed.assign(n_, 0);
    for (int r = 0; r < static_cast<int>(P.stream_ops.size()); ++r) {
      for (int s = 0; s < plan::kStreamCount; ++s) {
        OpId prev = -1;
        for (OpId id : P.stream_ops[r][s]) {
          if (id < 0 || id >= n_ || listed[id] != 0) {
            throw std::runtime_error(fmt::format(
                "stream_ops[{}][{}] lists op {}, which is out of range or listed twice", r, s, id));
          }
          listed[id] = static_cast<uint16_t>(r * plan::kStreamCount + s + 1);
          stream_prev_[id] = prev;
          if (prev >= 0) ++succ_off_[prev + 1];
          prev = id;
        }
      }
    }
  }
  // One sequential pass over the compact records: each op's stream listing, and the prefix
  // sum of the successor offsets (all counts are in).
  for (int i = 0; i < n_; ++i) {
    const OpInfo& in = info_[i];
    const int want = in.rank * plan::kStreamCount + in.stream + 1;
    if (listed[i] != want) {
      const int at = listed[i] - 1;
      throw std::runtime_error(
          listed[i] == 0
              ? fmt::format("op {} (rank {} '{}') is on no stream list", i, in.rank, P.ops[i].name)
              : fmt::format("op {} (rank {} stream {}) is listed in stream_ops[{}][{}]", i, in.rank,
                            in.stream, at / plan::kStreamCount, at % plan::kStreamCount));
    }
    succ_off_[i + 1] += succ_off_[i];
  }
  // Groups and collectives.
  group_nccl_.clear();
  group_nccl_.resize(P.groups.size());
  group_gpus_.assign(P.groups.size(), {});
  ring_gpus_.assign(P.groups.size(), {});
  for (size_t g = 0; g < P.groups.size(); ++g) {
    for (int32_t r : P.groups[g].ranks) {
      if (r < 0 || r >= R) {
        throw std::runtime_error(fmt::format("group '{}' names rank {}", P.groups[g].name, r));
      }
      group_gpus_[g].push_back(P.ranks[r].gpu);
    }
    ring_gpus_[g] = group_gpus_[g];
    std::sort(ring_gpus_[g].begin(), ring_gpus_[g].end());
  }
  std::vector<uint8_t> checked_routes(P.groups.size() * 4, 0);
  std::vector<int32_t> members(P.collectives.size(), 0);
  for (size_t c = 0; c < P.collectives.size(); ++c) {
    const plan::Collective& col = P.collectives[c];
    if (!is_coll(col.kind)) {
      throw std::runtime_error(
          fmt::format("collective {} has non-collective kind {}", c, kind_name(col.kind)));
    }
    if (col.group < 0 || col.group >= static_cast<int>(P.groups.size())) {
      throw std::runtime_error(fmt::format("collective {} names group {}", c, col.group));
    }
    const plan::Group& grp = P.groups[col.group];
    if (col.ops.size() != grp.ranks.size()) {
      throw std::runtime_error(fmt::format("collective {} has {} member ops for group '{}' of {}",
                                           c, col.ops.size(), grp.name, grp.ranks.size()));
    }
    for (size_t i = 0; i < col.ops.size(); ++i) {
      const OpId id = col.ops[i];
      if (id < 0 || id >= n_ || info_[id].kind != col.kind ||
          info_[id].other != static_cast<int>(c) || info_[id].rank != grp.ranks[i]) {
        throw std::runtime_error(fmt::format(
            "collective {} member {} (op {}) is not a {} op of rank {} naming the collective", c, i,
            id, kind_name(col.kind), grp.ranks[i]));
      }
    }
    members[c] = static_cast<int32_t>(col.ops.size());
    if (col.kind == OpKind::kAllToAll && !col.matrix.empty()) {
      bool ok = col.matrix.size() == grp.ranks.size();
      for (const auto& row : col.matrix) ok = ok && row.size() == grp.ranks.size();
      if (!ok) throw std::runtime_error(fmt::format("collective {}: matrix is not n x n", c));
    }
    // Check once per (group, kind) that every flow the algorithm needs has a route.
    uint8_t& done = checked_routes[col.group * 4 + (static_cast<int>(col.kind) -
                                                    static_cast<int>(OpKind::kAllReduce))];
    if (!done) {
      done = 1;
      const CollectivePlan cp = collective_plan(static_cast<int>(c));
      scratch_.clear();
      for (int ph = 0; ph < cp.phases(); ++ph) cp.phase_flows(ph, scratch_);
      for (const PhaseFlow& f : scratch_) {
        if (f.src_gpu != f.dst_gpu) cached_route(f.src_gpu, f.dst_gpu);
      }
    }
  }
  // Each collective op is listed by its collective (members were checked above).
  for (size_t c = 0; c < named_by.size(); ++c) {
    if (named_by[c] != members[c]) {
      throw std::runtime_error(fmt::format("collective {} has {} member ops but {} ops name it", c,
                                           members[c], named_by[c]));
    }
  }

  // Successor lists (CSR) in op-id order of the waiting op, so readiness cascades
  // deterministically.
  // (offsets: counted and summed above)
  succ_.assign(succ_off_[n_], 0);
  std::vector<int32_t> fill(succ_off_.begin(), succ_off_.end() - 1);
  size_t j = 0;
  for (int i = 0; i < n_; ++i) {
    if (stream_prev_[i] >= 0) succ_[fill[stream_prev_[i]]++] = i;
    for (const size_t end = j + pending_[i]; j < end; ++j) succ_[fill[pred_[j]]++] = i;
    if (stream_prev_[i] >= 0) ++pending_[i];
  }
  pred_.clear();
  state_.assign(n_, kWaiting);
  local_link_.resize(plat_.gpus());
  for (int g = 0; g < plat_.gpus(); ++g) {
    local_link_[g] = static_cast<int>(plat_.links().size()) + g;
  }
  gpu_ranks_.assign(plat_.gpus(), {});
  for (int r = 0; r < R; ++r) gpu_ranks_[P.ranks[r].gpu].push_back(r);
  run_.assign(R, {});
  comm_active_.assign(plat_.gpus(), 0);
  comm_ops_.assign(plat_.gpus(), 0);
  gpu_speed_.assign(plat_.gpus(), 1.0);
  interference_ = prm_.comm_interference > 0 || prm_.comm_resident_interference > 0;
  coll_.assign(P.collectives.size(), {});
  coll_members_ = std::move(members);
  tl_.source = "sim";
  tl_.device = plat_.gpu().name;
  tl_.ops.assign(n_, {});
  tl_.makespan_ns = 0;
  q_.reserve(1024);
}

void Engine::schedule_compute_end(int rank, int64_t t) {
  RankRun& rr = run_[rank];
  ++rr.version;
  q_.push(t + ceil_ns(rr.remaining_ns / rr.speed), kComputeEnd, rr.op, rr.version);
}

void Engine::respeed(int gpu, int64_t t, double speed) {
  for (int32_t r : gpu_ranks_[gpu]) {
    RankRun& rr = run_[r];
    if (rr.op < 0) continue;
    rr.remaining_ns -= static_cast<double>(t - rr.updated) * rr.speed;
    if (rr.remaining_ns < 0) rr.remaining_ns = 0;
    rr.updated = t;
    rr.speed = speed;
    schedule_compute_end(r, t);
  }
}

// Compute speed of a GPU: slowed by comm_interference while bytes move to or from it, by
// comm_resident_interference while a comm op runs there without moving bytes (the larger of
// the two when both apply).
void Engine::update_speed(int gpu, int64_t t) {
  double f = 0;
  if (comm_active_[gpu] > 0) f = prm_.comm_interference;
  if (comm_ops_[gpu] > 0) f = std::max(f, prm_.comm_resident_interference);
  const double speed = 1.0 - f;
  if (speed != gpu_speed_[gpu]) {
    gpu_speed_[gpu] = speed;
    respeed(gpu, t, speed);
  }
}

void Engine::count_begin(std::vector<int32_t>& counter, int gpu, int64_t t) {
  if (counter[gpu]++ == 0 && interference_) update_speed(gpu, t);
}

void Engine::count_end(std::vector<int32_t>& counter, int gpu, int64_t t) {
  if (--counter[gpu] == 0 && interference_) update_speed(gpu, t);
}

void Engine::start_flow_after(int64_t t, int src, int dst, double bytes, uint32_t tag) {
  int32_t slot;
  if (!pflow_free_.empty()) {
    slot = pflow_free_.back();
    pflow_free_.pop_back();
  } else {
    slot = static_cast<int32_t>(pflow_.size());
    pflow_.push_back({});
  }
  std::span<const int> links{&local_link_[src], 1};
  int64_t latency = 0;
  if (src != dst) {
    const RouteTable::Entry r = cached_route(src, dst);
    links = {r.links, static_cast<size_t>(r.nlinks)};
    latency = r.latency_ns;
  }
  pflow_[slot] = {links, bytes, tag, src, dst};
  // t - now_ is 0 or a fixed overhead (launch gap, alpha): with the route latency, one of a
  // few delays, so the event takes the queue's lane for it.
  q_.push_after(now_, t - now_ + latency, kFlowStart, slot);
}

void Engine::mark_ready(OpId id, int64_t t) {
  const OpInfo& o = info_[id];
  state_[id] = kReady;
  // The stream idles launch_gap_ns before every op (the executor's end-event → next
  // start-event gap, from a calibration's launch section; 0 by default).
  t += gap_ns_;
  tl_.ops[id].start_ns = t;
  if (!is_comm(o.kind)) {
    RankRun& rr = run_[o.rank];
    rr.op = id;
    rr.remaining_ns = static_cast<double>(o.bytes);
    rr.updated = t;
    rr.speed = gpu_speed_[o.gpu];
    if (rr.speed == 1.0) {
      ++rr.version;
      q_.push(t + o.bytes, kComputeEnd, id, rr.version);
    } else {
      schedule_compute_end(o.rank, t);
    }
    return;
  }
  count_begin(comm_ops_, o.gpu, t);
  if (is_p2p(o.kind)) {
    if (state_[o.other] != kReady) return;  // the peer starts the transfer when it is ready
    const OpId send = o.kind == OpKind::kSend ? id : o.other;
    const OpInfo& so = info_[send];
    const int dst = info_[so.other].gpu;
    start_flow_after(t + alpha_sr_ns_, so.gpu, dst,
                     static_cast<double>(so.bytes) * p2p_wire(so.gpu, dst), tag_of(send, kFlowP2p));
    return;
  }
  if (o.kind == OpKind::kExchange) {
    // One group call: the per-call latency once, then this side of every transfer is posted.
    const int64_t a = alpha_sr_ns_;
    if (a > 0) {
      q_.push_after(now_, t + a - now_, kExchangeLaunch, id);
    } else {
      launch_exchange(id, t);
    }
    return;
  }
  CollState& cs = coll_[o.other];
  if (++cs.ready < coll_members_[o.other]) return;
  cs.plan = collective_plan(o.other);
  cs.phase = 0;
  if (!coll_fixed_ns_.empty() && coll_fixed_ns_[o.other] >= 0) {  // calibrated: no flows
    cs.phase = cs.plan.phases();
    cs.fixed = true;  // its GPUs count as moving data for the whole call (interference)
    for (OpId m : P_.collectives[o.other].ops) count_begin(comm_active_, info_[m].gpu, t);
    q_.push(t + coll_fixed_ns_[o.other], kPhaseStart, o.other);
    return;
  }
  if (cs.plan.alpha_ns >= 0) {  // NCCL model: this call's own latency
    q_.push(t + cs.plan.alpha_ns + phase_overhead_ns_, kPhaseStart, o.other);
    return;
  }
  q_.push_after(now_, t - now_ + ceil_ns(alpha(o.kind)) + phase_overhead_ns_, kPhaseStart, o.other);
}

void Engine::launch_exchange(OpId id, int64_t t) {
  const int32_t k = info_[id].other;
  if (xop_left_[k] == 0) {  // no transfers: the call returns after its latency
    finish(id, t);
    return;
  }
  for (int32_t j = xop_off_[k]; j < xop_off_[k + 1]; ++j) {
    const int32_t x = xop_list_[j];
    if (++xsides_[x] < 2) continue;  // the partner posts later and starts it
    const int src = info_[xsrc_[x]].gpu, dst = info_[xdst_[x]].gpu;
    start_flow_after(t, src, dst, static_cast<double>(xbytes_[x]) * p2p_wire(src, dst),
                     tag_of(x, kFlowXfer));
  }
}

void Engine::start_phase(int c, int64_t t) {
  CollState& cs = coll_[c];
  while (cs.phase < cs.plan.phases()) {
    scratch_.clear();
    cs.plan.phase_flows(cs.phase, scratch_);
    if (!scratch_.empty()) {
      cs.outstanding = static_cast<int>(scratch_.size());
      for (const PhaseFlow& f : scratch_) {
        start_flow_after(t, f.src_gpu, f.dst_gpu, f.bytes, tag_of(c, kFlowColl));
      }
      return;
    }
    ++cs.phase;  // an empty phase (all-to-all with a zero matrix) costs nothing
  }
  if (cs.fixed) {
    cs.fixed = false;
    for (OpId m : P_.collectives[c].ops) count_end(comm_active_, info_[m].gpu, t);
  }
  for (OpId m : P_.collectives[c].ops) finish(m, t);
}

void Engine::flow_done(uint32_t tag, int64_t t) {
  const uint32_t type = tag & 3u;
  const int32_t index = static_cast<int32_t>(tag >> 2);
  if (type == kFlowP2p) {
    finish(index, t);
    finish(info_[index].other, t);
    return;
  }
  if (type == kFlowXfer) {
    for (OpId id : {xsrc_[index], xdst_[index]}) {
      if (--xop_left_[info_[id].other] == 0) finish(id, t);
    }
    return;
  }
  const int c = index;
  CollState& cs = coll_[c];
  if (--cs.outstanding > 0) return;
  ++cs.phase;
  if (cs.phase < cs.plan.phases()) {
    const int64_t overhead = phase_overhead_ns_;
    if (overhead > 0) {
      q_.push_after(now_, t - now_ + overhead, kPhaseStart, c);
      return;
    }
  }
  start_phase(c, t);
}

void Engine::finish(OpId id, int64_t t) {
  state_[id] = kDone;
  tl_.ops[id].end_ns = t;
  tl_.makespan_ns = std::max(tl_.makespan_ns, t);
  ++done_;
  const OpInfo& o = info_[id];
  if (is_comm(o.kind)) {
    count_end(comm_ops_, o.gpu, t);
  } else {
    run_[o.rank].op = -1;
  }
  for (int32_t j = succ_off_[id]; j < succ_off_[id + 1]; ++j) {
    const OpId s = succ_[j];
    if (--pending_[s] == 0) work_.push_back(s);
  }
}

void Engine::drain(int64_t t) {
  for (size_t i = 0; i < work_.size(); ++i) mark_ready(work_[i], t);
  work_.clear();
}

SimResult Engine::run() {
  prepare();
  for (int i = 0; i < n_; ++i) {
    if (pending_[i] == 0) work_.push_back(i);
  }
  drain(0);
  const int64_t now =
      net_.fluid() != nullptr ? run_events(*net_.fluid()) : run_events(*net_.flow());
  if (done_ < n_) report_stuck(now);
  if (progress_ != nullptr) (*progress_)(done_, n_);
  SimResult res;
  res.timeline = std::move(tl_);
  res.events = events_;
  return res;
}

template <class Net>
int64_t Engine::run_events(Net& net) {
  constexpr uint64_t kProgressEvery = uint64_t{1} << 18;
  next_progress_ = kProgressEvery;
  int64_t now = 0;
  for (;;) {
    if (progress_ != nullptr && events_ >= next_progress_) {
      next_progress_ = events_ + kProgressEvery;
      (*progress_)(done_, n_);
    }
    const int64_t tn = net.next_event_time();
    const int64_t th = q_.empty() ? Net::kNever : q_.top_time();
    if (tn == Net::kNever && th == Net::kNever) break;
    if (tn <= th) {
      now = tn;
      now_ = now;
      completed_.clear();
      net.advance(tn, completed_);
      events_ += completed_.size();
      for (uint32_t slot : completed_) {
        const PendingFlow& pf = pflow_[slot];
        const uint32_t tag = pf.tag;
        count_end(comm_active_, pf.src, now);
        if (pf.dst != pf.src) count_end(comm_active_, pf.dst, now);
        pflow_free_.push_back(static_cast<int32_t>(slot));
        flow_done(tag, now);
      }
      drain(now);
      continue;
    }
    now = th;
    now_ = now;
    // Every queued event at this instant, before the network re-solves (flows that start
    // together are solved together).
    while (!q_.empty() && q_.top_time() == now) {
      const Event e = q_.pop();
      switch (e.type) {
        case kComputeEnd: {
          const int rank = info_[e.a].rank;
          if (run_[rank].op != e.a || run_[rank].version != e.b) continue;  // re-timed
          ++events_;
          finish(e.a, now);
          break;
        }
        case kFlowStart: {
          ++events_;
          const PendingFlow& pf = pflow_[e.a];
          if (pf.bytes > 0) {  // the slot stays taken until the flow completes
            count_begin(comm_active_, pf.src, now);
            if (pf.dst != pf.src) count_begin(comm_active_, pf.dst, now);
            net.start_flow(now, pf.links, pf.bytes, static_cast<uint32_t>(e.a));
          } else {
            const uint32_t tag = pf.tag;
            pflow_free_.push_back(e.a);
            flow_done(tag, now);
          }
          break;
        }
        case kPhaseStart:
          ++events_;
          start_phase(e.a, now);
          break;
        case kExchangeLaunch:
          ++events_;
          launch_exchange(e.a, now);
          break;
      }
      drain(now);
    }
  }
  return now;
}

std::string Engine::describe(OpId id) const {
  const plan::Op& o = P_.ops[id];
  return fmt::format("op {} (rank {}, {} '{}', layer {}, step {}, micro-batch {})", id, o.rank,
                     kind_name(o.kind), o.name, o.layer, o.step, o.micro_batch);
}

void Engine::report_stuck(int64_t t) {
  OpId first = 0;
  while (state_[first] == kDone) ++first;
  std::string msg = fmt::format(
      "simulation stuck at t = {} ns with {} of {} ops unfinished (a dependency cycle or an "
      "unmatched communication): ",
      t, n_ - done_, n_);
  // Walk the wait-for chain from the first unfinished op to the op that blocks it.
  std::vector<uint8_t> visited(n_, 0);
  OpId cur = first;
  for (int hops = 0; hops < 32; ++hops) {
    msg += describe(cur);
    if (visited[cur]) {
      msg += " (a cycle)";
      break;
    }
    visited[cur] = 1;
    const plan::Op& o = P_.ops[cur];
    OpId next = -1;
    if (state_[cur] == kWaiting) {
      if (stream_prev_[cur] >= 0 && state_[stream_prev_[cur]] != kDone) {
        next = stream_prev_[cur];
        msg += " waits for its stream predecessor ";
      } else {
        for (OpId d : o.deps) {
          if (state_[d] != kDone) {
            next = d;
            break;
          }
        }
        msg += " waits for dependency ";
      }
    } else if (is_p2p(o.kind)) {
      next = o.match;
      msg += fmt::format(" has started and waits for its matching {} ",
                         o.kind == OpKind::kSend ? "recv" : "send");
    } else if (is_coll(o.kind)) {
      for (OpId m : P_.collectives[o.collective].ops) {
        if (state_[m] == kWaiting) {
          next = m;
          break;
        }
      }
      msg += fmt::format(" has started and waits for collective {} member ", o.collective);
    } else if (o.kind == OpKind::kExchange) {
      const int32_t k = info_[cur].other;
      for (int32_t j = xop_off_[k]; j < xop_off_[k + 1] && next < 0; ++j) {
        const int32_t x = xop_list_[j];
        const OpId partner = xsrc_[x] == cur ? xdst_[x] : xsrc_[x];
        if (state_[partner] == kWaiting) next = partner;
      }
      msg += fmt::format(" has started and waits for exchange {} partner ", o.exchange);
    }
    if (next < 0) {
      msg += "(nothing left to wait for: internal error)";
      break;
    }
    cur = next;
  }
  throw std::runtime_error(msg);
}

// The tier parameter network_tier asks for; auto (2) takes the fluid tier when one exchange or
// all-to-all of the program has more than network_auto_flows transfers (the flow tier's cost
// grows with the flows that share links at once), and says so in `note`.
bool choose_fluid(const plan::Program& program, const SimParams& prm, std::string& note) {
  const double tier = prm.network_tier;
  if (tier != 0 && tier != 1 && tier != 2) {
    throw std::invalid_argument(fmt::format(
        "simulator parameter network_tier = {} must be 0 (flow), 1 (fluid) or 2 (auto)", tier));
  }
  if (tier != 2) return tier == 1;
  int64_t largest = 0;
  for (const plan::Exchange& x : program.exchanges) {
    largest = std::max(largest, static_cast<int64_t>(x.transfers.size()));
  }
  for (const plan::Collective& c : program.collectives) {
    if (c.kind != OpKind::kAllToAll) continue;
    const auto n = static_cast<int64_t>(c.ops.size());
    largest = std::max(largest, n * (n - 1));
  }
  const bool fluid = static_cast<double>(largest) > prm.network_auto_flows;
  note = fmt::format("auto: largest exchange or all-to-all {} transfers {} network_auto_flows {}",
                     largest, fluid ? ">" : "<=", prm.network_auto_flows);
  return fluid;
}

}  // namespace

SimResult simulate(const plan::Program& program, const Platform& platform,
                   const SimOptions& options) {
  SimParams prm;
  if (!(options.comm_interference >= 0 && options.comm_interference <= 0.99)) {
    throw std::invalid_argument("comm_interference must be in [0, 0.99]");
  }
  SimParams base;
  base.comm_interference = options.comm_interference;
  // A calibration file (issue 6, calibrated_model.hpp): its comm tables set the alpha_*_ns
  // latencies (options.params still override them), its compute tables time compute ops.
  std::optional<plan::Calibration> cal;
  std::string mismatch_warning;
  std::vector<std::pair<std::string, double>> overrides = options.params;
  if (!options.calibration.empty()) {
    cal = plan::load_calibration(options.calibration);
    mismatch_warning = check_calibration_gpu(*cal, options.calibration, platform.gpu().name,
                                             options.allow_calibration_mismatch);
    overrides = calibrated_comm_params(*cal);
    overrides.insert(overrides.end(), options.params.begin(), options.params.end());
  }
  prm = resolve_params(overrides, base);
  bool is_auto = false;
  const CollAlgorithm alg = parse_allreduce_algorithm(options.allreduce_algorithm, is_auto);
  std::shared_ptr<const ComputeModel> cm = options.compute_model;
  std::string cal_summary;
  if (!cm) cm = std::make_shared<RooflineModel>(platform.gpu(), prm);
  // Collectives with a comm table of their op and group size take the table's time.
  std::vector<int64_t> coll_fixed_ns;
  if (cal) {
    for (const plan::Collective& col : program.collectives) {
      const bool ok = col.group >= 0 && col.group < static_cast<int>(program.groups.size());
      const double ns =  // a bad group: -1 here, the Engine's checks report it
          ok ? calibrated_collective_ns(*cal, col.kind,
                                        static_cast<int>(program.groups[col.group].ranks.size()),
                                        static_cast<double>(col.bytes), col.matrix.empty())
             : -1;
      coll_fixed_ns.push_back(ns < 0 ? -1
                                     : plan::checked_ns(std::ceil(ns), "calibrated collective"));
    }
  }
  if (cal && !options.compute_model) {
    const std::string device = cal->device;
    auto calibrated = std::make_shared<CalibratedModel>(std::move(*cal), cm);
    cal_summary = calibrated->coverage(program).summary(options.calibration, device);
    cm = std::move(calibrated);
  }
  if (options.wrap_compute_model) cm = options.wrap_compute_model(std::move(cm));
  // Collective timing model (SimOptions::collective_model).
  bool use_nccl = false;
  if (options.collective_model == "nccl") {
    if (options.topology == nullptr) {
      throw std::invalid_argument(
          "collective_model 'nccl' needs SimOptions::topology (the cluster description)");
    }
    use_nccl = true;
  } else if (options.collective_model == "auto") {
    use_nccl = options.topology != nullptr && is_auto;
  } else if (options.collective_model != "phases") {
    throw std::invalid_argument("collective_model '" + options.collective_model +
                                "' is not one of nccl, phases, auto");
  }
  NcclSetup nccl;
  if (use_nccl) {
    nccl.topology = options.topology;
    nccl.selection =
        NcclSelection::parse(options.nccl_algo, options.nccl_proto, "nccl_algo", "nccl_proto");
  } else if (options.nccl_algo != "auto" || options.nccl_proto != "auto") {
    throw std::invalid_argument(
        "nccl_algo / nccl_proto apply to the NCCL collective model, which this run does not use "
        "(collective_model '" +
        options.collective_model + "', allreduce_algorithm '" + options.allreduce_algorithm + "')");
  }
  std::string network_note;
  const bool fluid = choose_fluid(program, prm, network_note);
  Engine engine(program, platform, prm, *cm, alg, is_auto, fluid, std::move(coll_fixed_ns));
  if (options.progress) engine.set_progress(&options.progress);
  if (use_nccl) engine.set_nccl(&nccl);
  SimResult result = engine.run();
  if (!mismatch_warning.empty()) {
    cal_summary = mismatch_warning + (cal_summary.empty() ? "" : "\n" + cal_summary);
  }
  result.calibration_summary = std::move(cal_summary);
  result.network_tier = fluid ? "fluid" : "flow";
  result.network_note = std::move(network_note);
  return result;
}

}  // namespace masep::sim
