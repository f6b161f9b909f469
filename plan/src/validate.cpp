// Cross-checks of a Scenario: plan vs model vs topology vs workload. Works on plain structs
// (a scenario may be built in code), so errors carry key paths and the scenario's origin but
// no line; parse_scenario maps the key path back to where it was written. Memory
// feasibility is checked by plan/memory.cpp, not here.
#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <string>

#include "masep/plan/batch_split.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/routing_trace.hpp"

namespace masep::plan {

namespace {

[[noreturn]] void fail(const Scenario& s, const std::string& key, const std::string& message) {
  throw InputError(s.origin, 0, 0, key, message);
}

std::string str(long long v) { return std::to_string(v); }

void require_positive(const Scenario& s, const std::string& key, long long v) {
  if (v <= 0) fail(s, key, "must be positive, got " + str(v));
}

// Heads split `parts` ways: every part must own whole query heads and whole KV heads.
void check_head_split(const Scenario& s, const std::string& key, const char* what, int parts) {
  const auto& m = s.model;
  if (m.heads % parts != 0) {
    fail(s, key,
         str(parts) + " does not divide " + str(m.heads) + " heads (model " + m.name + "); " +
             what + " must divide model.heads");
  }
  // MLA caches one latent per token that every head reads: each GPU of the split holds it
  // whole (replicated), so only the query heads are split.
  if (!m.is_mla() && m.kv_heads % parts != 0) {
    fail(s, key,
         str(parts) + " does not divide " + str(m.kv_heads) + " kv_heads (model " + m.name + "); " +
             what + " must divide model.kv_heads so every GPU holds whole KV heads");
  }
}

// The batch splits into `groups` data-parallel groups × micro_batches near-equal chunks (the
// compiler's partition, batch_split.hpp: sizes differ by at most one, e.g. 32 over 3 replicas is
// 10/11/11), each of at least one sequence.
void check_batch_split(const Scenario& s, int groups, const std::string& groups_text) {
  const long long parts = static_cast<long long>(groups) * s.plan.micro_batches;
  if (s.workload.batch < parts) {
    fail(s, "workload.batch",
         str(s.workload.batch) + " sequences cannot fill " + groups_text + " × " +
             str(s.plan.micro_batches) + " micro-batches (need at least " + str(parts) +
             ": one sequence per chunk)");
  }
}

// `gpus`: the placement units (expert GPUs, or expert groups with expert tensor parallelism).
void check_expert_replicas(const Scenario& s, const std::string& prefix, int replicas, int gpus,
                           int tp = 1) {
  require_positive(s, prefix + ".expert_replicas", replicas);
  if (replicas > gpus && tp > 1) {
    fail(s, prefix + ".expert_replicas",
         "each expert needs " + str(replicas) + " expert groups but the plan has only " +
             str(gpus) + " (" + prefix + ".gpus / expert_tensor_parallel)");
  }
  if (replicas > gpus) {
    fail(s, prefix + ".expert_replicas",
         "each expert needs " + str(replicas) + " GPUs but the plan has only " + str(gpus) +
             " expert GPUs (" + prefix + ".gpus)");
  }
}

void check_contiguous(const Scenario& s, const std::string& prefix, int gpus) {
  if (s.model.experts % gpus != 0) {
    fail(s, prefix + ".placement",
         "contiguous placement splits the " + str(s.model.experts) + " experts into " + str(gpus) +
             " equal blocks, but " + str(gpus) + " does not divide " + str(s.model.experts) +
             "; use round_robin or explicit");
  }
}

// Expert tensor parallelism (plan.moe / plan.colocated expert_tensor_parallel = t): the expert
// GPUs split into gpus / t groups, every expert FFN width (routed and shared) into t equal
// column slices, and the partial outputs are summed in the activations' format.
void check_expert_tp(const Scenario& s, const std::string& prefix, int t, int gpus) {
  const std::string key = prefix + ".expert_tensor_parallel";
  require_positive(s, key, t);
  if (t == 1) return;
  const models::Model& m = s.model;
  if (gpus % t != 0) {
    fail(s, key,
         str(t) + " does not divide " + str(gpus) + " expert GPUs (" + prefix +
             ".gpus); the expert GPUs form groups of expert_tensor_parallel GPUs");
  }
  if (m.expert_ffn % t != 0) {
    fail(s, key,
         str(t) + " does not divide expert_ffn " + str(m.expert_ffn) + " (model " + m.name +
             "); each GPU of an expert group holds expert_ffn / expert_tensor_parallel columns");
  }
  if (m.shared_experts > 0 && m.shared_ffn() % t != 0) {
    fail(s, key,
         str(t) + " does not divide the shared experts' width " + str(m.shared_ffn()) + " (model " +
             m.name + "); shared experts are split like the routed ones");
  }
  if (m.precision.combine != m.precision.activations) {
    fail(s, key,
         std::string("the partial expert outputs of a group are summed in the activations' "
                     "format, so model.precision.combine (") +
             models::to_string(m.precision.combine) + ") must equal activations (" +
             models::to_string(m.precision.activations) + ") with expert tensor parallelism");
  }
  if (s.plan.balance.policy != BalancePolicy::kStatic) {
    fail(s, key,
         std::string("plan.balance.policy ") + to_string(s.plan.balance.policy) +
             " is not supported with expert tensor parallelism (the balancer places experts on "
             "single GPUs); use policy: static");
  }
}

// plan.attention.replicas as a list (replicas of unequal size or batch share): each replica
// splits heads like a uniform one, the GPUs add up, every chunk of the split (batch_split.hpp)
// holds a sequence, and the fault-tolerance paths (which assume equal replicas) are not asked.
void check_replica_list(const Scenario& s) {
  const AttentionPlan& a = s.plan.attention;
  long long gpus = 0;
  std::string sizes;
  for (size_t r = 0; r < a.replica_list.size(); ++r) {
    const AttentionReplica& rep = a.replica_list[r];
    const std::string key = "plan.attention.replicas[" + std::to_string(r) + "]";
    require_positive(s, key + ".head_parallel", rep.head_parallel);
    require_positive(s, key + ".sequence_parallel", rep.sequence_parallel);
    if (rep.batch_share < 0) {  // 0 = not given
      fail(s, key + ".batch_share", "must be positive, got " + str(rep.batch_share));
    }
    check_head_split(s, key + ".head_parallel", "head_parallel", rep.head_parallel);
    gpus += static_cast<long long>(rep.head_parallel) * rep.sequence_parallel;
    sizes += (sizes.empty() ? "" : " + ") +
             str(static_cast<long long>(rep.head_parallel) * rep.sequence_parallel);
  }
  if (a.gpus != gpus) {
    fail(s, "plan.attention.gpus",
         str(a.gpus) + " GPUs, but the listed replicas (plan.attention.replicas) use " + sizes +
             " = " + str(gpus));
  }
  for (size_t r = 0; r < a.replica_list.size(); ++r) {
    if ((a.replica_list[r].batch_share > 0) != (a.replica_list.front().batch_share > 0)) {
      fail(s, "plan.attention.replicas[" + std::to_string(r) + "].batch_share",
           "give every replica a batch_share or none (then the batch is shared by GPU count)");
    }
  }
  const BatchSplit split = split_batch(s);
  for (int r = 0; r < split.replicas; ++r) {
    for (int mb = 0; mb < split.micro_batches; ++mb) {
      if (split.size(r, mb) > 0) continue;
      const bool shares = a.replica_list.front().batch_share > 0;
      fail(s, "plan.attention.replicas[" + std::to_string(r) + "]" + (shares ? ".batch_share" : ""),
           "replica " + std::to_string(r) + " gets no sequence in micro-batch " +
               std::to_string(mb) + " (workload.batch " + str(s.workload.batch) + " over " +
               str(split.replicas) + " replicas × " + str(split.micro_batches) +
               " micro-batches, shared by " + (shares ? "batch_share" : "GPU count") +
               "); use a larger batch, fewer micro-batches or a larger share");
    }
  }
  for (const AttentionReplica& rep : a.replica_list) {
    const AttentionReplica& first = a.replica_list.front();
    if (s.plan.balance.attention == AttentionBalance::kPredicted &&
        (rep.head_parallel != first.head_parallel ||
         rep.sequence_parallel != first.sequence_parallel)) {
      fail(s, "plan.balance.attention",
           "predicted assigns sequences with one attention cost for every replica; the listed "
           "replicas split heads or sequences differently (use static, or replicas of one "
           "shape with batch_share)");
    }
  }
  const FaultTolerance& ft = s.fault_tolerance;
  if (ft.kv_copies > 1 || ft.standby_gpus > 0 || !s.faults.empty()) {
    fail(s, "plan.attention.replicas",
         "attention replicas listed one by one are not supported with fault tolerance "
         "(fault_tolerance.kv_copies / standby_gpus, faults): KV mirroring and re-mapping "
         "assume replicas of equal size; give replicas as a count");
  }
}

void check_ma_separation(const Scenario& s) {
  const AttentionPlan& a = s.plan.attention;
  const MoePlan& moe = s.plan.moe;
  require_positive(s, "plan.attention.gpus", a.gpus);
  if (a.per_replica()) {
    check_replica_list(s);
  } else {
    require_positive(s, "plan.attention.head_parallel", a.head_parallel);
    require_positive(s, "plan.attention.sequence_parallel", a.sequence_parallel);
    require_positive(s, "plan.attention.replicas", a.replicas);
    check_head_split(s, "plan.attention.head_parallel", "head_parallel", a.head_parallel);
    const long long group =
        static_cast<long long>(a.replicas) * a.head_parallel * a.sequence_parallel;
    if (a.gpus != group) {
      fail(s, "plan.attention.gpus",
           str(a.gpus) + " GPUs, but replicas × head_parallel × sequence_parallel = " +
               str(a.replicas) + " × " + str(a.head_parallel) + " × " + str(a.sequence_parallel) +
               " = " + str(group));
    }
    check_batch_split(s, a.replicas, str(a.replicas) + " attention replicas");
  }

  require_positive(s, "plan.moe.gpus", moe.gpus);
  const int experts = s.model.experts;
  check_expert_tp(s, "plan.moe", moe.expert_tensor_parallel, moe.gpus);
  if (moe.placement == Placement::kExplicit && moe.expert_tensor_parallel > 1) {
    fail(s, "plan.moe.placement",
         "explicit placement is not supported with expert_tensor_parallel > 1; use round_robin "
         "or contiguous (placement is then over the gpus / expert_tensor_parallel expert "
         "groups)");
  }
  // Placement works on expert groups (single GPUs without expert tensor parallelism).
  const int units = moe.gpus / moe.expert_tensor_parallel;
  const std::string unit_text = moe.expert_tensor_parallel > 1 ? " expert groups" : " MoE GPUs";
  if (moe.placement == Placement::kExplicit) {
    const std::string key = "plan.moe.expert_map";
    if (static_cast<int>(moe.expert_map.size()) != experts) {
      fail(s, key,
           "lists " + str(static_cast<long long>(moe.expert_map.size())) + " experts, but model " +
               s.model.name + " has " + str(experts) + " (one list of MoE GPU indices per expert)");
    }
    check_expert_replicas(s, "plan.moe", moe.expert_replicas, moe.gpus);
    std::set<int> used;
    for (std::size_t e = 0; e < moe.expert_map.size(); ++e) {
      const auto& gpus = moe.expert_map[e];
      const std::string ekey = key + "[" + std::to_string(e) + "]";
      if (static_cast<int>(gpus.size()) != moe.expert_replicas) {
        fail(
            s, ekey,
            "expert " + std::to_string(e) + " is on " + str(static_cast<long long>(gpus.size())) +
                " GPUs, but every expert must be on expert_replicas = " + str(moe.expert_replicas));
      }
      std::set<int> mine;
      for (std::size_t j = 0; j < gpus.size(); ++j) {
        const std::string gkey = ekey + "[" + std::to_string(j) + "]";
        if (gpus[j] < 0 || gpus[j] >= moe.gpus) {
          fail(s, gkey,
               "MoE GPU index " + str(gpus[j]) + " is out of range 0.." + str(moe.gpus - 1) +
                   " (plan.moe.gpus is " + str(moe.gpus) + ")");
        }
        if (!mine.insert(gpus[j]).second) {
          fail(s, gkey,
               "expert " + std::to_string(e) + " lists MoE GPU " + str(gpus[j]) + " twice");
        }
        used.insert(gpus[j]);
      }
    }
    for (int g = 0; g < moe.gpus; ++g) {
      if (!used.count(g)) {
        fail(s, key, "MoE GPU " + str(g) + " holds no expert; every MoE GPU must hold one");
      }
    }
  } else {
    if (!moe.expert_map.empty()) {
      fail(s, "plan.moe.expert_map", "only used with placement: explicit");
    }
    check_expert_replicas(s, "plan.moe", moe.expert_replicas, units, moe.expert_tensor_parallel);
    if (moe.placement == Placement::kContiguous) check_contiguous(s, "plan.moe", units);
    const long long copies = static_cast<long long>(experts) * moe.expert_replicas;
    if (copies < units) {
      fail(s, "plan.moe.gpus",
           str(units) + unit_text + " but only " + str(experts) + " experts × " +
               str(moe.expert_replicas) + " replicas = " + str(copies) + " expert copies: some" +
               unit_text + " would hold no expert");
    }
  }
}

void check_colocated(const Scenario& s) {
  const ColocatedPlan& c = s.plan.colocated;
  require_positive(s, "plan.colocated.gpus", c.gpus);
  require_positive(s, "plan.colocated.tensor_parallel", c.tensor_parallel);
  if (c.gpus % c.tensor_parallel != 0) {
    fail(s, "plan.colocated.tensor_parallel",
         str(c.tensor_parallel) + " does not divide " + str(c.gpus) +
             " GPUs (plan.colocated.gpus); attention runs in groups of tensor_parallel GPUs");
  }
  check_head_split(s, "plan.colocated.tensor_parallel", "tensor_parallel", c.tensor_parallel);
  const int groups = c.gpus / c.tensor_parallel;
  check_batch_split(s, groups, str(groups) + " data-parallel attention groups");
  if (c.placement == Placement::kExplicit) {
    fail(s, "plan.colocated.placement", "explicit placement is not supported for colocated plans");
  }
  check_expert_tp(s, "plan.colocated", c.expert_tensor_parallel, c.gpus);
  const int units = c.gpus / c.expert_tensor_parallel;  // expert groups (or GPUs)
  check_expert_replicas(s, "plan.colocated", c.expert_replicas, units, c.expert_tensor_parallel);
  if (c.placement == Placement::kContiguous) check_contiguous(s, "plan.colocated", units);
}

void check_gpus_vs_topology(const Scenario& s) {
  const int used = s.plan.total_gpus();
  const int have = s.topology.nodes * s.topology.gpus_per_node;
  if (used > have) {
    std::string detail;
    if (s.plan.kind == PlanKind::kMaSeparation) {
      detail = " (" + str(s.plan.attention.gpus) + " attention + " + str(s.plan.moe.gpus) + " MoE)";
    }
    fail(s, "plan",
         "plan uses " + str(used) + " GPUs" + detail + " but topology " + s.topology.name +
             " has " + str(have));
  }
  const auto& ranks = s.plan.gpu_ranks;
  if (ranks.empty()) return;
  if (static_cast<int>(ranks.size()) != used) {
    fail(s, "plan.gpu_ranks",
         "lists " + str(static_cast<long long>(ranks.size())) + " ranks but the plan uses " +
             str(used) + " GPUs");
  }
  std::set<int> seen;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    const std::string key = "plan.gpu_ranks[" + std::to_string(i) + "]";
    if (ranks[i] < 0 || ranks[i] >= have) {
      fail(s, key,
           "rank " + str(ranks[i]) + " is outside topology " + s.topology.name + " (ranks 0.." +
               str(have - 1) + ")");
    }
    if (!seen.insert(ranks[i]).second) fail(s, key, "rank " + str(ranks[i]) + " is listed twice");
  }
}

// Every tensor class's format must be one the GPU computes in (GpuSpec::supports: a positive
// peak rate for it, e.g. fp8_tflops > 0 from Hopper on, fp4_tflops > 0 from Blackwell on).
// Checked for the storage-only classes too (KV cache, payloads): masep converts them with the
// GPU's own instructions. The key named is model.precision.<class> when that class differs
// from model.dtype, else model.dtype.
void check_dtype_vs_gpu(const Scenario& s) {
  const models::Model& m = s.model;
  const topology::GpuSpec& g = s.topology.gpu;
  const std::pair<const char*, models::DType> classes[] = {
      {"weights", m.precision.weights},
      {"kv_cache", m.precision.kv_cache},
      {"activations", m.precision.activations},
      {"dispatch", m.precision.dispatch},
      {"combine", m.precision.combine}};
  for (const auto& [cls, t] : classes) {
    if (g.supports(t)) continue;
    const std::string key =
        t == m.dtype ? std::string("model.dtype") : std::string("model.precision.") + cls;
    const char* rate = t == models::DType::kFP8    ? "fp8_tflops"
                       : t == models::DType::kINT8 ? "int8_tops"
                       : t == models::DType::kFP4  ? "fp4_tflops"
                       : t == models::DType::kFP16 ? "fp16_tflops"
                                                   : "bf16_tflops";
    std::string hint = t == models::DType::kFP8   ? " (use bf16 or fp16, or a Hopper-class GPU)"
                       : t == models::DType::kFP4 ? " (use fp8 or bf16, or a Blackwell-class GPU)"
                                                  : "";
    fail(s, key,
         std::string(models::to_string(t)) + " " + cls + " need a GPU with " +
             models::to_string(t) + " support, but " + g.name + " (topology.gpu) has " + rate +
             " 0" + hint);
  }
}

void check_workload(const Scenario& s) {
  const Workload& w = s.workload;
  require_positive(s, "workload.batch", w.batch);
  if (w.context_kind == ContextKind::kFixed) {
    require_positive(s, "workload.context", w.context);
  } else {
    require_positive(s, "workload.context.min", w.context_min);
    if (w.context_max < w.context_min) {
      fail(s, "workload.context.max", str(w.context_max) + " is below min " + str(w.context_min));
    }
  }
  require_positive(s, "workload.decode_steps", w.decode_steps);
  const Routing& r = w.routing;
  if (r.kind == RoutingKind::kZipf && !(r.zipf_skew > 0)) {
    fail(s, "workload.routing.skew", "must be positive, got " + std::to_string(r.zipf_skew));
  }
  if (r.kind == RoutingKind::kExplicit) {
    if (static_cast<int>(r.expert_weights.size()) != s.model.experts) {
      fail(s, "workload.routing.expert_weights",
           str(static_cast<long long>(r.expert_weights.size())) + " weights, but model " +
               s.model.name + " has " + str(s.model.experts) + " experts (one weight each)");
    }
    for (std::size_t i = 0; i < r.expert_weights.size(); ++i) {
      if (!(r.expert_weights[i] > 0)) {
        fail(s, "workload.routing.expert_weights[" + std::to_string(i) + "]",
             "must be positive, got " + std::to_string(r.expert_weights[i]));
      }
    }
  } else if (!r.expert_weights.empty()) {
    fail(s, "workload.routing.expert_weights", "only used with kind: explicit");
  }
  if (r.kind == RoutingKind::kTrace) {
    if (r.trace == nullptr) fail(s, "workload.routing.file", "no routing trace was read");
    const RoutingTrace& t = *r.trace;
    const std::string what = "routing trace " + r.trace_file + " has ";
    auto same = [&](const char* key, long long trace_v, long long want, const std::string& of) {
      if (trace_v != want) {
        fail(s, "workload.routing.file",
             what + key + " " + str(trace_v) + ", " + of + " " + str(want));
      }
    };
    same("experts", t.experts, s.model.experts, "model " + s.model.name + " has experts");
    same("top_k", t.top_k, s.model.top_k, "the model's top_k is");
    same("batch", t.batch, w.batch, "workload.batch is");
    same("layers", t.layers, s.model.layers, "the model's layers are");
    if (t.steps < w.decode_steps) {
      fail(s, "workload.routing.file",
           what + str(t.steps) + " steps, workload.decode_steps is " + str(w.decode_steps));
    }
    for (int step = 0; step < w.decode_steps; ++step) {
      for (int l = s.model.dense_layers; l < s.model.layers; ++l) {
        if (!t.has(step, l)) {
          fail(s, "workload.routing.file",
               what + "no record for step " + str(step) + " layer " + str(l) +
                   " (every decode step × MoE layer needs one)");
        }
      }
    }
  } else if (r.trace != nullptr || !r.trace_file.empty()) {
    fail(s, "workload.routing.file", "only used with kind: trace");
  }
}

// Byte totals, in double, before any int64 arithmetic sizes them (plan/memory.cpp multiplies
// layers x sequences x context x heads x bytes): each must stay below 2^53 (~9 PB), where
// every integer is exact, far below int64's 2^63. Within the count limits (limits.hpp) a
// model or KV cache can still reach ~10^20 bytes; this makes that an error at a key.
void check_magnitudes(const Scenario& s) {
  constexpr double kMaxBytes = 9007199254740992.0;  // 2^53
  const models::Model& m = s.model;
  const double e = 2;  // bytes per element, the widest format (scales are below 1/16 more)
  const double L = m.layers, H = m.hidden, hd = m.head_dim;
  const double ffn = std::max({m.expert_ffn, m.dense_ffn, m.shared_ffn()});
  const double attn = m.is_mla() ? static_cast<double>(m.attention_projection_params())
                                 : ((m.heads + 2.0 * m.kv_heads) * hd * H + m.heads * hd * H);
  const double weights = L * (attn + 2 * H + H * m.experts) * e +
                         L * (m.experts + static_cast<double>(m.shared_experts)) * 3 * H * ffn * e;
  if (weights > kMaxBytes) {
    fail(s, "model",
         fmt::format("{:.3g} bytes of weights (layers x experts x hidden x expert_ffn ...): more "
                     "than masep handles (2^53 bytes, ~9 PB)",
                     weights));
  }
  const double context = std::max(s.workload.context, s.workload.context_max);
  const double kv =
      L * s.workload.batch * (context + s.workload.decode_steps) *
      static_cast<double>(m.kv_elements_per_token_per_layer()) * e;
  if (kv > kMaxBytes) {
    fail(s, "workload.batch",
         fmt::format("{:.3g} bytes of KV cache (layers x batch x context x kv_heads x head_dim "
                     "...): more than masep handles (2^53 bytes, ~9 PB)",
                     kv));
  }
}

// Expert load balancing (plan.balance): slots divide evenly over the MoE GPUs; the placement
// keys the balancer replaces keep their defaults.
void check_balance(const Scenario& s) {
  const BalanceSpec& b = s.plan.balance;
  if (b.policy == BalancePolicy::kStatic) return;
  const bool ma = s.plan.kind == PlanKind::kMaSeparation;
  const std::string prefix = ma ? "plan.moe" : "plan.colocated";
  const int gpus = ma ? s.plan.moe.gpus : s.plan.colocated.gpus;
  const int replicas = ma ? s.plan.moe.expert_replicas : s.plan.colocated.expert_replicas;
  const std::string policy = to_string(b.policy);
  if (replicas != 1) {
    fail(s, prefix + ".expert_replicas",
         "must be 1 with plan.balance.policy " + policy +
             " (the balancer chooses the copies; use plan.balance.redundant_experts)");
  }
  if (ma && s.plan.moe.placement == Placement::kExplicit) {
    fail(s, "plan.moe.placement", "explicit placement cannot be combined with plan.balance.policy " +
                                      policy);
  }
  const long long slots = static_cast<long long>(s.model.experts) + b.redundant_experts;
  if (gpus > 0 && slots % gpus != 0) {
    fail(s, "plan.balance.redundant_experts",
         str(s.model.experts) + " experts + " + str(b.redundant_experts) +
             " redundant copies do not divide evenly over " + str(gpus) + " MoE GPUs (need " +
             prefix + ".gpus to divide experts + redundant_experts)");
  }
  if (gpus > 0 && slots / gpus > s.model.experts) {
    fail(s, "plan.balance.redundant_experts",
         str(slots / gpus) + " slots per GPU exceed the model's " + str(s.model.experts) +
             " experts (a GPU holds each expert at most once)");
  }
  if (b.expert_groups > s.model.experts || s.model.experts % b.expert_groups != 0) {
    fail(s, "plan.balance.expert_groups",
         str(b.expert_groups) + " does not divide the model's " + str(s.model.experts) +
             " experts");
  }
  if (s.workload.routing.drift_every > 0 && s.workload.routing.kind != RoutingKind::kZipf) {
    fail(s, "workload.routing.drift_every", "only used with kind: zipf");
  }
}

}  // namespace

