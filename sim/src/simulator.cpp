// The simulator: a discrete-event engine that runs a Program's ops on modelled GPU streams,
// with compute durations from a ComputeModel and transfers as flows in the NetworkModel.
// See docs/simulator-model.md for the semantics and every parameter.
#include "masep/sim/simulator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <optional>
#include <span>
#include <stdexcept>
#include <unordered_map>

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
  uint8_t cross = 0;  // has successors in later chunks (Engine::cross_)
  int32_t rank = 0;
  int32_t gpu = 0;
  int32_t other = -1;  // kSend/kRecv: the matching op; collectives: the collective index;
                       // kExchange: the op's index among exchange ops (xop_* arrays)
  int64_t bytes = 0;   // comm ops: comm_bytes; compute ops: duration from the model, ns
};

// A vector indexed by a global index (op id, transfer, collective, exchange op) from `base`
// on: the streaming path drops what lies before a retired chunk. Whole runs keep base 0.
// Dropped elements stay in the vector as a dead prefix until they are as many as the live
// ones (then erased): a retire costs no copy of the chunks still in flight.
template <class T>
class Window {
 public:
  T& operator[](int64_t i) { return at_[i]; }
  const T& operator[](int64_t i) const { return at_[i]; }
  int64_t base() const { return base_; }
  int64_t end() const { return base_ + static_cast<int64_t>(v_.size() - dead_); }
  const T* data_at(int64_t i) const { return v_.data() + dead_ + (i - base_); }
  // For the per-thread cache and the whole run's timeline: the live elements only (call
  // reset() after a swap).
  std::vector<T>& storage() {
    compact();
    return v_;
  }
  void reset(int64_t base) {
    v_.clear();
    dead_ = 0;
    base_ = base;
    sync();
  }
  void resize_to(int64_t end, const T& x = T()) {
    v_.resize(dead_ + static_cast<size_t>(end - base_), x);
    sync();
  }
  void push_back(const T& x) {
    v_.push_back(x);
    sync();
  }
  void reserve_more(size_t n) {
    v_.reserve(v_.size() + n);
    sync();
  }
  void drop_before(int64_t b) {
    dead_ += static_cast<size_t>(b - base_);
    base_ = b;
    if (dead_ * 2 >= v_.size()) compact();
    sync();
  }

 private:
  void compact() {
    if (dead_ == 0) return;
    v_.erase(v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(dead_));
    dead_ = 0;
    sync();
  }
  // at_[i] is element i - base_ + dead_: the data pointer moved back by base_ - dead_
  // elements (integer arithmetic; only indices >= base_ are used), so an access costs what a
  // vector's does.
  void sync() {
    at_ = reinterpret_cast<T*>(reinterpret_cast<uintptr_t>(v_.data() + dead_) -
                               static_cast<uintptr_t>(base_) * sizeof(T));
  }
  std::vector<T> v_;
  size_t dead_ = 0;  // dropped elements at the front of v_
  int64_t base_ = 0;
  T* at_ = nullptr;
};

// One piece of the program the engine loads: the whole Program (simulate) or a ProgramChunk
// (simulate_stream). Ids are global (see program_chunk.hpp).
struct ChunkRef {
  std::span<const plan::Op> ops;
  OpId first_op = 0;
  std::span<const plan::Collective> collectives;
  int32_t first_collective = 0;
  std::span<const plan::Exchange> exchanges;
  int32_t first_exchange = 0;
  const std::vector<std::array<std::vector<OpId>, plan::kStreamCount>>* stream_ops = nullptr;
};
ChunkRef chunk_ref(const plan::Program& p) {
  return {p.ops, 0, p.collectives, 0, p.exchanges, 0, &p.stream_ops};
}
ChunkRef chunk_ref(const plan::ProgramChunk& c) {
  return {c.ops,       c.first_op,       c.collectives, c.first_collective,
          c.exchanges, c.first_exchange, &c.stream_ops};
}

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

// Routes of the (src, dst) GPU pairs a run uses: per source GPU, an open-addressing table of
// destinations (linear probing from dst mod size, power-of-two size kept at most half full),
// so memory follows the pairs used (a dense gpus x gpus table needs 4 GB at 16,384 GPUs) and
// the look-ups of one sender's transfers (exchanges list them by sender) stay in one small
// table (one table keyed by pair missed the cache at every look-up at 1,024 GPUs). slot()
// returns the entry of a pair, claiming an empty one (links == nullptr) for a new pair; the
// caller fills it and calls filled(src). Entries move when a table grows, so a reference is
// valid only until filled().
class RouteTable {
 public:
  struct Entry {
    const int* links = nullptr;  // into the Platform's route (stable for its lifetime)
    int32_t nlinks = 0;
    int32_t dst = -1;
    int64_t latency_ns = 0;  // route latency rounded up to whole ns
  };
  void clear(int gpus) { rows_.assign(static_cast<size_t>(gpus), Row{}); }
  Entry& slot(int src, int dst) {
    Row& r = rows_[static_cast<size_t>(src)];
    if (r.entries.empty()) r.entries.assign(8, Entry{});
    const size_t mask = r.entries.size() - 1;
    for (size_t i = static_cast<size_t>(dst) & mask;; i = (i + 1) & mask) {
      Entry& e = r.entries[i];
      if (e.links == nullptr) {
        e.dst = dst;
        return e;
      }
      if (e.dst == dst) return e;
    }
  }
  void filled(int src) {
    Row& r = rows_[static_cast<size_t>(src)];
    if (++r.used * 2 <= r.entries.size()) return;
    std::vector<Entry> old(r.entries.size() * 2, Entry{});
    old.swap(r.entries);
    for (const Entry& e : old) {
      if (e.links != nullptr) slot(src, e.dst) = e;
    }
  }

