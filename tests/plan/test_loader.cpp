// Loading and validation: every built-in and every file under scenarios/ loads, and every
// class of bad input gives an InputError with the right file, line, column and key path.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "masep/plan/errors.hpp"
#include "masep/plan/loader.hpp"
#include "fixtures.hpp"

namespace masep::plan {
namespace {

namespace fs = std::filesystem;

// Line numbers below refer to this text (1-based; numbered in tests/common/fixtures.hpp).
const std::string& kBase = testing::kPaperScenarioText;

std::string replace(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  EXPECT_NE(at, std::string::npos) << "test bug: '" << from << "' not in the base text";
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

// Parses `text` expecting an InputError; returns it for the caller's checks.
InputError parse_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    parse_scenario(text, "t.yaml", overrides);
  } catch (const InputError& e) {
    return e;
  }
  ADD_FAILURE() << "expected an InputError for:\n" << text;
  return InputError("", 0, 0, "", "");
}

#define EXPECT_INPUT_ERROR(err, file_, line_, key_, substr)                         \
  do {                                                                              \
    const InputError& e_ = (err);                                                   \
    EXPECT_EQ(e_.file(), file_) << e_.what();                                       \
    EXPECT_EQ(e_.line(), line_) << e_.what();                                       \
    EXPECT_EQ(e_.key(), key_) << e_.what();                                         \
    EXPECT_NE(std::string(e_.what()).find(substr), std::string::npos) << e_.what(); \
  } while (0)

// ---- built-ins ---------------------------------------------------------------------------

TEST(Builtins, EveryModelLoadsUnderItsOwnName) {
  const auto names = builtin_model_names();
  EXPECT_EQ(names.size(), 7u);  // issue 15: + mixtral-8x22b, qwen3-235b-a22b, deepseek-v3
  for (const auto& n : names) {
    const auto m = load_model(n);
    EXPECT_EQ(m.name, n);
    EXPECT_NO_THROW(m.validate()) << n;
  }
}

TEST(Builtins, PaperModelMatchesThePaper) {
  const auto m = load_model("paper-moe");
  EXPECT_EQ(m.layers, 4);
  EXPECT_EQ(m.hidden, 4096);
  EXPECT_EQ(m.heads, 32);
  EXPECT_EQ(m.kv_heads, 32);
  EXPECT_EQ(m.head_dim, 128);
  EXPECT_EQ(m.experts, 16);
  EXPECT_EQ(m.top_k, 2);
  EXPECT_EQ(m.expert_ffn, 14336);
  EXPECT_EQ(m.activation, models::Activation::kSwiGLU);
  EXPECT_EQ(m.dtype, models::DType::kBF16);
}

TEST(Builtins, OtherModels) {
  const auto mix = load_model("mixtral-8x7b");
  EXPECT_EQ(mix.layers, 32);
  EXPECT_EQ(mix.kv_heads, 8);
  EXPECT_EQ(mix.experts, 8);
  const auto qwen = load_model("qwen3-30b-a3b");
  EXPECT_EQ(qwen.hidden, 2048);
  EXPECT_EQ(qwen.kv_heads, 4);
  EXPECT_EQ(qwen.experts, 128);
  EXPECT_EQ(qwen.top_k, 8);
  EXPECT_EQ(qwen.expert_ffn, 768);
  const auto ds = load_model("deepseek-v3-like");
  EXPECT_GE(ds.layers, 48);
  EXPECT_GE(ds.experts, 128);
  EXPECT_EQ(ds.shared_experts, 1);
}

TEST(Builtins, EveryGpuLoads) {
  const auto names = builtin_gpu_names();
  EXPECT_EQ(names.size(), 8u);  // issue 15: + H800, B200, GB200, L40S
  for (const auto& n : names) EXPECT_EQ(builtin_gpu(n).name, n);
  const auto a100 = builtin_gpu("A100-SXM4-80GB");
  EXPECT_DOUBLE_EQ(a100.bf16_tflops, 312);
  EXPECT_DOUBLE_EQ(a100.hbm_gb, 80);
  EXPECT_DOUBLE_EQ(a100.hbm_GBps, 2039);
  EXPECT_DOUBLE_EQ(a100.nvlink_GBps, 300);
  EXPECT_DOUBLE_EQ(a100.fp8_tflops, 0);
  const auto h200 = builtin_gpu("H200-SXM-141GB");
  EXPECT_DOUBLE_EQ(h200.hbm_gb, 141);
  EXPECT_DOUBLE_EQ(h200.hbm_GBps, 4800);
  EXPECT_EQ(h200.sm_count, 132);
  const auto b200 = builtin_gpu("B200-SXM-180GB");
  EXPECT_TRUE(b200.supports(models::DType::kFP4));
  EXPECT_DOUBLE_EQ(b200.tflops(models::DType::kFP8), 4500);
  EXPECT_FALSE(builtin_gpu("H800-SXM5-80GB").supports(models::DType::kFP4));
  EXPECT_DOUBLE_EQ(builtin_gpu("H800-SXM5-80GB").nvlink_GBps, 200);
  EXPECT_DOUBLE_EQ(builtin_gpu("L40S-48GB").nvlink_GBps, 0);
  EXPECT_THROW(builtin_gpu("A100"), InputError);
}

TEST(Builtins, EveryTopologyLoads) {
  const auto names = builtin_topology_names();
  // + cluster-128xdgx-h100; issue 15: + dgx-h200, host-8xl40s-pcie, cluster-18xh800,
  // gb200-nvl72
  EXPECT_EQ(names.size(), 10u);
  EXPECT_EQ(load_topology("gb200-nvl72").total_gpus(), 72);
  EXPECT_EQ(load_topology("cluster-18xh800").total_gpus(), 144);
  EXPECT_EQ(load_topology("cluster-18xh800").nics.size(), 8u);
  EXPECT_EQ(load_topology("host-8xl40s-pcie").intra, topology::Fabric::kPCIe);
  for (const auto& n : names) EXPECT_EQ(load_topology(n).name, n);
  const auto p = load_topology("paper-16xa100");
  EXPECT_EQ(p.total_gpus(), 16);
  EXPECT_EQ(p.nodes, 4);
  EXPECT_EQ(p.gpu.name, "A100-SXM4-80GB");
  EXPECT_EQ(p.intra, topology::Fabric::kNVLinkMesh);
  ASSERT_EQ(p.nics.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(p.nics[i].gpus, std::vector<int>{i});
  EXPECT_DOUBLE_EQ(p.nics[0].GBps, 25);
  const auto h = load_topology("host-4xh200");
  EXPECT_EQ(h.total_gpus(), 4);
  EXPECT_TRUE(h.nics.empty());
  EXPECT_EQ(h.intra, topology::Fabric::kNVSwitch);
  EXPECT_DOUBLE_EQ(load_topology("dgx-h100").nics.at(7).GBps, 50);
}

TEST(Builtins, PaperScenarios) {
  const auto names = builtin_scenario_names();
  ASSERT_GE(names.size(), 2u);
  EXPECT_EQ(names[0], "paper");
  EXPECT_EQ(names[1], "paper-colocated");
  for (const auto& n : names) {
    try {
      EXPECT_EQ(load_scenario(n).name, n);
    } catch (const std::exception& e) {
      ADD_FAILURE() << n << ": " << e.what();
    }
  }

  const auto s = load_scenario("paper");
  EXPECT_EQ(s.origin, "builtin:paper.yaml");
  EXPECT_EQ(s.plan.kind, PlanKind::kMaSeparation);
  EXPECT_EQ(s.plan.attention.gpus, 12);
  EXPECT_EQ(s.plan.attention.head_parallel, 4);
  EXPECT_EQ(s.plan.attention.replicas, 3);
  EXPECT_EQ(s.plan.moe.gpus, 4);
  EXPECT_EQ(s.plan.micro_batches, 2);
  EXPECT_EQ(s.workload.batch, 24);
  EXPECT_EQ(s.workload.context, 2048);
  EXPECT_EQ(s.workload.seed, 42u);
  EXPECT_EQ(s.model.name, "paper-moe");
  EXPECT_EQ(s.topology.name, "paper-16xa100");

  const auto c = load_scenario("paper-colocated");
  EXPECT_EQ(c.plan.kind, PlanKind::kColocated);
  EXPECT_EQ(c.plan.colocated.gpus, 16);
  EXPECT_EQ(c.plan.colocated.tensor_parallel, 4);
  EXPECT_EQ(c.workload.batch, s.workload.batch);

  // The embedded copy and the file in the tree are the same scenario.
  const auto f = load_scenario("scenarios/paper.yaml");
  EXPECT_EQ(f.origin, "scenarios/paper.yaml");
  EXPECT_EQ(f.workload.batch, 24);
}

// Every .yaml under scenarios/ loads. Sweep files (under scenarios/sweeps/, or with a
// top-level `sweep:` or `points:` key) are a different format, loaded by the sweep tests.
TEST(ScenarioFiles, EveryFileUnderScenariosLoads) {
  const fs::path root = fs::path(MASEP_SOURCE_DIR) / "scenarios";
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.is_regular_file() && entry.path().extension() == ".yaml")
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 2u);
  const std::regex sweep_key("(^|\n)(sweep|points):");
  int loaded = 0;
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream text;
    text << in.rdbuf();
    const bool in_sweeps = f.parent_path().filename() == "sweeps";
    if (in_sweeps || std::regex_search(text.str(), sweep_key)) continue;
    try {
      const auto s = load_scenario(f.string());
      EXPECT_FALSE(s.name.empty()) << f;
      ++loaded;
    } catch (const std::exception& e) {
      ADD_FAILURE() << f << ": " << e.what();
    }
  }
  EXPECT_GE(loaded, 2);
}

