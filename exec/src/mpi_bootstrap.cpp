#include "mpi_bootstrap.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "masep/exec/check.hpp"
#include "masep/exec/executor.hpp"

#ifdef MASEP_HAVE_MPI
#include <mpi.h>
#endif

namespace masep::exec {

#ifdef MASEP_HAVE_MPI
bool built_with_mpi() { return true; }

namespace detail {

namespace {
bool g_we_initialised = false;
}

void mpi_init_if_needed(const ProcessEnv& env) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    MPI_Init(nullptr, nullptr);
    g_we_initialised = true;
  }
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank != env.rank || size != env.world) {
    throw std::runtime_error(
        fmt::format("MPI says rank {} of {}, the {} environment said rank {} of {}", rank, size,
                    to_string(env.mode), env.rank, env.world));
  }
}

void mpi_share_nccl_id(ncclUniqueId* id, int rank) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) throw std::logic_error("mpi_share_nccl_id before MPI_Init");
  if (rank == 0) MASEP_NCCL_CHECK(ncclGetUniqueId(id));
  MPI_Bcast(id, sizeof(ncclUniqueId), MPI_BYTE, 0, MPI_COMM_WORLD);
}

void mpi_finalize() {
  int fin = 0;
  MPI_Finalized(&fin);
  if (g_we_initialised && !fin) MPI_Finalize();
}

}  // namespace detail

std::string broadcast_text(const ProcessEnv& env, const std::string& text) {
  detail::mpi_init_if_needed(env);
  unsigned long long size = env.rank == 0 ? text.size() : 0;
  MPI_Bcast(&size, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  std::string out = env.rank == 0 ? text : std::string(size, '\0');
  // MPI counts are int: send in chunks below 1 GiB.
  constexpr unsigned long long kChunk = 1ull << 30;
  for (unsigned long long at = 0; at < size; at += kChunk) {
    const int n = static_cast<int>(std::min(kChunk, size - at));
    MPI_Bcast(out.data() + at, n, MPI_CHAR, 0, MPI_COMM_WORLD);
  }
  return out;
}

#else

bool built_with_mpi() { return false; }

namespace detail {

[[noreturn]] void no_mpi(const ProcessEnv& env) {
  throw std::runtime_error(fmt::format(
      "started by {} (rank {} of {}), but this masep was built without MPI, which it needs "
      "to share the NCCL id across processes. Rebuild with MPI development files installed "
      "(OpenMPI: libopenmpi-dev), or run `masep exec` without mpirun/srun on one host (it "
      "then starts one process per GPU itself).",
      to_string(env.mode), env.rank, env.world));
}

void mpi_init_if_needed(const ProcessEnv& env) { no_mpi(env); }
void mpi_share_nccl_id(ncclUniqueId*, int rank) {
  ProcessEnv e;
  e.mode = LaunchMode::kMpi;
  e.rank = rank;
  no_mpi(e);
}
void mpi_finalize() {}

}  // namespace detail

std::string broadcast_text(const ProcessEnv& env, const std::string&) { detail::no_mpi(env); }

#endif

}  // namespace masep::exec
