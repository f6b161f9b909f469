// masep balance [SCENARIO]: expert load balancing policies side by side (issue 17). For each
// policy, compiles and simulates the scenario and prints TPOT, the MoE GPUs' simulated expert
// time (max / mean), the predicted one and token counts (max / mean), and weight moves.
#include <boost/program_options.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/plan/attention_balance.hpp"
#include "masep/plan/balancer.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/expert_load.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/output_file.hpp"
#include "masep/plan/routing_trace.hpp"
#include "masep/plan/time_predictor.hpp"
#include "sim_run.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

constexpr const char* kUsage = R"(usage: masep balance [SCENARIO] [options]

Runs SCENARIO (default: paper) once per load-balancing policy (plan.balance.policy: static,
eplb, predicted; plan/balancer.hpp) and prints per policy:
  TPOT          simulated mean time per output token, ms
  sim MoE max/mean   max / mean over MoE GPUs of the simulated time of their MoE compute ops
                (moe_permute .. moe_unpermute), whole run
  pred max/mean the same predicted by the balancer's cost (expert GEMMs), per placement epoch
                with the routing the run sampled, step-weighted mean over epochs
  tok max/mean  max / mean over MoE GPUs of the routed tokens they receive
  moves         expert copies moved (kExpertMove transfers) and their bytes
--redundant N sets plan.balance.redundant_experts for eplb and predicted; --rebalance K sets
plan.balance.rebalance_every.

--attention runs the attention-side policies instead (plan.balance.attention: static,
predicted; plan/attention_balance.hpp), the expert policy as the scenario sets it, and prints:
  TPOT          simulated, ms
  sim attn max/mean  max / mean over attention GPUs of the simulated time of their attention
                kernels (attn, mla_attention), whole run
  sim side max/mean  the same of all their attention-side compute (norms, projections, rope,
                attention, output projection)
  pred chunk max/mean  max / mean over the (replica, micro-batch) chunks of the predicted
                attention time at the sequences' mean length over the run
  idle ms       attention GPUs' mean compute-stream idle time per step (waiting), ms

--splits lists every head × sequence split of the attention replicas the plan allows
(plan.attention.head_parallel × sequence_parallel fixed), with the predicted busy time of the
busiest attention GPU in one step and the simulated TPOT of each; `*` marks the split the
predictor chooses (least predicted time).

--write-trace FILE writes the scenario's routing (as compiled, every token's experts) as a
routing trace (plan/routing_trace.hpp; --trace-format tokens or counts) and exits;
`workload.routing: {kind: trace, file: FILE}` replays it step by step.

Options)";

// The whole run, not the streamed one: the tables read every op's simulated time, and a
// streamed run keeps only the Program's header (the columns read 0 before this).
RunOptions whole_run() {
  RunOptions ro;
  ro.stream = false;
  return ro;
}

struct Row {
  std::vector<std::string> gpu_lines;  // --gpus: one line per MoE GPU
  std::string policy;
  double tpot_ms = 0, sim_ratio = 0, pred_ratio = 0, tok_ratio = 0;
  int64_t moves = 0, move_bytes = 0;
};

