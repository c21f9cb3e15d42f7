// SPDX-License-Identifier: Apache-2.0
// Hourly grid intensity for serving runs: the measured window's hours (after the warm-up), each weighted by the energy
// the window's power series draws in it, and the check before simulating. Hand numbers from the series' rows.

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <fstream>
#include <string>

#include "energy_test_support.hpp"
#include "moesim/catalog/catalog.hpp"
#include "moesim/energy/accounting.hpp"
#include "moesim/energy/hourly.hpp"
#include "moesim/engine/isolation.hpp"
#include "moesim/engine/serving.hpp"
#include "moesim/scenario/loader.hpp"
#include "moesim_test/temp_dir.hpp"

using moesim::catalog::Catalog;
using moesim::energy::account;
using moesim::energy::Accounting;
using moesim::energy::GrossBasis;
using moesim::energy::NetBasis;
namespace t = moesim::energy::test;
namespace en = moesim::engine;

namespace {

constexpr double kJPerKwh = 3.6e6;  // 1 kWh = 1000 W x 3600 s
const std::string kFixed = "  prompt_length: {type: fixed, value: 256}\n  output_length: {type: fixed, value: 32}\n";

const Catalog& profiles() {
  static const auto c = Catalog::load(std::string(MOESIM_SOURCE_ROOT) + "/profiles");
  return c;
}

/** Four hours from 2024-03-01T00:00:00Z: 100, 200, 300, 400 g/kWh. */
std::string four_hours(const std::string& name) {
  std::string text = "timestamp_utc,gco2e_per_kwh\n";
  for (int h = 0; h < 4; ++h) text += "2024-03-01T0" + std::to_string(h) + ":00:00Z," + std::to_string((h + 1) * 100) + "\n";
  return t::write_file(name, text);
}

/** A serving scenario (open-loop arrivals) measured from warmup_s, placed in `dc`, starting at `start`. */
moesim::scenario::Scenario serving_at(const moesim::catalog::DatacenterSpec& dc, const std::string& start, double warmup_s,
                                      double duration_s) {
  auto s = t::scenario_at({dc}, start);
  moesim::scenario::ServingSpec v;
  v.arrival.type = "constant";
  v.arrival.rate_per_s = 1.0;
  v.warmup_s = warmup_s;
  v.duration_s = duration_s;
  s.serving = v;
  return s;
}

/** A serving scenario loaded as from a file (for what needs the requests: the check before simulating, a simulation). */
moesim::scenario::Scenario load_serving(const std::string& csv, const std::string& start, const std::string& serving) {
  return moesim::scenario::load_string(
      "name: t\nseed: 9\nmodel: {layers: 4, d_model: 1024, d_ff: 4096, heads: 8, vocab: 32000, seq_len: 2048}\n"
      "serving:\n" + serving + "  pools: [{replicas: 1}]\ncluster: {accelerator: h100, count: 1, topology: {gpus_per_node: 1}}\n"
      "energy: {start_time_utc: \"" + start + "\"}\n"
      "placement:\n  - datacenter: {name: dcH, pue: 1.0, hourly_intensity_csv: " + csv + ", gross_kgco2e_per_kwh: 0.3}\n",
      "test.yaml", profiles());
}

}  // namespace

