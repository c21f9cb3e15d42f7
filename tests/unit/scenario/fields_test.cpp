// SPDX-License-Identifier: Apache-2.0
// The field table (sim/scenario/fields.cpp): "every field declared once with type, unit, default and
// help; `moesim explain` prints them".

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "moesim/core/error.hpp"
#include "moesim/scenario/fields.hpp"
#include "scenario_test_support.hpp"

using moesim::scenario::children_of;
using moesim::scenario::explain_markdown;
using moesim::scenario::explain_text;
using moesim::scenario::FieldSpec;
using moesim::scenario::FieldType;
using moesim::scenario::fields;
using moesim::scenario::find_field;
namespace t = moesim::scenario::test;

namespace {

/** Last component of a path: "cluster.topology.link_latency_us" -> "link_latency_us". */
std::string leaf(const std::string& path) {
  const auto cut = path.find_last_of('.');
  return cut == std::string::npos ? path : path.substr(cut + 1);
}

/** Path of the section that holds `path` ("" for top level): "placement[].share" -> "placement[]". */
std::string parent(const std::string& path) {
  const auto cut = path.find_last_of('.');
  return cut == std::string::npos ? "" : path.substr(0, cut);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_container(FieldType type) {
  return type == FieldType::section || type == FieldType::section_list || type == FieldType::string_or_section;
}

}  // namespace

TEST_CASE("scenario::FieldSpec: every field has a unique path, a valid type and help text", "[scenario][fields]") {
  const auto& table = fields();
  REQUIRE(table.size() > 40);  // the DESIGN.md §2 sections alone hold more than 40 keys
  std::set<std::string> paths;
  for (const FieldSpec& f : table) {
    INFO(f.path);
    CHECK_FALSE(f.path.empty());
    CHECK(paths.insert(f.path).second);
    CHECK(to_string(f.type) != "?");
    CHECK(f.help.size() >= 10);  // a sentence, not a placeholder
    CHECK(find_field(f.path) == &f);
  }
  CHECK(find_field("model.no_such_key") == nullptr);
  CHECK(find_field("") == nullptr);
}

TEST_CASE("scenario::FieldSpec: choice fields list their choices and defaults are of the declared type",
          "[scenario][fields]") {
  for (const FieldSpec& f : fields()) {
    INFO(f.path);
    if (f.type == FieldType::choice) {
      REQUIRE_FALSE(f.choices.empty());
      std::set<std::string> unique(f.choices.begin(), f.choices.end());
      CHECK(unique.size() == f.choices.size());
      if (!f.default_value.is_null()) {
        REQUIRE(f.default_value.is_string());
        CHECK(unique.count(f.default_value.get<std::string>()) == 1);
      }
    } else {
      CHECK(f.choices.empty());
    }
    // A key is either required or has a default / derived default / is optional, never both.
    if (f.required) {
      CHECK(f.default_value.is_null());
      CHECK(f.derived_default.empty());
    }
    if (!f.derived_default.empty()) CHECK(f.default_value.is_null());
    if (f.default_value.is_null()) continue;
    switch (f.type) {
      case FieldType::integer: CHECK(f.default_value.is_number_integer()); break;
      case FieldType::number: CHECK(f.default_value.is_number()); break;
      case FieldType::boolean: CHECK(f.default_value.is_boolean()); break;
      case FieldType::string:
      case FieldType::choice: CHECK(f.default_value.is_string()); break;
      case FieldType::section: CHECK(f.default_value.is_object()); break;
      case FieldType::string_or_section: CHECK((f.default_value.is_object() || f.default_value.is_string())); break;
      default: CHECK(false); break;  // lists and overlays carry no default
    }
    if (f.default_value.is_number()) {
      const double v = f.default_value.get<double>();
      if (f.min) CHECK((f.min_exclusive ? v > *f.min : v >= *f.min));
      if (f.max) CHECK(v <= *f.max);
    }
  }
}

TEST_CASE("scenario::FieldSpec: ranges are consistent and only on numeric fields", "[scenario][fields]") {
  for (const FieldSpec& f : fields()) {
    INFO(f.path);
    const bool numeric = f.type == FieldType::integer || f.type == FieldType::number ||
                         f.type == FieldType::integer_list || f.type == FieldType::number_list;
    if (!numeric) {
      CHECK_FALSE(f.min.has_value());
      CHECK_FALSE(f.max.has_value());
    }
    if (f.min && f.max) CHECK(*f.min < *f.max);
    CHECK(f.si_scale > 0.0);
  }
}

TEST_CASE("scenario::FieldSpec: keys with a unit suffix declare that unit and its SI scale", "[scenario][fields]") {
  // suffix -> (unit text, scale to SI). Scales: 1 Gbit/s = 1e9 bit/s / 8 bit/byte; 1 ms = 1e-3 s;
  // 1 us = 1e-6 s (SI prefixes). Days, watts and kgCO2e/kWh stay as written (scale 1): the typed
  // Scenario keeps days (`duration_days`) and the energy layer converts kWh.
  const std::map<std::string, std::pair<std::string, double>> suffixes = {
      {"_gbps", {"Gbit/s", 1e9 / 8.0}},   {"_ms", {"ms", 1e-3}},     {"_us", {"us", 1e-6}},
      {"_ns", {"ns", 1e-9}},              {"_s", {"s", 1.0}},        {"_w", {"W", 1.0}},
      {"_days", {"days", 1.0}},           {"_bytes", {"bytes", 1.0}}, {"_kwh", {"kgCO2e/kWh", 1.0}},
      {"_tokens", {"tokens", 1.0}},
  };
  int with_suffix = 0;
  for (const FieldSpec& f : fields()) {
    const std::string name = leaf(f.path);
    if (ends_with(name, "_per_s")) {
      // A rate: "<count>/s", as written in SI (requests/s).
      INFO(f.path << " (suffix _per_s)");
      ++with_suffix;
      CHECK(ends_with(f.unit, "/s"));
      CHECK(f.si_scale == 1.0);
      continue;
    }
    for (const auto& [suffix, expected] : suffixes) {
      if (!ends_with(name, suffix)) continue;
      INFO(f.path << " (suffix " << suffix << ")");
      ++with_suffix;
      CHECK(f.unit == expected.first);
      CHECK(f.si_scale == Approx(expected.second).epsilon(1e-12));
    }
    // A unit without a suffix is allowed (counts such as "layers", "chips"), but an SI scale other than
    // 1 must show in the key name, or a reader cannot tell the file's unit from the key.
    if (f.si_scale != 1.0) {
      INFO(f.path);
      bool named = false;
      for (const auto& [suffix, expected] : suffixes) named = named || ends_with(name, suffix);
      CHECK(named);
    }
  }
  // At least: wan.bandwidth_gbps, wan.latency_ms, link_bandwidth_gbps, link_latency_us,
  // average_chip_power_w, duration_days, group_size_tokens, batch_tokens.
  CHECK(with_suffix >= 8);
}

TEST_CASE("scenario::children_of: reproduces the tree of the field table", "[scenario][fields]") {
  const auto& table = fields();
  // Every field is the child of exactly one container (or of the top level), and children_of lists it.
  std::map<std::string, int> listed;
  std::vector<std::string> containers = {""};
  for (const FieldSpec& f : table) {
    if (f.type == FieldType::section || f.type == FieldType::string_or_section) containers.push_back(f.path);
    if (f.type == FieldType::section_list) containers.push_back(f.path + "[]");
  }
  for (const auto& c : containers) {
    const auto kids = children_of(c);
    INFO("container '" << c << "'");
    CHECK_FALSE(kids.empty());
    for (const FieldSpec* k : kids) {
      CHECK(parent(k->path) == c);
      ++listed[k->path];
    }
  }
  for (const FieldSpec& f : table) {
    INFO(f.path);
    CHECK(listed[f.path] == 1);
    // Its parent is a declared container.
    const std::string p = parent(f.path);
    if (p.empty()) continue;
    const bool list_item = ends_with(p, "[]");
    const FieldSpec* holder = find_field(list_item ? p.substr(0, p.size() - 2) : p);
    REQUIRE(holder != nullptr);
    CHECK(is_container(holder->type));
    if (list_item) CHECK(holder->type == FieldType::section_list);
  }
  CHECK(static_cast<std::size_t>(listed.size()) == table.size());

  SECTION("document order is kept and the DESIGN.md sections are at the top level") {
    std::vector<std::string> top;
    for (const FieldSpec* f : children_of("")) top.push_back(f->path);
    for (const char* section : {"name", "seed", "model", "training", "routing", "parallelism", "cluster", "placement"})
      CHECK(std::find(top.begin(), top.end(), section) != top.end());
    const auto model = children_of("model");
    REQUIRE(model.size() > 3);
    std::size_t last = 0;
    for (const FieldSpec* f : model) {
      const auto idx = static_cast<std::size_t>(f - &table[0]);
      CHECK(idx > last);
      last = idx;
    }
  }
  SECTION("a leaf has no children, an unknown section has none") {
    CHECK(children_of("model.d_model").empty());
    CHECK(children_of("nope").empty());
  }
}

TEST_CASE("scenario::explain_text: mentions every path, its help and its type", "[scenario][fields]") {
  const std::string txt = explain_text();
  for (const FieldSpec& f : fields()) {
    INFO(f.path);
    CHECK(t::contains(txt, f.path + "  ("));
    CHECK(t::contains(txt, f.help));
    if (f.required) CHECK(t::contains(txt, f.path + "  (" + to_string(f.type)));
    for (const auto& c : f.choices) CHECK(t::contains(txt, c));
  }
  CHECK(t::contains(txt, "model.d_head  (integer)  = model.d_model / model.heads"));
  CHECK(t::contains(txt, "wan.bandwidth_gbps  (number, [Gbit/s])"));
  CHECK(t::contains(txt, "name  (string)  required"));
}

TEST_CASE("scenario::select_fields: a key selects its field and everything below it", "[scenario][fields]") {
  auto paths = [](const std::vector<std::string>& keys) {
    std::vector<std::string> out;
    for (const FieldSpec* f : moesim::scenario::select_fields(keys)) out.push_back(f->path);
    return out;
  };
  SECTION("no key: every field, in document order") { CHECK(paths({}).size() == fields().size()); }
  SECTION("a section: itself and its children, not a sibling that shares its prefix") {
    const auto p = paths({"serving.scheduler"});
    CHECK(p.front() == "serving.scheduler");
    CHECK(std::find(p.begin(), p.end(), "serving.scheduler.max_sequences") != p.end());
    for (const auto& x : p) CHECK(x.rfind("serving.scheduler", 0) == 0);
    CHECK(p.size() == children_of("serving.scheduler").size() + 1);
    // "model.d" is not a section: it selects nothing (no prefix match inside a name).
    CHECK_THROWS_AS(paths({"model.d"}), moesim::Error);
  }
  SECTION("a leaf: just that field") { CHECK(paths({"model.kv_heads"}) == std::vector<std::string>{"model.kv_heads"}); }
  SECTION("list items by index, by [] or without brackets") {
    const std::vector<std::string> want{"placement[].share"};
    CHECK(paths({"placement[0].share"}) == want);
    CHECK(paths({"placement[].share"}) == want);
    CHECK(paths({"placement.share"}) == want);
  }
  SECTION("several keys: the union, in document order") {
    CHECK(paths({"model.top_k", "model.d_model"}) == std::vector<std::string>{"model.d_model", "model.top_k"});
  }
  SECTION("an unknown key names the closest paths and the sections") {
    try {
      paths({"serving.sheduler"});
      FAIL("no error");
    } catch (const moesim::Error& e) {
      const std::string msg = e.what();
      CHECK(t::contains(msg, "no scenario field 'serving.sheduler'"));
      CHECK(t::contains(msg, "serving.scheduler"));
      CHECK(t::contains(msg, "model, training, routing"));
    }
  }
  SECTION("explain_text of a key prints only its fields") {
    const std::string txt = explain_text({"serving.kv_cache"});
    CHECK(t::contains(txt, "serving.kv_cache.memory_fraction  ("));
    CHECK_FALSE(t::contains(txt, "model.d_model  ("));
  }
}

TEST_CASE("scenario::explain_markdown: one table row per path", "[scenario][fields]") {
  const std::string md = explain_markdown();
  std::size_t rows = 0;
  for (const auto& line : t::lines_of(md))
    if (line.rfind("| `", 0) == 0) ++rows;
  CHECK(rows == fields().size());
  for (const FieldSpec& f : fields()) {
    INFO(f.path);
    CHECK(t::contains(md, "| `" + f.path + "` | " + to_string(f.type) + " | " + f.unit + " |"));
  }
  // A '|' in help text would break the table: every row has exactly 7 separators.
  for (const auto& line : t::lines_of(md)) {
    if (line.rfind("| `", 0) != 0) continue;
    INFO(line);
    CHECK(std::count(line.begin(), line.end(), '|') == 7);
  }
}
