// `masep profile`: micro-benchmarks of the kernels and NCCL calls a Program launches, on this
// host's GPUs, written as a calibration (plan/calibration.hpp) for `masep sim --calibration`.
//
// Harness (nccl-tests shape): for every point, `warmup` untimed launches, then `iters`
// back-to-back launches between two CUDA events on the stream; the point's time is the
// elapsed time / iters (multi-GPU points: one host thread per GPU, the GPUs released together
// by a barrier, time = the slowest GPU's). Every table is verified once: GEMMs against a CPU
// dot product, kernels for finite outputs, NCCL calls by checking received values.
//
// What is measured (docs/calibration.md):
//   gemm       cuBLAS bf16 (cublasGemmEx, fp32 compute, as the executor) for every (n, k) of
//              the compute ops of ProfileOptions::programs (the command compiles the built-in
//              scenarios, one decode step), plus in the full grid every shape a zoo model
//              can have on up to 8 GPUs per group (profile_shapes.hpp); m over a grid
//   attention  kernels::launch_decode_attention for every (heads, kv_heads, head_dim) of
//              the built-in scenarios' attention ops, batch x context grid
//   kernels    rmsnorm, add_norm, rope, act, router, permute, combine (the kernels), and
//              moe_permute / moe_unpermute (device copies, as the executor's forced routing),
//              by the op's hbm_bytes as the plan compiler counts them
//   comm       NCCL all_reduce, all_gather, reduce_scatter (bf16), all_to_all (grouped
//              send/recv), send_recv (one direction) by bytes per rank, 1 KB to 256 MB,
//              groups of 2, 4, 8 GPUs of this node (ncclCommInitAll, one process)
// Weights are rotated over an arena larger than L2, so GEMMs read their weights from HBM as
// in a real decode step. The profiler never looks at end-to-end runs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "masep/plan/calibration.hpp"
#include "masep/plan/program.hpp"

namespace masep::exec {

struct ProfileOptions {
  bool quick = false;  ///< small grids (a couple of minutes at most)
  int gpus = 0;        ///< GPUs to use for NCCL tables (0 = all visible; 1 = no comm tables)
  int warmup = 0;      ///< untimed launches per point (0 = default: 10, quick 5)
  int iters = 0;       ///< timed launches per point (0 = default: 50, quick 20; fewer for
                       ///< large NCCL sizes)
  /// Called with one progress line per table (may be empty = silent).
  std::function<void(const std::string&)> progress;
  /// The Programs whose shapes are measured (GEMM n×k, attention head shapes, the models'
  /// element-wise sizes): the command compiles the built-in scenarios, one decode step each.
  std::vector<plan::Program> programs;
  /// The full grid (not quick) also measures every shape these models can have
  /// (profile_shapes.hpp: head and expert splits up to 8 GPUs) and their element-wise
  /// kernels (the command passes the built-in model zoo).
  std::vector<models::Model> zoo_models;
};

/// Runs the micro-benchmarks on GPU 0 (compute) and GPUs 0..gpus-1 (NCCL) and returns the
/// calibration. Throws GpuError on a CUDA/NCCL/cuBLAS failure, std::runtime_error when a
/// verification fails or no GPU is present.
plan::Calibration run_profile(const ProfileOptions& options);

}  // namespace masep::exec
