// masep compare's logic on two synthetic traces with known differences: simulated GEMMs 10%
// longer than measured, everything else equal.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "masep/plan/compare.hpp"
#include "masep/plan/errors.hpp"
#include "masep/plan/program.hpp"
#include "masep/plan/timeline.hpp"
#include "masep/plan/trace.hpp"

namespace masep::plan {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("masep_cmp_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

// 2 ranks × 2 steps × (gemm, attention, elementwise) on the compute stream, one after another.
Program program() {
  Program p;
  p.scenario = "synthetic";
  p.steps = 2;
  p.layers = 1;
  p.micro_batches = 1;
  p.ranks.resize(2);
  p.ranks[0].label = "attn";
  p.ranks[1].gpu = 1;
  p.ranks[1].label = "moe";
  p.stream_ops.resize(2);
  const OpKind kinds[] = {OpKind::kGemm, OpKind::kAttention, OpKind::kElementwise};
  const char* names[] = {"qkv", "attn", "rmsnorm"};
  for (int step = 0; step < 2; ++step) {
    for (int r = 0; r < 2; ++r) {
      for (int i = 0; i < 3; ++i) {
        Op o;
        o.id = static_cast<OpId>(p.ops.size());
        o.rank = r;
        o.kind = kinds[i];
        o.name = names[i];
        o.step = step;
        p.stream_ops[r][kCompute].push_back(o.id);
        p.ops.push_back(o);
      }
    }
  }
  return p;
}

// Durations: gemm `gemm_ns`, attention 2000 + 100·rank, elementwise 500; laid end to end per
// rank, steps back to back.
Timeline timeline(const Program& p, const std::string& source, int64_t gemm_ns) {
  Timeline t;
  t.source = source;
  t.device = "TestGPU";
  t.ops.resize(p.ops.size());
  std::vector<int64_t> clock(2, 0);
  for (const Op& o : p.ops) {
    const int64_t d = o.kind == OpKind::kGemm        ? gemm_ns
                      : o.kind == OpKind::kAttention ? 2000 + 100 * o.rank
                                                     : 500;
    t.ops[o.id] = {clock[o.rank], clock[o.rank] + d};
    clock[o.rank] += d;
  }
  t.makespan_ns = std::max(clock[0], clock[1]);
  return t;
}

struct Traces {
  std::string sim, measured;
  Traces() : sim(temp_path("sim.json")), measured(temp_path("measured.json")) {
    const Program p = program();
    write_trace_file(sim, p, timeline(p, "sim", 1100));
    write_trace_file(measured, p, timeline(p, "measured", 1000));
  }
  ~Traces() {
    std::filesystem::remove(sim);
    std::filesystem::remove(measured);
  }
};

TEST(Compare, ReportsKnownErrorsByKind) {
  Traces tr;
  const LoadedTrace s = read_trace_file(tr.sim), m = read_trace_file(tr.measured);
  EXPECT_EQ(s.ops.size(), 12u);
  EXPECT_EQ(s.source, "sim");
  EXPECT_EQ(m.source, "measured");
  const Comparison c = compare_traces(s, m);
  EXPECT_EQ(c.ops, 12);
  ASSERT_EQ(c.kinds.size(), 3u);  // sorted by kind name
  EXPECT_EQ(c.kinds[0].kind, "attention");
  EXPECT_EQ(c.kinds[1].kind, "elementwise");
  EXPECT_EQ(c.kinds[2].kind, "gemm");
  const KindError& g = c.kinds[2];
  EXPECT_EQ(g.ops, 4);
  EXPECT_NEAR(g.median, 0.10, 1e-12);  // simulated 10% longer
  EXPECT_NEAR(g.p90_abs, 0.10, 1e-12);
  EXPECT_NEAR(g.sim_total_ms, 4 * 1100e-6, 1e-12);
  EXPECT_NEAR(g.measured_total_ms, 4 * 1000e-6, 1e-12);
  ASSERT_FALSE(g.worst.empty());
  EXPECT_EQ(g.worst[0].name, "qkv");
  EXPECT_EQ(g.worst[0].sim_ns, 1100);
  EXPECT_EQ(g.worst[0].measured_ns, 1000);
  EXPECT_NEAR(c.kinds[0].median, 0.0, 1e-12);
  EXPECT_NEAR(c.kinds[1].median, 0.0, 1e-12);
  // Steps: rank 1 is the longer one (3600 measured, 3700 simulated per step).
  ASSERT_EQ(c.measured_step_ms.size(), 2u);
  EXPECT_NEAR(c.measured_tpot_ms, 3600e-6, 1e-12);
  EXPECT_NEAR(c.sim_tpot_ms, 3700e-6, 1e-12);
  EXPECT_NEAR(c.tpot_error, 100.0 / 3600.0, 1e-12);

  std::ostringstream text, js;
  write_comparison_text(text, c);
  EXPECT_NE(text.str().find("+10.0%"), std::string::npos) << text.str();
  write_comparison_json(js, c);
  const auto j = nlohmann::json::parse(js.str());
  EXPECT_NEAR(j["kinds"][2]["median_error"].get<double>(), 0.1, 1e-12);
  EXPECT_NEAR(j["tpot_error"].get<double>(), 100.0 / 3600.0, 1e-12);
}

TEST(Compare, MismatchedOpSetsAreAnErrorWithCounts) {
  Traces tr;
  const Program p = program();
  Timeline t = timeline(p, "measured", 1000);
  t.ops[5].start_ns = -1;  // not run: left out of the trace
  t.ops[7].start_ns = -1;
  const std::string path = temp_path("short.json");
  write_trace_file(path, p, t);
  try {
    compare_traces(read_trace_file(tr.sim), read_trace_file(path));
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("has 12 ops"), std::string::npos) << msg;
    EXPECT_NE(msg.find("has 10"), std::string::npos) << msg;
    EXPECT_NE(msg.find("2 only in the simulated trace (ids 5, 7)"), std::string::npos) << msg;
  }
  std::filesystem::remove(path);
}

TEST(Compare, MergedTraceAndOverlayPicture) {
  Traces tr;
  const LoadedTrace s = read_trace_file(tr.sim), m = read_trace_file(tr.measured);
  const std::string merged = temp_path("merged.json"), svg = temp_path("step.svg");
  write_merged_trace(merged, s, m);
  std::ifstream in(merged);
  const auto j = nlohmann::json::parse(in);
  int x = 0, sim_names = 0, meas_names = 0;
  for (const auto& e : j["traceEvents"]) {
    if (e["ph"] == "X") ++x;
    if (e["name"] == "process_name") {
      const std::string n = e["args"]["name"];
      if (n.rfind("sim: rank", 0) == 0) ++sim_names;
      if (n.rfind("measured: rank", 0) == 0) {
        ++meas_names;
        EXPECT_GE(e["pid"].get<int>(), 2);  // offset past the simulated ranks
      }
    }
  }
  EXPECT_EQ(x, 24);
  EXPECT_EQ(sim_names, 2);
  EXPECT_EQ(meas_names, 2);
  write_overlay_svg(svg, s, m, 1);
  std::ifstream f(svg);
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.rfind("<svg", 0), 0u);
  EXPECT_NE(text.find("decode step 1"), std::string::npos);
  EXPECT_NE(text.find("</svg>"), std::string::npos);
  EXPECT_THROW(write_overlay_svg(svg, s, m, 7), std::invalid_argument);
  std::filesystem::remove(merged);
  std::filesystem::remove(svg);
}

