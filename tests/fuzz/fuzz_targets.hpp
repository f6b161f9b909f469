// Fuzz targets: one per reader of user input (issue 21). Each takes arbitrary bytes and runs
// them through masep's own reader exactly as a file would be: an accepted input and one
// refused with an exception (InputError and the other std::exception types) are both
// expected outcomes; a crash, a sanitizer report, a hang or unbounded memory is a finding.
// Used by the built-in mutation driver (fuzz_main.cpp, run by ctest) and by libFuzzer
// (fuzz_libfuzzer.cpp, clang only).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace masep::fuzz {

enum class Reader {
  kScenario,     ///< plan::parse_scenario, then plan_memory (plans of <= 4,096 GPUs)
  kCalibration,  ///< plan::parse_calibration + validate_calibration
  kSweep,        ///< plan::parse_sweep
  kTrace,        ///< plan::parse_trace + compare_traces(t, t)
  kProgram,      ///< plan::read_program_json, then exec::build_rank_plan of every rank
                 ///< (what `masep exec --program` runs: the executor's CPU lowering)
  kRouting,      ///< plan::parse_routing_trace (workload.routing kind: trace), then every
                 ///< record read back through RoutingTrace::tokens and probabilities
};

std::optional<Reader> reader_named(std::string_view name);
const char* name_of(Reader r);

/// Tokens worth inserting for this reader (keys, indicators, extreme numbers).
std::span<const std::string_view> dictionary(Reader r);

/// Runs one input. Returns true when the reader accepted it, false when it refused it with
/// a std::exception; anything else propagates (the driver reports it as a finding).
bool run_one(Reader r, std::string_view input);

}  // namespace masep::fuzz
