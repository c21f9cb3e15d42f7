// SPDX-License-Identifier: Apache-2.0
#pragma once
// Private to the catalog layer: strict, location-aware reading of profile YAML.

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

namespace moesim::catalog::detail {

/** What a numeric profile value may be. Checked when it is read; a violation is an InputError. */
enum class Range {
  any,
  positive,      ///< > 0
  non_negative,  ///< >= 0 (powers, latencies)
  fraction,      ///< 0..1 (CFE shares)
  at_least_one,  ///< >= 1 (PUE)
};

/** A number read from `key: {value: X, source: "citation"}`. */
struct Sourced {
  double value = 0.0;
  std::string source;
};

/** A list of integers read from `key: {value: [a, b], source: "citation"}`. */
struct SourcedInts {
  std::vector<int> value;
  std::string source;
};

/** Reads one YAML mapping of a profile file. The constructor rejects keys outside `allowed` (naming
 *  the closest allowed key); every accessor throws moesim::InputError with file:line:column, the key
 *  path and what was expected. Numbers must carry a non-empty source. */
class MapReader {
 public:
  MapReader(YAML::Node node, std::string file, std::string path, const std::vector<std::string>& allowed);

  bool has(const std::string& key) const;
  YAML::Node node(const std::string& key) const;
  const YAML::Node& self() const { return node_; }
  const std::string& file() const { return file_; }
  /** "path.key" (or "key" at the top level), used in error messages and `sources`. */
  std::string path_of(const std::string& key) const;

  std::string required_string(const std::string& key) const;
  std::optional<std::string> optional_string(const std::string& key) const;
  /** A bare scalar that must be one of `allowed` (enum-like fields such as kind, dispatch). */
  std::string required_choice(const std::string& key, const std::vector<std::string>& allowed) const;

  Sourced required_number(const std::string& key, Range range) const;
  std::optional<Sourced> optional_number(const std::string& key, Range range) const;
  /** As required_number, and the value must be an integer. */
  int required_int(const std::string& key, Range range) const;
  std::optional<int> optional_int(const std::string& key, Range range) const;
  SourcedInts required_int_list(const std::string& key, Range range) const;

  [[noreturn]] void fail(const YAML::Node& at, const std::string& key, const std::string& message) const;

 private:
  Sourced parse_sourced(const YAML::Node& n, const std::string& key, Range range) const;

  YAML::Node node_;
  std::string file_;
  std::string path_;
};

/** Parses `text` as a double; the whole string must be consumed. */
std::optional<double> parse_double(const std::string& text);

/** Throws InputError at `at` for `key`: `message`. */
[[noreturn]] void fail_at(const std::string& file, const YAML::Node& at, const std::string& key,
                          const std::string& message);

/** Loads a YAML file, turning yaml-cpp parse errors into InputError with the file's line/column. */
YAML::Node load_yaml_file(const std::string& file);

}  // namespace moesim::catalog::detail
