// Sweep shards and per-point result records; see sweep_shard.hpp.
#include "sweep_shard.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "masep/plan/input_file.hpp"
#include "masep/plan/output_file.hpp"
#include "masep/plan/seeded_hash.hpp"

namespace masep::tools {
namespace {

constexpr uint64_t kMaxRecordBytes = 1 << 20;
constexpr int kMaxShards = 1 << 20;

// A non-negative integer of the whole text, or -1.
long whole_int(const std::string& s) {
  if (s.empty() || s.size() > 9) return -1;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
  }
  return std::strtol(s.c_str(), nullptr, 10);
}

ShardSpec checked(long index, long count, const std::string& source) {
  if (count < 1 || count > kMaxShards || index < 0 || index >= count) {
    throw std::invalid_argument(fmt::format(
        "{}: shard {} of {} is not a shard (need 0 <= index < count <= {})", source, index, count,
        kMaxShards));
  }
  return ShardSpec{static_cast<int>(index), static_cast<int>(count), source};
}

std::string hex(uint64_t h) { return fmt::format("{:016x}", h); }

}  // namespace

ShardSpec parse_shard(const std::string& flag, const char* (*env)(const char*)) {
  if (!flag.empty() && flag != "auto") {
    const auto slash = flag.find('/');
    const long i = slash == std::string::npos ? -1 : whole_int(flag.substr(0, slash));
    const long n = slash == std::string::npos ? -1 : whole_int(flag.substr(slash + 1));
    if (i < 0 || n < 0) {
      throw std::invalid_argument(
          fmt::format("--shard '{}': expected INDEX/COUNT (e.g. 0/4) or auto", flag));
    }
    return checked(i, n, "--shard " + flag);
  }
  auto var = [&](const char* name) -> std::optional<long> {
    const char* v = env(name);
    if (v == nullptr || *v == '\0') return std::nullopt;
    const long x = whole_int(v);
    if (x < 0) {
      throw std::invalid_argument(
          fmt::format("{}='{}' is not a non-negative integer", name, v));
    }
    return x;
  };
  if (auto id = var("SLURM_ARRAY_TASK_ID")) {
    const auto count = var("SLURM_ARRAY_TASK_COUNT");
    if (!count) {
      throw std::invalid_argument(
          "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: give --shard I/N");
    }
    const long min = var("SLURM_ARRAY_TASK_MIN").value_or(0);
    return checked(*id - min, *count, "SLURM_ARRAY_TASK_ID (job array)");
  }
  for (const auto& [rank, size] : {std::pair{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                   std::pair{"PMI_RANK", "PMI_SIZE"},
                                   std::pair{"PMIX_RANK", "OMPI_COMM_WORLD_SIZE"}}) {
    const auto r = var(rank);
    const auto s = var(size);
    if (r && s) return checked(*r, *s, fmt::format("{} (MPI launcher)", rank));
  }
  return ShardSpec{0, 1, flag == "auto" ? "auto (no launcher found)" : ""};
}

std::string sweep_key(const Sweep& sweep, const std::vector<std::string>& extra,
                      const std::string& options, const std::string& binary_id) {
  std::string canon = "masep-sweep-key/1\n" + options + "\n" + binary_id + "\n";
  for (const auto& f : sweep.fixed) canon += "fixed " + f + "\n";
  for (const auto& e : extra) canon += "extra " + e + "\n";
  for (const auto& p : sweep.points) {
    canon += "point " + p.scenario;
    for (const auto& [k, v] : p.overrides) canon += " " + k + "=" + v;
    canon += "\n";
  }
  return hex(plan::fnv1a64(canon));
}

std::string running_binary_id() {
  std::ifstream in("/proc/self/exe", std::ios::binary);
  if (!in) return "unknown";
  std::ostringstream os;
  os << in.rdbuf();
  return hex(plan::fnv1a64(os.str()));
}

void put_metrics_summary(nlohmann::ordered_json& j, const plan::RunMetrics& m) {
  j["tpot_mean_ms"] = m.tpot_mean_ms;
  j["tpot_p50_ms"] = m.tpot_p50_ms;
  j["tpot_p99_ms"] = m.tpot_p99_ms;
  j["tokens_per_s"] = m.tokens_per_s;
  j["mean_utilisation"] = m.mean_utilisation;
  j["attention_idle_ns"] = m.attention_idle_ns;
  j["moe_idle_ns"] = m.moe_idle_ns;
  j["exposed_comm_ns"] = m.exposed_comm_ns;
  j["makespan_ns"] = m.makespan_ns;
}

void get_metrics_summary(const nlohmann::json& j, plan::RunMetrics& m) {
  m.tpot_mean_ms = j.at("tpot_mean_ms").get<double>();
  m.tpot_p50_ms = j.at("tpot_p50_ms").get<double>();
  m.tpot_p99_ms = j.at("tpot_p99_ms").get<double>();
  m.tokens_per_s = j.at("tokens_per_s").get<double>();
  m.mean_utilisation = j.at("mean_utilisation").get<double>();
  m.attention_idle_ns = j.at("attention_idle_ns").get<int64_t>();
  m.moe_idle_ns = j.at("moe_idle_ns").get<int64_t>();
  m.exposed_comm_ns = j.at("exposed_comm_ns").get<int64_t>();
  m.makespan_ns = j.at("makespan_ns").get<int64_t>();
}

std::string point_record_path(const std::string& out_dir, int index) {
  return (std::filesystem::path(out_dir) / "points" / fmt::format("{}.json", index)).string();
}

void write_point_record(const std::string& out_dir, int index, const std::string& key,
                        const PointResult& r) {
  nlohmann::ordered_json j;
  j["format"] = "masep-sweep-point/1";
  j["key"] = key;
  j["point"] = index;
  j["ok"] = r.ok;
  j["error"] = r.error;
  j["plan_kind"] = r.plan_kind;
  j["gpus"] = r.gpus;
  j["attention_gpus"] = r.attention_gpus;
  j["moe_gpus"] = r.moe_gpus;
  j["batch"] = r.batch;
  j["events"] = r.events;
  const auto& m = r.metrics;
  put_metrics_summary(j, m);
  j["steps"] = m.steps;
  j["batch_metric"] = m.batch;
  const std::string path = point_record_path(out_dir, index);
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  plan::write_output_file(path, "sweep point record", j.dump() + "\n");
}

std::optional<PointResult> read_point_record(const std::string& out_dir, int index,
                                             const std::string& key) {
  const std::string path = point_record_path(out_dir, index);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  const std::string text = plan::read_input_file(path, "sweep point record", kMaxRecordBytes);
  PointResult r;
  try {
    const auto j = nlohmann::json::parse(text);
    if (j.at("format") != "masep-sweep-point/1") throw std::runtime_error("unknown format");
    if (j.at("point").get<int>() != index) {
      throw std::runtime_error(fmt::format("it is the record of point {}", j.at("point").get<int>()));
    }
    if (j.at("key").get<std::string>() != key) {
      throw std::runtime_error(fmt::format(
          "it was written by another sweep, other options or another masep build (key {}, "
          "this run's {}); use another --out or --fresh",
          j.at("key").get<std::string>(), key));
    }
    r.ok = j.at("ok").get<bool>();
    r.error = j.at("error").get<std::string>();
    r.plan_kind = j.at("plan_kind").get<std::string>();
    r.gpus = j.at("gpus").get<int>();
    r.attention_gpus = j.at("attention_gpus").get<int>();
    r.moe_gpus = j.at("moe_gpus").get<int>();
    r.batch = j.at("batch").get<int>();
    r.events = j.at("events").get<uint64_t>();
    auto& m = r.metrics;
    get_metrics_summary(j, m);
    m.steps = j.at("steps").get<int>();
    m.batch = j.at("batch_metric").get<int>();
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("{}: not a usable point record: {}", path, e.what()));
  }
  return r;
}

}  // namespace masep::tools
