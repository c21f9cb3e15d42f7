// SPDX-License-Identifier: Apache-2.0
#include "model.hpp"
#include "moesim/reports/markup.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <stdexcept>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"

namespace moesim::reports::detail {

using nlohmann::json;

double metric_or_nan(const store::RunRecord& r, const std::string& name) {
  const store::Metric* m = r.metric(name);
  return m != nullptr ? m->value : std::numeric_limits<double>::quiet_NaN();
}

double overhead_j(const store::DatacenterResult& d) { return d.facility_energy_j - d.it_energy_j - d.network_energy_j; }

Totals totals(const store::RunRecord& r) {
  Totals t;
  for (const auto& d : r.datacenters) {
    t.it_j += d.it_energy_j;
    t.network_j += d.network_energy_j;
    t.overhead_j += overhead_j(d);
    t.facility_j += d.facility_energy_j;
    t.gross_kg += d.co2e_gross_kg;
    t.net_kg += d.co2e_net_kg;
    t.embodied_kg += d.embodied_co2e_kg;
  }
  return t;
}

std::string run_label(const store::RunRecord& r) {
  return r.alternative_label.empty() ? fmt::format("run {}", r.id) : r.alternative_label;
}

bool has_embodied(const store::RunRecord& r) { return r.metric("embodied_co2e_kg") != nullptr; }

std::vector<SummaryRow> summary_rows(const store::RunRecord& r) {
  constexpr double kPercent = 0.01;  // a fraction shown in percent
  struct Spec {
    const char* label;
    const char* metric;
    double divisor;
    const char* unit;
    int significant;
  };
  static const Spec specs[] = {
      {"Training time", store::metric_names::kTrainTime_s, units::kSecondsPerDay, "days", 4},
      {"Steps", "steps", 1.0, "steps", 6},
      {"Step time (mean over simulated steps)", "step_time_s", 1.0, "s", 5},
      {"Step-time spread", "step_time_spread_s", 1.0, "s", 3},
      {"Model FLOPs utilisation (MFU)", "mfu", kPercent, "%", 3},
      {"Hardware FLOPs utilisation (HFU)", "hfu", kPercent, "%", 3},
      {"Token-to-expert assignments dropped (beyond expert capacity, of those dispatched)", "tokens_dropped_fraction", kPercent, "%", 3},
      {"Chips", "chips", 1.0, "chips", 6},
      {"Devices", "devices", 1.0, "devices", 6},
      {"Average power per chip", "average_chip_power_w", 1.0, "W", 4},
      {"Full-load power per chip (ceiling, host share included)", "peak_chip_power_w", 1.0, "W", 4},
      {"Energy-accounting duration", "duration_s", units::kSecondsPerDay, "days", 4},
      {"IT energy", "it_energy_j", units::kJoulesPerMwh, "MWh", 4},
      {"Network energy", "network_energy_j", units::kJoulesPerMwh, "MWh", 4},
      {"Facility energy ((IT + network) \u00d7 PUE, WAN without PUE)", "facility_energy_j", units::kJoulesPerMwh, "MWh", 4},
      {"CO2e gross (location-based)", "co2e_gross_kg", units::kKgPerTonne, "t", 4},
      {"CO2e net (market-based)", "co2e_net_kg", units::kKgPerTonne, "t", 4},
      {"CO2e embodied (chips, amortised)", "embodied_co2e_kg", units::kKgPerTonne, "t", 4},
      {"WAN traffic per step", "wan_bytes_per_step", units::kGB, "GB", 4},
      {"WAN time per step (WAN traffic in flight, overlapped or not)", "wan_time_per_step_s", 1.0, "s", 4},
  };
  std::vector<SummaryRow> out;
  for (const auto& s : specs) {
    const store::Metric* m = r.metric(s.metric);
    if (m == nullptr) continue;
    out.push_back({s.label, s.metric, m->value / s.divisor, s.unit, s.significant, ""});
    if (std::string(s.metric) == "network_energy_j")
      if (const store::Metric* wan = r.metric("wan_energy_j"); wan != nullptr && wan->value > 0.0)
        out.push_back({"of which WAN (carrier networks, no PUE)", "wan_energy_j", wan->value / s.divisor, s.unit, s.significant, ""});
    if (std::string(s.metric) == "network_energy_j" && r.metric("it_energy_j") && r.metric("facility_energy_j")) {
      const double overhead = r.metric("facility_energy_j")->value - r.metric("it_energy_j")->value - m->value;
      out.push_back({"PUE overhead (facility \u2212 IT \u2212 network)", "pue_overhead_j", overhead / units::kJoulesPerMwh, "MWh", 4, ""});
    }
  }
  return out;
}

const std::vector<DatacenterColumn>& site_columns() {
  constexpr double kPercent = 100.0;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  static const std::vector<DatacenterColumn> cols = {
      {"chips", "Chips", "chips", 6, [](const store::DatacenterResult& d) { return static_cast<double>(d.chips); }},
      {"share", "Share", "%", 4, [](const store::DatacenterResult& d) { return d.share * kPercent; }},
      {"pue", "PUE", "1", 4, [](const store::DatacenterResult& d) { return d.pue; }},
      {"gross_intensity", "Gross intensity", "kgCO2e/kWh", 4, [](const store::DatacenterResult& d) { return d.gross_kgco2e_per_kwh; }},
      {"net_intensity", "Net intensity", "kgCO2e/kWh", 4,
       [nan](const store::DatacenterResult& d) { return d.net_kgco2e_per_kwh ? *d.net_kgco2e_per_kwh : nan; }},
      {"cfe", "CFE", "%", 4,
       [nan](const store::DatacenterResult& d) { return d.cfe_fraction ? *d.cfe_fraction * kPercent : nan; }},
  };
  return cols;
}

std::vector<DatacenterColumn> energy_columns(bool with_embodied, bool small) {
  const double j = small ? units::kJoulesPerKwh : units::kJoulesPerMwh;
  const double kg = small ? 1.0 : units::kKgPerTonne;
  const std::string eu = small ? "kWh" : "MWh", mu = small ? "kg" : "t";
  std::vector<DatacenterColumn> cols = {
      {"it_energy", "IT energy", eu, 4, [j](const store::DatacenterResult& d) { return d.it_energy_j / j; }},
      {"network_energy", "Network energy", eu, 4, [j](const store::DatacenterResult& d) { return d.network_energy_j / j; }},
      {"overhead_energy", "PUE overhead", eu, 4, [j](const store::DatacenterResult& d) { return overhead_j(d) / j; }},
      {"facility_energy", "Facility energy", eu, 4, [j](const store::DatacenterResult& d) { return d.facility_energy_j / j; }},
      {"co2e_gross", "CO2e gross", mu, 4, [kg](const store::DatacenterResult& d) { return d.co2e_gross_kg / kg; }},
      {"co2e_net", "CO2e net", mu, 4, [kg](const store::DatacenterResult& d) { return d.co2e_net_kg / kg; }},
  };
  if (with_embodied)
    cols.push_back({"co2e_embodied", "CO2e embodied", mu, 4, [kg](const store::DatacenterResult& d) { return d.embodied_co2e_kg / kg; }});
  return cols;
}

const std::vector<RankingColumn>& ranking_columns() {
  static const std::vector<RankingColumn> cols = {
      {"train_days", "Training", "days", 4, [](const ComparisonRow& r) { return r.train_days; }},
      {"facility_energy", "Facility energy", "MWh", 4, [](const ComparisonRow& r) { return r.facility_energy_mwh; }},
      {"co2e_gross", "CO2e gross", "t", 4, [](const ComparisonRow& r) { return r.co2e_gross_t; }},
      {"co2e_net", "CO2e net", "t", 4, [](const ComparisonRow& r) { return r.co2e_net_t; }},
      {"wan_bytes_per_step", "WAN per step", "GB", 4, [](const ComparisonRow& r) { return r.wan_bytes_per_step / units::kGB; }},
      {"wan_time_per_step", "WAN time per step", "s", 4, [](const ComparisonRow& r) { return r.wan_time_per_step_s; }},
  };
  return cols;
}

const std::vector<RankingColumn>& serving_ranking_columns() {
  static const std::vector<RankingColumn> cols = {
      {"output_tokens_per_s", "Output throughput", "tokens/s", 4, [](const ComparisonRow& r) { return r.output_tokens_per_s; }},
      {"ttft_p99", "P99 TTFT", "ms", 4, [](const ComparisonRow& r) { return r.ttft_p99_ms; }},
      {"tpot_p99", "P99 TPOT", "ms", 4, [](const ComparisonRow& r) { return r.tpot_p99_ms; }},
      {"goodput", "Goodput", "%", 3, [](const ComparisonRow& r) { return to_percent(r.goodput_fraction); }},
      {"energy_per_output_token", "Energy per output token", "J/token", 4, [](const ComparisonRow& r) { return r.energy_per_output_token_j; }},
      {"co2e_gross_per_1k_tokens", "CO2e gross per 1000 tokens", "g", 4, [](const ComparisonRow& r) { return r.gco2e_gross_per_1k_tokens; }},
      {"co2e_net_per_1k_tokens", "CO2e net per 1000 tokens", "g", 4, [](const ComparisonRow& r) { return r.gco2e_net_per_1k_tokens; }},
  };
  return cols;
}

const std::vector<RankingColumn>& ranking_columns_for(const std::vector<ComparisonRow>& rows) {
  return !rows.empty() && rows.front().kind == "serving" ? serving_ranking_columns() : ranking_columns();
}

std::vector<bool> pareto_flags(const std::vector<std::pair<double, double>>& p) {
  std::vector<bool> on(p.size(), false);
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (std::isnan(p[i].first) || std::isnan(p[i].second)) continue;
    bool dominated = false;
    for (std::size_t j = 0; j < p.size() && !dominated; ++j) {
      if (j == i || std::isnan(p[j].first) || std::isnan(p[j].second)) continue;
      const bool no_worse = p[j].first <= p[i].first && p[j].second <= p[i].second;
      const bool better = p[j].first < p[i].first || p[j].second < p[i].second;
      dominated = no_worse && better;
    }
    on[i] = !dominated;
  }
  return on;
}

