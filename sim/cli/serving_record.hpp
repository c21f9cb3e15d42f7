// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "moesim/store/store.hpp"

namespace moesim::cli {

/** `moesim run --json` of a serving run (units converted: ms stay seconds, kWh, gCO2e). A failed or unfinished run
 *  has every key of a complete one, its figures null, plus `error`, `created_at_utc` and `finished_at_utc`. */
nlohmann::json serving_record_json(const store::RunRecord& r);

/** Human-readable summary of a stored serving run. */
std::string serving_record_summary(const store::RunRecord& r);

}  // namespace moesim::cli
