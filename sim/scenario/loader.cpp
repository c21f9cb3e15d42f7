// SPDX-License-Identifier: Apache-2.0
// Scenario loading: YAML -> partial JSON (typed, located) -> overlays -> defaults -> cross-field checks
// -> typed Scenario. The field table (fields.cpp) drives the first three steps.
#include "moesim/scenario/loader.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/text.hpp"
#include "moesim/scenario/fields.hpp"
#include "moesim/scenario/sweep.hpp"

namespace moesim::scenario {

namespace {

using nlohmann::json;

/** Where a value came from: a file position, or a command-line override. */
struct Location {
  std::string file;
  int line = 0;    // 1-based; 0 = unknown
  int column = 0;  // 1-based
};

/** Locations of every value by value path ("model.d_model", "placement[0].share"). */
using LocationMap = std::map<std::string, Location>;

std::string join_path(const std::string& a, const std::string& b) { return a.empty() ? b : a + "." + b; }

Location location_of(const std::string& file, const YAML::Mark& m) {
  if (m.is_null()) return {file, 0, 0};
  return {file, m.line + 1, m.column + 1};
}

[[noreturn]] void fail(const Location& loc, const std::string& key, const std::string& message) {
  throw InputError(loc.file, loc.line, loc.column, key, message);
}

/** Location of `path` or of its closest located ancestor. */
Location find_location(const LocationMap& locs, std::string path, const std::string& file) {
  while (true) {
    auto it = locs.find(path);
    if (it != locs.end()) return it->second;
    if (path.empty()) return {file, 1, 1};
    std::size_t cut = path.find_last_of(".[");
    path = cut == std::string::npos ? "" : path.substr(0, cut);
  }
}

std::string allowed_keys(const std::string& spec_path) {
  std::vector<std::string> names;
  for (const FieldSpec* f : children_of(spec_path)) names.push_back(f->path.substr(spec_path.empty() ? 0 : spec_path.size() + 1));
  return text::join(names);
}

std::string scalar_text(const YAML::Node& n) { return n.IsScalar() ? n.Scalar() : std::string("<") + (n.IsMap() ? "mapping" : n.IsSequence() ? "sequence" : "null") + ">"; }

/** Converts YAML to JSON for a free-form subtree (compare alternatives are kept raw in the record).
 *  `path` names the subtree in errors: a mapping key must be a plain name. */
json yaml_to_json(const YAML::Node& n, const std::string& file, const std::string& path) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      json o = json::object();
      for (const auto& kv : n) {
        if (!kv.first.IsScalar())
          fail(location_of(file, kv.first.Mark()), path, fmt::format("a key must be a name, got {}", scalar_text(kv.first)));
        o[kv.first.Scalar()] = yaml_to_json(kv.second, file, join_path(path, kv.first.Scalar()));
      }
      return o;
    }
    case YAML::NodeType::Sequence: {
      json a = json::array();
      std::size_t i = 0;
      for (const auto& v : n) a.push_back(yaml_to_json(v, file, fmt::format("{}[{}]", path, i++)));
      return a;
    }
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      if (n.Tag() == "!") return s;  // quoted
      try {
        std::size_t pos = 0;
        long long i = std::stoll(s, &pos);
        if (pos == s.size()) return i;
      } catch (...) {
      }
      try {
        std::size_t pos = 0;
        double d = std::stod(s, &pos);
        if (pos == s.size()) return d;
      } catch (...) {
      }
      if (s == "true") return true;
      if (s == "false") return false;
      return s;
    }
    default: return nullptr;
  }
}

/** Walks YAML nodes against the field table. Produces a *partial* JSON object: no defaults. */
class Walker {
 public:
  Walker(std::string file, LocationMap& locs) : file_(std::move(file)), locs_(locs) {}

  json section(const YAML::Node& node, const std::string& spec_path, const std::string& value_path) {
    if (!node.IsMap()) {
      fail(location_of(file_, node.Mark()), value_path.empty() ? "<top level>" : value_path,
           fmt::format("expected a mapping with keys ({}), got {}", allowed_keys(spec_path), scalar_text(node)));
    }
    json out = json::object();
    std::map<std::string, Location> seen;  // yaml-cpp accepts repeated keys; YAML 1.2 §3.2.1.1 does not
    for (const auto& kv : node) {
      if (!kv.first.IsScalar())
        fail(location_of(file_, kv.first.Mark()), value_path.empty() ? "<top level>" : value_path,
             fmt::format("a key must be a name, got {}; allowed keys: {}", scalar_text(kv.first), allowed_keys(spec_path)));
      const std::string key = kv.first.Scalar();
      const std::string spec = join_path(spec_path, key);
      const std::string vpath = join_path(value_path, key);
      const Location key_loc = location_of(file_, kv.first.Mark());
      if (auto dup = seen.find(key); dup != seen.end())
        fail(key_loc, vpath, fmt::format("duplicate key (first given at line {}); give each key once", dup->second.line));
      seen.emplace(key, key_loc);
      const FieldSpec* f = find_field(spec);
      if (f == nullptr) {
        std::vector<std::string> names;
        for (const FieldSpec* c : children_of(spec_path))
          names.push_back(c->path.substr(spec_path.empty() ? 0 : spec_path.size() + 1));
        auto close = text::closest(key, names, 1);
        std::string hint = close.empty() || !text::likely_typo(key, close[0]) ? "" : fmt::format(" (did you mean '{}'?)", close[0]);
        fail(location_of(file_, kv.first.Mark()), vpath,
             fmt::format("unknown key{}; allowed {}: {}", hint, spec_path.empty() ? "at top level" : "in '" + spec_path + "'",
                         text::join(names)));
      }
      if (kv.second.IsNull()) {
        // `key:` or `key: ~` = not set: in a file it is left out (finish strips it); over another document (--set
        // KEY=null, an alternative's `key: ~`) it removes the key there (deep_merge).
        out[key] = nullptr;
        continue;
      }
      locs_[vpath] = location_of(file_, kv.second.Mark());
      out[key] = value(kv.second, *f, vpath);
    }
    return out;
  }

