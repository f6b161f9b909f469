#include "masep/plan/program_json.hpp"

#include "masep/plan/input_file.hpp"
#include "masep/plan/output_file.hpp"
#include "masep/plan/scenario.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace masep::plan {

namespace {

using nlohmann::json;

json op_json(const Op& o) {
  return json{{"id", o.id},
              {"rank", o.rank},
              {"stream", stream_name(o.stream)},
              {"kind", to_string(o.kind)},
              {"role", to_string(o.role)},
              {"dtype", models::to_string(o.dtype)},
              {"name", o.name.str()},
              {"layer", o.layer},
              {"step", o.step},
              {"micro_batch", o.micro_batch},
              {"m", o.m},
              {"n", o.n},
              {"k", o.k},
              {"group_m", o.group_m},
              {"batch", o.batch},
              {"heads", o.heads},
              {"kv_heads", o.kv_heads},
              {"head_dim", o.head_dim},
              {"kv_tokens", o.kv_tokens},
              {"flops", o.flops},
              {"hbm_bytes", o.hbm_bytes},
              {"weight_bytes", o.weight_bytes},
              {"comm_bytes", o.comm_bytes},
              {"peer", o.peer},
              {"match", o.match},
              {"collective", o.collective},
              {"exchange", o.exchange},
              {"deps", o.deps.to_vector()}};
}

}  // namespace

