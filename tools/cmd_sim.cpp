// masep sim — placeholder until its issue lands (returns an error, never pretends).
#include <cstdio>

#include "commands.hpp"

namespace masep::tools {
int cmd_sim(const Args&) {
  std::fprintf(stderr, "masep sim: not implemented yet\n");
  return 1;
}
}  // namespace masep::tools
