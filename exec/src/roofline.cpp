// The decode step against its critical-path roofline (see executor.hpp), and the verify
// helpers that need no GPU. Pure CPU.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "masep/exec/executor.hpp"

namespace masep::exec {

Roofline compute_roofline(const plan::Program& p, const std::vector<double>& copy_GBps,
                          double tpot_ms) {
  const int n = p.rank_count();
  if (static_cast<int>(copy_GBps.size()) != n) {
    throw std::invalid_argument("compute_roofline: one copy bandwidth per rank is needed");
  }
  const double steps = std::max(1, p.steps);
  std::vector<double> hbm(n, 0), sent(n, 0), recv(n, 0);
  for (const auto& o : p.ops) {
    const auto r = static_cast<size_t>(o.rank);
    if (!plan::is_communication(o.kind)) {
      hbm[r] += static_cast<double>(o.hbm_bytes);
      continue;
    }
    switch (o.kind) {
      case plan::OpKind::kSend:
        sent[r] += static_cast<double>(o.comm_bytes);
        break;
      case plan::OpKind::kRecv:
        recv[r] += static_cast<double>(o.comm_bytes);
        break;
      case plan::OpKind::kExchange:
        break;  // below, from the transfers
      default: {
        // Collectives, ring algorithms: every member sends and receives (g−1)/g of the
        // buffer (all-reduce twice that); all-to-all from its matrix.
        const auto& c = p.collectives.at(static_cast<size_t>(o.collective));
        const double g =
            static_cast<double>(p.groups.at(static_cast<size_t>(c.group)).ranks.size());
        double b = static_cast<double>(c.bytes) * (g - 1) / std::max(1.0, g);
        if (o.kind == plan::OpKind::kAllReduce) b *= 2;
        sent[r] += b;
        recv[r] += b;
        break;
      }
    }
  }
  for (const auto& ex : p.exchanges) {
    for (const auto& t : ex.transfers) {
      sent[static_cast<size_t>(p.ops.at(static_cast<size_t>(t.src_op)).rank)] +=
          static_cast<double>(t.bytes);
      recv[static_cast<size_t>(p.ops.at(static_cast<size_t>(t.dst_op)).rank)] +=
          static_cast<double>(t.bytes);
    }
  }
  const double link_GBps = p.layout.intra_node_GBps > 0 ? p.layout.intra_node_GBps : 0;
  Roofline rf;
  rf.rank_hbm_ns.assign(n, 0);
  rf.rank_comm_ns.assign(n, 0);
  rf.rank_floor_ns.assign(n, 0);
  for (int r = 0; r < n; ++r) {
    const double bw = copy_GBps[static_cast<size_t>(r)];
    rf.rank_hbm_ns[r] = bw > 0 ? hbm[r] / steps / bw : 0;  // GB/s == bytes/ns
    rf.rank_comm_ns[r] = link_GBps > 0 ? std::max(sent[r], recv[r]) / steps / link_GBps : 0;
    rf.rank_floor_ns[r] = rf.rank_hbm_ns[r] + rf.rank_comm_ns[r];
    if (rf.rank_floor_ns[r] > rf.step_floor_ns) {
      rf.step_floor_ns = rf.rank_floor_ns[r];
      rf.critical_rank = r;
    }
  }
  rf.fraction = tpot_ms > 0 ? rf.step_floor_ns / (tpot_ms * 1e6) : 0;
  return rf;
}

namespace {
double bf16_value(uint16_t bits) {
  const uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace

double relative_error_bf16(const std::vector<uint16_t>& out, const std::vector<uint16_t>& ref) {
  if (out.size() != ref.size()) {
    throw std::invalid_argument("relative_error_bf16: sizes differ");
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double a = bf16_value(out[i]), b = bf16_value(ref[i]);
    if (!std::isfinite(a) || !std::isfinite(b)) return std::numeric_limits<double>::infinity();
    num += (a - b) * (a - b);
    den += b * b;
  }
  if (den == 0) return num == 0 ? 0 : std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

}  // namespace masep::exec