 private:
  struct Row {
    std::vector<Entry> entries;
    size_t used = 0;
  };
  std::vector<Row> rows_;
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
    info_.storage().swap(a.info);
    pending_.storage().swap(a.pending);
    succ_off_.storage().swap(a.succ_off);
    succ_.storage().swap(a.succ);
    stream_prev_.storage().swap(a.stream_prev);
    pred_.swap(a.pred);
    state_.storage().swap(a.state);
    listed_.swap(a.listed);
    xsrc_.storage().swap(a.xsrc);
    xdst_.storage().swap(a.xdst);
    xbytes_.storage().swap(a.xbytes);
    xsides_.storage().swap(a.xsides);
    xop_off_.storage().swap(a.xop_off);
    xop_list_.storage().swap(a.xop_list);
    xop_left_.storage().swap(a.xop_left);
  }
  ~Engine() {
    EngineArrays& a = t_arrays;
    const auto give = [](auto& mine, auto& cache) {
      mine.clear();
      if (mine.capacity() >= cache.capacity()) mine.swap(cache);
    };
    give(info_.storage(), a.info);
    give(pending_.storage(), a.pending);
    give(succ_off_.storage(), a.succ_off);
    give(succ_.storage(), a.succ);
    give(stream_prev_.storage(), a.stream_prev);
    give(pred_, a.pred);
    give(state_.storage(), a.state);
    give(listed_, a.listed);
    give(xsrc_.storage(), a.xsrc);
    give(xdst_.storage(), a.xdst);
    give(xbytes_.storage(), a.xbytes);
    give(xsides_.storage(), a.xsides);
    give(xop_off_.storage(), a.xop_off);
    give(xop_list_.storage(), a.xop_list);
    give(xop_left_.storage(), a.xop_left);
  }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Not inlined into simulate(): keeps one symbol for profiles (callgrind
  // --toggle-collect='*Engine::run()'; a pattern that also matches run_events toggles it off).
  // Simulates the whole `program` given to the constructor.
  [[gnu::noinline]] SimResult run();
  // Simulates the header's ops chunk by chunk: `first` (the source's first chunk, taken
  // over), then what `source` hands out, each loaded before an op with successors in it can
  // finish; each chunk goes to `sink` once all its ops have run and is then freed. Throws
  // StreamNotExact where the result could differ from the whole run.
  [[gnu::noinline]] SimResult run_stream(plan::ProgramChunk first, ChunkSource& source,
                                         ChunkSink& sink);
  // Network tier auto: the threshold on a chunk's largest exchange or all-to-all above which
  // the run would have taken the other tier (streaming checks every chunk against the tier
  // chosen from the first); < 0 = the tier was not chosen by auto.
  void set_auto_threshold(double flows) { auto_threshold_ = flows; }
  int64_t largest_exchange() const { return largest_; }
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

  // Once per run: parameters, GPU checks and per-rank / per-GPU state.
  void begin();
  // Appends a chunk's ops (checks, compact records, durations, successor lists; the groups
  // on the first call). Predecessors in earlier chunks that are still running get the
  // chunk's ops on their cross_ lists.
  void load(const ChunkRef& c);
  // An edge from `from` (in an earlier chunk) to `to`: appended to from's cross list when
  // `from` is still to finish (true), else nothing to wait for (false).
  bool cross_edge(OpId from, OpId to);
  // Streaming: loads the source's next chunk (the last loaded one has begun finishing).
  void load_next();
  // Streaming: hands the oldest chunk, all of whose ops have run, to the sink and drops it.
  void retire();
  const plan::Op& op_of(OpId id) const;
  const plan::Collective& coll(int c) const { return *coll_ptr_[c]; }
  // Routes through a per-Engine hash table of the pairs used (Platform::route checks bounds
  // and hashes a std::unordered_map; the flows' hot path only needs the cached entry). By
  // value: filled() may grow the table, which moves its entries.
  RouteTable::Entry cached_route(int src, int dst) {
    RouteTable::Entry& e = routes_.slot(src, dst);
    if (e.links != nullptr) return e;
    return new_route(e, src, dst);
  }
  // The first use of a pair (out of line: keeps cached_route's hit path inline).
  [[gnu::noinline]] RouteTable::Entry new_route(RouteTable::Entry& e, int src, int dst) {
    const PlatformRoute& r = plat_.route(src, dst);
    e.links = pooled(r.links);
    e.nlinks = static_cast<int32_t>(r.links.size());
    e.latency_ns = ceil_ns(r.latency_ns);
    const RouteTable::Entry got = e;
    routes_.filled(src);
    return got;
  }
  // A copy of a route's link ids in the engine's pool: blocks that never move, filled in
  // first-use order, so the links of the routes a run uses sit together (the Platform's
  // routes are separate heap vectors: reading them at each flow start missed the cache).
  const int* pooled(const std::vector<int>& links) {
    constexpr size_t kBlock = size_t{1} << 16;
    if (links.size() > kBlock) return links.data();
    if (route_pool_.empty() || route_pool_used_ + links.size() > kBlock) {
      route_pool_.push_back(std::make_unique<int[]>(kBlock));
      route_pool_used_ = 0;
    }
    int* p = route_pool_.back().get() + route_pool_used_;
    std::copy(links.begin(), links.end(), p);
    route_pool_used_ += links.size();
    return p;
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
    const plan::Collective& col = coll(c);
    CollectivePlan cp = make_collective_plan(
        col.kind, ring_gpus_[col.group], group_gpus_[col.group], &col.matrix,
        static_cast<double>(col.bytes), plat_.gpus_per_node(), allreduce_, allreduce_auto_);
    if (nccl_ != nullptr) {
      // The model's result depends only on (group, kind, bytes) (an all-to-all's is found
      // from the uniform pattern, whatever its matrix): remembered per group, so the many
      // calls of one layer shape (one per replica, micro-batch, layer and step) are timed
      // once. Exact: the same values as calling the model again.
      std::vector<NcclMemo>& memo = nccl_memo_[col.group];
      for (const NcclMemo& e : memo) {
        if (e.kind == col.kind && e.bytes == cp.bytes) {
          cp.algorithm = CollAlgorithm::kNccl;
          cp.nccl = e.nccl;
          cp.flow_scale = e.flow_scale;
          cp.alpha_ns = e.alpha_ns;
          return cp;
        }
      }
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
      if (memo.size() < kNcclMemoPerGroup) {
        memo.push_back({col.kind, cp.bytes, cp.nccl, cp.flow_scale, cp.alpha_ns});
      }
    }
    return cp;
  }

  void mark_ready(OpId op, int64_t t);
  void finish(OpId op, int64_t t);
  void drain(int64_t t);
  void start_flow_after(int64_t t, int src, int dst, double bytes, uint32_t tag);
  // The same on a route already looked up (`links`, `latency` in ns).
  void start_flow_on(int64_t t, int src, int dst, std::span<const int> links, int64_t latency,
                     double bytes, uint32_t tag);
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
  // Ops of the run for progress reports: those loaded, plus (streaming) the chunks still to
  // come at the loaded chunks' mean size.
  int64_t expected_ops() const {
    if (source_ == nullptr || chunks_loaded_ == 0) return n_;
    return n_ + static_cast<int64_t>(source_->remaining()) * n_ / chunks_loaded_;
  }

  const plan::Program& P_;
  const Platform& plat_;
  SimParams prm_;
  const ComputeModel& cm_;
  CollAlgorithm allreduce_;
  bool allreduce_auto_;
  NetworkTier net_;
  EventQueue q_;

  int n_ = 0;  // ops loaded (global ids 0..n_-1; the streaming path drops retired ones)
  Window<int32_t> pending_;          // unfinished predecessors per op
  Window<int32_t> succ_off_, succ_;  // CSR: ops of the same chunk waiting on each op
  Window<int32_t> stream_prev_;      // previous op on the same stream, -1 if first
  std::vector<int32_t> pred_;        // scratch of load(): listed deps of the chunk's ops
  Window<OpInfo> info_;
  Window<plan::OpTiming> times_;
  Window<int32_t> coll_members_;
  Window<const plan::Collective*> coll_ptr_;
  Window<uint8_t> state_;
  std::vector<uint16_t> listed_;  // scratch of load()
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
  Window<CollState> coll_;
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
  std::vector<std::unique_ptr<int[]>> route_pool_;  // see pooled()
  size_t route_pool_used_ = 0;
  // Parameters rounded up to whole ns once (ceil is a libm call without SSE4.1).
  int64_t gap_ns_ = 0, alpha_sr_ns_ = 0, phase_overhead_ns_ = 0;
  // Exchanges. Transfers flattened over all exchanges (index = tag index); per exchange op
  // (dense index k = OpInfo::other): its transfers (CSR) and how many are undelivered.
  Window<OpId> xsrc_, xdst_;
  Window<int64_t> xbytes_;
  Window<uint8_t> xsides_;  // sides posted (0..2) per transfer
  // Per transfer: its route, looked up once when its chunk is loaded (a look-up in routes_
  // per flow start missed the cache at 1,024 GPUs); no links (nullptr, 0): an inter-node
  // transfer whose flow takes its links from the route halves (halves_).
  struct XRoute {
    const int* links = nullptr;
    int64_t nlinks = 0;
    int64_t latency_ns = 0;
  };
  Window<XRoute> xroute_;
  Window<int32_t> xop_off_, xop_list_, xop_left_;
  // Per exchange op: its exchange's transport (low 2 bits) and SMs (the rest): sms << 2 | t.
  Window<int32_t> xop_mode_;
  int64_t deepep_normal_ns_ = 0, deepep_ll_ns_ = 0;  // their per-call latencies, whole ns
  std::vector<int32_t> sm_used_;       // per GPU: SMs held by the exchange ops running there
  std::vector<int32_t> xop_exchange_;  // scratch of load(): per exchange op, its Op::exchange
  int32_t xops_ = 0;                   // exchange ops loaded

  // Chunks loaded (the whole program is one), oldest first.
  struct Loaded {
    ChunkRef ref;
    std::unique_ptr<plan::ProgramChunk> chunk;  // streaming: owned until retired
    OpId end = 0;                               // one past its last op
    int64_t undone = 0;                         // its ops not finished
    int64_t xfer_end = 0, xop_end = 0, coll_end = 0;
  };
  std::deque<Loaded> chunks_;
  bool groups_ready_ = false;
  std::vector<uint8_t> checked_routes_;  // per (group, collective kind): routes checked
  std::vector<OpId> stream_tail_;        // per rank * kStreamCount + stream: last op listed
  // Streaming: successors in later chunks of ops flagged OpInfo::cross, as linked lists in
  // load order (so in op-id order of the waiting op, after the op's own chunk's successors).
  struct CrossEdge {
    OpId succ;
    int32_t next;
  };
  std::vector<CrossEdge> cross_edges_;
  std::unordered_map<OpId, std::pair<int32_t, int32_t>> cross_;  // op -> (head, tail)
  ChunkSource* source_ = nullptr;
  ChunkSink* sink_ = nullptr;
  OpId load_trigger_ = std::numeric_limits<OpId>::max();  // finishing an op >= this loads next
  int64_t chunks_loaded_ = 0;
  double auto_threshold_ = -1;
  int64_t largest_ = 0;  // largest exchange or all-to-all loaded (transfers)

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
  // apply_nccl_model's results per group (collective_plan), at most kNcclMemoPerGroup
  // (kind, bytes) each (searched linearly).
  struct NcclMemo {
    OpKind kind;
    double bytes;
    NcclChoice nccl;
    double flow_scale;
    int64_t alpha_ns;
  };
  static constexpr size_t kNcclMemoPerGroup = 16;
  std::vector<std::vector<NcclMemo>> nccl_memo_;
  // Fluid tier on a Platform with route halves (Platform::route_out / route_in): exchange
  // transfers between nodes take their links from the halves (a flow's links are built when
  // it starts; FluidNetwork copies them) instead of a per-pair route look-up, which missed
  // the cache at 1,024 GPUs. Per GPU: (0 + out link 0 latency) + out link 1 latency, and the
  // in links' latencies, so a route's latency sums in the route's order.
  bool halves_ = false;
  std::vector<double> out_lat_, in_lat0_, in_lat1_;
  int64_t half_latency(int src, int dst) const {
    return ceil_ns((out_lat_[src] + in_lat0_[dst]) + in_lat1_[dst]);
  }
};

