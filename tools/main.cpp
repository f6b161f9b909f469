// The `masep` command: one subcommand per job. Exceptions from the libraries end here as a
// one-line message and a non-zero exit code (run_command). The GPU commands run in masep-gpu
// (main_gpu.cpp), which `masep exec` / `masep profile` exec, so that this binary maps no CUDA
// library and starts in milliseconds.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.hpp"

namespace {

// `masep exec` / `masep profile`: exec masep-gpu from the folder of this binary (see
// commands.hpp). Never returns on success; returns an exit code after a message otherwise.
int run_gpu_binary(const char* name, const masep::tools::Args& args) {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::string dir = ".";
  if (n > 0) {
    self[n] = '\0';
    dir = std::string(self);
    dir = dir.substr(0, dir.find_last_of('/'));
  }
  const std::string gpu = dir + "/masep-gpu";
  if (access(gpu.c_str(), X_OK) != 0) {
    std::fprintf(stderr,
                 "masep %s: needs masep-gpu beside this binary (%s: %s); it is built when a CUDA "
                 "toolkit is found (tools/setup.sh with MASEP_CUDA=AUTO or ON)\n",
                 name, gpu.c_str(), std::strerror(errno));
    return 2;
  }
  std::vector<std::string> argv_s = {"masep-gpu", name};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  execv(gpu.c_str(), argv.data());
  std::fprintf(stderr, "masep %s: cannot run %s: %s\n", name, gpu.c_str(), std::strerror(errno));
  return 1;
}

int exec_command(const masep::tools::Args& args) { return run_gpu_binary("exec", args); }
int profile_command(const masep::tools::Args& args) { return run_gpu_binary("profile", args); }

const masep::tools::Command kCommands[] = {
    {"sim", masep::tools::cmd_sim, "simulate a scenario (default: the paper's 12:4 plan)"},
    {"plan", masep::tools::cmd_plan, "compile a scenario and print roles, memory, FLOPs, bytes"},
    {"sweep", masep::tools::cmd_sweep, "simulate a grid of scenarios in parallel (CSV, plots)"},
    {"search", masep::tools::cmd_search,
     "best plans for a GPU budget and a TPOT SLO (co-located vs MA separation)"},
    {"collective", masep::tools::cmd_collective,
     "simulate one collective over a size range (nccl-tests table)"},
    {"paper", masep::tools::cmd_paper, "simulated figures beside the paper's"},
    {"list", masep::tools::cmd_list, "list built-in models, topologies, GPUs and scenarios"},
    {"compare", masep::tools::cmd_compare, "simulated vs measured trace: per-op and TPOT error"},
    {"predict", masep::tools::cmd_predict, "time predictor vs simulator: error per op kind"},
    {"balance", masep::tools::cmd_balance, "expert load balancing policies side by side"},
    {"exec", exec_command, "run a scenario on this host's GPUs and measure it (CUDA build)"},
    {"profile", profile_command, "measure kernels and NCCL here: a calibration YAML (CUDA build)"},
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
    if (name == c.name) return masep::tools::run_command(c, args);
  }
  std::fprintf(stderr, "masep: unknown command '%s'\n\n", name.c_str());
  usage(stderr);
  return 2;
}
