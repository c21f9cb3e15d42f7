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

/** 12 significant digits: above the precision of any input or model (so nothing of meaning is lost), below the
 *  17 of a double's round-trip form, whose last digits are arithmetic noise (0.41272000000000003). */
std::string num(double v) {
  if (std::isnan(v)) return std::string();
  if (std::isinf(v)) return format_exact(v);
  std::string s = fmt::format("{:.12g}", v);
  return s == "-0" ? "0" : s;
}

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
      {"duration", "s",
       "energy-accounting duration of the job (metric duration_s: the simulated training time, or the pinned duration; serving: the "
       "measurement window); CodeCarbon column"},
      {"emissions", "kg CO2e", "this datacenter's location-based (gross) CO2e; CodeCarbon column"},
      {"emissions_rate", "kg CO2e/s", "emissions / duration; CodeCarbon column"},
      {"energy_consumed", "kWh", "this datacenter's facility energy, (IT + network inside the datacenter) x PUE + the WAN's energy (drawn by carrier networks, no PUE); CodeCarbon also applies the PUE; CodeCarbon column"},
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
      {"grid_attribution", "", "the attribution that licence requires of whoever reproduces the figures; empty when none is required"},
      {"grid_basis", "", "accounting basis of the gross intensity: lifecycle, operational, unspecified, or empty when the source does not say"},
      {"train_days", "days", "training: simulated wall-clock time of the whole training job (run-level, repeated on each datacenter row)"},
      {"train_time_s", "s", "training: the same in seconds (run-level)"},
      {"step_time_s", "s", "training: mean simulated step time (run-level)"},
      {"step_time_spread_s", "s", "training: spread of the simulated step times (run-level)"},
      {"steps", "steps", "training: training steps (run-level)"},
      {"mfu", "1", "model FLOPs utilisation (run-level; serving: over the measurement window)"},
      {"hfu", "1", "training: hardware FLOPs utilisation (run-level)"},
      {"tokens_dropped_fraction", "1", "training: dispatched token-to-expert assignments dropped beyond expert capacity, as a fraction of the dispatched assignments (run-level)"},
      {"average_chip_power_w", "W", "average power per chip over the job (run-level; serving: over the measurement window)"},
      {"wan_bytes_per_step", "B", "training: bytes crossing the WAN between datacenters per step (run-level)"},
      {"wan_time_per_step_s", "s", "training: wall time per step during which at least one collective round crossing the WAN between datacenters is in flight, overlapped with compute or not, so not only WAN time on the step's critical path (run-level)"},
      {"moesim_version", "", "moesim version that produced the run"},
      {"git_hash", "", "git commit of that moesim build"},
      {"seed", "", "random seed of the run"},
      {"kind", "", "run kind: training or serving"},
      {"requests_measured", "requests", "serving: requests arriving in the measurement window (run-level)"},
      {"requests_completed", "requests", "serving: requests finishing in the measurement window, i.e. served (run-level)"},
      {"window_s", "s", "serving: length of the measurement window (run-level)"},
      {"throughput_rps", "requests/s", "serving: requests served (finishing in the window) per second of the window (run-level)"},
      {"input_tokens_per_s", "tokens/s", "serving: prompt tokens per second (run-level)"},
      {"output_tokens_per_s", "tokens/s", "serving: generated tokens per second (run-level)"},
      {"output_tokens_per_s_per_device", "tokens/s", "serving: output_tokens_per_s per device (run-level)"},
      {"goodput_fraction", "1", "serving: fraction of measured requests with TTFT and TPOT within the SLO limits (run-level)"},
      {"goodput_rps", "requests/s", "serving: requests served per second within both SLO limits, goodput_fraction x throughput_rps (run-level)"},
      {"slo_ttft_s", "s", "serving: TTFT limit (run-level)"},
      {"slo_tpot_s", "s", "serving: TPOT limit (run-level)"},
      {"slo_p99_met", "", "serving: true when P99 TTFT and P99 TPOT are within the limits, else false (run-level)"},
      {"ttft_p50_s", "s", "serving: median time to first token (run-level)"},
      {"ttft_p99_s", "s", "serving: 99th-percentile time to first token (run-level)"},
      {"tpot_p50_s", "s", "serving: median time per output token (run-level)"},
      {"tpot_p99_s", "s", "serving: 99th-percentile time per output token (run-level)"},
      {"itl_p50_s", "s", "serving: median inter-token latency (run-level)"},
      {"itl_p99_s", "s", "serving: 99th-percentile inter-token latency (run-level)"},
      {"e2e_p50_s", "s", "serving: median end-to-end latency (run-level)"},
      {"e2e_p99_s", "s", "serving: 99th-percentile end-to-end latency (run-level)"},
      {"queue_p50_s", "s", "serving: median queueing delay, arrival to first batch (run-level)"},
      {"queue_p99_s", "s", "serving: 99th-percentile queueing delay (run-level)"},
      {"preemptions", "preemptions", "serving: sequences preempted (run-level)"},
      {"mean_batch_sequences", "sequences", "serving: time-weighted mean of the sequences in flight, admitted and not finished, all replicas together (run-level)"},
      {"mean_kv_use", "1", "serving: time-weighted mean fraction of KV-cache blocks in use (run-level)"},
      {"output_tokens", "tokens", "serving: output tokens generated in the window (run-level)"},
      {"energy_per_output_token_j", "J/token", "serving: facility energy per output token (run-level; empty when no output token)"},
      {"it_energy_per_output_token_j", "J/token", "serving: IT energy per output token (run-level)"},
      {"energy_per_request_j", "J/request", "serving: facility energy per request served (finishing) in the window (run-level)"},
      {"gco2e_gross_per_1000_tokens", "g CO2e", "serving: location-based CO2e per 1000 output tokens (run-level)"},
      {"gco2e_net_per_1000_tokens", "g CO2e", "serving: market-based CO2e per 1000 output tokens (run-level)"},
      {"gco2e_gross_per_request", "g CO2e", "serving: location-based CO2e per request served (finishing) in the window (run-level)"},
      {"gco2e_net_per_request", "g CO2e", "serving: market-based CO2e per request served (finishing) in the window (run-level)"},
      {"site_output_tokens", "tokens", "serving: output tokens generated in this datacenter"},
      {"site_energy_per_output_token_j", "J/token", "serving: this datacenter's facility energy per output token it generated (empty where a request's prefill and decode can run in different datacenters)"},
      {"site_gco2e_gross_per_1000_tokens", "g CO2e", "serving: this datacenter's location-based CO2e per 1000 output tokens it generated"},
      {"site_gco2e_net_per_1000_tokens", "g CO2e", "serving: this datacenter's market-based CO2e per 1000 output tokens it generated"},
  };
  return cols;
}

