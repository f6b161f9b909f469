// Plan search: enumeration, validation through the loader, memory and roofline pruning,
// parallel simulation in deterministic waves, ranking and the CSV / YAML outputs.
#include "search.hpp"

#include <fmt/format.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "masep/models/embedded.hpp"
#include "masep/models/zoo.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/topology/topology.hpp"
#include "masep/topology/zoo.hpp"
#include "sim_run.hpp"

namespace masep::plan {
std::span<const masep::EmbeddedFile> builtin_scenario_files();  // generated (scenarios/)
}

namespace masep::tools {

namespace {

namespace fs = std::filesystem;

const char* placement_short(plan::Placement p) {
  return p == plan::Placement::kContiguous ? "ct" : "rr";
}

std::string fmt_num(double v) {
  if (!std::isfinite(v)) return "";
  return fmt::format("{:.6g}", v);
}

}  // namespace

std::string Candidate::label() const {
  const std::string b = batch > 0 ? fmt::format(" b{}", batch) : std::string();
  if (kind == plan::PlanKind::kColocated) {
    return fmt::format("co tp{} er{} {} mb{}{}", tensor_parallel, expert_replicas,
                       placement_short(placement), micro_batches, b);
  }
  return fmt::format("ma {}:{} r{} hp{} sp{} er{} {} mb{}{}", attention_gpus, moe_gpus, replicas,
                     head_parallel, sequence_parallel, expert_replicas, placement_short(placement),
                     micro_batches, b);
}

std::vector<Candidate> enumerate_candidates(const SearchSpace& space) {
  if (space.gpus < 1) throw std::invalid_argument("enumerate_candidates: gpus must be >= 1");
  if (space.max_micro_batches < 1) {
    throw std::invalid_argument("enumerate_candidates: max_micro_batches must be >= 1");
  }
  const plan::Placement placements[] = {plan::Placement::kRoundRobin, plan::Placement::kContiguous};
  auto er_max = [&](int expert_gpus) {
    return space.max_expert_replicas > 0 ? std::min(space.max_expert_replicas, expert_gpus)
                                         : expert_gpus;
  };
  std::vector<Candidate> out;
  const int n = space.gpus;
  if (space.colocated) {
    for (int tp = 1; tp <= n; ++tp) {
      if (n % tp != 0) continue;
      for (auto pl : placements) {
        for (int er = 1; er <= er_max(n); ++er) {
          for (int mb = 1; mb <= space.max_micro_batches; ++mb) {
            Candidate c;
            c.kind = plan::PlanKind::kColocated;
            c.tensor_parallel = tp;
            c.placement = pl;
            c.expert_replicas = er;
            c.micro_batches = mb;
            c.plan_yaml = fmt::format(
                "{{kind: colocated, colocated: {{gpus: {}, tensor_parallel: {}, placement: {}, "
                "expert_replicas: {}}}, micro_batches: {}}}",
                n, tp, plan::to_string(pl), er, mb);
            out.push_back(std::move(c));
          }
        }
      }
    }
  }
  if (space.ma_separation) {
    for (int a = 1; a < n; ++a) {
      const int m = n - a;
      for (int r = 1; r <= a; ++r) {
        if (a % r != 0) continue;
        for (int hp = 1; hp <= a / r; ++hp) {
          if ((a / r) % hp != 0) continue;
          const int sp = a / r / hp;
          for (auto pl : placements) {
            for (int er = 1; er <= er_max(m); ++er) {
              for (int mb = 1; mb <= space.max_micro_batches; ++mb) {
                Candidate c;
                c.kind = plan::PlanKind::kMaSeparation;
                c.attention_gpus = a;
                c.moe_gpus = m;
                c.replicas = r;
                c.head_parallel = hp;
                c.sequence_parallel = sp;
                c.placement = pl;
                c.expert_replicas = er;
                c.micro_batches = mb;
                c.plan_yaml = fmt::format(
                    "{{kind: ma_separation, attention: {{gpus: {}, head_parallel: {}, "
                    "sequence_parallel: {}, replicas: {}}}, moe: {{gpus: {}, placement: {}, "
                    "expert_replicas: {}}}, micro_batches: {}}}",
                    a, hp, sp, r, m, plan::to_string(pl), er, mb);
                out.push_back(std::move(c));
              }
            }
          }
        }
      }
    }
  }
  if (!space.batches.empty()) {
    std::vector<Candidate> plans = std::move(out);
    out.clear();
    for (int b : space.batches) {
      if (b < 1) throw std::invalid_argument("enumerate_candidates: batches must be >= 1");
      for (Candidate c : plans) {
        c.batch = b;
        out.push_back(std::move(c));
      }
    }
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].index = static_cast<int>(i);
  return out;
}

double tpot_floor_ns(const plan::Program& program, const topology::GpuSpec& gpu) {
  const double bytes_per_ns = gpu.hbm_GBps;           // GB/s == bytes per ns
  std::vector<double> per_rank(program.ranks.size(), 0.0);
  int first = std::numeric_limits<int>::max(), last = std::numeric_limits<int>::min();
  for (const auto& op : program.ops) {
    if (op.stream != plan::kCompute) continue;
    double t = 0;
    if (bytes_per_ns > 0) t = static_cast<double>(op.hbm_bytes) / bytes_per_ns;
    // The simulator's peak for the op's format (an fp8 GEMM runs at fp8_tflops).
    const double flops_per_ns = gpu.tflops(op.dtype) * 1e3;
    if (flops_per_ns > 0) t = std::max(t, op.flops / flops_per_ns);
    per_rank[static_cast<size_t>(op.rank)] += t;
    first = std::min(first, op.step);
    last = std::max(last, op.step);
  }
  if (per_rank.empty() || first > last) return 0.0;
  return *std::max_element(per_rank.begin(), per_rank.end()) / (last - first + 1);
}

const char* to_string(CandidateStatus s) {
  switch (s) {
    case CandidateStatus::kInvalid:
      return "invalid";
    case CandidateStatus::kMemory:
      return "memory";
    case CandidateStatus::kBoundSlo:
      return "bound_slo";
    case CandidateStatus::kBoundBest:
      return "bound_best";
    case CandidateStatus::kSimulated:
      return "simulated";
    case CandidateStatus::kFailed:
      return "failed";
  }
  return "?";
}

namespace {

std::string one_line(std::string msg) {
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  return msg;
}

// Per-candidate work of the first phase: load (the loader validates), memory, floor.
struct Prepared {
  std::optional<plan::Scenario> scenario;
  int gpus = 0;
  int batch = 0;
};

bool better(const CandidateResult& a, int ia, const CandidateResult& b, int ib) {
  if (a.tokens_per_s_per_gpu != b.tokens_per_s_per_gpu) {
    return a.tokens_per_s_per_gpu > b.tokens_per_s_per_gpu;
  }
  if (a.metrics.tpot_mean_ms != b.metrics.tpot_mean_ms) {
    return a.metrics.tpot_mean_ms < b.metrics.tpot_mean_ms;
  }
  return ia < ib;
}

}  // namespace

SearchResult run_search(const SearchSpace& space, const SearchOptions& options) {
  // The base scenario must load with a trivial plan, so a typo in --set or the file is
  // reported once, as the loader's error, instead of as thousands of invalid candidates.
  {
    std::vector<std::string> ov = options.overrides;
    ov.emplace_back(kProbePlan);
    (void)plan::load_scenario(options.base, ov);
  }

  SearchResult res;
  res.candidates = enumerate_candidates(space);
  const int n = static_cast<int>(res.candidates.size());
  res.enumerated = n;
  res.results.resize(static_cast<size_t>(n));
  std::vector<Prepared> prep(static_cast<size_t>(n));

  const int threads = options.jobs > 0 ? options.jobs : tbb::this_task_arena::max_concurrency();
  tbb::task_arena arena(threads);

  // Phase 1: validity (the loader), memory (plan_memory / check_memory), TPOT floor.
  arena.execute([&] {
    tbb::parallel_for(0, n, [&](int i) {
      const Candidate& c = res.candidates[static_cast<size_t>(i)];
      CandidateResult& r = res.results[static_cast<size_t>(i)];
      std::vector<std::string> ov = options.overrides;
      ov.push_back("plan=" + c.plan_yaml);
      if (c.batch > 0) ov.push_back(fmt::format("workload.batch={}", c.batch));
      plan::Scenario s;
      try {
        s = plan::load_scenario(options.base, ov);
      } catch (const plan::InputError& e) {
        r.status = CandidateStatus::kInvalid;
        r.error = one_line(e.what());
        return;
      }
      try {
        const auto mem = plan::plan_memory(s);
        for (const auto& m : mem) r.peak_memory_bytes = std::max(r.peak_memory_bytes, m.total());
        plan::check_memory(s, mem);
      } catch (const plan::InfeasiblePlan& e) {
        r.status = CandidateStatus::kMemory;
        r.error = one_line(e.what());
        return;
      }
      try {
        // All steps: routing differs per step, so one step's busiest rank is no bound.
        const plan::Program p = plan::compile(s);
        r.floor_ms = tpot_floor_ns(p, s.topology.gpu) / 1e6;
      } catch (const std::exception& e) {
        r.status = CandidateStatus::kInvalid;
        r.error = one_line(e.what());
        return;
      }
      r.status = CandidateStatus::kSimulated;  // provisional: "survived phase 1"
      r.batch = s.workload.batch;
      Prepared& pr = prep[static_cast<size_t>(i)];
      pr.gpus = s.plan.total_gpus();
      pr.batch = s.workload.batch;
      pr.scenario = std::move(s);
    });
  });

  // Phase 2: the SLO bound, then the order of simulation (floor ascending, index).
  std::vector<int> order;
  for (int i = 0; i < n; ++i) {
    auto& r = res.results[static_cast<size_t>(i)];
    if (r.status != CandidateStatus::kSimulated) continue;
    if (options.tpot_slo_ms > 0 && r.floor_ms > options.tpot_slo_ms) {
      r.status = CandidateStatus::kBoundSlo;
      continue;
    }
    order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return res.results[static_cast<size_t>(a)].floor_ms <
           res.results[static_cast<size_t>(b)].floor_ms;
  });