void write_program_json(const Program& p, std::ostream& out) {
  const models::Model& m = p.model;
  const ProgramLayout& l = p.layout;
  json head{{"format", "masep-program"},
            {"version", kProgramJsonVersion},
            {"scenario", p.scenario},
            {"first_step", p.first_step},
            {"steps", p.steps},
            {"layers", p.layers},
            {"micro_batches", p.micro_batches},
            {"model",
             {{"name", m.name},
              {"layers", m.layers},
              {"hidden", m.hidden},
              {"heads", m.heads},
              {"kv_heads", m.kv_heads},
              {"head_dim", m.head_dim},
              {"experts", m.experts},
              {"top_k", m.top_k},
              {"expert_ffn", m.expert_ffn},
              {"shared_experts", m.shared_experts},
              {"activation", models::to_string(m.activation)},
              {"dtype", models::to_string(m.dtype)},
              {"attention", models::to_string(m.attention)},
              {"mla",
               {{"q_lora_rank", m.mla.q_lora_rank},
                {"kv_lora_rank", m.mla.kv_lora_rank},
                {"qk_nope_head_dim", m.mla.qk_nope_head_dim},
                {"qk_rope_head_dim", m.mla.qk_rope_head_dim},
                {"v_head_dim", m.mla.v_head_dim}}},
              {"shared_expert_ffn", m.shared_expert_ffn},
              {"dense_layers", m.dense_layers},
              {"dense_ffn", m.dense_ffn},
              {"vocab", m.vocab},
              {"sliding_window", m.sliding_window},
              {"sliding_pattern", m.sliding_pattern},
              {"precision",
               {{"weights", models::to_string(m.precision.weights)},
                {"kv_cache", models::to_string(m.precision.kv_cache)},
                {"activations", models::to_string(m.precision.activations)},
                {"dispatch", models::to_string(m.precision.dispatch)},
                {"combine", models::to_string(m.precision.combine)}}}}},
            {"layout",
             {{"separated", l.separated},
              {"attention_ranks", l.attention_ranks},
              {"moe_base", l.moe_base},
              {"moe_ranks", l.moe_ranks},
              {"group_size", l.group_size},
              {"sequence_parallel", l.sequence_parallel},
              {"replicas", l.replicas},
              {"batch", l.batch},
              {"seed", l.seed},
              {"intra_node_GBps", l.intra_node_GBps},
              {"expert_holders", l.expert_holders},
              {"context_lengths", l.context_lengths}}}};
  if (p.target.known) {
    const ProgramTarget& t = p.target;
    const topology::GpuSpec& g = t.gpu;
    head["target"] = json{{"origin", t.origin},
                          {"plan_kind", t.plan_kind},
                          {"gpus_per_node", t.gpus_per_node},
                          {"gpu",
                           {{"name", g.name},
                            {"bf16_tflops", g.bf16_tflops},
                            {"fp16_tflops", g.fp16_tflops},
                            {"fp8_tflops", g.fp8_tflops},
                            {"int8_tops", g.int8_tops},
                            {"fp4_tflops", g.fp4_tflops},
                            {"hbm_gb", g.hbm_gb},
                            {"hbm_GBps", g.hbm_GBps},
                            {"sm_count", g.sm_count},
                            {"nvlink_GBps", g.nvlink_GBps},
                            {"compute_capability", g.compute_capability}}},
                          {"memory_bytes", t.memory_bytes}};
  }
  if (!l.expert_route.empty()) head["layout"]["expert_route"] = l.expert_route;
  if (l.expert_tensor_parallel != 1) {
    head["layout"]["expert_tensor_parallel"] = l.expert_tensor_parallel;
  }
  if (!l.replica_shapes.empty()) {  // [first_rank, head_parallel, sequence_parallel] each
    json shapes = json::array();
    for (const ReplicaShape& x : l.replica_shapes) {
      shapes.push_back(json::array({x.first_rank, x.head_parallel, x.sequence_parallel}));
    }
    head["layout"]["replica_shapes"] = std::move(shapes);
  }
  json ranks = json::array();
  for (const RankInfo& r : p.ranks) {
    json batches = json::array();
    for (const RankBatch& b : r.batches) {
      batches.push_back(json::array(
          {b.first_sequence, b.sequences, b.slice_first, b.slice_tokens, b.slice_offset}));
    }
    ranks.push_back(json{{"gpu", r.gpu},
                         {"role", to_string(r.role)},
                         {"label", r.label},
                         {"experts", r.experts},
                         {"replica", r.replica},
                         {"sequences", r.sequences},
                         {"group_index", r.group_index},
                         {"kv_append", r.kv_append},
                         {"batches", batches}});
  }
  json groups = json::array();
  for (const Group& g : p.groups) groups.push_back(json{{"name", g.name}, {"ranks", g.ranks}});
  json stream_ops = json::array();
  for (const auto& r : p.stream_ops) stream_ops.push_back(json::array({r[kCompute], r[kComm]}));

  // Header fields, then the large arrays element by element.
  std::string text = head.dump();
  text.pop_back();  // the closing brace
  out << text << ",\"ranks\":" << ranks.dump() << ",\"groups\":" << groups.dump()
      << ",\"stream_ops\":" << stream_ops.dump() << ",\"collectives\":[";
  for (size_t i = 0; i < p.collectives.size(); ++i) {
    const Collective& c = p.collectives[i];
    out << (i ? ",\n" : "\n")
        << json{{"kind", to_string(c.kind)},
                {"group", c.group},
                {"bytes", c.bytes},
                {"ops", c.ops},
                {"matrix", c.matrix}}
               .dump();
  }
  // Exchanges: transfers as [src_op, dst_op, bytes].
  out << "],\"exchanges\":[";
  for (size_t i = 0; i < p.exchanges.size(); ++i) {
    json ts = json::array();
    for (const Transfer& t : p.exchanges[i].transfers) {
      ts.push_back(json::array({t.src_op, t.dst_op, t.bytes}));
    }
    json jx{{"transfers", ts}};
    // Written only when not the default, so NCCL-only Programs dump as before.
    const Exchange& x = p.exchanges[i];
    if (x.transport != ExchangeTransport::kNccl) jx["transport"] = to_string(x.transport);
    if (x.sms != 0) jx["sms"] = x.sms;
    out << (i ? ",\n" : "\n") << jx.dump();
  }
  out << "],\"routing\":[";
  for (size_t i = 0; i < p.routing.size(); ++i) {
    const RoutingSample& r = p.routing[i];
    out << (i ? ",\n" : "\n")
        << json{{"step", r.step},
                {"layer", r.layer},
                {"micro_batch", r.micro_batch},
                {"tokens_per_expert", r.tokens_per_expert},
                {"first_sequence", r.first_sequence},
                {"token_experts", r.token_experts}}
               .dump();
  }
  out << "],\"ops\":[";
  for (size_t i = 0; i < p.ops.size(); ++i) out << (i ? ",\n" : "\n") << op_json(p.ops[i]).dump();
  out << "]}\n";
}

void write_program_json_file(const Program& p, const std::string& path) {
  write_output_file(path, "program dump", [&](std::ostream& o) { write_program_json(p, o); });
}

