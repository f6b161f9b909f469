#include "cli.hpp"

#include <cstdio>
#include <exception>
#include <iostream>
#include <sstream>

#include "masep/plan/errors.hpp"

namespace masep::tools {

int run_command(const Command& c, const Args& args) {
  try {
    return c.run(args);
  } catch (const plan::InputError& e) {
    std::fprintf(stderr, "masep %s: error: %s\n", c.name, e.what());
    return 2;
  } catch (const plan::InfeasiblePlan& e) {
    std::fprintf(stderr, "masep %s: infeasible plan: %s\n", c.name, e.what());
    return 3;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "masep %s: error: %s\n", c.name, e.what());
    return 1;
  }
}

namespace po = boost::program_options;

std::optional<int> parse_command_line(const char* command, const Args& args,
                                      const po::options_description& visible, po::variables_map& vm,
                                      const po::options_description* hidden,
                                      const po::positional_options_description* positional) {
  po::options_description all;
  all.add(visible);
  if (hidden) all.add(*hidden);
  try {
    po::command_line_parser parser(args);
    parser.options(all);
    if (positional) parser.positional(*positional);
    po::store(parser.run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "masep %s: %s (see masep %s --help)\n", command, e.what(), command);
    return 2;
  }
  if (vm.count("help")) {
    std::cout << visible << "\n";
    return 0;
  }
  return std::nullopt;
}

std::pair<std::string, double> network_tier_param(const std::string& network) {
  if (network == "flow") return {"network_tier", 0};
  if (network == "fluid") return {"network_tier", 1};
  if (network == "auto") return {"network_tier", 2};
  throw plan::InputError("", 0, 0, "--network",
                         "'" + network + "' is not a network tier (flow, fluid or auto)");
}

// --fault "kind=gpu,gpu=3,step=10" (or a YAML flow mapping) -> "faults+={...}".
std::string fault_override(const std::string& text) {
  if (!text.empty() && text.front() == '{') return "faults+=" + text;
  std::string yaml = "{";
  std::stringstream in(text);
  std::string item;
  bool first = true;
  while (std::getline(in, item, ',')) {
    const auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw plan::InputError("--fault", 0, 0, text,
                             "expected KEY=VALUE pairs separated by commas, e.g. "
                             "kind=gpu,gpu=3,step=10 (item '" +
                                 item + "')");
    }
    yaml += (first ? "" : ", ") + item.substr(0, eq) + ": " + item.substr(eq + 1);
    first = false;
  }
  return "faults+=" + yaml + "}";
}

}  // namespace masep::tools
