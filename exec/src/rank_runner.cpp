// One rank of the executor: NCCL communicators, streams, buffers, the launches of its
// RankPlan, CUDA-event timing, clock alignment and the gather of timings to rank 0.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nccl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <tuple>

#include "device_init.hpp"
#include "invoke.hpp"
#include "masep/exec/check.hpp"
#include "masep/exec/executor.hpp"
#include "masep/exec/runtime_info.hpp"
#include "masep/kernels/activation.hpp"
#include "masep/kernels/attention.hpp"
#include "masep/kernels/grouped_gemm.hpp"
#include "masep/kernels/norm.hpp"
#include "masep/kernels/permute.hpp"
#include "masep/kernels/rope.hpp"
#include "masep/kernels/router.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/program_json.hpp"
#include "masep/plan/seeded_hash.hpp"
#include "mpi_bootstrap.hpp"

namespace masep::exec {

namespace {

using plan::Op;
using plan::OpId;
using plan::OpKind;

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

using plan::splitmix64;

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

// ---- watchdog ------------------------------------------------------------------------------

// Polls NCCL's asynchronous errors, the progress of the issued launches and (with a
// launcher that supervises with recovery) the launcher's `dead` notices. On an error or no
// progress for `timeout`, without recovery: prints what the rank was waiting on, aborts every
// communicator and ends the process (exit code 4; a second thread ends it anyway if the
// abort hangs). With recovery (and on a `dead` notice): interrupts the run instead: notes the
// first step not finished, stops the communicators' in-flight work (ncclCommRevoke; handles
// stay valid, the main thread aborts or shrinks them) and sets interrupted(); the main thread
// sees it at its next launch or synchronisation. If the main thread has not taken the
// interruption within `timeout`, the process ends (exit code 4): it never hangs.
struct Interruption {
  int step = 0;
  std::string reason;
  std::vector<int> dead;  // ranks the launcher reported dead (empty: detected here)
  int64_t detect_ns = 0, stopped_ns = 0;
};

class Watchdog {
 public:
  Watchdog(int rank, int device, double timeout_s, const plan::Program& p, RankChannel* ch,
           bool recover)
      : rank_(rank),
        device_(device),
        timeout_ns_(static_cast<int64_t>(timeout_s * 1e9)),
        p_(p),
        ch_(ch),
        recover_(recover) {
    last_progress_ns_ = now_ns();
    thread_ = std::thread([this] { loop(); });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void add_comm(ncclComm_t c) {
    std::lock_guard<std::mutex> lk(mu_);
    comms_.push_back(c);
  }
  bool interrupted() const { return interrupted_.load(); }
  Interruption interruption() {
    std::lock_guard<std::mutex> lk(mu_);
    return why_;
  }
  // The main thread took the interruption: the watchdog stops its deadline.
  void acknowledge() { acknowledged_.store(true); }
  void phase(const char* name) {
    std::lock_guard<std::mutex> lk(mu_);
    phase_ = name;
    last_progress_ns_ = now_ns();
  }
  // Watch launches [0, issued) of `plan` through their end events.
  void arm(const RankPlan* plan, const std::vector<cudaEvent_t>* ends,
           const std::vector<char>* active) {
    std::lock_guard<std::mutex> lk(mu_);
    plan_ = plan;
    ends_ = ends;
    active_ = active;
    completed_ = 0;
    issued_.store(0);
    last_progress_ns_ = now_ns();
  }
  void disarm() {
    std::lock_guard<std::mutex> lk(mu_);
    plan_ = nullptr;
    last_progress_ns_ = now_ns();
  }
  void issued(int n) { issued_.store(n); }

 private:
  void loop() {
    cudaSetDevice(device_);
    std::unique_lock<std::mutex> lk(mu_);
    while (!stop_) {
      cv_.wait_for(lk, std::chrono::milliseconds(50));
      if (stop_) break;
      if (interrupted_) {
        if (!acknowledged_ && now_ns() - why_.stopped_ns > timeout_ns_) {
          recover_ = false;
          fail(fmt::format("interrupted ({}) but the run did not stop within {:.0f} s",
                           why_.reason, timeout_ns_ / 1e9));
        }
        continue;
      }
      if (ch_) {
        std::vector<int> dead;
        if (ch_->poll_dead(&dead)) {
          why_.dead = dead;
          fail(fmt::format("the launcher reports rank(s) {} dead", fmt::join(dead, ",")));
          continue;
        }
      }
      bool failed = false;
      for (ncclComm_t c : comms_) {
        ncclResult_t err = ncclSuccess;
        if (ncclCommGetAsyncError(c, &err) == ncclSuccess && err != ncclSuccess &&
            err != ncclInProgress) {
          fail(fmt::format("NCCL reported an asynchronous error: {}", ncclGetErrorString(err)));
          failed = true;
          break;
        }
      }
      if (failed) continue;
      if (plan_ && !advance()) continue;
      if (now_ns() - last_progress_ns_ > timeout_ns_) {
        fail(fmt::format("no progress for {:.0f} s (--timeout)", timeout_ns_ / 1e9));
      }
    }
  }

  // Counts completed launches; false after a failure (CUDA error).
  bool advance() {
    const int issued = issued_.load();
    while (completed_ < issued) {
      if (active_ && !(*active_)[static_cast<size_t>(completed_)]) {
        ++completed_;
        continue;
      }
      const cudaError_t q = cudaEventQuery((*ends_)[static_cast<size_t>(completed_)]);
      if (q == cudaErrorNotReady) break;
      if (q != cudaSuccess) {
        fail(fmt::format("CUDA error: {}", cudaGetErrorString(q)));
        return false;
      }
      ++completed_;
      last_progress_ns_ = now_ns();
    }
    return true;
  }

  // With recovery: interrupt the run (see the class comment); else end the process.
  void fail(const std::string& reason) {
    if (!recover_) die(reason);
    why_.detect_ns = now_ns();
    why_.reason = reason;
    // The first step this rank had not finished: that of the first incomplete active launch
    // of the run being watched (none: outside a run, the Program's first step; all done: its
    // last step).
    const int last_step = p_.first_step + std::max(0, p_.steps - 1);
    const bool after_run =
        std::strcmp(phase_, "gather") == 0 || std::strcmp(phase_, "shutdown") == 0;
    int step = plan_ || after_run ? last_step : p_.first_step;
    if (plan_) {
      for (size_t i = static_cast<size_t>(completed_); i < plan_->launches.size(); ++i) {
        if (active_ && !(*active_)[i]) continue;
        step = std::min(step, plan_->launches[i].step);
      }
    }
    why_.step = std::clamp(step, p_.first_step, last_step);
    std::fprintf(stderr,
                 "masep exec: rank %d: %s; stopping its NCCL work (first unfinished step %d) and "
                 "waiting for the launcher\n",
                 rank_, reason.c_str(), why_.step);
    std::fflush(stderr);
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 28, 0)
    for (ncclComm_t c : comms_) ncclCommRevoke(c, NCCL_REVOKE_DEFAULT);
#else
    die(reason + " (this NCCL has no ncclCommRevoke: no recovery)");
#endif
    why_.stopped_ns = now_ns();
    plan_ = nullptr;
    interrupted_.store(true);
  }

  [[noreturn]] void die(const std::string& reason) {
    std::string waiting = fmt::format("phase '{}'", phase_);
    if (plan_ && completed_ < static_cast<int>(plan_->launches.size())) {
      const Launch& l = plan_->launches[static_cast<size_t>(completed_)];
      const Op& o = p_.ops[static_cast<size_t>(l.ops.front())];
      waiting = fmt::format("op {} ({} {}, step {}, layer {}, micro-batch {}, {} stream)", o.id,
                            plan::to_string(o.kind), o.name, o.step, o.layer, o.micro_batch,
                            plan::stream_name(o.stream));
      if (o.peer >= 0) waiting += fmt::format(" with peer rank {}", o.peer);
    }
    std::fprintf(stderr,
                 "masep exec: rank %d: %s; it was waiting on %s; aborting its NCCL "
                 "communicators and exiting\n",
                 rank_, reason.c_str(), waiting.c_str());
    std::fflush(stderr);
    std::thread([] {
      std::this_thread::sleep_for(std::chrono::seconds(10));
      _exit(4);
    }).detach();
    for (ncclComm_t c : comms_) ncclCommAbort(c);
    _exit(4);
  }

  int rank_, device_;
  int64_t timeout_ns_;
  const plan::Program& p_;
  RankChannel* ch_;
  bool recover_;
  Interruption why_;
  std::atomic<bool> interrupted_{false}, acknowledged_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<ncclComm_t> comms_;
  const char* phase_ = "start";
  int64_t last_progress_ns_ = 0;
  const RankPlan* plan_ = nullptr;
  const std::vector<cudaEvent_t>* ends_ = nullptr;
  const std::vector<char>* active_ = nullptr;
  int completed_ = 0;
  std::atomic<int> issued_{0};
  std::thread thread_;
};

// ---- the rank --------------------------------------------------------------------------------

// A run stopped by the watchdog's interruption (recovery, see Watchdog).
struct RankInterrupted : std::runtime_error {
  explicit RankInterrupted(Interruption w)
      : std::runtime_error("interrupted: " + w.reason), why(std::move(w)) {}
  Interruption why;
};

class RankRunner {
 public:
  // `world`: a world communicator built by an earlier recovery (shrunk or re-initialised);
  // nullptr: initialise one from the environment's NCCL id. `ch`: the launcher's channel
  // (recovery), or nullptr.
  RankRunner(const ExecOptions& o, const ProcessEnv& env, Compiled c, ncclComm_t world = nullptr,
             RankChannel* ch = nullptr)
      : o_(o),
        env_(env),
        c_(std::move(c)),
        p_(c_.program),
        world_(world),
        ch_(ch),
        resumed_(world != nullptr) {}

  ~RankRunner() {
    if (watchdog_) interrupted_ = interrupted_ || watchdog_->interrupted();
    watchdog_.reset();  // stops polling the communicators before they go
    release();
  }

  // After a RankInterrupted: the world communicator (revoked, still valid) for a shrink; the
  // runner no longer owns it.
  ncclComm_t take_world() {
    ncclComm_t w = world_;
    world_ = nullptr;
    return w;
  }
  int64_t timed_start_ns() const { return timed_start_ns_; }
  Compiled take_compiled() { return std::move(c_); }