TEST_CASE("energy::account: a serving window after its warm-up is weighted by its own hours", "[energy][accounting][hourly]") {
  const Catalog cat;
  // tests/data/energy/hourly_synthetic.csv: 2024-03-01T06:00Z 400.0 g/kWh (market 100.0), 07:00Z 361.2 (market 90.3).
  // Start 06:00, warm-up 3600 s, duration 7200 s: the window is 07:00 to 08:00, one hour at 361.2 g/kWh, not 06:00
  // to 07:00 at 400.0. 1 chip x 500 W x 3600 s = 0.5 kWh at PUE 1.
  const auto dc = t::site("dcH", 1.0, 0.3, std::nullopt, t::data("hourly_synthetic.csv"));
  const auto job = t::job(3600.0, 1.0, {t::site_figures(1, 500.0, 3600.0)});
  const Accounting a = account(job, serving_at(dc, "2024-03-01T06:00:00Z", 3600.0, 7200.0), cat, t::network_inside_chips(),
                               std::nullopt);
  const auto& s = a.sites[0];
  CHECK(s.facility_energy_j == Approx(0.5 * kJPerKwh));
  CHECK(s.intensity.gross == GrossBasis::hourly);
  CHECK(s.co2e_gross_kg == Approx(0.5 * 0.3612));
  CHECK(s.intensity.effective_gross_kgco2e_per_kwh == Approx(0.3612));
  CHECK(s.intensity.net == NetBasis::hourly_market);
  CHECK(s.co2e_net_kg == Approx(0.5 * 0.0903));
  CHECK(s.intensity.job_start_utc == "2024-03-01T07:00:00Z");
  CHECK(s.intensity.job_end_utc == "2024-03-01T08:00:00Z");
  CHECK(s.intensity.first_hour_utc == "2024-03-01T07:00:00Z");
  CHECK(s.intensity.hours_touched == 1);
  CHECK(a.start_time_utc == "2024-03-01T06:00:00Z");  // the scenario's start time itself is unchanged
  SECTION("offline arrivals have no warm-up: the window starts at the start time") {
    auto sc = serving_at(dc, "2024-03-01T06:00:00Z", 3600.0, 0.0);
    sc.serving->arrival.type = "offline";
    const Accounting b = account(job, sc, cat, t::network_inside_chips(), std::nullopt);
    CHECK(b.sites[0].intensity.effective_gross_kgco2e_per_kwh == Approx(0.400));
    CHECK(b.sites[0].intensity.job_start_utc == "2024-03-01T06:00:00Z");
  }
}

TEST_CASE("energy::account: a serving window's hours are weighted by the energy its power series draws in each",
          "[energy][accounting][hourly]") {
  const Catalog cat;
  const std::string csv = four_hours("serving_four.csv");
  // Window 00:30 to 01:30 (warm-up 1800 s): 3000 W for its first 1800 s (hour 00, 100 g/kWh), then 1000 W (hour 01,
  // 200 g/kWh). 5.4 MJ = 1.5 kWh in hour 00 and 1.8 MJ = 0.5 kWh in hour 01, 2 kWh in all:
  // 1.5 x 0.1 + 0.5 x 0.2 = 0.25 kg (constant power would give 1 x 0.1 + 1 x 0.2 = 0.3 kg).
  auto job = t::job(3600.0, 1.0, {t::site_figures(1, 2000.0, 3600.0)});
  job.power_t_s = {0.0, 1800.0};
  job.power_w = {3000.0, 1000.0};
  const auto dc = t::site("dc", 1.0, 0.5, std::nullopt, csv);
  const Accounting a = account(job, serving_at(dc, "2024-03-01T00:00:00Z", 1800.0, 5400.0), cat, t::network_inside_chips(),
                               std::nullopt);
  const auto& s = a.sites[0];
  CHECK(s.facility_energy_j == Approx(2.0 * kJPerKwh));
  CHECK(s.co2e_gross_kg == Approx(0.25));
  CHECK(s.intensity.effective_gross_kgco2e_per_kwh == Approx(0.125));
  CHECK(s.intensity.hours_touched == 2);
  CHECK(s.intensity.job_start_utc == "2024-03-01T00:30:00Z");
  CHECK(s.intensity.job_end_utc == "2024-03-01T01:30:00Z");
  SECTION("a training job over the same hours draws its average power throughout") {
    const Accounting b = account(job, t::scenario_at({dc}, "2024-03-01T00:30:00Z"), cat, t::network_inside_chips(), std::nullopt);
    CHECK(b.sites[0].co2e_gross_kg == Approx(0.3));
  }
  SECTION("a pinned chip power is drawn at constant power") {
    auto sc = serving_at(dc, "2024-03-01T00:00:00Z", 1800.0, 5400.0);
    sc.energy.average_chip_power_w = 2000.0;
    CHECK(account(job, sc, cat, t::network_inside_chips(), std::nullopt).sites[0].co2e_gross_kg == Approx(0.3));
  }
}

