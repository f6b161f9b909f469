// Time prediction (issue 17): how long an op, an expert or a GPU's share of a decode step
// takes, predicted from shapes alone (tokens, context lengths, active experts, bytes), cheap
// enough to call per step per GPU. The load balancer (balancer.hpp) ranks placements by it;
// `masep predict` reports its error against the simulator per op kind (docs/load-balancing.md).
//
// Lives in plan/ (not sim/) because the compiler's placement calls it: CUDA-free, no
// dependency on sim/ or exec/. It mirrors the simulator's compute cost models without
// sharing code with them:
//   roofline (no calibration)  launch_overhead_ns + max(flops / (peak · eff_flops(kind)),
//                              hbm_bytes / (hbm_GBps · eff_hbm(kind)))   (sim/compute_model.hpp)
//   calibrated                 the calibrated simulator's lookup itself
//                              (plan/calibration_lookup.hpp: GEMM, grouped GEMM, attention and
//                              kernel tables) + launch.event_overhead_ns per launch; roofline
//                              where no table applies.
// Communication ops are predicted from bytes and the link rate on idle links:
//   kExchange            alpha_sendrecv_ns + max(bytes sent, bytes received) / link GB/s
//   kSend / kRecv        alpha_sendrecv_ns + bytes / link GB/s
//   all-reduce (n ranks) alpha_allreduce_ns + 2(n−1)/n · bytes / link GB/s (ring)
//   all-gather, reduce-scatter   alpha + (n−1)/n · bytes / link GB/s
//   all-to-all           alpha_alltoall_ns + (n−1)/n · bytes / link GB/s
// with the link the intra-node rate when every rank involved shares a node, else the
// slowest NIC's rate, plus the route's latency (intra-node hops, or 2 NIC hops and the
// switch). Contention, NCCL's protocol choice and waiting for peers are not
// predicted (the simulator models them); the error report shows what that costs.
//
// Units: nanoseconds (double, not rounded), bytes, tokens. Immutable after construction;
// thread-safe for concurrent reads. Owns copies of everything it reads.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "masep/models/model.hpp"
#include "masep/plan/calibration.hpp"
#include "masep/plan/program.hpp"
#include "masep/topology/topology.hpp"

namespace masep::plan {

/// Cost-model constants the predictor needs; the defaults equal the simulator's
/// (sim/parameters.hpp), and `masep predict` copies a run's overrides into them.
struct PredictorParams {
  double launch_overhead_ns = 4000;  ///< per compute kernel (roofline), ns
  double eff_flops_gemm = 0.8, eff_hbm_gemm = 0.8;
  double eff_flops_attention = 0.8, eff_hbm_attention = 0.8;
  double eff_flops_elementwise = 0.8, eff_hbm_elementwise = 0.8;
  double alpha_sendrecv_ns = 15000;   ///< per exchange / send-recv call, ns
  double alpha_allreduce_ns = 27000;  ///< per all-reduce call, ns
  double alpha_allgather_ns = 27000;
  double alpha_reducescatter_ns = 27000;
  double alpha_alltoall_ns = 36000;
};

class TimePredictor {
 public:
  /// Roofline prediction for the topology's GPU (datasheet peak and HBM bandwidth).
  /// Throws std::invalid_argument when the GPU has no positive bf16_tflops or hbm_GBps.
  TimePredictor(const topology::TopologySpec& topo, PredictorParams params = {});
  /// Calibrated prediction: `cal`'s tables first, the roofline where none applies.
  TimePredictor(const topology::TopologySpec& topo, Calibration cal, PredictorParams params = {});

  bool calibrated() const { return has_cal_; }
  const PredictorParams& params() const { return params_; }

  /// One GEMM C[m×n] = A[m×k]·B[k×n] of `dtype_bytes`-byte elements, m >= 1.
  double gemm_ns(int64_t m, int64_t n, int64_t k, int dtype_bytes = 2) const;
  /// One grouped GEMM launch: group_m[e] rows per expert (experts with 0 rows read nothing).
  /// 0 when every group is empty.
  double grouped_gemm_ns(std::span<const int32_t> group_m, int64_t n, int64_t k,
                         int dtype_bytes = 2) const;
  /// Decode attention of `batch` sequences holding `kv_tokens` KV tokens in all, with the
  /// local head shape; appends one token per sequence when `append`.
  double attention_ns(int32_t batch, int32_t heads, int32_t kv_heads, int32_t head_dim,
                      int64_t kv_tokens, bool append = true, int dtype_bytes = 2) const;
  /// Marginal cost of one routed expert copy receiving `tokens` rows in one MoE launch: its
  /// share of the expert_up and expert_down grouped GEMMs (weights read once if tokens > 0,
  /// plus the rows), without the launches' fixed overhead (a GPU pays that once per grouped
  /// GEMM, whatever its experts). 0 for tokens <= 0. Memory-bound decode: ≈ the expert's
  /// weight bytes / HBM bandwidth whether it gets 1 token or 20.
  double expert_ns(const models::Model& m, double tokens) const;
  /// Predicted time of one MoE launch sequence on a GPU (moe_permute, expert_up, act,
  /// expert_down, moe_unpermute) for rows per local expert `group_m` (shared experts
  /// included, as in the Program) receiving `received_rows` dispatched rows; 0 when no rows.
  double moe_gpu_ns(const models::Model& m, std::span<const int32_t> group_m,
                    int64_t received_rows) const;

  /// Any compute op of a Program (kGemm .. kCombine), from its shape and bytes.
  double compute_ns(const Op& op) const;
  /// Any op of `p` (communication ops read their collective / exchange and the ranks' GPUs).
  double op_ns(const Program& p, const Op& op) const;

  /// Predicted compute-stream busy time of every plan rank in decode step `step` of `p`
  /// (Σ compute_ns of the rank's compute ops of that step), ns, indexed by plan rank.
  std::vector<double> rank_compute_ns(const Program& p, int step) const;

  /// Link rate a transfer between two GPUs gets on idle links, GB/s (= bytes per ns): the
  /// intra-node rate, or across nodes the slowest NIC's (capped by the intra-node rate).
  double link_GBps(bool cross_node) const;

 private:
  double roofline_ns(double flops, double bytes, OpKind kind) const;
  double route_latency_ns(bool cross_node) const;
  double transfer_ns(const Program& p, const Op& op, double bw) const;
  bool crosses_nodes(const Program& p, const Op& op) const;

  topology::TopologySpec topo_;
  PredictorParams params_;
  bool has_cal_ = false;
  Calibration cal_;
  double peak_flops_per_ns_ = 0, hbm_bytes_per_ns_ = 0;
};

}  // namespace masep::plan