  json value(const YAML::Node& n, const FieldSpec& f, const std::string& vpath) {
    const Location loc = location_of(file_, n.Mark());
    auto expect_scalar = [&](const char* what) {
      if (!n.IsScalar()) fail(loc, vpath, fmt::format("expected {}, got {}", what, scalar_text(n)));
    };
    switch (f.type) {
      case FieldType::integer: {
        expect_scalar("an integer");
        return integer(n, f, vpath, loc);
      }
      case FieldType::number: {
        expect_scalar("a number");
        return number(n, f, vpath, loc);
      }
      case FieldType::string: {
        expect_scalar("a string");
        return n.Scalar();
      }
      case FieldType::boolean: {
        expect_scalar("true or false");
        bool b = false;
        if (!YAML::convert<bool>::decode(n, b)) fail(loc, vpath, fmt::format("expected true or false, got '{}'", n.Scalar()));
        return b;
      }
      case FieldType::choice: {
        expect_scalar("a name");
        const std::string& s = n.Scalar();
        for (const auto& c : f.choices)
          if (c == s) return s;
        auto close = text::closest(s, f.choices, 1);
        fail(loc, vpath, fmt::format("'{}' is not allowed{}; allowed: {}", s,
                                     close.empty() || !text::likely_typo(s, close[0]) ? "" : fmt::format(" (did you mean '{}'?)", close[0]),
                                     text::join(f.choices)));
      }
      case FieldType::number_list:
      case FieldType::integer_list: {
        if (!n.IsSequence()) fail(loc, vpath, fmt::format("expected a list, got {}", scalar_text(n)));
        json a = json::array();
        std::size_t i = 0;
        for (const auto& item : n) {
          const std::string ipath = fmt::format("{}[{}]", vpath, i++);
          const Location iloc = location_of(file_, item.Mark());
          if (!item.IsScalar()) fail(iloc, ipath, "expected a number");
          a.push_back(f.type == FieldType::integer_list ? integer(item, f, ipath, iloc) : number(item, f, ipath, iloc));
        }
        return a;
      }
      case FieldType::section: return section(n, f.path, vpath);
      case FieldType::section_list: {
        if (!n.IsSequence()) fail(loc, vpath, fmt::format("expected a list of mappings, got {}", scalar_text(n)));
        json a = json::array();
        std::size_t i = 0;
        for (const auto& item : n) {
          const std::string ipath = fmt::format("{}[{}]", vpath, i++);
          locs_[ipath] = location_of(file_, item.Mark());
          a.push_back(section(item, f.path + "[]", ipath));
        }
        return a;
      }
      case FieldType::string_or_section: {
        if (n.IsScalar()) return n.Scalar();
        return section(n, f.path, vpath);
      }
      case FieldType::overlay_list: {
        if (!n.IsSequence()) fail(loc, vpath, "expected a list of alternatives (mappings with a label)");
        std::size_t i = 0;
        for (const auto& item : n) {
          const std::string ipath = fmt::format("{}[{}]", vpath, i++);
          const Location iloc = location_of(file_, item.Mark());
          if (!item.IsMap() || !item["label"] || !item["label"].IsScalar())
            fail(iloc, ipath, "each alternative must be a mapping with a `label:` and the keys it overrides");
        }
        return yaml_to_json(n, file_, vpath);
      }
      case FieldType::value_list: {
        if (!n.IsSequence()) fail(loc, vpath, fmt::format("expected a list, got {}", scalar_text(n)));
        return yaml_to_json(n, file_, vpath);
      }
    }
    fail(loc, vpath, "unsupported field type");
  }

