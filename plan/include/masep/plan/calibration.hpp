// A calibration: measured costs of the kernels and NCCL calls a Program launches, on one GPU
// model, as written by `masep profile` (exec/, micro-benchmarks only) and read by
// `masep sim --calibration FILE` (sim/src/calibrated_model.cpp). docs/calibration.md
// documents the file format, how it is measured and how tables are interpolated.
//
// Every table is a list of (size, time) points, size strictly increasing, time the mean
// duration of one launch in nanoseconds (CUDA events around a loop of back-to-back launches,
// divided by the launch count). The size is, per table kind:
//   gemm        m (rows) of a bf16 cuBLAS GEMM C[m×n] = A[m×k]·B[k×n], one table per (n, k)
//   grouped_gemm  rows of one group (expert) of the executor's grouped decode-GEMM launch,
//               time = the time one more group with that many rows adds; one table per (n, k)
//               with the launch's fixed part (base_ns) and the largest group it serves
//   attention   context (KV tokens per sequence) of a decode attention launch, one table per
//               (heads, kv_heads, head_dim, batch)
//   kernels     Op::hbm_bytes of the Program op the kernel serves, one table per op name
//               ("rmsnorm", "router", "permute", ...) or kind ("elementwise", ...)
//   comm        bytes per rank as nccl-tests counts them (Op::comm_bytes / Collective::bytes),
//               one table per (op, ranks) with op one of all_reduce, all_gather,
//               reduce_scatter, all_to_all, send_recv
// Plain data, owned by value. The only YAML code stays in plan/.
#pragma once

#include "masep/models/model.hpp"

#include <cstdint>
#include <string>
#include <vector>

#include "masep/plan/program.hpp"

