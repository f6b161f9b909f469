// Shared helpers of the simulator tests: a small test GPU and a star platform.
#pragma once

#include "masep/sim/platform.hpp"
#include "masep/topology/gpu_spec.hpp"

namespace masep::sim::testing {

/// 100 TFLOP/s (1e5 FLOP/ns) and 1000 GB/s (1000 bytes/ns): round numbers for closed forms.
inline topology::GpuSpec test_gpu() {
  topology::GpuSpec g;
  g.name = "TestGPU";
  g.bf16_tflops = 100;
  g.fp16_tflops = 100;
  g.hbm_gb = 80;
  g.hbm_GBps = 1000;
  g.sm_count = 100;
  g.nvlink_GBps = 100;
  return g;
}

/// `gpus` GPUs on a star switch, each with up/down links of `GBps` and `hop_ns` latency
/// (a route between two GPUs is 2 hops: 2 · hop_ns).
inline Platform star(int gpus, double GBps = 100, double hop_ns = 500, int per_node = 0) {
  return Platform::star(test_gpu(), gpus, per_node > 0 ? per_node : gpus, GBps, hop_ns);
}

}  // namespace masep::sim::testing
