// Calibrated compute cost model: op durations from a measured calibration (plan/calibration.hpp,
// written by `masep profile`) instead of datasheet roofline efficiencies. Used by
// simulate() when SimOptions::calibration names a file; docs/calibration.md has the rules.
//
// Lookup per op (table times are the GPU's mean time per launch with the launch queue full;
// every op with a launch then adds the calibration's launch.event_overhead_ns, the extra cost
// of the executor's event pair around each launch, 0 if the file has no launch section):
//   kGemm         gemm table with the op's (n, k), interpolated in m
//   kGroupedGemm  with a grouped_gemm table of the op's exact (n, k) and every expert's rows
//                 ≤ its max_rows (the executor's grouped decode-GEMM launch): base_ns + Σ over
//                 experts with group_m[e] > 0 of the table interpolated at group_m[e]; else Σ
//                 over those experts of the GEMM time of (group_m[e], n, k) (the executor's
//                 one cuBLAS GEMM per non-empty expert); 0 if no expert has rows
//   kAttention    attention tables with the op's (heads, kv_heads, head_dim): interpolated in
//                 context = ceil(kv_tokens / batch) within each measured batch, then linearly
//                 in batch between the two measured batches around the op's batch
//                 (below the smallest: that batch's time; above the largest: scaled by
//                 batch / largest, constant throughput)
//   kElementwise, kRouter, kPermute, kCombine
//                 kernel table named like the op (Op::name, e.g. "rmsnorm"), else the table
//                 named like its kind ("elementwise", "router", "permute", "combine"),
//                 interpolated in Op::hbm_bytes
// Shapes with no table of their exact key:
//   GEMM (n, k) not measured → the table nearest in log(n)+log(k), time scaled by
//   (n·k)/(n'·k') (weight bytes; decode GEMMs are weight-bound)          → kNearestShape
//   attention (heads, kv_heads, head_dim) not measured → nearest table by |log(kv_heads·
//   head_dim) - log(...)| then heads, scaled by kv_heads·head_dim ratio    → kNearestShape
//   kernel with no table at all → the roofline fallback model             → kRoofline
//   an op whose Op::dtype is not bf16, and MLA's mla_absorb_k, mla_absorb_v and
//   mla_attention (the profiler measures none of them) → the roofline       → kRoofline
// Every op's lookup is classified (coverage()) so callers can report extrapolations.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "masep/plan/calibration.hpp"
#include "masep/plan/calibration_lookup.hpp"
#include "masep/plan/program.hpp"
#include "masep/sim/compute_model.hpp"
#include "masep/sim/parameters.hpp"
#include "masep/topology/gpu_spec.hpp"

namespace masep::sim {

// How an op's duration was obtained: plan/calibration_lookup.hpp (shared with the predictor).
using plan::CalSource;
using plan::kCalSourceCount;
using plan::to_string;

/// Counts of compute ops by CalSource, for one Program.
struct CalibrationCoverage {
  std::array<int64_t, kCalSourceCount> ops{};  ///< indexed by CalSource
  int64_t total() const;
  /// One line, e.g. "calibration h100.yaml (NVIDIA H100 80GB HBM3): 1200 compute ops: 800
  /// exact, 380 interpolated, 20 extrapolated, 0 nearest-shape, 0 roofline".
  std::string summary(const std::string& file, const std::string& device) const;
};

class CalibratedModel final : public ComputeModel {
 public:
  /// `fallback` times ops no table covers (normally the RooflineModel of the same GPU).
  CalibratedModel(plan::Calibration cal, std::shared_ptr<const ComputeModel> fallback);

  int64_t duration_ns(const plan::Op& op) const override;

  /// Duration (ns, not rounded) and how it was found; op must be a compute op.
  double time_ns(const plan::Op& op, CalSource* source) const;

  /// Classification of every compute op of `p`.
  CalibrationCoverage coverage(const plan::Program& p) const;

  const plan::Calibration& calibration() const { return cal_; }

 private:
  const plan::Calibration cal_;
  std::shared_ptr<const ComputeModel> fallback_;
};

/// Communication latencies (alpha) from a calibration's comm tables: for each of all_reduce,
/// all_gather, reduce_scatter, all_to_all and send_recv with a table, the time of its
/// smallest measured size in the table with the fewest ranks (a 1 KB call is latency-bound),
/// as overrides of alpha_*_ns in SimParams order, plus the launch event overhead; with a
/// `launch:` section launch_gap_ns (launch.comm_slowdown is recorded but not applied as
/// comm_interference: see docs/calibration.md). Collectives with a table of their size are timed by
/// calibrated_collective_ns instead; exchanges and send/recv run on the topology's links.
std::vector<std::pair<std::string, double>> calibrated_comm_params(const plan::Calibration& cal);

/// Calibrated time (ns) of one collective call of `kind` (all-reduce, all-gather,
/// reduce-scatter; all-to-all only without a per-pair matrix, `uniform`) over `ranks` GPUs
/// with `bytes` per rank (Collective::bytes, the nccl-tests size the tables use): the comm
/// table of that op with exactly `ranks` ranks, interpolated in bytes (plan/interpolation.hpp's
/// rules), plus the launch section's event overhead, as the executor times it. Returns -1 when
/// the file has no such table (the simulator then runs the collective's flows on the
/// topology's links). A calibrated collective takes no link capacity in the flow model.
///
/// With `model`, sizes between (or outside) a table's points take the model's time scaled by
/// measured / model at the neighbouring points (interpolated linearly in log(bytes); the end
/// point's ratio outside), so the model's protocol switches shape the curve; table points
/// are reproduced exactly.
/// Group sizes without a table of their own (`model` given, and the file has tables of the
/// op for other group sizes): the model's time for `ranks` scaled by measured / model at the
/// nearest measured group sizes below and above (the ratio interpolated linearly in
/// log2(ranks) between them, the nearest one's ratio outside them), so the tables carry
/// what the model misses to sizes they lack. `model(kind, ranks, bytes)` returns the model's
/// device time in ns for a communicator of that size (e.g. NcclModel::choose().time_ns).
using CommModelFn = std::function<double(plan::OpKind kind, int ranks, double bytes)>;
double calibrated_collective_ns(const plan::Calibration& cal, plan::OpKind kind, int ranks,
                                double bytes, bool uniform = true, const CommModelFn& model = {});

/// The GPU model in a device or GPU-spec name: the first word of capitals followed by 2-4
/// digits ("NVIDIA H100 80GB HBM3" -> "H100", "H200-SXM-141GB" -> "H200"); "" when none.
std::string gpu_model_of(const std::string& name);

/// Checks that calibration `cal` (file `path`) was measured on the GPU model of `gpu_name`
/// (the topology's GPU). A mismatch throws std::invalid_argument naming both, unless
/// `allow_mismatch`: then it returns a one-line warning for the run header. Returns "" when
/// they match or either name carries no recognisable model.
std::string check_calibration_gpu(const plan::Calibration& cal, const std::string& path,
                                  const std::string& gpu_name, bool allow_mismatch);

}  // namespace masep::sim