// ---- valid input -------------------------------------------------------------------------

// The optional simulator section: the network tier (issue 13), validated like any key.
TEST(Parse, SimulatorNetworkTier) {
  EXPECT_EQ(parse_scenario(kBase, "t.yaml").simulator.network, "");  // not set
  for (const char* tier : {"flow", "fluid", "auto"}) {
    const auto s = parse_scenario(kBase + "simulator:\n  network: " + tier + "\n", "t.yaml");
    EXPECT_EQ(s.simulator.network, tier);
  }
  EXPECT_EQ(parse_scenario(kBase, "t.yaml", {"simulator.network=fluid"}).simulator.network,
            "fluid");
  EXPECT_INPUT_ERROR(parse_error(kBase + "simulator:\n  network: fast\n"), "t.yaml", 16,
                     "simulator.network", "accepted: flow, fluid, auto");
  EXPECT_INPUT_ERROR(parse_error(kBase + "simulator:\n  netwrk: fluid\n"), "t.yaml", 16,
                     "simulator.netwrk", "unknown key");
  EXPECT_INPUT_ERROR(parse_error(kBase + "simulator: fluid\n"), "t.yaml", 15, "simulator",
                     "mapping");
}

TEST(Parse, BaseTextLoads) {
  const auto s = parse_scenario(kBase, "t.yaml");
  EXPECT_EQ(s.name, "t");
  EXPECT_EQ(s.origin, "t.yaml");
  EXPECT_EQ(s.plan.moe.placement, Placement::kRoundRobin);
  EXPECT_EQ(s.plan.attention.sequence_parallel, 1);  // documented default
  EXPECT_EQ(s.workload.context_kind, ContextKind::kFixed);
  EXPECT_EQ(s.workload.decode_steps, 4);
}