std::vector<ComparisonRow> rows_from_runs(const std::vector<store::RunRecord>& runs) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::string kind = runs_kind(runs, "a comparison");
  const bool serving = kind == "serving";
  std::vector<ComparisonRow> rows;
  for (const auto& r : runs) {
    ComparisonRow row{r.id, run_label(r), store::to_string(r.status), nan, nan, nan, nan, nan, nan, false, 0, kind,
                      nan, nan, nan, nan, nan, nan, nan, nan};
    if (r.status == store::RunStatus::complete) {
      if (!serving) row.train_days = units::seconds_to_days(metric_or_nan(r, store::metric_names::kTrainTime_s));
      if (!r.datacenters.empty()) {
        const Totals t = totals(r);
        row.facility_energy_mwh = units::joules_to_mwh(t.facility_j);
        row.co2e_gross_t = units::kg_to_tonnes(t.gross_kg);
        row.co2e_net_t = units::kg_to_tonnes(t.net_kg);
      }
      if (!serving) {
        row.wan_bytes_per_step = metric_or_nan(r, "wan_bytes_per_step");
        row.wan_time_per_step_s = metric_or_nan(r, "wan_time_per_step_s");
      } else {
        row.throughput_rps = metric_or_nan(r, "throughput_rps");
        row.output_tokens_per_s = metric_or_nan(r, "output_tokens_per_s");
        row.ttft_p99_ms = to_ms(metric_or_nan(r, "ttft_p99_s"));
        row.tpot_p99_ms = to_ms(metric_or_nan(r, "tpot_p99_s"));
        row.goodput_fraction = metric_or_nan(r, "goodput_fraction");
        row.energy_per_output_token_j = serving_ratio(r, "energy_per_output_token_j", "output_tokens");
        row.gco2e_gross_per_1k_tokens = to_grams(serving_ratio(r, "co2e_gross_kg_per_1k_tokens", "output_tokens"));
        row.gco2e_net_per_1k_tokens = to_grams(serving_ratio(r, "co2e_net_kg_per_1k_tokens", "output_tokens"));
        row.max_rate_rps = metric_or_nan(r, "max_rate_rps");
      }
    }
    rows.push_back(std::move(row));
  }
  // Figure of merit (x: time, y: CO2e), both minimised: training (days, t), serving (P99 TTFT, g per 1000 tokens).
  auto x_of = [serving](const ComparisonRow& row) { return serving ? row.ttft_p99_ms : row.train_days; };
  auto y_of = [serving](const ComparisonRow& row) { return serving ? row.gco2e_gross_per_1k_tokens : row.co2e_gross_t; };
  auto rankable = [&](const ComparisonRow& row) { return row.status == "complete" && std::isfinite(x_of(row)) && std::isfinite(y_of(row)); };
  std::vector<ComparisonRow> ranked, rest;
  for (auto& row : rows) (rankable(row) ? ranked : rest).push_back(row);
  std::sort(ranked.begin(), ranked.end(), [&](const ComparisonRow& a, const ComparisonRow& b) {
    if (y_of(a) != y_of(b)) return y_of(a) < y_of(b);
    if (x_of(a) != x_of(b)) return x_of(a) < x_of(b);
    return a.run_id < b.run_id;
  });
  std::sort(rest.begin(), rest.end(), [](const ComparisonRow& a, const ComparisonRow& b) { return a.run_id < b.run_id; });
  std::vector<std::pair<double, double>> points;
  for (const auto& row : ranked) points.emplace_back(x_of(row), y_of(row));
  const std::vector<bool> front = pareto_flags(points);
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    ranked[i].rank = static_cast<int>(i) + 1;
    ranked[i].pareto = front[i];
  }
  ranked.insert(ranked.end(), rest.begin(), rest.end());
  return ranked;
}

