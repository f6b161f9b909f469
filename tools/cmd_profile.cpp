// masep profile: micro-benchmarks on this host's GPUs (exec/src/profiler.cpp) written as a
// calibration YAML for `masep sim --calibration FILE`.
#include <fmt/format.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "cli.hpp"
#include "commands.hpp"
#include "masep/exec/profiler.hpp"
#include "masep/plan/calibration.hpp"
#include "masep/plan/compiler.hpp"
#include "masep/plan/loader.hpp"

namespace po = boost::program_options;

namespace masep::tools {
namespace {

constexpr const char* kUsage = R"(usage: masep profile [options]

Measures, on this host's GPUs, what the simulator needs to time a Program: cuBLAS bf16 GEMMs
over the (n, k) shapes of the built-in scenarios and an m grid, decode attention over batch x
context, the element-wise / router / permute / combine kernels by bytes, and NCCL all-reduce,
all-gather, reduce-scatter, all-to-all and send/recv from 1 KB to 256 MB on groups of 2, 4
(and 8) GPUs. Each point: warm-up launches, then timed launches between CUDA events; results
are verified. Writes a calibration YAML (device, driver, CUDA, cuBLAS, NCCL versions, date;
format in docs/calibration.md). Micro-benchmarks only: never calibrate from the end-to-end
runs you compare against.

Options)";

}  // namespace

int cmd_profile(const Args& args) {
  std::string out = "calibration.yaml";
  int gpus = 0, warmup = 0, iters = 0;
  std::vector<std::string> scenarios;
  po::options_description opts(kUsage);
  opts.add_options()("help,h", "show this help")("out", po::value(&out)->default_value(out),
                                                 "calibration YAML to write (atomically)")(
      "quick", "small grids (for a smoke test; a couple of minutes at most)")(
      "gpus", po::value(&gpus)->default_value(0),
      "GPUs for the NCCL tables (0 = all visible; 1 = compute tables only)")(
      "warmup", po::value(&warmup)->default_value(0), "untimed launches per point (0 = default)")(
      "iters", po::value(&iters)->default_value(0), "timed launches per point (0 = default)")(
      "scenario", po::value(&scenarios)->composing(),
      "also measure the shapes of this scenario's Program (a file or built-in name; "
      "repeatable): e.g. a model with FP8 weights, which no built-in scenario has")(
      "quiet,q", "no progress lines");
  po::variables_map vm;
  if (auto rc = parse_command_line("profile", args, opts, vm)) return *rc;
  if (gpus < 0 || warmup < 0 || iters < 0) {
    std::fprintf(stderr, "masep profile: --gpus, --warmup and --iters must be >= 0\n");
    return 2;
  }
  exec::ProfileOptions o;
  o.quick = vm.count("quick") > 0;
  o.gpus = gpus;
  o.warmup = warmup;
  o.iters = iters;
  if (!vm.count("quiet")) {
    o.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  }
  // The shapes to measure: those of the built-in scenarios' Programs (one decode step each).
  for (const std::string& name : plan::builtin_scenario_names()) {
    try {
      plan::CompileOptions co;
      co.steps = 1;
      o.programs.push_back(plan::compile(plan::load_scenario(name), co));
    } catch (const std::exception& e) {
      if (o.progress) o.progress(fmt::format("  scenario {} skipped: {}", name, e.what()));
    }
  }
  for (const std::string& name : scenarios) {
    // Asked for by name: a scenario that does not load or compile is an error, not a skip.
    plan::CompileOptions co;
    co.steps = 1;
    o.programs.push_back(plan::compile(plan::load_scenario(name), co));
  }
  for (const std::string& name : plan::builtin_model_names()) {
    o.zoo_models.push_back(plan::load_model(name));
  }
  const plan::Calibration cal = exec::run_profile(o);
  plan::write_calibration(out, cal);
  std::printf(
      "calibration of %s (driver %s, CUDA %s, cuBLAS %s, NCCL %s, %d GPUs): %zu GEMM, "
      "%zu attention, %zu kernel, %zu NCCL tables written to %s\n",
      cal.device.c_str(), cal.driver.c_str(), cal.cuda.c_str(), cal.cublas.c_str(),
      cal.nccl.c_str(), cal.gpus, cal.gemm.size(), cal.attention.size(), cal.kernels.size(),
      cal.comm.size(), out.c_str());
  return 0;
}

}  // namespace masep::tools