namespace {

// Reading: every field is looked up by name with its place in the document, so a bad or
// truncated file is reported as "FILE: ops[12].kind: ..." rather than as a JSON exception.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& where, const std::string& what) const {
    throw std::invalid_argument(source_ + ": " + where + ": " + what);
  }

  const json& at(const json& j, const char* key, const std::string& where) const {
    if (!j.is_object()) fail(where, "expected an object");
    const auto it = j.find(key);
    if (it == j.end()) fail(where.empty() ? key : where + "." + key, "missing");
    return *it;
  }

  template <typename T>
  T get(const json& j, const char* key, const std::string& where) const {
    const json& v = at(j, key, where);
    try {
      if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
        if (!v.is_number_integer() && !v.is_number_unsigned()) throw std::invalid_argument("");
      }
      return v.get<T>();
    } catch (const std::exception&) {
      fail(where.empty() ? key : where + "." + key,
           "wrong type (" + std::string(v.type_name()) + ")");
    }
  }

  template <typename E, int N>
  E enum_of(const json& j, const char* key, const std::string& where) const {
    const std::string text = get<std::string>(j, key, where);
    for (int i = 0; i < N; ++i) {
      if (text == to_string(static_cast<E>(i))) return static_cast<E>(i);
    }
    fail(where + "." + key, "unknown value '" + text + "'");
  }

 private:
  std::string source_;
};

std::string idx(const char* array, size_t i) {
  return std::string(array) + "[" + std::to_string(i) + "]";
}

// Largest count or size a Program field may hold: keeps every product the back ends form
// (rows × columns × bytes) far inside int64.
constexpr int64_t kMaxCount = int64_t{1} << 31;

// A field of a read Program lies in [lo, hi].
void in_range(const Reader& r, const std::string& where, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    r.fail(where, std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "]");
  }
}

// The ranges of one op's fields against the Program's header (a file is untrusted input:
// the simulator and the lowering index arrays with these).
void check_op_ranges(const Reader& r, const Program& p, const Op& o, const std::string& w) {
  in_range(r, w + ".micro_batch", o.micro_batch, 0, std::max(1, p.micro_batches) - 1);
  in_range(r, w + ".layer", o.layer, 0, std::max(1, p.layers) - 1);
  in_range(r, w + ".step", o.step, p.first_step, p.first_step + std::max(1, p.steps) - 1);
  for (const auto& [v, key] : {std::pair{o.m, ".m"},
                               {o.n, ".n"},
                               {o.k, ".k"},
                               {int64_t{o.batch}, ".batch"},
                               {int64_t{o.heads}, ".heads"},
                               {int64_t{o.kv_heads}, ".kv_heads"},
                               {int64_t{o.head_dim}, ".head_dim"}}) {
    in_range(r, w + key, v, 0, kMaxCount);
  }
  for (const auto& [v, key] : {std::pair{o.kv_tokens, ".kv_tokens"},
                               {o.hbm_bytes, ".hbm_bytes"},
                               {o.weight_bytes, ".weight_bytes"},
                               {o.comm_bytes, ".comm_bytes"}}) {
    in_range(r, w + key, v, 0, int64_t{1} << 50);
  }
  if (!(o.flops >= 0 && o.flops < 1e18)) r.fail(w + ".flops", "not a finite FLOP count >= 0");
  for (int32_t g : o.group_m) in_range(r, w + ".group_m", g, 0, kMaxCount);
}