TEST(Parse, InlineModelAndTopologyAndContextDistribution) {
  std::string t = replace(kBase, "model: paper-moe\n",
                          "model: {name: tiny, layers: 2, hidden: 256, heads: 8, kv_heads: 4,\n"
                          "        head_dim: 32, experts: 4, top_k: 1, expert_ffn: 512,\n"
                          "        activation: gelu, dtype: fp8}\n");
  t = replace(t, "topology: paper-16xa100\n",
              "topology:\n"
              "  name: two\n"
              "  gpu: {name: g, bf16_tflops: 1, fp16_tflops: 1, fp8_tflops: 2, hbm_gb: 8,\n"
              "        hbm_GBps: 100, sm_count: 4}\n"
              "  nodes: 2\n"
              "  gpus_per_node: 8\n"
              "  intra_node: {fabric: pcie, GBps: 16, latency_ns: 2000}\n"
              "  nics: [{GBps: 12.5, latency_ns: 1500, gpus: [0, 1, 2, 3, 4, 5, 6, 7]}]\n"
              "  switch_latency_ns: 300\n");
  t = replace(t, "head_parallel: 4", "head_parallel: 4, sequence_parallel: 1");
  t = replace(t, "context: 2048", "context: {distribution: uniform, min: 100, max: 300}");
  const auto s = parse_scenario(t, "t.yaml");
  EXPECT_EQ(s.model.name, "tiny");
  EXPECT_EQ(s.model.activation, models::Activation::kGELU);
  EXPECT_EQ(s.model.dtype, models::DType::kFP8);
  EXPECT_EQ(s.topology.intra, topology::Fabric::kPCIe);
  EXPECT_DOUBLE_EQ(s.topology.nics.at(0).GBps, 12.5);
  EXPECT_EQ(s.topology.nics.at(0).gpus.size(), 8u);
  EXPECT_EQ(s.workload.context_kind, ContextKind::kUniform);
  EXPECT_EQ(s.workload.context_min, 100);
  EXPECT_EQ(s.workload.context_max, 300);
}

TEST(Parse, RoutingKinds) {
  auto s = parse_scenario(replace(kBase, "{kind: uniform}", "{kind: zipf, skew: 1.5}"), "t.yaml");
  EXPECT_EQ(s.workload.routing.kind, RoutingKind::kZipf);
  EXPECT_DOUBLE_EQ(s.workload.routing.zipf_skew, 1.5);
  s = parse_scenario(
      replace(kBase, "{kind: uniform}",
              "{kind: explicit, expert_weights: [1, 2, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]}"),
      "t.yaml");
  ASSERT_EQ(s.workload.routing.expert_weights.size(), 16u);
  EXPECT_DOUBLE_EQ(s.workload.routing.expert_weights[3], 4);
}

