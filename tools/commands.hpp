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
int cmd_collective(const Args& args);  ///< masep collective: simulated nccl-tests table
int cmd_paper(const Args& args);       ///< masep paper: simulated vs the paper's figures
int cmd_list(const Args& args);        ///< masep list: built-in models, topologies, scenarios
int cmd_compare(const Args& args);     ///< masep compare SIM MEASURED: per-op and TPOT error
#ifdef MASEP_HAVE_CUDA
int cmd_exec(const Args& args);  ///< masep exec SCENARIO: run on real GPUs, measure
int cmd_profile(const Args& args);  ///< masep profile: micro-benchmarks -> calibration YAML
#endif

}  // namespace masep::tools