TEST(Compare, DifferentProgramsAreRejected) {
  Traces tr;
  LoadedTrace s = read_trace_file(tr.sim);
  const LoadedTrace m = read_trace_file(tr.measured);
  s.ops[3].name = "other";
  EXPECT_THROW(compare_traces(s, m), std::runtime_error);
}

// Hostile traces (issue 21): each is refused naming the file, the event and the key.
std::string read_error(const std::string& text) {
  const std::string path = temp_path("bad.json");
  {
    std::ofstream f(path, std::ios::binary);
    f << text;
  }
  std::string msg = "no error";
  try {
    read_trace_file(path);
  } catch (const InputError& e) {
    msg = e.what();
  }
  std::filesystem::remove(path);
  return msg;
}

std::string with_event(const std::string& event) {
  return R"({"traceEvents":[{"name":"a","ph":"X","pid":0,"tid":0,"ts":0,"dur":1,"args":{"op":0}},)" +
         event + "]}";
}

TEST(Compare, HostileTracesNameTheEventAndKey) {
  std::string e =
      read_error(with_event(R"({"name":"b","ph":"X","pid":0,"ts":1,"dur":-3,"args":{"op":1}})"));
  EXPECT_NE(e.find("traceEvents[1].dur (op 1): -3 is negative"), std::string::npos) << e;
  e = read_error(with_event(R"({"name":"b","ph":"X","pid":0,"ts":1,"dur":1e300,"args":{"op":1}})"));
  EXPECT_NE(e.find("traceEvents[1].dur (op 1)"), std::string::npos) << e;
  EXPECT_NE(e.find("not finite or beyond"), std::string::npos) << e;
  e = read_error(with_event(R"({"name":"b","ph":"X","pid":0,"ts":1,"dur":1,"args":{"op":1.5}})"));
  EXPECT_NE(e.find("traceEvents[1].args.op: 1.5 is not an integer"), std::string::npos) << e;
  e = read_error(with_event(R"({"name":"b","ph":"X","pid":0,"ts":1,"dur":1,"args":{"op":0}})"));
  EXPECT_NE(e.find("op 0 appears twice"), std::string::npos) << e;
  e = read_error(with_event(R"({"name":"b","ph":"X","pid":0,"ts":"x","dur":1,"args":{"op":1}})"));
  EXPECT_NE(e.find("traceEvents[1].ts (op 1): \"x\" is not a number"), std::string::npos) << e;
  e = read_error(with_event(R"({"name":"b","ph":"X","pid":-1,"ts":1,"dur":1,"args":{"op":1}})"));
  EXPECT_NE(e.find("traceEvents[1].pid (op 1): -1 is out of range"), std::string::npos) << e;
  e = read_error(R"({"traceEvents":[]})");
  EXPECT_NE(e.find("no op events"), std::string::npos) << e;
  e = read_error("[1, 2");
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
  e = read_error(R"({"events":[]})");
  EXPECT_NE(e.find("no traceEvents array"), std::string::npos) << e;
}

TEST(Compare, MeasuredTimeZeroIsAnErrorNotZeroPercent) {
  Traces tr;
  const Program p = program();
  Timeline t = timeline(p, "measured", 0);
  for (auto& o : t.ops) o = {0, 0};  // every op measured 0 ns
  t.makespan_ns = 0;
  const std::string path = temp_path("zero.json");
  write_trace_file(path, p, t);
  try {
    compare_traces(read_trace_file(tr.sim), read_trace_file(path));
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("measured step time is 0 ms"), std::string::npos)
        << e.what();
  }
  std::filesystem::remove(path);
}

TEST(Compare, DifferentStepsAreRejected) {
  Traces tr;
  LoadedTrace s = read_trace_file(tr.sim);
  const LoadedTrace m = read_trace_file(tr.measured);
  s.ops[3].step = 7;
  try {
    compare_traces(s, m);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("op 3 has step 7"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace masep::plan