 private:
  void check_range(double v, const FieldSpec& f, const std::string& vpath, const Location& loc) {
    if (f.min && (f.min_exclusive ? !(v > *f.min) : !(v >= *f.min)))
      fail(loc, vpath, fmt::format("{} is out of range: must be {} {}", v, f.min_exclusive ? ">" : ">=", *f.min));
    if (f.max && !(v <= *f.max))
      fail(loc, vpath, fmt::format("{} is out of range: must be <= {}{}", v, *f.max,
                                   f.max_note.empty() ? "" : " (" + f.max_note + ")"));
  }

  /** The whole of `s` as a double (std::stod's syntax); false when it is not one. */
  static bool parse_double(const std::string& s, double& d) {
    try {
      std::size_t pos = 0;
      d = std::stod(s, &pos);
      return pos == s.size();
    } catch (...) {
      return false;
    }
  }

  json integer(const YAML::Node& n, const FieldSpec& f, const std::string& vpath, const Location& loc) {
    const std::string& s = n.Scalar();
    double d = 0.0;
    const bool ok = parse_double(s, d);
    if (!ok || !std::isfinite(d) || d != std::floor(d))
      fail(loc, vpath, fmt::format("expected an integer, got '{}'", s));
    if (std::fabs(d) > static_cast<double>(std::numeric_limits<int>::max()))
      fail(loc, vpath, fmt::format("{} is too large for an integer field", s));
    check_range(d, f, vpath, loc);
    return static_cast<long long>(d);
  }

  json number(const YAML::Node& n, const FieldSpec& f, const std::string& vpath, const Location& loc) {
    const std::string& s = n.Scalar();
    double d = 0.0;
    const bool ok = parse_double(s, d);
    if (!ok || !std::isfinite(d)) fail(loc, vpath, fmt::format("expected a number, got '{}'", s));
    check_range(d, f, vpath, loc);
    return d;
  }

  std::string file_;
  LocationMap& locs_;
};

/** Drops the keys whose value is null (not set), in every object and list. */
void strip_nulls(json& j) {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end();) {
      if (it->is_null()) {
        it = j.erase(it);
      } else {
        strip_nulls(*it);
        ++it;
      }
    }
  } else if (j.is_array()) {
    for (auto& v : j) strip_nulls(v);
  }
}

/** Forgets the source locations of `path` and of everything under it (the checks treat a located key as given). */
void forget_locations(LocationMap& locs, const std::string& path) {
  for (auto l = locs.lower_bound(path); l != locs.end() && l->first.compare(0, path.size(), path) == 0;) {
    const char next = l->first.size() > path.size() ? l->first[path.size()] : '\0';
    l = next == '\0' || next == '.' || next == '[' ? locs.erase(l) : std::next(l);
  }
}

/** Objects merge key by key; everything else (lists, scalars) is replaced. A mapping that names a different `type:`
 *  than the one it overlays replaces it whole: a registry entry of another type (an arrival process, a length
 *  distribution, a scheduler, a topology) has other keys, and the old type's would be refused as not used by it.
 *  The replaced keys' source locations go too. The overlay's objects above depth `path_depth` (the root is depth 0)
 *  are not mappings anyone wrote but the path of a dotted override (`a.b.type=x` is {a: {b: {type: x}}}, depth 3):
 *  they always merge key by key, so that setting one key, `type` included, keeps its siblings (a sibling the new
 *  type does not use is then refused by the resolver, at its location). */
void deep_merge(json& base, const json& overlay, LocationMap& locs, const std::string& path = "", std::size_t path_depth = 0,
                std::size_t depth = 0) {
  if (depth >= path_depth && base.is_object() && overlay.is_object() && base.contains("type") && overlay.contains("type") &&
      base["type"] != overlay["type"]) {
    for (const auto& [key, value] : base.items())
      if (!overlay.contains(key)) forget_locations(locs, join_path(path, key));
    base = overlay;
    return;
  }
  if (!base.is_object() || !overlay.is_object()) {
    base = overlay;
    return;
  }
  for (auto it = overlay.begin(); it != overlay.end(); ++it) {
    const std::string key_path = join_path(path, it.key());
    if (it.value().is_null()) {
      // KEY=null removes the key (back to its default, or absent), with its locations.
      base.erase(it.key());
      forget_locations(locs, key_path);
      continue;
    }
    if (base.contains(it.key()) && base[it.key()].is_object() && it.value().is_object())
      deep_merge(base[it.key()], it.value(), locs, key_path, path_depth, depth + 1);
    else
      base[it.key()] = it.value();
  }
}

