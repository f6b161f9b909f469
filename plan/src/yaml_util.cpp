#include "yaml_util.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <system_error>

namespace masep::plan::detail {

// ---- LoadContext -------------------------------------------------------------------------

void LoadContext::add_override(const std::string& path, const std::string& file) {
  overrides_.emplace_back(path, file);
}

namespace {
bool is_under(const std::string& path, const std::string& prefix) {
  if (path == prefix) return true;
  if (path.size() <= prefix.size() || path.compare(0, prefix.size(), prefix) != 0) return false;
  const char c = path[prefix.size()];
  return c == '.' || c == '[';
}
}  // namespace

bool LoadContext::overridden(const std::string& path, const std::string& file) const {
  return std::any_of(overrides_.begin(), overrides_.end(),
                     [&](const auto& o) { return o.second == file && is_under(path, o.first); });
}

Location LoadContext::locate(const YAML::Node& node, const YAML::Mark& m, const std::string& file,
                             const std::string& path) const {
  // Values set by --set (or maps created to hold them) have no place in any file.
  if (overridden(path, file)) return {kOverrideOrigin, 0, 0};
  if (!node.IsDefined()) return {file, 0, 0};
  if (m.is_null()) return {kOverrideOrigin, 0, 0};
  return {file, m.line + 1, m.column + 1};
}

void LoadContext::record(const std::string& path, const Location& where) { where_[path] = where; }

std::optional<Location> LoadContext::lookup(const std::string& path) const {
  std::string p = path;
  while (!p.empty()) {
    if (auto it = where_.find(p); it != where_.end()) return it->second;
    const auto cut = p.find_last_of(".[");
    if (cut == std::string::npos) break;
    p.resize(cut);
  }
  return std::nullopt;
}

void LoadContext::set_subtree_file(const std::string& path, const std::string& file) {
  subtree_files_[path] = file;
}

std::optional<std::string> LoadContext::subtree_file(const std::string& path) const {
  if (auto it = subtree_files_.find(path); it != subtree_files_.end()) return it->second;
  return std::nullopt;
}

void LoadContext::drop_subtrees_under(const std::string& path) {
  for (auto it = subtree_files_.begin(); it != subtree_files_.end();) {
    it = is_under(it->first, path) ? subtree_files_.erase(it) : std::next(it);
  }
}

// ---- helpers -----------------------------------------------------------------------------

std::string join_key(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : parent + "." + key;
}

std::string index_key(const std::string& parent, std::size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

std::string join_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

namespace {
std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// Describes a node that has the wrong shape: "'abc'", "a mapping", "nothing".
std::string describe(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "nothing";
  if (n.IsMap()) return "a mapping";
  if (n.IsSequence()) return "a sequence";
  return "'" + n.Scalar() + "'";
}
}  // namespace

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  const std::string w = lower(word);
  const std::size_t limit = w.size() <= 4 ? 1 : (w.size() <= 8 ? 2 : 3);
  std::string best;
  std::size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(w, lower(c));
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

namespace {

// yaml-cpp recurses once per nesting level and reports a document nested too deeply as a
// "bad file"; masep's files nest a few levels. Refuse deep nesting first, at its place:
// flow brackets ([ {) deeper than kMaxFlowDepth, or a line whose indentation (spaces and
// block-sequence dashes) is longer than kMaxIndent, which bounds block nesting.
constexpr int kMaxFlowDepth = 64;
constexpr int kMaxIndent = 256;

// Anchors and aliases let a small file expand to an exponentially large value (a "billion
// laughs" document); masep's files never need them.
[[noreturn]] void fail_alias(const std::string& origin, int line, int col) {
  throw InputError(origin, line, col, "",
                   "YAML anchors and aliases (& and *) are not accepted in masep files");
}

void check_nesting(const std::string& text, const std::string& origin) {
  char prev_sig = '\n';  // last character that is not a space (a newline at the start)
  int depth = 0, line = 1, col = 0;
  bool at_line_start = true;
  int indent = 0;
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    ++col;
    if (c == '\n') {
      ++line;
      col = 0;
      at_line_start = true;
      indent = 0;
      if (quote == '\'') quote = 0;  // keep it simple: quotes do not span lines here
      continue;
    }
    if (at_line_start) {
      if (c == ' ' || c == '-' || c == '\t') {
        prev_sig = c == '-' ? '-' : prev_sig;
        if (++indent > kMaxIndent) {
          throw InputError(origin, line, col, "",
                           "nested or indented deeper than " + std::to_string(kMaxIndent) +
                               " columns; masep files nest a few levels");
        }
        continue;
      }
      at_line_start = false;
      if (c == '*' || c == '&') fail_alias(origin, line, col);
    }
    if (quote != 0) {
      if (c == quote)
        quote = 0;
      else if (c == '\\' && quote == '"')
        ++i;
      continue;
    }
    if (c == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t')) {
      while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
      continue;
    }
    if ((c == '*' || c == '&') &&
        (std::strchr("[,{", prev_sig) != nullptr ||
         (text[i - 1] == ' ' && std::strchr(":-?", prev_sig) != nullptr))) {
      fail_alias(origin, line, col);
    }
    if (c != ' ' && c != '\t') prev_sig = c;
    if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxFlowDepth) {
        throw InputError(origin, line, col, "",
                         "brackets nested deeper than " + std::to_string(kMaxFlowDepth) +
                             " levels; masep files nest a few levels");
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

}  // namespace

YAML::Node parse_yaml(const std::string& text, const std::string& origin) {
  check_nesting(text, origin);
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    const int line = e.mark.is_null() ? 0 : e.mark.line + 1;
    const int col = e.mark.is_null() ? 0 : e.mark.column + 1;
    throw InputError(origin, line, col, "", "YAML syntax error: " + e.msg);
  }
}

// ---- Field -------------------------------------------------------------------------------

Field::Field(LoadContext& ctx, std::string file, YAML::Node node, std::string path)
    : ctx_(&ctx), file_(std::move(file)), node_(std::move(node)), path_(std::move(path)) {
  mark_ = node_.IsDefined() ? node_.Mark() : YAML::Mark::null_mark();
  ctx_->record(path_, location());
}

Field::Field(LoadContext& ctx, std::string file, YAML::Node node, std::string path, YAML::Mark mark)
    : ctx_(&ctx),
      file_(std::move(file)),
      node_(std::move(node)),
      path_(std::move(path)),
      mark_(mark) {
  ctx_->record(path_, location());
}

void Field::fail(const std::string& message) const {
  const Location l = location();
  throw InputError(l.file, l.line, l.column, path_, message);
}

void Field::fail_choice(const std::string& got, const std::vector<std::string>& names) const {
  std::string msg = "unknown value '" + got + "'";
  if (const auto near = closest_match(got, names); !near.empty()) {
    msg += " (did you mean '" + near + "'?)";
  }
  fail(msg + "; accepted: " + join_list(names));
}

int64_t Field::integer() const {
  if (!node_.IsScalar()) fail("expected an integer, got " + describe(node_));
  const std::string& s = node_.Scalar();
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc::result_out_of_range) fail("integer '" + s + "' is out of range");
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
    fail("expected an integer, got '" + s + "'");
  }
  return v;
}