  // Phase 3: waves. Before each wave, a candidate whose tokens/s/GPU ceiling
  // (batch / floor / GPUs) is below the K-th best simulated plan of its kind that meets the
  // SLO cannot enter that kind's top K, so it is pruned. Waves have a fixed size and are
  // filled in `order`, so what is simulated does not depend on the number of threads.
  const size_t k = static_cast<size_t>(std::max(1, options.top_k));
  std::map<plan::PlanKind, std::vector<double>> top;  // per kind, best first, at most k
  auto ceiling = [&](int i) {
    const auto& pr = prep[static_cast<size_t>(i)];
    const double floor_s = res.results[static_cast<size_t>(i)].floor_ms / 1e3;
    if (!(floor_s > 0) || pr.gpus <= 0) return std::numeric_limits<double>::infinity();
    return pr.batch / floor_s / pr.gpus;
  };
  const int wave = std::max(1, options.wave);
  size_t next = 0;
  while (next < order.size()) {
    std::vector<int> batch;
    while (next < order.size() && static_cast<int>(batch.size()) < wave) {
      const int i = order[next++];
      const auto kind = res.candidates[static_cast<size_t>(i)].kind;
      const auto& t = top[kind];
      if (t.size() >= k && ceiling(i) < t[k - 1]) {
        res.results[static_cast<size_t>(i)].status = CandidateStatus::kBoundBest;
        prep[static_cast<size_t>(i)].scenario.reset();
        continue;
      }
      batch.push_back(i);
    }
    const int m = static_cast<int>(batch.size());
    arena.execute([&] {
      tbb::parallel_for(0, m, [&](int j) {
        const int i = batch[static_cast<size_t>(j)];
        auto& r = res.results[static_cast<size_t>(i)];
        auto& pr = prep[static_cast<size_t>(i)];
        try {
          const plan::Scenario& s = *pr.scenario;
          check_fits_in_memory(s);
          const plan::Program program = plan::compile(s);
          const topology::Topology topo(s.topology);
          const sim::SimResult sr =
              sim::simulate(program, topo, with_scenario_settings(s, options.sim));
          r.metrics = plan::compute_metrics(s, program, sr.timeline);
          r.metrics.ranks.clear();
          r.metrics.step_ms.clear();
          r.tokens_per_s_per_gpu = pr.gpus > 0 ? r.metrics.tokens_per_s / pr.gpus : 0;
          r.meets_slo = !(options.tpot_slo_ms > 0) || r.metrics.tpot_mean_ms <= options.tpot_slo_ms;
          r.status = CandidateStatus::kSimulated;
        } catch (const std::exception& e) {
          r.status = CandidateStatus::kFailed;
          r.error = one_line(e.what());
        }
        pr.scenario.reset();
      });
    });
    for (int i : batch) {  // in order: deterministic
      const auto& r = res.results[static_cast<size_t>(i)];
      if (r.status != CandidateStatus::kSimulated || !r.meets_slo) continue;
      auto& t = top[res.candidates[static_cast<size_t>(i)].kind];
      t.insert(std::upper_bound(t.begin(), t.end(), r.tokens_per_s_per_gpu, std::greater<>()),
               r.tokens_per_s_per_gpu);
      if (t.size() > k) t.resize(k);
    }
  }

