// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "moesim/catalog/catalog.hpp"
#include "moesim/energy/accounting.hpp"
#include "moesim/engine/job.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/scenario/scenario.hpp"
#include "moesim/store/store.hpp"

namespace moesim::cli {

/** The store record of a finished run: every metric with its unit (SI), per-datacenter results,
 *  the step breakdown, the power series and the provenance of every input. */
store::RunRecord make_record(const scenario::Scenario& s, const engine::JobResult& job, const energy::Accounting& acc,
                             const catalog::Catalog& catalog, const energy::NetworkEnergyTable& network);

/** The store record of a finished serving run: latency distributions, throughput, goodput, energy per token
 *  and per request, CO2e per 1000 tokens, per datacenter; series (queue, batch, KV use, power) and latency CDFs. */
store::RunRecord make_serving_record(const scenario::Scenario& s, const engine::ServingResult& r, const energy::Accounting& acc,
                                     const catalog::Catalog& catalog, const energy::NetworkEnergyTable& network);

/** The identity part of a record (before the simulation): scenario, seed, version. */
store::RunRecord make_header(const scenario::Scenario& s);

/** `moesim run --json` / `runs show --json`: one object built from a stored record (units converted:
 *  days, MWh, tonnes). A serving run's is serving_record_json's (kWh, kg, g per token), whatever its status: a
 *  failed or unfinished one has the same keys as a complete one, its figures null, plus error and times. */
nlohmann::json record_json(const store::RunRecord& r);

/** One line per `grid:` datacenter of the record saying that its PUE is the catalog's assumed industry average
 *  (and its source); empty when there is none. */
std::string assumed_pue_notes(const store::RunRecord& r);
/** "moesim run 12" for a stored run; "moesim run (not stored)" for one run with --no-store (id 0, which no stored run has). */
std::string run_heading(const store::RunRecord& r);
/** "   GPU power limit 500 W" when the run's scenario set cluster.power_limit_w, else "" (the summaries' chips line). */
std::string power_limit_text(const store::RunRecord& r);

/** Human-readable summary of a stored record. */
std::string record_summary(const store::RunRecord& r);

}  // namespace moesim::cli