Row run_policy(const std::string& scenario, std::vector<std::string> sets,
               const std::string& policy, int redundant, int rebalance) {
  sets.push_back("plan.balance.policy=" + policy);
  if (policy != "static") {
    sets.push_back(fmt::format("plan.balance.redundant_experts={}", redundant));
    if (rebalance > 0) sets.push_back(fmt::format("plan.balance.rebalance_every={}", rebalance));
  }
  const SimRun run = run_scenario(scenario, sets, sim::SimOptions{}, whole_run());
  const plan::Program& p = run.program;
  const plan::Scenario& s = run.scenario;
  Row r;
  r.policy = policy;
  r.tpot_ms = run.metrics.tpot_mean_ms;
  std::vector<double> moe_ns(static_cast<size_t>(p.layout.moe_ranks), 0.0);
  for (const plan::Op& op : p.ops) {
    const bool moe = op.role >= plan::OpRole::kMoePermute && op.role <= plan::OpRole::kMoeUnpermute;
    if (moe) {
      moe_ns[static_cast<size_t>(op.rank - p.layout.moe_base)] +=
          static_cast<double>(run.result.timeline.ops[static_cast<size_t>(op.id)].duration_ns());
    }
    if (op.role == plan::OpRole::kExpertMove) {
      for (const auto& t : p.exchanges[static_cast<size_t>(op.exchange)].transfers) {
        if (t.src_op == op.id) {
          r.moves += t.bytes / s.model.expert_weight_bytes();
          r.move_bytes += t.bytes;
        }
      }
    }
  }
  r.sim_ratio = plan::max_over_mean(moe_ns);
  {
    // Per MoE GPU (first placement epoch): copies, predicted expert and exchange time per
    // launch, tokens; simulated MoE compute and exchange (dispatch + return) busy time.
    std::vector<double> xch(moe_ns.size(), 0.0);
    for (const plan::Op& op : p.ops) {
      if ((op.role == plan::OpRole::kDispatch || op.role == plan::OpRole::kReturn) &&
          op.rank >= p.layout.moe_base && op.rank < p.layout.moe_base + p.layout.moe_ranks) {
        xch[static_cast<size_t>(op.rank - p.layout.moe_base)] += static_cast<double>(
            run.result.timeline.ops[static_cast<size_t>(op.id)].duration_ns());
      }
    }
    const plan::TimePredictor tp0(s.topology);
    const plan::BalanceProblem b0 =
        plan::balance_problem(s, plan::expert_load(p, 0, p.steps).per_launch());
    const plan::ExpertPlacement pl0 = plan::placement_at_step(s, 0);
    plan::BalanceProblem nocomm = b0;
    nocomm.row_ns = 0;
    const auto all = plan::predicted_gpu_ns(pl0, b0, tp0, s.model);
    const auto comp = plan::predicted_gpu_ns(pl0, nocomm, tp0, s.model);
    const auto tok = plan::gpu_tokens(pl0, b0);
    std::vector<int> copies(moe_ns.size(), 0);
    for (const auto& h : pl0.holders) {
      for (int g : h) copies[static_cast<size_t>(g)]++;
    }
    const double launches = static_cast<double>(p.steps) * p.layers * p.micro_batches;
    for (size_t g = 0; g < moe_ns.size(); ++g) {
      r.gpu_lines.push_back(fmt::format(
          "  gpu {:3}  copies {:3}  pred expert {:9.1f} us  pred exchange {:8.1f} us  tokens "
          "{:8.1f}  sim MoE {:9.1f} us  sim exchange {:9.1f} us (per launch)",
          g, copies[g], comp[g] / 1e3, (all[g] - comp[g]) / 1e3, tok[g], moe_ns[g] / launches / 1e3,
          xch[g] / launches / 1e3));
    }
  }
  const plan::TimePredictor tp(s.topology);
  const int k = s.plan.balance.rebalance_every;
  double pred = 0, tok = 0;
  for (int e0 = 0; e0 < p.steps;) {
    const int len = (k > 0 && s.plan.balance.policy != plan::BalancePolicy::kStatic)
                        ? std::min(k, p.steps - e0)
                        : p.steps - e0;
    const plan::ExpertLoad load = plan::expert_load(p, e0, len);
    const plan::BalanceProblem b = plan::balance_problem(s, load.per_launch());
    const plan::ExpertPlacement pl = plan::placement_at_step(s, e0);
    pred += len * plan::max_over_mean(plan::predicted_gpu_ns(pl, b, tp, s.model));
    tok += len * plan::max_over_mean(plan::gpu_tokens(pl, b));
    e0 += len;
  }
  r.pred_ratio = pred / std::max(1, p.steps);
  r.tok_ratio = tok / std::max(1, p.steps);
  return r;
}

struct AttnRow {
  std::string policy;
  double tpot_ms = 0, sim_attn = 0, sim_side = 0, pred_chunk = 0, idle_ms = 0;
};

bool attention_side(plan::OpRole r) {
  using R = plan::OpRole;
  return (r >= R::kNorm && r <= R::kOutProj) || r == R::kAddNorm ||
         (r >= R::kMlaDown && r <= R::kMlaAbsorbV);
}

