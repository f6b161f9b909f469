#include "fuzz_targets.hpp"

#include <array>
#include <exception>
#include <sstream>

#include "masep/exec/launch_plan.hpp"
#include "masep/plan/calibration.hpp"
#include "masep/plan/compare.hpp"
#include "masep/plan/loader.hpp"
#include "masep/plan/memory.hpp"
#include "masep/plan/program_json.hpp"
#include "masep/plan/routing_trace.hpp"
#include "masep/plan/sweep.hpp"

namespace masep::fuzz {
namespace {

constexpr std::string_view kCommon[] = {": ",
                                        "\n",
                                        "\n  ",
                                        "- ",
                                        "[",
                                        "]",
                                        "{",
                                        "}",
                                        ", ",
                                        "\"",
                                        "'",
                                        "#",
                                        "&a ",
                                        "*a",
                                        "~",
                                        "null",
                                        "true",
                                        "false",
                                        "0",
                                        "-1",
                                        "1e300",
                                        "1e-300",
                                        "-0",
                                        "nan",
                                        ".inf",
                                        "-.inf",
                                        "2147483648",
                                        "9223372036854775808",
                                        "18446744073709551616",
                                        "4294967296",
                                        "1.5",
                                        "0x10",
                                        "!!str ",
                                        "? ",
                                        "|\n",
                                        ">\n",
                                        "<<: ",
                                        "\t",
                                        "\r\n",
                                        "\xef\xbb\xbf",
                                        "\\u0000",
                                        std::string_view("\0", 1)};
constexpr std::string_view kScenario[] = {"name",
                                          "model",
                                          "topology",
                                          "plan",
                                          "workload",
                                          "layers",
                                          "hidden",
                                          "heads",
                                          "kv_heads",
                                          "head_dim",
                                          "experts",
                                          "top_k",
                                          "expert_ffn",
                                          "shared_experts",
                                          "gpu",
                                          "nodes",
                                          "gpus_per_node",
                                          "intra_node",
                                          "fabric",
                                          "GBps",
                                          "latency_ns",
                                          "nics",
                                          "gpus",
                                          "switch_latency_ns",
                                          "kind",
                                          "ma_separation",
                                          "colocated",
                                          "attention",
                                          "moe",
                                          "head_parallel",
                                          "sequence_parallel",
                                          "replicas",
                                          "placement",
                                          "explicit",
                                          "expert_map",
                                          "expert_replicas",
                                          "micro_batches",
                                          "gpu_ranks",
                                          "batch",
                                          "context",
                                          "distribution",
                                          "decode_steps",
                                          "routing",
                                          "zipf",
                                          "skew",
                                          "expert_weights",
                                          "seed",
                                          "paper-moe",
                                          "paper-16xa100",
                                          "A100-SXM4-80GB",
                                          "/dev/zero",
                                          "hbm_gb",
                                          "bf16_tflops"};
constexpr std::string_view kCalibration[] = {"format",
                                             "masep-calibration/1",
                                             "device",
                                             "gpus",
                                             "launch",
                                             "event_overhead_ns",
                                             "event_gap_ns",
                                             "comm_slowdown",
                                             "gemm",
                                             "attention",
                                             "kernels",
                                             "comm",
                                             "points",
                                             "n",
                                             "k",
                                             "heads",
                                             "kv_heads",
                                             "head_dim",
                                             "batch",
                                             "name",
                                             "op",
                                             "ranks",
                                             "all_reduce",
                                             "send_recv",
                                             "[[1, 1e300]]",
                                             "[[0, 1]]"};
constexpr std::string_view kSweep[] = {"name",
                                       "description",
                                       "base",
                                       "set",
                                       "points",
                                       "grid",
                                       "output",
                                       "dir",
                                       "plots",
                                       "x",
                                       "y",
                                       "series",
                                       "logx",
                                       "title",
                                       "label",
                                       "scenario",
                                       "paper",
                                       "workload.batch",
                                       "plan.moe.gpus",
                                       "../../escape",
                                       "tpot_mean_ms",
                                       "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]"};
constexpr std::string_view kTrace[] = {"\"traceEvents\"",
                                       "\"ph\"",
                                       "\"X\"",
                                       "\"M\"",
                                       "\"pid\"",
                                       "\"tid\"",
                                       "\"ts\"",
                                       "\"dur\"",
                                       "\"args\"",
                                       "\"op\"",
                                       "\"kind\"",
                                       "\"step\"",
                                       "\"layer\"",
                                       "\"mb\"",
                                       "\"name\"",
                                       "\"otherData\"",
                                       "\"process_name\"",
                                       "\"thread_name\"",
                                       "1e308",
                                       "-3",
                                       "0.5",
                                       "[]",
                                       "{}"};

template <size_t A, size_t B>
std::array<std::string_view, A + B> join(const std::string_view (&a)[A],
                                         const std::string_view (&b)[B]) {
  std::array<std::string_view, A + B> out{};
  for (size_t i = 0; i < A; ++i) out[i] = a[i];
  for (size_t i = 0; i < B; ++i) out[A + i] = b[i];
  return out;
}

const auto kScenarioDict = join(kCommon, kScenario);
const auto kCalibrationDict = join(kCommon, kCalibration);
const auto kSweepDict = join(kCommon, kSweep);
const auto kTraceDict = join(kCommon, kTrace);
constexpr std::string_view kProgram[] = {"\"role\"",
                                         "\"kind\"",
                                         "\"ops\"",
                                         "\"deps\"",
                                         "\"layout\"",
                                         "\"batches\"",
                                         "\"expert_holders\"",
                                         "\"context_lengths\"",
                                         "\"group_m\"",
                                         "\"exchange\"",
                                         "\"collective\"",
                                         "\"stream_ops\"",
                                         "\"attention\"",
                                         "\"qkv\"",
                                         "\"dispatch\"",
                                         "\"return\"",
                                         "\"moe_permute\"",
                                         "\"token_experts\"",
                                         "2147483647",
                                         "-1",
                                         "1e308"};
const auto kProgramDict = join(kCommon, kProgram);
constexpr std::string_view kRoutingWords[] = {"masep-routing-trace 1\n",
                                              "experts ",
                                              "top_k ",
                                              "batch ",
                                              "steps ",
                                              "layers ",
                                              "counts ",
                                              "tokens ",
                                              " * ",
                                              ",",
                                              "\n",
                                              "# ",
                                              "0",
                                              "1",
                                              "4294967296",
                                              "999999999999999999"};
const auto kRoutingDict = join(kCommon, kRoutingWords);

}  // namespace

std::optional<Reader> reader_named(std::string_view name) {
  for (Reader r : {Reader::kScenario, Reader::kCalibration, Reader::kSweep, Reader::kTrace,
                   Reader::kProgram, Reader::kRouting}) {
    if (name == name_of(r)) return r;
  }
  return std::nullopt;
}

const char* name_of(Reader r) {
  switch (r) {
    case Reader::kScenario:
      return "scenario";
    case Reader::kCalibration:
      return "calibration";
    case Reader::kSweep:
      return "sweep";
    case Reader::kTrace:
      return "trace";
    case Reader::kProgram:
      return "program";
    case Reader::kRouting:
      return "routing";
  }
  return "?";
}

std::span<const std::string_view> dictionary(Reader r) {
  switch (r) {
    case Reader::kScenario:
      return kScenarioDict;
    case Reader::kCalibration:
      return kCalibrationDict;
    case Reader::kSweep:
      return kSweepDict;
    case Reader::kTrace:
      return kTraceDict;
    case Reader::kProgram:
      return kProgramDict;
    case Reader::kRouting:
      return kRoutingDict;
  }
  return {};
}

bool run_one(Reader r, std::string_view input) {
  const std::string text(input);
  try {
    switch (r) {
      case Reader::kScenario: {
        // Also the memory arithmetic every command runs next (its int64 products are what
        // the load-time limits protect), for plans small enough to stay fast.
        const plan::Scenario s = plan::parse_scenario(text, "fuzz.yaml");
        if (s.plan.total_gpus() <= 4096) plan::plan_memory(s);
        break;
      }
      case Reader::kCalibration:
        plan::validate_calibration(plan::parse_calibration(text, "fuzz.yaml"));
        break;
      case Reader::kSweep:
        plan::parse_sweep(text, "fuzz.yaml");
        break;
      case Reader::kTrace: {
        const plan::LoadedTrace t = plan::parse_trace(text, "fuzz.json");
        plan::compare_traces(t, t);
        break;
      }
      case Reader::kProgram: {
        std::istringstream in(text);
        const plan::Program p = plan::read_program_json(in, "fuzz.json");
        for (int r = 0; r < p.rank_count() && r < 64; ++r) {
          for (bool gate : {false, true}) {
            exec::PlanOptions po;
            po.real_gating = gate;
            try {
              exec::build_rank_plan(p, r, po);
            } catch (const std::invalid_argument&) {
            }
          }
        }
        break;
      }
      case Reader::kRouting: {
        const plan::RoutingTrace t = plan::parse_routing_trace(text, "fuzz.txt");
        for (int step = 0; step < t.steps; ++step) {
          for (int l = 0; l < t.layers; ++l) {
            if (t.has(step, l)) t.tokens(step, l, 0, t.batch);
          }
        }
        t.probabilities();
        break;
      }
    }
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

}  // namespace masep::fuzz
