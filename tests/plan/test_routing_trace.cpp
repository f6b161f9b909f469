// Routing trace files (issue 17, plan/routing_trace.hpp): the format, its strict reader
// (file:line:key errors), the replay in the compiler (`workload.routing.kind: trace`) and the
// round trip Program routing → trace → replayed Program.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "masep/plan/compiler.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/expert_load.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/routing.hpp"
#include "masep/plan/routing_trace.hpp"

namespace {

using namespace masep::plan;

const char* kSmall =
    "# 4 experts, top-2, batch 3, 2 steps, 2 layers\n"
    "masep-routing-trace 1\n"
    "experts 4\n"
    "top_k 2\n"
    "batch 3\n"
    "steps 2\n"
    "layers 2\n"
    "counts 0 0 2 1 2 1   # expert 0 twice, 1 once, ...\n"
    "\n"
    "tokens 0 1 0,1 2,3 1,2\n"
    "counts 1 * 3 1 1 1\n";

// The line and key of the InputError `text` raises.
std::tuple<int, std::string, std::string> error_of(const std::string& text) {
  try {
    parse_routing_trace(text, "t.txt");
  } catch (const InputError& e) {
    return {e.line(), e.key(), e.what()};
  }
  return {-1, "", "accepted"};
}

std::string with(const std::string& records) {
  return "masep-routing-trace 1\nexperts 4\ntop_k 2\nbatch 3\nsteps 2\nlayers 2\n" + records;
}

TEST(RoutingTrace, ParsesCountsTokensAndStar) {
  const RoutingTrace t = parse_routing_trace(kSmall, "small.txt");
  EXPECT_EQ(t.experts, 4);
  EXPECT_EQ(t.top_k, 2);
  EXPECT_EQ(t.batch, 3);
  EXPECT_EQ(t.steps, 2);
  EXPECT_EQ(t.layers, 2);
  const auto tok = t.tokens(0, 1, 0, 3);
  EXPECT_EQ(std::vector<int32_t>(tok.begin(), tok.end()), (std::vector<int32_t>{0, 1, 2, 3, 1, 2}));
  // Counts expand to distinct experts per token with the counts kept.
  for (auto [step, layer] : {std::pair{0, 0}, std::pair{1, 0}, std::pair{1, 1}}) {
    const auto r = t.tokens(step, layer, 0, 3);
    std::vector<int> c(4, 0);
    for (int i = 0; i < 3; ++i) {
      EXPECT_NE(r[2 * i], r[2 * i + 1]);
      c[r[2 * i]]++, c[r[2 * i + 1]]++;
    }
    if (step == 0) EXPECT_EQ(c, (std::vector<int>{2, 1, 2, 1}));
    if (step == 1) EXPECT_EQ(c, (std::vector<int>{3, 1, 1, 1}));
  }
  EXPECT_EQ(std::vector<int32_t>(t.tokens(1, 1, 1, 2).begin(), t.tokens(1, 1, 1, 2).end()),
            std::vector<int32_t>(t.tokens(1, 0, 1, 2).begin(), t.tokens(1, 0, 1, 2).end()));
  EXPECT_THROW(t.tokens(2, 0, 0, 1), std::out_of_range);
  EXPECT_THROW(t.tokens(0, 0, 2, 2), std::out_of_range);
  const auto p = t.probabilities();
  EXPECT_NEAR(p[0], (2 + 1 + 3 + 3) / 24.0, 1e-12);
}

TEST(RoutingTrace, TokensFromCountsKeepsExpertsDistinct) {
  const std::vector<int64_t> counts = {5, 0, 5, 3, 1, 1};  // batch 5, top_k 3
  const auto r = tokens_from_counts(counts, 5, 3);
  ASSERT_EQ(r.size(), 15u);
  std::vector<int64_t> c(6, 0);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NE(r[3 * i], r[3 * i + 1]);
    EXPECT_NE(r[3 * i], r[3 * i + 2]);
    EXPECT_NE(r[3 * i + 1], r[3 * i + 2]);
    for (int j = 0; j < 3; ++j) c[r[3 * i + j]]++;
  }
  EXPECT_EQ(c, counts);
  // Seeded: the same tokens (each with its experts), in another order.
  const auto shuffled = tokens_from_counts(counts, 5, 3, counts_record_seed(3, 1));
  EXPECT_NE(shuffled, r);
  std::vector<std::vector<int32_t>> a, b;
  for (int i = 0; i < 5; ++i) {
    a.emplace_back(r.begin() + 3 * i, r.begin() + 3 * i + 3);
    b.emplace_back(shuffled.begin() + 3 * i, shuffled.begin() + 3 * i + 3);
  }
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  EXPECT_EQ(a, b);
  EXPECT_EQ(tokens_from_counts(counts, 5, 3, 77), tokens_from_counts(counts, 5, 3, 77));
  EXPECT_THROW(tokens_from_counts(std::vector<int64_t>{6, 4, 5}, 5, 3), std::invalid_argument);
  EXPECT_THROW(tokens_from_counts(std::vector<int64_t>{5, 5, 4}, 5, 3), std::invalid_argument);
}

