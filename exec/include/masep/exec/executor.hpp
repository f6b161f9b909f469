// The executor: runs a Program on real GPUs, one process per plan rank, and measures every
// op with CUDA events, so its Timeline (and trace, and metrics) joins the simulator's op by op.
// It takes the Program it is given and nothing else: the compiler (plan/, called by the
// `masep exec` command in tools/) decides everything, once, and every rank runs that same
// Program, lowered on the CPU by build_rank_plan (launch_plan.hpp). No function here takes a
// Scenario.
//
//   masep exec SCENARIO            on one host: the command compiles the Program, writes it
//                                  to a private temporary file and launch_local() starts one
//                                  child process per plan rank (fork + exec of
//                                  /proc/self/exe, rank, world, NCCL id and the Program's
//                                  path in the environment) and supervises them; each child
//                                  reads the Program and calls run_rank().
//   mpirun -np N masep exec ...    rank 0 compiles, broadcast_text() hands the serialized
//   srun -n N masep exec ...       Program to every process (MPI_Bcast, as the NCCL id; needs
//                                  a build with MPI), each calls run_rank().
//
// Every process masep starts, and every rank before NCCL initialises, has
// NCCL_NVLS_ENABLE=0 (NVLink multicast off; see /work/shared/GPU.md).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "masep/exec/clock.hpp"
#include "masep/exec/launch_plan.hpp"
#include "masep/exec/process_env.hpp"
#include "masep/exec/supervisor.hpp"
#include "masep/plan/program.hpp"
#include "masep/plan/rank_recovery.hpp"

