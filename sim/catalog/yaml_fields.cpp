// SPDX-License-Identifier: Apache-2.0
#include "yaml_fields.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"

namespace moesim::catalog::detail {

namespace {

std::string range_text(Range range) {
  switch (range) {
    case Range::any: return "a number";
    case Range::positive: return "a number > 0";
    case Range::non_negative: return "a number >= 0";
    case Range::fraction: return "a number in [0, 1]";
    case Range::at_least_one: return "a number >= 1";
  }
  return "a number";
}

bool in_range(double v, Range range) {
  if (!std::isfinite(v)) return false;
  switch (range) {
    case Range::any: return true;
    case Range::positive: return v > 0.0;
    case Range::non_negative: return v >= 0.0;
    case Range::fraction: return v >= 0.0 && v <= 1.0;
    case Range::at_least_one: return v >= 1.0;
  }
  return false;
}

std::string node_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null: return "null";
    case YAML::NodeType::Scalar: return fmt::format("the scalar '{}'", n.Scalar());
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Undefined: return "nothing";
  }
  return "something else";
}

}  // namespace

std::optional<double> parse_double(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const char* begin = text.c_str();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(begin, &end);
  if (end == begin || errno == ERANGE) return std::nullopt;
  while (*end == ' ' || *end == '\t') ++end;
  if (*end != '\0') return std::nullopt;
  return v;
}

void fail_at(const std::string& file, const YAML::Node& at, const std::string& key, const std::string& message) {
  const YAML::Mark mark = at.IsDefined() ? at.Mark() : YAML::Mark::null_mark();
  // yaml-cpp marks are 0-based; InputError wants 1-based (0 = unknown).
  throw InputError(file, mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0, key, message);
}

YAML::Node load_yaml_file(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw InputError(file, 0, 0, "", "cannot open file");
  try {
    return YAML::Load(in);
  } catch (const YAML::Exception& e) {
    throw InputError(file, e.mark.line >= 0 ? e.mark.line + 1 : 0, e.mark.column >= 0 ? e.mark.column + 1 : 0, "",
                     "invalid YAML: " + e.msg);
  }
}

MapReader::MapReader(YAML::Node node, std::string file, std::string path, const std::vector<std::string>& allowed)
    : node_(std::move(node)), file_(std::move(file)), path_(std::move(path)) {
  if (!node_.IsMap()) {
    fail(node_, path_, fmt::format("expected a mapping with keys {}, got {}", text::join(allowed), node_kind(node_)));
  }
  for (const auto& kv : node_) {
    const std::string key = kv.first.Scalar();
    bool known = false;
    for (const auto& a : allowed) known = known || (a == key);
    if (!known) {
      const auto near = text::closest(key, allowed, 1);
      fail(kv.first, path_of(key),
           fmt::format("unknown key{}; allowed keys: {}",
                       near.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", near.front()),
                       text::join(allowed)));
    }
  }
}