TEST(RoutingTrace, ErrorsNameLineAndKey) {
  using E = std::tuple<int, std::string>;
  auto at = [](const std::string& text) {
    auto [line, key, what] = error_of(text);
    return E{line, key};
  };
  EXPECT_EQ(at(""), (E{1, "header"}));
  EXPECT_EQ(at("# hi\nmasep-routing-trace 2\n"), (E{2, "header"}));
  EXPECT_EQ(at("masep-routing-trace 1\ntop_k 2\n"), (E{2, "top_k"}));
  EXPECT_EQ(at("masep-routing-trace 1\nexperts -4\n"), (E{2, "experts"}));
  EXPECT_EQ(at("masep-routing-trace 1\nexperts 4 5\n"), (E{2, "experts"}));
  EXPECT_EQ(at("masep-routing-trace 1\nexperts 4\ntop_k 5\nbatch 1\nsteps 1\nlayers 1\n"),
            (E{6, "top_k"}));
  EXPECT_EQ(at("masep-routing-trace 1\nexperts 4\ntop_k 2\n"), (E{4, "batch"}));  // ends early
  EXPECT_EQ(at(with("counts 0 0 2 1 2\n")), (E{7, "counts"}));                    // 3 of 4 counts
  EXPECT_EQ(at(with("counts 0 0 2 1 2 2\n")), (E{7, "counts"}));  // sums to 7, not 6
  EXPECT_EQ(at(with("counts 0 0 4 1 1 0\n")), (E{7, "counts"}));  // 4 > batch
  EXPECT_EQ(at(with("counts 0 0 2 1 2 x\n")), (E{7, "counts"}));
  EXPECT_EQ(at(with("counts 2 0 2 1 2 1\n")), (E{7, "counts"}));  // step 2 of 2
  EXPECT_EQ(at(with("counts 0 0 2 1 2 1\ncounts 0 0 2 1 2 1\n")), (E{8, "counts"}));
  EXPECT_EQ(at(with("counts 0 0 2 1 2 1\ncounts 0 * 2 1 2 1\n")), (E{8, "counts"}));
  EXPECT_EQ(at(with("counts 0 * 2 1 2 1\ncounts 0 1 2 1 2 1\n")), (E{8, "counts"}));
  EXPECT_EQ(at(with("tokens 0 0 0,1 2,3\n")), (E{7, "tokens"}));      // 2 tokens of 3
  EXPECT_EQ(at(with("tokens 0 0 0,1 2,2 1,3\n")), (E{7, "tokens"}));  // expert twice
  EXPECT_EQ(at(with("tokens 0 0 0,1 2,3 1,\n")), (E{7, "tokens"}));
  EXPECT_EQ(at(with("tokens 0 0 0,1 2,3 1,4\n")), (E{7, "tokens"}));  // expert 4 of 4
  EXPECT_EQ(at(with("tokens 0 0 0,1,2 2,3 1,0\n")), (E{7, "tokens"}));
  EXPECT_EQ(at(with("route 0 0\n")), (E{7, "route"}));
  EXPECT_EQ(at(with("")), (E{7, "records"}));
  EXPECT_EQ(at("masep-routing-trace 1\nexperts 4\ntop_k 2\nbatch 16777216\nsteps 1048576\n"
               "layers 1024\n"),
            (E{6, "layers"}));
  // The message names the file and the line.
  const std::string what = std::get<2>(error_of(with("counts 0 0 2 1 2 2\n")));
  EXPECT_NE(what.find("t.txt"), std::string::npos) << what;
  EXPECT_NE(what.find("7"), std::string::npos) << what;
}