DisplayUnit energy_unit(double max_j) {
  if (max_j >= units::kJoulesPerMwh) return {units::kJoulesPerMwh, "MWh"};
  return {units::kJoulesPerKwh, "kWh"};
}

DisplayUnit mass_unit(double max_kg) {
  if (max_kg >= units::kKgPerTonne) return {units::kKgPerTonne, "t"};
  return {1.0, "kg"};
}

DisplayUnit power_unit(double max_w) {
  constexpr double kWattsPerKilowatt = 1e3;  // SI prefix
  constexpr double kWattsPerMegawatt = 1e6;  // SI prefix
  if (max_w >= 10.0 * kWattsPerMegawatt) return {kWattsPerMegawatt, "MW"};
  if (max_w >= 10.0 * kWattsPerKilowatt) return {kWattsPerKilowatt, "kW"};
  return {1.0, "W"};
}

LicenceInfo licence_info(const std::string& id) {
  // SPDX identifiers used by profiles/ (profiles/grid/datasets.yaml) and their canonical texts.
  static const std::map<std::string, LicenceInfo> known = {
      {"Apache-2.0", {"Apache-2.0", "Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0", ""}},
      {"ODbL-1.0",
       {"ODbL-1.0", "Open Database License (ODbL) v1.0", "https://opendatacommons.org/licenses/odbl/1-0/",
        "A database derived from this data (for example this report's table of intensities) must be offered under the "
        "ODbL and keep the attribution."}},
      {"CC-BY-SA-4.0",
       {"CC-BY-SA-4.0", "Creative Commons Attribution-ShareAlike 4.0 International", "https://creativecommons.org/licenses/by-sa/4.0/",
        "Adaptations must credit the source and be shared under the same licence."}},
      {"CC-BY-4.0",
       {"CC-BY-4.0", "Creative Commons Attribution 4.0 International", "https://creativecommons.org/licenses/by/4.0/",
        "Reuse must credit the source."}},
  };
  auto it = known.find(id);
  if (it != known.end()) return it->second;
  return {id, id.empty() ? std::string("not stated") : id, "", ""};
}

