// masep exec SCENARIO: run the scenario's Program on this host's GPUs (one process per plan
// rank), print the measured metrics table (or --json) and write the trace.
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <fmt/ranges.h>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/exec/executor.hpp"
#include "masep/exec/launch_plan.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/json_text.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/metrics.hpp"
#include "masep/plan/program_json.hpp"
#include "masep/plan/rank_recovery.hpp"
#include "masep/plan/trace.hpp"
#include "sim_run.hpp"
#include "table.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

constexpr const char* kUsage = R"(usage: masep exec SCENARIO [options]
       masep exec [SCENARIO] --program PROGRAM.json [options]

Runs a scenario's Program on real GPUs: one process per plan rank, NCCL between them, every
op timed with CUDA events, and prints the same metrics as `masep sim` (plan/src/metrics.cpp).
The trace (--trace) has the simulator's format and op ids, so the two join op by op.

The Program is compiled once, here, and every rank runs that same Program (the simulator
runs the same one for the same scenario and --set's). --program runs a Program dumped with
`masep plan SCENARIO --dump FILE` instead; the dump carries what the metrics need of its
scenario (GPU datasheet, GPUs per node, memory per rank), so SCENARIO may be left out. Given,
it must be the scenario the Program was compiled from (checked), and it supplies those
figures to a dump written before they were kept. A dump without per-token routing runs with
a plain copy on the MoE side (timing only, no --verify).

On one host `masep exec` starts the rank processes itself (it needs one GPU per plan rank)
and hands them the Program through a private temporary file. Under `mpirun -np N` or
`srun -n N` each process runs one rank: rank 0 compiles and MPI_Bcast gives the Program (and
the NCCL id) to the others (needs a build with MPI).

Routing (--routing): `forced` (default): every token goes to the experts the Program sampled
for it (the simulator's loads exactly), with the gate's weights; rows travel to their experts
and back (real data flow when the model has no shared experts), so the timings are comparable
op by op. `real`: the router kernel's own top-k decides; per layer and micro-batch the ranks
exchange slot counts and read them on the host (a host round trip each) before the dispatch,
expert GEMMs and return run with the real sizes. Same op ids; the trace's bytes and shapes
stay the Program's. --verify runs one decode step and compares the final hidden states with the same model
run on one GPU (rank 0's) within a bf16 bound; it prints PASS or FAIL (exit 1).

Roofline: each rank measures its device copy bandwidth at start-up (512 MiB D2D copy,
bytes read + written); the step floor is max over ranks of (HBM bytes per step / copy
bandwidth + max(bytes sent, received) per step / the topology's link bandwidth), and the
table shows floor / TPOT.

Failure: a rank that dies stops the others (SIGTERM, then SIGKILL); a rank that stalls for
--timeout seconds, or gets an NCCL error, aborts its communicators and exits non-zero naming
the op it waited on. Test hooks: MASEP_EXEC_FAULT_RANK=R (rank R kills itself at step
MASEP_EXEC_FAULT_STEP, default 1; MASEP_EXEC_FAULT_MODE=hang: it stops issuing instead).

Faults (docs/fault-tolerance.md): the scenario's `faults:` or --fault (as `masep sim` takes
it) of kind gpu (the rank on that GPU SIGKILLs itself when the timed run reaches the step)
or straggler (its compute launches of those steps take 1/speed as long). With a gpu fault
(or --recover) the run survives failures on one host: the launcher sees the child die and
tells the survivors, they stop their NCCL work and report the first step they had not
finished, the launcher re-maps the plan (plan::recover_ranks: attention to the surviving
replicas, experts to their copies or re-loaded) and the survivors shrink their world
communicator (or re-initialise it, --no-shrink), re-lower their launches and run the new
Program from that step. A plan whose redundancy cannot cover a fault is refused before the
run, saying what would be lost.

options)";

std::string gib(int64_t b) { return fmt::format("{:.2f}", b / double(1LL << 30)); }

void print_table(const exec::ExecResult& r, const plan::RunMetrics& m, bool quiet) {
  const auto& p = r.compiled.program;
  if (!quiet) {
    std::printf("scenario  %s (%s)\n", p.scenario.c_str(), p.target.origin.c_str());
    std::printf("plan      %s, %d GPUs, %d micro-batch(es); batch %lld, %d decode steps timed\n",
                p.target.plan_kind.c_str(), p.rank_count(), p.micro_batches,
                static_cast<long long>(p.layout.batch), p.steps);
    std::printf("device    %s; %s\n", r.device.c_str(), r.versions.c_str());
    std::printf("measured  %d ops; init %lld ms; clock alignment: barrier exit spread %.1f µs\n",
                static_cast<int>(p.ops.size()), static_cast<long long>(r.init_ms),
                r.run.barrier_spread_ns / 1e3);
    std::printf("\n");
  }
  print_metrics_summary(m, !p.layout.separated);
  std::printf("launches          %s\n", r.launch_mode.c_str());
  if (quiet) return;
  std::printf("\nper GPU (step = one decode step: HBM bytes and FLOPs / steps)\n");
  Table t;
  t.column("rank");
  t.column("gpu");
  t.column("role / label", Table::kLeft);
  t.column("util %");
  t.column("busy ms");
  t.column("exposed ms");
  t.column("alloc GiB");
  t.column("step HBM GB");
  t.column("floor µs");
  t.column("step/floor");
  for (const auto& rk : m.ranks) {
    const auto i = static_cast<size_t>(rk.rank);
    t.row({std::to_string(rk.rank), std::to_string(p.ranks[i].gpu), rk.label,
           fmt::format("{:.1f}", 100 * rk.utilisation),
           fmt::format("{:.3f}", rk.compute_busy_ns / 1e6),
           fmt::format("{:.3f}", rk.exposed_comm_ns / 1e6),
           i < r.memory.size() ? gib(r.memory[i].total()) : "-",
           fmt::format("{:.3f}", rk.step_hbm_bytes / 1e9),
           fmt::format("{:.1f}", rk.roofline_floor_ns / 1e3),
           rk.roofline_floor_ns > 0
               ? fmt::format("{:.2f}x", m.tpot_mean_ms * 1e6 / rk.roofline_floor_ns)
               : "-"});
  }
  t.print(stdout, 0);
}

// The single-GPU reference of --verify: the same scenario on one GPU (co-located, tensor
// parallel 1, one micro-batch), i.e. the same model, weights, KV caches and inputs.
plan::Scenario reference_scenario(const plan::Scenario& s) {
  plan::Scenario r = s;
  r.plan.kind = plan::PlanKind::kColocated;
  r.plan.colocated.gpus = 1;
  r.plan.colocated.tensor_parallel = 1;
  r.plan.colocated.expert_replicas = 1;
  r.plan.colocated.expert_tensor_parallel = 1;
  r.plan.colocated.placement = plan::Placement::kRoundRobin;
  r.plan.balance = plan::BalanceSpec{};  // one GPU holds every expert: nothing to balance
  r.plan.micro_batches = 1;
  r.plan.gpu_ranks.clear();
  r.name = s.name + " (single-GPU reference)";
  return r;
}

// The executor's Programs, compiled once: the per-token routing recorded (the real data flow);
// with --verify one decode step, routing sampled per sequence, and the reference Program.
exec::Compiled compile_for_exec(const plan::Scenario& s, bool verify) {
  check_fits_in_memory(s);  // host memory, before compiling (only where a compile happens)
  exec::Compiled c;
  plan::CompileOptions co;
  co.record_token_routing = true;
  co.per_sequence_routing = verify;
  c.program = plan::compile(s, co);
  if (verify) {
    co.steps = 1;
    c.reference = plan::compile(reference_scenario(s), co);
  }
  return c;
}

// --straggler gpu=G,speed=X[,step=S][,steps=N]: a straggler fault for the executor in any plan
// (the scenario's `faults:` take MA-separation plans only). Throws std::invalid_argument.
plan::ExecFault parse_straggler(const std::string& text, const plan::Program& p) {
  plan::ExecFault f;
  f.kind = plan::ExecFault::kStraggler;
  f.gpu = -1;
  f.step = p.first_step;
  f.speed = 0;
  int steps = 0;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    const auto eq = item.find('=');
    const std::string key = item.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
    if (key != "gpu" && key != "speed" && key != "step" && key != "steps") {
      throw std::invalid_argument("unknown key '" + key + "' (gpu, speed, step, steps)");
    }
    size_t used = 0;
    try {
      if (key == "gpu") {
        f.gpu = std::stoi(value, &used);
      } else if (key == "speed") {
        f.speed = std::stod(value, &used);
      } else if (key == "step") {
        f.step = std::stoi(value, &used);
      } else {
        steps = std::stoi(value, &used);
      }
    } catch (const std::logic_error&) {
      used = 0;
    }
    if (used == 0 || used != value.size()) {
      throw std::invalid_argument("'" + item + "' is not KEY=NUMBER (gpu, speed, step, steps)");
    }
  }
  bool used_gpu = false;
  for (const auto& r : p.ranks) used_gpu = used_gpu || r.gpu == f.gpu;
  if (!used_gpu) throw std::invalid_argument(fmt::format("GPU {} is not used by the plan", f.gpu));
  if (!(f.speed > 0 && f.speed < 1)) {
    throw std::invalid_argument(fmt::format("speed {} is not in (0, 1)", f.speed));
  }
  if (f.step < p.first_step || f.step >= p.first_step + p.steps || steps < 0) {
    throw std::invalid_argument(fmt::format("step {} (steps {}) is outside the run's steps {}..{}",
                                            f.step, steps, p.first_step,
                                            p.first_step + p.steps - 1));
  }
  f.last_step = steps > 0 ? f.step + steps - 1 : -1;
  return f;
}

// A Program read from a file belongs to `s` (same name, ranks and batch).
void check_program_matches(const plan::Program& p, const plan::Scenario& s,
                           const std::string& path) {
  if (p.scenario != s.name || p.layout.batch != s.workload.batch) {
    throw std::invalid_argument(fmt::format(
        "{}: the Program was compiled from scenario '{}' (batch {}), not from '{}' (batch {}): "
        "give the SCENARIO it was compiled from",
        path, p.scenario, p.layout.batch, s.name, s.workload.batch));
  }
}

// A Program dumped by `masep plan --dump`: checked against the scenario when one is given;
// a dump without the target section (written before it existed) takes it from the scenario.
plan::Program read_dumped_program(const std::string& path,
                                  const std::optional<plan::Scenario>& scenario) {
  plan::Program p = plan::read_program_json_file(path);
  if (scenario) check_program_matches(p, *scenario, path);
  if (!p.target.known) {
    if (!scenario) {
      throw std::invalid_argument(fmt::format(
          "{}: the Program has no \"target\" section (GPU datasheet and memory per rank for the "
          "metrics): give the SCENARIO it was compiled from, or dump it again with this masep",
          path));
    }
    p.target = plan::plan_target(*scenario);
  }
  return p;
}

// --dry-run: the launch plans on the CPU, no GPU needed.
int dry_run(const exec::ExecOptions& o, const plan::Program& p, int dump_rank) {
  std::printf("scenario %s: %d ranks, %d ops, %d steps, %d layers, %d micro-batch(es)\n",
              p.scenario.c_str(), p.rank_count(), static_cast<int>(p.ops.size()), p.steps, p.layers,
              p.micro_batches);
  Table t;
  t.column("rank");
  t.column("role / label", Table::kLeft);
  t.column("launches");
  t.column("generic");
  t.column("weights GiB");
  t.column("KV GiB");
  t.column("act GiB");
  t.column("comm GiB");
  t.column("total GiB");
  for (int r = 0; r < p.rank_count(); ++r) {
    exec::PlanOptions po;
    po.real_gating = o.real_gating;
    const exec::RankPlan rp = exec::build_rank_plan(p, r, po);
    const exec::RankMemory m = rp.memory();
    t.row({std::to_string(r), p.ranks[static_cast<size_t>(r)].label,
           std::to_string(rp.launches.size()), std::to_string(rp.generic_copies), gib(m.weights),
           gib(m.kv_cache), gib(m.activations + m.workspace), gib(m.comm_buffers), gib(m.total())});
    if (r == dump_rank) std::printf("%s", exec::describe(rp, p).c_str());
  }
  t.print(stdout, 0);
  return 0;
}

}  // namespace

