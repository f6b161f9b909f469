// Every scenario file under the source tree's scenarios/ folder (sweep files in scenarios/sweeps
// excepted), sorted: the set the contract, profile-shape and streaming tests walk. Needs
// MASEP_SOURCE_DIR, which masep_add_test defines for every test.
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

namespace masep::testing {

/// Absolute paths, sorted.
inline std::vector<std::string> scenario_files() {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(MASEP_SOURCE_DIR) / "scenarios")) {
    if (!e.is_regular_file() || e.path().extension() != ".yaml") continue;
    if (e.path().parent_path().filename() == "sweeps") continue;
    files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace masep::testing
