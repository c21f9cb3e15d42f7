// SPDX-License-Identifier: Apache-2.0
// CSV: one row per run and datacenter. The first columns follow CodeCarbon's emissions.csv
// (mlco2/codecarbon docs/edit/output.rst: timestamp, project_name, run_id, experiment_id, duration
// in s, emissions in kg CO2e, emissions_rate in kg/s, energy_consumed in kWh with the PUE applied as
// CodeCarbon does, country_iso_code, region, pue); moesim's own columns follow with the unit in the
// name. reports/README.md documents each column.
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

#include <fmt/format.h>

#include "model.hpp"
#include "moesim/core/units.hpp"
#include "moesim/reports/markup.hpp"

namespace moesim::reports::detail {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string num(double v) { return std::isnan(v) ? std::string() : format_exact(v); }

std::string accelerator_name(const store::RunRecord& r) {
  const auto& p = r.provenance;
  if (p.is_object() && p.contains("accelerator") && p["accelerator"].is_object() && p["accelerator"].contains("name") &&
      p["accelerator"]["name"].is_string())
    return p["accelerator"]["name"].get<std::string>();
  return "";
}

}  // namespace

const std::vector<CsvColumn>& csv_columns() {
  static const std::vector<CsvColumn> cols = {
      {"timestamp", "ISO 8601 UTC", "when the run finished (when it started, for a run that has not finished); CodeCarbon column"},
      {"project_name", "", "scenario name; CodeCarbon column"},
      {"run_id", "", "moesim run id (an integer; CodeCarbon writes a UUID); CodeCarbon column"},
      {"experiment_id", "", "comparison id, empty for a run outside a comparison; CodeCarbon column"},
      {"duration", "s", "energy-accounting duration of the job (metric duration_s: the simulated training time, or the pinned duration); CodeCarbon column"},
      {"emissions", "kg CO2e", "this datacenter's location-based (gross) CO2e; CodeCarbon column"},
      {"emissions_rate", "kg CO2e/s", "emissions / duration; CodeCarbon column"},
      {"energy_consumed", "kWh", "this datacenter's facility energy, (IT + network) x PUE (CodeCarbon also applies the PUE); CodeCarbon column"},
      {"country_iso_code", "", "ISO 3166-1 alpha-3 code of the datacenter's country; CodeCarbon column"},
      {"region", "", "cloud region, else the location, of the datacenter; CodeCarbon column"},
      {"pue", "1", "power usage effectiveness of the datacenter; CodeCarbon column"},
      {"status", "", "run status: complete, failed or running"},
      {"alternative_label", "", "the run's label within its comparison"},
      {"datacenter", "", "datacenter name (profiles/datacenters or grid:<dataset>/<zone>)"},
      {"datacenter_display_name", "", "datacenter description"},
      {"share", "1", "fraction of the job's devices placed in this datacenter"},
      {"chips", "chips", "accelerator chips in this datacenter"},
      {"accelerator", "", "accelerator profile name (from the run's provenance)"},
      {"it_energy_kwh", "kWh", "IT energy of this datacenter: accelerators plus host overhead"},
      {"network_energy_kwh", "kWh", "network energy attributed to this datacenter"},
      {"pue_overhead_kwh", "kWh", "energy_consumed - it_energy_kwh - network_energy_kwh"},
      {"emissions_net_kg", "kg CO2e", "this datacenter's market-based (net) CO2e"},
      {"emissions_embodied_kg", "kg CO2e", "embodied CO2e of this datacenter's chips, amortised over the job; empty when not asked"},
      {"grid_gross_kgco2e_per_kwh", "kg CO2e/kWh", "location-based grid intensity used"},
      {"grid_net_kgco2e_per_kwh", "kg CO2e/kWh", "market-based intensity used; empty when none is published (net CO2e then uses gross)"},
      {"cfe_fraction", "1", "carbon-free energy fraction of the site; empty when not published"},
      {"grid_licence", "", "licence of the datacenter's grid figures (SPDX id or the profile's statement)"},
      {"train_days", "days", "simulated wall-clock time of the whole training job (run-level, repeated on each datacenter row)"},
      {"train_time_s", "s", "the same in seconds (run-level)"},
      {"step_time_s", "s", "mean simulated step time (run-level)"},
      {"step_time_spread_s", "s", "spread of the simulated step times (run-level)"},
      {"steps", "steps", "training steps (run-level)"},
      {"mfu", "1", "model FLOPs utilisation (run-level)"},
      {"hfu", "1", "hardware FLOPs utilisation (run-level)"},
      {"tokens_dropped_fraction", "1", "fraction of routed tokens dropped beyond expert capacity (run-level)"},
      {"average_chip_power_w", "W", "average power per chip over the job (run-level)"},
      {"wan_bytes_per_step", "B", "bytes crossing the WAN between datacenters per step (run-level)"},
      {"wan_time_per_step_s", "s", "WAN communication on the step's critical path (run-level)"},
      {"moesim_version", "", "moesim version that produced the run"},
      {"git_hash", "", "git commit of that moesim build"},
      {"seed", "", "random seed of the run"},
  };
  return cols;
}