// The header, the layout and the ranks' batches agree with each other and with the model.
void check_layout(const Reader& r, const Program& p) {
  const ProgramLayout& l = p.layout;
  const int n = p.rank_count();
  in_range(r, "micro_batches", p.micro_batches, 1, 1 << 16);
  in_range(r, "layers", p.layers, 0, 1 << 20);
  in_range(r, "steps", p.steps, 0, 1 << 20);
  in_range(r, "layout.batch", l.batch, 0, kMaxCount);
  in_range(r, "layout.attention_ranks", l.attention_ranks, 0, n);
  in_range(r, "layout.moe_base", l.moe_base, 0, n);
  in_range(r, "layout.moe_ranks", l.moe_ranks, 0, n - l.moe_base);
  in_range(r, "layout.group_size", l.group_size, 1, std::max(1, l.attention_ranks));
  in_range(r, "layout.sequence_parallel", l.sequence_parallel, 1, l.group_size);
  in_range(r, "layout.replicas", l.replicas, 0, std::max(1, l.attention_ranks));
  if (!l.replica_shapes.empty()) {
    if (static_cast<int64_t>(l.replica_shapes.size()) != l.replicas) {
      r.fail("layout.replica_shapes", "lists " + std::to_string(l.replica_shapes.size()) +
                                          " replicas, layout has " + std::to_string(l.replicas));
    }
    int32_t next = 0;  // the replicas tile ranks 0 .. attention_ranks − 1 in order
    for (size_t i = 0; i < l.replica_shapes.size(); ++i) {
      const ReplicaShape& x = l.replica_shapes[i];
      const std::string w = idx("layout.replica_shapes", i);
      in_range(r, w, x.head_parallel, 1, l.group_size);
      in_range(r, w, x.sequence_parallel, 1, l.sequence_parallel);
      if (x.first_rank != next || x.size() > l.group_size) {
        r.fail(w, "replica does not start at rank " + std::to_string(next) +
                      " or is larger than group_size");
      }
      next += x.size();
    }
    if (next != l.attention_ranks) {
      r.fail("layout.replica_shapes", "replicas cover " + std::to_string(next) +
                                          " ranks, layout has " +
                                          std::to_string(l.attention_ranks) + " attention ranks");
    }
  }
  if (!(l.intra_node_GBps >= 0 && l.intra_node_GBps < 1e9)) {
    r.fail("layout.intra_node_GBps", "not a finite rate >= 0");
  }
  if (static_cast<int64_t>(l.context_lengths.size()) != l.batch && !l.context_lengths.empty()) {
    r.fail("layout.context_lengths", std::to_string(l.context_lengths.size()) +
                                         " lengths for a batch of " + std::to_string(l.batch));
  }
  for (int32_t c : l.context_lengths) in_range(r, "layout.context_lengths", c, 0, 1 << 30);
  if (!l.expert_route.empty() &&
      static_cast<int64_t>(l.expert_route.size()) != static_cast<int64_t>(l.attention_ranks)) {
    r.fail("layout.expert_route", "lists " + std::to_string(l.expert_route.size()) +
                                      " attention ranks, layout has " +
                                      std::to_string(l.attention_ranks));
  }
  for (size_t a = 0; a < l.expert_route.size(); ++a) {
    if (l.expert_route[a].size() != l.expert_holders.size()) {
      r.fail(idx("layout.expert_route", a), "lists " + std::to_string(l.expert_route[a].size()) +
                                                " experts, not " +
                                                std::to_string(l.expert_holders.size()));
    }
    for (size_t e = 0; e < l.expert_route[a].size(); ++e) {
      const int32_t g = l.expert_route[a][e];
      const auto& h = l.expert_holders[e];
      if (std::find(h.begin(), h.end(), g) == h.end()) {
        r.fail(idx("layout.expert_route", a), "expert " + std::to_string(e) +
                                                  " routed to GPU " + std::to_string(g) +
                                                  ", which does not hold it");
      }
    }
  }
  in_range(r, "layout.expert_tensor_parallel", l.expert_tensor_parallel, 1,
           std::max(1, l.moe_ranks));
  if (l.moe_ranks % l.expert_tensor_parallel != 0) {
    r.fail("layout.expert_tensor_parallel",
           "does not divide moe_ranks " + std::to_string(l.moe_ranks));
  }
  const int32_t units = l.moe_ranks / l.expert_tensor_parallel;  // expert groups (or GPUs)
  for (size_t e = 0; e < l.expert_holders.size(); ++e) {
    for (int32_t g : l.expert_holders[e]) {
      in_range(r, idx("layout.expert_holders", e), g, 0, std::max(0, units - 1));
    }
  }
  for (size_t i = 0; i < p.ranks.size(); ++i) {
    const RankInfo& ri = p.ranks[i];
    const std::string w = idx("ranks", i);
    in_range(r, w + ".group_index", ri.group_index, -1, l.group_size - 1);
    for (int32_t e : ri.experts) in_range(r, w + ".experts", e, 0, p.model.experts - 1);
    if (!std::is_sorted(ri.experts.begin(), ri.experts.end())) {
      r.fail(w + ".experts", "not in ascending order (the local slot order)");
    }
    if (static_cast<int>(i) < l.attention_ranks &&
        static_cast<int>(ri.batches.size()) != p.micro_batches) {
      r.fail(w + ".batches", std::to_string(ri.batches.size()) + " entries for " +
                                 std::to_string(p.micro_batches) + " micro-batches");
    }
    for (const RankBatch& b : ri.batches) {
      in_range(r, w + ".batches.first_sequence", b.first_sequence, 0, l.batch);
      in_range(r, w + ".batches.sequences", b.sequences, 0, l.batch - b.first_sequence);
      in_range(r, w + ".batches.slice_offset", b.slice_offset, 0, b.sequences);
      in_range(r, w + ".batches.slice_tokens", b.slice_tokens, 0, b.sequences - b.slice_offset);
      if (b.slice_first != b.first_sequence + b.slice_offset) {
        r.fail(w + ".batches.slice_first", "is not first_sequence + slice_offset");
      }
    }
  }
  const auto& mem = p.target.memory_bytes;
  if (!mem.empty() && mem.size() != p.ranks.size()) {
    r.fail("target.memory_bytes",
           std::to_string(mem.size()) + " entries for " + std::to_string(n) + " ranks");
  }
  for (size_t i = 0; i < p.routing.size(); ++i) {
    const RoutingSample& rs = p.routing[i];
    const std::string w = idx("routing", i);
    if (static_cast<int>(rs.tokens_per_expert.size()) != p.model.experts) {
      r.fail(w + ".tokens_per_expert", "one count per expert expected");
    }
    in_range(r, w + ".first_sequence", rs.first_sequence, 0, l.batch);
    for (int32_t e : rs.token_experts) in_range(r, w + ".token_experts", e, 0, p.model.experts - 1);
  }
}

