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

/** How a serving run should look: its metrics, datacenters and series follow from these. */
struct ServingSpec {
  std::string label;
  int datacenters = 2;
  double ttft_p99_s = 0.0465;                 ///< P99 time to first token; the other TTFT statistics scale with it
  double co2e_gross_g_per_1k_tokens = 0.264;  ///< run-level gross CO2e per 1000 output tokens
  double output_tokens = 73816.0;             ///< output tokens generated in the window
  bool embodied = false;
};

/** A serving run header as the CLI begins it (kind "serving"). */
inline store::RunRecord serving_header(const std::string& scenario_name, const std::string& label = "",
                                       std::optional<std::int64_t> comparison = std::nullopt) {
  store::RunRecord r = header(scenario_name, label, comparison);
  r.kind = "serving";
  r.scenario.erase("training");
  r.scenario["serving"] = {{"arrival", {{"type", "poisson"}, {"rate_per_s", 20}}}, {"duration_s", 30}, {"warmup_s", 5},
                           {"pools", nlohmann::json::array({{{"replicas", 4}, {"tensor", 2}}})}};
  return r;
}

/** Serving results consistent with `spec`, laid out as sim/cli/serving_record.cpp writes them: a
 *  25 s measurement window from 5 s; series sampled every 0.5 s over 30 s whose power, summed over
 *  the window's 50 intervals, is the IT energy; `spec.datacenters` sites (output tokens 3:1 for two)
 *  whose energy and CO2e sum to the run's; every per-token and per-request metric the quotient of the
 *  stored totals; latency CDFs of 101 quantiles whose P50/P90/P95/P99/max points are the metrics. */
