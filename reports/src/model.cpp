// SPDX-License-Identifier: Apache-2.0
#include "model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>

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
      {"Tokens dropped (beyond expert capacity)", "tokens_dropped_fraction", kPercent, "%", 3},
      {"Chips", "chips", 1.0, "chips", 6},
      {"Devices", "devices", 1.0, "devices", 6},
      {"Average power per chip", "average_chip_power_w", 1.0, "W", 4},
      {"Peak power per chip", "peak_chip_power_w", 1.0, "W", 4},
      {"Energy-accounting duration", "duration_s", units::kSecondsPerDay, "days", 4},
      {"IT energy", "it_energy_j", units::kJoulesPerMwh, "MWh", 4},
      {"Network energy", "network_energy_j", units::kJoulesPerMwh, "MWh", 4},
      {"Facility energy (IT + network) \u00d7 PUE", "facility_energy_j", units::kJoulesPerMwh, "MWh", 4},
      {"CO2e gross (location-based)", "co2e_gross_kg", units::kKgPerTonne, "t", 4},
      {"CO2e net (market-based)", "co2e_net_kg", units::kKgPerTonne, "t", 4},
      {"CO2e embodied (chips, amortised)", "embodied_co2e_kg", units::kKgPerTonne, "t", 4},
      {"WAN traffic per step", "wan_bytes_per_step", units::kGB, "GB", 4},
      {"WAN time per step (critical path)", "wan_time_per_step_s", 1.0, "s", 4},
  };
  std::vector<SummaryRow> out;
  for (const auto& s : specs) {
    const store::Metric* m = r.metric(s.metric);
    if (m == nullptr) continue;
    out.push_back({s.label, s.metric, m->value / s.divisor, s.unit, s.significant});
    if (std::string(s.metric) == "network_energy_j" && r.metric("it_energy_j") && r.metric("facility_energy_j")) {
      const double overhead = r.metric("facility_energy_j")->value - r.metric("it_energy_j")->value - m->value;
      out.push_back({"PUE overhead (facility \u2212 IT \u2212 network)", "pue_overhead_j", overhead / units::kJoulesPerMwh, "MWh", 4});
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

std::vector<DatacenterColumn> energy_columns(bool with_embodied) {
  std::vector<DatacenterColumn> cols = {
      {"it_energy", "IT energy", "MWh", 4, [](const store::DatacenterResult& d) { return units::joules_to_mwh(d.it_energy_j); }},
      {"network_energy", "Network energy", "MWh", 4, [](const store::DatacenterResult& d) { return units::joules_to_mwh(d.network_energy_j); }},
      {"overhead_energy", "PUE overhead", "MWh", 4, [](const store::DatacenterResult& d) { return units::joules_to_mwh(overhead_j(d)); }},
      {"facility_energy", "Facility energy", "MWh", 4, [](const store::DatacenterResult& d) { return units::joules_to_mwh(d.facility_energy_j); }},
      {"co2e_gross", "CO2e gross", "t", 4, [](const store::DatacenterResult& d) { return units::kg_to_tonnes(d.co2e_gross_kg); }},
      {"co2e_net", "CO2e net", "t", 4, [](const store::DatacenterResult& d) { return units::kg_to_tonnes(d.co2e_net_kg); }},
  };
  if (with_embodied)
    cols.push_back({"co2e_embodied", "CO2e embodied", "t", 4, [](const store::DatacenterResult& d) { return units::kg_to_tonnes(d.embodied_co2e_kg); }});
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
  std::vector<ComparisonRow> rows;
  for (const auto& r : runs) {
    ComparisonRow row{r.id, run_label(r), store::to_string(r.status), nan, nan, nan, nan, nan, nan, false, 0};
    if (r.status == store::RunStatus::complete) {
      row.train_days = units::seconds_to_days(metric_or_nan(r, store::metric_names::kTrainTime_s));
      if (!r.datacenters.empty()) {
        const Totals t = totals(r);
        row.facility_energy_mwh = units::joules_to_mwh(t.facility_j);
        row.co2e_gross_t = units::kg_to_tonnes(t.gross_kg);
        row.co2e_net_t = units::kg_to_tonnes(t.net_kg);
      }
      row.wan_bytes_per_step = metric_or_nan(r, "wan_bytes_per_step");
      row.wan_time_per_step_s = metric_or_nan(r, "wan_time_per_step_s");
    }
    rows.push_back(std::move(row));
  }
  auto rankable = [](const ComparisonRow& row) {
    return row.status == "complete" && std::isfinite(row.train_days) && std::isfinite(row.co2e_gross_t);
  };
  std::vector<ComparisonRow> ranked, rest;
  for (auto& row : rows) (rankable(row) ? ranked : rest).push_back(row);
  std::sort(ranked.begin(), ranked.end(), [](const ComparisonRow& a, const ComparisonRow& b) {
    if (a.co2e_gross_t != b.co2e_gross_t) return a.co2e_gross_t < b.co2e_gross_t;
    if (a.train_days != b.train_days) return a.train_days < b.train_days;
    return a.run_id < b.run_id;
  });
  std::sort(rest.begin(), rest.end(), [](const ComparisonRow& a, const ComparisonRow& b) { return a.run_id < b.run_id; });
  std::vector<std::pair<double, double>> points;
  for (const auto& row : ranked) points.emplace_back(row.train_days, row.co2e_gross_t);
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
    s.attribution = e.contains("attribution") && e["attribution"].is_string() ? e["attribution"].get<std::string>()
                                                                                : dataset_attribution(s.dataset);
    if (e.contains("sources") && e["sources"].is_object())
      for (const auto& [k, v] : e["sources"].items()) s.sources.emplace_back(k, v.is_string() ? v.get<std::string>() : v.dump());
    out.push_back(std::move(s));
  }
  return out;
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

}  // namespace moesim::reports::detail