TEST(RoutingTrace, MutatedInputsNeverCrash) {
  // A small deterministic mutation loop (the fuzz driver does more): every outcome is a
  // parsed trace or an InputError.
  const std::string base = kSmall;
  uint64_t x = 12345;
  auto next = [&] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return x;
  };
  const char* pieces[] = {" ", "\n", "*",       ",",       "0",          "9",
                          "-", "#",  "counts ", "tokens ", "99999999999"};
  for (int i = 0; i < 3000; ++i) {
    std::string s = base;
    for (int m = 0; m < 3; ++m) {
      const size_t at = next() % (s.size() + 1);
      if (next() % 2 == 0 && at < s.size()) {
        s.erase(at, 1 + next() % 4);
      } else {
        s.insert(at, pieces[next() % std::size(pieces)]);
      }
    }
    try {
      parse_routing_trace(s, "m.txt");
    } catch (const InputError&) {
    }
  }
}

class TraceFile : public ::testing::Test {
 protected:
  std::filesystem::path dir_ = std::filesystem::temp_directory_path() /
                               ("masep_routing_trace_" + std::to_string(::getpid()));
  void SetUp() override { std::filesystem::create_directories(dir_); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    const auto p = (dir_ / name).string();
    std::ofstream(p) << text;
    return p;
  }
};

// (step, layer) → tokens per expert summed over micro-batches.
std::map<std::pair<int, int>, std::vector<int32_t>> per_step_layer(const Program& p) {
  std::map<std::pair<int, int>, std::vector<int32_t>> out;
  for (const RoutingSample& rs : p.routing) {
    auto& v = out[{rs.step, rs.layer}];
    v.resize(rs.tokens_per_expert.size(), 0);
    for (size_t e = 0; e < v.size(); ++e) v[e] += rs.tokens_per_expert[e];
  }
  return out;
}