namespace masep::plan {

/// One measurement: `time_ns` for a launch of size `size` (unit given by the table).
struct CalPoint {
  int64_t size = 0;    ///< > 0
  double time_ns = 0;  ///< > 0, mean time of one launch
  bool operator==(const CalPoint&) const = default;
};

/// cuBLAS bf16 GEMM time by m for one weight shape (n, k).
struct GemmTable {
  int64_t n = 0, k = 0;
  std::vector<CalPoint> points;  ///< size = m
  bool operator==(const GemmTable&) const = default;
};

/// The executor's grouped decode-GEMM launch (kernels/grouped_gemm.hpp: one launch for all
/// local experts of an expert projection) for one weight shape (n, k): a launch whose groups
/// have r_1 … r_G rows (all r_g ≤ max_rows, zero-row groups free) takes
///   base_ns + Σ_g per_group(r_g),   per_group = `points` interpolated in rows.
/// Launches with a larger group run as one cuBLAS GEMM per group (the gemm tables).
struct GroupedGemmTable {
  int64_t n = 0, k = 0;
  int32_t max_rows = 0;          ///< largest group the executor sends to this launch (> 0)
  double base_ns = 0;            ///< fixed time of one launch (≥ 0)
  std::vector<CalPoint> points;  ///< size = rows of one group, time = its added time
  /// Weight format of the launch (key `weights`, bf16 when absent): bf16 or fp8 (block-scaled,
  /// kernels/weight_format.hpp; the executor runs every FP8 matrix, kGemm ones as one group).
  models::DType weights = models::DType::kBF16;
  bool operator==(const GroupedGemmTable&) const = default;
};

/// Decode attention time by context for one (heads, kv_heads, head_dim, batch).
struct AttentionTable {
  int32_t heads = 0, kv_heads = 0, head_dim = 0, batch = 0;
  std::vector<CalPoint> points;  ///< size = KV tokens per sequence
  bool operator==(const AttentionTable&) const = default;
};

/// Element-wise / router / permute / combine kernel time by the op's hbm_bytes.
struct KernelTable {
  std::string name;              ///< Program op name (e.g. "rmsnorm") or kind ("elementwise")
  std::vector<CalPoint> points;  ///< size = Op::hbm_bytes
  bool operator==(const KernelTable&) const = default;
};

/// NCCL call time by bytes per rank for one (op, group size), intra-node.
struct CommTable {
  std::string op;     ///< all_reduce | all_gather | reduce_scatter | all_to_all | send_recv
  int32_t ranks = 0;  ///< GPUs in the communicator (2 for send_recv)
  std::vector<CalPoint> points;  ///< size = bytes per rank (nccl-tests "size")
  bool operator==(const CommTable&) const = default;
};

/// Per-launch costs as the executor sees them (docs/calibration.md, "launch"), measured by
/// `masep profile` with the executor's timing: a CUDA event before and after every launch,
/// launches queued on one stream. Optional in the file (older files: measured = false, all 0).
struct LaunchCosts {
  bool measured = false;         ///< the file has a `launch:` section
  double event_overhead_ns = 0;  ///< (end event - start event) of one launch minus that
                                 ///< launch's back-to-back mean time (the tables' method), ns
  double event_gap_ns = 0;       ///< one launch's end event to the next launch's start event
                                 ///< on the same stream, launches queued, ns
  double idle_launch_ns = 0;     ///< event pair around one tiny launch after the stream
                                 ///< idled (host-bound case; informational), ns
  double kernel_ns = 0;          ///< back-to-back time of the reference kernel, ns
  /// Compute slowed by communication on the same GPU: (a weight-bound GEMM's time while NCCL
  /// moves data to and from that GPU) / (its time alone) − 1; 0 = not measured (optional key
  /// `comm_slowdown`; the simulator's comm_interference = 1 − 1/(1 + comm_slowdown)).
  double comm_slowdown = 0;
  /// The same GEMM's slowdown while NCCL kernels are resident on the GPU but move little data
  /// (back-to-back small send/recv: latency-bound, as a decode step's exchanges mostly are);
  /// 0 = not measured (optional key `comm_resident_slowdown`; the simulator's
  /// comm_resident_interference = 1 − 1/(1 + this)).
  double comm_resident_slowdown = 0;
  bool operator==(const LaunchCosts&) const = default;
};

/// A whole calibration file.
struct Calibration {
  std::string device;  ///< cudaDeviceProp::name, e.g. "NVIDIA H100 80GB HBM3"
  std::string driver;  ///< CUDA driver version, e.g. "13.0"
  std::string cuda;    ///< CUDA runtime version
  std::string cublas;  ///< cuBLAS version ("" if unknown)
  std::string nccl;    ///< NCCL version, e.g. "2.28.3"
  std::string date;    ///< ISO date of the measurement, e.g. "2026-11-27"
  int32_t gpus = 1;    ///< GPUs the profiler used (comm tables need >= 2)
  std::string notes;   ///< free text (how it was run); may be empty
  std::vector<GemmTable> gemm;
  std::vector<GroupedGemmTable> grouped_gemm;  ///< optional (files before 2026-12-07: none)
  std::vector<AttentionTable> attention;
  std::vector<KernelTable> kernels;
  std::vector<CommTable> comm;
  LaunchCosts launch;  ///< optional `launch:` section (added after format 1's first files)
  bool operator==(const Calibration&) const = default;
};

/// The accepted CommTable::op names, in file order.
const std::vector<std::string>& calibration_comm_ops();

/// The `kernels` table an op of `kind` falls back to when no table has the op's own name:
/// "elementwise", "router", "permute" or "combine"; "" for other kinds (GEMMs, attention,
/// communication). Used by the calibrated simulator and the time predictor alike.
const char* calibration_kind_table(OpKind kind);

/// Reads and validates a calibration YAML. Errors throw InputError "FILE:LINE:COL: key.path:
/// message" (unknown or missing keys, sizes not strictly increasing, non-positive times,
/// duplicate table keys, unknown comm op). std::runtime_error if the file cannot be read.
Calibration load_calibration(const std::string& path);
/// The same from YAML text; `origin` names it in errors.
Calibration parse_calibration(const std::string& yaml_text, const std::string& origin);

/// The file text (deterministic; times with enough digits to round-trip exactly).
std::string calibration_yaml(const Calibration& c);
/// Writes calibration_yaml(c) to `path` atomically (temporary file + rename); throws
/// std::runtime_error naming the path on failure. Validates `c` first (std::invalid_argument).
void write_calibration(const std::string& path, const Calibration& c);

/// Checks the invariants load_calibration enforces; throws std::invalid_argument naming the
/// table and point.
void validate_calibration(const Calibration& c);

}  // namespace masep::plan
