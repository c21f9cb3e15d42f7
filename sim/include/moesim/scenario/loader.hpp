// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/catalog/catalog.hpp"
#include "moesim/scenario/scenario.hpp"

namespace moesim::scenario {

/** The label `moesim compare` gives the scenario itself (the base row); an alternative cannot take it. */
inline constexpr const char* kBaseAlternativeLabel = "base";

/** A `compare:` alternative: its label and the scenario with its overrides applied. */
struct Alternative {
  std::string label;
  Scenario scenario;
};

/** Reads, validates and resolves a scenario file. Every problem is a moesim::InputError naming
 *  file:line:column, the key and what is allowed.
 *  `overrides` are "key.path=YAML value" strings applied on top of the file (command-line --set). */
Scenario load_file(const std::string& path, const catalog::Catalog& catalog,
                   const std::vector<std::string>& overrides = {});

/** Same, with the origin of each override for error messages: `origins[i]`, when given and not empty, names where
 *  `overrides[i]` came from (e.g. "study.yaml: sweep point 3 (parallelism.data=3)") in place of "--set EXPR", with
 *  no line or column; an override without one is named "--set EXPR" as by the overload above. */
Scenario load_file(const std::string& path, const catalog::Catalog& catalog, const std::vector<std::string>& overrides,
                   const std::vector<std::string>& origins);

/** The file's document with `overrides` applied, as written (nothing resolved or defaulted; a YAML or override problem
 *  is the InputError load_file would give): for a command that must know what the user wrote, not what it resolves to
 *  (`moesim plan`: a serving section; sequence parallelism asked for under `parallelism: auto`'s placeholder). */
nlohmann::json raw_document(const std::string& path, const std::vector<std::string>& overrides);

/** The scenario `moesim plan` starts from: read and checked like load_file, except that the layout (the
 *  `parallelism` section, a mapping or `auto`) is not checked and is replaced by a placeholder (every device
 *  data-parallel, nothing else split): only the model, batch, cluster and the rest are read from it; each layout
 *  the planner proposes is then resolved, and so checked, on its own. A serving scenario is refused (its plan starts
 *  from load_file). */
Scenario load_plan_base(const std::string& path, const catalog::Catalog& catalog,
                        const std::vector<std::string>& overrides = {});

/** Same, from text; `file_label` names the source in error messages. */
Scenario load_string(const std::string& yaml_text, const std::string& file_label, const catalog::Catalog& catalog,
                     const std::vector<std::string>& overrides = {});

/** The scenario's `compare:` alternatives (each fully validated), plus any given on the command line
 *  as YAML mappings (`extra_alternatives`, each with a `label`). Empty if there are none. A label used twice,
 *  or equal to kBaseAlternativeLabel (the scenario itself), is refused at its location. */
std::vector<Alternative> load_alternatives(const std::string& path, const catalog::Catalog& catalog,
                                           const std::vector<std::string>& overrides = {},
                                           const std::vector<std::string>& extra_alternatives = {});

}  // namespace moesim::scenario
