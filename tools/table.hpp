// A plain-text table for the terminal: columns sized to their widest cell, text columns
// left-aligned and number columns right-aligned. Used by sim, sweep, collective and paper.
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace masep::tools {

class Table {
 public:
  enum Align { kLeft, kRight };

  /// Adds a column with a header and alignment (numbers: kRight).
  void column(std::string header, Align align = kRight) {
    headers_.push_back(std::move(header));
    align_.push_back(align);
  }
  /// Adds a row; missing cells print empty, extra cells are an error of the caller (dropped).
  void row(std::vector<std::string> cells) {
    cells.resize(headers_.size());
    rows_.push_back(std::move(cells));
  }
  /// Prints header, a rule and the rows, each line indented by `indent` spaces.
  void print(FILE* out, int indent = 2) const {
    std::vector<size_t> width(headers_.size());
    for (size_t c = 0; c < headers_.size(); ++c) {
      width[c] = display_width(headers_[c]);
      for (const auto& r : rows_) width[c] = std::max(width[c], display_width(r[c]));
    }
    auto line = [&](const std::vector<std::string>& cells) {
      std::string s(static_cast<size_t>(indent), ' ');
      for (size_t c = 0; c < cells.size(); ++c) {
        const size_t pad = width[c] - display_width(cells[c]);
        if (c) s += "  ";
        if (align_[c] == kRight) s.append(pad, ' ');
        s += cells[c];
        if (align_[c] == kLeft && c + 1 < cells.size()) s.append(pad, ' ');
      }
      while (!s.empty() && s.back() == ' ') s.pop_back();
      std::fprintf(out, "%s\n", s.c_str());
    };
    line(headers_);
    size_t total = 0;
    for (size_t c = 0; c < width.size(); ++c) total += width[c] + (c ? 2 : 0);
    std::fprintf(out, "%s%s\n", std::string(static_cast<size_t>(indent), ' ').c_str(),
                 std::string(total, '-').c_str());
    for (const auto& r : rows_) line(r);
  }

 private:
  // Counts UTF-8 code points (µ, ×, − take one column each).
  static size_t display_width(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  }

  std::vector<std::string> headers_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace masep::tools