std::string grid_dataset(const std::string& datacenter_name, const json& entry) {
  static const std::vector<std::string> datasets = {"google", "electricity_maps", "ember"};
  for (const auto& d : datasets)
    if (datacenter_name.rfind("grid:" + d + "/", 0) == 0) return d;
  if (entry.is_object() && entry.contains("sources") && entry["sources"].is_object()) {
    for (const auto& [k, v] : entry["sources"].items()) {
      if (!v.is_string()) continue;
      const std::string s = v.get<std::string>();
      for (const auto& d : datasets)
        if (s.find("grid key " + d + "/") != std::string::npos) return d;
    }
  }
  return "";
}

std::string dataset_attribution(const std::string& dataset) {
  // The attribution each dataset's notice requires: profiles/grid/<dataset>/LICENCE.md.
  if (dataset == "google")
    return "Google Cloud region carbon data, \xC2\xA9 Google LLC, from GoogleCloudPlatform/region-carbon-info (commit 49f3f26)";
  if (dataset == "electricity_maps")
    return "Data from Electricity Maps (https://www.electricitymaps.com), yearly averages 2021\xE2\x80\x93" "2025, as republished in CO2.js 0.19";
  if (dataset == "ember")
    return "Data from Ember (https://ember-energy.org), average emissions intensity of electricity generation, as republished in CO2.js 0.19";
  return "";
}

std::vector<DatacenterSource> datacenter_sources(const store::RunRecord& r) {
  std::vector<DatacenterSource> out;
  const json& p = r.provenance;
  if (!p.is_object() || !p.contains("datacenters") || !p["datacenters"].is_array()) return out;
  for (const auto& e : p["datacenters"]) {
    if (!e.is_object()) continue;
    DatacenterSource s;
    s.name = e.contains("name") && e["name"].is_string() ? e["name"].get<std::string>() : "";
    s.licence = e.contains("licence") && e["licence"].is_string() ? e["licence"].get<std::string>() : "";
    s.notes = e.contains("notes") && e["notes"].is_string() ? e["notes"].get<std::string>() : "";
    s.dataset = grid_dataset(s.name, e);
    s.grid_basis = e.contains("grid_basis") && e["grid_basis"].is_string() ? e["grid_basis"].get<std::string>() : "";
    s.attribution = e.contains("attribution") && e["attribution"].is_string() ? e["attribution"].get<std::string>()
                                                                                : dataset_attribution(s.dataset);
    if (e.contains("sources") && e["sources"].is_object())
      for (const auto& [k, v] : e["sources"].items()) s.sources.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
    // An hourly series replaces the annual figure the profile cites: say which series, which hours, and the
    // energy-weighted intensities it gave, so that the report's CO2e can be traced to its data.
    if (e.contains("intensity_basis") && e["intensity_basis"].is_object()) {
      const json& b = e["intensity_basis"];
      auto str = [&](const char* k) { return b.contains(k) && b[k].is_string() ? b[k].get<std::string>() : std::string(); };
      if (str("gross") == "hourly")
        s.sources.emplace_back(
            "intensity_basis",
            fmt::format("hourly series {} ({}); the job, {} to {}, touches {} of its hours from {}: energy-weighted gross {:.4g} "
                        "kgCO2e/kWh, net {:.4g} ({}); the annual figure above is not used",
                        str("series_file"), str("series_covers"), str("job_start_utc"), str("job_end_utc"),
                        b.value("hours_touched", 0), str("first_hour_utc"), b.value("effective_gross_kgco2e_per_kwh", 0.0),
                        b.value("effective_net_kgco2e_per_kwh", 0.0), str("net")));
      if (!str("note").empty()) s.sources.emplace_back("intensity_basis_note", str("note"));
    }
    out.push_back(std::move(s));
  }
  return out;
}

namespace {

double provenance_number(const nlohmann::json& provenance, const char* key) {
  return provenance.is_object() && provenance.contains(key) && provenance[key].is_number() ? provenance[key].get<double>()
                                                                                           : std::numeric_limits<double>::quiet_NaN();
}

/** a and b equal to the clock's rounding (1e-9 relative, as the monitor compares sample times). */
bool same_time(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(1.0, std::fabs(b)); }

/** When a serving run ends: its last completion, or its window's end when that is later (an open-loop window is
 *  simulated to its end). NaN when the run stores neither. */
double run_end_s(const store::RunRecord& r) {
  const double makespan = metric_or_nan(r, "makespan_s");
  const double window_end = metric_or_nan(r, "window_start_s") + metric_or_nan(r, "window_s");
  if (!std::isfinite(window_end)) return makespan;
  return std::isfinite(makespan) && makespan > window_end ? makespan : window_end;
}

}  // namespace

SeriesSpan series_span(const store::RunRecord& r) {
  SeriesSpan out;
  const store::Series* s = find_series(r, "power_w");
  if (s == nullptr || s->x.empty()) return out;
  const double interval = provenance_number(r.provenance, "series_interval_s");
  double last = provenance_number(r.provenance, "series_last_interval_s");
  if (!std::isfinite(last)) last = interval;
  out.points = s->x.size();
  out.start_s = s->x.front();
  out.end_s = s->x.back() + (std::isfinite(last) ? last : 0.0);
  const double run_end = run_end_s(r);
  out.whole_run = same_time(out.start_s, 0.0) && std::isfinite(run_end) && (same_time(out.end_s, run_end) || out.end_s > run_end);
  return out;
}