inline store::RunRecord serving_results(const ServingSpec& spec) {
  store::RunRecord r;
  auto add = [&](const std::string& name, double v, const std::string& unit) { r.metrics.push_back({name, v, unit}); };
  constexpr double kStart_s = 5.0, kWindow_s = 25.0, kInterval_s = 0.5, kRun_s = 30.0;
  constexpr double kRequests = 505.0;
  const double tokens = spec.output_tokens;
  // As the simulator divides: a ratio over nothing is stored as 0 (sim/cli/serving_record.cpp safe_div).
  auto per = [](double a, double b) { return b > 0.0 ? a / b : 0.0; };
  // Power: 60 intervals of 0.5 s; the IT energy is the power summed over the 50 intervals inside the window.
  store::Series power{"power_w", "s", "W", {}, {}};
  store::Series batch{"batch_sequences", "s", "sequences", {}, {}};
  store::Series queue{"queue_requests", "s", "requests", {}, {}};
  store::Series kv{"kv_use", "s", "1", {}, {}};
  double it_window_j = 0.0;
  for (int k = 0; k < static_cast<int>(kRun_s / kInterval_s); ++k) {
    const double t = k * kInterval_s;
    const double w = k < 10 ? 4200.0 : 5600.0 + 250.0 * (k % 4);
    power.x.push_back(t);
    power.y.push_back(w);
    batch.x.push_back(t);
    batch.y.push_back(k % 7);
    queue.x.push_back(t);
    queue.y.push_back(k % 5 == 0 ? 2.0 : 0.0);
    kv.x.push_back(t);
    kv.y.push_back(0.01 * (k % 9));
    if (t >= kStart_s && t < kStart_s + kWindow_s) it_window_j += w * kInterval_s;
  }
  const int n = spec.datacenters;
  double it = 0, net = 0, fac = 0, gross = 0, netc = 0, emb = 0;
  const double gross_total_kg = tokens > 0.0 ? spec.co2e_gross_g_per_1k_tokens * tokens / 1000.0 / 1000.0 : 0.0123;
  std::vector<double> site_tokens;
  for (int i = 0; i < n; ++i) {
    store::DatacenterResult d;
    d.name = i == 0 ? "grid:electricity_maps/DE/2023" : "site_" + std::to_string(i) + "_" + spec.label;
    d.display_name = i == 0 ? "Germany grid average (electricity_maps, DE), 2023" : "Site <" + std::to_string(i) + "> & co";
    d.country_iso_code = i == 0 ? "DEU" : "USA";
    d.region = i == 0 ? "Germany" : "us-east1";
    d.share = n == 2 ? (i == 0 ? 0.75 : 0.25) : 1.0 / n;
    d.chips = static_cast<int>(8 * d.share);
    d.pue = 1.1 + 0.02 * i;
    d.gross_kgco2e_per_kwh = 0.381 + 0.1 * i;
    if (i > 0) {
      d.net_kgco2e_per_kwh = 0.2;
      d.cfe_fraction = 0.43;
    }
    d.it_energy_j = it_window_j * d.share;
    d.network_energy_j = 0.012 * d.it_energy_j;
    d.facility_energy_j = (d.it_energy_j + d.network_energy_j) * d.pue;
    d.embodied_co2e_kg = spec.embodied ? 0.0123 * d.share : 0.0;
    site_tokens.push_back(tokens * d.share);
    r.datacenters.push_back(d);
  }
  // Gross CO2e in proportion to facility energy x intensity, scaled to the asked total.
  double weight = 0.0;
  for (const auto& d : r.datacenters) weight += d.facility_energy_j * d.gross_kgco2e_per_kwh;
  for (auto& d : r.datacenters) {
    d.co2e_gross_kg = gross_total_kg * d.facility_energy_j * d.gross_kgco2e_per_kwh / weight;
    d.co2e_net_kg = d.co2e_gross_kg * (d.net_kgco2e_per_kwh ? *d.net_kgco2e_per_kwh / d.gross_kgco2e_per_kwh : 1.0);
    it += d.it_energy_j;
    net += d.network_energy_j;
    fac += d.facility_energy_j;
    gross += d.co2e_gross_kg;
    netc += d.co2e_net_kg;
    emb += d.embodied_co2e_kg;
  }
  add("requests_total", 594, "requests");
  add("requests_measured", kRequests, "requests");
  // Served (finishing) in the window: a few fewer than arrived in it, as a run whose last requests end after it.
  const double served = kRequests - 3;
  add("requests_completed", served, "requests");
  add("window_start_s", kStart_s, "s");
  add("window_s", kWindow_s, "s");
  add("makespan_s", 30.3, "s");
  // Latency statistics (s): each distribution's mean, P50, P90, P95, P99 and max, in that order.
  const std::map<std::string, std::vector<double>> stats = {
      {"ttft", {0.55 * spec.ttft_p99_s, 0.5 * spec.ttft_p99_s, 0.7 * spec.ttft_p99_s, 0.8 * spec.ttft_p99_s, spec.ttft_p99_s, 1.25 * spec.ttft_p99_s}},
      {"tpot", {0.0012, 0.00118, 0.00136, 0.00141, 0.00146, 0.0015}},
      {"itl", {0.00123, 0.00112, 0.00133, 0.00146, 0.00147, 0.00436}},
      {"e2e", {0.181, 0.14, 0.3676, 0.4354, 0.6769, 1.279}},
      {"queue", {0.00027, 0.0, 0.00096, 0.00104, 0.00125, 0.00138}}};
  const char* stat_names[] = {"mean", "p50", "p90", "p95", "p99", "max"};
  for (const char* d : {"ttft", "tpot", "itl", "e2e", "queue"})
    for (int k = 0; k < 6; ++k) add(std::string(d) + "_" + stat_names[k] + "_s", stats.at(d)[k], "s");
  add("throughput_rps", served / kWindow_s, "requests/s");
  add("input_tokens_per_s", 2.74 * tokens / kWindow_s, "tokens/s");
  add("output_tokens_per_s", tokens / kWindow_s, "tokens/s");
  add("output_tokens_per_s_per_device", tokens / kWindow_s / 8.0, "tokens/s");
  add("input_tokens", 2.74 * tokens, "tokens");
  add("output_tokens", tokens, "tokens");
  add("goodput_fraction", 0.98, "1");
  add("goodput_rps", 0.98 * kRequests / kWindow_s, "requests/s");
  add("slo_ttft_s", 2.0, "s");
  add("slo_tpot_s", 0.2, "s");
  add("slo_p99_met", spec.ttft_p99_s <= 2.0 ? 1.0 : 0.0, "bool");
  add("preemptions", 3, "preemptions");
  add("mean_batch_sequences", 3.6306, "sequences");
  add("mean_kv_use", 0.0405, "1");
  add("mean_queue_requests", 0.4, "requests");
  add("mfu", 0.0025741121324182542, "1");
  add("model_flops", 5.086e14, "FLOP");
  add("kv_transfer_bytes", 0.0, "B");
  add("iterations", 68697, "iterations");
  add("layer_shapes_simulated", 160, "layers");
  add("layer_replays", 549416, "layers");
  add("attention_shapes", 891, "shapes");
  add("chips", 8, "chips");
  add("devices", 8, "devices");
  add("duration_s", kWindow_s, "s");
  add("power_pinned", 0.0, "bool");
  add("average_chip_power_w", it / kWindow_s / 8.0, "W");
  add("peak_chip_power_w", 1050.0, "W");
  add("it_energy_j", it, "J");
  add("network_energy_j", net, "J");
  add("facility_energy_j", fac, "J");
  add("co2e_gross_kg", gross, "kgCO2e");
  add("co2e_net_kg", netc, "kgCO2e");
  if (spec.embodied) add("embodied_co2e_kg", emb, "kgCO2e");
  add("energy_per_output_token_j", per(fac, tokens), "J/token");
  add("it_energy_per_output_token_j", per(it, tokens), "J/token");
  add("energy_per_request_j", per(fac, served), "J/request");
  add("co2e_gross_kg_per_1k_tokens", per(gross * 1000.0, tokens), "kgCO2e/1000 tokens");
  add("co2e_net_kg_per_1k_tokens", per(netc * 1000.0, tokens), "kgCO2e/1000 tokens");
  add("co2e_gross_kg_per_request", per(gross, served), "kgCO2e/request");
  add("co2e_net_kg_per_request", per(netc, served), "kgCO2e/request");
  if (spec.embodied) add("embodied_co2e_kg_per_1k_tokens", per(emb * 1000.0, tokens), "kgCO2e/1000 tokens");
  for (std::size_t i = 0; i < r.datacenters.size(); ++i) {
    const auto& d = r.datacenters[i];
    add("site." + d.name + ".output_tokens", site_tokens[i], "tokens");
    add("site." + d.name + ".energy_per_output_token_j", per(d.facility_energy_j, site_tokens[i]), "J/token");
    add("site." + d.name + ".co2e_gross_kg_per_1k_tokens", per(d.co2e_gross_kg * 1000.0, site_tokens[i]), "kgCO2e/1000 tokens");
    add("site." + d.name + ".co2e_net_kg_per_1k_tokens", per(d.co2e_net_kg * 1000.0, site_tokens[i]), "kgCO2e/1000 tokens");
  }
  add("pool0.weights_bytes", 3436445696.0, "B");
  add("pool0.workspace_bytes", 578420736.0, "B");
  add("pool0.kv_bytes", 73294544896.0, "B");
  add("pool0.kv_blocks", 559193, "blocks");
  add("wan_bytes", 0.0, "B");
  add("sim_wall_s", 0.86, "s");

  r.series = {power, queue, batch, kv};
  // CDFs: 101 quantiles rising linearly between the stored statistics, so that point 50 is P50, 90 P90,
  // 95 P95, 99 P99 and 100 the max.
  for (const char* d : {"ttft", "tpot", "e2e"}) {
    const auto& st = stats.at(d);
    const std::vector<std::pair<int, double>> knots = {{0, 0.2 * st[1]}, {50, st[1]}, {90, st[2]}, {95, st[3]}, {99, st[4]}, {100, st[5]}};
    store::Series c{std::string(d) + "_cdf", "s", "1", {}, {}};
    for (int q = 0; q <= 100; ++q) {
      std::size_t k = 1;
      while (knots[k].first < q) ++k;
      const auto& [q0, x0] = knots[k - 1];
      const auto& [q1, x1] = knots[k];
      c.x.push_back(q == q1 ? x1 : x0 + (x1 - x0) * (q - q0) / (q1 - q0));
      c.y.push_back(q / 100.0);
    }
    r.series.push_back(c);
  }

  r.provenance = real_provenance();
  r.provenance.erase("routing_exact");
  r.provenance.erase("step_times_s");
  nlohmann::json dcs = nlohmann::json::array();
  for (const auto& d : r.datacenters) {
    if (d.name.rfind("grid:", 0) == 0) {
      dcs.push_back({{"name", d.name},
                     {"licence", "ODbL-1.0"},
                     {"notes", ""},
                     {"sources", {{"gross_kgco2e_per_kwh", "grid key electricity_maps/DE/2023: lifecycle intensity, Electricity Maps yearly data"}}}});
    } else {
      dcs.push_back({{"name", d.name}, {"licence", "Figures quoted from a publication (facts, cited)"}, {"notes", "a <note> & more"},
                     {"sources", {{"pue", "Patterson et al. 2021 Table 4"}}}});
    }
  }
  r.provenance["datacenters"] = dcs;
  r.provenance["pools"] = nlohmann::json::array({{{"role", "colocated"},
                                                   {"replicas", 4},
                                                   {"devices_per_replica", 2},
                                                   {"weights_bytes", 3436445696.0},
                                                   {"workspace_bytes", 578420736.0},
                                                   {"kv_bytes", 73294544896.0},
                                                   {"kv_bytes_per_token", 8192.0},
                                                   {"kv_blocks", 559193},
                                                   {"block_tokens", 16}}});
  r.provenance["memo_buckets_per_octave"] = 32;
  r.provenance["window"] = "throughput and energy from the warm-up's end to the last arrival; latencies of the requests arriving in it";
  r.provenance["series_interval_s"] = kInterval_s;
  return r;
}