  // Runs the Program; a run the watchdog interrupted (recovery) throws RankInterrupted,
  // whatever failed on the way (a revoked communicator's call, a launch).
  ExecResult run() {
    try {
      return run_inner();
    } catch (const RankInterrupted&) {
      throw;
    } catch (...) {
      if (watchdog_ && watchdog_->interrupted()) {
        interrupted_ = true;
        watchdog_->acknowledge();
        throw RankInterrupted(watchdog_->interruption());
      }
      throw;
    }
  }

  // Throws RankInterrupted when the watchdog has interrupted the run.
  void check_interrupted() {
    if (watchdog_ && watchdog_->interrupted()) {
      interrupted_ = true;
      watchdog_->acknowledge();
      throw RankInterrupted(watchdog_->interruption());
    }
  }

  // Real gating (see ensure_route).
  using RKey = std::tuple<int32_t, int32_t, int32_t>;  // step, layer, micro-batch
  struct LiveRoute {
    std::vector<std::vector<int32_t>> counts;  // [a][slot]
    RouteSizes sz;
    std::vector<int32_t> group_m, map;  // this rank as MoE GPU
  };

  ExecResult run_inner() {
    ErrorContext& ec = error_context();
    ec.rank = env_.rank;
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    if (env_.world != p_.rank_count()) {
      throw std::runtime_error(fmt::format(
          "the plan has {} ranks but {} processes were started (one process per plan rank)",
          p_.rank_count(), env_.world));
    }
    int devices = 0;
    MASEP_CUDA_CHECK(cudaGetDeviceCount(&devices));
    if (env_.local_rank >= devices) {
      throw std::runtime_error(fmt::format("rank {}: local rank {} but this host has {} GPUs",
                                           env_.rank, env_.local_rank, devices));
    }
    device_ = env_.local_rank;
    MASEP_CUDA_CHECK(cudaSetDevice(device_));
    cudaDeviceProp prop{};
    MASEP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    device_name_ = prop.name;

    const int64_t t0 = now_ns();
    PlanOptions po;
    po.sm_count = prop.multiProcessorCount;
    po.peak_memory_GBps = kernels::decode_attention_peak_memory_GBps();
    po.real_gating = o_.real_gating;
    rp_ = build_rank_plan(p_, env_.rank, po);
    index_real_gating();
    check_device_memory();

    watchdog_ = std::make_unique<Watchdog>(env_.rank, device_, o_.timeout_s, p_, ch_,
                                           o_.recover && ch_ != nullptr);
    find_faults();
    watchdog_->phase("NCCL init");
    init_nccl();
    watchdog_->phase("allocation");
    MASEP_CUDA_CHECK(cudaStreamCreateWithFlags(&streams_[plan::kCompute], cudaStreamNonBlocking));
    MASEP_CUDA_CHECK(cudaStreamCreateWithFlags(&streams_[plan::kComm], cudaStreamNonBlocking));
    MASEP_CUBLAS_CHECK(cublasCreate(&cublas_));
    MASEP_CUBLAS_CHECK(cublasSetStream(cublas_, streams_[plan::kCompute]));
    allocate();
    // A fixed cuBLAS workspace (after cublasSetStream, which resets it): cuBLAS never
    // allocates one itself in the middle of a run.
    MASEP_CUBLAS_CHECK(cublasSetWorkspace(cublas_, alloc(detail::kCublasWorkspaceBytes),
                                          detail::kCublasWorkspaceBytes));
    MASEP_CUDA_CHECK(cudaDeviceSynchronize());
    const int64_t init_ns = now_ns() - t0;
    watchdog_->phase("copy bandwidth");
    const double my_copy_GBps = measure_copy_GBps();

    // Warm-up, untimed (warmup_launches): the first run issues every launch of the timed
    // run, so no GEMM shape is new to cuBLAS when timed (a first call of a shape stalled the
    // host for up to milliseconds, which that op's event pair then measured).
    for (int w = 0; w < (o_.verify ? 0 : o_.warmup); ++w) {
      watchdog_->phase("warm-up");
      const std::vector<char> warm = warmup_launches(rp_, p_.first_step, w);
      issue(warm, false);
      sync_all();
      watchdog_->disarm();  // it reads `warm` while armed
    }
    std::vector<char> all(rp_.launches.size(), 1);
    std::string launch_mode = "eager";
    if (o_.graphs) {
      watchdog_->phase("graph capture");
      const int64_t c0 = now_ns();
      capture_step_graphs();
      launch_mode = fmt::format("CUDA graphs ({}, one per step, captured in {:.1f} ms)",
                                graphs_.size(), (now_ns() - c0) / 1e6);
    }
    watchdog_->phase("clock alignment");
    const auto [barrier_ns, ref_ns] = align_clocks();
    watchdog_->phase("timed run");
    timed_start_ns_ = now_ns();
    if (o_.graphs) {
      replay_step_graphs(all);
    } else {
      issue(all, true);
    }
    sync_all();
    watchdog_->disarm();
    watchdog_->phase("gather");

    ExecResult r;
    if (o_.verify) r.hidden_out = gather_outputs();
    r.copy_GBps = gather_doubles(my_copy_GBps);
    RankTimings mine = collect(barrier_ns, ref_ns);
    r.rank = env_.rank;
    r.launch_mode = launch_mode;
    r.device = device_name_;
    r.versions = runtime_versions();
    r.init_ms = init_ns / 1000000;
    gather(mine, r);
    check_interrupted();
    watchdog_->phase("shutdown");
    watchdog_.reset();
    release();
    r.compiled = std::move(c_);
    return r;
  }

