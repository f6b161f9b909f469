// Sharing the NCCL unique id through MPI when masep runs under mpirun/srun. Private to exec/.
// Built with MPI (MASEP_HAVE_MPI) these call MPI; without, they throw std::runtime_error
// saying how to get a build that can.
#pragma once

#include <nccl.h>

#include "masep/exec/process_env.hpp"

namespace masep::exec::detail {

/// MPI_Init unless already initialised; checks MPI's rank/size against `env`.
void mpi_init_if_needed(const ProcessEnv& env);
/// Rank 0 creates the id, MPI_Bcast gives it to every rank.
void mpi_share_nccl_id(ncclUniqueId* id, int rank);
/// MPI_Finalize when mpi_init_if_needed initialised MPI.
void mpi_finalize();

}  // namespace masep::exec::detail