std::string interval_text(const store::RunRecord& r) {
  const double interval = provenance_number(r.provenance, "series_interval_s");
  const double first = provenance_number(r.provenance, "series_first_interval_s");
  const double last = provenance_number(r.provenance, "series_last_interval_s");
  if (!std::isfinite(interval)) return "";
  std::string out = fmt::format(" ({} s", format_value(interval));
  if (std::isfinite(first) && first > 0.0 && first < interval * (1.0 - 1e-9))
    out += fmt::format("; the first, {} s, from 0", format_value(first));
  if (std::isfinite(last) && last > 0.0 && last < interval * (1.0 - 1e-9)) {
    const SeriesSpan span = series_span(r);
    const double window_end = metric_or_nan(r, "window_start_s") + metric_or_nan(r, "window_s");
    const bool at_window_end = !std::isfinite(span.end_s) || !std::isfinite(window_end) || same_time(span.end_s, window_end);
    out += fmt::format("; the last, {} s, to {}", format_value(last), at_window_end ? "the window's end" : "the last completion");
  }
  return out + ")";
}

std::string series_span_text(const store::RunRecord& r) {
  const SeriesSpan span = series_span(r);
  if (span.points == 0) return "";
  const std::string n = fmt::format("{} sample{}", span.points, span.points == 1 ? "" : "s");
  if (span.whole_run) return fmt::format("{} over the whole run, 0 to {} s", n, format_value(span.end_s));
  return fmt::format("{} from {} s to {} s of a run lasting {} s", n, format_value(span.start_s), format_value(span.end_s),
                     format_value(run_end_s(r)));
}

std::string grid_basis_note(const std::vector<store::RunRecord>& runs) {
  // basis -> datacenter -> the alternatives placed there, in run order
  std::map<std::string, std::vector<std::pair<std::string, std::vector<std::string>>>> by_basis;
  for (const auto& r : runs)
    for (const auto& s : datacenter_sources(r)) {
      auto& sites = by_basis[s.grid_basis.empty() ? "not stated" : s.grid_basis];
      auto it = std::find_if(sites.begin(), sites.end(), [&](const auto& e) { return e.first == s.name; });
      if (it == sites.end()) it = sites.insert(sites.end(), {s.name, {}});
      if (std::find(it->second.begin(), it->second.end(), run_label(r)) == it->second.end()) it->second.push_back(run_label(r));
    }
  if (by_basis.count("lifecycle") == 0 || by_basis.count("operational") == 0) return "";
  std::string parts;
  for (const auto& [basis, sites] : by_basis) {
    std::string list;
    for (const auto& [site, labels] : sites) {
      std::string who;
      for (const auto& l : labels) who += (who.empty() ? "" : ", ") + l;
      list += fmt::format("{}{} ({})", list.empty() ? "" : ", ", site, who);
    }
    parts += fmt::format("{}{}: {}", parts.empty() ? "" : "; ", basis, list);
  }
  return fmt::format("Grid intensities on different accounting bases: {}. Lifecycle figures include upstream emissions "
                     "(fuel supply, plant construction) that operational figures leave out, so part of the difference "
                     "between these alternatives is the basis, not the grid.",
                     parts);
}

std::vector<LicenceUse> licence_uses(const std::vector<store::RunRecord>& runs) {
  std::vector<LicenceUse> out;
  for (const auto& r : runs) {
    for (const auto& s : datacenter_sources(r)) {
      auto it = std::find_if(out.begin(), out.end(), [&](const LicenceUse& u) { return u.licence.id == s.licence && u.dataset == s.dataset; });
      if (it == out.end()) {
        out.push_back({licence_info(s.licence), s.dataset, s.attribution, {}});
        it = out.end() - 1;
      }
      if (std::find(it->datacenters.begin(), it->datacenters.end(), s.name) == it->datacenters.end()) it->datacenters.push_back(s.name);
    }
  }
  return out;
}

namespace {
void flatten_into(const json& j, const std::string& path, std::vector<std::pair<std::string, std::string>>& out) {
  if (j.is_object() && !j.empty()) {
    for (const auto& [k, v] : j.items()) flatten_into(v, path.empty() ? k : path + "." + k, out);
  } else if (j.is_array() && !j.empty()) {
    for (std::size_t i = 0; i < j.size(); ++i) flatten_into(j[i], fmt::format("{}[{}]", path, i), out);
  } else if (!j.is_object() && !j.is_array()) {  // empty containers hold no setting: not a leaf
    out.emplace_back(path, j.is_string() ? j.get<std::string>() : j.dump());
  }
}
}  // namespace

std::vector<std::pair<std::string, std::string>> flatten(const json& j) {
  std::vector<std::pair<std::string, std::string>> out;
  flatten_into(j, "", out);
  return out;
}

std::string compute_path_summary(const json& p) {
  if (!p.is_object() || !p.contains("compute_paths") || !p["compute_paths"].is_object()) return "";
  std::map<std::string, int> counts;
  for (const auto& [k, v] : p["compute_paths"].items()) ++counts[v.is_string() ? v.get<std::string>() : v.dump()];
  std::string out;
  for (const auto& [path, n] : counts) out += fmt::format("{}{} {}", out.empty() ? "" : ", ", path, n);
  return out;
}

