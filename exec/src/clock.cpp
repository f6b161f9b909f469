#include "masep/exec/clock.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace masep::exec {

std::vector<int64_t> encode(const RankTimings& t) {
  if (t.start_rel_ns.size() != t.end_rel_ns.size()) {
    throw std::invalid_argument("RankTimings: start and end sizes differ");
  }
  std::vector<int64_t> v;
  v.reserve(encoded_size(t.start_rel_ns.size()));
  v.push_back(t.ref_host_ns);
  v.push_back(t.barrier_exit_host_ns);
  v.push_back(static_cast<int64_t>(t.start_rel_ns.size()));
  for (size_t i = 0; i < t.start_rel_ns.size(); ++i) {
    v.push_back(t.start_rel_ns[i]);
    v.push_back(t.end_rel_ns[i]);
  }
  return v;
}

RankTimings decode(int32_t rank, const std::vector<int64_t>& flat, size_t ops) {
  if (flat.size() != encoded_size(ops) || flat[2] != static_cast<int64_t>(ops)) {
    throw std::invalid_argument(
        fmt::format("rank {}: timings of {} values, expected {} ops", rank, flat.size(), ops));
  }
  RankTimings t;
  t.rank = rank;
  t.ref_host_ns = flat[0];
  t.barrier_exit_host_ns = flat[1];
  for (size_t i = 0; i < ops; ++i) {
    t.start_rel_ns.push_back(flat[3 + 2 * i]);
    t.end_rel_ns.push_back(flat[4 + 2 * i]);
  }
  return t;
}

std::vector<plan::OpId> rank_ops(const plan::Program& p, int rank) {
  std::vector<plan::OpId> ids;
  for (const auto& o : p.ops) {
    if (o.rank == rank) ids.push_back(o.id);
  }
  return ids;
}

AlignedRun align(const plan::Program& p, const std::vector<RankTimings>& ranks,
                 const std::string& device) {
  if (static_cast<int>(ranks.size()) != p.rank_count()) {
    throw std::invalid_argument(
        fmt::format("timings of {} ranks for a Program of {}", ranks.size(), p.rank_count()));
  }
  AlignedRun out;
  out.timeline.source = "measured";
  out.timeline.device = device;
  out.timeline.ops.assign(p.ops.size(), plan::OpTiming{});
  int64_t origin = std::numeric_limits<int64_t>::max();
  int64_t bmin = std::numeric_limits<int64_t>::max(), bmax = std::numeric_limits<int64_t>::min();
  std::vector<std::vector<plan::OpId>> ids(ranks.size());
  for (size_t r = 0; r < ranks.size(); ++r) {
    ids[r] = rank_ops(p, static_cast<int>(r));
    const RankTimings& t = ranks[r];
    if (t.start_rel_ns.size() != ids[r].size() || t.end_rel_ns.size() != ids[r].size()) {
      throw std::invalid_argument(fmt::format("rank {}: timings for {} ops, the rank has {}", r,
                                              t.start_rel_ns.size(), ids[r].size()));
    }
    bmin = std::min(bmin, t.barrier_exit_host_ns);
    bmax = std::max(bmax, t.barrier_exit_host_ns);
    for (size_t i = 0; i < ids[r].size(); ++i) {
      if (t.start_rel_ns[i] < 0 && t.end_rel_ns[i] < 0) continue;
      origin = std::min(origin, t.ref_host_ns + t.start_rel_ns[i]);
    }
  }
  if (origin == std::numeric_limits<int64_t>::max()) origin = 0;
  out.origin_host_ns = origin;
  out.barrier_spread_ns = ranks.empty() ? 0 : bmax - bmin;
  for (size_t r = 0; r < ranks.size(); ++r) {
    const RankTimings& t = ranks[r];
    for (size_t i = 0; i < ids[r].size(); ++i) {
      if (t.start_rel_ns[i] < 0 && t.end_rel_ns[i] < 0) continue;
      auto& ot = out.timeline.ops[static_cast<size_t>(ids[r][i])];
      ot.start_ns = t.ref_host_ns + t.start_rel_ns[i] - origin;
      ot.end_ns = std::max(ot.start_ns, t.ref_host_ns + t.end_rel_ns[i] - origin);
      out.timeline.makespan_ns = std::max(out.timeline.makespan_ns, ot.end_ns);
    }
  }
  return out;
}

}  // namespace masep::exec
