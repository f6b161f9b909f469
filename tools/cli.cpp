#include "cli.hpp"

#include <cstdio>
#include <iostream>

namespace masep::tools {

namespace po = boost::program_options;

std::optional<int> parse_command_line(const char* command, const Args& args,
                                      const po::options_description& visible,
                                      po::variables_map& vm, const po::options_description* hidden,
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

}  // namespace masep::tools
