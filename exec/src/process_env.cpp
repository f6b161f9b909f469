#include "masep/exec/process_env.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>
#include <stdexcept>

namespace masep::exec {

namespace {

std::optional<int> read_int(const std::function<const char*(const char*)>& env, const char* name) {
  const char* v = env(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  int out = 0;
  const char* end = v + std::char_traits<char>::length(v);
  auto [ptr, ec] = std::from_chars(v, end, out);
  if (ec != std::errc() || ptr != end || out < 0) {
    throw std::invalid_argument(
        fmt::format("environment variable {}='{}' is not a non-negative "
                    "integer",
                    name, v));
  }
  return out;
}

}  // namespace

const char* to_string(LaunchMode m) {
  switch (m) {
    case LaunchMode::kLauncher:
      return "launcher";
    case LaunchMode::kChild:
      return "child";
    case LaunchMode::kMpi:
      return "mpi";
    case LaunchMode::kSlurm:
      return "slurm";
  }
  return "?";
}

ProcessEnv detect_process_env(const std::function<const char*(const char*)>& getenv_fn) {
  const std::function<const char*(const char*)> env =
      getenv_fn ? getenv_fn : [](const char* n) -> const char* { return std::getenv(n); };
  ProcessEnv pe;
  struct Source {
    LaunchMode mode;
    const char *rank, *world, *local, *local2;
  };
  const Source sources[] = {
      {LaunchMode::kChild, "MASEP_EXEC_RANK", "MASEP_EXEC_WORLD", "MASEP_EXEC_LOCAL_RANK", nullptr},
      {LaunchMode::kMpi, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
       "OMPI_COMM_WORLD_LOCAL_RANK", nullptr},
      {LaunchMode::kSlurm, "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", nullptr},
      {LaunchMode::kMpi, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"},
  };
  for (const Source& s : sources) {
    const auto rank = read_int(env, s.rank);
    if (!rank) continue;
    const auto world = read_int(env, s.world);
    if (!world || *world == 0) {
      throw std::invalid_argument(fmt::format("{} is set but {} is not", s.rank, s.world));
    }
    if (*rank >= *world) {
      throw std::invalid_argument(
          fmt::format("{}={} is not below {}={}", s.rank, *rank, s.world, *world));
    }
    pe.mode = s.mode;
    pe.rank = *rank;
    pe.world = *world;
    auto local = read_int(env, s.local);
    if (!local && s.local2) local = read_int(env, s.local2);
    // Without a local rank, assume one host (local = global), the only safe guess.
    pe.local_rank = local ? *local : *rank;
    if (s.mode == LaunchMode::kChild) {
      const char* id = env("MASEP_NCCL_ID");
      if (id == nullptr || *id == '\0') {
        throw std::invalid_argument("MASEP_EXEC_RANK is set but MASEP_NCCL_ID is not");
      }
      pe.nccl_id_hex = id;
    }
    return pe;
  }
  return pe;
}

std::string hex_encode(const void* data, size_t bytes) {
  static const char* const kDigits = "0123456789abcdef";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string s(bytes * 2, '0');
  for (size_t i = 0; i < bytes; ++i) {
    s[2 * i] = kDigits[p[i] >> 4];
    s[2 * i + 1] = kDigits[p[i] & 15];
  }
  return s;
}

void hex_decode(const std::string& hex, void* data, size_t bytes) {
  if (hex.size() != bytes * 2) {
    throw std::invalid_argument(
        fmt::format("hex string of {} characters, expected {}", hex.size(), bytes * 2));
  }
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument(fmt::format("'{}' is not a hex digit", c));
  };
  auto* p = static_cast<unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    p[i] = static_cast<unsigned char>(nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]));
  }
}

}  // namespace masep::exec
