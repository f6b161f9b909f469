// Built-in description files compiled into the binary (see cmake/EmbedFiles.cmake), so the
// `masep` command finds the model, topology and scenario zoo without a source checkout.
#pragma once

#include <span>

namespace masep {

/// One embedded text file. All pointers refer to static storage; nothing is owned.
struct EmbeddedFile {
  const char* name;    ///< stem used to refer to it, e.g. "paper-moe"
  const char* origin;  ///< pseudo path used in error messages, e.g. "builtin:paper-moe.yaml"
  const char* text;    ///< the file's YAML text
};

}  // namespace masep