  for (int i = 0; i < n; ++i) {
    const auto& r = res.results[static_cast<size_t>(i)];
    switch (r.status) {
      case CandidateStatus::kInvalid:
        ++res.invalid;
        break;
      case CandidateStatus::kMemory:
        ++res.pruned_memory;
        break;
      case CandidateStatus::kBoundSlo:
      case CandidateStatus::kBoundBest:
        ++res.pruned_bound;
        break;
      case CandidateStatus::kSimulated:
        ++res.simulated;
        // 1 ns of slack: the floor is a double, TPOT comes from integer ns.
        if (r.metrics.tpot_mean_ms + 1e-6 < r.floor_ms) ++res.floor_violations;
        if (r.meets_slo) res.ranking.push_back(i);
        break;
      case CandidateStatus::kFailed:
        ++res.failed;
        break;
    }
  }
  std::sort(res.ranking.begin(), res.ranking.end(), [&](int a, int b) {
    return better(res.results[static_cast<size_t>(a)], a, res.results[static_cast<size_t>(b)], b);
  });
  for (int i : res.ranking) {
    const auto kind = res.candidates[static_cast<size_t>(i)].kind;
    int& best = kind == plan::PlanKind::kColocated ? res.best_colocated : res.best_ma;
    if (best < 0) best = i;
  }
  return res;
}

