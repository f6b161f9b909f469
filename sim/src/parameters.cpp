#include "masep/sim/parameters.hpp"

#include <fmt/format.h>

#include <array>
#include <limits>
#include <stdexcept>

#include "masep/plan/limits.hpp"

namespace masep::sim {
namespace {

// Upper bound of every ns parameter: a calibrated time's bound (plan/limits.hpp, 10 s), since
// a calibration's comm tables set the alpha_*_ns latencies.
constexpr double kMaxNs = plan::kCalibratedTimeNs.hi;

// Sources of the defaults: /work/shared GPU.md (measured on H200 with NCCL 2.28 and PyTorch
// 2.11): bf16 8192^3 GEMM 770-800 of 989 TFLOP/s (~0.8); expert FFN weight streaming at
// 77% of copy bandwidth, SDPA decode 80-95%; eager NCCL calls of 8 KB: send/recv ~15 us,
// all-reduce ~27 us, all-to-all ~36 us. The 4 us launch overhead is a typical eager
// kernel launch gap (CUDA graphs lower it).
const std::array<ParamInfo, 23> kTable = {{
    {"launch_overhead_ns", "ns", 4000,
     "fixed cost added to every compute kernel (typical eager launch; CUDA graphs lower it)",
     &SimParams::launch_overhead_ns, 0, kMaxNs},
    {"eff_flops_gemm", "fraction", 0.8,
     "GEMM / grouped GEMM share of peak bf16 FLOP/s (GPU.md: 770-800 of 989 TFLOP/s)",
     &SimParams::eff_flops_gemm, 1e-6, 1},
    {"eff_hbm_gemm", "fraction", 0.8,
     "GEMM share of HBM bandwidth when weight-bound (GPU.md: FFN weights at ~77% of copy)",
     &SimParams::eff_hbm_gemm, 1e-6, 1},
    {"eff_flops_attention", "fraction", 0.8, "decode attention share of peak bf16 FLOP/s",
     &SimParams::eff_flops_attention, 1e-6, 1},
    {"eff_hbm_attention", "fraction", 0.8,
     "decode attention share of HBM bandwidth reading the KV cache (datasheet default)",
     &SimParams::eff_hbm_attention, 1e-6, 1},
    {"eff_flops_elementwise", "fraction", 0.8,
     "norms, router, permute, combine: share of peak bf16 FLOP/s",
     &SimParams::eff_flops_elementwise, 1e-6, 1},
    {"eff_hbm_elementwise", "fraction", 0.8,
     "norms, router, permute, combine: share of HBM bandwidth", &SimParams::eff_hbm_elementwise,
     1e-6, 1},
    {"eff_hbm_local_copy", "fraction", 0.8,
     "same-GPU transfer: copies at hbm_GBps * eff / 2 (each byte read and written)",
     &SimParams::eff_hbm_local_copy, 1e-6, 1},
    {"alpha_sendrecv_ns", "ns", 15000,
     "per-call latency of a send/recv pair (GPU.md: 8 KB eager NCCL send/recv on H200)",
     &SimParams::alpha_sendrecv_ns, 0, kMaxNs},
    {"alpha_allreduce_ns", "ns", 27000,
     "per-call latency of an all-reduce (GPU.md: 8 KB eager NCCL all-reduce on H200)",
     &SimParams::alpha_allreduce_ns, 0, kMaxNs},
    {"alpha_allgather_ns", "ns", 27000,
     "per-call latency of an all-gather (not measured; assumed equal to all-reduce)",
     &SimParams::alpha_allgather_ns, 0, kMaxNs},
    {"alpha_reducescatter_ns", "ns", 27000,
     "per-call latency of a reduce-scatter (not measured; assumed equal to all-reduce)",
     &SimParams::alpha_reducescatter_ns, 0, kMaxNs},
    {"alpha_alltoall_ns", "ns", 36000,
     "per-call latency of an all-to-all (GPU.md: 8 KB eager NCCL all-to-all on H200)",
     &SimParams::alpha_alltoall_ns, 0, kMaxNs},
    {"coll_phase_overhead_ns", "ns", 0,
     "extra latency added to every phase (ring step, tree level) of a collective",
     &SimParams::coll_phase_overhead_ns, 0, kMaxNs},
    {"comm_interference", "fraction", 0,
     "while a transfer moves bytes to or from a GPU, its compute progresses at (1 - this) "
     "speed (set from a calibration's launch.comm_slowdown)",
     &SimParams::comm_interference, 0, 0.99},
    {"comm_resident_interference", "fraction", 0,
     "while a comm op is running on a GPU (posted, not finished) but no bytes move there, its "
     "compute progresses at (1 - this) speed: NCCL kernels occupy SMs while they wait (set "
     "from a calibration's launch.comm_resident_slowdown)",
     &SimParams::comm_resident_interference, 0, 0.99},
    {"launch_gap_ns", "ns", 0,
     "idle time on a stream before every op starts (the executor's end-event to next "
     "start-event gap; set from a calibration's launch section)",
     &SimParams::launch_gap_ns, 0, kMaxNs},
    {"nccl_call_overhead_ns", "ns", 16000,
     "NCCL collective model: host cost of issuing one all-reduce / all-gather / reduce-scatter "
     "eagerly, on top of NCCL's device-time model (GPU.md, 4xH200: 8 KB all-reduce 27 us eager "
     "vs 11 us in a CUDA graph); 0 models calls captured in a CUDA graph",
     &SimParams::nccl_call_overhead_ns, 0, kMaxNs},
    {"nccl_p2p_call_overhead_ns", "ns", 9000,
     "NCCL collective model: host cost per peer of an eager all-to-all (a group of send/recv; "
     "GPU.md, 4xH200: 8 KB send/recv 15 us eager vs 6 us in a graph); 0 for CUDA graphs",
     &SimParams::nccl_p2p_call_overhead_ns, 0, kMaxNs},
    {"deepep_normal_call_ns", "ns", 15000,
     "per-call latency of a DeepEP-style normal exchange stage (plan.expert_exchange.mode "
     "hierarchical: eager launch, the host waits for the receive counts); assumed equal to an "
     "eager 8 KB NCCL send/recv (GPU.md, H200: 15 us)",
     &SimParams::deepep_normal_call_ns, 0, kMaxNs},
    {"deepep_ll_call_ns", "ns", 6000,
     "per-call latency of a DeepEP-style low-latency exchange (plan.expert_exchange.mode "
     "low_latency: captured in a CUDA graph); assumed equal to an 8 KB NCCL send/recv in a CUDA "
     "graph (GPU.md, H200: 6 us)",
     &SimParams::deepep_ll_call_ns, 0, kMaxNs},
    {"network_tier", "0/1/2", 0,
     "network model (masep sim --network): 0 = flow, per-flow max-min (the reference); 1 = "
     "fluid, each phase of flows timed once from its links' loads (fluid_network.hpp); 2 = "
     "auto, fluid when one exchange or all-to-all has more than network_auto_flows transfers",
     &SimParams::network_tier, 0, 2},
    {"network_auto_flows", "flows", 1024,
     "network_tier = 2: the largest exchange or all-to-all (transfers) the flow tier still runs",
     &SimParams::network_auto_flows, 0, 1e9},
}};

}  // namespace

std::span<const ParamInfo> parameter_table() { return kTable; }

SimParams resolve_params(const std::vector<std::pair<std::string, double>>& overrides,
                         SimParams base) {
  for (const auto& [name, value] : overrides) {
    const ParamInfo* info = nullptr;
    for (const ParamInfo& p : kTable) {
      if (name == p.name) info = &p;
    }
    if (info == nullptr) {
      std::string known;
      for (const ParamInfo& p : kTable)
        known += fmt::format("{}{}", known.empty() ? "" : ", ", p.name);
      throw std::invalid_argument(
          fmt::format("unknown simulator parameter '{}' (known: {})", name, known));
    }
    if (!(value >= info->min_value && value <= info->max_value)) {
      throw std::invalid_argument(fmt::format("simulator parameter {} = {} is outside [{}, {}]",
                                              name, value, info->min_value, info->max_value));
    }
    base.*(info->field) = value;
  }
  return base;
}

std::string parameter_table_markdown() {
  std::string out = "| name | unit | default | meaning |\n|---|---|---|---|\n";
  for (const ParamInfo& p : kTable) {
    out += fmt::format("| `{}` | {} | {} | {} |\n", p.name, p.unit, p.default_value, p.doc);
  }
  return out;
}

}  // namespace masep::sim