TEST(Parse, ExplicitExpertMap) {
  std::string map = "[";
  for (int e = 0; e < 16; ++e) map += (e ? ", [" : "[") + std::to_string(e % 4) + "]";
  map += "]";
  const auto s = parse_scenario(
      replace(kBase, "placement: round_robin", "placement: explicit, expert_map: " + map),
      "t.yaml");
  EXPECT_EQ(s.plan.moe.placement, Placement::kExplicit);
  ASSERT_EQ(s.plan.moe.expert_map.size(), 16u);
  EXPECT_EQ(s.plan.moe.expert_map[5], std::vector<int>{1});
  EXPECT_EQ(s.plan.moe.expert_replicas, 1);
}

TEST(Parse, RelativeReferencesResolveAgainstTheScenarioFile) {
  const fs::path dir = fs::temp_directory_path() / "masep_test_loader_refs";
  fs::create_directories(dir / "sub");
  std::ofstream(dir / "sub" / "m.yaml") << "name: mine\nlayers: 1\nhidden: 64\nheads: 4\n"
                                           "head_dim: 16\nexperts: 4\ntop_k: 1\nexpert_ffn: 32\n";
  std::ofstream(dir / "s.yaml") << replace(kBase, "model: paper-moe", "model: sub/m.yaml");
  const auto s = load_scenario((dir / "s.yaml").string());
  EXPECT_EQ(s.model.name, "mine");
  EXPECT_EQ(s.model.kv_heads, 4);  // defaults to heads

  // An error inside the referenced file names that file and the model.* key.
  std::ofstream(dir / "sub" / "m.yaml") << "name: mine\nlayers: 1\nhidden: 64\nheads: 4\n"
                                           "head_dim: 16\nexperts: 4\ntop_k: 9\nexpert_ffn: 32\n";
  try {
    load_scenario((dir / "s.yaml").string());
    ADD_FAILURE() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), (dir / "sub" / "m.yaml").string()) << e.what();
    EXPECT_EQ(e.line(), 7) << e.what();
    EXPECT_EQ(e.key(), "model.top_k") << e.what();
  }
  fs::remove_all(dir);
}

// ---- overrides ---------------------------------------------------------------------------

TEST(Overrides, SetScalarsListsAndInsideBuiltins) {
  const auto s = parse_scenario(
      kBase, "t.yaml",
      {"plan.attention.gpus=8", "plan.attention.replicas=2", "workload.routing.kind=explicit",
       "workload.routing.expert_weights=[1,2,3,4,5,6,7,8,1,1,1,1,1,1,1,1]", "model.layers=2",
       "topology.gpu.hbm_gb=40", "plan.attention.sequence_parallel=1"});
  EXPECT_EQ(s.plan.attention.gpus, 8);
  EXPECT_EQ(s.plan.attention.replicas, 2);
  EXPECT_EQ(s.workload.routing.expert_weights.size(), 16u);
  EXPECT_EQ(s.model.layers, 2);
  EXPECT_EQ(s.model.hidden, 4096);  // the rest of the built-in model is kept
  EXPECT_DOUBLE_EQ(s.topology.gpu.hbm_gb, 40);
  EXPECT_EQ(s.topology.name, "paper-16xa100");
}

TEST(Overrides, SequenceElements) {
  const auto s = load_scenario("paper-explicit-map", {"plan.moe.expert_map.0=[2, 3]"});
  EXPECT_EQ(s.plan.moe.expert_map[0], (std::vector<int>{2, 3}));
  EXPECT_INPUT_ERROR(parse_error(kBase, {"model=no-such-model"}), "--set", 0, "model",
                     "neither a built-in model");
  try {
    load_scenario("paper-explicit-map", {"plan.moe.expert_map.0=[0, 7]"});
    ADD_FAILURE() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "--set") << e.what();
    EXPECT_EQ(e.key(), "plan.moe.expert_map[0][1]") << e.what();
  }
}

TEST(Overrides, ReplaceAReference) {
  const auto s = load_scenario("paper", {"model=mixtral-8x7b", "plan.attention.head_parallel=2",
                                         "plan.attention.replicas=6"});
  EXPECT_EQ(s.model.name, "mixtral-8x7b");
}

TEST(Overrides, UnknownKeyNamesKeyAndOrigin) {
  EXPECT_INPUT_ERROR(parse_error(kBase, {"plan.atention.gpus=8"}), "--set", 0, "plan.atention",
                     "did you mean 'attention'");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"workload.seeds=3"}), "--set", 0, "workload.seeds",
                     "did you mean 'seed'");
}

