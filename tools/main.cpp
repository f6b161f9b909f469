// The `masep` command: one binary, one subcommand per job. Exceptions from the libraries
// end here as a one-line message and a non-zero exit code.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "commands.hpp"
#include "masep/plan/errors.hpp"

namespace {

struct Command {
  const char* name;
  int (*run)(const masep::tools::Args&);
  const char* help;
};

const Command kCommands[] = {
    {"sim", masep::tools::cmd_sim, "simulate a scenario (default: the paper's 12:4 plan)"},
    {"plan", masep::tools::cmd_plan, "compile a scenario and print roles, memory, FLOPs, bytes"},
    {"sweep", masep::tools::cmd_sweep, "simulate a grid of scenarios in parallel (CSV, plots)"},
    {"collective", masep::tools::cmd_collective,
     "simulate one collective over a size range (nccl-tests table)"},
    {"paper", masep::tools::cmd_paper, "simulated figures beside the paper's"},
    {"list", masep::tools::cmd_list, "list built-in models, topologies, GPUs and scenarios"},
    {"compare", masep::tools::cmd_compare, "simulated vs measured trace: per-op and TPOT error"},
#ifdef MASEP_HAVE_CUDA
    {"exec", masep::tools::cmd_exec, "run a scenario on this host's GPUs and measure it"},
    {"profile", masep::tools::cmd_profile, "measure kernels and NCCL here: a calibration YAML"},
#endif
};

void usage(FILE* out) {
  std::fprintf(out,
               "masep - plan, simulate and run MoE-Attention separation for MoE decoding\n\n"
               "usage: masep <command> [options]    (masep <command> --help for details)\n\n"
               "commands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-11s %s\n", c.name, c.help);
  std::fprintf(out, "\nWith no command, `masep` runs `masep sim` on the paper's scenario.\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string name = "sim";
  if (!args.empty()) {
    if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      usage(stdout);
      return 0;
    }
    if (args[0] == "--version") {
      std::printf("masep %s\n", MASEP_VERSION);
      return 0;
    }
    if (args[0][0] != '-') {
      name = args[0];
      args.erase(args.begin());
    }
  }
  for (const auto& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(args);
    } catch (const masep::plan::InputError& e) {
      std::fprintf(stderr, "masep %s: error: %s\n", c.name, e.what());
      return 2;
    } catch (const masep::plan::InfeasiblePlan& e) {
      std::fprintf(stderr, "masep %s: infeasible plan: %s\n", c.name, e.what());
      return 3;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "masep %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "masep: unknown command '%s'\n\n", name.c_str());
  usage(stderr);
  return 2;
}