AttnRow run_attention_policy(const std::string& scenario, std::vector<std::string> sets,
                             const std::string& policy) {
  sets.push_back("plan.balance.attention=" + policy);
  const SimRun run = run_scenario(scenario, sets, sim::SimOptions{}, whole_run());
  const plan::Program& p = run.program;
  const plan::Scenario& s = run.scenario;
  AttnRow r;
  r.policy = policy;
  r.tpot_ms = run.metrics.tpot_mean_ms;
  const auto ranks = static_cast<size_t>(p.layout.attention_ranks);
  std::vector<double> attn(ranks, 0.0), side(ranks, 0.0), busy(ranks, 0.0);
  std::vector<int64_t> first(ranks, -1), last(ranks, 0);
  for (const plan::Op& op : p.ops) {
    if (static_cast<size_t>(op.rank) >= ranks || op.stream != plan::kCompute) continue;
    const auto& t = run.result.timeline.ops[static_cast<size_t>(op.id)];
    if (t.start_ns < 0) continue;
    const double d = static_cast<double>(t.duration_ns());
    busy[op.rank] += d;
    if (first[op.rank] < 0 || t.start_ns < first[op.rank]) first[op.rank] = t.start_ns;
    last[op.rank] = std::max(last[op.rank], t.end_ns);
    if (op.role == plan::OpRole::kAttention || op.role == plan::OpRole::kMlaAttention) {
      attn[op.rank] += d;
    }
    if (attention_side(op.role)) side[op.rank] += d;
  }
  r.sim_attn = plan::max_over_mean(attn);
  r.sim_side = plan::max_over_mean(side);
  double idle = 0;
  for (size_t a = 0; a < ranks; ++a) {
    if (first[a] >= 0) idle += static_cast<double>(last[a] - first[a]) - busy[a];
  }
  r.idle_ms = idle / static_cast<double>(std::max<size_t>(1, ranks)) / std::max(1, p.steps) / 1e6;
  const plan::TimePredictor tp(s.topology);
  const int64_t grow = (static_cast<int64_t>(std::max(1, s.workload.decode_steps)) + 1) / 2;
  std::vector<int64_t> len;
  for (int32_t c : p.layout.context_lengths) len.push_back(c + grow);
  r.pred_chunk = plan::max_over_mean(plan::chunk_attention_ns(len, plan::attention_chunk_sizes(s),
                                                              plan::attention_chunk_cost(s, tp)));
  return r;
}

}  // namespace