std::string csv_report(const std::vector<store::RunRecord>& runs) {
  std::string out;
  const auto& cols = csv_columns();
  for (std::size_t i = 0; i < cols.size(); ++i) out += (i ? "," : "") + std::string(cols[i].name);
  out += "\n";  // LF line ends, as CodeCarbon (pandas) writes them
  for (const auto& r : runs) {
    const bool serving = is_serving(r);
    const double duration_s = metric_or_nan(r, "duration_s");
    const double train_s = serving ? kNaN : metric_or_nan(r, store::metric_names::kTrainTime_s);
    // Training-only columns stay empty on serving rows and serving columns on training rows.
    auto train_num = [&](const char* metric) { return serving ? std::string() : num(metric_or_nan(r, metric)); };
    auto serve_num = [&](const std::string& metric, double factor = 1.0) { return serving ? num(metric_or_nan(r, metric) * factor) : std::string(); };
    auto serve_ratio = [&](const char* metric, const char* count, double factor = 1.0) {
      return serving ? num(serving_ratio(r, metric, count) * factor) : std::string();
    };
    const ServingSiteTable site = serving ? serving_site_table(r) : ServingSiteTable{};
    const std::string p99_met = serving && r.metric("slo_p99_met") ? (r.metric("slo_p99_met")->value != 0.0 ? "true" : "false") : "";
    std::vector<store::DatacenterResult> dcs = r.datacenters;
    const bool no_dc = dcs.empty();
    if (no_dc) dcs.emplace_back();
    std::map<std::string, std::string> licences, attributions, bases;
    for (const auto& s : datacenter_sources(r)) {
      licences[s.name] = s.licence;
      attributions[s.name] = s.attribution;
      bases[s.name] = s.grid_basis;
    }
    for (std::size_t k = 0; k < dcs.size(); ++k) {
      const store::DatacenterResult& d = dcs[k];
      auto dc_num = [&](double v) { return no_dc ? std::string() : num(v); };
      auto site_num = [&](const char* field) { return serving && !no_dc ? num(site.values[site.column(field)][k]) : std::string(); };
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
          attributions.count(d.name) ? attributions[d.name] : "",
          bases.count(d.name) ? bases[d.name] : "",
          num(units::seconds_to_days(train_s)),
          num(train_s),
          train_num("step_time_s"),
          train_num("step_time_spread_s"),
          train_num("steps"),
          num(metric_or_nan(r, "mfu")),
          train_num("hfu"),
          train_num("tokens_dropped_fraction"),
          num(metric_or_nan(r, "average_chip_power_w")),
          train_num("wan_bytes_per_step"),
          train_num("wan_time_per_step_s"),
          r.moesim_version,
          r.git_hash,
          std::to_string(r.seed),
          r.kind,
          serve_num("requests_measured"),
          serve_num("requests_completed"),
          serve_num("window_s"),
          serve_num("throughput_rps"),
          serve_num("input_tokens_per_s"),
          serve_num("output_tokens_per_s"),
          serve_num("output_tokens_per_s_per_device"),
          serve_num("goodput_fraction"),
          serve_num("goodput_rps"),
          serve_num("slo_ttft_s"),
          serve_num("slo_tpot_s"),
          p99_met,
          serve_num("ttft_p50_s"),
          serve_num("ttft_p99_s"),
          serve_num("tpot_p50_s"),
          serve_num("tpot_p99_s"),
          serve_num("itl_p50_s"),
          serve_num("itl_p99_s"),
          serve_num("e2e_p50_s"),
          serve_num("e2e_p99_s"),
          serve_num("queue_p50_s"),
          serve_num("queue_p99_s"),
          serve_num("preemptions"),
          serve_num("mean_batch_sequences"),
          serve_num("mean_kv_use"),
          serve_num("output_tokens"),
          serve_ratio("energy_per_output_token_j", "output_tokens"),
          serve_ratio("it_energy_per_output_token_j", "output_tokens"),
          serve_ratio("energy_per_request_j", "requests_completed"),
          serve_ratio("co2e_gross_kg_per_1k_tokens", "output_tokens", units::kGramsPerKg),
          serve_ratio("co2e_net_kg_per_1k_tokens", "output_tokens", units::kGramsPerKg),
          serve_ratio("co2e_gross_kg_per_request", "requests_completed", units::kGramsPerKg),
          serve_ratio("co2e_net_kg_per_request", "requests_completed", units::kGramsPerKg),
          site_num("output_tokens"),
          site_num("energy_per_output_token"),
          site_num("co2e_gross_per_1k_tokens"),
          site_num("co2e_net_per_1k_tokens"),
      };
      if (cells.size() != cols.size()) throw std::logic_error("csv_report: row and header differ in length");
      for (std::size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + csv_field(cells[i]);
      out += "\n";
    }
  }
  return out;
}

}  // namespace moesim::reports::detail