int Field::positive_int() const {
  const int64_t v = integer();
  if (v <= 0) fail("must be positive, got " + std::to_string(v));
  if (v > INT_MAX) fail("too large: " + std::to_string(v));
  return static_cast<int>(v);
}

int Field::count(int64_t max) const {
  const int64_t v = integer();
  if (v <= 0) fail("must be positive, got " + std::to_string(v));
  if (v > max || v > INT_MAX) {
    fail(std::to_string(v) + " is more than masep accepts here (at most " + std::to_string(max) +
         "; docs/schema.md, Ranges)");
  }
  return static_cast<int>(v);
}

int Field::nonnegative_int() const {
  const int64_t v = integer();
  if (v < 0) fail("must not be negative, got " + std::to_string(v));
  if (v > INT_MAX) fail("too large: " + std::to_string(v));
  return static_cast<int>(v);
}

uint64_t Field::unsigned_integer() const {
  if (!node_.IsScalar()) fail("expected a non-negative integer, got " + describe(node_));
  const std::string& s = node_.Scalar();
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc::result_out_of_range) fail("integer '" + s + "' is out of range");
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
    fail("expected a non-negative integer, got '" + s + "'");
  }
  return v;
}

double Field::number() const {
  if (!node_.IsScalar()) fail("expected a number, got " + describe(node_));
  const std::string& s = node_.Scalar();
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty() || !std::isfinite(v)) {
    fail("expected a number, got '" + s + "'");
  }
  return v;
}

double Field::positive_number() const {
  const double v = number();
  if (!(v > 0)) fail("must be positive, got " + node_.Scalar());
  return v;
}

double Field::nonnegative_number() const {
  const double v = number();
  if (v < 0) fail("must not be negative, got " + node_.Scalar());
  return v;
}