std::string prov_string(const json& p, const std::string& key) {
  if (p.is_object() && p.contains(key) && p[key].is_string()) return p[key].get<std::string>();
  return "";
}

std::vector<store::PhaseBreakdown> breakdown_by_contribution(const store::RunRecord& r) {
  std::vector<store::PhaseBreakdown> b = r.breakdown;
  std::stable_sort(b.begin(), b.end(), [](const store::PhaseBreakdown& x, const store::PhaseBreakdown& y) {
    if (x.critical_path_s != y.critical_path_s) return x.critical_path_s > y.critical_path_s;
    return x.phase_kind < y.phase_kind;
  });
  return b;
}

std::vector<std::string> top_phase_kinds(const std::vector<const store::RunRecord*>& runs, std::size_t max_kinds, bool* has_other) {
  std::map<std::string, double> weight;
  for (const auto* r : runs)
    for (const auto& b : r->breakdown) weight[b.phase_kind] += b.critical_path_s;
  std::vector<std::pair<double, std::string>> order;
  for (const auto& [k, v] : weight) order.emplace_back(-v, k);
  std::sort(order.begin(), order.end());
  std::vector<std::string> kinds;
  for (const auto& [v, k] : order)
    if (kinds.size() < max_kinds) kinds.push_back(k);
  if (has_other) *has_other = order.size() > kinds.size();
  return kinds;
}

std::vector<ScenarioDifference> scenario_differences(const std::vector<store::RunRecord>& runs) {
  std::vector<ScenarioDifference> out;
  if (runs.empty()) return out;
  const auto base_leaves = flatten(runs.front().scenario);
  const std::map<std::string, std::string> base(base_leaves.begin(), base_leaves.end());
  for (std::size_t i = 1; i < runs.size(); ++i) {
    const auto leaves = flatten(runs[i].scenario);
    std::set<std::string> seen;
    for (const auto& [path, value] : leaves) {
      seen.insert(path);
      auto it = base.find(path);
      if (it == base.end() || it->second != value) out.push_back({run_label(runs[i]), path, it == base.end() ? "(absent)" : it->second, value});
    }
    for (const auto& [path, value] : base_leaves)
      if (!seen.count(path)) out.push_back({run_label(runs[i]), path, value, "(absent)"});
  }
  return out;
}

const store::Series* power_series(const store::RunRecord& r) {
  for (const auto& s : r.series)
    if (s.name == "power_w") return &s;
  return nullptr;
}


// ---- serving runs --------------------------------------------------------------------------------

bool is_serving(const store::RunRecord& r) { return r.kind == "serving"; }

const store::Series* find_series(const store::RunRecord& r, const std::string& name) {
  for (const auto& s : r.series)
    if (s.name == name) return &s;
  return nullptr;
}

std::string pinned_power_note(const store::RunRecord& r) {
  if (!(metric_or_nan(r, "power_pinned") == 1.0)) return "";
  return fmt::format("The energy totals use energy.average_chip_power_w = {} W per chip (pinned); this series is the simulated "
                     "power, so it does not integrate to them.",
                     format_value(metric_or_nan(r, "average_chip_power_w"), 4));
}

double serving_ratio(const store::RunRecord& r, const std::string& metric, const std::string& count_metric) {
  const double count = metric_or_nan(r, count_metric);
  // A run stored before its count was recorded keeps the ratio it was stored with.
  if (std::isnan(count)) return metric_or_nan(r, metric);
  if (!(count > 0.0)) return std::numeric_limits<double>::quiet_NaN();
  return metric_or_nan(r, metric);
}