TEST(Overrides, MalformedOverrides) {
  EXPECT_INPUT_ERROR(parse_error(kBase, {"plan.attention.gpus"}), "--set", 0, "plan.attention.gpus",
                     "KEY.PATH=VALUE");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"plan.kind.x=1"}), "--set", 0, "plan.kind.x",
                     "not a mapping");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"plan.attention.gpus=[1"}), "--set", 0,
                     "plan.attention.gpus", "cannot parse");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"plan.attention.gpus=abc"}), "--set", 0,
                     "plan.attention.gpus", "expected an integer, got 'abc'");
}

TEST(Overrides, CrossCheckFailureIsBlamedOnTheOverride) {
  EXPECT_INPUT_ERROR(parse_error(kBase, {"plan.attention.head_parallel=5"}), "--set", 0,
                     "plan.attention.head_parallel", "does not divide");
}

TEST(Ranges, AbsurdPhysicalValuesAreRejectedAtTheirKey) {
  // Positive but absurd: before issue 21 these passed and overflowed the ns conversion.
  EXPECT_INPUT_ERROR(parse_error(kBase, {"topology.intra_node.GBps=1e-300"}), "--set", 0,
                     "topology.intra_node.GBps", "outside the accepted range [0.001, 1e+06] GB/s");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"topology.intra_node.latency_ns=1e300"}), "--set", 0,
                     "topology.intra_node.latency_ns", "outside the accepted range");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"topology.switch_latency_ns=1e10"}), "--set", 0,
                     "topology.switch_latency_ns", "[0, 1e+09] ns");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"topology.gpu.hbm_GBps=1e7"}), "--set", 0,
                     "topology.gpu.hbm_GBps", "outside");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"topology.gpu.bf16_tflops=1e-9"}), "--set", 0,
                     "topology.gpu.bf16_tflops", "TFLOP/s");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"workload.routing={kind: zipf, skew: 1e9}"}), "--set", 0,
                     "workload.routing.skew", "outside");
  // In a file: the line of the value.
  const std::string inline_topo =
      replace(kBase, "topology: paper-16xa100\n",
              "topology:\n  name: x\n  gpu: A100-SXM4-80GB\n  nodes: 1\n  gpus_per_node: 16\n"
              "  intra_node: {fabric: pcie, GBps: 1e-300, latency_ns: 0}\n");
  EXPECT_INPUT_ERROR(parse_error(inline_topo), "t.yaml", 8, "topology.intra_node.GBps", "outside");
  // Values at the ends of a range load.
  EXPECT_NO_THROW(parse_scenario(
      kBase, "t.yaml", {"topology.intra_node.latency_ns=1e9", "topology.intra_node.GBps=0.001"}));
}

TEST(Ranges, CountsAndByteTotalsAreCappedBeforeAnythingIsSized) {
  EXPECT_INPUT_ERROR(parse_error(kBase, {"model.experts=100000000"}), "--set", 0, "model.experts",
                     "at most 65536");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"plan.attention.gpus=2147483648"}), "--set", 0,
                     "plan.attention.gpus", "more than masep accepts");
  EXPECT_INPUT_ERROR(parse_error(kBase, {"workload.batch=1073741824"}), "--set", 0,
                     "workload.batch", "at most 16777216");
  // Each count within its cap, the product past 2^53 bytes: an error, not an int64 overflow.
  const auto w = parse_error(kBase, {"model.hidden=262144", "model.expert_ffn=262144",
                                     "model.experts=65536", "model.layers=10000"});
  EXPECT_EQ(w.key(), "model") << w.what();
  EXPECT_NE(std::string(w.what()).find("bytes of weights"), std::string::npos) << w.what();
  EXPECT_INPUT_ERROR(parse_error(kBase, {"workload.batch=16777212", "workload.context=16777216",
                                         "model.layers=10000"}),
                     "--set", 0, "workload.batch", "bytes of KV cache");
}

// ---- every error class -------------------------------------------------------------------

TEST(Errors, MessageFormat) {
  const InputError e("f.yaml", 3, 5, "plan.moe.gpus", "must be positive, got 0");
  EXPECT_STREQ(e.what(), "f.yaml:3:5: plan.moe.gpus: must be positive, got 0");
  const InputError o("--set", 0, 0, "plan.x", "unknown key");
  EXPECT_STREQ(o.what(), "--set: plan.x: unknown key");
}

