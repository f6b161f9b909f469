// The built-in topology and GPU zoo: YAML texts of topology/zoo/*.yaml compiled into the
// binary. plan/'s loader parses them; this header only exposes the texts.
#pragma once

#include <span>

#include "masep/models/embedded.hpp"

namespace masep::topology {
/// Built-in cluster files (stem = name), in a fixed order. Static storage.
std::span<const masep::EmbeddedFile> builtin_topology_files();
/// Built-in GPU spec files (stem = GPU name, e.g. "A100-SXM4-80GB"). Static storage.
std::span<const masep::EmbeddedFile> builtin_gpu_files();
}  // namespace masep::topology
