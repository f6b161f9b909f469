// Plan search (`masep search`): enumerate the co-located and MA-separation plans of a GPU
// budget for a base scenario, reject the invalid ones with the loader's own validation, prune
// with the exact memory check and a roofline lower bound on TPOT, simulate the survivors in
// parallel (oneTBB) and rank them by tokens/s per GPU among those meeting a TPOT SLO.
//
// Everything here is deterministic: candidates are enumerated in a fixed order, the bound
// pruning runs in fixed-size waves whose contents do not depend on thread timing, and results
// are kept in candidate order. docs/search.md describes the method and its figures.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "masep/plan/metrics.hpp"
#include "masep/plan/scenario.hpp"
#include "masep/sim/simulator.hpp"
#include "sweep_shard.hpp"

namespace masep::tools {

/// What to enumerate. Plain data; defaults are the `masep search` defaults.
struct SearchSpace {
  int gpus = 0;                 ///< GPUs every candidate uses (exactly); must be >= 1
  int max_micro_batches = 4;    ///< micro_batches 1..this
  int max_expert_replicas = 0;  ///< expert_replicas 1..this (0 = up to the expert groups)
  /// expert_tensor_parallel: every divisor of the expert GPUs (plan.colocated.gpus or
  /// plan.moe.gpus) up to this (0 = any, 1 = whole experts only, the space before expert TP).
  int max_expert_tensor_parallel = 0;
  bool colocated = true;        ///< enumerate co-located plans
  bool ma_separation = true;    ///< enumerate MA-separation plans (needs gpus >= 2)
  /// workload.batch values to try with every plan (sequences); empty = the scenario's batch.
  std::vector<int> batches;
  // Restrictions for large budgets (defaults: none).
  int ma_step = 1;                ///< attention GPU counts: multiples of this only
  int max_sequence_parallel = 0;  ///< sequence_parallel 1..this (0 = any)
  bool round_robin = true;        ///< enumerate placement round_robin
  bool contiguous = true;         ///< enumerate placement contiguous
  /// When > 0: tensor_parallel and head_parallel only among the divisors of both (the
  /// model's heads and KV heads: the loader rejects the others anyway, one load each).
  int heads = 0, kv_heads = 0;
  /// When > 0: expert_tensor_parallel only among the divisors of this (the model's expert_ffn
  /// and shared-expert width: the loader rejects the others).
  int expert_ffn = 0, shared_expert_ffn = 0;
};

/// One enumerated plan. `plan_yaml` is the whole `plan:` mapping in YAML flow style, given
/// to the loader as the override "plan=<plan_yaml>".
struct Candidate {
  int index = 0;  ///< position in enumeration order
  plan::PlanKind kind = plan::PlanKind::kColocated;
  int attention_gpus = 0, moe_gpus = 0;                        ///< MA only
  int head_parallel = 0, sequence_parallel = 0, replicas = 0;  ///< MA only
  int tensor_parallel = 0;                                     ///< co-located only
  int expert_tensor_parallel = 1;  ///< GPUs each expert is split over (expert group size)
  int expert_replicas = 1;         ///< copies of each expert (over expert groups)
  plan::Placement placement = plan::Placement::kRoundRobin;
  int micro_batches = 1;
  int batch = 0;  ///< workload.batch override; 0 = the scenario's
  std::string plan_yaml;
  /// Short label, e.g. "co tp4 er1 rr mb1" or "ma 12:4 r3 hp4 sp1 er1 rr mb2" (" b32" added
  /// when the candidate sets the batch; " etpT" before " er" when expert_tensor_parallel T > 1,
  /// e.g. gpt-fast's "co tp8 etp8 er1 rr mb1").
  std::string label() const;
};

/// Every candidate of `space`, in a fixed order: for each batch (in the given order), co-located
/// first (tensor_parallel, expert_tensor_parallel, placement, expert_replicas, micro_batches
/// ascending), then MA separation (attention GPUs ascending, then replicas, head_parallel,
/// expert_tensor_parallel, placement, expert_replicas, micro_batches). expert_replicas go up
/// to the expert groups (expert GPUs / expert_tensor_parallel). No filtering by model unless
/// the space names its heads / expert widths: the loader decides validity. The candidates with
/// expert_tensor_parallel 1 come in the same relative order, with the same labels and plan
/// YAML, as with max_expert_tensor_parallel = 1. Throws std::invalid_argument for gpus < 1.
std::vector<Candidate> enumerate_candidates(const SearchSpace& space);

/// Lower bound on the mean TPOT of a compiled Program, in ns: the largest over ranks of the
/// rank's compute-stream work per step, where an op's work is max(hbm_bytes / HBM rate,
/// FLOPs / the dense peak of the op's format, Op::dtype) at the GPU datasheet (the
/// simulator's roofline with efficiency 1 and no launch cost), summed over the program's
/// steps and divided by their number. A
/// rank's compute ops run one at a time inside the run, so makespan / steps (the mean TPOT)
/// is at least this. Compile every step: routing differs per step.
double tpot_floor_ns(const plan::Program& program, const topology::GpuSpec& gpu);

/// The same floor for a program compiled with fewer MoE layers than the model has (the
/// search's --moe-layers): a rank's work in MoE layers (layer >= dense_layers) counts
/// `moe_scale` times (model MoE layers / simulated MoE layers), its dense-layer work once.
double tpot_floor_ns(const plan::Program& program, const topology::GpuSpec& gpu, int dense_layers,
                     double moe_scale);

/// Critical-path floor on the mean TPOT, in ns: the longest path through the program's
/// dependency graph (makespan / steps can be no shorter), where a compute op lasts its
/// roofline time (as tpot_floor_ns), each stream runs its ops in order, a transfer between nodes at
/// least its bytes over the NIC rate of each end (an exchange op also all of its inter-node bytes
/// sent, and all it receives, over its own NIC), intra-node transfers and collectives no time, and
/// no transfer starts before both its ops have started, no collective member ends before all
/// members have started. The per-rank floor misses exactly this: the attention → dispatch
/// → experts → combine chain of a micro-batch, MegaScale-Infer's ping-pong condition
/// (with m micro-batches a layer takes at least max(m·T_f, 2·T_f + 2·T_c)). With moe_scale
/// != 1 the path is split at the latest end of a dense-layer op and the rest counted
/// moe_scale times, as extrapolate_metrics does.
double critical_path_floor_ns(const plan::Program& program, const topology::TopologySpec& topo,
                              int dense_layers, double moe_scale);

/// --moe-layers: cuts `s` to its dense layers and `moe_layers` MoE layers (when that is
/// fewer than it has) and returns moe_scale = its MoE layers / moe_layers, else 1.
double truncate_moe_layers(plan::Scenario& s, int moe_layers);

/// Extrapolates the metrics of a run of a truncated model (truncate_moe_layers) to the full
/// depth: each step's time is split at the end of its last dense-layer op into the dense
/// part (kept) and the MoE part (times moe_scale); TPOT mean / p50 / p99 and tokens/s come
/// from the extrapolated steps. makespan, idle and exposed communication stay those of the
/// simulated layers (their shares are what the bottleneck reads).
void extrapolate_metrics(plan::RunMetrics& m, const plan::Program& program, const plan::Timeline& t,
                         int dense_layers, double moe_scale);

/// What happened to a candidate.
enum class CandidateStatus {
  kInvalid,    ///< the loader or compiler rejected it (error holds the message)
  kMemory,     ///< plan::check_memory rejected it
  kBoundSlo,   ///< its TPOT floor is above the SLO
  kBoundBest,  ///< its tokens/s/GPU ceiling is below the top-K of its kind so far
  kSimulated,  ///< simulated (metrics valid)
  kFailed,     ///< simulation threw (error holds the message)
  /// Not decided here: another shard's candidate (a shard's own result), or, after a merge,
  /// a candidate whose records are missing (SearchResult::missing).
  kOtherShard,
};
const char* to_string(CandidateStatus s);

struct CandidateResult {
  CandidateStatus status = CandidateStatus::kInvalid;
  std::string error;
  double floor_ms = 0;              ///< tpot_floor_ns / 1e6 (0 when not compiled)
  plan::RunMetrics metrics;         ///< kSimulated only; ranks cleared
  int64_t peak_memory_bytes = 0;    ///< largest rank total of plan_memory
  int batch = 0;                    ///< workload.batch of the loaded scenario (0 if invalid)
  double tokens_per_s_per_gpu = 0;  ///< kSimulated: metrics.tokens_per_s / GPUs
  bool meets_slo = false;           ///< kSimulated and tpot_mean_ms <= SLO (or no SLO)
};

/// Search inputs beside the space.
struct SearchOptions {
  std::string base;                    ///< scenario: built-in name or YAML path
  std::vector<std::string> overrides;  ///< "key=value", applied before the plan override
  double tpot_slo_ms = 0;              ///< 0 = no SLO
  int top_k = 10;                      ///< exact top-K per plan kind survives bound pruning
  int wave = 16;                       ///< candidates simulated between bound updates
  /// > 0: compile and simulate every candidate with only this many MoE layers (plus the
  /// dense ones) and extrapolate floors and metrics to the model's depth (memory is checked
  /// at full depth). docs/search.md says when that is representative.
  int moe_layers = 0;
  int jobs = 0;                        ///< worker threads, 0 = all cores
  sim::SimOptions sim;
  /// This process's candidates: those with index % shard.count == shard.index. A shard
  /// computes floors and simulates its own candidates only, pruning with its own top-K bound.
  ShardSpec shard;
  /// Where candidate records go ("" = none): DIR/records/*.jsonl, written atomically as
  /// chunks of floors and waves of simulations finish, and read back so that a rerun skips
  /// what is recorded (resume) and merge_search() can join shards.
  std::string out_dir;
  /// The search's identity (search_key()); every record carries it and a record with
  /// another key is refused.
  std::string key;
  /// Progress, called from the calling thread: phase "floors" (candidates prepared of this
  /// shard's to prepare), then "simulations" (candidates decided of those in the order, pruned
  /// or simulated). Empty = none.
  std::function<void(const char* phase, int64_t done, int64_t total)> progress;
};

struct SearchResult {
  std::vector<Candidate> candidates;
  std::vector<CandidateResult> results;  ///< same order as candidates
  int enumerated = 0, invalid = 0, pruned_memory = 0, pruned_bound = 0, simulated = 0, failed = 0;
  int floor_violations = 0;  ///< simulated TPOT below its floor (a bug if ever > 0)
  int gpus = 0;              ///< the budget (every candidate uses exactly this many)
  int ran = 0;               ///< simulations this process ran (not counting resumed records)
  int resumed = 0;           ///< candidates whose records were read back instead of computed
  /// Simulations beyond the final bound (ceiling below the K-th best of their kind at the
  /// end): run by an early wave or a shard, then reported as kBoundBest so that the output
  /// does not depend on the order or the sharding (finalize_search).
  int dropped = 0;
  /// merge_search: candidates without the record the result needs (no floor, or a ceiling
  /// reaching the final bound and no simulation). Empty for a complete search.
  std::vector<int> missing;
  /// Indices of simulated candidates meeting the SLO, best first (tokens/s/GPU descending,
  /// then TPOT ascending, then index).
  std::vector<int> ranking;
  int best_colocated = -1, best_ma = -1;  ///< index of the best meeting the SLO, -1 = none
};

/// A plan override every model and topology accepts (one co-located GPU): loading the base
/// with it checks the base and the user's overrides before any candidate is tried.
inline constexpr const char* kProbePlan =
    "plan={kind: colocated, colocated: {gpus: 1, tensor_parallel: 1}, micro_batches: 1}";

/// Runs the search (or this process's shard of it): enumerate, load+validate, memory check,
/// floor, SLO prune, then waves of `wave` candidates in floor order simulated in parallel,
/// pruning by the top-K bound of the candidates simulated so far before each wave. With one
/// shard the result is finalized (finalize_search); with several it is this shard's view
/// (other candidates kOtherShard), to be joined by merge_search. Throws plan::InputError
/// when the base scenario with kProbePlan does not load, std::runtime_error for a record
/// of another search.
SearchResult run_search(const SearchSpace& space, const SearchOptions& options);

/// Makes a search's outcome independent of the order candidates were simulated in and of
/// sharding. T = the K-th best tokens/s/GPU among simulated plans of a kind meeting the SLO
/// (none with fewer than K). Every candidate whose ceiling (batch / floor / GPUs) is below
/// T is reported kBoundBest, simulated or not; every other valid candidate within the SLO
/// floor must have been simulated (else it is listed in `missing`). A candidate pruned in
/// any wave of any shard had a ceiling below that shard's running K-th best, which is at
/// most T, so a complete run (or a complete set of shards) always simulated that set, and
/// T itself is the K-th best of all candidates whenever no simulated TPOT beats its floor.
/// Then counts, ranking and the best of each kind.
void finalize_search(SearchResult& r, const SearchOptions& options);

/// Joins the records under options.out_dir (any shards, any shard counts) into the result
/// a single process would have given, finalized. `missing` lists what is not recorded yet.
/// Throws std::runtime_error naming the file for a malformed record or one of another key.
SearchResult merge_search(const SearchSpace& space, const SearchOptions& options);

/// The identity of a search's records: the base, overrides, space, SLO, top K, simulator
/// options (`sim_text`: the options and calibration content as text) and the masep binary.
std::string search_key(const SearchSpace& space, const SearchOptions& options,
                       const std::string& sim_text, const std::string& binary_id);

/// The CSV table (header + one row per candidate, enumeration order): index, kind, label,
/// the plan fields (attention_gpus .. tensor_parallel, expert_tensor_parallel,
/// expert_replicas, placement, micro_batches), batch, status, floor_ms, tpot_mean_ms, tpot_p99_ms, tokens_per_s,
/// tokens_per_s_per_gpu, attention_idle_ms, moe_idle_ms, exposed_comm_ms, peak_memory_gb,
/// meets_slo, error.
std::vector<std::vector<std::string>> search_table(const SearchResult& r);

/// The bottleneck of a simulated candidate in words, from its metrics: for MA separation the
/// side with less idle time ("attention (MoE idle 40%)"), for co-located "compute" or
/// "comm" when exposed communication exceeds a quarter of GPU time.
std::string bottleneck(const Candidate& c, const plan::RunMetrics& m, int gpus);

/// A scenario YAML for `base` with `overrides` applied and its plan replaced by
/// `plan_yaml`, named `name`: the base's text with built-in model/topology references kept
/// by name (inlined when an override reaches inside them) and file references made absolute.
/// Throws plan::InputError when the base cannot be read.
std::string scenario_yaml(const std::string& base, const std::vector<std::string>& overrides,
                          const std::string& plan_yaml, const std::string& name);

}  // namespace masep::tools