/** Writes a complete serving run; returns its id. */
inline std::int64_t add_serving_run(store::Store& db, const store::RunRecord& head, const ServingSpec& spec) {
  const std::int64_t id = db.begin_run(head);
  db.complete_run(id, serving_results(spec));
  return id;
}

/** Divisor from SI to each unit the reports show: shown = si / divisor. */
inline double unit_divisor(const std::string& unit) {
  static const std::map<std::string, double> f = {
      {"days", 86400.0}, {"s", 1.0},      {"MWh", 3.6e9},     {"kWh", 3.6e6},  {"t", 1000.0},     {"kg", 1.0},
      {"%", 0.01},       {"GB", 1e9},     {"W", 1.0},         {"kW", 1e3},     {"MW", 1e6},       {"chips", 1.0},
      {"steps", 1.0},    {"devices", 1.0}, {"1", 1.0},        {"kgCO2e/kWh", 1.0}, {"pJ/bit", 1e-12},
      // serving: ms (latencies), g (CO2e per 1000 tokens or per request; stored in kg), rates and counts in SI
      {"ms", 1e-3},      {"g", 1e-3},     {"J/token", 1.0},   {"J/request", 1.0}, {"requests/s", 1.0}, {"tokens/s", 1.0},
      {"tokens", 1.0},   {"requests", 1.0}, {"sequences", 1.0}, {"preemptions", 1.0}, {"B", 1.0}, {"", 1.0}};
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
