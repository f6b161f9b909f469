// Subcommands of the `masep` command. Each takes its arguments (after the subcommand name)
// and returns the process exit code; only main() exits. Each lives in its own cmd_*.cpp.
#pragma once

#include <string>
#include <vector>

namespace masep::tools {

using Args = std::vector<std::string>;

int cmd_plan(const Args& args);        ///< masep plan SCENARIO: roles, memory, FLOPs, bytes
int cmd_sim(const Args& args);         ///< masep sim [SCENARIO]: simulate, metrics, trace
int cmd_sweep(const Args& args);       ///< masep sweep SWEEP.yaml: grid of scenarios
int cmd_search(const Args& args);      ///< masep search [SCENARIO]: best plans for a budget
int cmd_collective(const Args& args);  ///< masep collective: simulated nccl-tests table
int cmd_paper(const Args& args);       ///< masep paper: simulated vs the paper's figures
int cmd_list(const Args& args);        ///< masep list: built-in models, topologies, scenarios
int cmd_compare(const Args& args);     ///< masep compare SIM MEASURED: per-op and TPOT error
int cmd_predict(const Args& args);     ///< masep predict [SCENARIO]: time predictor vs simulator
int cmd_balance(const Args& args);     ///< masep balance [SCENARIO]: load-balancing policies
// The GPU commands live in a second binary, masep-gpu (built with CUDA, beside masep), so that
// masep itself maps no CUDA, cuBLAS or NCCL library: `masep exec` and `masep profile` replace
// the masep process with masep-gpu (run_gpu_binary in main.cpp).
int cmd_exec(const Args& args);     ///< masep exec SCENARIO: run on real GPUs, measure
int cmd_profile(const Args& args);  ///< masep profile: micro-benchmarks -> calibration YAML

/// One subcommand (name, function, line of help) of a binary's command table.
struct Command {
  const char* name;
  int (*run)(const Args&);
  const char* help;
};

/// Runs `c` on `args` and maps what escapes it to an exit code after a one-line message on
/// stderr "masep NAME: ...": 2 for input errors, 3 for an infeasible plan, 1 for any other
/// error. Only main() returns the code.
int run_command(const Command& c, const Args& args);

}  // namespace masep::tools
