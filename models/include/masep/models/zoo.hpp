// The built-in model zoo: YAML texts of models/zoo/*.yaml compiled into the binary.
// plan/'s loader parses them; this header only exposes the texts.
#pragma once

#include <span>

#include "masep/models/embedded.hpp"

namespace masep::models {
/// Built-in model files, in a fixed order. Static storage; nothing to free.
std::span<const masep::EmbeddedFile> builtin_model_files();
}  // namespace masep::models