/** Fills defaults and checks required keys, recursively, on the merged JSON. */
void fill_defaults(json& obj, const std::string& spec_path, const std::string& value_path, const LocationMap& locs,
                   const std::string& file) {
  for (const FieldSpec* f : children_of(spec_path)) {
    const std::string key = f->path.substr(spec_path.empty() ? 0 : spec_path.size() + 1);
    const std::string vpath = join_path(value_path, key);
    if (!obj.contains(key)) {
      if (f->required)
        fail(find_location(locs, value_path, file), vpath,
             fmt::format("missing required key ({}){}", f->help,
                         spec_path.empty() ? "" : fmt::format("; keys of '{}': {}", spec_path, allowed_keys(spec_path))));
      if (!f->default_value.is_null()) obj[key] = f->default_value;
    }
    if (!obj.contains(key)) continue;
    json& v = obj[key];
    if (f->type == FieldType::section || (f->type == FieldType::string_or_section && v.is_object())) {
      fill_defaults(v, f->path, vpath, locs, file);
    } else if (f->type == FieldType::section_list) {
      for (std::size_t i = 0; i < v.size(); ++i) fill_defaults(v[i], f->path + "[]", fmt::format("{}[{}]", vpath, i), locs, file);
    }
  }
}

/** Bounds on a document's size once its aliases are expanded. yaml-cpp shares an aliased node, but every
 *  walk of the document (the field walker, compare alternatives, the stored JSON) copies it per use, so a
 *  few nested aliases ("billion laughs") would cost gigabytes. The largest shipped scenario expands to a few
 *  thousand nodes. */
constexpr std::size_t kMaxExpandedNodes = 200000;
constexpr std::size_t kMaxExpandedScalarBytes = 16u << 20;  // 16 MiB of scalar text

/** Parser events -> expanded node count and scalar bytes per anchor; throws a located InputError at the
 *  alias that takes the document past the bounds above, or that refers to a node it is part of (a cycle). */
class ExpansionBound : public YAML::EventHandler {
 public:
  explicit ExpansionBound(std::string file) : file_(std::move(file)) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor, 1, 0, ""); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, const std::string& value) override {
    leaf(mark, anchor, 1, value.size(), value);
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    auto it = sizes_.find(anchor);
    if (it == sizes_.end())
      throw InputError(file_, mark.line + 1, mark.column + 1, path(),
                       "an alias refers to the node that contains it (a cycle); write the value out instead");
    leaf(mark, 0, it->second.first, it->second.second, "<alias>");
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(mark, anchor, false);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(mark, anchor, true);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    bool map = false;
    bool want_key = true;   // map: the next node is a key
    bool is_key = false;    // this collection is itself a mapping key
    std::string key;        // map: the current key
    std::size_t index = 0;  // sequence: the current item
    YAML::anchor_t anchor = 0;
    std::size_t nodes_at_start = 0, bytes_at_start = 0;
  };

  /** The key path of the current position ("compare[2].model"), for the error. */
  std::string path() const {
    std::string p;
    for (const auto& f : stack_) {
      if (f.map && !f.key.empty()) p += (p.empty() ? "" : ".") + f.key;
      if (!f.map) p += fmt::format("[{}]", f.index);
    }
    return p;
  }
  bool next_is_key() const { return !stack_.empty() && stack_.back().map && stack_.back().want_key; }
  void value_done() {
    if (stack_.empty()) return;
    if (stack_.back().map)
      stack_.back().want_key = true;
    else
      ++stack_.back().index;
  }
  void add(const YAML::Mark& mark, std::size_t nodes, std::size_t bytes) {
    nodes_ += nodes;
    bytes_ += bytes;
    if (nodes_ > kMaxExpandedNodes || bytes_ > kMaxExpandedScalarBytes)
      throw InputError(file_, mark.line + 1, mark.column + 1, path(),
                       fmt::format("the document expands to more than {} nodes or {} MiB of text once its aliases (*name) "
                                   "are expanded; a scenario is far smaller: use fewer or less deeply nested aliases",
                                   kMaxExpandedNodes, kMaxExpandedScalarBytes >> 20));
  }
  void leaf(const YAML::Mark& mark, YAML::anchor_t anchor, std::size_t nodes, std::size_t bytes, const std::string& text) {
    const bool key = next_is_key();
    if (key) {
      stack_.back().key = text;
      stack_.back().want_key = false;
    }
    add(mark, nodes, bytes);
    if (anchor != 0) sizes_[anchor] = {nodes, bytes};
    if (!key) value_done();
  }
  void open(const YAML::Mark& mark, YAML::anchor_t anchor, bool map) {
    Frame f;
    f.map = map;
    f.is_key = next_is_key();
    if (f.is_key) {
      stack_.back().key = map ? "<mapping>" : "<sequence>";
      stack_.back().want_key = false;
    }
    f.anchor = anchor;
    f.nodes_at_start = nodes_;
    f.bytes_at_start = bytes_;
    add(mark, 1, 0);
    stack_.push_back(std::move(f));
  }
  void close() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.anchor != 0) sizes_[f.anchor] = {nodes_ - f.nodes_at_start, bytes_ - f.bytes_at_start};
    if (!f.is_key) value_done();
  }

  std::string file_;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, std::pair<std::size_t, std::size_t>> sizes_;  // anchor -> (nodes, scalar bytes)
  std::size_t nodes_ = 0, bytes_ = 0;
};