std::vector<SummaryRow> serving_summary_rows(const store::RunRecord& r) {
  struct Spec {
    const char* label;
    const char* metric;
    double (*convert)(double);  ///< stored (SI) -> shown
    const char* unit;
    int significant;
    const char* count;  ///< metric the figure is a ratio to (NaN when it is not positive), or nullptr
  };
  static const Spec specs[] = {
      {"Requests measured (arriving in the window)", "requests_measured", as_is, "requests", 7, nullptr},
      {"Requests served (finishing in the window)", "requests_completed", as_is, "requests", 7, nullptr},
      {"Requests simulated (all arrivals)", "requests_total", as_is, "requests", 7, nullptr},
      {"Measurement window", "window_s", as_is, "s", 4, nullptr},
      {"Window start (end of the warm-up)", "window_start_s", as_is, "s", 4, nullptr},
      {"Throughput (requests served per second)", "throughput_rps", as_is, "requests/s", 4, nullptr},
      {"Input tokens per second", "input_tokens_per_s", as_is, "tokens/s", 4, nullptr},
      {"Output tokens per second", "output_tokens_per_s", as_is, "tokens/s", 4, nullptr},
      {"Output tokens per second per device", "output_tokens_per_s_per_device", as_is, "tokens/s", 4, nullptr},
      {"Input tokens (window)", "input_tokens", as_is, "tokens", 7, nullptr},
      {"Output tokens (window)", "output_tokens", as_is, "tokens", 7, nullptr},
      {"Goodput (requests within both SLOs)", "goodput_fraction", to_percent, "%", 3, nullptr},
      {"Goodput rate", "goodput_rps", as_is, "requests/s", 4, nullptr},
      {"TTFT limit (SLO)", "slo_ttft_s", to_ms, "ms", 4, nullptr},
      {"TPOT limit (SLO)", "slo_tpot_s", to_ms, "ms", 4, nullptr},
      {"P99 TTFT and P99 TPOT within the limits", "slo_p99_met", as_is, "", 1, nullptr},
      {"Preemptions", "preemptions", as_is, "preemptions", 7, nullptr},
      {"Mean sequences in flight (all replicas)", "mean_batch_sequences", as_is, "sequences", 4, nullptr},
      {"Mean KV-cache use", "mean_kv_use", to_percent, "%", 3, nullptr},
      {"Mean queue length (requests waiting for admission)", "mean_queue_requests", as_is, "requests", 4, nullptr},
      {"Model FLOPs utilisation (MFU)", "mfu", to_percent, "%", 3, nullptr},
      {"Energy per output token (facility)", "energy_per_output_token_j", as_is, "J/token", 4, "output_tokens"},
      {"IT energy per output token", "it_energy_per_output_token_j", as_is, "J/token", 4, "output_tokens"},
      {"Energy per request (facility)", "energy_per_request_j", as_is, "J/request", 4, "requests_completed"},
      {"CO2e gross per 1000 output tokens (location-based)", "co2e_gross_kg_per_1k_tokens", to_grams, "g", 4, "output_tokens"},
      {"CO2e net per 1000 output tokens (market-based)", "co2e_net_kg_per_1k_tokens", to_grams, "g", 4, "output_tokens"},
      {"CO2e embodied per 1000 output tokens", "embodied_co2e_kg_per_1k_tokens", to_grams, "g", 4, "output_tokens"},
      {"CO2e gross per request", "co2e_gross_kg_per_request", to_grams, "g", 4, "requests_completed"},
      {"CO2e net per request", "co2e_net_kg_per_request", to_grams, "g", 4, "requests_completed"},
      {"Chips", "chips", as_is, "chips", 6, nullptr},
      {"Devices", "devices", as_is, "devices", 6, nullptr},
      {"Average power per chip", "average_chip_power_w", as_is, "W", 4, nullptr},
      {"Full-load power per chip (ceiling, host share included)", "peak_chip_power_w", as_is, "W", 4, nullptr},
      {"Energy-accounting duration (the window)", "duration_s", as_is, "s", 4, nullptr},
      {"IT energy", "it_energy_j", to_kwh, "kWh", 4, nullptr},
      {"Network energy", "network_energy_j", to_kwh, "kWh", 4, nullptr},
      {"Facility energy ((IT + network) \u00d7 PUE, WAN without PUE)", "facility_energy_j", to_kwh, "kWh", 4, nullptr},
      {"CO2e gross (location-based)", "co2e_gross_kg", as_is, "kg", 4, nullptr},
      {"CO2e net (market-based)", "co2e_net_kg", as_is, "kg", 4, nullptr},
      {"CO2e embodied (chips, amortised)", "embodied_co2e_kg", as_is, "kg", 4, nullptr},
      {"KV-cache transfers between pools", "kv_transfer_bytes", to_gb, "GB", 4, nullptr},
      {"WAN traffic", "wan_bytes", to_gb, "GB", 4, nullptr},
      {"Makespan (last completion)", "makespan_s", as_is, "s", 4, nullptr},
  };
  std::vector<SummaryRow> out;
  for (const auto& s : specs) {
    const store::Metric* m = r.metric(s.metric);
    if (m == nullptr) continue;
    const double v = s.count != nullptr ? serving_ratio(r, s.metric, s.count) : m->value;
    SummaryRow row{s.label, s.metric, s.convert(v), s.unit, s.significant, ""};
    if (std::string(s.metric) == "slo_p99_met") row.text = m->value != 0.0 ? "yes" : "no";
    out.push_back(std::move(row));
    if (std::string(s.metric) == "network_energy_j")
      if (const store::Metric* wan = r.metric("wan_energy_j"); wan != nullptr && wan->value > 0.0)
        out.push_back({"of which WAN (carrier networks, no PUE)", "wan_energy_j", to_kwh(wan->value), "kWh", 4, ""});
    if (std::string(s.metric) == "network_energy_j" && r.metric("it_energy_j") && r.metric("facility_energy_j")) {
      const double overhead = r.metric("facility_energy_j")->value - r.metric("it_energy_j")->value - m->value;
      out.push_back({"PUE overhead (facility \u2212 IT \u2212 network)", "pue_overhead_j", to_kwh(overhead), "kWh", 4, ""});
    }
  }
  return out;
}

const std::vector<LatencyStat>& latency_stats() {
  static const std::vector<LatencyStat> stats = {{"mean", "Mean"}, {"p50", "P50"}, {"p90", "P90"},
                                                 {"p95", "P95"},   {"p99", "P99"}, {"max", "Max"}};
  return stats;
}

double LatencyRow::at(const std::string& stat) const {
  const auto& stats = latency_stats();
  for (std::size_t i = 0; i < stats.size() && i < ms.size(); ++i)
    if (stats[i].key == stat) return ms[i];
  return std::numeric_limits<double>::quiet_NaN();
}

std::vector<LatencyRow> latency_rows(const store::RunRecord& r) {
  static const std::pair<const char*, const char*> dists[] = {{"ttft", "Time to first token (TTFT)"},
                                                               {"tpot", "Time per output token (TPOT)"},
                                                               {"itl", "Inter-token latency (ITL)"},
                                                               {"e2e", "End-to-end latency (E2E)"},
                                                               {"queue", "Queueing (arrival to first batch)"}};
  std::vector<LatencyRow> out;
  for (const auto& [key, label] : dists) {
    LatencyRow row{key, label, {}};
    for (const auto& s : latency_stats()) row.ms.push_back(to_ms(metric_or_nan(r, fmt::format("{}_{}_s", key, s.key))));
    out.push_back(std::move(row));
  }
  return out;
}

