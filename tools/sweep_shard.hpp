// Sweeps beyond one process: which points this process runs (a shard i/N from --shard, a Slurm
// job array or an MPI launcher's rank), and the per-point result records that make a sweep
// resumable and let shards run anywhere — separate processes, `mpirun -np N`, Slurm array
// tasks — and be merged into a results.csv byte-identical to a single-process run.
//
// Records: OUT/points/<index>.json, one per finished point, written atomically when the point
// finishes; each carries the sweep key (sweep_key()), so a record of another sweep, other
// options or another masep binary is refused, never reused. A record round-trips every field
// results_table() and the summary read (doubles exactly).
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "sweep.hpp"

namespace masep::tools {

/// This process's share of a sweep's points: point p belongs to it when p % count == index.
struct ShardSpec {
  int index = 0;       ///< 0 ≤ index < count
  int count = 1;       ///< number of shards (1 = the whole sweep)
  std::string source;  ///< where it came from, for messages ("--shard 1/4", "SLURM_ARRAY_TASK_ID", …)
  bool owns(int point) const { return point % count == index; }
};

/// Parses `--shard` ("i/N" with 0 ≤ i < N, or "auto"); with no flag (empty `flag`) or
/// "auto", the environment decides: a Slurm job array (SLURM_ARRAY_TASK_ID minus
/// SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT tasks), else an MPI launcher's rank and size
/// (OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/PMI_SIZE, PMIX_RANK with OMPI_COMM_WORLD_SIZE), else
/// 0/1. `env` looks a variable up (std::getenv in the command; a map in tests). Throws
/// std::invalid_argument naming the flag or variable for a malformed value.
ShardSpec parse_shard(const std::string& flag, const char* (*env)(const char*));

/// The identity of a sweep's results: its points (scenario, overrides), fixed and extra
/// overrides, the simulator options that change results, and `binary_id` (the running masep
/// binary's hash, so records of another build are refused). Hex text.
std::string sweep_key(const Sweep& sweep, const std::vector<std::string>& extra,
                      const std::string& options, const std::string& binary_id);

/// FNV-1a hash (hex) of the running executable (/proc/self/exe); "unknown" where it cannot be
/// read (records then match on the sweep and options only).
std::string running_binary_id();

/// OUT/points/<index>.json.
std::string point_record_path(const std::string& out_dir, int index);

/// The RunMetrics summary a sweep point record and a search record both keep (TPOT mean, p50,
/// p99, tokens/s, mean utilisation, attention/MoE idle, exposed communication, makespan),
/// under the fields' own names and in this order: appended to the JSON object `j`, or read
/// back from it (nlohmann::json errors for a missing or mistyped key).
void put_metrics_summary(nlohmann::ordered_json& j, const plan::RunMetrics& m);
void get_metrics_summary(const nlohmann::json& j, plan::RunMetrics& m);

/// Writes the record of point `index` atomically.
void write_point_record(const std::string& out_dir, int index, const std::string& key,
                        const PointResult& r);

/// Reads point `index`'s record if it exists: nullopt when there is none. Throws
/// std::runtime_error naming the file when it is unreadable, malformed, of another point, or
/// of another sweep key (with what to do: another --out, or --fresh).
std::optional<PointResult> read_point_record(const std::string& out_dir, int index,
                                             const std::string& key);

}  // namespace masep::tools