std::string csv_report(const std::vector<store::RunRecord>& runs) {
  std::string out;
  const auto& cols = csv_columns();
  for (std::size_t i = 0; i < cols.size(); ++i) out += (i ? "," : "") + std::string(cols[i].name);
  out += "\n";  // LF line ends, as CodeCarbon (pandas) writes them
  for (const auto& r : runs) {
    const double duration_s = metric_or_nan(r, "duration_s");
    const double train_s = metric_or_nan(r, store::metric_names::kTrainTime_s);
    std::vector<store::DatacenterResult> dcs = r.datacenters;
    const bool no_dc = dcs.empty();
    if (no_dc) dcs.emplace_back();
    std::map<std::string, std::string> licences;
    for (const auto& s : datacenter_sources(r)) licences[s.name] = s.licence;
    for (const auto& d : dcs) {
      auto dc_num = [&](double v) { return no_dc ? std::string() : num(v); };
      std::vector<std::string> cells = {
          r.finished_at_utc.empty() ? r.created_at_utc : r.finished_at_utc,
          r.scenario_name,
          std::to_string(r.id),
          r.comparison_id ? std::to_string(*r.comparison_id) : "",
          num(duration_s),
          dc_num(d.co2e_gross_kg),
          dc_num(duration_s > 0 ? d.co2e_gross_kg / duration_s : kNaN),
          dc_num(units::joules_to_kwh(d.facility_energy_j)),
          d.country_iso_code,
          d.region,
          dc_num(d.pue),
          store::to_string(r.status),
          r.alternative_label,
          d.name,
          d.display_name,
          dc_num(d.share),
          no_dc ? "" : std::to_string(d.chips),
          accelerator_name(r),
          dc_num(units::joules_to_kwh(d.it_energy_j)),
          dc_num(units::joules_to_kwh(d.network_energy_j)),
          dc_num(units::joules_to_kwh(overhead_j(d))),
          dc_num(d.co2e_net_kg),
          has_embodied(r) ? dc_num(d.embodied_co2e_kg) : "",
          dc_num(d.gross_kgco2e_per_kwh),
          d.net_kgco2e_per_kwh ? num(*d.net_kgco2e_per_kwh) : "",
          d.cfe_fraction ? num(*d.cfe_fraction) : "",
          licences.count(d.name) ? licences[d.name] : "",
          num(units::seconds_to_days(train_s)),
          num(train_s),
          num(metric_or_nan(r, "step_time_s")),
          num(metric_or_nan(r, "step_time_spread_s")),
          num(metric_or_nan(r, "steps")),
          num(metric_or_nan(r, "mfu")),
          num(metric_or_nan(r, "hfu")),
          num(metric_or_nan(r, "tokens_dropped_fraction")),
          num(metric_or_nan(r, "average_chip_power_w")),
          num(metric_or_nan(r, "wan_bytes_per_step")),
          num(metric_or_nan(r, "wan_time_per_step_s")),
          r.moesim_version,
          r.git_hash,
          std::to_string(r.seed),
      };
      if (cells.size() != cols.size()) throw std::logic_error("csv_report: row and header differ in length");
      for (std::size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + csv_field(cells[i]);
      out += "\n";
    }
  }
  return out;
}

}  // namespace moesim::reports::detail