InputError yaml_error(const std::string& file, const YAML::Exception& e, const std::string& what) {
  return InputError(file, e.mark.is_null() ? 0 : e.mark.line + 1, e.mark.is_null() ? 0 : e.mark.column + 1, "",
                    what + e.msg);
}

YAML::Node parse_yaml(const std::string& text, const std::string& file) {
  try {
    {
      std::istringstream in(text);
      YAML::Parser parser(in);
      ExpansionBound bound(file);
      parser.HandleNextDocument(bound);  // only the first document is read, as by YAML::Load
    }
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw yaml_error(file, e, "YAML syntax error: ");
  }
}

std::string read_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw InputError(path, 0, 0, "", "is a directory; give a scenario YAML file (e.g. scenarios/quickstart.yaml)");
  std::ifstream in(path);
  if (!in) throw Error(fmt::format("cannot read scenario file '{}': no such file or not readable", path));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError(path, 0, 0, "", "cannot be read (I/O error)");
  return ss.str();
}

json walk_override_as(const std::string& expr, LocationMap& locs, const std::string& label);

/** Merges the overlay of the dotted override `expr` ("a.b.c=value"): its path's objects merge key by key (deep_merge's
 *  path_depth is the number of keys in the path), a mapping given as the value may replace one of another type. */
void merge_override(json& doc, const json& overlay, LocationMap& locs, const std::string& expr) {
  const std::string key = expr.substr(0, expr.find('='));
  deep_merge(doc, overlay, locs, "", static_cast<std::size_t>(std::count(key.begin(), key.end(), '.')) + 1);
}

/** Turns "a.b.c=value" into a partial JSON (walked, so typed and checked) and its locations. `origin`, when not
 *  empty, names where the override came from instead of "--set EXPR" (a sweep point of a file): its values and
 *  errors then carry that name and no line or column (the value's position in its one-line text would be a
 *  made-up location). */
json walk_override(const std::string& expr, LocationMap& locs, const std::string& origin = "") {
  if (origin.empty()) return walk_override_as(expr, locs, "--set " + expr);
  LocationMap mine;
  json out;
  try {
    out = walk_override_as(expr, mine, origin);
  } catch (const InputError& e) {
    throw InputError(origin, 0, 0, e.key(), e.message());
  }
  for (auto& [path, loc] : mine) locs[path] = {origin, 0, 0};
  return out;
}

json walk_override_as(const std::string& expr, LocationMap& locs, const std::string& label) {
  auto eq = expr.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError(label, 0, 0, "", "expected KEY.PATH=VALUE, e.g. cluster.count=2048");
  std::string path = expr.substr(0, eq);
  const std::string text = expr.substr(eq + 1);
  YAML::Node value = parse_yaml(text, label);
  // yaml-cpp reads some texts that are no YAML value at all (",,,", ", a": a flow indicator first) as null, which
  // would silently remove the key; only the spellings of null (and nothing) remove it.
  if (value.IsNull()) {
    const auto b = text.find_first_not_of(" \t"), e = text.find_last_not_of(" \t");
    const std::string word = b == std::string::npos ? std::string() : text.substr(b, e - b + 1);
    if (!word.empty() && word != "~" && word != "null" && word != "Null" && word != "NULL")
      throw InputError(label, 0, 0, path,
                       fmt::format("cannot read '{}' as a YAML value; quote a string (--set '{}=\"{}\"'), or write null "
                                   "to remove the key",
                                   word, path, word));
  }
  // Build {a: {b: {c: value}}}.
  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
  for (const auto& p : parts)
    if (const auto b = p.find('['); b != std::string::npos)
      throw InputError(label, 0, 0, path,
                       fmt::format("--set cannot reach into a list ('{}'); set the whole list, e.g. --set '{}=[{{...}}, {{...}}]'",
                                   p, path.substr(0, path.find('['))));
  YAML::Node root(YAML::NodeType::Map);
  YAML::Node cur = root;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i + 1 == parts.size()) {
      cur[parts[i]] = value;
    } else {
      cur[parts[i]] = YAML::Node(YAML::NodeType::Map);
      // Node::operator= assigns the *content* of the node cur refers to (it would overwrite root);
      // reset() rebinds cur to the child.
      cur.reset(cur[parts[i]]);
    }
  }
  Walker w(label, locs);
  return w.section(root, "", "");
}

}  // namespace

// Declared in resolve.cpp: cross-field checks, derived defaults and the typed Scenario.
Scenario resolve_scenario(json doc, const std::map<std::string, std::tuple<std::string, int, int>>& locations,
                          const std::string& file, const catalog::Catalog& catalog, bool plan_base = false);

