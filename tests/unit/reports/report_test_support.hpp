// SPDX-License-Identifier: Apache-2.0
#pragma once
// Shared helpers of the report tests: a temporary directory, hand-made runs written through the
// Store API (begin_run + complete_run), and the factor of each unit the reports show.
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "moesim/store/store.hpp"
#include "moesim_test/temp_dir.hpp"

namespace moesim::reports::test {

/** A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction. */
class TempDir : public moesim::testing::TempDir {
 public:
  TempDir() : moesim::testing::TempDir("moesim-reports") {}
};

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/** Provenance of a real run (moesim run scenarios/published/gshard_600b.yaml), kept as test data so
 *  the reports are exercised on the provenance the CLI writes. */
inline nlohmann::json real_provenance() {
  return nlohmann::json::parse(read_text_file(std::string(MOESIM_TEST_DATA) + "/reports/provenance_gshard_600b.json"));
}

/** How a run should look: per-datacenter energy and CO2e follow from these. */
struct RunSpec {
  std::string label;
  double train_days = 4.0;
  double co2e_gross_t = 5.0;
  int datacenters = 2;
  bool embodied = false;
  double wan_bytes_per_step = 0.0;
};

/** A run header as the CLI begins it. Scenario text carries characters that must be escaped. */
inline store::RunRecord header(const std::string& scenario_name, const std::string& label = "",
                               std::optional<std::int64_t> comparison = std::nullopt) {
  store::RunRecord r;
  r.scenario_name = scenario_name;
  r.scenario_file = "scenarios/test/" + scenario_name + ".yaml";
  r.scenario = nlohmann::json{
      {"name", scenario_name},
      {"description", "test <scenario> with & and \"quotes\""},
      {"seed", 1},
      {"model", {{"architecture", "encoder_decoder"}, {"experts", 2048}, {"top_k", 2}, {"capacity_factor", 1.0}}},
      {"training", {{"tokens", 1.0e12}, {"batch_tokens", 4194304}}},
      {"placement", nlohmann::json::array({{{"datacenter", label.empty() ? "patterson_gshard_north_carolina_2020" : label}, {"share", 1.0}}})},
  };
  r.seed = 1;
  r.moesim_version = "0.1.0";
  r.git_hash = "0123456789ab";
  r.comparison_id = comparison;
  r.alternative_label = label;
  return r;
}

/** Results consistent with `spec`: metrics as sim/cli/record.cpp writes them, `spec.datacenters`
 *  sites (shares 3:1 for two, equal otherwise) whose gross CO2e sums to spec.co2e_gross_t, a step
 *  breakdown whose critical-path values sum to the step time, and a 40-point power series. */
inline store::RunRecord results(const RunSpec& spec) {
  store::RunRecord r;
  constexpr double kStep_s = 1.3;
  const double train_s = spec.train_days * 86400.0;
  const int n = spec.datacenters;
  double it = 0, net = 0, fac = 0, gross = 0, netc = 0, emb = 0;
  for (int i = 0; i < n; ++i) {
    store::DatacenterResult d;
    d.name = i == 0 ? "grid:electricity_maps/DE/2023" : "site_" + std::to_string(i) + "_" + spec.label;
    d.display_name = i == 0 ? "Germany grid average (electricity_maps, DE), 2023" : "Site <" + std::to_string(i) + "> & co";
    d.country_iso_code = i == 0 ? "DEU" : "USA";
    d.region = i == 0 ? "Germany" : "us-east1";
    d.share = n == 2 ? (i == 0 ? 0.75 : 0.25) : 1.0 / n;
    d.chips = static_cast<int>(1024 * d.share);
    d.pue = 1.1 + 0.01 * i;
    d.gross_kgco2e_per_kwh = 0.381 + 0.1 * i;
    if (i > 0) {
      d.net_kgco2e_per_kwh = 0.2;
      d.cfe_fraction = 0.43;
    }
    d.it_energy_j = 2.7e10 * spec.train_days * d.share * (1.0 + 0.013 * i);
    d.network_energy_j = 0.021 * d.it_energy_j;
    d.facility_energy_j = (d.it_energy_j + d.network_energy_j) * d.pue;
    d.co2e_gross_kg = spec.co2e_gross_t * 1000.0 * d.share;
    d.co2e_net_kg = d.co2e_gross_kg * (i > 0 ? 0.2 / d.gross_kgco2e_per_kwh : 1.0);
    d.embodied_co2e_kg = spec.embodied ? 123.456 * d.share : 0.0;
    it += d.it_energy_j;
    net += d.network_energy_j;
    fac += d.facility_energy_j;
    gross += d.co2e_gross_kg;
    netc += d.co2e_net_kg;
    emb += d.embodied_co2e_kg;
    r.datacenters.push_back(d);
  }
  auto add = [&](const std::string& name, double v, const std::string& unit) { r.metrics.push_back({name, v, unit}); };
  add("step_time_s", kStep_s, "s");
  add("step_time_spread_s", 1.6e-3, "s");
  add("steps", train_s / kStep_s, "steps");
  add(store::metric_names::kTrainTime_s, train_s, "s");
  add("tokens_dropped_fraction", 0.2705326897533742, "1");
  add("mfu", 0.22938865821004675, "1");
  add("hfu", 0.3658421867726137, "1");
  add("chips", 1024, "chips");
  add("devices", 2048, "devices");
  add("duration_s", train_s, "s");
  add("duration_pinned", 0.0, "bool");
  add("average_chip_power_w", 318.65240655530005, "W");
  add("peak_chip_power_w", 325.0, "W");
  add("it_energy_j", it, "J");
  add("network_energy_j", net, "J");
  add("facility_energy_j", fac, "J");
  add("co2e_gross_kg", gross, "kgCO2e");
  add("co2e_net_kg", netc, "kgCO2e");
  if (spec.embodied) add("embodied_co2e_kg", emb, "kgCO2e");
  add("wan_bytes_per_step", spec.wan_bytes_per_step, "B");
  add("wan_time_per_step_s", spec.wan_bytes_per_step > 0 ? 0.011 : 0.0, "s");
  r.breakdown = {{"comm.all_to_all", 0.41, 0.2899},       {"compute.attention", 0.2566, 0.2566}, {"compute.remat", 0.2416, 0.2416},
                 {"compute.expert_ffn", 0.1778, 0.1778},  {"compute.cross_attention", 0.1283, 0.1283}, {"compute.ffn", 0.0956, 0.0956},
                 {"compute.optimizer", 0.0334, 0.0334},   {"compute.combine", 0.0245, 0.0245}, {"compute.dispatch", 0.0208, 0.0208},
                 {"comm.grad_all_reduce", 0.0123, 0.0023}, {"compute.router", 0.0156, 0.0156}, {"compute.output", 0.0135, 0.0135},
                 {"compute.embedding", 0.0002, 0.0001}};
  double cp = 0.0;
  for (const auto& b : r.breakdown) cp += b.critical_path_s;
  r.metrics[0].value = cp;  // the critical path sums to the step time
  store::Series s;
  s.name = "power_w";
  s.x_unit = "s";
  s.y_unit = "W";
  for (int k = 0; k < 40; ++k) {
    s.x.push_back(cp * k / 39.0);
    s.y.push_back(k == 0 ? 190464.0 : 289792.000043008 - 1000.0 * (k % 3));
  }
  r.series.push_back(s);
  r.provenance = real_provenance();
  nlohmann::json dcs = nlohmann::json::array();
  for (const auto& d : r.datacenters) {
    if (d.name.rfind("grid:", 0) == 0) {
      dcs.push_back({{"name", d.name},
                     {"licence", "ODbL-1.0"},
                     {"notes", ""},
                     {"sources", {{"gross_kgco2e_per_kwh", "grid key electricity_maps/DE/2023: lifecycle intensity, Electricity Maps yearly data"},
                                  {"pue", "Uptime Institute 2024 industry average"}}}});
    } else {
      dcs.push_back({{"name", d.name}, {"licence", "Figures quoted from a publication (facts, cited)"}, {"notes", "a <note> & more"},
                     {"sources", {{"pue", "Patterson et al. 2021 Table 4"}}}});
    }
  }
  r.provenance["datacenters"] = dcs;
  return r;
}

/** Writes a complete run; returns its id. */
inline std::int64_t add_run(store::Store& db, const store::RunRecord& head, const RunSpec& spec) {
  const std::int64_t id = db.begin_run(head);
  db.complete_run(id, results(spec));
  return id;
}

/** Divisor from SI to each unit the reports show: shown = si / divisor. */
inline double unit_divisor(const std::string& unit) {
  static const std::map<std::string, double> f = {
      {"days", 86400.0}, {"s", 1.0},      {"MWh", 3.6e9},     {"kWh", 3.6e6},  {"t", 1000.0},     {"kg", 1.0},
      {"%", 0.01},       {"GB", 1e9},     {"W", 1.0},         {"kW", 1e3},     {"MW", 1e6},       {"chips", 1.0},
      {"steps", 1.0},    {"devices", 1.0}, {"1", 1.0},        {"kgCO2e/kWh", 1.0}, {"pJ/bit", 1e-12}};
  auto it = f.find(unit);
  if (it == f.end()) throw std::runtime_error("test: unknown unit '" + unit + "'");
  return it->second;
}

/** |a - b| within `rel` of the larger magnitude (or both zero). */
inline bool close(double a, double b, double rel = 1e-12) {
  if (a == b) return true;
  return std::fabs(a - b) <= rel * std::max(std::fabs(a), std::fabs(b));
}

}  // namespace moesim::reports::test