TEST(Errors, UnknownKeyWithSuggestion) {
  const auto e = parse_error(replace(kBase, "head_parallel: 4", "head_paralel: 4"));
  EXPECT_INPUT_ERROR(e, "t.yaml", 6, "plan.attention.head_paralel", "did you mean 'head_parallel'");
  EXPECT_EQ(e.column(), 25);
  EXPECT_NE(std::string(e.what()).find("t.yaml:6:25: plan.attention.head_paralel: unknown key"),
            std::string::npos)
      << e.what();
  // A key far from every accepted one gets no suggestion but the accepted list.
  const auto f = parse_error(replace(kBase, "  seed: 1\n", "  zzzzzz: 1\n"));
  EXPECT_INPUT_ERROR(f, "t.yaml", 14, "workload.zzzzzz", "accepted here: batch, context");
  EXPECT_EQ(std::string(f.what()).find("did you mean"), std::string::npos) << f.what();
}

TEST(Errors, DuplicateKey) {
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "  seed: 1\n", "  seed: 1\n  seed: 2\n")), "t.yaml",
                     15, "workload.seed", "duplicate key");
}

TEST(Errors, MissingKey) {
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "  batch: 24\n", "")), "t.yaml", 10,
                     "workload.batch", "missing required key");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "{gpus: 4, placement", "{placement")), "t.yaml", 7,
                     "plan.moe.gpus", "missing required key");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "name: t\n", "")), "t.yaml", 1, "name",
                     "missing required key");
}

TEST(Errors, WrongType) {
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "batch: 24", "batch: abc")), "t.yaml", 10,
                     "workload.batch", "expected an integer, got 'abc'");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "batch: 24", "batch: 2.5")), "t.yaml", 10,
                     "workload.batch", "expected an integer, got '2.5'");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "batch: 24", "batch: [24]")), "t.yaml", 10,
                     "workload.batch", "expected an integer, got a sequence");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "batch: 24", "batch:")), "t.yaml", 10,
                     "workload.batch", "got nothing");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "  kind: ma_separation\n", "  kind: [a]\n")),
                     "t.yaml", 5, "plan.kind", "expected a string");
  const std::string no_plan =
      kBase.substr(0, kBase.find("plan:")) + "plan: 3\n" + kBase.substr(kBase.find("workload:"));
  EXPECT_INPUT_ERROR(parse_error(no_plan), "t.yaml", 4, "plan", "expected a mapping, got '3'");
}

TEST(Errors, NonPositiveSizes) {
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "batch: 24", "batch: 0")), "t.yaml", 10,
                     "workload.batch", "must be positive, got 0");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "decode_steps: 4", "decode_steps: -1")), "t.yaml",
                     12, "workload.decode_steps", "must be positive");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "micro_batches: 2", "micro_batches: 0")), "t.yaml",
                     8, "plan.micro_batches", "must be positive");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "context: 2048", "context: 0")), "t.yaml", 11,
                     "workload.context", "must be positive");
  EXPECT_INPUT_ERROR(
      parse_error(replace(kBase, "model: paper-moe",
                          "model: {name: m, layers: 0, hidden: 64, heads: 4, head_dim: 16, "
                          "experts: 4, top_k: 1, expert_ffn: 32}")),
      "t.yaml", 2, "model.layers", "must be positive, got 0");
}

TEST(Errors, BadEnumListsAcceptedValues) {
  const auto e = parse_error(replace(kBase, "placement: round_robin", "placement: round-robin"));
  EXPECT_INPUT_ERROR(e, "t.yaml", 7, "plan.moe.placement", "did you mean 'round_robin'");
  EXPECT_NE(std::string(e.what()).find("accepted: round_robin, contiguous, explicit"),
            std::string::npos)
      << e.what();
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "kind: ma_separation", "kind: disaggregated")),
                     "t.yaml", 5, "plan.kind", "accepted: ma_separation, colocated");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "{kind: uniform}", "{kind: zip}")), "t.yaml", 13,
                     "workload.routing.kind", "did you mean 'zipf'");
}

TEST(Errors, HeadParallelMustDivideHeads) {
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "{gpus: 12, head_parallel: 4, replicas: 3}",
                                         "{gpus: 15, head_parallel: 5, replicas: 3}")),
                     "t.yaml", 6, "plan.attention.head_parallel", "5 does not divide 32 heads");
  // GQA: head_parallel must divide the KV heads too.
  auto t = replace(kBase, "model: paper-moe", "model: qwen3-30b-a3b");
  t = replace(t, "{gpus: 12, head_parallel: 4, replicas: 3}", "{gpus: 8, head_parallel: 8}");
  t = replace(t, "micro_batches: 2", "micro_batches: 1");
  EXPECT_INPUT_ERROR(parse_error(t), "t.yaml", 6, "plan.attention.head_parallel",
                     "8 does not divide 4 kv_heads");
}

