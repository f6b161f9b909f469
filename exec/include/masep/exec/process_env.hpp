// How this process was started, read from its environment (pure CPU, unit-tested):
//   - child of a self-launch:  MASEP_EXEC_RANK, MASEP_EXEC_WORLD, MASEP_NCCL_ID (hex), and
//                              MASEP_EXEC_LOCAL_RANK (the GPU index on this host)
//   - OpenMPI's mpirun:        OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK
//   - Slurm's srun:            SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID
//   - a PMI launcher (MPICH, Intel MPI): PMI_RANK / PMI_SIZE (local rank from MPI_LOCALRANKID
//                              or PMI_LOCAL_RANK when present)
//   - none of these:           the launcher: `masep exec` starts one child per plan rank.
// The self-launch variables win (a child of masep run under mpirun is still a child).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace masep::exec {

enum class LaunchMode {
  kLauncher,  ///< no rank in the environment: start one process per rank on this host
  kChild,     ///< started by a masep launcher on this host
  kMpi,       ///< started by mpirun (OpenMPI) or another PMI launcher
  kSlurm,     ///< started by srun
};
const char* to_string(LaunchMode m);

struct ProcessEnv {
  LaunchMode mode = LaunchMode::kLauncher;
  int rank = 0;
  int world = 1;
  int local_rank = 0;       ///< GPU index on this host
  std::string nccl_id_hex;  ///< kChild only: the launcher's ncclUniqueId, hex
};

/// Reads the environment through `getenv` (std::getenv by default). Throws
/// std::invalid_argument naming the variable when a value is not a valid number, a rank is
/// outside [0, world), or a child lacks MASEP_NCCL_ID.
ProcessEnv detect_process_env(const std::function<const char*(const char*)>& getenv = nullptr);

/// Bytes ↔ lower-case hex (ncclUniqueId travels in MASEP_NCCL_ID). hex_decode throws
/// std::invalid_argument on odd length, non-hex characters or a size other than `bytes`.
std::string hex_encode(const void* data, size_t bytes);
void hex_decode(const std::string& hex, void* data, size_t bytes);

}  // namespace masep::exec