 private:
  // Device copy bandwidth: a 512 MiB cudaMemcpyAsync device to device on the compute stream,
  // 2 warm-up copies, 10 timed with events; bytes read + written per second / 1e9.
  double measure_copy_GBps() {
    const size_t bytes = 512ull << 20;
    void* a = nullptr;
    void* b = nullptr;
    MASEP_CUDA_CHECK(cudaMalloc(&a, bytes));
    MASEP_CUDA_CHECK(cudaMalloc(&b, bytes));
    cudaStream_t st = streams_[plan::kCompute];
    cudaEvent_t e0, e1;
    MASEP_CUDA_CHECK(cudaEventCreate(&e0));
    MASEP_CUDA_CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < 2; ++i)
      MASEP_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st));
    const int reps = 10;
    MASEP_CUDA_CHECK(cudaEventRecord(e0, st));
    for (int i = 0; i < reps; ++i) {
      MASEP_CUDA_CHECK(
          cudaMemcpyAsync(i % 2 ? a : b, i % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice, st));
    }
    MASEP_CUDA_CHECK(cudaEventRecord(e1, st));
    MASEP_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0;
    MASEP_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    MASEP_CUDA_CHECK(cudaFree(a));
    MASEP_CUDA_CHECK(cudaFree(b));
    return ms > 0 ? 2.0 * static_cast<double>(bytes) * reps / (ms * 1e-3) / 1e9 : 0;
  }

  // One double per rank to every rank (ncclAllGather on world); returned on rank 0 only.
  std::vector<double> gather_doubles(double mine) {
    const int n = env_.world;
    double* dev = static_cast<double*>(alloc(sizeof(double) * (static_cast<size_t>(n) + 1)));
    cudaStream_t st = streams_[plan::kComm];
    MASEP_CUDA_CHECK(cudaMemcpy(dev + n, &mine, sizeof(double), cudaMemcpyHostToDevice));
    MASEP_NCCL_CHECK(ncclAllGather(dev + n, dev, 1, ncclFloat64, world_, st));
    MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
    std::vector<double> all(static_cast<size_t>(n));
    MASEP_CUDA_CHECK(cudaMemcpy(all.data(), dev, sizeof(double) * n, cudaMemcpyDeviceToHost));
    if (env_.rank != 0) all.clear();
    return all;
  }

  // --verify: the final hidden states (rp.outputs of every rank) to rank 0, assembled in
  // global sequence order [batch, hidden] (bf16 bits). Empty on other ranks.
  std::vector<uint16_t> gather_outputs() {
    const int n = env_.world;
    const int64_t h = p_.model.hidden;
    auto rows_of = [&](const RankPlan& rp) {
      int64_t t = 0;
      for (const auto& o : rp.outputs) t += o.tokens;
      return t;
    };
    cudaStream_t st = streams_[plan::kComm];
    const int64_t mine = rows_of(rp_);
    uint16_t* stage =
        static_cast<uint16_t*>(alloc(static_cast<size_t>(std::max<int64_t>(mine, 1) * h * 2)));
    int64_t at = 0;
    for (const auto& o : rp_.outputs) {
      MASEP_CUDA_CHECK(cudaMemcpyAsync(stage + at * h, ptr(o.buf),
                                       static_cast<size_t>(o.tokens * h * 2),
                                       cudaMemcpyDeviceToDevice, streams_[plan::kCompute]));
      at += o.tokens;
    }
    MASEP_CUDA_CHECK(cudaStreamSynchronize(streams_[plan::kCompute]));
    if (env_.rank != 0) {
      if (mine > 0) {
        MASEP_NCCL_CHECK(
            ncclSend(stage, static_cast<size_t>(mine * h * 2), ncclUint8, 0, world_, st));
        MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
      }
      return {};
    }
    const int64_t batch = p_.layout.batch;
    std::vector<uint16_t> out(static_cast<size_t>(batch * h), 0x7fc0);  // NaN = not covered
    std::vector<char> covered(static_cast<size_t>(batch), 0);
    PlanOptions po;
    cudaDeviceProp prop{};
    MASEP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    po.sm_count = prop.multiProcessorCount;
    po.peak_memory_GBps = kernels::decode_attention_peak_memory_GBps();
    po.real_gating = o_.real_gating;
    for (int q = 0; q < n; ++q) {
      const RankPlan other = q == 0 ? RankPlan{} : build_rank_plan(p_, q, po);
      const RankPlan& rp = q == 0 ? rp_ : other;
      const int64_t rows = rows_of(rp);
      if (rows == 0) continue;
      std::vector<uint16_t> host(static_cast<size_t>(rows * h));
      if (q == 0) {
        MASEP_CUDA_CHECK(cudaMemcpy(host.data(), stage, host.size() * 2, cudaMemcpyDeviceToHost));
      } else {
        uint16_t* dev = static_cast<uint16_t*>(alloc(host.size() * 2));
        MASEP_NCCL_CHECK(ncclRecv(dev, host.size() * 2, ncclUint8, q, world_, st));
        MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
        MASEP_CUDA_CHECK(cudaMemcpy(host.data(), dev, host.size() * 2, cudaMemcpyDeviceToHost));
      }
      int64_t row = 0;
      for (const auto& o : rp.outputs) {
        for (int64_t t = 0; t < o.tokens; ++t, ++row) {
          const int64_t seq = o.first_seq + t;
          std::copy_n(host.begin() + row * h, h, out.begin() + seq * h);
          covered[static_cast<size_t>(seq)] = 1;
        }
      }
    }
    for (int64_t b = 0; b < batch; ++b) {
      if (!covered[static_cast<size_t>(b)]) {
        throw std::runtime_error(
            fmt::format("--verify: no rank holds the output of sequence {}", b));
      }
    }
    return out;
  }

  void check_device_memory() {
    size_t free_b = 0, total_b = 0;
    MASEP_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const RankMemory m = rp_.memory();
    // NCCL's channels and proxy buffers, cuBLAS workspace and the CUDA context are outside
    // this count; keep a reserve for them.
    const int64_t reserve = 2LL << 30;
    if (m.total() + reserve > static_cast<int64_t>(free_b)) {
      auto gib = [](int64_t b) { return b / double(1LL << 30); };
      throw plan::InfeasiblePlan(fmt::format(
          "rank {} needs {:.2f} GiB on GPU {} ({}) but only {:.2f} GiB of {:.2f} GiB are free "
          "(a {:.1f} GiB reserve for NCCL, cuBLAS and the CUDA context is added):\n"
          "  weights {:.2f} GiB, KV cache {:.2f} GiB, activations {:.2f} GiB, communication "
          "buffers {:.2f} GiB, attention workspace {:.2f} GiB",
          env_.rank, gib(m.total()), device_, device_name_, gib(static_cast<int64_t>(free_b)),
          gib(static_cast<int64_t>(total_b)), gib(reserve), gib(m.weights), gib(m.kv_cache),
          gib(m.activations), gib(m.comm_buffers), gib(m.workspace)));
    }
  }

  void init_nccl() {
    if (world_ == nullptr) {
      ncclUniqueId id{};
      if (env_.mode == LaunchMode::kChild) {
        hex_decode(env_.nccl_id_hex, &id, sizeof id);
      } else {
        detail::mpi_share_nccl_id(&id, env_.rank);  // throws without MPI support
      }
      MASEP_NCCL_CHECK(ncclCommInitRank(&world_, env_.world, id, env_.rank));
    }
    watchdog_->add_comm(world_);
    // One communicator per group with collectives; groups whose ranks are disjoint share one
    // ncclCommSplit call (every world rank takes part in every split, in the same order).
    std::vector<int> used;
    for (const auto& col : p_.collectives) used.push_back(col.group);
    std::sort(used.begin(), used.end());
    used.erase(std::unique(used.begin(), used.end()), used.end());
    comms_.assign(p_.groups.size(), nullptr);
    std::vector<std::vector<int>> rounds;
    std::vector<std::vector<char>> taken;
    for (int g : used) {
      const auto& ranks = p_.groups[static_cast<size_t>(g)].ranks;
      bool is_world = static_cast<int>(ranks.size()) == env_.world;
      for (size_t i = 0; is_world && i < ranks.size(); ++i)
        is_world = ranks[i] == static_cast<int>(i);
      if (is_world) {
        comms_[static_cast<size_t>(g)] = world_;
        continue;
      }
      size_t r = 0;
      for (; r < rounds.size(); ++r) {
        bool clash = false;
        for (int x : ranks) clash = clash || taken[r][static_cast<size_t>(x)];
        if (!clash) break;
      }
      if (r == rounds.size()) {
        rounds.emplace_back();
        taken.emplace_back(static_cast<size_t>(env_.world), 0);
      }
      rounds[r].push_back(g);
      for (int x : ranks) taken[r][static_cast<size_t>(x)] = 1;
    }
    for (const auto& round : rounds) {
      int color = NCCL_SPLIT_NOCOLOR, key = 0, mine = -1;
      for (int g : round) {
        const auto& ranks = p_.groups[static_cast<size_t>(g)].ranks;
        const auto it = std::find(ranks.begin(), ranks.end(), env_.rank);
        if (it != ranks.end()) {
          color = g;
          key = static_cast<int>(it - ranks.begin());
          mine = g;
        }
      }
      ncclComm_t c = nullptr;
      MASEP_NCCL_CHECK(ncclCommSplit(world_, color, key, &c, nullptr));
      if (mine >= 0) {
        comms_[static_cast<size_t>(mine)] = c;
        owned_.push_back(c);
        watchdog_->add_comm(c);
      }
    }
  }

  void* alloc(size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    MASEP_CUDA_CHECK(cudaMalloc(&p, bytes));
    allocations_.push_back(p);
    return p;
  }

  void allocate() {
    // Data: weights and KV cache keyed by what they are (layer, tensor, expert, sequence),
    // not by rank, so every plan of the scenario (and the single-GPU reference of --verify)
    // holds the same model and inputs.
    const uint64_t seed = splitmix64(p_.layout.seed ^ 0x6d61736570ull);
    cudaStream_t st = streams_[plan::kCompute];
    weights_ = static_cast<char*>(alloc(static_cast<size_t>(rp_.weight_bytes)));
    for (const WeightTensor& w : rp_.weight_tensors) {
      if (w.format == kernels::WeightFormat::kFP8Block) {
        detail::fill_hash_fp8_block(weights_ + w.offset_bytes, w.rows, w.cols, seed ^ w.tag,
                                    w.scale, st);
      } else {
        detail::fill_hash_bf16_shifted(weights_ + w.offset_bytes, w.elements, seed ^ w.tag, w.scale,
                                       w.shift, st);
      }
    }
    kv_ = static_cast<char*>(alloc(static_cast<size_t>(rp_.kv_cache_bytes)));
    for (const KvBlock& b : rp_.kv_blocks) {
      const uint64_t tag = splitmix64(splitmix64(0x6b76ull + static_cast<uint64_t>(b.layer)) ^
                                      static_cast<uint64_t>(b.value));
      detail::fill_kv_bf16(kv_ + b.offset_bytes, b.batch, b.kv_heads, b.max_len, b.head_dim,
                           b.first_seq, seed ^ tag, 0.5f, st);
    }
    kv_lens_ = static_cast<int32_t*>(alloc(rp_.kv_lens.size() * sizeof(int32_t)));
    if (!rp_.kv_lens.empty()) {
      MASEP_CUDA_CHECK(cudaMemcpy(kv_lens_, rp_.kv_lens.data(),
                                  rp_.kv_lens.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    }
    int_pool_ = static_cast<int32_t*>(alloc(rp_.int_pool.size() * sizeof(int32_t)));
    if (!rp_.int_pool.empty()) {
      MASEP_CUDA_CHECK(cudaMemcpy(int_pool_, rp_.int_pool.data(),
                                  rp_.int_pool.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    }
    for (int b = 0; b < kBufCount; ++b) {
      auto& sizes = rp_.buffer_bytes[static_cast<size_t>(b)];
      bufs_[static_cast<size_t>(b)].assign(sizes.size(), nullptr);
      bufsize_[static_cast<size_t>(b)] = sizes;
      for (size_t mb = 0; mb < sizes.size(); ++mb) {
        if (sizes[mb] == 0) continue;
        void* p = alloc(static_cast<size_t>(sizes[mb]));
        MASEP_CUDA_CHECK(cudaMemsetAsync(p, 0, static_cast<size_t>(sizes[mb]), st));
        const Buf buf = static_cast<Buf>(b);
        if (buf == Buf::kHidden && rp_.hidden_first_seq[mb] >= 0) {
          // The layer-0 input of the first step, keyed by global sequence.
          detail::fill_rows_bf16(p, sizes[mb] / (2 * p_.model.hidden), p_.model.hidden,
                                 rp_.hidden_first_seq[mb], seed ^ 0x68696464656eull, 1.0f, st);
        } else if (buf == Buf::kHidden || buf == Buf::kLayerOut || buf == Buf::kRecv ||
                   buf == Buf::kRetRecv || buf == Buf::kScratchA) {
          detail::fill_hash_bf16(p, sizes[mb] / 2,
                                 seed ^ (0x3333 + static_cast<uint64_t>(b) * 131 + mb), 1.0f, st);
        }
        bufs_[static_cast<size_t>(b)][mb] = p;
      }
    }
    MASEP_CUDA_CHECK(cudaGetLastError());
    starts_.resize(rp_.launches.size());
    ends_.resize(rp_.launches.size());
    for (size_t i = 0; i < rp_.launches.size(); ++i) {
      MASEP_CUDA_CHECK(cudaEventCreate(&starts_[i]));
      MASEP_CUDA_CHECK(cudaEventCreate(&ends_[i]));
    }
    MASEP_CUDA_CHECK(cudaEventCreate(&ref_));
    barrier_buf_ = static_cast<float*>(alloc(256));
    gather_buf_ = nullptr;
  }

  template <typename T = void>
  T* ptr(const BufRef& r) const {
    char* base = static_cast<char*>(bufs_[static_cast<size_t>(r.buf)][static_cast<size_t>(r.mb)]);
    if (base == nullptr) {
      throw std::logic_error(fmt::format("rank {}: buffer {} of micro-batch {} not allocated",
                                         env_.rank, to_string(r.buf), r.mb));
    }
    return reinterpret_cast<T*>(base + r.offset_bytes);
  }
  // A buffer that may be absent (a row map that never points into it): nullptr then.
  void* opt_ptr(const BufRef& r) const {
    char* base = static_cast<char*>(bufs_[static_cast<size_t>(r.buf)][static_cast<size_t>(r.mb)]);
    return base ? base + r.offset_bytes : nullptr;
  }
  int64_t size_of(Buf b, int mb) const {
    return bufsize_[static_cast<size_t>(b)][static_cast<size_t>(mb)];
  }

  void sync_all() {
    MASEP_CUDA_CHECK(cudaStreamSynchronize(streams_[plan::kCompute]));
    MASEP_CUDA_CHECK(cudaStreamSynchronize(streams_[plan::kComm]));
    check_interrupted();
  }

  // ---- injected faults (issue 18) ----------------------------------------------------------

  // This rank's faults, by its topology GPU: the step it dies at (-1 none) and its straggler
  // window.
  void find_faults() {
    const int gpu = p_.ranks[static_cast<size_t>(env_.rank)].gpu;
    const int end = p_.first_step + p_.steps;
    for (const plan::ExecFault& f : o_.faults) {
      if (f.gpu != gpu) continue;
      if (f.kind == plan::ExecFault::kKill && f.step >= p_.first_step && f.step < end) {
        kill_step_ = kill_step_ < 0 ? f.step : std::min(kill_step_, f.step);
      }
      if (f.kind == plan::ExecFault::kStraggler) {
        slow_first_ = f.step;
        slow_last_ = f.last_step < 0 ? end : f.last_step;
        slow_speed_ = f.speed;
      }
    }
    if (slow_speed_ < 1) {
      MASEP_CUDA_CHECK(cudaMalloc(&slow_slot_, sizeof(uint64_t)));
      allocations_.push_back(slow_slot_);
    }
  }

  // The injected kill of this rank (options), at the first launch of its step in the timed
  // run: SIGKILL (the launcher sees the death at once), or with kill_hangs it stops issuing.
  void maybe_die(int step) {
    if (kill_step_ < 0 || step != kill_step_) return;
    std::fprintf(stderr, "masep exec: rank %d (GPU %d): injected fault: %s at step %d\n",
                 env_.rank, p_.ranks[static_cast<size_t>(env_.rank)].gpu,
                 o_.kill_hangs ? "stops issuing" : "killing itself", step);
    std::fflush(stderr);
    if (o_.kill_hangs) {
      for (;;) pause();
    }
    kill(getpid(), SIGKILL);
  }

  // launch() with the straggler's stretch around compute launches of the slowed steps.
  void do_launch(const Launch& l, cudaStream_t st) {
    const bool slow = slow_slot_ != nullptr && l.stream == plan::kCompute &&
                      l.step >= slow_first_ && l.step <= slow_last_;
    if (slow) detail::straggler_mark(slow_slot_, st);
    launch(l, st);
    if (slow) detail::straggler_stretch(slow_slot_, slow_speed_, st);
  }

  // Barrier, then the reference event; returns (barrier exit, reference) host times.
  std::pair<int64_t, int64_t> align_clocks() {
    sync_all();
    MASEP_NCCL_CHECK(ncclAllReduce(barrier_buf_, barrier_buf_, 1, ncclFloat32, ncclSum, world_,
                                   streams_[plan::kComm]));
    MASEP_CUDA_CHECK(cudaStreamSynchronize(streams_[plan::kComm]));
    const int64_t barrier = now_ns();
    MASEP_CUDA_CHECK(cudaEventRecord(ref_, streams_[plan::kCompute]));
    MASEP_CUDA_CHECK(cudaEventSynchronize(ref_));
    const int64_t ref = now_ns();
    return {barrier, ref};
  }

  void issue(const std::vector<char>& active, bool timed) {
    watchdog_->arm(&rp_, &ends_, &active);
    live_.clear();  // real gating: routes are decided again by every run
    // The test hook names a rank of the first world only (a recovery renumbers the ranks).
    const int fault_rank = resumed_ ? -1 : env_int("MASEP_EXEC_FAULT_RANK", -1);
    const char* fault_mode = std::getenv("MASEP_EXEC_FAULT_MODE");
    const int last_step = p_.first_step + std::max(0, p_.steps - 1);
    const int fault_step =
        std::clamp(env_int("MASEP_EXEC_FAULT_STEP", p_.first_step + 1), p_.first_step, last_step);
    ErrorContext& ec = error_context();
    for (size_t i = 0; i < rp_.launches.size(); ++i) {
      if (!active[i]) continue;
      const Launch& l = rp_.launches[i];
      check_interrupted();
      if (timed) maybe_die(l.step);
      if (timed && fault_rank == env_.rank && l.step == fault_step) {
        if (fault_mode && std::string(fault_mode) == "hang") {
          std::fprintf(stderr, "masep exec: rank %d: injected fault: stops issuing at step %d\n",
                       env_.rank, fault_step);
          std::fflush(stderr);
          for (;;) pause();
        }
        std::fprintf(stderr, "masep exec: rank %d: injected fault: killing itself at step %d\n",
                     env_.rank, fault_step);
        std::fflush(stderr);
        kill(getpid(), SIGKILL);
      }
      const Op& o = p_.ops[static_cast<size_t>(l.ops.front())];
      ec.op = o.id;
      ec.op_name = o.name.c_str();
      cudaStream_t st = streams_[l.stream];
      if (l.wait_for >= 0 && active[static_cast<size_t>(l.wait_for)]) {
        MASEP_CUDA_CHECK(cudaStreamWaitEvent(st, ends_[static_cast<size_t>(l.wait_for)], 0));
      }
      // Real gating: the slot counts of this (layer, micro-batch) are exchanged and read on
      // the host before its first size-dependent launch (outside the op's timed interval).
      if (needs_route(l)) ensure_route(l, st);
      if (timed) MASEP_CUDA_CHECK(cudaEventRecord(starts_[i], st));
      do_launch(l, st);
      MASEP_CUDA_CHECK(cudaEventRecord(ends_[i], st));
      watchdog_->issued(static_cast<int>(i) + 1);
    }
    ec.op = -1;
    ec.op_name = nullptr;
  }

  // ---- CUDA graphs (--launch graph) ------------------------------------------------------

  // One graph per decode step: the step's launches issued as issue() does, into a capture of
  // the compute stream that the comm stream joins (forked at the start, joined at the end),
  // with every per-op timing event as an external event-record node. A wait on a launch of
  // an earlier step is dropped: the step graphs replay in order on one stream, so the earlier
  // step has completed. Waits inside the step use separate dependency events (graph edges).
  void capture_step_graphs() {
    if (rp_.real_gating) {
      throw std::invalid_argument(
          "--launch graph needs --routing forced (real gating reads sizes on the host)");
    }
    const size_t n = rp_.launches.size();
    std::vector<char> target(n, 0);
    for (const Launch& l : rp_.launches) {
      if (l.wait_for >= 0) target[static_cast<size_t>(l.wait_for)] = 1;
    }
    deps_.assign(n, nullptr);
    for (size_t i = 0; i < n; ++i) {
      if (target[i]) MASEP_CUDA_CHECK(cudaEventCreateWithFlags(&deps_[i], cudaEventDisableTiming));
    }
    cudaEvent_t fork = nullptr, join = nullptr;
    MASEP_CUDA_CHECK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
    MASEP_CUDA_CHECK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
    cudaStream_t origin = streams_[plan::kCompute], comm = streams_[plan::kComm];
    std::vector<int> steps;
    for (const Launch& l : rp_.launches) {
      if (std::find(steps.begin(), steps.end(), l.step) == steps.end()) steps.push_back(l.step);
    }
    std::sort(steps.begin(), steps.end());
    ErrorContext& ec = error_context();
    for (int step : steps) {
      MASEP_CUDA_CHECK(cudaStreamBeginCapture(origin, cudaStreamCaptureModeThreadLocal));
      MASEP_CUDA_CHECK(cudaEventRecord(fork, origin));
      MASEP_CUDA_CHECK(cudaStreamWaitEvent(comm, fork, 0));
      int count = 0;
      for (size_t i = 0; i < n; ++i) {
        const Launch& l = rp_.launches[i];
        if (l.step != step) continue;
        const Op& o = p_.ops[static_cast<size_t>(l.ops.front())];
        ec.op = o.id;
        ec.op_name = o.name.c_str();
        cudaStream_t st = streams_[l.stream];
        if (l.wait_for >= 0 && rp_.launches[static_cast<size_t>(l.wait_for)].step == step) {
          MASEP_CUDA_CHECK(cudaStreamWaitEvent(st, deps_[static_cast<size_t>(l.wait_for)], 0));
        }
        MASEP_CUDA_CHECK(cudaEventRecordWithFlags(starts_[i], st, cudaEventRecordExternal));
        do_launch(l, st);
        MASEP_CUDA_CHECK(cudaEventRecordWithFlags(ends_[i], st, cudaEventRecordExternal));
        if (deps_[i]) MASEP_CUDA_CHECK(cudaEventRecord(deps_[i], st));
        ++count;
      }
      MASEP_CUDA_CHECK(cudaEventRecord(join, comm));
      MASEP_CUDA_CHECK(cudaStreamWaitEvent(origin, join, 0));
      cudaGraph_t graph = nullptr;
      MASEP_CUDA_CHECK(cudaStreamEndCapture(origin, &graph));
      cudaGraphExec_t exec = nullptr;
      const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
      cudaGraphDestroy(graph);
      MASEP_CUDA_CHECK(inst);
      graphs_.push_back({step, exec});
      (void)count;
    }
    ec.op = -1;
    ec.op_name = nullptr;
    cudaEventDestroy(fork);
    cudaEventDestroy(join);
    // Upload every graph once (untimed), so the first replay does not pay for it.
    for (const auto& g : graphs_) MASEP_CUDA_CHECK(cudaGraphUpload(g.second, origin));
    MASEP_CUDA_CHECK(cudaStreamSynchronize(origin));
  }

  void replay_step_graphs(const std::vector<char>& active) {
    watchdog_->arm(&rp_, &ends_, &active);
    // The test hook names a rank of the first world only (a recovery renumbers the ranks).
    const int fault_rank = resumed_ ? -1 : env_int("MASEP_EXEC_FAULT_RANK", -1);
    const char* fault_mode = std::getenv("MASEP_EXEC_FAULT_MODE");
    cudaStream_t origin = streams_[plan::kCompute];
    int issued = 0;
    for (const auto& [step, exec] : graphs_) {
      check_interrupted();
      maybe_die(step);
      if (fault_rank == env_.rank && step == p_.first_step + 1) {
        std::fprintf(stderr, "masep exec: rank %d: injected fault (%s) at step %d\n", env_.rank,
                     fault_mode ? fault_mode : "kill", step);
        std::fflush(stderr);
        if (fault_mode && std::string(fault_mode) == "hang") {
          for (;;) pause();
        }
        kill(getpid(), SIGKILL);
      }
      MASEP_CUDA_CHECK(cudaGraphLaunch(exec, origin));
      for (size_t i = 0; i < rp_.launches.size(); ++i) {
        if (rp_.launches[i].step == step) issued = std::max(issued, static_cast<int>(i) + 1);
      }
      watchdog_->issued(issued);
    }
  }

  // ---- real gating -----------------------------------------------------------------------

  static RKey rkey(const Op& o) { return {o.step, o.layer, o.micro_batch}; }
  const Op& op_of(const Launch& l) const { return p_.ops[static_cast<size_t>(l.ops.front())]; }

  void index_real_gating() {
    if (!rp_.real_gating) return;
    for (size_t i = 0; i < rp_.launches.size(); ++i) {
      const Launch& l = rp_.launches[i];
      const Op& o = op_of(l);
      if (l.kind == LaunchKind::kP2p && o.role == plan::OpRole::kDispatch) {
        dispatch_at_[rkey(o)] = static_cast<int>(i);
      }
      if (l.kind == LaunchKind::kGatherRows) has_moe_ops_[rkey(o)] = 1;
      if (routed_p2p(l)) {
        for (OpId id : l.ops) {
          const OpKind k = p_.ops[static_cast<size_t>(id)].kind;
          if (k != OpKind::kExchange && k != OpKind::kSend && k != OpKind::kRecv) {
            throw std::invalid_argument(fmt::format(
                "--routing real: op {} ({}) is a {}; real gating supports dispatch/return as "
                "point-to-point or exchange ops only",
                id, p_.ops[static_cast<size_t>(id)].name, plan::to_string(k)));
          }
        }
      }
    }
  }

  bool routed_p2p(const Launch& l) const {
    if (!rp_.real_gating || l.kind != LaunchKind::kP2p) return false;
    const Op& o = op_of(l);
    return o.role == plan::OpRole::kDispatch || o.role == plan::OpRole::kReturn;
  }

  bool needs_route(const Launch& l) const {
    if (!rp_.real_gating) return false;
    switch (l.kind) {
      case LaunchKind::kGatherRows:
      case LaunchKind::kScatterRows:
        return true;
      case LaunchKind::kGroupedGemm:
      case LaunchKind::kSwiGlu:
      case LaunchKind::kGelu: {
        // The routed experts' rows are decided at run time; a dense FFN's are the slice's.
        const plan::OpRole r = op_of(l).role;
        return r == plan::OpRole::kExpertUp || r == plan::OpRole::kAct ||
               r == plan::OpRole::kExpertDown;
      }
      case LaunchKind::kP2p:
        return routed_p2p(l);
      default:
        return false;
    }
  }

  const LiveRoute& live(const Launch& l) const {
    const auto it = live_.find(rkey(op_of(l)));
    if (it == live_.end()) {
      throw std::logic_error(
          fmt::format("rank {}: op {}: no real route decided yet", env_.rank, l.ops.front()));
    }
    return it->second;
  }

  // The slot counts of (step, layer, mb): this rank's own (attention ranks: the router's
  // counts per slot, kExpertCounts) and those of the attention ranks it receives a dispatch
  // from (a small ncclSend/ncclRecv of int32[slots] with the dispatch's peers, in one NCCL
  // group on stream `st`), copied to the host and waited for: one host round trip per layer
  // and micro-batch. Then the sizes of the transfers, expert GEMMs and row maps.
  void ensure_route(const Launch& l, cudaStream_t st) {
    const Op& o = op_of(l);
    const RKey key = rkey(o);
    if (live_.count(key)) return;
    const GatingLayout& lay = rp_.gating;
    const int A = lay.attention_ranks, S = lay.slots(), mb = o.micro_batch;
    if (!host_counts_) {
      MASEP_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_counts_),
                                      sizeof(int32_t) * static_cast<size_t>((A + 1) * S)));
    }
    std::vector<int> send_to, recv_from;
    const auto dit = dispatch_at_.find(key);
    if (dit != dispatch_at_.end()) {
      for (const P2pPart& part : rp_.launches[static_cast<size_t>(dit->second)].parts) {
        auto& v = part.send ? send_to : recv_from;
        if (std::find(v.begin(), v.end(), part.peer) == v.end()) v.push_back(part.peer);
      }
    }
    const bool attention = env_.rank < A;
    int32_t* own = attention ? ptr<int32_t>({Buf::kExpertCounts, mb, 0}) : nullptr;
    int32_t* recv = recv_from.empty() ? nullptr : ptr<int32_t>({Buf::kRouteCounts, mb, 0});
    if (!send_to.empty() || !recv_from.empty()) {
      MASEP_NCCL_CHECK(ncclGroupStart());
      for (int peer : send_to) {
        if (!own) throw std::logic_error("real gating: a non-attention rank sends a dispatch");
        MASEP_NCCL_CHECK(ncclSend(own, static_cast<size_t>(S), ncclInt32, peer, world_, st));
      }
      for (int peer : recv_from) {
        if (peer < 0 || peer >= A) {
          throw std::logic_error(
              fmt::format("real gating: dispatch from rank {}, not an "
                          "attention rank",
                          peer));
        }
        MASEP_NCCL_CHECK(ncclRecv(recv + static_cast<int64_t>(peer) * S, static_cast<size_t>(S),
                                  ncclInt32, peer, world_, st));
      }
      MASEP_NCCL_CHECK(ncclGroupEnd());
    }
    if (recv) {
      MASEP_CUDA_CHECK(
          cudaMemcpyAsync(host_counts_, recv, sizeof(int32_t) * A * S, cudaMemcpyDeviceToHost, st));
    }
    if (own) {
      MASEP_CUDA_CHECK(cudaMemcpyAsync(host_counts_ + static_cast<int64_t>(A) * S, own,
                                       sizeof(int32_t) * S, cudaMemcpyDeviceToHost, st));
    }
    MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
    LiveRoute lr;
    lr.counts.assign(static_cast<size_t>(A), std::vector<int32_t>(static_cast<size_t>(S), 0));
    for (int a : recv_from) {
      std::copy_n(host_counts_ + static_cast<int64_t>(a) * S, S, lr.counts[a].begin());
    }
    if (own)
      std::copy_n(host_counts_ + static_cast<int64_t>(A) * S, S, lr.counts[env_.rank].begin());
    lr.sz = route_sizes(lay, lr.counts);
    const int g = env_.rank - lay.moe_base;
    if (attention) {
      // Every MoE GPU this rank routes rows to must be one the Program sends to (or itself).
      for (int gg = 0; gg < lay.moe_ranks; ++gg) {
        if (lr.sz.seg_rows[env_.rank][gg] == 0 || lay.is_local(env_.rank, gg)) continue;
        if (std::find(send_to.begin(), send_to.end(), lay.moe_base + gg) == send_to.end()) {
          throw std::runtime_error(fmt::format(
              "--routing real: step {} layer {} micro-batch {}: the router sends {} rows to "
              "rank {}, but the Program has no dispatch transfer there (its sampled routing "
              "sent none); real gating can only use the Program's transfers",
              o.step, o.layer, mb, lr.sz.seg_rows[env_.rank][gg], lay.moe_base + gg));
        }
      }
    }
    if (g >= 0 && g < lay.moe_ranks) {
      lr.group_m = moe_group_m(lay, lr.counts, g);
      lr.map = moe_row_map(lay, lr.sz, lr.counts, g);
      if (!lr.map.empty() && !has_moe_ops_.count(key)) {
        throw std::runtime_error(fmt::format(
            "--routing real: step {} layer {} micro-batch {}: the router gives rank {} {} expert "
            "rows, but the Program has no expert ops there (its sampled routing sent none)",
            o.step, o.layer, mb, env_.rank, lr.map.size()));
      }
    }
    live_.emplace(key, std::move(lr));
  }

  // A dispatch or return group call with the real row counts and offsets (parts with no rows
  // are left out on both sides alike).
  void p2p_real(const Launch& l, cudaStream_t st) {
    const LiveRoute& lr = live(l);
    const int64_t row_bytes = p_.model.hidden * 2;
    MASEP_NCCL_CHECK(ncclGroupStart());
    for (const P2pPart& part : l.parts) {
      const Op& o = p_.ops[static_cast<size_t>(part.op)];
      const PartRows pr = route_part(rp_.gating, lr.sz, env_.rank, o.role == plan::OpRole::kReturn,
                                     part.send, part.peer);
      if (pr.rows == 0) continue;
      BufRef at = part.buf;
      at.offset_bytes = pr.first_row * row_bytes;
      const size_t bytes = static_cast<size_t>(pr.rows * row_bytes);
      if (static_cast<int64_t>(at.offset_bytes + bytes) > size_of(at.buf, at.mb)) {
        throw std::logic_error(fmt::format("rank {}: real route overflows buffer {} ({} + {} > {})",
                                           env_.rank, to_string(at.buf), at.offset_bytes, bytes,
                                           size_of(at.buf, at.mb)));
      }
      if (part.send) {
        MASEP_NCCL_CHECK(ncclSend(ptr(at), bytes, ncclInt8, part.peer, world_, st));
      } else {
        MASEP_NCCL_CHECK(ncclRecv(ptr(at), bytes, ncclInt8, part.peer, world_, st));
      }
    }
    MASEP_NCCL_CHECK(ncclGroupEnd());
  }

  // An expert projection as one grouped decode-GEMM launch (kernels/grouped_gemm.hpp), when
  // --expert-gemm allows it and the launch fits the kernel (≤ kGroupedGemmMaxGroups experts,
  // 16-byte aligned weights, k % 8 == 0); false: the caller issues one cuBLAS GEMM per expert.
  // FP8 weights have no cuBLAS path: they always take this launch (a kGemm as one group), and a
  // launch the kernel cannot take is an error.
  bool grouped_gemm(const Launch& l, const std::vector<int32_t>& group_m, cudaStream_t st) {
    const bool fp8 = l.weight_format == kernels::WeightFormat::kFP8Block;
    if (!fp8 && o_.expert_gemm == ExpertGemm::kCublas) return false;
    const size_t groups = group_m.size();
    const int64_t align = fp8 ? 16 : 8;
    if (groups == 0 || groups > static_cast<size_t>(kernels::kGroupedGemmMaxGroups) ||
        l.k % align != 0 || l.n > INT32_MAX || l.k > INT32_MAX ||
        reinterpret_cast<uintptr_t>(ptr(l.in)) % 16 != 0) {
      if (fp8) {
        throw std::runtime_error(fmt::format(
            "rank {}: op {}: FP8 weights need the grouped decode GEMM, which cannot take "
            "{} groups of [{} x {}] (k a multiple of 16, at most {} groups)",
            env_.rank, l.ops.front(), groups, l.n, l.k, kernels::kGroupedGemmMaxGroups));
      }
      return false;
    }
    int32_t max_rows = 0;
    kernels::GroupedGemmArgs a;
    a.w_base = weights_;
    a.format = l.weight_format;
    a.groups = static_cast<int>(groups);
    a.n = static_cast<int>(l.n);
    a.k = static_cast<int>(l.k);
    for (size_t e = 0; e < groups; ++e) {
      const int64_t off = l.weight_offsets.at(e);
      if (off % 16 != 0) {
        if (fp8) throw std::logic_error("FP8 weight offset not 16-byte aligned");
        return false;
      }
      a.w_offset[e] = fp8 ? off : off / 2;  // bytes (e4m3) or bf16 elements
      a.row_offset[e + 1] = a.row_offset[e] + group_m[e];
      max_rows = std::max(max_rows, group_m[e]);
    }
    if (!fp8 && o_.expert_gemm == ExpertGemm::kAuto &&
        !kernels::grouped_gemm_preferred(max_rows, l.n, l.k)) {
      return false;
    }
    MASEP_KERNEL_CHECK(kernels::launch_grouped_gemm(a, ptr<kernels::bf16>(l.in),
                                                    ptr<kernels::bf16>(l.out), st));
    return true;
  }

  void gemm(const void* w, const void* x, void* c, int64_t m, int64_t n, int64_t k) {
    detail::gemm_bf16(cublas_, w, x, c, m, n, k);
  }

  void launch(const Launch& l, cudaStream_t st) {
    using kernels::bf16;
    const float eps = 1e-6f;
    switch (l.kind) {
      case LaunchKind::kGemm:
        if (l.weight_format == kernels::WeightFormat::kFP8Block) {
          if (l.residual) throw std::logic_error("an FP8 GEMM with a residual input");
          if (l.m > INT32_MAX) throw std::runtime_error("FP8 GEMM with more than 2^31 rows");
          grouped_gemm(l, {static_cast<int32_t>(l.m)}, st);
          return;
        }
        if (l.residual && ptr(l.out) != ptr(l.aux)) {  // the dense FFN's down projection
          MASEP_CUDA_CHECK(
              cudaMemcpyAsync(ptr(l.out), ptr(l.aux), l.m * l.n * 2, cudaMemcpyDeviceToDevice, st));
        }
        detail::gemm_bf16(cublas_, weights_ + l.weight_offsets.at(0), ptr(l.in), ptr(l.out), l.m,
                          l.n, l.k, l.residual);
        return;
      case LaunchKind::kGroupedGemm: {
        int64_t row = 0;
        const char* x = ptr<char>(l.in);
        char* c = ptr<char>(l.out);
        const std::vector<int32_t>& group_m = needs_route(l) ? live(l).group_m : l.group_m;
        if (group_m.size() != l.group_m.size()) {
          throw std::logic_error(
              fmt::format("rank {}: real gating gives {} local experts, the "
                          "Program {}",
                          env_.rank, group_m.size(), l.group_m.size()));
        }
        if (grouped_gemm(l, group_m, st)) return;
        for (size_t e = 0; e < group_m.size(); ++e) {
          const int64_t m = group_m[e];
          gemm(weights_ + l.weight_offsets.at(e), x + row * l.k * 2, c + row * l.n * 2, m, l.n,
               l.k);
          row += m;
        }
        return;
      }
      case LaunchKind::kRmsNorm:
        MASEP_KERNEL_CHECK(kernels::launch_rmsnorm(
            ptr<bf16>(l.in), reinterpret_cast<const bf16*>(weights_ + l.weight_offsets.at(0)),
            ptr<bf16>(l.out), static_cast<int>(l.tokens), static_cast<int>(l.cols), eps, st));
        return;
      case LaunchKind::kAddRmsNorm:
        MASEP_KERNEL_CHECK(kernels::launch_add_rmsnorm(
            ptr<bf16>(l.aux), ptr<bf16>(l.in),
            reinterpret_cast<const bf16*>(weights_ + l.weight_offsets.at(0)), ptr<bf16>(l.out),
            static_cast<int>(l.tokens), static_cast<int>(l.cols), eps, st));
        return;
      case LaunchKind::kRope: {
        kernels::RopeParams rp;
        rp.q = ptr<bf16>(l.in);
        rp.q_stride = l.cols;
        rp.k = ptr<bf16>(l.in) + static_cast<int64_t>(l.heads) * l.head_dim;
        rp.k_stride = l.cols;
        rp.positions = kv_lens_ + l.kv_lens_offset;
        rp.tokens = static_cast<int>(l.tokens);
        rp.num_heads = l.heads;
        rp.num_kv_heads = l.kv_heads;
        rp.head_dim = l.head_dim;
        MASEP_KERNEL_CHECK(kernels::launch_rope(rp, st));
        return;
      }
      case LaunchKind::kAttention: {
        const kernels::DecodeAttentionParams ap = detail::fused_qkv_attention(
            ptr<bf16>(l.in), l.batch, l.heads, l.kv_heads, l.head_dim, l.append_kv,
            reinterpret_cast<bf16*>(kv_ + l.k_cache_offset),
            reinterpret_cast<bf16*>(kv_ + l.v_cache_offset), kv_lens_ + l.kv_lens_offset,
            l.max_kv_len, ptr<bf16>(l.out), ptr(l.aux),
            static_cast<size_t>(size_of(l.aux.buf, l.aux.mb)), l.num_splits);
        MASEP_KERNEL_CHECK(kernels::launch_decode_attention(ap, st));
        return;
      }
      case LaunchKind::kMlaDown: {  // out = c_q, in2 = c_kv, aux = k_rope
        const char* w = weights_ + l.weight_offsets.at(0);
        const int64_t q = l.mla.q_cols, kl = l.mla.kl;
        gemm(w, ptr(l.in), ptr(l.out), l.m, q, l.k);
        gemm(w + q * l.k * 2, ptr(l.in), ptr(l.in2), l.m, kl, l.k);
        gemm(w + (q + kl) * l.k * 2, ptr(l.in), ptr(l.aux), l.m, l.mla.dr, l.k);
        return;
      }
      case LaunchKind::kMlaNorm: {  // in place: in = c_q (when ql > 0), in2 = c_kv
        if (l.mla.ql > 0) {
          MASEP_KERNEL_CHECK(kernels::launch_rmsnorm(
              ptr<bf16>(l.in), reinterpret_cast<const bf16*>(weights_ + l.weight_offsets.at(0)),
              ptr<bf16>(l.in), static_cast<int>(l.tokens), l.mla.ql, eps, st));
        }
        MASEP_KERNEL_CHECK(kernels::launch_rmsnorm(
            ptr<bf16>(l.in2), reinterpret_cast<const bf16*>(weights_ + l.weight_offsets.at(1)),
            ptr<bf16>(l.in2), static_cast<int>(l.tokens), l.mla.kl, eps, st));
        return;
      }
      case LaunchKind::kMlaAbsorb:
        detail::gemm_bf16_strided_batched(cublas_, weights_ + l.weight_offsets.at(0), l.n * l.k,
                                          ptr(l.in), l.in_ld, l.in_stride, ptr(l.out), l.out_ld,
                                          l.out_stride, l.m, l.n, l.k, l.heads);
        return;
      case LaunchKind::kMlaRope: {  // q_rope of every head in the query rows (in), k_rope (in2)
        kernels::RopeParams rp;
        rp.q = ptr<bf16>(l.in) + static_cast<int64_t>(l.heads) * l.mla.dn;
        rp.q_stride = l.cols;
        rp.k = ptr<bf16>(l.in2);
        rp.k_stride = l.mla.dr;
        rp.positions = kv_lens_ + l.kv_lens_offset;
        rp.tokens = static_cast<int>(l.tokens);
        rp.num_heads = l.heads;
        rp.num_kv_heads = 1;
        rp.head_dim = l.mla.dr;
        MASEP_KERNEL_CHECK(kernels::launch_rope(rp, st));
        return;
      }
      case LaunchKind::kMlaAttention: {
        const kernels::MlaAttentionParams mp = detail::mla_attention_params(
            ptr<bf16>(l.in), ptr<bf16>(l.in2), ptr<bf16>(l.in3), ptr<bf16>(l.in4), l.append_kv,
            reinterpret_cast<bf16*>(kv_ + l.k_cache_offset), kv_lens_ + l.kv_lens_offset,
            l.max_kv_len, ptr<bf16>(l.out), opt_ptr(l.aux),
            static_cast<size_t>(size_of(l.aux.buf, l.aux.mb)), l.batch, l.heads, l.mla.dn,
            l.mla.dr, l.num_splits);
        MASEP_KERNEL_CHECK(kernels::launch_mla_attention(mp, st));
        return;
      }
      case LaunchKind::kRouter: {
        kernels::RouterParams r;
        r.logits = ptr(l.in);
        r.logits_dtype = kernels::DType::kBF16;
        r.topk_ids = ptr<int32_t>(l.out);
        r.topk_weights = ptr<float>(l.aux);
        r.expert_counts = ptr<int32_t>(l.in2);
        r.tokens = static_cast<int>(l.tokens);
        r.num_experts = l.experts;
        r.k = l.top_k;
        MASEP_KERNEL_CHECK(kernels::launch_router_topk(r, st));
        if (l.real_gating) {
          // Real gating: the kernel's experts become permute slots, counted per slot.
          detail::map_route_to_slots(ptr<int32_t>(l.out), static_cast<int>(l.tokens * l.top_k),
                                     int_pool_ + l.route_offset, l.slots, ptr<int32_t>(l.in2), st);
          MASEP_CUDA_CHECK(cudaGetLastError());
        } else if (l.route_offset >= 0) {
          // Forced routing: the Program's experts (as permute slots) with the gate's weights.
          const int32_t* pool = int_pool_ + l.route_offset;
          const int64_t a = l.tokens * l.top_k;
          detail::apply_forced_route(ptr(l.in), static_cast<int>(l.tokens), l.experts, l.top_k,
                                     pool, pool + a, pool + 2 * a, l.slots, ptr<int32_t>(l.out),
                                     ptr<float>(l.aux), ptr<int32_t>(l.in2), st);
          MASEP_CUDA_CHECK(cudaGetLastError());
        }
        return;
      }
      case LaunchKind::kGatherRows:
        if (rp_.real_gating) {
          const LiveRoute& lr = live(l);
          if (lr.map.empty()) return;
          int32_t* map = ptr<int32_t>({Buf::kRealRowMap, l.out.mb, 0});
          MASEP_CUDA_CHECK(cudaMemcpyAsync(map, lr.map.data(), lr.map.size() * sizeof(int32_t),
                                           cudaMemcpyHostToDevice, st));
          detail::gather_rows_bf16(ptr(l.out), opt_ptr(l.in), opt_ptr(l.in2), map,
                                   static_cast<int64_t>(lr.map.size()), l.cols, st);
          MASEP_CUDA_CHECK(cudaGetLastError());
          return;
        }
        detail::gather_rows_bf16(ptr(l.out), opt_ptr(l.in), opt_ptr(l.in2),
                                 int_pool_ + l.map_offset, l.tokens, l.cols, st);
        MASEP_CUDA_CHECK(cudaGetLastError());
        return;
      case LaunchKind::kScatterRows:
        if (rp_.real_gating) {
          const LiveRoute& lr = live(l);
          if (lr.map.empty()) return;
          detail::scatter_rows_bf16(ptr(l.in), opt_ptr(l.out), opt_ptr(l.aux),
                                    ptr<int32_t>({Buf::kRealRowMap, l.in.mb, 0}),
                                    static_cast<int64_t>(lr.map.size()), l.cols, st);
          MASEP_CUDA_CHECK(cudaGetLastError());
          return;
        }
        detail::scatter_rows_bf16(ptr(l.in), opt_ptr(l.out), opt_ptr(l.aux),
                                  int_pool_ + l.map_offset, l.tokens, l.cols, st);
        MASEP_CUDA_CHECK(cudaGetLastError());
        return;
      case LaunchKind::kPermute: {
        const int mb = l.in.mb;
        kernels::PermuteParams pp;
        pp.x = ptr<bf16>(l.in);
        pp.topk_ids = ptr<int32_t>({Buf::kTopkIds, mb, 0});
        pp.expert_counts = ptr<int32_t>({Buf::kExpertCounts, mb, 0});
        pp.permuted_x = ptr<bf16>(l.out);
        pp.permuted_row = ptr<int32_t>({Buf::kPermutedRow, mb, 0});
        pp.source_token = ptr<int32_t>({Buf::kSourceToken, mb, 0});
        pp.expert_offsets = ptr<int32_t>({Buf::kExpertOffsets, mb, 0});
        pp.tokens = static_cast<int>(l.tokens);
        pp.hidden = static_cast<int>(l.cols);
        pp.num_experts = l.experts;
        pp.k = l.top_k;
        MASEP_KERNEL_CHECK(kernels::launch_permute(pp, st));
        return;
      }
      case LaunchKind::kCombine: {
        const int mb = l.in.mb;
        kernels::CombineParams cp;
        cp.expert_out = ptr<bf16>(l.in);
        cp.permuted_row = ptr<int32_t>({Buf::kPermutedRow, mb, 0});
        cp.topk_weights = ptr<float>({Buf::kTopkWeights, mb, 0});
        cp.residual = ptr<bf16>(l.aux);
        cp.out = ptr<bf16>(l.out);
        cp.tokens = static_cast<int>(l.tokens);
        cp.hidden = static_cast<int>(l.cols);
        cp.k = l.top_k;
        MASEP_KERNEL_CHECK(kernels::launch_combine(cp, st));
        return;
      }
      case LaunchKind::kSwiGlu:
      case LaunchKind::kGelu: {
        const int64_t rows = needs_route(l) ? static_cast<int64_t>(live(l).map.size()) : l.tokens;
        if (rows <= 0) return;
        if (l.kind == LaunchKind::kSwiGlu) {
          MASEP_KERNEL_CHECK(kernels::launch_swiglu(ptr<bf16>(l.in), ptr<bf16>(l.out), rows,
                                                    static_cast<int>(l.cols), st));
        } else {
          MASEP_KERNEL_CHECK(kernels::launch_gelu(ptr<bf16>(l.in), ptr<bf16>(l.out), rows,
                                                  static_cast<int>(l.cols), st));
        }
        return;
      }
      case LaunchKind::kCopy:
        if (l.bytes > 0) {
          MASEP_CUDA_CHECK(cudaMemcpyAsync(ptr(l.out), ptr(l.in), static_cast<size_t>(l.bytes),
                                           cudaMemcpyDeviceToDevice, st));
        }
        return;
      case LaunchKind::kP2p:
        if (routed_p2p(l)) {
          p2p_real(l, st);
          return;
        }
        MASEP_NCCL_CHECK(ncclGroupStart());
        for (const P2pPart& part : l.parts) {
          if (part.send) {
            MASEP_NCCL_CHECK(ncclSend(ptr(part.buf), static_cast<size_t>(part.bytes), ncclInt8,
                                      part.peer, world_, st));
          } else {
            MASEP_NCCL_CHECK(ncclRecv(ptr(part.buf), static_cast<size_t>(part.bytes), ncclInt8,
                                      part.peer, world_, st));
          }
        }
        MASEP_NCCL_CHECK(ncclGroupEnd());
        return;
      case LaunchKind::kAllReduce:
        MASEP_NCCL_CHECK(ncclAllReduce(ptr(l.in), ptr(l.out), static_cast<size_t>(l.count),
                                       ncclBfloat16, ncclSum, comm(l.group), st));
        return;
      case LaunchKind::kAllGather:
        MASEP_NCCL_CHECK(ncclAllGather(ptr(l.in), ptr(l.out), static_cast<size_t>(l.count),
                                       ncclBfloat16, comm(l.group), st));
        return;
      case LaunchKind::kReduceScatter:
        MASEP_NCCL_CHECK(ncclReduceScatter(ptr(l.in), ptr(l.out), static_cast<size_t>(l.count),
                                           ncclBfloat16, ncclSum, comm(l.group), st));
        return;
    }
  }

  ncclComm_t comm(int group) const {
    ncclComm_t c = comms_.at(static_cast<size_t>(group));
    if (c == nullptr) {
      throw std::logic_error(fmt::format("rank {}: no communicator for group {}", env_.rank,
                                         p_.groups[static_cast<size_t>(group)].name));
    }
    return c;
  }

  RankTimings collect(int64_t barrier_ns, int64_t ref_ns) {
    RankTimings t;
    t.rank = env_.rank;
    t.barrier_exit_host_ns = barrier_ns;
    t.ref_host_ns = ref_ns;
    std::map<OpId, size_t> index;
    for (size_t i = 0; i < rp_.op_ids.size(); ++i) index[rp_.op_ids[i]] = i;
    t.start_rel_ns.assign(rp_.op_ids.size(), -1);
    t.end_rel_ns.assign(rp_.op_ids.size(), -1);
    for (size_t i = 0; i < rp_.launches.size(); ++i) {
      float s_ms = 0, e_ms = 0;
      MASEP_CUDA_CHECK(cudaEventElapsedTime(&s_ms, ref_, starts_[i]));
      MASEP_CUDA_CHECK(cudaEventElapsedTime(&e_ms, ref_, ends_[i]));
      const int64_t s = std::llround(static_cast<double>(s_ms) * 1e6);
      const int64_t e = std::llround(static_cast<double>(e_ms) * 1e6);
      for (OpId id : rp_.launches[i].ops) {
        const size_t k = index.at(id);
        t.start_rel_ns[k] = s;
        t.end_rel_ns[k] = std::max(s, e);
      }
    }
    return t;
  }

  // Every rank sends its encoded timings to rank 0 over the world communicator.
  void gather(const RankTimings& mine, ExecResult& r) {
    const int n = env_.world;
    std::vector<size_t> sizes(static_cast<size_t>(n));
    size_t total = 0;
    for (int q = 0; q < n; ++q) {
      sizes[static_cast<size_t>(q)] = encoded_size(rank_ops(p_, q).size());
      total += sizes[static_cast<size_t>(q)];
    }
    const std::vector<int64_t> flat = encode(mine);
    cudaStream_t st = streams_[plan::kComm];
    int64_t* dev = static_cast<int64_t*>(alloc(std::max<size_t>(total, 1) * sizeof(int64_t)));
    if (env_.rank != 0) {
      MASEP_CUDA_CHECK(
          cudaMemcpy(dev, flat.data(), flat.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
      MASEP_NCCL_CHECK(ncclSend(dev, flat.size(), ncclInt64, 0, world_, st));
      MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
      return;
    }
    MASEP_NCCL_CHECK(ncclGroupStart());
    size_t off = sizes[0];
    for (int q = 1; q < n; ++q) {
      MASEP_NCCL_CHECK(
          ncclRecv(dev + off, sizes[static_cast<size_t>(q)], ncclInt64, q, world_, st));
      off += sizes[static_cast<size_t>(q)];
    }
    MASEP_NCCL_CHECK(ncclGroupEnd());
    MASEP_CUDA_CHECK(cudaStreamSynchronize(st));
    std::vector<int64_t> host(total);
    if (total > sizes[0]) {
      MASEP_CUDA_CHECK(cudaMemcpy(host.data() + sizes[0], dev + sizes[0],
                                  (total - sizes[0]) * sizeof(int64_t), cudaMemcpyDeviceToHost));
    }
    std::vector<RankTimings> all;
    all.push_back(mine);
    off = sizes[0];
    for (int q = 1; q < n; ++q) {
      std::vector<int64_t> part(
          host.begin() + static_cast<long>(off),
          host.begin() + static_cast<long>(off + sizes[static_cast<size_t>(q)]));
      all.push_back(decode(q, part, rank_ops(p_, q).size()));
      off += sizes[static_cast<size_t>(q)];
    }
    r.run = align(p_, all, device_name_);
    r.has_timeline = true;
    // Memory of every rank (recomputed on the CPU: the plans are deterministic).
    PlanOptions po;
    cudaDeviceProp prop{};
    MASEP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_));
    po.sm_count = prop.multiProcessorCount;
    po.peak_memory_GBps = kernels::decode_attention_peak_memory_GBps();
    po.real_gating = o_.real_gating;
    for (int q = 0; q < n; ++q) {
      r.memory.push_back(q == env_.rank ? rp_.memory() : build_rank_plan(p_, q, po).memory());
    }
  }

  void release() {
    if (released_) return;
    released_ = true;
    const bool ok = !std::uncaught_exceptions() && !interrupted_;
    // Communicators: destroyed after a clean run, aborted when unwinding from an error (a
    // peer may be stuck in a collective with us).
    for (ncclComm_t c : owned_) ok ? ncclCommDestroy(c) : ncclCommAbort(c);
    if (world_) ok ? ncclCommDestroy(world_) : ncclCommAbort(world_);
    owned_.clear();
    world_ = nullptr;
    for (auto e : starts_) cudaEventDestroy(e);
    for (auto e : ends_) cudaEventDestroy(e);
    for (auto e : deps_) {
      if (e) cudaEventDestroy(e);
    }
    deps_.clear();
    for (auto& g : graphs_) cudaGraphExecDestroy(g.second);
    graphs_.clear();
    if (ref_) cudaEventDestroy(ref_);
    if (cublas_) cublasDestroy(cublas_);
    for (void* p : allocations_) cudaFree(p);
    allocations_.clear();
    if (host_counts_) cudaFreeHost(host_counts_);
    host_counts_ = nullptr;
    for (auto s : streams_) {
      if (s) cudaStreamDestroy(s);
    }
  }

  const ExecOptions& o_;
  ProcessEnv env_;
  Compiled c_;
  const plan::Program& p_;
  int device_ = 0;
  std::string device_name_;
  RankPlan rp_;
  std::unique_ptr<Watchdog> watchdog_;
  ncclComm_t world_ = nullptr;
  RankChannel* ch_ = nullptr;
  bool resumed_ = false;  // runs the survivors' Program after a recovery
  bool interrupted_ = false;
  int64_t timed_start_ns_ = 0;
  int kill_step_ = -1;                    // injected kill of this rank's GPU
  int slow_first_ = 0, slow_last_ = -1;   // straggler window (steps)
  double slow_speed_ = 1;
  uint64_t* slow_slot_ = nullptr;         // the straggler's timer mark
  std::vector<ncclComm_t> comms_, owned_;
  cudaStream_t streams_[plan::kStreamCount] = {nullptr, nullptr};
  cublasHandle_t cublas_ = nullptr;
  std::vector<void*> allocations_;
  char* weights_ = nullptr;
  char* kv_ = nullptr;
  int32_t* kv_lens_ = nullptr;
  int32_t* int_pool_ = nullptr;
  std::array<std::vector<void*>, kBufCount> bufs_;
  std::array<std::vector<int64_t>, kBufCount> bufsize_;
  std::vector<cudaEvent_t> starts_, ends_;
  std::vector<cudaEvent_t> deps_;                          // --launch graph: in-step edges
  std::vector<std::pair<int, cudaGraphExec_t>> graphs_;  // --launch graph: (step, graph)
  cudaEvent_t ref_ = nullptr;
  float* barrier_buf_ = nullptr;
  void* gather_buf_ = nullptr;
  bool released_ = false;
  std::map<RKey, LiveRoute> live_;
  std::map<RKey, int> dispatch_at_;   // key → its dispatch launch (index in rp_.launches)
  std::map<RKey, char> has_moe_ops_;  // keys with a kGatherRows launch here
  int32_t* host_counts_ = nullptr;    // pinned [A + 1][slots]
};

}  // namespace