namespace {

Scenario finish(json merged, LocationMap& locs, const std::string& file, const catalog::Catalog& catalog,
                bool plan_base = false) {
  strip_nulls(merged);
  fill_defaults(merged, "", "", locs, file);
  std::map<std::string, std::tuple<std::string, int, int>> flat;
  for (const auto& [k, v] : locs) flat[k] = {v.file, v.line, v.column};
  return resolve_scenario(std::move(merged), flat, file, catalog, plan_base);
}

json walk_document(const YAML::Node& root, const std::string& file, LocationMap& locs) {
  if (!root.IsDefined() || root.IsNull()) throw InputError(file, 1, 1, "", "the scenario file is empty");
  Walker w(file, locs);
  json doc = w.section(root, "", "");
  strip_nulls(doc);  // a file's `key: ~` is not set
  return doc;
}

/** Runs `f`; a yaml-cpp exception that escapes the checks above (a conversion on a node of an unexpected kind)
 *  becomes a located InputError rather than an internal error. */
template <typename F>
auto yaml_guard(const std::string& file, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const YAML::Exception& e) {
    throw yaml_error(file, e, "unexpected YAML content: ");
  }
}

Scenario load_string_unguarded(const std::string& yaml_text, const std::string& file_label,
                               const catalog::Catalog& catalog, const std::vector<std::string>& overrides,
                               const std::vector<std::string>& origins = {}) {
  LocationMap locs;
  YAML::Node root = parse_yaml(yaml_text, file_label);
  json doc = walk_document(root, file_label, locs);
  for (std::size_t i = 0; i < overrides.size(); ++i) {
    const std::string& o = overrides[i];
    json overlay = walk_override(o, locs, i < origins.size() ? origins[i] : std::string());
    merge_override(doc, overlay, locs, o);
  }
  return finish(std::move(doc), locs, file_label, catalog);
}

std::vector<Alternative> load_alternatives_unguarded(const std::string& path, const catalog::Catalog& catalog,
                                                     const std::vector<std::string>& overrides,
                                                     const std::vector<std::string>& extra_alternatives) {
  const std::string text = read_file(path);
  LocationMap base_locs;
  YAML::Node root = parse_yaml(text, path);
  json base = walk_document(root, path, base_locs);
  for (const auto& o : overrides) {
    json overlay = walk_override(o, base_locs);
    merge_override(base, overlay, base_locs, o);
  }
  base.erase("compare");

  std::vector<std::pair<YAML::Node, std::string>> items;  // (node, file label)
  if (root.IsMap() && root["compare"] && root["compare"].IsSequence())
    for (const auto& item : root["compare"]) items.emplace_back(item, path);
  for (const auto& extra : extra_alternatives) {
    const std::string label = "--alt " + extra;
    YAML::Node n = parse_yaml(extra, label);
    if (!n.IsMap() || !n["label"] || !n["label"].IsScalar())
      throw InputError(label, 0, 0, "", "an alternative is a YAML mapping with a `label:` and the keys it overrides, "
                                        "e.g. '{label: iowa, placement: [{datacenter: gcp_us_central1_2021}]}'");
    items.emplace_back(n, label);
  }

  std::vector<Alternative> out;
  std::map<std::string, int> seen;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& [node, file] = items[i];
    const std::string label = node["label"].Scalar();
    if (label == kBaseAlternativeLabel)
      throw InputError(file, node["label"].Mark().line + 1, node["label"].Mark().column + 1, "compare[].label",
                       fmt::format("duplicate alternative label '{}': the scenario itself is compared as '{}'; "
                                   "give this alternative another label",
                                   label, kBaseAlternativeLabel));
    if (seen[label]++)
      throw InputError(file, node["label"].Mark().line + 1, node["label"].Mark().column + 1, "compare[].label",
                       fmt::format("duplicate alternative label '{}'", label));
    YAML::Node overlay(YAML::NodeType::Map);
    for (const auto& kv : node) {
      if (!kv.first.IsScalar())
        throw InputError(file, kv.first.Mark().line + 1, kv.first.Mark().column + 1, "compare[]",
                         fmt::format("a key must be a name, got {}; an alternative overrides scenario keys (`moesim "
                                     "explain` lists them)", scalar_text(kv.first)));
      const std::string key = kv.first.Scalar();
      if (key == "label") continue;
      if (key == "compare" || key == "name")
        throw InputError(file, kv.first.Mark().line + 1, kv.first.Mark().column + 1, "compare[]." + key,
                         "an alternative cannot override `" + key + "`");
      overlay[kv.first] = kv.second;
    }
    LocationMap locs = base_locs;
    Walker w(file, locs);
    json merged = base;
    json alt = w.section(overlay, "", "");
    deep_merge(merged, alt, locs);
    // A check that fails on the merged scenario may blame a key of the base (its location is the base file's):
    // name the alternative, and where it is, so that the message points at what the alternative changed.
    try {
      Scenario s = finish(std::move(merged), locs, file, catalog);
      out.push_back({label, std::move(s)});
    } catch (const InputError& e) {
      throw InputError(e.file(), e.line(), e.column(), e.key(),
                       fmt::format("in alternative '{}' ({}:{}): {}", label, file, node["label"].Mark().line + 1, e.message()));
    }
  }
  return out;
}

}  // namespace

