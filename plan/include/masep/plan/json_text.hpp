// One JSON string escaper for every writer that formats JSON (or YAML, whose double-quoted
// scalars accept JSON's escapes) by hand: traces, metrics, calibration files. Hand-written
// rather than nlohmann::json(s).dump() because the trace writer calls it once per event of
// multi-million-event traces (no allocation here). Appends to a caller-owned buffer.
#pragma once

#include <fmt/format.h>

#include <iterator>
#include <string>
#include <string_view>

namespace masep::plan {

/// Appends `s` as a JSON string literal (quotes included): `"` and `\` escaped, \n and \t
/// as such, other control characters as \u00XX; other bytes (UTF-8 included) as they are.
inline void append_json_string(fmt::memory_buffer& b, std::string_view s) {
  b.push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        b.append(std::string_view("\\\""));
        break;
      case '\\':
        b.append(std::string_view("\\\\"));
        break;
      case '\n':
        b.append(std::string_view("\\n"));
        break;
      case '\t':
        b.append(std::string_view("\\t"));
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          fmt::format_to(std::back_inserter(b), "\\u{:04x}", static_cast<unsigned>(c));
        } else {
          b.push_back(c);
        }
    }
  }
  b.push_back('"');
}

/// `s` as a JSON string literal (see append_json_string).
inline std::string json_quoted(std::string_view s) {
  fmt::memory_buffer b;
  append_json_string(b, s);
  return fmt::to_string(b);
}

}  // namespace masep::plan
