// Predictor-vs-run error tables: see prediction_error.hpp.
#include "masep/plan/prediction_error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ostream>
#include <stdexcept>

namespace masep::plan {

namespace {

struct Acc {
  std::vector<double> err;
  double pred = 0, run = 0;
};

// Start of the transfer part of a communication op: when every partner had started.
int64_t transfer_start(const Program& p, const Timeline& t, const Op& op) {
  int64_t s = t.ops[static_cast<size_t>(op.id)].start_ns;
  auto at = [&](OpId id) { s = std::max(s, t.ops[static_cast<size_t>(id)].start_ns); };
  if (op.kind == OpKind::kExchange) {
    for (const Transfer& x : p.exchanges[static_cast<size_t>(op.exchange)].transfers) {
      if (x.src_op == op.id) at(x.dst_op);
      if (x.dst_op == op.id) at(x.src_op);
    }
  } else if (op.kind == OpKind::kSend || op.kind == OpKind::kRecv) {
    if (op.match >= 0) at(op.match);
  } else if (is_collective(op.kind)) {
    for (OpId id : p.collectives[static_cast<size_t>(op.collective)].ops) at(id);
  }
  return s;
}

PredictionErrorRow summarise(const std::string& name, Acc& a) {
  PredictionErrorRow r;
  r.group = name;
  r.ops = static_cast<int64_t>(a.err.size());
  r.predicted_ms = a.pred / 1e6;
  r.run_ms = a.run / 1e6;
  if (a.err.empty()) return r;
  auto nearest = [](std::vector<double>& v, double q) {
    std::sort(v.begin(), v.end());
    const size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
    return v[std::min(i, v.size() - 1)];
  };
  std::vector<double> signed_err = a.err, abs_err;
  for (double e : a.err) abs_err.push_back(std::fabs(e));
  r.median_pct = nearest(signed_err, 0.5) * 100;
  r.median_abs_pct = nearest(abs_err, 0.5) * 100;
  r.p90_abs_pct = nearest(abs_err, 0.9) * 100;
  return r;
}

void table(std::ostream& out, const char* head, const std::vector<PredictionErrorRow>& rows) {
  out << fmt::format("{:<16} {:>9} {:>10} {:>11} {:>11} {:>12} {:>12}\n", head, "ops",
                     "median %", "median |%|", "p90 |%|", "predicted ms", "run ms");
  for (const auto& r : rows) {
    out << fmt::format("{:<16} {:>9} {:>+10.2f} {:>11.2f} {:>11.2f} {:>12.3f} {:>12.3f}\n",
                       r.group, r.ops, r.median_pct, r.median_abs_pct, r.p90_abs_pct,
                       r.predicted_ms, r.run_ms);
  }
}

}  // namespace

PredictionError prediction_error(const Program& p, const Timeline& t, const TimePredictor& tp) {
  if (t.ops.size() != p.ops.size()) {
    throw std::invalid_argument(fmt::format("prediction_error: timeline has {} ops, program {}",
                                            t.ops.size(), p.ops.size()));
  }
  constexpr int kKinds = static_cast<int>(OpKind::kExchange) + 1;
  std::vector<Acc> kinds(kKinds), roles(kOpRoleCount);
  std::vector<double> pred(p.ops.size());
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < p.ops.size(); ++i) pred[i] = tp.op_ns(p, p.ops[i]);
  const double host_ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  for (const Op& op : p.ops) {
    const OpTiming& ot = t.ops[static_cast<size_t>(op.id)];
    if (ot.start_ns < 0) continue;
    const int64_t start = is_communication(op.kind) ? transfer_start(p, t, op) : ot.start_ns;
    const double run = static_cast<double>(ot.end_ns - start);
    if (!(run > 0)) continue;
    const double e = (pred[static_cast<size_t>(op.id)] - run) / run;
    for (Acc* a : {&kinds[static_cast<size_t>(op.kind)], &roles[static_cast<size_t>(op.role)]}) {
      a->err.push_back(e);
      a->pred += pred[static_cast<size_t>(op.id)];
      a->run += run;
    }
  }
  PredictionError out;
  for (int k = 0; k < kKinds; ++k) {
    if (!kinds[k].err.empty()) {
      out.by_kind.push_back(summarise(to_string(static_cast<OpKind>(k)), kinds[k]));
    }
  }
  for (int r = 0; r < kOpRoleCount; ++r) {
    if (!roles[r].err.empty()) {
      out.by_role.push_back(summarise(to_string(static_cast<OpRole>(r)), roles[r]));
    }
  }
  out.mean_predict_ns = p.ops.empty() ? 0 : host_ns / static_cast<double>(p.ops.size());
  return out;
}

Timeline timeline_from_trace(const Program& p, const LoadedTrace& trace) {
  Timeline t;
  t.source = trace.source;
  t.device = trace.device;
  t.ops.assign(p.ops.size(), OpTiming{});
  for (const TraceOp& x : trace.ops) {
    if (x.op < 0 || static_cast<size_t>(x.op) >= p.ops.size()) {
      throw std::invalid_argument(
          fmt::format("{}: op {} ({}) is not in the Program ({} ops): a trace of another scenario?",
                      trace.path, x.op, x.name, p.ops.size()));
    }
    const Op& op = p.ops[static_cast<size_t>(x.op)];
    if (op.name.view() != x.name || op.rank != x.pid) {
      throw std::invalid_argument(fmt::format(
          "{}: op {} is '{}' on rank {} in the trace, '{}' on rank {} in the Program: a trace "
          "of another scenario or compiler version",
          trace.path, x.op, x.name, x.pid, op.name.view(), op.rank));
    }
    t.ops[static_cast<size_t>(x.op)] = OpTiming{x.start_ns, x.start_ns + x.duration_ns};
    t.makespan_ns = std::max(t.makespan_ns, x.start_ns + x.duration_ns);
  }
  return t;
}

void write_prediction_error_text(std::ostream& out, const PredictionError& e) {
  out << "error = (predicted - run) / run; communication ops from the moment all partners "
         "started\n\n";
  table(out, "op kind", e.by_kind);
  out << "\n";
  table(out, "op role", e.by_role);
}

}  // namespace masep::plan