namespace {

ExecResult run_one(const ExecOptions& o, const ProcessEnv& env, Compiled c) {
  RankRunner runner(o, env, std::move(c));
  return runner.run();
}

double ms_between(int64_t a, int64_t b) { return static_cast<double>(b - a) / 1e6; }

// The recovery loop of a rank started by a supervising launcher (ExecOptions::recover): run;
// when the watchdog interrupts the run, report the first unfinished step, take the launcher's
// directive, build the new world communicator (ncclCommShrink of the revoked world, or a
// re-init with the launcher's new id), read the new Program and run it from the step that
// failed (its launches re-lowered, its data re-allocated and re-generated by RankRunner).
ExecResult run_with_recovery(const ExecOptions& o, ProcessEnv env, Compiled c) {
  std::optional<RankChannel> ch = RankChannel::from_env();
  if (!ch) {
    throw std::runtime_error(
        "recovery needs a rank started by `masep exec` on one host (the launcher's control "
        "pipes are missing); mpirun/srun runs stop on a failure");
  }
  ncclComm_t world = nullptr;
  std::vector<RankRecoveryTiming> recs;
  int64_t comm_done_ns = 0;
  for (;;) {
    auto runner = std::make_unique<RankRunner>(o, env, std::move(c), world, &*ch);
    world = nullptr;
    try {
      ExecResult r = runner->run();
      if (!recs.empty() && runner->timed_start_ns() > 0) {
        recs.back().restart_ms = ms_between(comm_done_ns, runner->timed_start_ns());
      }
      r.recoveries = recs;
      return r;
    } catch (const RankInterrupted& e) {
      RankRecoveryTiming t;
      t.reason = e.why.reason;
      t.failed = e.why.dead;
      t.interrupt_ms = ms_between(e.why.detect_ns, e.why.stopped_ns);
      const int64_t report_ns = now_ns();
      ch->report_interrupted(e.why.step);
      const Directive d = ch->await(o.timeout_s);
      t.directive_ms = ms_between(report_ns, now_ns());
      if (d.kind == Directive::kLeave) {
        std::fprintf(stderr, "masep exec: rank %d leaves the run (not in the new plan)\n",
                     env.rank);
        ExecResult r;
        r.left = true;
        r.rank = env.rank;
        return r;  // the runner aborts its communicators
      }
      c = runner->take_compiled();
      ncclComm_t old = runner->take_world();
      runner.reset();  // frees its memory, streams, handles; aborts the split communicators
      const int64_t c0 = now_ns();
      if (old != nullptr) {
        // Revoked: wait until it is quiescent before managing it.
        ncclResult_t st = ncclInProgress;
        for (int i = 0; i < 2000 && st == ncclInProgress; ++i) {
          if (ncclCommGetAsyncError(old, &st) != ncclSuccess) break;
          if (st == ncclInProgress) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 27, 0)
      if (d.shrink && old != nullptr) {
        std::vector<int> excl = d.exclude;
        MASEP_NCCL_CHECK(ncclCommShrink(old, excl.data(), static_cast<int>(excl.size()), &world,
                                        nullptr, NCCL_SHRINK_ABORT));
      }
#endif
      if (old != nullptr) ncclCommAbort(old);
      if (world == nullptr) {
        if (d.nccl_id_hex.empty()) {
          throw std::runtime_error(
              "the launcher asked for a communicator shrink, which this NCCL cannot do");
        }
        ncclUniqueId id{};
        hex_decode(d.nccl_id_hex, &id, sizeof id);
        MASEP_NCCL_CHECK(ncclCommInitRank(&world, d.new_world, id, d.new_rank));
      }
      comm_done_ns = now_ns();
      t.comm_ms = ms_between(c0, comm_done_ns);
      t.shrink = d.shrink;
      t.resume_step = d.resume_step;
      recs.push_back(t);
      std::fprintf(stderr,
                   "masep exec: rank %d -> rank %d of %d: communicator %s in %.1f ms; resuming at "
                   "step %d\n",
                   env.rank, d.new_rank, d.new_world, d.shrink ? "shrunk" : "re-initialised",
                   t.comm_ms, d.resume_step);
      env.rank = d.new_rank;
      env.world = d.new_world;
      c.program = plan::read_program_json_file(d.program_path);
      if (c.program.rank_count() != env.world || c.program.first_step != d.resume_step) {
        throw std::runtime_error(fmt::format(
            "{}: the recovery Program has {} ranks from step {}, the directive says {} from {}",
            d.program_path, c.program.rank_count(), c.program.first_step, env.world,
            d.resume_step));
      }
    }
  }
}

// Rank 0 of --verify: the same model on this GPU alone (a one-rank world), then the compare.
VerifyResult verify_against_reference(const ExecOptions& o, const ProcessEnv& env,
                                      const ExecResult& dist) {
  VerifyResult v;
  v.ran = true;
  v.tolerance = o.verify_tolerance;
  const plan::Program& p = dist.compiled.program;
  v.tokens = p.layout.batch;
  v.hidden = p.model.hidden;
  Compiled ref;
  ref.program = dist.compiled.reference;
  if (ref.program.rank_count() != 1) {
    throw std::runtime_error(
        "--verify needs the scenario's single-GPU reference Program (one rank)");
  }
  const RankPlan rp0 = build_rank_plan(ref.program, 0);
  if (!rp0.verify_blocker.empty())
    throw std::runtime_error("--verify reference: " + rp0.verify_blocker);
  ProcessEnv one = env;
  one.mode = LaunchMode::kChild;
  one.rank = 0;
  one.world = 1;
  ncclUniqueId id{};
  MASEP_NCCL_CHECK(ncclGetUniqueId(&id));
  one.nccl_id_hex = hex_encode(&id, sizeof id);
  ExecOptions ro = o;
  const ExecResult r = run_one(ro, one, std::move(ref));
  v.rel_err = relative_error_bf16(dist.hidden_out, r.hidden_out);
  for (size_t i = 0; i < r.hidden_out.size(); ++i) {
    auto f = [](uint16_t b) {
      const uint32_t u = static_cast<uint32_t>(b) << 16;
      float x;
      std::memcpy(&x, &u, sizeof x);
      return static_cast<double>(x);
    };
    v.max_abs_err = std::max(v.max_abs_err, std::fabs(f(dist.hidden_out[i]) - f(r.hidden_out[i])));
  }
  v.pass = v.rel_err <= o.verify_tolerance;
  v.note = fmt::format("reference: {} on one GPU ({} ops)", "co-located, tensor parallel 1",
                       r.compiled.program.ops.size());
  return v;
}

}  // namespace

ExecResult run_rank(const ExecOptions& o, const ProcessEnv& env, Compiled c) {
  setenv("NCCL_NVLS_ENABLE", "0", 1);
  if (env.mode == LaunchMode::kMpi || env.mode == LaunchMode::kSlurm) {
    detail::mpi_init_if_needed(env);
  }
  if (c.program.rank_count() != env.world) {
    throw std::runtime_error(fmt::format("the Program has {} ranks but {} processes run it",
                                         c.program.rank_count(), env.world));
  }
  if (o.verify) {
    const RankPlan rp = build_rank_plan(c.program, env.rank);
    if (!rp.verify_blocker.empty()) {
      throw std::runtime_error("--verify cannot check this plan: " + rp.verify_blocker);
    }
  }
  ExecResult r = o.recover ? run_with_recovery(o, env, std::move(c)) : run_one(o, env, std::move(c));
  if (r.left) return r;
  // r.rank: this process's rank in the last world (a recovery renumbers the survivors).
  if (o.verify && r.rank == 0) r.verify = verify_against_reference(o, env, r);
  if (env.mode == LaunchMode::kMpi || env.mode == LaunchMode::kSlurm) detail::mpi_finalize();
  return r;
}

}  // namespace masep::exec