TEST_CASE("energy::account: a simulated serving run's hourly CO2e is its power series integrated hour by hour",
          "[energy][accounting][hourly]") {
  // Start 06:59:00Z, warm-up 30 s, duration 150 s: the window is 06:59:30 to 07:01:30, 30 s in hour 06 (400.0 g/kWh in
  // hourly_synthetic.csv) and 90 s in hour 07 (361.2). Requests arrive only in the first 30 s, so the chips draw more
  // in hour 06 than in hour 07.
  moesim::testing::TempDir dir;
  std::string rows = "arrival_s,prompt_tokens,output_tokens\n";
  for (int k = 0; k < 300; ++k) rows += std::to_string(30.0 + 0.1 * k) + ",1500,300\n";
  const std::string trace = dir.file("first_half_minute.csv");
  {
    std::ofstream out(trace);
    out << rows;
  }
  const auto s = load_serving(t::data("hourly_synthetic.csv"), "2024-03-01T06:59:00Z",
                              "  arrival: {type: trace, trace_csv: " + trace + "}\n  prompt_length: {type: trace}\n  output_length: {type: trace}\n"
                              "  duration_s: 150\n  warmup_s: 30\n"
                              "  sample_interval_s: 1\n");
  const auto iso = en::run_isolated([&] { return en::to_json(en::simulate_serving(s, profiles())); });
  const en::ServingResult r = en::serving_from_json(iso.value);
  REQUIRE(r.window_start_s == 30.0);
  REQUIRE(r.window_end_s == 150.0);
  REQUIRE(r.series_interval_s == 1.0);
  // The series by hand: 1 s points, [30, 60) in hour 06, [60, 150) in hour 07.
  const auto& ts = r.series.at("t_s");
  const auto& pw = r.series.at("power_w");
  double e06 = 0.0, e07 = 0.0;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    if (ts[i] >= 30.0 - 1e-9 && ts[i] < 60.0 - 1e-9) e06 += pw[i] * 1.0;
    else if (ts[i] >= 60.0 - 1e-9 && ts[i] < 150.0 - 1e-9) e07 += pw[i] * 1.0;
  }
  REQUIRE(e06 / 30.0 > e07 / 90.0 + 10.0);  // the load differs between the hours: over 10 W more on average in hour 06
  const Accounting a = account(en::window_as_job(r), s, profiles(), moesim::energy::NetworkEnergyTable::load(profiles().profiles_dir()),
                               std::nullopt);
  const auto& site = a.sites[0];
  const double kwh = site.facility_energy_j / kJPerKwh;
  const double weighted = (e06 * 0.4000 + e07 * 0.3612) / (e06 + e07);  // kg/kWh
  CHECK(site.intensity.effective_gross_kgco2e_per_kwh == Approx(weighted).epsilon(1e-9));
  CHECK(site.co2e_gross_kg == Approx(kwh * weighted).epsilon(1e-9));
  // Constant power over the same hours would weigh them by time alone: (30 x 0.4 + 90 x 0.3612) / 120.
  const double by_time = (30.0 * 0.4000 + 90.0 * 0.3612) / 120.0;
  CHECK(std::abs(site.intensity.effective_gross_kgco2e_per_kwh - by_time) > 1e-4);
  CHECK(site.intensity.job_start_utc == "2024-03-01T06:59:30Z");
  CHECK(site.intensity.job_end_utc == "2024-03-01T07:01:30Z");
  CHECK(site.intensity.hours_touched == 2);
}