namespace masep::exec {

/// How the executor issues an expert projection (a kGroupedGemm launch: one GEMM per local
/// expert with rows). kAuto: one grouped decode-GEMM launch for all experts
/// (kernels/grouped_gemm.hpp) where every expert has few rows (grouped_gemm_preferred), else
/// one cuBLAS GEMM per expert; kGrouped / kCublas force one way (A/B measurements).
enum class ExpertGemm { kAuto, kGrouped, kCublas };

struct ExecOptions {
  int warmup = 2;                  ///< untimed runs of the first step before timing
  double timeout_s = 120;          ///< no progress for this long = stall → abort, exit
  bool verify = false;             ///< --verify: one step, outputs vs a one-GPU reference
  double verify_tolerance = 2e-2;  ///< --verify bound on ‖out − ref‖ / ‖ref‖
  /// --routing real: the router kernel's top-k decides each token's experts; per (layer,
  /// micro-batch) the ranks exchange slot counts and read them on the host (one host round
  /// trip per layer and micro-batch) before the dispatch, expert GEMMs and return take their
  /// real sizes. false (--routing forced, the default): the Program's sampled routing.
  bool real_gating = false;
  ExpertGemm expert_gemm = ExpertGemm::kAuto;  ///< --expert-gemm auto|grouped|cublas
  /// --launch graph: each decode step's launches (kernels, cuBLAS, NCCL, the per-op timing
  /// events) are captured into one CUDA graph per step after the warm-up, untimed, and the
  /// timed run replays them: one cudaGraphLaunch per step instead of hundreds of launches.
  /// Not with --routing real (its host round trips). false: eager launches.
  bool graphs = false;
  /// Injected faults (issue 18, `faults:` / --fault), by topology GPU, so that a rank finds
  /// its own in whichever plan it runs after a recovery. kKill: the rank whose GPU it is
  /// SIGKILLs itself when the timed run reaches the step (kill_hangs: it stops issuing
  /// instead, and its peers' watchdogs find the stall after --timeout). kStraggler: each of
  /// its compute launches of steps [step, last_step] is stretched to 1/speed of its time (a
  /// timer kernel before, a spin kernel after, inside the op's timed interval).
  std::vector<plan::ExecFault> faults;
  bool kill_hangs = false;
  /// Survive failures: a rank started by a launcher that supervises with recovery
  /// (launch_local with on_failure) does not exit when a peer dies or stalls: it stops its
  /// NCCL work (ncclCommRevoke of the world where NCCL has it, ncclCommAbort of the others),
  /// reports the first step it had not finished, and takes the launcher's directive: shrink
  /// the world (ncclCommShrink) or re-initialise it with a new id, read the new Program,
  /// re-lower its launches, re-allocate and re-generate its data, and run from the step that
  /// failed. A rank left out of the new plan returns with `left` set.
  bool recover = false;
};

/// One recovery as a surviving rank saw it (times in ms on its host clock).
struct RankRecoveryTiming {
  std::vector<int> failed;  ///< ranks (numbering before the recovery) the launcher reported
  int resume_step = 0;
  bool shrink = false;      ///< ncclCommShrink; else re-init with a new id
  std::string reason;       ///< what the watchdog saw ("launcher: ranks 3 died", a stall, ...)
  double interrupt_ms = 0;  ///< detection -> the rank's NCCL work stopped
  double directive_ms = 0;  ///< report -> the launcher's directive
  double comm_ms = 0;       ///< shrink or re-init of the world communicator
  double restart_ms = 0;    ///< the rest until the resumed run's timed part (re-lowering,
                            ///< allocation, data, split communicators, warm-up)
};

/// What the executor runs (owned values). `program` is compiled with the per-token routing
/// recorded (CompileOptions::record_token_routing: the real data flow); for --verify it has
/// one decode step with routing sampled per sequence, and `reference` is the same scenario's
/// single-GPU Program (co-located, tensor parallel 1, one micro-batch; compiled the same way),
/// so that both route each token to the same experts and hold the same weights and caches.
struct Compiled {
  plan::Program program;
  plan::Program reference;  ///< --verify only; empty (no ranks) otherwise
};

/// MPI runs: rank 0's `text` (e.g. the serialized Program) to every process; returns it on
/// every rank. Initialises MPI if needed. Throws std::runtime_error in a build without MPI.
std::string broadcast_text(const ProcessEnv& env, const std::string& text);

/// ‖out − ref‖₂ / ‖ref‖₂ over bf16 bit patterns (NaN anywhere gives +inf).
double relative_error_bf16(const std::vector<uint16_t>& out, const std::vector<uint16_t>& ref);

/// Result of --verify (rank 0).
struct VerifyResult {
  bool ran = false;
  bool pass = false;
  double rel_err = 0;  ///< ‖out − ref‖ / ‖ref‖
  double max_abs_err = 0;
  double tolerance = 0;
  int64_t tokens = 0, hidden = 0;
  std::string note;
};

/// What one rank measured; the timeline is filled on rank 0 only.
struct ExecResult {
  Compiled compiled;
  int rank = 0;
  bool has_timeline = false;
  AlignedRun run;                  ///< rank 0: the measured Timeline of all ranks
  std::string device;              ///< cudaGetDeviceProperties name of rank 0's GPU
  std::string versions;            ///< runtime_versions()
  std::vector<RankMemory> memory;  ///< rank 0: what each rank allocated
  int64_t init_ms = 0;             ///< NCCL init, allocation and data generation (rank 0)
  /// rank 0: each rank's measured device copy bandwidth (bytes read + written per second / 1e9,
  /// a 512 MiB cudaMemcpyAsync D2D timed with events after warm-up).
  std::vector<double> copy_GBps;
  /// rank 0 with --verify: the final hidden states of the step, [batch, hidden] bf16 bits in
  /// global sequence order, and the comparison with the single-GPU reference.
  std::vector<uint16_t> hidden_out;
  VerifyResult verify;
  /// How the timed run issued its launches: "eager", or "CUDA graphs (N, captured in X ms)".
  std::string launch_mode = "eager";
  /// Recoveries this rank went through (issue 18), in order; `left`: a recovery left it out
  /// of the new plan (no result).
  std::vector<RankRecoveryTiming> recoveries;
  bool left = false;
};

/// The decode step against its critical-path roofline: per rank, the HBM bytes of one step
/// over its measured copy bandwidth plus its transfers (max of bytes sent and received per
/// step) over the topology's intra-node link bandwidth; the step floor is the largest rank
/// floor, and roofline_fraction = floor / measured TPOT (1 = at the roofline).
struct Roofline {
  std::vector<double> rank_hbm_ns, rank_comm_ns, rank_floor_ns;
  double step_floor_ns = 0;
  int critical_rank = -1;
  double fraction = 0;
};
/// The link rate is the Program's ProgramLayout::intra_node_GBps.
Roofline compute_roofline(const plan::Program& p, const std::vector<double>& copy_GBps,
                          double tpot_ms);

/// Runs this process's rank (env.mode kChild, kMpi or kSlurm): NCCL communicators, buffers,
/// warm-up, one timed run of the whole Program, gathering the timings on rank 0. Throws
/// GpuError, plan::InfeasiblePlan (memory), std::runtime_error. A stall or NCCL async error
/// is handled by a watchdog thread that aborts the communicators and ends the process with
/// exit code 4 after printing which rank and op it was waiting on.
ExecResult run_rank(const ExecOptions& o, const ProcessEnv& env, Compiled c);

/// Starts one child per plan rank (`ranks` of them) on this host running `/proc/self/exe`
/// with `child_argv` (e.g. {"exec", "scenario.yaml", "--steps", "4"}) and `child_env` added to
/// its environment (the command passes the Program's path there), and supervises them
/// (supervisor.hpp): without `on_failure`, when a child exits non-zero or dies, the others
/// get SIGTERM, then SIGKILL after a grace period; with it, the survivors are told, report
/// where they stopped, and get the new world `on_failure` decides (new NCCL ids from
/// ncclGetUniqueId). Returns 0 when every rank (of the last world) succeeded, otherwise
/// non-zero after printing which rank failed and how. Throws std::runtime_error when the host
/// has fewer GPUs than ranks.
int launch_local(int ranks, const std::vector<std::string>& child_argv,
                 const std::vector<std::pair<std::string, std::string>>& child_env,
                 const std::function<WorldChange(const std::vector<int>&, int)>& on_failure = {},
                 double report_timeout_s = 30);

/// Whether this build can join an MPI job (MASEP_HAVE_MPI).
bool built_with_mpi();

}  // namespace masep::exec