Scenario load_string(const std::string& yaml_text, const std::string& file_label, const catalog::Catalog& catalog,
                     const std::vector<std::string>& overrides) {
  return yaml_guard(file_label, [&] { return load_string_unguarded(yaml_text, file_label, catalog, overrides); });
}

Scenario load_file(const std::string& path, const catalog::Catalog& catalog, const std::vector<std::string>& overrides) {
  return load_string(read_file(path), path, catalog, overrides);
}

Scenario load_file(const std::string& path, const catalog::Catalog& catalog, const std::vector<std::string>& overrides,
                   const std::vector<std::string>& origins) {
  const std::string text = read_file(path);
  return yaml_guard(path, [&] { return load_string_unguarded(text, path, catalog, overrides, origins); });
}

namespace {
/** The file's document with the overrides merged in, and where each key came from (unguarded: call inside yaml_guard). */
json merged_document(const std::string& path, const std::vector<std::string>& overrides, LocationMap& locs) {
  YAML::Node root = parse_yaml(read_file(path), path);
  json doc = walk_document(root, path, locs);
  for (const auto& o : overrides) {
    json overlay = walk_override(o, locs);
    merge_override(doc, overlay, locs, o);
  }
  return doc;
}
}  // namespace

json raw_document(const std::string& path, const std::vector<std::string>& overrides) {
  return yaml_guard(path, [&] {
    LocationMap locs;
    return merged_document(path, overrides, locs);
  });
}

Scenario load_plan_base(const std::string& path, const catalog::Catalog& catalog, const std::vector<std::string>& overrides) {
  return yaml_guard(path, [&] {
    LocationMap locs;
    json doc = merged_document(path, overrides, locs);
    if (doc.contains("serving"))
      throw InputError(path, 0, 0, "serving", "the base of a training plan has no serving section (`moesim plan` plans a "
                                              "serving scenario's pool splits from the scenario itself)");
    return finish(std::move(doc), locs, path, catalog, true);
  });
}

std::vector<Alternative> load_alternatives(const std::string& path, const catalog::Catalog& catalog,
                                           const std::vector<std::string>& overrides,
                                           const std::vector<std::string>& extra_alternatives) {
  return yaml_guard(path, [&] { return load_alternatives_unguarded(path, catalog, overrides, extra_alternatives); });
}

