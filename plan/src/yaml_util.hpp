// Private to plan/: typed, located access to a YAML tree. Every read knows the file it came
// from and its key path, so any problem becomes an InputError "FILE:LINE:COL: key.path: msg".
// Mappings are read through MapReader, which rejects unknown and duplicate keys up front
// (with a "did you mean" hint), so a typo never falls back to a default silently.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "masep/plan/errors.hpp"
#include "masep/plan/limits.hpp"

namespace masep::plan::detail {

/// Where a value was written. line/column are 1-based; 0 = no single place (e.g. "--set").
struct Location {
  std::string file;
  int line = 0;
  int column = 0;
};

/// The origin used for values that came from command-line overrides.
inline constexpr const char* kOverrideOrigin = "--set";

/// State shared by one load: which key paths were overridden from the command line, which
/// subtrees were spliced in from other files, and where each key path's value was written
/// (so cross-checks made later on plain structs can still point at a line).
class LoadContext {
 public:
  /// Key path `path` of the tree read from `file` was set by --set.
  void add_override(const std::string& path, const std::string& file);
  /// True when `path` (read from `file`) is, or lies under, an overridden key path.
  bool overridden(const std::string& path, const std::string& file) const;
  /// Location of `node` (read from `file`) at key path `path`.
  Location locate(const YAML::Node& node, const YAML::Mark& mark, const std::string& file,
                  const std::string& path) const;
  void record(const std::string& path, const Location& where);
  /// Location recorded for `path`, else for its nearest recorded parent.
  std::optional<Location> lookup(const std::string& path) const;

  /// Subtree at `path` was replaced by the contents of `file` (a reference resolved so an
  /// override could reach inside it).
  void set_subtree_file(const std::string& path, const std::string& file);
  std::optional<std::string> subtree_file(const std::string& path) const;
  void drop_subtrees_under(const std::string& path);

 private:
  std::vector<std::pair<std::string, std::string>> overrides_;  // (path, file)
  std::map<std::string, Location> where_;
  std::map<std::string, std::string> subtree_files_;
};

/// "a" + "b" -> "a.b"; "" + "b" -> "b".
std::string join_key(const std::string& parent, const std::string& key);
/// "a" + 3 -> "a[3]".
std::string index_key(const std::string& parent, std::size_t index);
/// The closest candidate to `word` when it is near enough to be a likely typo, else "".
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);
/// "a, b, c".
std::string join_list(const std::vector<std::string>& items);

class MapReader;

/// One value in the tree: its node, the file it came from and its key path.
class Field {
 public:
  Field(LoadContext& ctx, std::string file, YAML::Node node, std::string path);
  /// Same, located at `mark` instead of the node's own mark (a null value `key:` has no
  /// useful mark of its own; its key's is used).
  Field(LoadContext& ctx, std::string file, YAML::Node node, std::string path, YAML::Mark mark);

  LoadContext& context() const { return *ctx_; }
  const std::string& file() const { return file_; }
  const YAML::Node& node() const { return node_; }
  const std::string& path() const { return path_; }
  Location location() const { return ctx_->locate(node_, mark_, file_, path_); }

  [[noreturn]] void fail(const std::string& message) const;

  bool is_map() const { return node_.IsMap(); }
  bool is_sequence() const { return node_.IsSequence(); }
  bool is_scalar() const { return node_.IsScalar(); }

  int64_t integer() const;
  int positive_int() const;     ///< > 0, fits an int
  int nonnegative_int() const;  ///< >= 0, fits an int
  /// A count in [1, max] (limits.hpp); the error names the limit.
  int count(int64_t max) const;
  uint64_t unsigned_integer() const;
  double number() const;  ///< finite
  double positive_number() const;
  double nonnegative_number() const;
  /// A finite number in [range.lo, range.hi] (limits.hpp); the error gives the range.
  double number_in(const Range& range) const;
  std::string string() const;  ///< a non-empty scalar
  bool boolean() const;        ///< exactly `true` or `false`

  /// A mapping's (key, value) entries in file order, for mappings whose keys are data (e.g.
  /// override key paths): keys must be scalars, duplicates are errors at the second one.
  std::vector<std::pair<std::string, Field>> entries() const;

  /// One of `options` (YAML spelling -> value); the error lists the accepted spellings.
  template <class E>
  E choice(const std::vector<std::pair<std::string, E>>& options) const {
    const std::string s = string();
    std::vector<std::string> names;
    for (const auto& [name, value] : options) {
      if (name == s) return value;
      names.push_back(name);
    }
    fail_choice(s, names);
  }

  /// The elements of a sequence (paths "key[i]").
  std::vector<Field> items() const;
  /// This value as a mapping whose keys must all be in `allowed`.
  MapReader map(std::vector<std::string> allowed) const;

 private:
  [[noreturn]] void fail_choice(const std::string& got,
                                const std::vector<std::string>& names) const;
  LoadContext* ctx_;
  std::string file_;
  YAML::Node node_;
  std::string path_;
  YAML::Mark mark_;
};

/// A mapping whose keys were checked against an allowed list (unknown and duplicate keys
/// are errors). get() of a missing key is a "missing required key" error at the mapping.
class MapReader {
 public:
  MapReader(const Field& self, std::vector<std::string> allowed);

  const Field& self() const { return self_; }
  bool has(const std::string& key) const;
  Field get(const std::string& key) const;
  std::optional<Field> find(const std::string& key) const;
  /// Error at the mapping for key path self.key (for a key that must or must not be there).
  [[noreturn]] void fail_key(const std::string& key, const std::string& message) const;

 private:
  Field self_;
  std::vector<std::string> allowed_;
};

/// Parses YAML text; a syntax error becomes an InputError at its line and column.
YAML::Node parse_yaml(const std::string& text, const std::string& origin);

}  // namespace masep::plan::detail