// Environment of the rank processes launch_local() starts: the Program (and the --verify
// reference) the launcher compiled, as files in a private temporary folder.
constexpr const char* kProgramEnv = "MASEP_EXEC_PROGRAM";
constexpr const char* kReferenceEnv = "MASEP_EXEC_REFERENCE";

// A private temporary folder (mode 0700) that is removed with everything in it at the end of
// the scope.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/masep-exec-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("cannot create a temporary folder from " + tmpl + ": " +
                               std::strerror(errno));
    }
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

int cmd_exec(const Args& args) {
  exec::ExecOptions o;
  std::string scenario_name, program_path, trace_path;
  std::vector<std::string> overrides;
  int steps = 0, dump_rank = -1;
  std::string routing, expert_gemm, launch_mode;
  std::vector<std::string> faults;
  std::string straggler;
  double report_timeout = 30;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")(
      "set", po::value(&overrides)->composing(),
      "override a scenario field, KEY=VALUE (repeatable)")(
      "steps", po::value(&steps), "decode steps to time (= --set workload.decode_steps=N)")(
      "program", po::value(&program_path),
      "run this Program (JSON from `masep plan --dump`) instead of compiling SCENARIO")(
      "warmup", po::value(&o.warmup)->default_value(2),
      "untimed runs before timing (the first issues every launch, later ones the first step)")(
      "timeout", po::value(&o.timeout_s)->default_value(120.0),
      "seconds without progress after which a rank aborts (stall or dead peer)")(
      "trace", po::value(&trace_path), "write the measured Chrome/Perfetto trace to FILE")(
      "json", "print all metrics as JSON on stdout (no table)")(
      "routing", po::value(&routing)->default_value("forced"),
      "forced: the Program's sampled routing; real: the router kernel's top-k (sizes exchanged "
      "per layer at run time)")(
      "launch", po::value(&launch_mode)->default_value("eager"),
      "eager: every launch issued from the host; graph: each step captured into a CUDA graph "
      "after the warm-up (untimed) and replayed in the timed run (needs --routing forced)")(
      "expert-gemm", po::value(&expert_gemm)->default_value("auto"),
      "expert projections: auto (one grouped decode-GEMM launch for all local experts where "
      "each has <= 64 rows (experts <= 64 MiB) or <= 2 rows (larger), else one cuBLAS GEMM per "
      "expert), grouped, cublas")(
      "verify", "one step; compare the output hidden states with a single-GPU reference")(
      "tolerance", po::value(&o.verify_tolerance)->default_value(2e-2),
      "--verify bound on |out - ref| / |ref|")(
      "dry-run", "build every rank's launch plan on the CPU and print memory; no GPU")(
      "dump-launches", po::value(&dump_rank), "with --dry-run: print rank R's launches")(
      "quiet,q", "print only the summary lines")(
      "fault", po::value(&faults)->composing(),
      "inject a fault, KEY=VALUE,... as masep sim takes it (kind=gpu,gpu=G,step=S: the rank on "
      "GPU G dies at step S; kind=straggler,gpu=G,step=S[,steps=N],speed=X)")(
      "straggler", po::value(&straggler),
      "slow one GPU in any plan (co-located too): gpu=G,speed=X[,step=S][,steps=N] (its "
      "compute launches of those steps take 1/X as long; default from the first step on)")(
      "fault-hang", "an injected gpu fault stops its rank issuing instead of killing it (the "
      "peers' watchdogs find the stall after --timeout)")(
      "recover", "survive rank failures (implied by a gpu fault): re-map, shrink, resume")(
      "no-shrink", "recover by re-initialising the communicators with a new id, not "
      "ncclCommShrink")(
      "report-timeout", po::value(&report_timeout)->default_value(30.0),
      "seconds the launcher waits for the survivors to report a failure before killing the "
      "silent ones");
  po::options_description hidden;
  hidden.add_options()("scenario", po::value(&scenario_name));
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (auto rc = parse_command_line("exec", args, opts, vm, &hidden, &pos)) return *rc;
  if (scenario_name.empty() && program_path.empty()) {
    std::fprintf(
        stderr, "masep exec: a SCENARIO (or --program FILE) is required (see masep exec --help)\n");
    return 2;
  }
  if (scenario_name.empty() && !overrides.empty()) {
    std::fprintf(stderr, "masep exec: --set changes a SCENARIO; none was given\n");
    return 2;
  }
  if (vm.count("steps")) {
    if (steps <= 0) {
      std::fprintf(stderr, "masep exec: --steps must be positive\n");
      return 2;
    }
    overrides.push_back(fmt::format("workload.decode_steps={}", steps));
  }
  if (o.warmup < 0 || o.timeout_s <= 0) {
    std::fprintf(stderr, "masep exec: --warmup must be >= 0 and --timeout positive\n");
    return 2;
  }
  o.verify = vm.count("verify") > 0;
  if (routing != "forced" && routing != "real") {
    std::fprintf(stderr, "masep exec: --routing must be forced or real (got '%s')\n",
                 routing.c_str());
    return 2;
  }
  o.real_gating = routing == "real";
  if (launch_mode != "eager" && launch_mode != "graph") {
    std::fprintf(stderr, "masep exec: --launch must be eager or graph (got '%s')\n",
                 launch_mode.c_str());
    return 2;
  }
  o.graphs = launch_mode == "graph";
  if (o.graphs && o.real_gating) {
    std::fprintf(stderr,
                 "masep exec: --launch graph needs --routing forced (real gating reads the "
                 "routed sizes on the host every layer)\n");
    return 2;
  }
  if (expert_gemm == "auto") {
    o.expert_gemm = exec::ExpertGemm::kAuto;
  } else if (expert_gemm == "grouped") {
    o.expert_gemm = exec::ExpertGemm::kGrouped;
  } else if (expert_gemm == "cublas") {
    o.expert_gemm = exec::ExpertGemm::kCublas;
  } else {
    std::fprintf(stderr, "masep exec: --expert-gemm must be auto, grouped or cublas (got '%s')\n",
                 expert_gemm.c_str());
    return 2;
  }
  if (!program_path.empty() && (o.verify || vm.count("steps"))) {
    std::fprintf(stderr,
                 "masep exec: --program runs the Program as dumped; --verify and --steps need a "
                 "compile (drop --program)\n");
    return 2;
  }
  if (o.verify) overrides.push_back("workload.decode_steps=1");
  if (!faults.empty() && scenario_name.empty()) {
    std::fprintf(stderr, "masep exec: --fault adds to a SCENARIO's faults; none was given\n");
    return 2;
  }
  for (const auto& f : faults) overrides.push_back(fault_override(f));

  // The scenario (metrics, names) and the Program(s): compiled here once, read from
  // --program, or, in a rank process this command started, read from the launcher's files.
  const exec::ProcessEnv env = exec::detect_process_env();
  std::optional<plan::Scenario> scenario;
  if (!scenario_name.empty()) scenario = plan::load_scenario(scenario_name, overrides);
  exec::Compiled c;
  const char* child_program = std::getenv(kProgramEnv);
  const bool mpi = env.mode == exec::LaunchMode::kMpi || env.mode == exec::LaunchMode::kSlurm;
  if (env.mode == exec::LaunchMode::kChild && child_program != nullptr) {
    c.program = plan::read_program_json_file(child_program);
    if (const char* ref = std::getenv(kReferenceEnv))
      c.reference = plan::read_program_json_file(ref);
  } else if (mpi) {
    // Rank 0 compiles (or reads --program); every process gets its serialized text.
    std::string text, ref_text;
    if (env.rank == 0) {
      exec::Compiled c0;
      if (!program_path.empty()) {
        c0.program = read_dumped_program(program_path, scenario);
      } else {
        c0 = compile_for_exec(*scenario, o.verify);
      }
      std::ostringstream os, rs;
      plan::write_program_json(c0.program, os);
      text = os.str();
      if (o.verify) {
        plan::write_program_json(c0.reference, rs);
        ref_text = rs.str();
      }
    }
    text = exec::broadcast_text(env, text);
    std::istringstream is(text);
    c.program = plan::read_program_json(is, "the Program from MPI rank 0");
    if (o.verify) {
      ref_text = exec::broadcast_text(env, ref_text);
      std::istringstream ris(ref_text);
      c.reference = plan::read_program_json(ris, "the reference Program from MPI rank 0");
    }
  } else if (!program_path.empty()) {
    c.program = read_dumped_program(program_path, scenario);
  } else {
    c = compile_for_exec(*scenario, o.verify);
  }
  // Model features the executor has no kernels for (MLA of other widths than the kernel's,
  // dense layers, non-bf16 formats) are refused here, naming the feature, before any rank
  // starts (issue 15).
  exec::check_model_supported(c.program);

  // Faults (issue 18): checked, and every kill's recovery planned, before any rank starts.
  plan::CompileOptions fco;
  fco.record_token_routing = true;
  fco.per_sequence_routing = o.verify;
  const plan::ExecFaultPlan fp =
      scenario ? plan::plan_exec_faults(*scenario, c.program, fco) : plan::ExecFaultPlan{};
  o.faults = fp.faults;
  if (!straggler.empty()) {
    try {
      o.faults.push_back(parse_straggler(straggler, c.program));
    } catch (const std::invalid_argument& e) {
      std::fprintf(stderr, "masep exec: --straggler %s: %s\n", straggler.c_str(), e.what());
      return 2;
    }
  }
  o.kill_hangs = vm.count("fault-hang") > 0;
  o.recover = vm.count("recover") > 0 || !fp.recoveries.empty();
  if (o.recover && mpi) {
    std::fprintf(stderr,
                 "masep exec: recovery from rank failures runs on one host (masep exec starts "
                 "and supervises the ranks); under mpirun/srun a failure stops the run\n");
    return 2;
  }
  if (o.recover && !scenario) {
    std::fprintf(stderr,
                 "masep exec: recovery re-compiles the survivors' Program from the scenario; give "
                 "the SCENARIO with --program\n");
    return 2;
  }
  if (o.recover && scenario->plan.kind != plan::PlanKind::kMaSeparation) {
    std::fprintf(stderr,
                 "masep exec: recovery re-maps MA-separation plans only (plan.kind is %s)\n",
                 plan::to_string(scenario->plan.kind));
    return 2;
  }
  if (vm.count("dry-run")) {
    for (size_t i = 0; i < fp.recoveries.size(); ++i) {
      std::printf("recovery %zu (predicted, resuming at the fault's step):\n", i + 1);
      for (const std::string& line : fp.recoveries[i].describe()) {
        std::printf("  %s\n", line.c_str());
      }
    }
    return dry_run(o, c.program, dump_rank);
  }

  if (env.mode == exec::LaunchMode::kLauncher) {
    const TempDir dir;
    std::vector<std::pair<std::string, std::string>> child_env;
    const std::string prog = dir.path() + "/program.json";
    plan::write_program_json_file(c.program, prog);
    child_env.emplace_back(kProgramEnv, prog);
    if (o.verify) {
      const std::string ref = dir.path() + "/reference.json";
      plan::write_program_json_file(c.reference, ref);
      child_env.emplace_back(kReferenceEnv, ref);
    }
    Args child = {"exec"};
    child.insert(child.end(), args.begin(), args.end());
    if (!o.recover) return exec::launch_local(c.program.rank_count(), child, child_env);
    // Recovery: the launcher re-maps the plan in force after each failure and hands the
    // survivors its Program through a file in the same private folder.
    plan::Scenario cur_s = *scenario;
    cur_s.faults.clear();
    plan::Program cur_p = c.program;
    int round = 0;
    const bool no_shrink = vm.count("no-shrink") > 0;
    auto on_failure = [&](const std::vector<int>& failed, int resume) {
      const plan::RankRecovery rr = plan::recover_ranks(cur_s, cur_p, failed, resume, fco);
      for (const std::string& line : rr.describe()) {
        std::fprintf(stderr, "masep exec: recovery: %s\n", line.c_str());
      }
      exec::WorldChange wc;
      wc.new_rank_of_old = rr.new_rank_of_old;
      wc.shrink = rr.shrink && !no_shrink;
      wc.resume_step = resume;
      wc.program_path = fmt::format("{}/program-{}.json", dir.path(), ++round);
      plan::write_program_json_file(rr.program, wc.program_path);
      cur_s = rr.remap.degraded;
      cur_p = rr.program;
      return wc;
    };
    return exec::launch_local(c.program.rank_count(), child, child_env, on_failure,
                              report_timeout);
  }
  const exec::ExecResult r = exec::run_rank(o, env, std::move(c));
  if (!r.has_timeline) return 0;  // ranks other than 0 report through rank 0
  const auto& p = r.compiled.program;
  for (const exec::RankRecoveryTiming& t : r.recoveries) {
    std::printf(
        "recovery          %s; ranks %s failed; this rank: run stopped in %.1f ms, directive "
        "after %.1f ms, communicator %s in %.1f ms, re-lowered and running again %.1f ms later "
        "(from step %d)\n",
        t.reason.c_str(), fmt::format("{}", fmt::join(t.failed, ",")).c_str(), t.interrupt_ms,
        t.directive_ms, t.shrink ? "shrunk" : "re-initialised", t.comm_ms, t.restart_ms,
        t.resume_step);
  }
  if (!trace_path.empty()) {
    plan::TraceOptions to;
    to.gpus_per_node = std::max(1, p.target.gpus_per_node);
    plan::write_trace_file(trace_path, p, r.run.timeline, to);
  }
  // After a recovery p is the survivors' Program, compiled with its own target (memory).
  const plan::RunMetrics m = plan::compute_metrics(p, r.run.timeline);
  const exec::Roofline rf = exec::compute_roofline(p, r.copy_GBps, m.tpot_mean_ms);
  if (vm.count("json")) {
    // The metrics object, then the executor's additions in one more object on the next line
    // would break JSON parsers; so splice them in before the final brace.
    std::ostringstream os;
    plan::write_metrics_json(os, m);
    std::string js = os.str();
    const auto end = js.find_last_of('}');
    std::string extra = fmt::format(
        ",\"copy_GBps\":[{}],\"roofline_step_floor_ns\":{:.0f},\"roofline_critical_rank\":{},"
        "\"roofline_fraction\":{:.4f},\"roofline_rank_floor_ns\":[{}],\"device\":\"{}\","
        "\"launch_mode\":{}",
        fmt::join(r.copy_GBps, ","), rf.step_floor_ns, rf.critical_rank, rf.fraction,
        fmt::join(rf.rank_floor_ns, ","), r.device, plan::json_quoted(r.launch_mode));
    if (r.verify.ran) {
      extra += fmt::format(
          ",\"verify\":{{\"pass\":{},\"rel_err\":{:.6g},\"max_abs_err\":{:.6g},"
          "\"tolerance\":{:.3g},\"tokens\":{},\"hidden\":{}}}",
          r.verify.pass ? "true" : "false", r.verify.rel_err, r.verify.max_abs_err,
          r.verify.tolerance, r.verify.tokens, r.verify.hidden);
    }
    if (!r.recoveries.empty()) {
      std::vector<std::string> recs;
      for (const exec::RankRecoveryTiming& t : r.recoveries) {
        recs.push_back(fmt::format(
            "{{\"reason\":{},\"failed\":[{}],\"resume_step\":{},\"shrink\":{},"
            "\"interrupt_ms\":{:.3f},\"directive_ms\":{:.3f},\"comm_ms\":{:.3f},"
            "\"restart_ms\":{:.3f}}}",
            plan::json_quoted(t.reason), fmt::join(t.failed, ","), t.resume_step,
            t.shrink ? "true" : "false", t.interrupt_ms, t.directive_ms, t.comm_ms,
            t.restart_ms));
      }
      extra += fmt::format(",\"recoveries\":[{}]", fmt::join(recs, ","));
    }
    if (end != std::string::npos) js.insert(end, extra);
    std::cout << js;
    std::cout.flush();
  } else {
    print_table(r, m, vm.count("quiet") > 0);
    std::printf(
        "roofline          step floor %.1f µs (rank %d) = %.1f %% of the measured TPOT; "
        "copy bandwidth %s GB/s\n",
        rf.step_floor_ns / 1e3, rf.critical_rank, 100 * rf.fraction,
        fmt::format("{:.0f}", fmt::join(r.copy_GBps, " / ")).c_str());
    if (!trace_path.empty()) std::printf("\ntrace written to %s\n", trace_path.c_str());
  }
  if (r.verify.ran) {
    std::printf(
        "verify            %s: |out - ref| / |ref| = %.3e (bound %.1e), max |diff| %.3e "
        "over %lld tokens x %lld hidden; %s\n",
        r.verify.pass ? "PASS" : "FAIL", r.verify.rel_err, r.verify.tolerance, r.verify.max_abs_err,
        static_cast<long long>(r.verify.tokens), static_cast<long long>(r.verify.hidden),
        r.verify.note.c_str());
    return r.verify.pass ? 0 : 1;
  }
  return 0;
}

}  // namespace masep::tools
