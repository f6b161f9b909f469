// Every tunable of the simulator's cost models, declared once with its name, unit, default
// and a line of documentation (SimGrid/ns-3 style self-documenting parameters). `masep sim
// --help` and docs/simulator-model.md are generated from / checked against this table.
//
// Values live in SimParams (plain doubles, one field per table row). A run starts from the
// defaults, then SimOptions::comm_interference, then SimOptions::params overrides by name
// (unknown names are an error, never silently ignored).
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

namespace masep::sim {

/// Values of every tunable; the defaults are the table's defaults (see parameter_table()).
struct SimParams {
  double launch_overhead_ns = 4000;         ///< per compute kernel, ns
  double eff_flops_gemm = 0.8;              ///< fraction of peak FLOP/s reached by GEMMs
  double eff_hbm_gemm = 0.8;                ///< fraction of HBM bandwidth reached by GEMMs
  double eff_flops_attention = 0.8;         ///< fraction of peak FLOP/s, decode attention
  double eff_hbm_attention = 0.8;           ///< fraction of HBM bandwidth, decode attention
  double eff_flops_elementwise = 0.8;       ///< norms, router, permute, combine
  double eff_hbm_elementwise = 0.8;         ///< norms, router, permute, combine
  double eff_hbm_local_copy = 0.8;          ///< same-GPU transfers: copy at hbm·eff/2
  double alpha_sendrecv_ns = 15000;         ///< per-call latency of a send/recv pair, ns
  double alpha_allreduce_ns = 27000;        ///< per-call latency of an all-reduce, ns
  double alpha_allgather_ns = 27000;        ///< per-call latency of an all-gather, ns
  double alpha_reducescatter_ns = 27000;    ///< per-call latency of a reduce-scatter, ns
  double alpha_alltoall_ns = 36000;         ///< per-call latency of an all-to-all, ns
  double coll_phase_overhead_ns = 0;        ///< extra latency per collective phase, ns
  double comm_interference = 0;             ///< compute slow-down while bytes move on the GPU
  double comm_resident_interference = 0;    ///< compute slow-down while a comm op runs there
                                            ///< but moves no bytes
  double launch_gap_ns = 0;                 ///< idle time on a stream before every op starts, ns
  double nccl_call_overhead_ns = 16000;     ///< NCCL model: host cost of one eager collective call
  double deepep_normal_call_ns = 15000;     ///< DeepEP-style normal exchange stage latency, ns
  double deepep_ll_call_ns = 6000;          ///< DeepEP-style low-latency exchange latency, ns
  double nccl_p2p_call_overhead_ns = 9000;  ///< NCCL model: the same per peer of an all-to-all
  double network_tier = 0;                ///< 0 = flow (max-min), 1 = fluid, 2 = auto
  double network_auto_flows = 1024;       ///< auto: fluid above this many flows in one phase
};

/// One row of the parameter table.
struct ParamInfo {
  const char* name;  ///< e.g. "launch_overhead_ns"
  const char* unit;  ///< e.g. "ns", "fraction"
  double default_value;
  const char* doc;           ///< one line: what it is and where the default comes from
  double SimParams::*field;  ///< the value it sets
  double min_value;          ///< smallest accepted value (inclusive)
  double max_value;          ///< largest accepted value (inclusive)
};

/// The table, in documentation order. Static storage; never changes.
std::span<const ParamInfo> parameter_table();

/// Defaults with `overrides` applied in order. Throws std::invalid_argument naming the
/// parameter for an unknown name or a value outside [min_value, max_value].
SimParams resolve_params(const std::vector<std::pair<std::string, double>>& overrides,
                         SimParams base = {});

/// The table as a Markdown table (name | unit | default | meaning), for docs and --help.
std::string parameter_table_markdown();

}  // namespace masep::sim