TEST(Errors, AttentionGpusMustMatchTheLayout) {
  EXPECT_INPUT_ERROR(
      parse_error(replace(kBase, "{gpus: 12, head_parallel", "{gpus: 10, head_parallel")), "t.yaml",
      6, "plan.attention.gpus", "replicas × head_parallel × sequence_parallel");
}

TEST(Errors, BatchMustFillReplicasAndMicroBatches) {
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "batch: 24", "batch: 5")), "t.yaml", 10,
                     "workload.batch", "need at least 6");
}

// Uneven data-parallel batches are plans users have (batch 25 over 3 replicas × 2 micro-batches:
// chunks of 5 and 4): they load, and the compiler's partition is the near-equal one.
TEST(Parse, UnevenBatchSplitLoads) {
  const Scenario s = parse_scenario(replace(kBase, "batch: 24", "batch: 25"), "t.yaml");
  EXPECT_EQ(s.workload.batch, 25);
}

TEST(Errors, TooManyGpus) {
  const auto e = parse_error(replace(kBase, "{gpus: 12, head_parallel: 4, replicas: 3}",
                                     "{gpus: 16, head_parallel: 4, replicas: 4}"),
                             {"workload.batch=32"});
  EXPECT_INPUT_ERROR(e, "t.yaml", 5, "plan",
                     "plan uses 20 GPUs (16 attention + 4 MoE) but topology paper-16xa100 has 16");
}

TEST(Errors, GpuRanks) {
  const std::string ranks =
      "  micro_batches: 2\n  gpu_ranks: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, ";
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "  micro_batches: 2\n", ranks + "16]\n")), "t.yaml",
                     9, "plan.gpu_ranks[15]", "outside topology");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "  micro_batches: 2\n", ranks + "3]\n")), "t.yaml",
                     9, "plan.gpu_ranks[15]", "listed twice");
  EXPECT_INPUT_ERROR(
      parse_error(replace(kBase, "  micro_batches: 2\n", "  micro_batches: 2\n  gpu_ranks: [0]\n")),
      "t.yaml", 9, "plan.gpu_ranks", "lists 1 ranks but the plan uses 16");
}

TEST(Errors, UnplaceableExperts) {
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "placement: round_robin", "expert_replicas: 5")),
                     "t.yaml", 7, "plan.moe.expert_replicas", "only 4 expert GPUs");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "{gpus: 4, placement: round_robin}",
                                         "{gpus: 3, placement: contiguous}"),
                                 {"plan.attention.gpus=12"}),
                     "t.yaml", 7, "plan.moe.placement", "3 does not divide 16");
  // An explicit map must list every expert, with valid MoE GPU indices.
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "placement: round_robin",
                                         "placement: explicit, expert_map: [[0], [1]]")),
                     "t.yaml", 7, "plan.moe.expert_map",
                     "lists 2 experts, but model paper-moe has 16");
  std::string map = "[";
  for (int e = 0; e < 16; ++e) map += (e ? ", [" : "[") + std::to_string(e == 9 ? 4 : e % 4) + "]";
  map += "]";
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "placement: round_robin",
                                         "placement: explicit, expert_map: " + map)),
                     "t.yaml", 7, "plan.moe.expert_map[9][0]", "out of range 0..3");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "placement: round_robin", "placement: explicit")),
                     "t.yaml", 7, "plan.moe.expert_map", "missing required key");
  // More MoE GPUs than expert copies: some would hold nothing.
  auto t = replace(kBase, "model: paper-moe", "model: mixtral-8x7b");
  t = replace(t, "{gpus: 12, head_parallel: 4, replicas: 3}",
              "{gpus: 6, head_parallel: 2, replicas: 3}");
  t = replace(t, "{gpus: 4, placement", "{gpus: 10, placement");
  EXPECT_INPUT_ERROR(parse_error(t), "t.yaml", 7, "plan.moe.gpus", "would hold no expert");
}

TEST(Errors, Colocated) {
  const std::string colo =
      "plan:\n  kind: colocated\n  colocated: {gpus: 16, tensor_parallel: 3}\n";
  auto t = replace(kBase,
                   "plan:\n  kind: ma_separation\n"
                   "  attention: {gpus: 12, head_parallel: 4, replicas: 3}\n"
                   "  moe: {gpus: 4, placement: round_robin}\n",
                   colo);
  EXPECT_INPUT_ERROR(parse_error(t), "t.yaml", 6, "plan.colocated.tensor_parallel",
                     "3 does not divide 16 GPUs");
  // Keys of the other plan kind are rejected.
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "  micro_batches: 2\n",
                                         "  micro_batches: 2\n  colocated: {gpus: 4}\n")),
                     "t.yaml", 9, "plan.colocated", "only used with kind: colocated");
}

