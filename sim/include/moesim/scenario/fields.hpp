// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moesim::scenario {

/** Value kinds a scenario field can hold. */
enum class FieldType {
  integer,
  number,
  string,
  boolean,
  choice,          ///< one of `choices`
  number_list,
  integer_list,
  section,         ///< a mapping of further fields
  section_list,    ///< a sequence of mappings (e.g. placement)
  string_or_section,  ///< a name, or a mapping of further fields (inline datacenter)
  overlay_list,    ///< a sequence of partial scenarios (compare alternatives)
  value_list,      ///< a sequence of any YAML values, kept as given (sweep axis values, zip groups)
};

std::string to_string(FieldType t);

/** One scenario field, declared once: this table drives parsing, validation, defaults,
 *  `moesim explain` and docs/scenario.md.
 *  `path` uses dots for sections and `[]` for list items: "placement[].share". */
struct FieldSpec {
  std::string path;
  FieldType type = FieldType::string;
  std::string unit;              ///< unit of the value as written in the file ("" = dimensionless)
  double si_scale = 1.0;         ///< multiply by this to get SI (e.g. Gbit/s -> byte/s = 1e9/8)
  nlohmann::json default_value;  ///< null: no default
  bool required = false;         ///< must be present (when its section is)
  std::string help;
  std::optional<double> min;     ///< inclusive
  std::optional<double> max;     ///< inclusive
  /** Why `max` is where it is (a physical or published bound), named in the error and in `explain`. */
  std::string max_note;
  bool min_exclusive = false;    ///< min is exclusive (value > min)
  std::vector<std::string> choices;
  /** Free-text note on a default that depends on other fields (e.g. "d_model / heads"). */
  std::string derived_default;
};

/** The whole table, in document order. */
const std::vector<FieldSpec>& fields();
/** The field at `path` ("model.d_model", "placement[].share"), or nullptr. */
const FieldSpec* find_field(const std::string& path);
/** Direct children of a section path ("" = top level), in document order. */
std::vector<const FieldSpec*> children_of(const std::string& section_path);

/** The fields that `keys` select, in document order: a key selects the field at that path and every field below it
 *  ("serving.scheduler" selects serving.scheduler.type, .max_sequences, ...). A list index is read as the list's
 *  items ("placement[0].share" = "placement[].share") and a list written without brackets finds its items too
 *  ("placement.share"). No keys: every field. A key that selects nothing is an Error naming the closest paths. */
std::vector<const FieldSpec*> select_fields(const std::vector<std::string>& keys);
/** Human-readable table of the selected fields (what `moesim explain [KEY...]` prints; no keys: every field). */
std::string explain_text(const std::vector<std::string>& keys = {});
/** Markdown reference of the selected fields (all of them: docs/scenario.md). */
std::string explain_markdown(const std::vector<std::string>& keys = {});

}  // namespace moesim::scenario
