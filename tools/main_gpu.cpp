// masep-gpu: the `masep exec` and `masep profile` commands, in a binary of their own that links
// CUDA, cuBLAS and NCCL (exec/), so that the `masep` binary does not (commands.hpp). `masep exec
// ...` execs `masep-gpu exec ...`; running masep-gpu directly works the same. The executor's
// rank processes are started from this binary (/proc/self/exe).
#include <cstdio>
#include <string>
#include <vector>

#include "commands.hpp"

namespace {

const masep::tools::Command kCommands[] = {
    {"exec", masep::tools::cmd_exec, "run a scenario on this host's GPUs and measure it"},
    {"profile", masep::tools::cmd_profile, "measure kernels and NCCL here: a calibration YAML"},
};

void usage(FILE* out) {
  std::fprintf(out,
               "masep-gpu - the GPU commands of masep (usually run as `masep exec` / `masep "
               "profile`)\n\nusage: masep-gpu <command> [options]\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-11s %s\n", c.name, c.help);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    usage(args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  const std::string name = args[0];
  args.erase(args.begin());
  for (const auto& c : kCommands) {
    if (name == c.name) return masep::tools::run_command(c, args);
  }
  std::fprintf(stderr, "masep-gpu: unknown command '%s'\n\n", name.c_str());
  usage(stderr);
  return 2;
}