// The optional "target" section (ProgramTarget): what metrics need of the scenario.
void read_target(const Reader& r, const json& j, ProgramTarget& t) {
  t.known = true;
  t.origin = r.get<std::string>(j, "origin", "target");
  t.plan_kind = r.get<std::string>(j, "plan_kind", "target");
  if (t.plan_kind != to_string(PlanKind::kMaSeparation) &&
      t.plan_kind != to_string(PlanKind::kColocated)) {
    r.fail("target.plan_kind", "unknown value '" + t.plan_kind + "'");
  }
  t.gpus_per_node = r.get<int32_t>(j, "gpus_per_node", "target");
  in_range(r, "target.gpus_per_node", t.gpus_per_node, 1, 1 << 16);
  const json& jg = r.at(j, "gpu", "target");
  topology::GpuSpec& g = t.gpu;
  g.name = r.get<std::string>(jg, "name", "target.gpu");
  const std::pair<const char*, double*> rates[] = {
      {"bf16_tflops", &g.bf16_tflops}, {"fp16_tflops", &g.fp16_tflops},
      {"fp8_tflops", &g.fp8_tflops},   {"int8_tops", &g.int8_tops},
      {"fp4_tflops", &g.fp4_tflops},   {"hbm_gb", &g.hbm_gb},
      {"hbm_GBps", &g.hbm_GBps},       {"nvlink_GBps", &g.nvlink_GBps}};
  for (const auto& [key, v] : rates) {
    *v = r.get<double>(jg, key, "target.gpu");
    if (!(*v >= 0 && *v < 1e9)) r.fail(std::string("target.gpu.") + key, "not a finite value >= 0");
  }
  g.sm_count = r.get<int>(jg, "sm_count", "target.gpu");
  in_range(r, "target.gpu.sm_count", g.sm_count, 0, 1 << 16);
  g.compute_capability = r.get<int>(jg, "compute_capability", "target.gpu");
  in_range(r, "target.gpu.compute_capability", g.compute_capability, 0, 1000);
  t.memory_bytes = r.get<std::vector<int64_t>>(j, "memory_bytes", "target");
  for (int64_t b : t.memory_bytes) in_range(r, "target.memory_bytes", b, 0, int64_t{1} << 50);
}

}  // namespace