std::vector<std::vector<std::string>> search_table(const SearchResult& r) {
  std::vector<std::vector<std::string>> t;
  t.push_back({"index",
               "kind",
               "label",
               "attention_gpus",
               "moe_gpus",
               "replicas",
               "head_parallel",
               "sequence_parallel",
               "tensor_parallel",
               "expert_replicas",
               "placement",
               "micro_batches",
               "batch",
               "status",
               "floor_ms",
               "tpot_mean_ms",
               "tpot_p99_ms",
               "tokens_per_s",
               "tokens_per_s_per_gpu",
               "attention_idle_ms",
               "moe_idle_ms",
               "exposed_comm_ms",
               "peak_memory_gb",
               "meets_slo",
               "error"});
  for (size_t i = 0; i < r.candidates.size(); ++i) {
    const Candidate& c = r.candidates[i];
    const CandidateResult& x = r.results[i];
    const bool ma = c.kind == plan::PlanKind::kMaSeparation;
    const bool sim = x.status == CandidateStatus::kSimulated;
    const auto& m = x.metrics;
    auto opt = [](bool on, int v) { return on ? std::to_string(v) : std::string(); };
    t.push_back({std::to_string(c.index),
                 ma ? "ma_separation" : "colocated",
                 c.label(),
                 opt(ma, c.attention_gpus),
                 opt(ma, c.moe_gpus),
                 opt(ma, c.replicas),
                 opt(ma, c.head_parallel),
                 opt(ma, c.sequence_parallel),
                 opt(!ma, c.tensor_parallel),
                 std::to_string(c.expert_replicas),
                 plan::to_string(c.placement),
                 std::to_string(c.micro_batches),
                 x.batch > 0 ? std::to_string(x.batch) : "",
                 to_string(x.status),
                 x.floor_ms > 0 ? fmt_num(x.floor_ms) : "",
                 sim ? fmt_num(m.tpot_mean_ms) : "",
                 sim ? fmt_num(m.tpot_p99_ms) : "",
                 sim ? fmt_num(m.tokens_per_s) : "",
                 sim ? fmt_num(x.tokens_per_s_per_gpu) : "",
                 sim ? fmt_num(m.attention_idle_ns / 1e6) : "",
                 sim ? fmt_num(m.moe_idle_ns / 1e6) : "",
                 sim ? fmt_num(m.exposed_comm_ns / 1e6) : "",
                 x.peak_memory_bytes > 0 ? fmt_num(x.peak_memory_bytes / 1e9) : "",
                 sim ? (x.meets_slo ? "yes" : "no") : "",
                 x.error});
  }
  return t;
}

