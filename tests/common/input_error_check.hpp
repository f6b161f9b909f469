// Small helpers for tests of the scenario reader's errors: edit a YAML text in one place, and
// check that reading it fails with an InputError naming the key, the line and the words.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <stdexcept>
#include <string>

#include "masep/plan/errors.hpp"

namespace masep::plan::testing {

/// `text` with its first `from` replaced by `to`; throws std::logic_error when `from` is
/// absent (a test edit that no longer applies).
inline std::string with(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  if (at == std::string::npos) throw std::logic_error("no " + from);
  return text.replace(at, from.size(), to);
}

/// `read` must throw an InputError at `key`, line `line` of `file` (its message contains
/// "FILE:LINE") whose message contains `words`.
inline void expect_input_error(const std::function<void()>& read, const std::string& file,
                               const std::string& key, int line, const std::string& words) {
  try {
    read();
    ADD_FAILURE() << "expected an error at " << key;
  } catch (const InputError& e) {
    EXPECT_EQ(e.key(), key) << e.what();
    EXPECT_EQ(e.line(), line) << e.what();
    EXPECT_NE(std::string(e.what()).find(file + ":" + std::to_string(line)), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

}  // namespace masep::plan::testing
