// masep list — placeholder until its issue lands (returns an error, never pretends).
#include <cstdio>

#include "commands.hpp"

namespace masep::tools {
int cmd_list(const Args&) {
  std::fprintf(stderr, "masep list: not implemented yet\n");
  return 1;
}
}  // namespace masep::tools