namespace {

/** Keys a sweep axis may set: every field path outside lists (a list is swept whole, e.g. `placement`). */
std::vector<std::string> sweepable_keys() {
  std::vector<std::string> out;
  for (const auto& f : fields()) {
    if (f.path.find('[') != std::string::npos) continue;
    if (f.path == "name" || f.path == "compare" || f.path == "sweep" || f.path.rfind("sweep.", 0) == 0) continue;
    out.push_back(f.path);
  }
  return out;
}

SweepDefinition load_sweep_unguarded(const std::string& path) {
  const std::string text = read_file(path);
  LocationMap locs;
  YAML::Node root = parse_yaml(text, path);
  json doc = walk_document(root, path, locs);  // types and shapes of the whole file, `sweep:` included
  if (!doc.contains("sweep"))
    throw InputError(path, 1, 1, "sweep",
                     "no `sweep:` section to run; add one, e.g. `sweep: {axes: [{key: cluster.count, values: [64, 128]}]}` "
                     "(`moesim explain` describes it)");
  const YAML::Node sweep = root["sweep"];
  fill_defaults(doc["sweep"], "sweep", "sweep", locs, path);  // required keys (axes, key, values), located
  SweepDefinition def;
  def.file = path;
  const YAML::Node axes = sweep["axes"];
  if (axes.size() == 0) fail(location_of(path, axes.Mark()), "sweep.axes", "no axes: give at least one {key: KEY.PATH, values: [...]}");
  const std::vector<std::string> valid = sweepable_keys();
  std::map<std::string, std::size_t> axis_of;
  for (std::size_t i = 0; i < axes.size(); ++i) {
    const YAML::Node item = axes[i];
    const std::string vpath = fmt::format("sweep.axes[{}]", i);
    const std::string key = item["key"].Scalar();
    const Location key_loc = location_of(path, item["key"].Mark());
    const bool reserved = key == "name" || key == "compare" || key == "sweep" || key.rfind("sweep.", 0) == 0;
    if (std::find(valid.begin(), valid.end(), key) == valid.end()) {
      const std::string parent = key.find('.') == std::string::npos ? "" : key.substr(0, key.rfind('.'));
      std::vector<std::string> near;
      for (const auto& v : valid)
        if (parent.empty() ? v.find('.') == std::string::npos : v.rfind(parent + ".", 0) == 0) near.push_back(v);
      if (near.empty() || reserved) near = valid;
      auto close = text::closest(key, valid, 1);
      const std::string hint = reserved || close.empty() || !text::likely_typo(key, close[0]) ? "" : fmt::format(" (did you mean '{}'?)", close[0]);
      fail(key_loc, vpath + ".key",
           fmt::format("{}{}; a sweep axis sets a scenario key outside lists (a list such as placement is swept whole); "
                       "valid keys{}: {}",
                       reserved ? fmt::format("'{}' cannot be swept", key) : fmt::format("'{}' is not a scenario key", key), hint,
                       near.size() == valid.size() ? "" : fmt::format(" under '{}'", parent), text::join(near)));
    }
    if (auto dup = axis_of.find(key); dup != axis_of.end())
      fail(key_loc, vpath + ".key", fmt::format("'{}' is already swept by sweep.axes[{}]; give each key one axis", key, dup->second));
    axis_of[key] = i;
    const json& values = doc["sweep"]["axes"][i]["values"];
    if (values.empty())
      fail(location_of(path, item["values"].Mark()), vpath + ".values",
           fmt::format("empty axis: '{}' has no values; give at least one", key));
    def.axes.push_back({key, std::vector<json>(values.begin(), values.end())});
  }
  // zip groups
  std::vector<int> group_of(def.axes.size(), -1);
  std::vector<std::vector<std::size_t>> groups;
  if (sweep["zip"]) {
    const YAML::Node zip = sweep["zip"];
    for (std::size_t g = 0; g < zip.size(); ++g) {
      const YAML::Node group = zip[g];
      const std::string gpath = fmt::format("sweep.zip[{}]", g);
      if (!group.IsSequence() || group.size() < 2)
        fail(location_of(path, group.Mark()), gpath, "a zip group is a list of two or more axis keys, e.g. [model.experts, parallelism.expert]");
      std::vector<std::size_t> members;
      for (std::size_t k = 0; k < group.size(); ++k) {
        const YAML::Node m = group[k];
        const std::string mpath = fmt::format("{}[{}]", gpath, k);
        auto it = m.IsScalar() ? axis_of.find(m.Scalar()) : axis_of.end();
        if (it == axis_of.end()) {
          std::vector<std::string> names;
          for (const auto& a : def.axes) names.push_back(a.key);
          fail(location_of(path, m.Mark()), mpath,
               fmt::format("{} is not the key of an axis; axes: {}", scalar_text(m), text::join(names)));
        }
        if (group_of[it->second] >= 0)
          fail(location_of(path, m.Mark()), mpath,
               fmt::format("axis '{}' is already in zip group {}; an axis belongs to one group at most", it->first, group_of[it->second]));
        group_of[it->second] = static_cast<int>(g);
        members.push_back(it->second);
      }
      const std::size_t n0 = def.axes[members[0]].values.size();
      for (std::size_t k = 1; k < members.size(); ++k) {
        const std::size_t nk = def.axes[members[k]].values.size();
        if (nk != n0)
          fail(location_of(path, group.Mark()), gpath,
               fmt::format("zipped axes advance together and need as many values each: '{}' has {}, '{}' has {}",
                           def.axes[members[0]].key, n0, def.axes[members[k]].key, nk));
      }
      std::sort(members.begin(), members.end());
      groups.push_back(std::move(members));
    }
  }
  // Dimensions: a lone axis, or a zip group at the place of its first axis.
  std::vector<bool> emitted(groups.size(), false);
  for (std::size_t i = 0; i < def.axes.size(); ++i) {
    if (group_of[i] < 0) {
      def.dimensions.push_back({i});
    } else if (!emitted[static_cast<std::size_t>(group_of[i])]) {
      emitted[static_cast<std::size_t>(group_of[i])] = true;
      def.dimensions.push_back(groups[static_cast<std::size_t>(group_of[i])]);
    }
  }
  std::size_t total = 1;
  for (const auto& d : def.dimensions) {
    total *= def.axes[d[0]].values.size();
    if (total > kMaxSweepPoints)
      fail(location_of(path, sweep.Mark()), "sweep",
           fmt::format("the axes multiply to more than {} points; split the sweep or zip axes that go together", kMaxSweepPoints));
  }
  // Odometer over the dimensions, the last one fastest.
  std::vector<std::size_t> at(def.dimensions.size(), 0);
  for (std::size_t n = 0; n < total; ++n) {
    SweepPoint p;
    p.index = n;
    std::vector<std::pair<std::string, json>> by_axis(def.axes.size());
    for (std::size_t d = 0; d < def.dimensions.size(); ++d)
      for (std::size_t a : def.dimensions[d]) by_axis[a] = {def.axes[a].key, def.axes[a].values[at[d]]};
    p.assignment = std::move(by_axis);
    def.points.push_back(std::move(p));
    for (std::size_t d = def.dimensions.size(); d-- > 0;) {
      if (++at[d] < def.axes[def.dimensions[d][0]].values.size()) break;
      at[d] = 0;
    }
  }
  return def;
}

}  // namespace

SweepDefinition load_sweep(const std::string& path) {
  return yaml_guard(path, [&] { return load_sweep_unguarded(path); });
}

}  // namespace moesim::scenario