int PlanSpec::total_gpus() const {
  return kind == PlanKind::kMaSeparation ? attention.gpus + moe.gpus : colocated.gpus;
}

// plan.expert_exchange: the SMs the exchange kernels take must leave compute some; the
// DeepEP-style modes send whole rows to single GPUs (no expert tensor parallelism).
void check_expert_exchange(const Scenario& s) {
  const ExpertExchange& x = s.plan.expert_exchange;
  const int sms = s.topology.gpu.sm_count;
  if (sms > 0 && x.sms() >= sms) {
    fail(s, "plan.expert_exchange.comm_sms",
         str(x.sms()) + " SMs for the exchange kernels leave none for compute: " +
             s.topology.gpu.name + " has " + str(sms) + " SMs");
  }
  if (x.mode != ExchangeMode::kNccl && s.plan.expert_tensor_parallel() > 1) {
    fail(s, "plan.expert_exchange.mode",
         std::string(to_string(x.mode)) +
             " is not supported with expert tensor parallelism (its rows go to single GPUs); "
             "use mode: nccl");
  }
}

int PlanSpec::expert_tensor_parallel() const {
  return kind == PlanKind::kMaSeparation ? moe.expert_tensor_parallel
                                         : colocated.expert_tensor_parallel;
}

void validate_scenario(const Scenario& s) {
  require_positive(s, "plan.micro_batches", s.plan.micro_batches);
  if (s.plan.kind == PlanKind::kMaSeparation) {
    check_ma_separation(s);
  } else {
    check_colocated(s);
  }
  check_gpus_vs_topology(s);
  check_dtype_vs_gpu(s);
  check_workload(s);
  check_balance(s);
  check_expert_exchange(s);
  check_magnitudes(s);
}

}  // namespace masep::plan
