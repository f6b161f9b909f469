// Golden Program summaries of the paper's scenarios (scenarios/paper.yaml and
// scenarios/paper-colocated.yaml): op counts by role and op, bytes and FLOPs of step 0, and
// the first routing sample. A change to the compiler, the scenarios or the routing sampler
// shows up here as a diff. To accept an intended change:
//   MASEP_UPDATE_GOLDEN=1 ctest -R test_golden_plan     (rewrites tests/plan/golden/*.txt)
#include <gtest/gtest.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>

#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/routing.hpp"

namespace masep::plan {
namespace {

std::string fmt_line(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt_line(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return std::string(buf) + "\n";
}

std::string summary(const Scenario& s, const Program& p) {
  std::string out;
  std::map<Role, int> roles;
  for (const RankInfo& r : p.ranks) roles[r.role]++;
  out += fmt_line("scenario %s (%s)", s.name.c_str(), to_string(s.plan.kind));
  for (const auto& [role, n] : roles) out += fmt_line("ranks %-10s %d", to_string(role), n);
  out += fmt_line("compiled steps %d..%d, layers %d, micro-batches %d", p.first_step,
                  p.first_step + p.steps - 1, p.layers, p.micro_batches);
  out += fmt_line("ops %zu, collectives %zu, groups %zu, routing samples %zu", p.ops.size(),
                  p.collectives.size(), p.groups.size(), p.routing.size());

  // Step 0, by role and op.
  std::map<std::tuple<std::string, std::string, std::string>, int> count;
  std::map<std::string, long long> comm, hbm, weights;
  std::map<std::string, double> flops;
  double total_flops = 0;
  for (const Exchange& x : p.exchanges) {  // grouped point-to-point: bytes sent
    for (const Transfer& t : x.transfers) {
      if (p.ops[t.src_op].step == p.first_step) comm[p.ops[t.src_op].name] += t.bytes;
    }
  }
  for (const Op& o : p.ops) {
    if (o.step != p.first_step) continue;
    const std::string role = to_string(p.ranks[o.rank].role);
    count[{role, o.name, to_string(o.kind)}]++;
    if (o.kind == OpKind::kSend) comm[o.name] += o.comm_bytes;
    if (is_collective(o.kind) && p.collectives[o.collective].ops.front() == o.id) {
      comm[o.name] += o.comm_bytes;  // once per collective
    }
    hbm[role] += o.hbm_bytes;
    weights[role] += o.weight_bytes;
    flops[role] += o.flops;
    total_flops += o.flops;
  }
  out += "step 0 ops by role / op (kind): count\n";
  for (const auto& [key, n] : count) {
    out += fmt_line("  %-10s %-15s %-15s %6d", std::get<0>(key).c_str(), std::get<1>(key).c_str(),
                    std::get<2>(key).c_str(), n);
  }
  out += "step 0 communication bytes (sends; collectives once each)\n";
  for (const auto& [name, b] : comm) out += fmt_line("  %-15s %14lld", name.c_str(), b);
  out += "step 0 by role: FLOPs, HBM bytes, of which weights\n";
  for (const auto& [role, f] : flops) {
    out += fmt_line("  %-10s %.0f %lld %lld", role.c_str(), f, hbm[role], weights[role]);
  }
  long long kv = 0;
  for (int32_t c : sample_context_lengths(s.workload)) kv += c + p.first_step + 1;
  out += fmt_line("step 0 FLOPs %.0f (model.layer_flops x layers: %.0f)", total_flops,
                  s.model.layer_flops(s.workload.batch, kv) * s.model.layers);
  out += "routing step 0 layer 0 mb 0 tokens per expert:";
  for (int32_t c : p.routing.front().tokens_per_expert) out += " " + std::to_string(c);
  out += "\n";
  return out;
}

void golden_compare(const std::string& actual, const std::string& path) {
  const char* update = std::getenv("MASEP_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    ASSERT_TRUE(f) << "cannot write " << path;
    f << actual;
    std::printf("updated %s\n", path.c_str());
    return;
  }
  std::ifstream f(path, std::ios::binary);
  ASSERT_TRUE(f) << path << " missing: run with MASEP_UPDATE_GOLDEN=1 to create it";
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(actual, ss.str()) << "golden " << path
                              << " differs; if intended, rerun with MASEP_UPDATE_GOLDEN=1";
}

TEST(GoldenPlan, PaperProgramSummary) {
  const Scenario s = load_scenario("scenarios/paper.yaml");
  const Program p = compile(s);
  check_program(p);
  golden_compare(summary(s, p), "tests/plan/golden/paper_program_summary.txt");
}

TEST(GoldenPlan, PaperColocatedProgramSummary) {
  const Scenario s = load_scenario("scenarios/paper-colocated.yaml");
  const Program p = compile(s);
  check_program(p);
  golden_compare(summary(s, p), "tests/plan/golden/paper_colocated_program_summary.txt");
}

}  // namespace
}  // namespace masep::plan