void Engine::begin() {
  const plan::Program& P = P_;
  const int R = P.rank_count();
  routes_.clear(plat_.gpus());
  route_pool_.clear();
  route_pool_used_ = 0;
  halves_ = net_.fluid() != nullptr && plat_.has_route_halves();
  if (halves_) {
    const auto& L = plat_.links();
    const auto n = static_cast<size_t>(plat_.gpus());
    out_lat_.resize(n);
    in_lat0_.resize(n);
    in_lat1_.resize(n);
    for (int g = 0; g < plat_.gpus(); ++g) {
      double lat = 0;
      lat += L[static_cast<size_t>(plat_.route_out(g)[0])].latency_ns;
      lat += L[static_cast<size_t>(plat_.route_out(g)[1])].latency_ns;
      out_lat_[g] = lat;
      in_lat0_[g] = L[static_cast<size_t>(plat_.route_in(g)[0])].latency_ns;
      in_lat1_[g] = L[static_cast<size_t>(plat_.route_in(g)[1])].latency_ns;
    }
  }
  gap_ns_ = ceil_ns(prm_.launch_gap_ns);
  alpha_sr_ns_ = ceil_ns(prm_.alpha_sendrecv_ns);
  deepep_normal_ns_ = ceil_ns(prm_.deepep_normal_call_ns);
  deepep_ll_ns_ = ceil_ns(prm_.deepep_ll_call_ns);
  phase_overhead_ns_ = ceil_ns(prm_.coll_phase_overhead_ns);
  for (int r = 0; r < R; ++r) {
    const int g = P.ranks[r].gpu;
    if (g < 0 || g >= plat_.gpus()) {
      throw std::runtime_error(fmt::format(
          "plan rank {} runs on GPU {}, but the topology has GPUs 0..{}", r, g, plat_.gpus() - 1));
    }
  }
  n_ = 0;
  info_.reset(0);
  pending_.reset(0);
  stream_prev_.reset(0);
  state_.reset(0);
  times_.reset(0);
  succ_.reset(0);
  succ_off_.reset(0);
  succ_off_.push_back(0);  // the end of the (empty) successor lists
  xsrc_.reset(0);
  xdst_.reset(0);
  xbytes_.reset(0);
  xsides_.reset(0);
  xroute_.reset(0);
  xop_off_.reset(0);
  xop_off_.push_back(0);
  xop_list_.reset(0);
  xop_left_.reset(0);
  xop_mode_.reset(0);
  xops_ = 0;
  stream_tail_.assign(static_cast<size_t>(R) * plan::kStreamCount, -1);
  groups_ready_ = false;
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
  sm_used_.assign(plat_.gpus(), 0);
  tl_.source = "sim";
  tl_.device = plat_.gpu().name;
  tl_.makespan_ns = 0;
  q_.reserve(1024);
}