Program read_program_json(std::istream& in, const std::string& source) {
  const Reader r(source);
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::parse_error& e) {
    r.fail("JSON", e.what());
  }
  if (!doc.is_object() || doc.value("format", std::string()) != "masep-program") {
    r.fail("format", "not a masep Program (no \"format\": \"masep-program\")");
  }
  const int version = r.get<int>(doc, "version", "");
  if (version != kProgramJsonVersion) {
    r.fail("version", "version " + std::to_string(version) + "; this masep reads version " +
                          std::to_string(kProgramJsonVersion) +
                          " (write it again with this masep)");
  }
  Program p;
  p.scenario = r.get<std::string>(doc, "scenario", "");
  p.first_step = r.get<int32_t>(doc, "first_step", "");
  p.steps = r.get<int32_t>(doc, "steps", "");
  p.layers = r.get<int32_t>(doc, "layers", "");
  p.micro_batches = r.get<int32_t>(doc, "micro_batches", "");

  const json& jm = r.at(doc, "model", "");
  models::Model& m = p.model;
  m.name = r.get<std::string>(jm, "name", "model");
  m.layers = r.get<int>(jm, "layers", "model");
  m.hidden = r.get<int>(jm, "hidden", "model");
  m.heads = r.get<int>(jm, "heads", "model");
  m.kv_heads = r.get<int>(jm, "kv_heads", "model");
  m.head_dim = r.get<int>(jm, "head_dim", "model");
  m.experts = r.get<int>(jm, "experts", "model");
  m.top_k = r.get<int>(jm, "top_k", "model");
  m.expert_ffn = r.get<int>(jm, "expert_ffn", "model");
  m.shared_experts = r.get<int>(jm, "shared_experts", "model");
  {
    const std::string act = r.get<std::string>(jm, "activation", "model");
    bool ok_act = false;
    for (auto a : {models::Activation::kSwiGLU, models::Activation::kGELU}) {
      if (act == models::to_string(a)) m.activation = a, ok_act = true;
    }
    if (!ok_act) r.fail("model.activation", "unknown value '" + act + "'");
    m.dtype = r.enum_of<models::DType, models::kDTypeCount>(jm, "dtype", "model");
  }
  // Issue 15's keys; a Program written before them has none and means MHA/GQA, no dense
  // layers, one format for every tensor class.
  m.precision = models::Precision::all(m.dtype);
  if (jm.contains("attention")) {
    m.attention = r.enum_of<models::AttentionKind, 3>(jm, "attention", "model");
  } else {
    m.attention = m.kv_heads == m.heads ? models::AttentionKind::kMHA : models::AttentionKind::kGQA;
  }
  if (jm.contains("mla")) {
    const json& x = r.at(jm, "mla", "model");
    m.mla.q_lora_rank = r.get<int>(x, "q_lora_rank", "model.mla");
    m.mla.kv_lora_rank = r.get<int>(x, "kv_lora_rank", "model.mla");
    m.mla.qk_nope_head_dim = r.get<int>(x, "qk_nope_head_dim", "model.mla");
    m.mla.qk_rope_head_dim = r.get<int>(x, "qk_rope_head_dim", "model.mla");
    m.mla.v_head_dim = r.get<int>(x, "v_head_dim", "model.mla");
  }
  if (jm.contains("shared_expert_ffn")) {
    m.shared_expert_ffn = r.get<int>(jm, "shared_expert_ffn", "model");
  }
  if (jm.contains("dense_layers")) m.dense_layers = r.get<int>(jm, "dense_layers", "model");
  if (jm.contains("dense_ffn")) m.dense_ffn = r.get<int>(jm, "dense_ffn", "model");
  if (jm.contains("vocab")) m.vocab = r.get<int>(jm, "vocab", "model");
  if (jm.contains("sliding_window")) {
    m.sliding_window = r.get<int>(jm, "sliding_window", "model");
    m.sliding_pattern = r.get<std::vector<bool>>(jm, "sliding_pattern", "model");
  }
  if (jm.contains("precision")) {
    const json& x = r.at(jm, "precision", "model");
    constexpr int N = models::kDTypeCount;
    m.precision.weights = r.enum_of<models::DType, N>(x, "weights", "model.precision");
    m.precision.kv_cache = r.enum_of<models::DType, N>(x, "kv_cache", "model.precision");
    m.precision.activations = r.enum_of<models::DType, N>(x, "activations", "model.precision");
    m.precision.dispatch = r.enum_of<models::DType, N>(x, "dispatch", "model.precision");
    m.precision.combine = r.enum_of<models::DType, N>(x, "combine", "model.precision");
  }
  try {
    m.validate();
  } catch (const std::exception& e) {
    r.fail("model", e.what());
  }

  const json& jl = r.at(doc, "layout", "");
  ProgramLayout& l = p.layout;
  l.separated = r.get<bool>(jl, "separated", "layout");
  l.attention_ranks = r.get<int32_t>(jl, "attention_ranks", "layout");
  l.moe_base = r.get<int32_t>(jl, "moe_base", "layout");
  l.moe_ranks = r.get<int32_t>(jl, "moe_ranks", "layout");
  l.group_size = r.get<int32_t>(jl, "group_size", "layout");
  l.sequence_parallel = r.get<int32_t>(jl, "sequence_parallel", "layout");
  l.replicas = r.get<int32_t>(jl, "replicas", "layout");
  l.batch = r.get<int64_t>(jl, "batch", "layout");
  l.seed = r.get<uint64_t>(jl, "seed", "layout");
  l.intra_node_GBps = r.get<double>(jl, "intra_node_GBps", "layout");
  l.expert_holders = r.get<std::vector<std::vector<int32_t>>>(jl, "expert_holders", "layout");
  l.context_lengths = r.get<std::vector<int32_t>>(jl, "context_lengths", "layout");
  if (jl.contains("expert_tensor_parallel")) {
    l.expert_tensor_parallel = r.get<int32_t>(jl, "expert_tensor_parallel", "layout");
  }
  if (jl.contains("expert_route")) {
    l.expert_route = r.get<std::vector<std::vector<int32_t>>>(jl, "expert_route", "layout");
  }
  if (jl.contains("replica_shapes")) {
    for (const auto& x : r.get<std::vector<std::vector<int32_t>>>(jl, "replica_shapes", "layout")) {
      if (x.size() != 3) {
        r.fail("layout.replica_shapes",
               "an entry is not [first_rank, head_parallel, sequence_parallel]");
      }
      l.replica_shapes.push_back(ReplicaShape{x[0], x[1], x[2]});
    }
  }

  if (doc.contains("target")) read_target(r, r.at(doc, "target", ""), p.target);

  const json& jr = r.at(doc, "ranks", "");
  for (size_t i = 0; i < jr.size(); ++i) {
    const std::string w = idx("ranks", i);
    const json& e = jr[i];
    RankInfo ri;
    ri.gpu = r.get<int32_t>(e, "gpu", w);
    ri.role = r.enum_of<Role, 3>(e, "role", w);
    ri.label = r.get<std::string>(e, "label", w);
    ri.experts = r.get<std::vector<int32_t>>(e, "experts", w);
    ri.replica = r.get<int32_t>(e, "replica", w);
    ri.sequences = r.get<int32_t>(e, "sequences", w);
    ri.group_index = r.get<int32_t>(e, "group_index", w);
    ri.kv_append = r.get<bool>(e, "kv_append", w);
    const auto bs = r.get<std::vector<std::array<int64_t, 5>>>(e, "batches", w);
    for (const auto& b : bs) ri.batches.push_back(RankBatch{b[0], b[1], b[2], b[3], b[4]});
    p.ranks.push_back(std::move(ri));
  }
  const json& jg = r.at(doc, "groups", "");
  for (size_t i = 0; i < jg.size(); ++i) {
    const std::string w = idx("groups", i);
    p.groups.push_back(Group{r.get<std::string>(jg[i], "name", w),
                             r.get<std::vector<int32_t>>(jg[i], "ranks", w)});
  }
  const json& js = r.at(doc, "stream_ops", "");
  for (size_t i = 0; i < js.size(); ++i) {
    try {
      const auto both = js[i].get<std::array<std::vector<OpId>, kStreamCount>>();
      p.stream_ops.push_back(both);
    } catch (const std::exception&) {
      r.fail(idx("stream_ops", i), "expected [[compute op ids], [comm op ids]]");
    }
  }
  const json& jc = r.at(doc, "collectives", "");
  for (size_t i = 0; i < jc.size(); ++i) {
    const std::string w = idx("collectives", i);
    Collective c;
    c.kind = r.enum_of<OpKind, static_cast<int>(OpKind::kExchange) + 1>(jc[i], "kind", w);
    c.group = r.get<int32_t>(jc[i], "group", w);
    c.bytes = r.get<int64_t>(jc[i], "bytes", w);
    c.ops = r.get<std::vector<OpId>>(jc[i], "ops", w);
    c.matrix = r.get<std::vector<std::vector<int64_t>>>(jc[i], "matrix", w);
    p.collectives.push_back(std::move(c));
  }
  const json& jx = r.at(doc, "exchanges", "");
  for (size_t i = 0; i < jx.size(); ++i) {
    const std::string w = idx("exchanges", i);
    Exchange x;
    for (const auto& t : r.get<std::vector<std::array<int64_t, 3>>>(jx[i], "transfers", w)) {
      x.transfers.push_back(Transfer{static_cast<OpId>(t[0]), static_cast<OpId>(t[1]), t[2]});
    }
    if (jx[i].contains("transport")) {
      x.transport = r.enum_of<ExchangeTransport, 3>(jx[i], "transport", w);
    }
    if (jx[i].contains("sms")) {
      x.sms = r.get<int32_t>(jx[i], "sms", w);
      if (x.sms < 0 || x.sms > 1024) r.fail(w + ".sms", "must be in [0, 1024]");
    }
    p.exchanges.push_back(std::move(x));
  }
  const json& jrt = r.at(doc, "routing", "");
  for (size_t i = 0; i < jrt.size(); ++i) {
    const std::string w = idx("routing", i);
    RoutingSample rs;
    rs.step = r.get<int32_t>(jrt[i], "step", w);
    rs.layer = r.get<int32_t>(jrt[i], "layer", w);
    rs.micro_batch = r.get<int32_t>(jrt[i], "micro_batch", w);
    rs.tokens_per_expert = r.get<std::vector<int32_t>>(jrt[i], "tokens_per_expert", w);
    rs.first_sequence = r.get<int64_t>(jrt[i], "first_sequence", w);
    rs.token_experts = r.get<std::vector<int32_t>>(jrt[i], "token_experts", w);
    p.routing.push_back(std::move(rs));
  }
  const json& jo = r.at(doc, "ops", "");
  p.ops.reserve(jo.size());
  constexpr int kKinds = static_cast<int>(OpKind::kExchange) + 1;
  for (size_t i = 0; i < jo.size(); ++i) {
    const std::string w = idx("ops", i);
    const json& e = jo[i];
    Op o;
    o.id = r.get<OpId>(e, "id", w);
    o.rank = r.get<int32_t>(e, "rank", w);
    const std::string st = r.get<std::string>(e, "stream", w);
    if (st == stream_name(kCompute)) {
      o.stream = kCompute;
    } else if (st == stream_name(kComm)) {
      o.stream = kComm;
    } else {
      r.fail(w + ".stream", "unknown value '" + st + "'");
    }
    o.kind = r.enum_of<OpKind, kKinds>(e, "kind", w);
    o.role = r.enum_of<OpRole, kOpRoleCount>(e, "role", w);
    if (e.contains("dtype")) {  // absent in Programs written before issue 15: bf16
      o.dtype = r.enum_of<models::DType, models::kDTypeCount>(e, "dtype", w);
    }
    o.name = OpName(r.get<std::string>(e, "name", w));
    o.layer = r.get<int32_t>(e, "layer", w);
    o.step = r.get<int32_t>(e, "step", w);
    o.micro_batch = r.get<int32_t>(e, "micro_batch", w);
    o.m = r.get<int64_t>(e, "m", w);
    o.n = r.get<int64_t>(e, "n", w);
    o.k = r.get<int64_t>(e, "k", w);
    o.group_m = r.get<std::vector<int32_t>>(e, "group_m", w);
    o.batch = r.get<int32_t>(e, "batch", w);
    o.heads = r.get<int32_t>(e, "heads", w);
    o.kv_heads = r.get<int32_t>(e, "kv_heads", w);
    o.head_dim = r.get<int32_t>(e, "head_dim", w);
    o.kv_tokens = r.get<int64_t>(e, "kv_tokens", w);
    o.flops = r.get<double>(e, "flops", w);
    o.hbm_bytes = r.get<int64_t>(e, "hbm_bytes", w);
    o.weight_bytes = r.get<int64_t>(e, "weight_bytes", w);
    o.comm_bytes = r.get<int64_t>(e, "comm_bytes", w);
    o.peer = r.get<int32_t>(e, "peer", w);
    o.match = r.get<OpId>(e, "match", w);
    o.collective = r.get<int32_t>(e, "collective", w);
    o.exchange = r.get<int32_t>(e, "exchange", w);
    o.deps = r.get<std::vector<OpId>>(e, "deps", w);
    if (o.id != static_cast<OpId>(i)) r.fail(w + ".id", "ids must be dense (ops[i].id == i)");
    check_op_ranges(r, p, o, w);
    p.ops.push_back(std::move(o));
  }
  if (p.stream_ops.size() != p.ranks.size()) {
    r.fail("stream_ops", std::to_string(p.stream_ops.size()) + " entries for " +
                             std::to_string(p.ranks.size()) + " ranks");
  }
  check_layout(r, p);
  try {
    check_program(p);
  } catch (const std::exception& e) {
    r.fail("program", e.what());
  }
  return p;
}

Program read_program_json_file(const std::string& path) {
  std::istringstream in(read_input_file(path, "Program", kMaxProgramInputBytes));
  return read_program_json(in, path);
}

}  // namespace masep::plan