std::string MapReader::path_of(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

bool MapReader::has(const std::string& key) const { return static_cast<bool>(node_[key]); }

YAML::Node MapReader::node(const std::string& key) const { return node_[key]; }

void MapReader::fail(const YAML::Node& at, const std::string& key, const std::string& message) const {
  // A key that is absent has no mark of its own: point at the mapping that should hold it.
  fail_at(file_, at.IsDefined() ? at : node_, key, message);
}

std::string MapReader::required_string(const std::string& key) const {
  const auto v = optional_string(key);
  if (!v) fail(node_, path_of(key), "missing required field (expected a string)");
  return *v;
}

std::optional<std::string> MapReader::optional_string(const std::string& key) const {
  const YAML::Node n = node_[key];
  if (!n) return std::nullopt;
  if (!n.IsScalar()) fail(n, path_of(key), fmt::format("expected a string, got {}", node_kind(n)));
  return n.Scalar();
}

std::string MapReader::required_choice(const std::string& key, const std::vector<std::string>& allowed) const {
  const std::string v = required_string(key);
  for (const auto& a : allowed)
    if (a == v) return v;
  fail(node_[key], path_of(key), fmt::format("'{}' is not allowed; expected one of: {}", v, text::join(allowed)));
}

Sourced MapReader::parse_sourced(const YAML::Node& n, const std::string& key, Range range) const {
  const std::string where = path_of(key);
  if (!n.IsMap()) {
    fail(n, where,
         fmt::format("expected {{value: <{}>, source: \"<citation>\"}}, got {}", range_text(range), node_kind(n)));
  }
  for (const auto& kv : n) {
    const std::string k = kv.first.Scalar();
    if (k != "value" && k != "source")
      fail(kv.first, where + "." + k, "unknown key; allowed keys: value, source");
  }
  const YAML::Node value = n["value"];
  if (!value) fail(n, where + ".value", fmt::format("missing value (expected {})", range_text(range)));
  if (!value.IsScalar()) fail(value, where + ".value", fmt::format("expected {}, got {}", range_text(range), node_kind(value)));
  const auto v = parse_double(value.Scalar());
  if (!v) fail(value, where + ".value", fmt::format("expected {}, got '{}'", range_text(range), value.Scalar()));
  if (!in_range(*v, range)) fail(value, where + ".value", fmt::format("expected {}, got {}", range_text(range), value.Scalar()));
  const YAML::Node source = n["source"];
  if (!source || !source.IsScalar() || source.Scalar().empty())
    fail(source ? source : n, where + ".source", "every number needs a non-empty source (citation or derivation)");
  return Sourced{*v, source.Scalar()};
}

Sourced MapReader::required_number(const std::string& key, Range range) const {
  const YAML::Node n = node_[key];
  if (!n) fail(node_, path_of(key), fmt::format("missing required field (expected {{value: <{}>, source: ...}})", range_text(range)));
  return parse_sourced(n, key, range);
}

std::optional<Sourced> MapReader::optional_number(const std::string& key, Range range) const {
  const YAML::Node n = node_[key];
  if (!n) return std::nullopt;
  return parse_sourced(n, key, range);
}

int MapReader::required_int(const std::string& key, Range range) const {
  const Sourced s = required_number(key, range);
  if (std::floor(s.value) != s.value) fail(node_[key]["value"], path_of(key) + ".value", "expected an integer");
  return static_cast<int>(s.value);
}

std::optional<int> MapReader::optional_int(const std::string& key, Range range) const {
  if (!has(key)) return std::nullopt;
  return required_int(key, range);
}

SourcedInts MapReader::required_int_list(const std::string& key, Range range) const {
  const std::string where = path_of(key);
  const YAML::Node n = node_[key];
  if (!n) fail(node_, where, "missing required field (expected {value: [<integers>], source: ...})");
  if (!n.IsMap()) fail(n, where, fmt::format("expected {{value: [<integers>], source: \"<citation>\"}}, got {}", node_kind(n)));
  for (const auto& kv : n) {
    const std::string k = kv.first.Scalar();
    if (k != "value" && k != "source") fail(kv.first, where + "." + k, "unknown key; allowed keys: value, source");
  }
  const YAML::Node value = n["value"];
  if (!value || !value.IsSequence() || value.size() == 0)
    fail(value ? value : n, where + ".value", "expected a non-empty list of integers");
  SourcedInts out;
  for (const auto& item : value) {
    const auto v = item.IsScalar() ? parse_double(item.Scalar()) : std::nullopt;
    if (!v || std::floor(*v) != *v || !in_range(*v, range))
      fail(item, where + ".value", fmt::format("expected integers ({}), got {}", range_text(range), node_kind(item)));
    out.value.push_back(static_cast<int>(*v));
  }
  const YAML::Node source = n["source"];
  if (!source || !source.IsScalar() || source.Scalar().empty())
    fail(source ? source : n, where + ".source", "every number needs a non-empty source (citation or derivation)");
  out.source = source.Scalar();
  return out;
}

}  // namespace moesim::catalog::detail
