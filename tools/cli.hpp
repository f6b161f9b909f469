// Command-line parsing shared by the `masep` subcommands (Boost.Program_options).
#pragma once

#include <boost/program_options.hpp>
#include <optional>
#include <string>
#include <utility>

#include "commands.hpp"

namespace masep::tools {

/// Parses `args` of subcommand `command` against the `visible` options (shown by --help) and
/// the optional `hidden` options bound to `positional` arguments. Returns std::nullopt when
/// the command should go on, or the exit code it should return: 0 after printing --help to
/// stdout, 2 after a usage error printed to stderr as "masep COMMAND: what (see --help)".
/// The caller's `visible` must declare "help".
std::optional<int> parse_command_line(
    const char* command, const Args& args, const boost::program_options::options_description& visible,
    boost::program_options::variables_map& vm,
    const boost::program_options::options_description* hidden = nullptr,
    const boost::program_options::positional_options_description* positional = nullptr);

/// Help text of the --network option (masep sim, masep sweep).
inline constexpr const char* kNetworkHelp =
    "network tier: flow (per-flow max-min, the reference), fluid (each phase timed from link "
    "loads; coarse, fast at scale) or auto (flow, unless one exchange or all-to-all has more "
    "than network_auto_flows = 1024 transfers: then fluid); docs/simulator-model.md gives "
    "fluid's measured error. Default: the scenario's simulator.network, else auto";

/// The simulator parameter (network_tier, 0/1/2) for a --network value "flow", "fluid" or
/// "auto"; throws plan::InputError naming --network for anything else.
std::pair<std::string, double> network_tier_param(const std::string& network);

/// `--fault kind=gpu,gpu=3,step=10` (or a YAML flow mapping `{kind: gpu, ...}`) as the
/// scenario override `faults+={...}` (masep sim, masep exec). Throws plan::InputError naming
/// --fault for text that is not KEY=VALUE pairs.
std::string fault_override(const std::string& text);

}  // namespace masep::tools
