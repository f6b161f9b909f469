#include "masep/plan/program_json.hpp"

#include "masep/plan/output_file.hpp"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace masep::plan {

namespace {

using nlohmann::json;

json op_json(const Op& o) {
  return json{{"id", o.id},
              {"rank", o.rank},
              {"stream", stream_name(o.stream)},
              {"kind", to_string(o.kind)},
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
  json head{{"format", "masep-program"},       {"version", 2},     {"scenario", p.scenario},
            {"first_step", p.first_step},      {"steps", p.steps}, {"layers", p.layers},
            {"micro_batches", p.micro_batches}};
  json ranks = json::array();
  for (const RankInfo& r : p.ranks) {
    ranks.push_back(json{{"gpu", r.gpu},
                         {"role", to_string(r.role)},
                         {"label", r.label},
                         {"experts", r.experts},
                         {"replica", r.replica},
                         {"sequences", r.sequences}});
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
    out << (i ? ",\n" : "\n") << json{{"transfers", ts}}.dump();
  }
  out << "],\"routing\":[";
  for (size_t i = 0; i < p.routing.size(); ++i) {
    const RoutingSample& r = p.routing[i];
    out << (i ? ",\n" : "\n")
        << json{{"step", r.step},
                {"layer", r.layer},
                {"micro_batch", r.micro_batch},
                {"tokens_per_expert", r.tokens_per_expert}}
               .dump();
  }
  out << "],\"ops\":[";
  for (size_t i = 0; i < p.ops.size(); ++i) out << (i ? ",\n" : "\n") << op_json(p.ops[i]).dump();
  out << "]}\n";
}

void write_program_json_file(const Program& p, const std::string& path) {
  write_output_file(path, "program dump", [&](std::ostream& o) { write_program_json(p, o); });
}

}  // namespace masep::plan
