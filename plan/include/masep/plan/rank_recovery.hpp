// The executor's recovery plan after ranks fail (issue 18): from the Program the ranks were
// running, the plan ranks that died and the decode step to resume from, the survivors' new
// Program (the degraded plan of plan::remap, compiled for the remaining steps), the map from
// old plan ranks to new ones (= new NCCL ranks), whether ncclCommShrink can build the new
// world (the survivors keep their order) or the communicators must be re-initialised, and per
// new rank what it must rebuild (experts it did not hold, KV caches of sequences it did not
// serve, attention weights of another head shard). CUDA-free and deterministic, so the
// launcher computes it once and every survivor reads the same Program; unit-tested on the CPU.
//
// It lives in plan/ because it compiles a Scenario (the executor never sees one). The
// executor-specific limits (no standby GPUs joining, GPU and straggler faults given by step)
// are checked by plan_exec_faults before any rank starts, so that a plan whose redundancy
// cannot cover the faults is refused with what would be lost.
#pragma once

#include <string>
#include <vector>

#include "masep/plan/compiler.hpp"
#include "masep/plan/program.hpp"
#include "masep/plan/remap.hpp"
#include "masep/plan/scenario.hpp"

namespace masep::plan {

/// What one rank of the new plan must rebuild before it resumes (the executor re-lowers
/// every survivor's launches in any case).
struct RankRebuild {
  int new_rank = 0;
  int old_rank = -1;  ///< its rank in the failed plan (-1: a standby joining)
  int gpu = 0;        ///< topology GPU
  /// Experts it holds now and did not before, with their source: a surviving holder's
  /// topology GPU, or -1 for host memory (remap's re-loads, and experts the degraded plan
  /// re-places without a peer copy).
  std::vector<int> new_experts;
  std::vector<int> expert_sources;
  int64_t expert_bytes = 0;  ///< weights of new_experts (all layers)
  /// Attention ranks: sequences (global index) whose KV cache it serves now and did not
  /// before, and whether its attention weights are another shard than before.
  std::vector<int64_t> new_sequences;
  bool attention_weights = false;
  bool nothing() const {
    return new_experts.empty() && new_sequences.empty() && !attention_weights;
  }
};

/// The survivors' plan after `failed_ranks` of a Program died.
struct RankRecovery {
  Remap remap;                    ///< plan::remap's decisions (remap.degraded: the new plan)
  Program program;                ///< the degraded plan compiled from resume_step to the end
  int resume_step = 0;            ///< first decode step of `program`
  std::vector<int> failed_ranks;  ///< old plan ranks, ascending
  std::vector<int> idle_ranks;    ///< old plan ranks alive but not in the new plan (they leave)
  std::vector<int> new_rank_of_old;  ///< [old rank] -> new rank; -1: failed or idle
  std::vector<int> old_rank_of_new;  ///< [new rank] -> old rank; -1: a standby joining
  /// The new world is the old one minus failed and idle ranks, in the same order: every
  /// survivor in it calls ncclCommShrink(world, failed + idle) and gets its new rank. Else the
  /// communicators are re-initialised with a new id from the launcher.
  bool shrink = false;
  std::vector<RankRebuild> rebuild;  ///< [new rank]
  /// One line per fact (failed, leaving, new world, what each rank rebuilds).
  std::vector<std::string> describe() const;
};

/// The recovery plan of `s` (the scenario `p` was compiled from; faults ignored) after the
/// plan ranks `failed_ranks` of `p` fail, resuming at decode step `resume_step` (p.first_step
/// <= resume_step < p.first_step + p.steps). `options` are the executor's compile options
/// (routing recording); first_step and steps are set here. Throws std::invalid_argument when
/// a rank is out of range or the step outside `p`, and FaultNotCovered when the plan's
/// redundancy cannot cover the failure (the message says what would be lost).
RankRecovery recover_ranks(const Scenario& s, const Program& p, std::vector<int> failed_ranks,
                           int resume_step, const CompileOptions& options);

/// A failure the plan's redundancy cannot cover (what() says what would be lost and how to
/// add redundancy).
class FaultNotCovered : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// The faults of a scenario as the executor injects them, by topology GPU (a rank finds its
/// own by RankInfo::gpu, in whichever plan it is running).
struct ExecFault {
  enum Kind { kKill, kStraggler };
  Kind kind = kKill;
  int gpu = 0;
  int step = 0;        ///< kKill: the rank dies when it reaches this step; kStraggler: first step
  int last_step = -1;  ///< kStraggler: last slowed step (-1: to the end of the run)
  double speed = 1;    ///< kStraggler: fraction of the normal compute rate, (0, 1)
};

/// The executor's faults and, for each kill in step order, the recovery it predicts (resuming
/// at the kill's step; the run resumes at the first step a survivor had not finished, which
/// may be earlier). Checks before any rank starts, throwing std::invalid_argument naming the
/// `faults[i]` key: kinds other than gpu and straggler (NIC and link faults are simulated
/// only), faults given by at_ms, GPU faults with `steps:` (a GPU re-joining), a plan with
/// standby GPUs, and FaultNotCovered for faults the redundancy cannot cover. `p` is the
/// Program compiled from `s` for the executor with `options`.
struct ExecFaultPlan {
  std::vector<ExecFault> faults;
  std::vector<RankRecovery> recoveries;  ///< one per kill, in step order (chained)
};
ExecFaultPlan plan_exec_faults(const Scenario& s, const Program& p, const CompileOptions& options);

}  // namespace masep::plan
