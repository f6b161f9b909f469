// Time predictor: see time_predictor.hpp for the formulas.
#include "masep/plan/time_predictor.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "masep/plan/calibration_lookup.hpp"
#include "masep/plan/interpolation.hpp"

namespace masep::plan {

TimePredictor::TimePredictor(const topology::TopologySpec& topo, PredictorParams params)
    : topo_(topo),
      params_(params),
      peak_flops_per_ns_(topo.gpu.bf16_tflops * 1e3),
      hbm_bytes_per_ns_(topo.gpu.hbm_GBps) {
  if (!(peak_flops_per_ns_ > 0) || !(hbm_bytes_per_ns_ > 0)) {
    throw std::invalid_argument("TimePredictor: GPU '" + topo.gpu.name +
                                "' needs positive bf16_tflops and hbm_GBps");
  }
}

TimePredictor::TimePredictor(const topology::TopologySpec& topo, Calibration cal,
                             PredictorParams params)
    : TimePredictor(topo, params) {
  validate_calibration(cal);
  cal_ = std::move(cal);
  has_cal_ = true;
}

double TimePredictor::roofline_ns(double flops, double bytes, OpKind kind) const {
  double ef = params_.eff_flops_elementwise, eh = params_.eff_hbm_elementwise;
  if (kind == OpKind::kGemm || kind == OpKind::kGroupedGemm) {
    ef = params_.eff_flops_gemm;
    eh = params_.eff_hbm_gemm;
  } else if (kind == OpKind::kAttention) {
    ef = params_.eff_flops_attention;
    eh = params_.eff_hbm_attention;
  }
  return params_.launch_overhead_ns +
         std::max(flops / (peak_flops_per_ns_ * ef), bytes / (hbm_bytes_per_ns_ * eh));
}

double TimePredictor::gemm_ns(int64_t m, int64_t n, int64_t k, int dt) const {
  if (has_cal_) {
    const double t = calibrated_gemm_ns(cal_, m, n, k, nullptr);
    if (t >= 0) return t + cal_.launch.event_overhead_ns;
  }
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const double bytes = static_cast<double>(n * k * dt + m * (k + n) * dt);
  return roofline_ns(flops, bytes, OpKind::kGemm);
}

double TimePredictor::grouped_gemm_ns(std::span<const int32_t> group_m, int64_t n, int64_t k,
                                      int dt) const {
  double flops = 0, bytes = 0;
  bool any = false;
  for (int32_t m : group_m) {
    if (m <= 0) continue;
    any = true;
    flops += 2.0 * m * static_cast<double>(n) * static_cast<double>(k);
    bytes += static_cast<double>(n * k * dt + static_cast<int64_t>(m) * (k + n) * dt);
  }
  if (!any) return has_cal_ ? 0 : roofline_ns(0, 0, OpKind::kGroupedGemm);
  if (has_cal_) {
    const double t = calibrated_grouped_gemm_ns(cal_, group_m, n, k, nullptr);
    if (t >= 0) return t + cal_.launch.event_overhead_ns;
  }
  return roofline_ns(flops, bytes, OpKind::kGroupedGemm);
}

double TimePredictor::attention_ns(int32_t batch, int32_t heads, int32_t kv_heads,
                                   int32_t head_dim, int64_t kv_tokens, bool append,
                                   int dt) const {
  if (has_cal_ && heads > 0 && kv_heads > 0 && head_dim > 0) {
    const double t =
        calibrated_attention_ns(cal_, batch, heads, kv_heads, head_dim, kv_tokens, nullptr);
    if (t >= 0) return t + cal_.launch.event_overhead_ns;
  }
  const double flops = 4.0 * static_cast<double>(kv_tokens) * heads * head_dim;
  const int64_t kv_tok = 2LL * kv_heads * head_dim * dt;
  const double bytes = static_cast<double>(kv_tokens * kv_tok +
                                           static_cast<int64_t>(batch) * (heads + 2 * kv_heads) *
                                               head_dim * dt +
                                           static_cast<int64_t>(batch) * heads * head_dim * dt +
                                           (append ? batch * kv_tok : 0));
  return roofline_ns(flops, bytes, OpKind::kAttention);
}

double TimePredictor::expert_ns(const models::Model& m, double tokens) const {
  if (!(tokens > 0)) return 0;
  const double dt = models::dtype_bytes(m.dtype);
  const double h = m.hidden, in = static_cast<double>(m.expert_in_columns()), f = m.expert_ffn;
  if (has_cal_) {
    const double up = calibrated_gemm_ns(cal_, 1, static_cast<int64_t>(in), m.hidden, nullptr);
    const double down = calibrated_gemm_ns(cal_, 1, m.hidden, m.expert_ffn, nullptr);
    if (up >= 0 && down >= 0) {
      // Tables are piecewise linear in m; fractional mean token counts interpolate too.
      auto at = [&](int64_t n, int64_t k) {
        const GemmTable* t = nullptr;
        for (const auto& g : cal_.gemm) {
          if (g.n == n && g.k == k) t = &g;
        }
        if (t == nullptr) {
          return calibrated_gemm_ns(cal_, std::max<int64_t>(1, std::llround(tokens)), n, k, nullptr);
        }
        return interpolate(t->points, std::max(1.0, tokens)).time_ns;
      };
      return at(static_cast<int64_t>(in), m.hidden) + at(m.hidden, m.expert_ffn);
    }
  }
  auto one = [&](double n, double k) {
    const double flops = 2.0 * tokens * n * k;
    const double bytes = n * k * dt + tokens * (k + n) * dt;
    return std::max(flops / (peak_flops_per_ns_ * params_.eff_flops_gemm),
                    bytes / (hbm_bytes_per_ns_ * params_.eff_hbm_gemm));
  };
  return one(in, h) + one(h, f);
}

double TimePredictor::moe_gpu_ns(const models::Model& m, std::span<const int32_t> group_m,
                                 int64_t rows) const {
  int64_t expert_rows = 0;
  for (int32_t x : group_m) expert_rows += std::max(0, x);
  if (rows <= 0 && expert_rows <= 0) return 0;
  const int64_t dt = models::dtype_bytes(m.dtype), h = m.hidden;
  const int64_t in = m.expert_in_columns();
  Op perm;
  perm.kind = OpKind::kPermute;
  perm.name = OpName::literal("moe_permute");
  perm.hbm_bytes = 2 * rows * h * dt;
  Op act;
  act.kind = OpKind::kElementwise;
  act.name = OpName::literal("act");
  act.hbm_bytes = expert_rows * (in + m.expert_ffn) * dt;
  Op un;
  un.kind = OpKind::kCombine;
  un.name = OpName::literal("moe_unpermute");
  un.hbm_bytes = expert_rows * h * dt + rows * h * dt;
  return compute_ns(perm) + grouped_gemm_ns(group_m, in, h, static_cast<int>(dt)) +
         compute_ns(act) + grouped_gemm_ns(group_m, h, m.expert_ffn, static_cast<int>(dt)) +
         compute_ns(un);
}

double TimePredictor::compute_ns(const Op& op) const {
  if (has_cal_ && !is_communication(op.kind)) {
    // The calibrated simulator's own lookup (plan/calibration_lookup.hpp) and event overhead.
    const double t = calibrated_op_ns(cal_, op, nullptr);
    if (t > 0) return t + cal_.launch.event_overhead_ns;
    if (t == 0) return 0;
  }
  // The simulator rounds up to whole ns; so does the prediction of a compute op.
  return std::ceil(roofline_ns(op.flops, static_cast<double>(op.hbm_bytes), op.kind) - 1e-9);
}

double TimePredictor::link_GBps(bool cross_node) const {
  if (!cross_node || topo_.nics.empty()) return topo_.intra_GBps;
  double r = std::numeric_limits<double>::infinity();
  for (const auto& n : topo_.nics) r = std::min(r, n.GBps);
  return std::min(r, topo_.intra_GBps);
}

bool TimePredictor::crosses_nodes(const Program& p, const Op& op) const {
  const int per = std::max(1, topo_.gpus_per_node);
  const int node = p.ranks[static_cast<size_t>(op.rank)].gpu / per;
  auto other = [&](int rank) { return p.ranks[static_cast<size_t>(rank)].gpu / per != node; };
  if (op.kind == OpKind::kExchange) {
    for (const Transfer& t : p.exchanges[static_cast<size_t>(op.exchange)].transfers) {
      if (t.src_op == op.id && other(p.ops[static_cast<size_t>(t.dst_op)].rank)) return true;
      if (t.dst_op == op.id && other(p.ops[static_cast<size_t>(t.src_op)].rank)) return true;
    }
    return false;
  }
  if (op.kind == OpKind::kSend || op.kind == OpKind::kRecv) return op.peer >= 0 && other(op.peer);
  if (is_collective(op.kind)) {
    const auto& c = p.collectives[static_cast<size_t>(op.collective)];
    for (int r : p.groups[static_cast<size_t>(c.group)].ranks) {
      if (other(r)) return true;
    }
  }
  return false;
}

double TimePredictor::route_latency_ns(bool cross_node) const {
  const double hops = topo_.intra == topology::Fabric::kNVLinkMesh ? 1 : 2;
  if (!cross_node || topo_.nics.empty()) return hops * topo_.intra_latency_ns;
  double nic = 0;
  for (const auto& n : topo_.nics) nic = std::max(nic, n.latency_ns);
  return 2 * nic + topo_.switch_latency_ns;
}

double TimePredictor::op_ns(const Program& p, const Op& op) const {
  if (!is_communication(op.kind)) return compute_ns(op);
  const bool cross = crosses_nodes(p, op);
  return route_latency_ns(cross) + transfer_ns(p, op, link_GBps(cross));
}

double TimePredictor::transfer_ns(const Program& p, const Op& op, double bw) const {
  const double bytes = static_cast<double>(op.comm_bytes);
  switch (op.kind) {
    case OpKind::kExchange: {
      double sent = 0;
      for (const Transfer& t : p.exchanges[static_cast<size_t>(op.exchange)].transfers) {
        if (t.src_op == op.id) sent += static_cast<double>(t.bytes);
      }
      return params_.alpha_sendrecv_ns + std::max(sent, bytes - sent) / bw;
    }
    case OpKind::kSend:
    case OpKind::kRecv:
      return params_.alpha_sendrecv_ns + bytes / bw;
    default:
      break;
  }
  const auto& c = p.collectives[static_cast<size_t>(op.collective)];
  const double n = static_cast<double>(p.groups[static_cast<size_t>(c.group)].ranks.size());
  const double frac = n > 1 ? (n - 1) / n : 0;
  switch (op.kind) {
    case OpKind::kAllReduce:
      return params_.alpha_allreduce_ns + 2 * frac * bytes / bw;
    case OpKind::kAllGather:
      return params_.alpha_allgather_ns + frac * bytes / bw;
    case OpKind::kReduceScatter:
      return params_.alpha_reducescatter_ns + frac * bytes / bw;
    default:
      return params_.alpha_alltoall_ns + frac * bytes / bw;
  }
}

std::vector<double> TimePredictor::rank_compute_ns(const Program& p, int step) const {
  std::vector<double> out(static_cast<size_t>(p.rank_count()), 0.0);
  for (const Op& op : p.ops) {
    if (op.step != step || is_communication(op.kind)) continue;
    out[static_cast<size_t>(op.rank)] += compute_ns(op);
  }
  return out;
}

}  // namespace masep::plan