TEST_CASE("energy::account_serving: each site's hours are weighted by its own chips' power, not the deployment's",
          "[energy][accounting][hourly]") {
  const Catalog cat;
  const std::string csv = four_hours("serving_sites_four.csv");
  // Window 00:30 to 01:30 (warm-up 1800 s), two sites of one chip on the same hourly series (100 g/kWh in hour 00, 200
  // in hour 01), PUE 1. Site A draws 3000 W for the window's first 1800 s (hour 00), then 1000 W (hour 01); site B the
  // reverse. Each draws 2 kWh: A 1.5 kWh x 0.1 + 0.5 kWh x 0.2 = 0.25 kg (0.125 kg/kWh), B 0.5 x 0.1 + 1.5 x 0.2 =
  // 0.35 kg (0.175 kg/kWh). The deployment's total, 4000 W throughout, would give each 1 x 0.1 + 1 x 0.2 = 0.3 kg.
  en::ServingResult r;
  r.window_start_s = 1800.0;
  r.window_end_s = 5400.0;
  r.sites = {t::site_figures(1, 2000.0, 3600.0), t::site_figures(1, 2000.0, 3600.0)};
  r.series["t_s"] = {0.0, 1800.0, 3600.0};  // the warm-up, then the window's two halves
  r.series["power_w"] = {1000.0, 4000.0, 4000.0};
  r.site_power_w = {{500.0, 3000.0, 1000.0}, {500.0, 1000.0, 3000.0}};
  r.series_interval_s = r.series_first_interval_s = r.series_last_interval_s = 1800.0;
  auto sc = serving_at(t::site("dcA", 1.0, 0.5, std::nullopt, csv), "2024-03-01T00:00:00Z", 1800.0, 5400.0);
  sc.placement = t::scenario_at({t::site("dcA", 1.0, 0.5, std::nullopt, csv), t::site("dcB", 1.0, 0.5, std::nullopt, csv)},
                                "2024-03-01T00:00:00Z")
                     .placement;
  const Accounting a = moesim::energy::account_serving(r, sc, cat, t::network_inside_chips(), std::nullopt);
  REQUIRE(a.sites.size() == 2);
  CHECK(a.sites[0].facility_energy_j == Approx(2.0 * kJPerKwh));
  CHECK(a.sites[1].facility_energy_j == Approx(2.0 * kJPerKwh));
  CHECK(a.sites[0].co2e_gross_kg == Approx(0.25));
  CHECK(a.sites[0].intensity.effective_gross_kgco2e_per_kwh == Approx(0.125));
  CHECK(a.sites[1].co2e_gross_kg == Approx(0.35));
  CHECK(a.sites[1].intensity.effective_gross_kgco2e_per_kwh == Approx(0.175));
  CHECK(a.co2e_gross_kg() == Approx(0.6));
  SECTION("account() on the window alone gives every site the deployment's shape") {
    const Accounting b = account(en::window_as_job(r), sc, cat, t::network_inside_chips(), std::nullopt);
    CHECK(b.sites[0].co2e_gross_kg == Approx(0.3));
    CHECK(b.sites[1].co2e_gross_kg == Approx(0.3));
  }
  SECTION("a pinned chip power is drawn at constant power at every site") {
    auto pinned = sc;
    pinned.energy.average_chip_power_w = 2000.0;
    const Accounting b = moesim::energy::account_serving(r, pinned, cat, t::network_inside_chips(), std::nullopt);
    CHECK(b.sites[0].co2e_gross_kg == Approx(0.3));
    CHECK(b.sites[1].co2e_gross_kg == Approx(0.3));
  }
}