namespace {
std::string site_metric(const store::DatacenterResult& d, const char* what) { return fmt::format("site.{}.{}", d.name, what); }
}  // namespace

const std::vector<ServingSiteColumn>& serving_site_columns() {
  using DC = store::DatacenterResult;
  using RR = store::RunRecord;
  static const std::vector<ServingSiteColumn> cols = {
      {"output_tokens", "Output tokens", "tokens", 7, [](const RR& r, const DC& d) { return metric_or_nan(r, site_metric(d, "output_tokens")); },
       [](const RR& r) { return metric_or_nan(r, "output_tokens"); }},
      {"energy_per_output_token", "Energy per output token", "J/token", 4,
       [](const RR& r, const DC& d) { return serving_ratio(r, site_metric(d, "energy_per_output_token_j"), site_metric(d, "output_tokens")); },
       [](const RR& r) { return serving_ratio(r, "energy_per_output_token_j", "output_tokens"); }},
      {"co2e_gross_per_1k_tokens", "CO2e gross per 1000 tokens", "g", 4,
       [](const RR& r, const DC& d) {
         return to_grams(serving_ratio(r, site_metric(d, "co2e_gross_kg_per_1k_tokens"), site_metric(d, "output_tokens")));
       },
       [](const RR& r) { return to_grams(serving_ratio(r, "co2e_gross_kg_per_1k_tokens", "output_tokens")); }},
      {"co2e_net_per_1k_tokens", "CO2e net per 1000 tokens", "g", 4,
       [](const RR& r, const DC& d) {
         return to_grams(serving_ratio(r, site_metric(d, "co2e_net_kg_per_1k_tokens"), site_metric(d, "output_tokens")));
       },
       [](const RR& r) { return to_grams(serving_ratio(r, "co2e_net_kg_per_1k_tokens", "output_tokens")); }},
  };
  return cols;
}

std::size_t ServingSiteTable::column(const std::string& field) const {
  for (std::size_t c = 0; c < columns.size(); ++c)
    if (columns[c].field == field) return c;
  throw std::logic_error("ServingSiteTable: no column " + field);
}

ServingSiteTable serving_site_table(const store::RunRecord& r) {
  ServingSiteTable t;
  t.columns = serving_site_columns();
  for (const auto& c : t.columns) {
    std::vector<double> v;
    for (const auto& d : r.datacenters) v.push_back(c.value(r, d));
    t.values.push_back(std::move(v));
    t.totals.push_back(c.total(r));
  }
  const std::size_t tokens = t.column("output_tokens"), per_token = t.column("energy_per_output_token");
  for (std::size_t d = 0; d < r.datacenters.size(); ++d)
    if (t.values[tokens][d] > 0.0 && std::isnan(t.values[per_token][d]))
      t.note = "No per-datacenter figure per token where a request's prefill and decode can run in different datacenters "
               "(disaggregated pools): a prefill datacenter is credited with each request's first token and a decode "
               "datacenter with the others, so its energy over its tokens is not the cost of a token. The run's own figure "
               "(All datacenters) is.";
  return t;
}

const std::vector<PoolColumn>& pool_columns() {
  static const std::vector<PoolColumn> cols = {
      {"replicas", "Replicas", "1", 1.0, 6},
      {"devices_per_replica", "Devices per replica", "1", 1.0, 6},
      {"weights_bytes", "Weights per device", "GB", units::kGB, 4},
      {"workspace_bytes", "Workspace per device", "GB", units::kGB, 4},
      {"kv_bytes", "KV cache per device", "GB", units::kGB, 4},
      {"kv_bytes_per_token", "KV cache per token", "B", 1.0, 6},
      {"kv_blocks", "KV blocks", "1", 1.0, 9},
      {"block_tokens", "Tokens per block", "1", 1.0, 6},
  };
  return cols;
}

double pool_value(const json& pool, const PoolColumn& c) {
  if (!pool.is_object() || !pool.contains(c.key) || !pool[c.key].is_number()) return std::numeric_limits<double>::quiet_NaN();
  return pool[c.key].get<double>() / c.divisor;
}

std::vector<json> provenance_pools(const json& p) {
  std::vector<json> out;
  if (p.is_object() && p.contains("pools") && p["pools"].is_array())
    for (const auto& e : p["pools"]) out.push_back(e);
  return out;
}

std::string runs_kind(const std::vector<store::RunRecord>& runs, const std::string& context) {
  std::string training, serving;
  for (const auto& r : runs) {
    std::string& ids = is_serving(r) ? serving : training;
    ids += fmt::format("{}{}", ids.empty() ? "" : ", ", r.id);
  }
  if (!training.empty() && !serving.empty())
    throw Error(fmt::format("{} mixes training runs ({}) and serving runs ({}): training alternatives are ranked by gross CO2e "
                            "per job and serving alternatives by gross CO2e per 1000 output tokens, so they cannot be ranked "
                            "together; compare each kind separately",
                            context, training, serving));
  return serving.empty() ? "training" : "serving";
}

}  // namespace moesim::reports::detail
