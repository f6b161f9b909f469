// libFuzzer entry point (clang only: cmake -DMASEP_FUZZ_LIBFUZZER=ON with clang++; see
// docs/fuzzing.md). One binary per reader, chosen at compile time by MASEP_FUZZ_READER.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto reader = *masep::fuzz::reader_named(MASEP_FUZZ_READER);
  masep::fuzz::run_one(reader, std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