TEST_CASE("energy::account_serving: two simulated sites loaded at different times each get their own hours' intensity",
          "[energy][accounting][hourly]") {
  // Start 06:59:00Z, warm-up 30 s, duration 150 s: the window is 06:59:30 to 07:01:30, [30, 60) s in hour 06 (400.0
  // g/kWh in hourly_synthetic.csv) and [60, 150) in hour 07 (361.2), at both sites. One replica per site, requests
  // round-robin: in [30, 60) the even requests (site A's replica) are long and the odd ones (site B's) short; in [60, 90)
  // the reverse. Site A draws most in hour 06, site B in hour 07.
  moesim::testing::TempDir dir;
  std::string rows = "arrival_s,prompt_tokens,output_tokens\n";
  for (int k = 0; k < 600; ++k) {
    const bool long_one = (k < 300) == (k % 2 == 0);
    rows += std::to_string(30.0 + 0.1 * k) + (long_one ? ",1500,300\n" : ",16,2\n");
  }
  const std::string trace = dir.file("alternating.csv");
  std::ofstream(trace) << rows;
  const std::string csv = t::data("hourly_synthetic.csv");
  const auto s = moesim::scenario::load_string(
      "name: t\nseed: 9\nmodel: {layers: 4, d_model: 1024, d_ff: 4096, heads: 8, vocab: 32000, seq_len: 2048}\n"
      "serving:\n  arrival: {type: trace, trace_csv: " + trace + "}\n  prompt_length: {type: trace}\n"
      "  output_length: {type: trace}\n  duration_s: 150\n  warmup_s: 30\n  sample_interval_s: 1\n  pools: [{replicas: 2}]\n"
      "cluster: {accelerator: h100, count: 2, topology: {gpus_per_node: 1}}\n"
      "energy: {start_time_utc: \"2024-03-01T06:59:00Z\"}\n"
      "placement:\n"
      "  - {datacenter: {name: dcA, pue: 1.0, hourly_intensity_csv: " + csv + ", gross_kgco2e_per_kwh: 0.3}, share: 0.5}\n"
      "  - {datacenter: {name: dcB, pue: 1.0, hourly_intensity_csv: " + csv + ", gross_kgco2e_per_kwh: 0.3}, share: 0.5}\n"
      "wan: {bandwidth_gbps: 100, latency_ms: 50}\n",
      "test.yaml", profiles());
  const auto iso = en::run_isolated([&] { return en::to_json(en::simulate_serving(s, profiles())); });
  const en::ServingResult r = en::serving_from_json(iso.value);
  REQUIRE(r.window_start_s == 30.0);
  REQUIRE(r.window_end_s == 150.0);
  REQUIRE(r.series_interval_s == 1.0);
  REQUIRE(r.sites.size() == 2);
  REQUIRE(r.site_power_w.size() == 2);
  const auto& ts = r.series.at("t_s");
  const auto& pw = r.series.at("power_w");
  // One quantity, one truth: the sites' series add up to the total, and each integrates to its site's window joules.
  std::array<double, 2> e06{}, e07{};
  for (std::size_t i = 0; i < ts.size(); ++i) {
    CHECK(r.site_power_w[0][i] + r.site_power_w[1][i] == Approx(pw[i]).epsilon(1e-12));
    for (std::size_t k = 0; k < 2; ++k) {
      if (ts[i] >= 30.0 - 1e-9 && ts[i] < 60.0 - 1e-9) e06[k] += r.site_power_w[k][i] * 1.0;
      else if (ts[i] >= 60.0 - 1e-9 && ts[i] < 150.0 - 1e-9) e07[k] += r.site_power_w[k][i] * 1.0;
    }
  }
  for (std::size_t k = 0; k < 2; ++k) CHECK(e06[k] + e07[k] == Approx(r.sites[k].chip_energy_per_step_j).epsilon(1e-9));
  // The loads differ in time: site A draws more than site B in hour 06, less in hour 07 (10 W and more on average).
  REQUIRE(e06[0] / 30.0 > e06[1] / 30.0 + 10.0);
  REQUIRE(e07[1] / 90.0 > e07[0] / 90.0 + 1.0);
  const Accounting a = moesim::energy::account_serving(r, s, profiles(),
                                                       moesim::energy::NetworkEnergyTable::load(profiles().profiles_dir()), std::nullopt);
  double all06 = 0.0, all07 = 0.0;
  for (std::size_t k = 0; k < 2; ++k) {
    INFO("site " << k);
    const auto& site = a.sites[k];
    const double weighted = (e06[k] * 0.4000 + e07[k] * 0.3612) / (e06[k] + e07[k]);  // kg/kWh, by its own series
    CHECK(site.intensity.effective_gross_kgco2e_per_kwh == Approx(weighted).epsilon(1e-9));
    CHECK(site.co2e_gross_kg == Approx(site.facility_energy_j / kJPerKwh * weighted).epsilon(1e-9));
    all06 += e06[k];
    all07 += e07[k];
  }
  // By the deployment's total, both sites would get one intensity between the two; each gets its own instead.
  const double by_total = (all06 * 0.4000 + all07 * 0.3612) / (all06 + all07);
  CHECK(a.sites[0].intensity.effective_gross_kgco2e_per_kwh > by_total + 1e-4);
  CHECK(a.sites[1].intensity.effective_gross_kgco2e_per_kwh < by_total - 1e-4);
}