std::string bottleneck(const Candidate& c, const plan::RunMetrics& m, int gpus) {
  const double wall = static_cast<double>(m.makespan_ns);
  if (!(wall > 0) || gpus <= 0) return "";
  const double comm = m.exposed_comm_ns / (wall * gpus);
  if (c.kind == plan::PlanKind::kColocated) {
    const double idle = m.attention_idle_ns / (wall * gpus);
    if (comm > 0.25) return fmt::format("comm (exposed {:.0f}%)", 100 * comm);
    return fmt::format("compute (idle {:.0f}%, exposed comm {:.0f}%)", 100 * idle, 100 * comm);
  }
  const double a_idle = m.attention_idle_ns / (wall * c.attention_gpus);
  const double m_idle = m.moe_idle_ns / (wall * c.moe_gpus);
  if (a_idle <= m_idle) {
    return fmt::format("attention (MoE idle {:.0f}%, exposed comm {:.0f}%)", 100 * m_idle,
                       100 * comm);
  }
  return fmt::format("MoE (attention idle {:.0f}%, exposed comm {:.0f}%)", 100 * a_idle,
                     100 * comm);
}

namespace {

std::optional<std::string> builtin_text(std::span<const masep::EmbeddedFile> files,
                                        const std::string& name) {
  for (const auto& f : files) {
    if (name == f.name) return std::string(f.text);
  }
  return std::nullopt;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) throw plan::InputError(path, 0, 0, "", "cannot read the file");
  return ss.str();
}

// The tree of a model / topology / GPU reference: a built-in's text or a file's (relative
// to `dir`).
YAML::Node ref_tree(const std::string& kind, const std::string& ref, const fs::path& dir) {
  std::optional<std::string> text;
  if (kind == "model") text = builtin_text(models::builtin_model_files(), ref);
  if (kind == "topology") text = builtin_text(topology::builtin_topology_files(), ref);
  if (kind == "topology.gpu") text = builtin_text(topology::builtin_gpu_files(), ref);
  if (!text) text = read_file((dir / ref).string());
  return YAML::Load(*text);
}

}  // namespace

std::string scenario_yaml(const std::string& base, const std::vector<std::string>& overrides,
                          const std::string& plan_yaml, const std::string& name) {
  std::error_code ec;
  std::string text;
  fs::path dir;
  if (fs::is_regular_file(base, ec)) {
    text = read_file(base);
    dir = fs::absolute(fs::path(base)).parent_path();
  } else if (auto b = builtin_text(plan::builtin_scenario_files(), base)) {
    text = *b;
  } else {
    throw plan::InputError(base, 0, 0, "", "no such file, and not a built-in scenario");
  }
  YAML::Node root = YAML::Load(text);
  for (const auto& o : overrides) {
    const auto eq = o.find('=');
    if (eq == std::string::npos) throw plan::InputError("--set", 0, 0, o, "expected KEY=VALUE");
    const std::string key = o.substr(0, eq);
    std::vector<std::string> seg;
    for (size_t s = 0;;) {
      const auto dot = key.find('.', s);
      seg.push_back(key.substr(s, dot == std::string::npos ? dot : dot - s));
      if (dot == std::string::npos) break;
      s = dot + 1;
    }
    YAML::Node cur = root;
    std::string path;
    for (size_t i = 0; i < seg.size(); ++i) {
      const bool last = i + 1 == seg.size();
      if (last) {
        cur[seg[i]] = YAML::Load(o.substr(eq + 1));
        break;
      }
      path = path.empty() ? seg[i] : path + "." + seg[i];
      YAML::Node next = cur[seg[i]];
      if (next.IsScalar() && (path == "model" || path == "topology" || path == "topology.gpu")) {
        next = ref_tree(path, next.Scalar(), dir);  // inline, so the override can reach in
        cur[seg[i]] = next;
      } else if (!next.IsDefined() || next.IsNull()) {
        cur[seg[i]] = YAML::Node(YAML::NodeType::Map);
        next = cur[seg[i]];
      }
      cur.reset(next);
    }
  }
  // File references relative to the base file: made absolute so the output loads anywhere.
  for (const char* k : {"model", "topology"}) {
    YAML::Node v = root[k];
    if (!dir.empty() && v.IsScalar() && fs::is_regular_file(dir / v.Scalar(), ec)) {
      root[k] = (dir / v.Scalar()).lexically_normal().string();
    }
  }
  root["plan"] = YAML::Load(plan_yaml);
  root["name"] = name;
  root["description"] = "the plan masep search chose for " + base;
  YAML::Emitter e;
  e << root;
  return std::string("# Written by `masep search` (docs/search.md); run with `masep sim FILE`.\n") +
         e.c_str() + "\n";
}

}  // namespace masep::tools