const plan::Op& Engine::op_of(OpId id) const {
  for (const Loaded& l : chunks_) {
    if (id >= l.ref.first_op && id < l.end)
      return l.ref.ops[static_cast<size_t>(id - l.ref.first_op)];
  }
  throw std::logic_error(fmt::format("simulator: op {} is not loaded", id));
}

// One pass over the chunk's (large) Op structs: checks, compact per-op records, compute
// durations and the predecessor lists; everything after works on the compact arrays.
void Engine::load(const ChunkRef& c) {
  const plan::Program& P = P_;
  const int R = P.rank_count();
  const int n = static_cast<int>(c.ops.size());
  const OpId lo = c.first_op;
  const bool first_chunk = lo == 0;
  if (lo != n_) {
    throw std::logic_error(fmt::format("simulator: chunk starts at op {}, expected {}", lo, n_));
  }
  if (static_cast<int>(c.stream_ops->size()) != R && n > 0) {
    throw std::runtime_error(
        fmt::format("program has {} ranks but stream_ops for {}", R, c.stream_ops->size()));
  }
  if (static_cast<int64_t>(lo) + n >= (1 << 29)) {
    throw std::runtime_error("the simulator supports at most 2^29 ops");
  }
  const OpId hi = lo + n;
  n_ = hi;
  const int ncoll = static_cast<int>(c.collectives.size());
  const int32_t c0 = c.first_collective;
  const int32_t x0 = c.first_exchange;
  const int nx = static_cast<int>(c.exchanges.size());
  info_.resize_to(hi);
  pending_.resize_to(hi);
  pred_.clear();
  pred_.reserve(static_cast<size_t>(n) * 2);
  // Successor counts of the chunk's ops (CSR offsets, shifted by one; the entry at lo is the
  // end of the earlier chunks' lists) are taken where the edges are read: the listed deps
  // here, the stream predecessors in the stream-list pass.
  succ_off_.resize_to(hi + 1, 0);
  const int32_t xop0 = xops_;
  xop_exchange_.clear();
  for (OpId i = lo; i < hi; ++i) {
    const plan::Op& o = c.ops[static_cast<size_t>(i - lo)];
    if (o.id != i) throw std::runtime_error(fmt::format("op at index {} has id {}", i, o.id));
    if (o.rank < 0 || o.rank >= R) {
      throw std::runtime_error(
          fmt::format("op {} '{}' names rank {} outside 0..{}", i, o.name, o.rank, R - 1));
    }
    if (o.stream >= plan::kStreamCount) {
      throw std::runtime_error(fmt::format("op {} '{}' has stream {}", i, o.name, o.stream));
    }
    for (OpId d : o.deps) {
      if (d < 0 || d >= hi || d == i) {
        throw std::runtime_error(fmt::format("op {} '{}' depends on invalid op {}", i, o.name, d));
      }
      pred_.push_back(d);
      if (d >= lo) ++succ_off_[d + 1];
    }
    pending_[i] = static_cast<int32_t>(o.deps.size());
    OpInfo& in = info_[i];
    in = OpInfo{};
    in.kind = o.kind;
    in.stream = o.stream;
    in.rank = o.rank;
    in.gpu = P.ranks[o.rank].gpu;
    in.bytes = o.comm_bytes;
    if (is_p2p(o.kind)) {
      in.other = o.match;
      if (o.match < lo || o.match >= hi) {
        throw std::runtime_error(fmt::format("{} op {} (rank {} '{}') has no matching {}",
                                             kind_name(o.kind), i, o.rank, o.name,
                                             o.kind == OpKind::kSend ? "recv" : "send"));
      }
    } else if (is_coll(o.kind)) {
      in.other = o.collective;
      if (o.collective < c0 || o.collective >= c0 + ncoll) {
        throw std::runtime_error(fmt::format("{} op {} (rank {} '{}') names collective {}",
                                             kind_name(o.kind), i, o.rank, o.name, o.collective));
      }
    } else if (o.kind == OpKind::kExchange) {
      if (o.exchange < x0 || o.exchange >= x0 + nx) {
        throw std::runtime_error(fmt::format("exchange op {} (rank {} '{}') names exchange {}", i,
                                             o.rank, o.name, o.exchange));
      }
      in.other = xops_++;
      xop_exchange_.push_back(o.exchange);
      const plan::Exchange& ex = c.exchanges[static_cast<size_t>(o.exchange - x0)];
      if (ex.sms < 0) {
        throw std::runtime_error(fmt::format("exchange {} has {} SMs", o.exchange, ex.sms));
      }
      xop_mode_.push_back(ex.sms << 2 | static_cast<int32_t>(ex.transport));
      // SMs taken from compute: the GPU's compute slows while the op runs (update_speed).
      if (ex.sms > 0 && plat_.gpu().sm_count > 0) interference_ = true;
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
  const auto name_of = [&](OpId i) { return c.ops[static_cast<size_t>(i - lo)].name; };
  // Send/recv pairs: matched both ways, same bytes, a route between their GPUs. Collective
  // ops counted per collective (compared with the member lists below).
  std::vector<int32_t> named_by(static_cast<size_t>(ncoll), 0);
  for (OpId i = lo; i < hi; ++i) {
    const OpInfo& in = info_[i];
    if (in.kind == OpKind::kSend) {
      const OpInfo& mo = info_[in.other];
      if (mo.kind != OpKind::kRecv || mo.other != i) {
        throw std::runtime_error(
            fmt::format("send op {} (rank {} '{}') names op {} as its recv, which does not "
                        "match it back",
                        i, in.rank, name_of(i), in.other));
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
            in.rank, name_of(i), in.other));
      }
    } else if (is_coll(in.kind)) {
      ++named_by[static_cast<size_t>(in.other - c0)];
    }
  }
  // Exchanges: flatten the transfers, check both ends, build each exchange op's transfer list.
  {
    size_t total = 0;
    for (const plan::Exchange& x : c.exchanges) total += x.transfers.size();
    if (static_cast<size_t>(xsrc_.end()) + total >= (size_t{1} << 29)) {
      throw std::runtime_error("too many exchange transfers");
    }
    const int64_t t0 = xsrc_.end();
    const int32_t nxops = xops_ - xop0;
    xsrc_.reserve_more(total);
    xdst_.reserve_more(total);
    xbytes_.reserve_more(total);
    xroute_.reserve_more(total);
    // Offsets of the chunk's exchange ops (shifted by one; the entry at xop0 is the end of the
    // earlier lists).
    xop_off_.resize_to(xops_ + 1, 0);
    for (int xi = 0; xi < nx; ++xi) {
      const int x = x0 + xi;
      for (const plan::Transfer& t : c.exchanges[static_cast<size_t>(xi)].transfers) {
        for (OpId id : {t.src_op, t.dst_op}) {
          if (id < lo || id >= hi || info_[id].kind != OpKind::kExchange ||
              xop_exchange_[static_cast<size_t>(info_[id].other - xop0)] != x) {
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
        if (gs != gd && halves_ && plat_.node_of(gs) != plat_.node_of(gd)) {
          xroute_.push_back({nullptr, 0, half_latency(gs, gd)});  // links from the halves
        } else if (gs != gd) {
          const RouteTable::Entry r = cached_route(gs, gd);  // throws when there is no path
          xroute_.push_back({r.links, r.nlinks, r.latency_ns});
        } else {
          xroute_.push_back({&local_link_[gs], 1, 0});
        }
        xsrc_.push_back(t.src_op);
        xdst_.push_back(t.dst_op);
        xbytes_.push_back(t.bytes);
        ++xop_off_[info_[t.src_op].other + 1];
        ++xop_off_[info_[t.dst_op].other + 1];
      }
      largest_ = std::max(largest_, static_cast<int64_t>(c.exchanges[xi].transfers.size()));
    }
    for (int32_t k = xop0; k < xops_; ++k) xop_off_[k + 1] += xop_off_[k];
    xop_list_.resize_to(xop_off_[xops_], 0);
    std::vector<int32_t> at(static_cast<size_t>(nxops));
    for (int32_t k = 0; k < nxops; ++k) at[k] = xop_off_[xop0 + k];
    for (int64_t t = t0; t < xsrc_.end(); ++t) {
      xop_list_[at[info_[xsrc_[t]].other - xop0]++] = static_cast<int32_t>(t);
      xop_list_[at[info_[xdst_[t]].other - xop0]++] = static_cast<int32_t>(t);
    }
    xop_left_.resize_to(xops_);
    for (int32_t k = xop0; k < xops_; ++k) xop_left_[k] = xop_off_[k + 1] - xop_off_[k];
    xsides_.resize_to(xsrc_.end(), 0);
  }
  // Every op exactly once on its own rank's stream list; stream predecessors. (The lists
  // visit ids in a strided order, so only small arrays are touched here; the rank/stream
  // check against info_ is in the sequential pass below.)
  stream_prev_.resize_to(hi, -1);
  std::vector<uint16_t>& listed = listed_;
  {
    // rank * kStreamCount + stream + 1 of the listing, 0 = not listed (uint16: small array).
    if (R * plan::kStreamCount >= 65535) {
      throw std::runtime_error("the simulator supports at most 32767 plan ranks");
    }
    listed.assign(static_cast<size_t>(n), 0);
    for (int r = 0; r < static_cast<int>(c.stream_ops->size()); ++r) {
      for (int s = 0; s < plan::kStreamCount; ++s) {
        OpId& tail = stream_tail_[static_cast<size_t>(r) * plan::kStreamCount + s];
        OpId prev = tail;
        for (OpId id : (*c.stream_ops)[r][s]) {
          if (id < lo || id >= hi || listed[id - lo] != 0) {
            throw std::runtime_error(fmt::format(
                "stream_ops[{}][{}] lists op {}, which is out of range or listed twice", r, s, id));
          }
          listed[id - lo] = static_cast<uint16_t>(r * plan::kStreamCount + s + 1);
          stream_prev_[id] = prev;
          if (prev >= lo) ++succ_off_[prev + 1];
          prev = id;
        }
        tail = prev;
      }
    }
  }
  // One sequential pass over the compact records: each op's stream listing, and the prefix
  // sum of the successor offsets (all counts are in).
  for (OpId i = lo; i < hi; ++i) {
    const OpInfo& in = info_[i];
    const int want = in.rank * plan::kStreamCount + in.stream + 1;
    if (listed[i - lo] != want) {
      const int at = listed[i - lo] - 1;
      throw std::runtime_error(
          listed[i - lo] == 0
              ? fmt::format("op {} (rank {} '{}') is on no stream list", i, in.rank, name_of(i))
              : fmt::format("op {} (rank {} stream {}) is listed in stream_ops[{}][{}]", i, in.rank,
                            in.stream, at / plan::kStreamCount, at % plan::kStreamCount));
    }
    succ_off_[i + 1] += succ_off_[i];
  }
  if (succ_off_[hi] >= std::numeric_limits<int32_t>::max() / 2) {
    throw std::runtime_error("the simulator supports at most 2^30 dependency edges");
  }
  // Groups (once) and collectives.
  if (!groups_ready_) {
    groups_ready_ = true;
    group_nccl_.clear();
    group_nccl_.resize(P.groups.size());
    nccl_memo_.assign(P.groups.size(), {});
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
    checked_routes_.assign(P.groups.size() * 4, 0);
    coll_.reset(c0);
    coll_members_.reset(c0);
    coll_ptr_.reset(c0);
  }
  coll_ptr_.resize_to(c0 + ncoll, nullptr);
  for (int ci = 0; ci < ncoll; ++ci) coll_ptr_[c0 + ci] = &c.collectives[static_cast<size_t>(ci)];
  coll_members_.resize_to(c0 + ncoll, 0);
  for (int ci = 0; ci < ncoll; ++ci) {
    const int cg = c0 + ci;
    const plan::Collective& col = c.collectives[static_cast<size_t>(ci)];
    if (!is_coll(col.kind)) {
      throw std::runtime_error(
          fmt::format("collective {} has non-collective kind {}", cg, kind_name(col.kind)));
    }
    if (col.group < 0 || col.group >= static_cast<int>(P.groups.size())) {
      throw std::runtime_error(fmt::format("collective {} names group {}", cg, col.group));
    }
    const plan::Group& grp = P.groups[col.group];
    if (col.ops.size() != grp.ranks.size()) {
      throw std::runtime_error(fmt::format("collective {} has {} member ops for group '{}' of {}",
                                           cg, col.ops.size(), grp.name, grp.ranks.size()));
    }
    for (size_t i = 0; i < col.ops.size(); ++i) {
      const OpId id = col.ops[i];
      if (id < lo || id >= hi || info_[id].kind != col.kind || info_[id].other != cg ||
          info_[id].rank != grp.ranks[i]) {
        throw std::runtime_error(fmt::format(
            "collective {} member {} (op {}) is not a {} op of rank {} naming the collective", cg,
            i, id, kind_name(col.kind), grp.ranks[i]));
      }
    }
    coll_members_[cg] = static_cast<int32_t>(col.ops.size());
    if (col.kind == OpKind::kAllToAll) {
      const auto m = static_cast<int64_t>(col.ops.size());
      largest_ = std::max(largest_, m * (m - 1));
    }
    if (col.kind == OpKind::kAllToAll && !col.matrix.empty()) {
      bool ok = col.matrix.size() == grp.ranks.size();
      for (const auto& row : col.matrix) ok = ok && row.size() == grp.ranks.size();
      if (!ok) throw std::runtime_error(fmt::format("collective {}: matrix is not n x n", cg));
    }
    // Check once per (group, kind) that every flow the algorithm needs has a route.
    uint8_t& done = checked_routes_[col.group * 4 + (static_cast<int>(col.kind) -
                                                     static_cast<int>(OpKind::kAllReduce))];
    if (!done) {
      done = 1;
      const CollectivePlan cp = collective_plan(cg);
      scratch_.clear();
      for (int ph = 0; ph < cp.phases(); ++ph) cp.phase_flows(ph, scratch_);
      for (const PhaseFlow& f : scratch_) {
        if (f.src_gpu != f.dst_gpu) cached_route(f.src_gpu, f.dst_gpu);
      }
    }
  }
  // Each collective op is listed by its collective (members were checked above).
  for (int ci = 0; ci < ncoll; ++ci) {
    if (named_by[ci] != coll_members_[c0 + ci]) {
      throw std::runtime_error(fmt::format("collective {} has {} member ops but {} ops name it",
                                           c0 + ci, coll_members_[c0 + ci], named_by[ci]));
    }
  }
  coll_.resize_to(c0 + ncoll);
  if (auto_threshold_ >= 0 && !first_chunk &&
      (static_cast<double>(largest_) > auto_threshold_) != (net_.fluid() != nullptr)) {
    throw StreamNotExact(fmt::format(
        "network tier auto: a later window has an exchange or all-to-all of {} transfers, which "
        "would have chosen the other tier",
        largest_));
  }

  // Successor lists (CSR) in op-id order of the waiting op, so readiness cascades
  // deterministically. Predecessors in earlier chunks: still running ones get the op on
  // their cross list; finished ones are not waited for.
  succ_.resize_to(succ_off_[hi], 0);
  std::vector<int32_t> fill(static_cast<size_t>(n));
  for (int k = 0; k < n; ++k) fill[k] = succ_off_[lo + k];
  state_.resize_to(hi, kWaiting);
  bool root_later = false;
  const auto edge = [&](OpId from, OpId to, int32_t& count) {
    if (from >= lo) {  // the same chunk: its CSR list
      succ_[fill[from - lo]++] = to;
      ++count;
    } else if (cross_edge(from, to)) {
      ++count;
    }
  };
  size_t j = 0;
  for (OpId i = lo; i < hi; ++i) {
    int32_t count = 0;
    if (stream_prev_[i] >= 0) edge(stream_prev_[i], i, count);
    for (const size_t end = j + pending_[i]; j < end; ++j) edge(pred_[j], i, count);
    pending_[i] = count;
    if (count == 0 && !first_chunk) root_later = true;
  }
  pred_.clear();
  times_.resize_to(hi);
  if (root_later) {
    throw StreamNotExact(
        "an op of a later window has no unfinished predecessor when its window is loaded");
  }
  Loaded l;
  l.ref = c;
  l.end = hi;
  l.undone = n;
  l.xfer_end = xsrc_.end();
  l.xop_end = xops_;
  l.coll_end = c0 + ncoll;
  chunks_.push_back(std::move(l));
  ++chunks_loaded_;
}

bool Engine::cross_edge(OpId from, OpId to) {
  if (from < state_.base() || state_[from] == kDone) return false;  // finished: not waited for
  const auto e = static_cast<int32_t>(cross_edges_.size());
  cross_edges_.push_back({to, -1});
  auto [it, fresh] = cross_.try_emplace(from, e, e);
  if (!fresh) {
    cross_edges_[static_cast<size_t>(it->second.second)].next = e;
    it->second.second = e;
  }
  info_[from].cross = 1;
  return true;
}

void Engine::load_next() {
  load_trigger_ = std::numeric_limits<OpId>::max();
  for (;;) {
    auto chunk = std::make_unique<plan::ProgramChunk>();
    if (!source_->next(*chunk)) return;
    const ChunkRef ref = chunk_ref(*chunk);
    load(ref);
    chunks_.back().chunk = std::move(chunk);
    if (chunks_.back().chunk->last) return;
    if (!ref.ops.empty()) {  // an empty chunk releases nothing: take the next one now
      load_trigger_ = ref.first_op;
      return;
    }
  }
}

void Engine::retire() {
  while (!chunks_.empty() && chunks_.front().undone == 0 && chunks_.front().chunk) {
    Loaded& l = chunks_.front();
    const OpId lo = l.ref.first_op;
    sink_->done(*l.chunk, std::span<const plan::OpTiming>(times_.data_at(lo), l.ref.ops.size()));
    const OpId hi = l.end;
    info_.drop_before(hi);
    pending_.drop_before(hi);
    stream_prev_.drop_before(hi);
    state_.drop_before(hi);
    times_.drop_before(hi);
    succ_.drop_before(succ_off_[hi]);
    succ_off_.drop_before(hi);
    xsrc_.drop_before(l.xfer_end);
    xdst_.drop_before(l.xfer_end);
    xbytes_.drop_before(l.xfer_end);
    xsides_.drop_before(l.xfer_end);
    xroute_.drop_before(l.xfer_end);
    xop_list_.drop_before(xop_off_[l.xop_end]);
    xop_off_.drop_before(l.xop_end);
    xop_left_.drop_before(l.xop_end);
    xop_mode_.drop_before(l.xop_end);
    coll_.drop_before(l.coll_end);
    coll_members_.drop_before(l.coll_end);
    coll_ptr_.drop_before(l.coll_end);
    chunks_.pop_front();
  }
  if (cross_.empty()) cross_edges_.clear();
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
  // Exchange kernels holding SMs (plan.expert_exchange.comm_sms): compute keeps the rest.
  if (sm_used_[gpu] > 0) {
    f = std::max(f, std::min(0.99, static_cast<double>(sm_used_[gpu]) / plat_.gpu().sm_count));
  }
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
  std::span<const int> links{&local_link_[src], 1};
  int64_t latency = 0;
  if (src != dst) {
    const RouteTable::Entry r = cached_route(src, dst);
    links = {r.links, static_cast<size_t>(r.nlinks)};
    latency = r.latency_ns;
  }
  start_flow_on(t, src, dst, links, latency, bytes, tag);
}

void Engine::start_flow_on(int64_t t, int src, int dst, std::span<const int> links, int64_t latency,
                           double bytes, uint32_t tag) {
  int32_t slot;
  if (!pflow_free_.empty()) {
    slot = pflow_free_.back();
    pflow_free_.pop_back();
  } else {
    slot = static_cast<int32_t>(pflow_.size());
    pflow_.push_back({});
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
  times_[id].start_ns = t;
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
    // The latency is the transport's: NCCL's eager group call, or a DeepEP-style kernel's.
    const int32_t mode = xop_mode_[o.other];
    const auto tr = static_cast<plan::ExchangeTransport>(mode & 3);
    const int64_t a = tr == plan::ExchangeTransport::kNccl           ? alpha_sr_ns_
                      : tr == plan::ExchangeTransport::kDeepEpNormal ? deepep_normal_ns_
                                                                     : deepep_ll_ns_;
    if ((mode >> 2) > 0 && plat_.gpu().sm_count > 0) {
      sm_used_[o.gpu] += mode >> 2;
      update_speed(o.gpu, t);
    }
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
    for (OpId m : coll(o.other).ops) count_begin(comm_active_, info_[m].gpu, t);
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
    const XRoute& r = xroute_[x];
    start_flow_on(t, src, dst, {r.links, static_cast<size_t>(r.nlinks)}, r.latency_ns,
                  static_cast<double>(xbytes_[x]) * p2p_wire(src, dst), tag_of(x, kFlowXfer));
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
    for (OpId m : coll(c).ops) count_end(comm_active_, info_[m].gpu, t);
  }
  for (OpId m : coll(c).ops) finish(m, t);
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
  // Streaming: the next chunk is in before an op of the last one can release its ops.
  if (id >= load_trigger_) load_next();
  state_[id] = kDone;
  times_[id].end_ns = t;
  tl_.makespan_ns = std::max(tl_.makespan_ns, t);
  ++done_;
  const OpInfo& o = info_[id];
  if (is_comm(o.kind)) {
    count_end(comm_ops_, o.gpu, t);
    if (o.kind == OpKind::kExchange && (xop_mode_[o.other] >> 2) > 0 && plat_.gpu().sm_count > 0) {
      sm_used_[o.gpu] -= xop_mode_[o.other] >> 2;
      update_speed(o.gpu, t);
    }
  } else {
    run_[o.rank].op = -1;
  }
  for (int32_t j = succ_off_[id]; j < succ_off_[id + 1]; ++j) {
    const OpId s = succ_[j];
    if (--pending_[s] == 0) work_.push_back(s);
  }
  if (o.cross) {  // successors in later chunks, in op-id order
    const auto it = cross_.find(id);
    for (int32_t e = it->second.first; e >= 0; e = cross_edges_[static_cast<size_t>(e)].next) {
      const OpId s = cross_edges_[static_cast<size_t>(e)].succ;
      if (--pending_[s] == 0) work_.push_back(s);
    }
    cross_.erase(it);
  }
  if (source_ != nullptr) {
    for (auto l = chunks_.rbegin(); l != chunks_.rend(); ++l) {
      if (id >= l->ref.first_op) {
        --l->undone;
        break;
      }
    }
  }
}

void Engine::drain(int64_t t) {
  for (size_t i = 0; i < work_.size(); ++i) mark_ready(work_[i], t);
  work_.clear();
}

SimResult Engine::run() {
  begin();
  load(chunk_ref(P_));
  for (int i = 0; i < n_; ++i) {
    if (pending_[i] == 0) work_.push_back(i);
  }
  drain(0);
  const int64_t now =
      net_.fluid() != nullptr ? run_events(*net_.fluid()) : run_events(*net_.flow());
  if (done_ < n_) report_stuck(now);
  if (progress_ != nullptr) (*progress_)(done_, n_);
  SimResult res;
  tl_.ops = std::move(times_.storage());
  res.timeline = std::move(tl_);
  res.events = events_;
  res.ops = n_;
  return res;
}

SimResult Engine::run_stream(plan::ProgramChunk first, ChunkSource& source, ChunkSink& sink) {
  source_ = &source;
  sink_ = &sink;
  begin();
  auto chunk = std::make_unique<plan::ProgramChunk>(std::move(first));
  if (chunk->first_op != 0)
    throw std::logic_error("simulate_stream: the first chunk must start at op 0");
  const ChunkRef ref = chunk_ref(*chunk);
  load(ref);
  chunks_.back().chunk = std::move(chunk);
  if (!chunks_.back().chunk->last) {
    if (n_ > 0) {
      load_trigger_ = 0;
    } else {
      load_next();
    }
  }
  for (int i = 0; i < n_; ++i) {
    if (pending_[i] == 0) work_.push_back(i);
  }
  drain(0);
  retire();
  const int64_t now =
      net_.fluid() != nullptr ? run_events(*net_.fluid()) : run_events(*net_.flow());
  if (done_ < n_) report_stuck(now);
  retire();
  if (!chunks_.empty()) {
    throw std::logic_error("simulate_stream: chunks left after the run");
  }
  if (progress_ != nullptr) (*progress_)(done_, n_);
  SimResult res;
  res.timeline = std::move(tl_);
  res.timeline.ops.clear();
  res.events = events_;
  res.ops = n_;
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
      (*progress_)(done_, expected_ops());
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
      if (source_ != nullptr && !chunks_.empty() && chunks_.front().undone == 0) retire();
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
          if (static_cast<int64_t>(e.a) < info_.base()) continue;  // re-timed, chunk retired
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
            if (!pf.links.empty()) {
              net.start_flow(now, pf.links, pf.bytes, static_cast<uint32_t>(e.a));
            } else {  // an inter-node transfer routed by the halves (halves_)
              const std::array<int, 2>&o = plat_.route_out(pf.src), &in = plat_.route_in(pf.dst);
              const int links[4] = {o[0], o[1], in[0], in[1]};
              net.start_flow(now, std::span<const int>(links, 4), pf.bytes,
                             static_cast<uint32_t>(e.a));
            }
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
    if (source_ != nullptr && !chunks_.empty() && chunks_.front().undone == 0) retire();
  }
  return now;
}

std::string Engine::describe(OpId id) const {
  const plan::Op& o = op_of(id);
  return fmt::format("op {} (rank {}, {} '{}', layer {}, step {}, micro-batch {})", id, o.rank,
                     kind_name(o.kind), o.name, o.layer, o.step, o.micro_batch);
}

void Engine::report_stuck(int64_t t) {
  OpId first = static_cast<OpId>(state_.base());
  while (state_[first] == kDone) ++first;
  std::string msg = fmt::format(
      "simulation stuck at t = {} ns with {} of {} ops unfinished (a dependency cycle or an "
      "unmatched communication): ",
      t, n_ - done_, n_);
  // Walk the wait-for chain from the first unfinished op to the op that blocks it.
  Window<uint8_t> visited;
  visited.reset(state_.base());
  visited.resize_to(n_, 0);
  OpId cur = first;
  for (int hops = 0; hops < 32; ++hops) {
    msg += describe(cur);
    if (visited[cur]) {
      msg += " (a cycle)";
      break;
    }
    visited[cur] = 1;
    const plan::Op& o = op_of(cur);
    OpId next = -1;
    if (state_[cur] == kWaiting) {
      if (stream_prev_[cur] >= state_.base() && state_[stream_prev_[cur]] != kDone) {
        next = stream_prev_[cur];
        msg += " waits for its stream predecessor ";
      } else {
        for (OpId d : o.deps) {
          if (d >= state_.base() && state_[d] != kDone) {
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
      for (OpId m : coll(o.collective).ops) {
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
int64_t largest_exchange(std::span<const plan::Exchange> exchanges,
                         std::span<const plan::Collective> collectives) {
  int64_t largest = 0;
  for (const plan::Exchange& x : exchanges) {
    largest = std::max(largest, static_cast<int64_t>(x.transfers.size()));
  }
  for (const plan::Collective& c : collectives) {
    if (c.kind != OpKind::kAllToAll) continue;
    const auto n = static_cast<int64_t>(c.ops.size());
    largest = std::max(largest, n * (n - 1));
  }
  return largest;
}

// Whether the tier is auto (network_tier 2); throws for a value that is no tier.
bool tier_is_auto(const SimParams& prm) {
  const double tier = prm.network_tier;
  if (tier != 0 && tier != 1 && tier != 2) {
    throw std::invalid_argument(fmt::format(
        "simulator parameter network_tier = {} must be 0 (flow), 1 (fluid) or 2 (auto)", tier));
  }
  return tier == 2;
}

std::string auto_note(int64_t largest, const SimParams& prm) {
  const bool fluid = static_cast<double>(largest) > prm.network_auto_flows;
  return fmt::format("auto: largest exchange or all-to-all {} transfers {} network_auto_flows {}",
                     largest, fluid ? ">" : "<=", prm.network_auto_flows);
}

bool choose_fluid(const plan::Program& program, const SimParams& prm, std::string& note) {
  if (!tier_is_auto(prm)) return prm.network_tier == 1;
  const int64_t largest = largest_exchange(program.exchanges, program.collectives);
  note = auto_note(largest, prm);
  return static_cast<double>(largest) > prm.network_auto_flows;
}

// The collective timing model (SimOptions::collective_model): true and `nccl` filled for
// NCCL's model.
// An all-to-all without a per-pair matrix, or whose matrix sends the same bytes between every
// pair of distinct members (what the uniform comm tables measure).
bool uniform_matrix(const plan::Collective& col) {
  const int64_t* first = nullptr;
  for (size_t i = 0; i < col.matrix.size(); ++i) {
    for (size_t j = 0; j < col.matrix[i].size(); ++j) {
      if (i == j) continue;
      if (first == nullptr) first = &col.matrix[i][j];
      if (col.matrix[i][j] != *first) return false;
    }
  }
  return true;
}

bool collective_setup(const SimOptions& options, bool is_auto, NcclSetup& nccl) {
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
  return use_nccl;
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
      // With a topology, group sizes without a table of their own are carried from the
      // measured ones by NCCL's model (calibrated_collective_ns), for groups on one node.
      CommModelFn model;
      if (ok && options.topology != nullptr) {
        std::vector<int> gpus;
        for (int32_t r : program.groups[col.group].ranks) {
          if (r >= 0 && r < static_cast<int32_t>(program.ranks.size())) {
            gpus.push_back(program.ranks[r].gpu);
          }
        }
        const topology::TopologySpec* topo = options.topology;
        bool one_node = false;
        try {  // a GPU the topology lacks: no model here, the Engine's checks report it
          one_node = !gpus.empty() && NcclSystem::from_topology(*topo, gpus).nodes == 1;
        } catch (const std::exception&) {
          one_node = false;
        }
        if (one_node) {
          model = [topo, gpus](plan::OpKind kind, int ranks, double bytes) {
            NcclSystem sys = NcclSystem::from_topology(*topo, gpus);
            sys.ranks = sys.ranks_per_node = ranks;
            return NcclModel(sys).choose(kind, bytes).time_ns;
          };
        }
      }
      const double ns =  // a bad group: -1 here, the Engine's checks report it
          ok ? calibrated_collective_ns(*cal, col.kind,
                                        static_cast<int>(program.groups[col.group].ranks.size()),
                                        static_cast<double>(col.bytes), uniform_matrix(col), model)
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
  NcclSetup nccl;
  const bool use_nccl = collective_setup(options, is_auto, nccl);
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

SimResult simulate_stream(const plan::Program& header, ChunkSource& source, ChunkSink& sink,
                          const Platform& platform, const SimOptions& options) {
  if (!options.calibration.empty()) {
    throw std::invalid_argument(
        "simulate_stream: a calibration is not supported (simulate the whole Program)");
  }
  if (!(options.comm_interference >= 0 && options.comm_interference <= 0.99)) {
    throw std::invalid_argument("comm_interference must be in [0, 0.99]");
  }
  SimParams base;
  base.comm_interference = options.comm_interference;
  const SimParams prm = resolve_params(options.params, base);
  bool is_auto = false;
  const CollAlgorithm alg = parse_allreduce_algorithm(options.allreduce_algorithm, is_auto);
  std::shared_ptr<const ComputeModel> cm = options.compute_model;
  if (!cm) cm = std::make_shared<RooflineModel>(platform.gpu(), prm);
  NcclSetup nccl;
  const bool use_nccl = collective_setup(options, is_auto, nccl);
  // The tier: auto decides on the first chunk; the engine checks that no later chunk would
  // have decided otherwise (StreamNotExact).
  plan::ProgramChunk first;
  if (!source.next(first)) throw std::invalid_argument("simulate_stream: the source has no chunk");
  const bool automatic = tier_is_auto(prm);
  const bool fluid = automatic ? static_cast<double>(largest_exchange(
                                     first.exchanges, first.collectives)) > prm.network_auto_flows
                               : prm.network_tier == 1;
  Engine engine(header, platform, prm, *cm, alg, is_auto, fluid);
  if (automatic) engine.set_auto_threshold(prm.network_auto_flows);
  if (options.progress) engine.set_progress(&options.progress);
  if (use_nccl) engine.set_nccl(&nccl);
  SimResult result = engine.run_stream(std::move(first), source, sink);
  result.network_tier = fluid ? "fluid" : "flow";
  if (automatic) result.network_note = auto_note(engine.largest_exchange(), prm);
  return result;
}

}  // namespace masep::sim