double Field::number_in(const Range& range) const {
  const double v = number();
  if (range.lo > 0 && v <= 0) fail("must be positive, got " + node_.Scalar());
  if (range.lo == 0 && v < 0) fail("must not be negative, got " + node_.Scalar());
  if (!(v >= range.lo && v <= range.hi)) {
    char lo[32], hi[32];
    std::snprintf(lo, sizeof lo, "%g", range.lo);
    std::snprintf(hi, sizeof hi, "%g", range.hi);
    fail(node_.Scalar() + " is outside the accepted range [" + lo + ", " + hi + "] " + range.unit +
         " (docs/schema.md, Ranges)");
  }
  return v;
}

std::string Field::string() const {
  if (!node_.IsScalar()) fail("expected a string, got " + describe(node_));
  if (node_.Scalar().empty()) fail("must not be empty");
  return node_.Scalar();
}

bool Field::boolean() const {
  if (!node_.IsScalar()) fail("expected true or false, got " + describe(node_));
  const std::string& s = node_.Scalar();
  if (s == "true") return true;
  if (s == "false") return false;
  fail("expected true or false, got '" + s + "'");
}

std::vector<std::pair<std::string, Field>> Field::entries() const {
  if (!node_.IsMap()) fail("expected a mapping, got " + describe(node_));
  std::vector<std::pair<std::string, Field>> out;
  std::set<std::string> seen;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    const YAML::Node k = it->first;
    if (!k.IsScalar()) Field(*ctx_, file_, k, path_).fail("keys must be plain names");
    const std::string key = k.Scalar();
    const std::string path = join_key(path_, key);
    if (!seen.insert(key).second) Field(*ctx_, file_, k, path).fail("duplicate key");
    const YAML::Node v = it->second;
    // A null value (`key:`) has no mark of its own: locate it at its key.
    out.emplace_back(
        key, v.IsNull() ? Field(*ctx_, file_, v, path, k.Mark()) : Field(*ctx_, file_, v, path));
  }
  return out;
}

std::vector<Field> Field::items() const {
  if (!node_.IsSequence()) fail("expected a sequence, got " + describe(node_));
  std::vector<Field> out;
  for (std::size_t i = 0; i < node_.size(); ++i) {
    out.emplace_back(*ctx_, file_, node_[i], index_key(path_, i));
  }
  return out;
}

MapReader Field::map(std::vector<std::string> allowed) const {
  return MapReader(*this, std::move(allowed));
}

// ---- MapReader ---------------------------------------------------------------------------

MapReader::MapReader(const Field& self, std::vector<std::string> allowed)
    : self_(self), allowed_(std::move(allowed)) {
  const YAML::Node& n = self_.node();
  if (!n.IsMap()) self_.fail("expected a mapping, got " + describe(n));
  std::set<std::string> seen;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const YAML::Node k = it->first;  // a copy: it-> yields a temporary proxy
    if (!k.IsScalar()) {
      Field(self_.context(), self_.file(), k, self_.path()).fail("keys must be plain names");
    }
    const std::string key = k.Scalar();
    const Field at(self_.context(), self_.file(), k, join_key(self_.path(), key));
    if (std::find(allowed_.begin(), allowed_.end(), key) == allowed_.end()) {
      std::string msg = "unknown key";
      if (const auto near = closest_match(key, allowed_); !near.empty()) {
        msg += " (did you mean '" + near + "'?)";
      }
      at.fail(msg + "; accepted here: " + join_list(allowed_));
    }
    if (!seen.insert(key).second) at.fail("duplicate key");
  }
}

bool MapReader::has(const std::string& key) const {
  const YAML::Node& n = self_.node();
  return static_cast<bool>(n[key]);
}

std::optional<Field> MapReader::find(const std::string& key) const {
  const YAML::Node& n = self_.node();  // const access: never inserts
  const YAML::Node v = n[key];
  if (!v) return std::nullopt;
  if (v.IsNull()) {
    // `key:` with no value: yaml-cpp marks the null at the next token; point at the key.
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == key) {
        return Field(self_.context(), self_.file(), v, join_key(self_.path(), key),
                     it->first.Mark());
      }
    }
  }
  return Field(self_.context(), self_.file(), v, join_key(self_.path(), key));
}

Field MapReader::get(const std::string& key) const {
  if (auto f = find(key)) return *f;
  fail_key(key, "missing required key");
}

void MapReader::fail_key(const std::string& key, const std::string& message) const {
  const Location l = self_.location();
  throw InputError(l.file, l.line, l.column, join_key(self_.path(), key), message);
}

}  // namespace masep::plan::detail