int cmd_balance(const Args& args) {
  std::string scenario = "paper";
  std::vector<std::string> sets, policies;
  int redundant = 0, rebalance = 0;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")(
      "set", po::value(&sets)->composing(), "override a scenario field, KEY=VALUE (repeatable)")(
      "policy", po::value(&policies)->composing(),
      "policies to run (repeatable; default: static, eplb, predicted)")(
      "redundant", po::value(&redundant)->default_value(0),
      "plan.balance.redundant_experts for eplb and predicted")(
      "rebalance", po::value(&rebalance)->default_value(0),
      "plan.balance.rebalance_every for eplb and predicted (0: place once)")(
      "gpus", "also print each MoE GPU: copies, predicted and simulated times per MoE launch")(
      "attention", "compare the attention-side policies (plan.balance.attention) instead")(
      "splits", "list the attention head × sequence splits with predicted and simulated times")(
      "write-trace", po::value<std::string>(),
      "write the scenario's routing as a routing trace file and exit")(
      "trace-format", po::value<std::string>()->default_value("tokens"),
      "--write-trace records: tokens (every token's experts) or counts (per expert)");
  po::options_description hidden;
  hidden.add_options()("scenario", po::value(&scenario));
  po::positional_options_description pos;
  pos.add("scenario", 1);
  po::variables_map vm;
  if (auto rc = parse_command_line("balance", args, opts, vm, &hidden, &pos)) return *rc;
  if (vm.count("write-trace")) {
    const std::string fmt_name = vm["trace-format"].as<std::string>();
    if (fmt_name != "tokens" && fmt_name != "counts") {
      std::fprintf(stderr, "masep balance: --trace-format must be tokens or counts, not '%s'\n",
                   fmt_name.c_str());
      return 2;
    }
    const plan::Scenario s = plan::load_scenario(scenario, sets);
    plan::CompileOptions co;
    co.record_token_routing = true;
    const plan::RoutingTrace t = plan::routing_trace_of(plan::compile(s, co));
    plan::write_output_file(
        vm["write-trace"].as<std::string>(), "routing trace", [&](std::ostream& o) {
          if (fmt_name == "tokens") {
            plan::write_routing_trace_tokens(o, t.experts, t.top_k, t.batch, t.layers, t.routes);
            return;
          }
          std::vector<std::vector<int64_t>> counts(t.routes.size());
          for (size_t i = 0; i < t.routes.size(); ++i) {
            if (t.routes[i].empty()) continue;
            counts[i].assign(static_cast<size_t>(t.experts), 0);
            for (int32_t e : t.routes[i]) counts[i][static_cast<size_t>(e)]++;
          }
          plan::write_routing_trace_counts(o, t.experts, t.top_k, t.batch, t.layers, counts);
        });
    return 0;
  }
  if (vm.count("splits")) {
    const plan::Scenario s = plan::load_scenario(scenario, sets);
    const plan::TimePredictor tp(s.topology);
    const auto splits = plan::attention_splits(s, tp);
    const int best = plan::best_attention_split(splits);
    std::printf("%-3s %13s %17s %12s %9s\n", "", "head_parallel", "sequence_parallel",
                "pred attn ms", "TPOT ms");
    for (size_t i = 0; i < splits.size(); ++i) {
      std::vector<std::string> v = sets;
      v.push_back(fmt::format("plan.attention.head_parallel={}", splits[i].head_parallel));
      v.push_back(fmt::format("plan.attention.sequence_parallel={}", splits[i].sequence_parallel));
      double tpot = -1;
      try {
        tpot = run_scenario(scenario, v, sim::SimOptions{}).metrics.tpot_mean_ms;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "hp %d sp %d: %s\n", splits[i].head_parallel,
                     splits[i].sequence_parallel, e.what());
      }
      std::printf("%-3s %13d %17d %12.3f %9.3f\n", static_cast<int>(i) == best ? "*" : "",
                  splits[i].head_parallel, splits[i].sequence_parallel,
                  splits[i].predicted_ns / 1e6, tpot);
    }
    return 0;
  }
  if (vm.count("attention")) {
    if (policies.empty()) policies = {"static", "predicted"};
    std::printf("%-10s %9s %17s %17s %19s %9s\n", "attention", "TPOT ms", "sim attn max/mean",
                "sim side max/mean", "pred chunk max/mean", "idle ms");
    for (const auto& pol : policies) {
      const AttnRow r = run_attention_policy(scenario, sets, pol);
      std::printf("%-10s %9.3f %17.3f %17.3f %19.3f %9.3f\n", r.policy.c_str(), r.tpot_ms,
                  r.sim_attn, r.sim_side, r.pred_chunk, r.idle_ms);
    }
    return 0;
  }
  if (policies.empty()) policies = {"static", "eplb", "predicted"};
  std::printf("%-10s %9s %15s %15s %14s %7s %10s\n", "policy", "TPOT ms", "sim MoE max/mean",
              "pred max/mean", "tok max/mean", "moves", "move MB");
  for (const auto& pol : policies) {
    const Row r = run_policy(scenario, sets, pol, redundant, rebalance);
    std::printf("%-10s %9.3f %15.3f %15.3f %14.3f %7lld %10.1f\n", r.policy.c_str(), r.tpot_ms,
                r.sim_ratio, r.pred_ratio, r.tok_ratio, static_cast<long long>(r.moves),
                static_cast<double>(r.move_bytes) / 1e6);
    if (vm.count("gpus")) {
      for (const auto& l : r.gpu_lines) std::printf("%s\n", l.c_str());
    }
  }
  return 0;
}

}  // namespace masep::tools