TEST(Errors, RoutingWeights) {
  EXPECT_INPUT_ERROR(
      parse_error(replace(kBase, "{kind: uniform}", "{kind: explicit, expert_weights: [1, 2, 3]}")),
      "t.yaml", 13, "workload.routing.expert_weights", "3 weights, but model paper-moe has 16");
  EXPECT_INPUT_ERROR(
      parse_error(replace(kBase, "{kind: uniform}", "{kind: explicit, expert_weights: [1, 0]}")),
      "t.yaml", 13, "workload.routing.expert_weights[1]", "must be positive");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "{kind: uniform}", "{kind: uniform, skew: 2}")),
                     "t.yaml", 13, "workload.routing.skew", "only used with kind: zipf");
}

TEST(Errors, BadReferences) {
  const auto e = parse_error(replace(kBase, "model: paper-moe", "model: paper-mo"));
  EXPECT_INPUT_ERROR(e, "t.yaml", 2, "model", "did you mean 'paper-moe'");
  EXPECT_NE(std::string(e.what()).find("mixtral-8x7b"), std::string::npos) << e.what();
  EXPECT_THROW(load_model("no-such-model"), InputError);
  EXPECT_THROW(load_scenario("no-such-scenario.yaml"), InputError);
}

TEST(Errors, TopologyShape) {
  const std::string topo =
      "topology:\n"
      "  name: two\n"
      "  gpu: A100-SXM4-80GB\n"
      "  nodes: 4\n"
      "  gpus_per_node: 4\n"
      "  intra_node: {fabric: nvlink_mesh, GBps: 100, latency_ns: 1000}\n"
      "  nics: [{GBps: 25, latency_ns: 2000, gpus: [0, 1, 4]}]\n"
      "  switch_latency_ns: 500\n";
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "topology: paper-16xa100\n", topo)), "t.yaml", 9,
                     "topology.nics[0].gpus[2]", "local GPU 4 does not exist");
  auto t = replace(kBase, "topology: paper-16xa100\n", topo);
  t = replace(t, "gpus: [0, 1, 4]", "gpus: [0, 1]");
  EXPECT_INPUT_ERROR(parse_error(t), "t.yaml", 9, "topology.nics", "local GPU 2 uses no NIC");
  t = replace(t, "GBps: 100", "GBps: 150");
  EXPECT_INPUT_ERROR(parse_error(t), "t.yaml", 8, "topology.intra_node.GBps",
                     "exceeds A100-SXM4-80GB's NVLink");
  t = replace(topo, "fabric: nvlink_mesh", "fabric: nvlink");
  EXPECT_INPUT_ERROR(parse_error(replace(kBase, "topology: paper-16xa100\n", t)), "t.yaml", 8,
                     "topology.intra_node.fabric", "accepted: nvswitch, nvlink_mesh, pcie");
}

TEST(Errors, YamlSyntax) {
  const auto e = parse_error(replace(kBase, "  batch: 24\n", "  batch: [24\n"));
  EXPECT_EQ(e.file(), "t.yaml");
  EXPECT_GT(e.line(), 0);
  EXPECT_NE(std::string(e.what()).find("YAML syntax error"), std::string::npos) << e.what();
  EXPECT_INPUT_ERROR(parse_error("- a\n- b\n"), "t.yaml", 1, "", "must be a mapping");
  const auto empty = parse_error("");
  EXPECT_NE(std::string(empty.what()).find("must be a mapping"), std::string::npos) << empty.what();
}

TEST(Errors, ValidateWithoutAFileNamesTheOrigin) {
  Scenario s = load_scenario("paper");
  s.plan.attention.head_parallel = 3;
  s.plan.attention.gpus = 9;
  try {
    validate_scenario(s);
    ADD_FAILURE() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_EQ(e.file(), "builtin:paper.yaml");
    EXPECT_EQ(e.key(), "plan.attention.head_parallel");
  }
}

}  // namespace
}  // namespace masep::plan

namespace masep::plan {
namespace {

// Issue 14: fp8 on a GPU without FP8 tensor cores is an error naming model.dtype.
TEST(CrossChecks, Fp8NeedsAnFp8Gpu) {
  const InputError e = parse_error(kBase, {"model.dtype=fp8"});
  EXPECT_EQ(e.key(), "model.dtype") << e.what();
  EXPECT_NE(std::string(e.what()).find("A100-SXM4-80GB"), std::string::npos) << e.what();
  EXPECT_NO_THROW(
      parse_scenario(replace(kBase, "topology: paper-16xa100", "topology: dgx-h100"), "t.yaml",
                     {"model.dtype=fp8", "plan.attention.gpus=6", "plan.attention.replicas=3",
                      "plan.attention.head_parallel=2", "plan.moe.gpus=2"}));
}

}  // namespace
}  // namespace masep::plan
