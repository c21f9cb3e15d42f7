// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <optional>

#include "moesim/catalog/catalog.hpp"
#include "moesim/energy/accounting.hpp"
#include "moesim/engine/engine.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim/store/store.hpp"

namespace moesim::cli {

/** A scenario checked and ready to simulate, with the data its accounting needs. */
struct PreparedRun {
  scenario::Scenario scenario;
  energy::NetworkEnergyTable network;
  std::optional<energy::EmbodiedFigures> embodied;
};

/** Checks feasibility (memory, topology) and loads the energy data: every input error surfaces here,
 *  before anything is written to the store. */
PreparedRun prepare_run(const catalog::Catalog& catalog, scenario::Scenario s);

/** Turns a simulation result (JobResult JSON from the child process) into the run's record: energy
 *  accounting, metrics, provenance. */
store::RunRecord finish_run(const catalog::Catalog& catalog, const PreparedRun& p, const nlohmann::json& job_json,
                            const store::RunRecord& header, const std::string& trace_csv = "");

/** Simulates the prepared run in the calling process (training or serving) and returns the result as JSON
 *  (what a child process sends back). */
nlohmann::json simulate_json(const catalog::Catalog& catalog, const PreparedRun& p, const engine::EngineOptions& options = {});

/** Creates `dir` if needed and throws moesim::Error naming `option` unless files can be written in it: outputs
 *  are checked before a simulation, so no run is stored only to fail on its report. */
void check_output_directory(const std::string& dir, const std::string& option);
/** Throws moesim::Error naming `option` unless `path` can be created or overwritten as a file. */
void check_output_file(const std::string& path, const std::string& option);

struct RunOptions;
/** Throws moesim::Error naming the option and the scenario file where `moesim run` was given a training-only option
 *  (--trace, --no-steady-state) for a serving scenario: refused before anything is simulated or stored. */
void check_training_only_options(const scenario::Scenario& s, const RunOptions& o);

/** Simulates in a child process, accounts energy, and (if `db`) stores the run as one transaction.
 *  A failure marks the stored run failed and re-throws. */
store::RunRecord execute_run(const catalog::Catalog& catalog, const PreparedRun& p, store::Store* db,
                             const store::RunRecord& header, bool progress, const std::string& trace_csv = "",
                             bool steady_state = true);

}  // namespace moesim::cli