TEST_CASE("energy::check_hourly_inputs: a serving window the series does not cover fails before simulating",
          "[energy][accounting][hourly]") {
  const std::string csv = four_hours("serving_check_four.csv");  // 00:00 to 04:00
  const auto& cat = profiles();
  SECTION("the window inside the series passes") {
    // Start 01:00, warm-up 3600 s, duration 10800 s: 02:00 to 04:00.
    CHECK_NOTHROW(moesim::energy::check_hourly_inputs(
        load_serving(csv, "2024-03-01T01:00:00Z", "  arrival: {type: constant, rate_per_s: 1}\n" + kFixed + "  duration_s: 10800\n  warmup_s: 3600\n"),
        cat));
  }
  SECTION("a window running past the series' end is refused, naming the file and the keys") {
    // Duration 14400 s: 02:00 to 05:00, past 04:00 (the start, 01:00, is inside: the old check passed it).
    const auto sc = load_serving(csv, "2024-03-01T01:00:00Z",
                                 "  arrival: {type: constant, rate_per_s: 1}\n" + kFixed + "  duration_s: 14400\n  warmup_s: 3600\n");
    const std::string what = t::expect_plain_error([&] { moesim::energy::check_hourly_inputs(sc, cat); });
    CHECK(t::contains(what, "datacenter 'dcH'"));
    CHECK(t::contains(what, csv));
    CHECK(t::contains(what, "needing 2024-03-01T02:00:00Z to 2024-03-01T05:00:00Z"));
    CHECK(t::contains(what, "energy.start_time_utc + 3600 s"));
    CHECK(t::contains(what, "serving.duration_s"));
    CHECK(t::contains(what, "serving.warmup_s"));
  }
  SECTION("a window starting after the series' end is refused although the start time is inside it") {
    // Start 03:30, warm-up 1800 s, duration 3600 s: 04:00 to 04:30.
    const auto sc = load_serving(csv, "2024-03-01T03:30:00Z",
                                 "  arrival: {type: constant, rate_per_s: 1}\n" + kFixed + "  duration_s: 3600\n  warmup_s: 1800\n");
    CHECK(t::contains(t::expect_plain_error([&] { moesim::energy::check_hourly_inputs(sc, cat); }), "covers"));
  }
  SECTION("a window the request count ends before duration_s is checked to its last arrival") {
    // 100 requests at 1/s end the arrivals after 99 s: the window is 10 s to 99 s after 03:00, inside the series, although
    // serving.duration_s (14400 s) would reach 07:00.
    CHECK_NOTHROW(moesim::energy::check_hourly_inputs(
        load_serving(csv, "2024-03-01T03:00:00Z",
                     "  arrival: {type: constant, rate_per_s: 1}\n" + kFixed + "  requests: 100\n  duration_s: 14400\n  warmup_s: 10\n"),
        cat));
  }
}