TEST_F(TraceFile, ReplaysAProgramsRoutingExactly) {
  const std::vector<std::string> zipf = {"workload.routing.kind=zipf", "workload.routing.skew=1.2",
                                         "workload.decode_steps=3"};
  const Scenario s = load_scenario("paper", zipf);
  CompileOptions co;
  co.record_token_routing = true;
  const Program a = compile(s, co);
  const RoutingTrace t = routing_trace_of(a);
  std::ostringstream tokens, counts;
  write_routing_trace_tokens(tokens, t.experts, t.top_k, t.batch, t.layers, t.routes);
  std::vector<std::vector<int64_t>> c(t.routes.size());
  for (size_t i = 0; i < t.routes.size(); ++i) {
    c[i].assign(static_cast<size_t>(t.experts), 0);
    for (int32_t e : t.routes[i]) c[i][static_cast<size_t>(e)]++;
  }
  write_routing_trace_counts(counts, t.experts, t.top_k, t.batch, t.layers, c);
  EXPECT_EQ(parse_routing_trace(tokens.str(), "x").routes, t.routes);

  const std::string ft = write("tokens.txt", tokens.str()), fc = write("counts.txt", counts.str());
  const Scenario rt = load_scenario(
      "paper", {"workload.decode_steps=3", "workload.routing={kind: trace, file: " + ft + "}"});
  EXPECT_EQ(rt.workload.routing.kind, RoutingKind::kTrace);
  const Program b = compile(rt, co);
  ASSERT_EQ(a.routing.size(), b.routing.size());
  for (size_t i = 0; i < a.routing.size(); ++i) {
    EXPECT_EQ(a.routing[i].tokens_per_expert, b.routing[i].tokens_per_expert) << i;
    EXPECT_EQ(a.routing[i].token_experts, b.routing[i].token_experts) << i;
  }
  EXPECT_EQ(a.ops.size(), b.ops.size());
  // The counts form keeps every (step, layer)'s expert totals.
  const Scenario rc = load_scenario(
      "paper", {"workload.decode_steps=3", "workload.routing={kind: trace, file: " + fc + "}"});
  EXPECT_EQ(per_step_layer(compile(rc)), per_step_layer(a));
  // The balancer's sampled load follows the replay too.
  EXPECT_EQ(sampled_expert_load(rt, 0, 3).tokens, expert_load(b, 0, 3).tokens);
  // A scenario file's relative path resolves against its folder.
  write("s.yaml",
        "name: s\nmodel: paper-moe\ntopology: paper-16xa100\nplan:\n  kind: ma_separation\n"
        "  attention: {gpus: 12, head_parallel: 4, replicas: 3}\n  moe: {gpus: 4}\n"
        "  micro_batches: 2\nworkload:\n  batch: 24\n  context: 2048\n  decode_steps: 3\n"
        "  routing: {kind: trace, file: counts.txt}\n");
  EXPECT_EQ(load_scenario((dir_ / "s.yaml").string()).workload.routing.trace_file, fc);
}

TEST_F(TraceFile, ScenarioErrorsNameTheKey) {
  auto err = [&](const std::vector<std::string>& sets) -> std::string {
    try {
      load_scenario("paper", sets);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "accepted";
  };
  const std::string f = write("t.txt", std::string(kSmall));
  // The paper model has 16 experts, top-2, batch 24: the small trace fits none of it.
  const std::string m = err({"workload.routing={kind: trace, file: " + f + "}"});
  EXPECT_NE(m.find("workload.routing.file"), std::string::npos) << m;
  EXPECT_NE(m.find("experts"), std::string::npos) << m;
  EXPECT_NE(err({"workload.routing={kind: trace, file: " + (dir_ / "none.txt").string() + "}"})
                .find("not a readable file"),
            std::string::npos);
  EXPECT_NE(err({"workload.routing={kind: trace}"}).find("file"), std::string::npos);
  EXPECT_NE(
      err({"workload.routing={kind: zipf, file: " + f + "}"}).find("only used with kind: trace"),
      std::string::npos);
  // An error inside the trace names the trace file and its line.
  const std::string bad = write("bad.txt", with("counts 0 0 2 1 2 2\n"));
  const std::string mb = err({"workload.routing={kind: trace, file: " + bad + "}"});
  EXPECT_NE(mb.find("bad.txt"), std::string::npos) << mb;
  EXPECT_NE(mb.find(":7"), std::string::npos) << mb;
  // Steps and (step, MoE layer) records the run needs.
  const Scenario s = load_scenario("paper", {"workload.decode_steps=2"});
  CompileOptions co;
  co.record_token_routing = true;
  const RoutingTrace t = routing_trace_of(compile(s, co));
  std::ostringstream o;
  write_routing_trace_tokens(o, t.experts, t.top_k, t.batch, t.layers, t.routes);
  const std::string two = write("two.txt", o.str());
  const std::string ms =
      err({"workload.decode_steps=3", "workload.routing={kind: trace, file: " + two + "}"});
  EXPECT_NE(ms.find("2 steps"), std::string::npos) << ms;
  std::string text = o.str();
  text.erase(text.rfind("tokens 1 3"));  // the last record (step 1, layer 3)
  const std::string gap = write("gap.txt", text);
  const std::string mg =
      err({"workload.decode_steps=2", "workload.routing={kind: trace, file: " + gap + "}"});
  EXPECT_NE(mg.find("no record for step 1 layer 3"), std::string::npos) << mg;
}

}  // namespace
