// SPDX-License-Identifier: Apache-2.0
// energy::account on hand-built jobs (no simulation): expected joules, kWh and kgCO2e are computed
// here from first principles (chips x W x s, x PUE, / 3.6e6 J per kWh, x intensity).

#include <catch2/catch.hpp>

#include <filesystem>

#include "energy_test_support.hpp"
#include "moesim/catalog/catalog.hpp"
#include "moesim/core/units.hpp"
#include "moesim/energy/accounting.hpp"
#include "moesim/energy/hourly.hpp"

using moesim::InputError;
using moesim::catalog::Catalog;
using moesim::energy::account;
using moesim::energy::Accounting;
using moesim::energy::GrossBasis;
using moesim::energy::IncludedIn;
using moesim::energy::LinkClassEnergy;
using moesim::energy::NetBasis;
using moesim::energy::NetworkEnergyTable;
using moesim::system::LinkClass;
namespace t = moesim::energy::test;
namespace fs = std::filesystem;

namespace {

constexpr double kJPerKwh = 3.6e6;  // 1 kWh = 1000 W x 3600 s

/** Four hours from 2024-03-01T00:00:00Z: 100, 200, 300, 400 g/kWh; market 10..40 when asked. */
std::string write_four_hours(const std::string& name, bool market) {
  std::string text = std::string("timestamp_utc,gco2e_per_kwh") + (market ? ",market_gco2e_per_kwh" : "") + "\n";
  for (int h = 0; h < 4; ++h)
    text += "2024-03-01T0" + std::to_string(h) + ":00:00Z," + std::to_string((h + 1) * 100) +
            (market ? "," + std::to_string((h + 1) * 10) : "") + "\n";
  return t::write_file(name, text);
}

/** 1 chip at 1000 W for 2.5 h (900 steps of 10 s). */
moesim::engine::JobResult one_kw_for_2_5_h() { return t::job(10.0, 900.0, {t::site_figures(1, 1000.0, 10.0)}); }

}  // namespace

TEST_CASE("energy::account: golden annual case, 1 chip x 200 W x 10 s at PUE 1.1 and 400 g/kWh", "[energy][accounting]") {
  const Catalog cat;
  const auto job = t::job(10.0, 1.0, {t::site_figures(1, 200.0, 10.0)});
  const Accounting a = account(job, t::scenario_at({t::site("dc", 1.1, 0.400)}), cat, t::network_inside_chips(), std::nullopt);
  REQUIRE(a.sites.size() == 1);
  const auto& s = a.sites[0];
  const double it_j = 1 * 200.0 * 10.0;          // 2000 J
  const double facility_j = it_j * 1.1;          // 2200 J
  const double kwh = facility_j / kJPerKwh;      // 6.111e-4 kWh
  CHECK(a.duration_s == Approx(10.0));
  CHECK(s.it_energy_j == Approx(2000.0));
  CHECK(s.network_energy_j == 0.0);
  CHECK(s.facility_energy_j == Approx(2200.0));
  CHECK(kwh == Approx(6.111111e-4));
  CHECK(s.co2e_gross_kg == Approx(kwh * 0.400));  // 2.444e-4 kg
  CHECK(s.co2e_gross_kg == Approx(2.444444e-4));
  CHECK(a.average_chip_power_w == Approx(200.0));
  CHECK(a.co2e_gross_kg() == Approx(s.co2e_gross_kg));
  CHECK(s.intensity.gross == GrossBasis::annual);
  CHECK(s.intensity.effective_gross_kgco2e_per_kwh == Approx(0.400));
  CHECK(s.intensity.note.empty());
  CHECK(a.start_time_utc.empty());

  SECTION("net falls back to gross when no net figure is published") {
    CHECK(s.co2e_net_kg == Approx(s.co2e_gross_kg));
    CHECK(s.intensity.net == NetBasis::annual_gross_fallback);
  }
  SECTION("net uses the market-based figure when present") {
    const Accounting b =
        account(job, t::scenario_at({t::site("dc", 1.1, 0.400, 0.300)}), cat, t::network_inside_chips(), std::nullopt);
    CHECK(b.sites[0].co2e_gross_kg == Approx(kwh * 0.400));
    CHECK(b.sites[0].co2e_net_kg == Approx(kwh * 0.300));
    CHECK(b.sites[0].intensity.net == NetBasis::annual_net);
  }
  SECTION("a pinned chip power replaces the simulated one") {
    auto sc = t::scenario_at({t::site("dc", 1.1, 0.400)});
    sc.energy.average_chip_power_w = 250.0;
    const Accounting b = account(job, sc, cat, t::network_inside_chips(), std::nullopt);
    CHECK(b.power_pinned);
    CHECK(b.sites[0].it_energy_j == Approx(250.0 * 10.0));
    CHECK(b.sites[0].facility_energy_j == Approx(250.0 * 10.0 * 1.1));
  }
  SECTION("a pinned duration scales the energy") {
    auto sc = t::scenario_at({t::site("dc", 1.1, 0.400)});
    sc.training.duration_days = 2.0;
    const Accounting b = account(job, sc, cat, t::network_inside_chips(), std::nullopt);
    CHECK(b.duration_pinned);
    CHECK(b.duration_s == Approx(2.0 * 86400.0));
    CHECK(b.sites[0].it_energy_j == Approx(200.0 * 2.0 * 86400.0));
  }
}

TEST_CASE("energy::account: PUE and intensity are applied per site", "[energy][accounting]") {
  const Catalog cat;
  // Site A: 2 chips x 300 W; site B: 1 chip x 500 W; 100 steps of 2 s = 200 s.
  const auto job = t::job(2.0, 100.0, {t::site_figures(2, 300.0, 2.0, 2.0 / 3.0), t::site_figures(1, 500.0, 2.0, 1.0 / 3.0)});
  const Accounting a = account(job, t::scenario_at({t::site("a", 1.1, 0.4, 0.1), t::site("b", 1.5, 0.05)}), cat,
                               t::network_inside_chips(), std::nullopt);
  REQUIRE(a.sites.size() == 2);
  const double it_a = 2 * 300.0 * 200.0, it_b = 1 * 500.0 * 200.0;  // 120 kJ, 100 kJ
  CHECK(a.sites[0].it_energy_j == Approx(it_a));
  CHECK(a.sites[1].it_energy_j == Approx(it_b));
  CHECK(a.sites[0].facility_energy_j == Approx(it_a * 1.1));
  CHECK(a.sites[1].facility_energy_j == Approx(it_b * 1.5));
  CHECK(a.sites[0].co2e_gross_kg == Approx(it_a * 1.1 / kJPerKwh * 0.4));
  CHECK(a.sites[0].co2e_net_kg == Approx(it_a * 1.1 / kJPerKwh * 0.1));
  CHECK(a.sites[1].co2e_gross_kg == Approx(it_b * 1.5 / kJPerKwh * 0.05));
  CHECK(a.sites[1].co2e_net_kg == Approx(it_b * 1.5 / kJPerKwh * 0.05));
  CHECK(a.facility_energy_j() == Approx(it_a * 1.1 + it_b * 1.5));
  CHECK(a.co2e_gross_kg() == Approx(it_a * 1.1 / kJPerKwh * 0.4 + it_b * 1.5 / kJPerKwh * 0.05));
  CHECK(a.average_chip_power_w == Approx((it_a + it_b) / 200.0 / 3.0));  // mean over the 3 chips
}

TEST_CASE("energy::account: network energy is added only for included_in: none classes", "[energy][accounting]") {
  const Catalog cat;
  NetworkEnergyTable net = t::network_inside_chips();
  net.set(LinkClass::fabric, LinkClassEnergy{1e-12, 8.5, IncludedIn::none, "test"});
  net.set(LinkClass::wan, LinkClassEnergy{1.8e-6, 2.0, IncludedIn::none, "test"});
  net.set(LinkClass::ici, LinkClassEnergy{1e-11, 5.0, IncludedIn::chip, "test"});        // inside the chip: never added
  net.set(LinkClass::nic, LinkClassEnergy{1e-11, 8.0, IncludedIn::host_overhead, "test"});  // inside host overhead

  auto f = t::site_figures(4, 100.0, 10.0);
  const auto idx = [](LinkClass c) { return static_cast<std::size_t>(c); };
  f.link_bytes_per_step[idx(LinkClass::fabric)] = 1e9;
  f.link_bytes_per_step[idx(LinkClass::wan)] = 1e6;
  f.link_bytes_per_step[idx(LinkClass::ici)] = 5e9;
  f.link_bytes_per_step[idx(LinkClass::nic)] = 5e9;
  f.link_counts = {{"fabric", 4}, {"wan_half", 2}, {"ici", 10}, {"nic", 4}};
  const auto job = t::job(10.0, 3.0, {f});  // 30 s
  const Accounting a = account(job, t::scenario_at({t::site("dc", 1.2, 0.3)}), cat, net, std::nullopt);
  const auto& s = a.sites[0];
  const double fabric_j = 1e9 * 8 * 1e-12 * 3 + 8.5 * 4 * 30.0;  // per-bit over 3 steps + idle ports x 30 s
  const double wan_j = 1e6 * 8 * 1.8e-6 * 3 + 2.0 * (0.5 * 2) * 30.0;  // a site owns half of each WAN link
  CHECK(s.network_energy_by_class_j.at("fabric") == Approx(fabric_j));
  CHECK(s.network_energy_by_class_j.at("wan") == Approx(wan_j));
  CHECK(s.network_energy_by_class_j.count("ici") == 0);
  CHECK(s.network_energy_by_class_j.count("nic") == 0);
  CHECK(s.network_energy_j == Approx(fabric_j + wan_j));
  CHECK(s.it_energy_j == Approx(4 * 100.0 * 30.0));
  CHECK(s.wan_energy_j == Approx(wan_j));
  // The datacenter's PUE applies to what runs inside it; the WAN is drawn by carrier networks (issue 10, item 13).
  const double facility_j = (4 * 100.0 * 30.0 + fabric_j) * 1.2 + wan_j;
  CHECK(s.facility_energy_j == Approx(facility_j));
  CHECK(s.facility_energy_j < (4 * 100.0 * 30.0 + fabric_j + wan_j) * 1.2);  // the WAN x PUE of before
  CHECK(s.co2e_gross_kg == Approx(facility_j / kJPerKwh * 0.3));
  CHECK(a.wan_energy_j() == Approx(wan_j));
}

TEST_CASE("energy::account: a pinned duration scales the per-second energy, not the per-bit energy", "[energy][accounting]") {
  // A pinned duration (training.duration_days) says how long the job ran, not what it did: its steps and the bytes
  // each moved stay those simulated. Chip power and idle link power are drawn per second and scale with the duration;
  // the WAN's and the fabric's per-bit energy follows the bytes moved (steps x bytes per step).
  const Catalog cat;
  NetworkEnergyTable net = t::network_inside_chips();
  net.set(LinkClass::wan, LinkClassEnergy{1.8e-6, 0.0, IncludedIn::none, "test"});   // per bit only, as profiles/network.yaml
  net.set(LinkClass::fabric, LinkClassEnergy{1e-12, 8.5, IncludedIn::none, "test"});  // per bit and idle ports
  auto f = t::site_figures(4, 100.0, 10.0);
  const auto idx = [](LinkClass c) { return static_cast<std::size_t>(c); };
  f.link_bytes_per_step[idx(LinkClass::fabric)] = 1e9;
  f.link_bytes_per_step[idx(LinkClass::wan)] = 1e6;
  f.link_counts = {{"fabric", 4}, {"wan_half", 2}};
  const auto job = t::job(10.0, 3.0, {f});  // 3 steps of 10 s: 30 s simulated
  const double simulated_s = 30.0, pinned_s = 10.0 * simulated_s;
  const double wan_bits_j = 1e6 * 3 * 8 * 1.8e-6;     // bytes per step x steps x 8 bit/B x J/bit = 43.2 J
  const double fabric_bits_j = 1e9 * 3 * 8 * 1e-12;   // 0.024 J

  const Accounting a = account(job, t::scenario_at({t::site("dc", 1.2, 0.3)}), cat, net, std::nullopt);
  auto sc = t::scenario_at({t::site("dc", 1.2, 0.3)});
  sc.training.duration_days = pinned_s / 86400.0;
  const Accounting b = account(job, sc, cat, net, std::nullopt);
  REQUIRE(b.duration_pinned);
  CHECK(a.duration_s == Approx(simulated_s));
  CHECK(b.duration_s == Approx(pinned_s));

  // Per bit: the same bytes, the same joules, whatever the duration.
  CHECK(a.wan_energy_j() == Approx(wan_bits_j));
  CHECK(b.wan_energy_j() == Approx(wan_bits_j));
  CHECK(b.sites[0].network_energy_by_class_j.at("fabric") == Approx(fabric_bits_j + 8.5 * 4 * pinned_s));
  // Per second: 10x the duration, 10x the joules.
  CHECK(b.it_energy_j() == Approx(10.0 * a.it_energy_j()));
  CHECK(b.it_energy_j() == Approx(4 * 100.0 * pinned_s));
  CHECK(b.sites[0].facility_energy_j == Approx((4 * 100.0 * pinned_s + fabric_bits_j + 8.5 * 4 * pinned_s) * 1.2 + wan_bits_j));
}

TEST_CASE("energy::account: embodied carbon = chips x die cm2 x CPA x duration / lifetime", "[energy][accounting]") {
  const Catalog cat;
  moesim::energy::EmbodiedFigures e;
  e.die_area_cm2 = 8.14;                      // H100 814 mm2 (profiles/accelerators/h100.yaml)
  e.carbon_per_area_kgco2e_per_cm2 = 1.8;     // LLMCarbon 4 nm CPA (profiles/embodied.yaml)
  e.lifetime_s = 5 * 365 * 86400.0;           // 5 years of 365 days
  auto sc = t::scenario_at({t::site("dc", 1.1, 0.4)});
  sc.training.duration_days = 10.0;
  const auto job = t::job(1.0, 1.0, {t::site_figures(4, 700.0, 1.0)});
  SECTION("die only") {
    const Accounting a = account(job, sc, cat, t::network_inside_chips(), e);
    CHECK(a.embodied);
    CHECK(a.sites[0].embodied_co2e_kg == Approx(4 * 8.14 * 1.8 * (10 * 86400.0) / (5 * 365 * 86400.0)));
    CHECK(a.embodied_co2e_kg() == Approx(a.sites[0].embodied_co2e_kg));
  }
  SECTION("with a fixed per-chip share") {
    e.other_fixed_kgco2e = 32.0;
    const Accounting a = account(job, sc, cat, t::network_inside_chips(), e);
    CHECK(a.sites[0].embodied_co2e_kg == Approx(4 * (8.14 * 1.8 + 32.0) * 10.0 / (5 * 365.0)));
  }
  SECTION("not asked: zero") {
    const Accounting a = account(job, sc, cat, t::network_inside_chips(), std::nullopt);
    CHECK_FALSE(a.embodied);
    CHECK(a.sites[0].embodied_co2e_kg == 0.0);
  }
}

TEST_CASE("energy::account: an hourly series integrates over the hours the job runs", "[energy][accounting][hourly]") {
  const Catalog cat;
  const std::string csv = write_four_hours("acc_four.csv", false);
  const std::string csv_market = write_four_hours("acc_four_market.csv", true);
  const auto job = one_kw_for_2_5_h();

  SECTION("start 00:30, PUE 1.2: partial first hour, hand sum") {
    const Accounting a = account(job, t::scenario_at({t::site("dc", 1.2, 0.999, std::nullopt, csv)}, "2024-03-01T00:30:00Z"),
                                 cat, t::network_inside_chips(), std::nullopt);
    const auto& s = a.sites[0];
    // Facility power 1.2 kW: 00:30-01:00 0.6 kWh x 0.1, 01:00-02:00 1.2 kWh x 0.2, 02:00-03:00 1.2 kWh x 0.3.
    const double expected = 0.6 * 0.1 + 1.2 * 0.2 + 1.2 * 0.3;
    CHECK(s.facility_energy_j == Approx(2.5 * 1.2 * kJPerKwh));
    CHECK(s.co2e_gross_kg == Approx(expected));  // 0.66 kg; the annual 0.999 is not used
    CHECK(s.co2e_net_kg == Approx(expected));    // no market column, no annual net: hourly gross
    CHECK(a.start_time_utc == "2024-03-01T00:30:00Z");
    const auto& b = s.intensity;
    CHECK(b.gross == GrossBasis::hourly);
    CHECK(b.net == NetBasis::hourly_gross_fallback);
    CHECK(b.series_file == csv);
    CHECK(b.series_covers == "2024-03-01T00:00:00Z to 2024-03-01T04:00:00Z (4 hours)");
    CHECK(b.series_hours == 4);
    CHECK(b.job_start_utc == "2024-03-01T00:30:00Z");
    CHECK(b.job_end_utc == "2024-03-01T03:00:00Z");
    CHECK(b.first_hour_utc == "2024-03-01T00:00:00Z");
    CHECK(b.hours_touched == 3);
    CHECK(b.effective_gross_kgco2e_per_kwh == Approx(expected / 3.0));
  }
  SECTION("start 01:15 with a partial last hour") {
    const auto short_job = t::job(10.0, 540.0, {t::site_figures(1, 1000.0, 10.0)});  // 1.5 h at 1 kW
    const Accounting a = account(short_job, t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, csv)}, "2024-03-01T01:15:00Z"),
                                 cat, t::network_inside_chips(), std::nullopt);
    CHECK(a.sites[0].co2e_gross_kg == Approx(0.75 * 0.2 + 0.75 * 0.3));
    CHECK(a.sites[0].intensity.hours_touched == 2);
    CHECK(a.sites[0].intensity.first_hour_utc == "2024-03-01T01:00:00Z");
  }
  SECTION("net from the market column") {
    const Accounting a = account(job, t::scenario_at({t::site("dc", 1.0, 0.5, 0.7, csv_market)}, "2024-03-01T00:30:00Z"), cat,
                                 t::network_inside_chips(), std::nullopt);
    CHECK(a.sites[0].co2e_gross_kg == Approx(0.5 * 0.1 + 1.0 * 0.2 + 1.0 * 0.3));
    CHECK(a.sites[0].co2e_net_kg == Approx(0.5 * 0.01 + 1.0 * 0.02 + 1.0 * 0.03));
    CHECK(a.sites[0].intensity.net == NetBasis::hourly_market);
  }
  SECTION("net from the annual net figure when the series has no market column") {
    const Accounting a = account(job, t::scenario_at({t::site("dc", 1.0, 0.5, 0.07, csv)}, "2024-03-01T00:30:00Z"), cat,
                                 t::network_inside_chips(), std::nullopt);
    CHECK(a.sites[0].co2e_gross_kg == Approx(0.55));
    CHECK(a.sites[0].co2e_net_kg == Approx(2.5 * 0.07));
    CHECK(a.sites[0].intensity.net == NetBasis::annual_net);
  }
  SECTION("start time but no series: annual figures, with a note") {
    const Accounting a = account(job, t::scenario_at({t::site("dc", 1.0, 0.5)}, "2024-03-01T00:30:00Z"), cat,
                                 t::network_inside_chips(), std::nullopt);
    CHECK(a.sites[0].co2e_gross_kg == Approx(2.5 * 0.5));
    CHECK(a.sites[0].intensity.gross == GrossBasis::annual);
    CHECK(t::contains(a.sites[0].intensity.note, "no hourly_intensity_csv: annual intensities used"));
  }
  SECTION("series but no start time: annual figures, with a note") {
    const Accounting a =
        account(job, t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, csv)}), cat, t::network_inside_chips(), std::nullopt);
    CHECK(a.sites[0].co2e_gross_kg == Approx(2.5 * 0.5));
    CHECK(a.sites[0].intensity.gross == GrossBasis::annual);
    CHECK(t::contains(a.sites[0].intensity.note, "no energy.start_time_utc"));
  }
  SECTION("two sites: one hourly, one annual") {
    const auto two = t::job(10.0, 900.0, {t::site_figures(1, 1000.0, 10.0, 0.5), t::site_figures(1, 1000.0, 10.0, 0.5)});
    const Accounting a = account(two,
                                 t::scenario_at({t::site("h", 1.0, 0.5, std::nullopt, csv), t::site("y", 1.0, 0.5)},
                                                "2024-03-01T00:30:00Z"),
                                 cat, t::network_inside_chips(), std::nullopt);
    CHECK(a.sites[0].co2e_gross_kg == Approx(0.55));
    CHECK(a.sites[1].co2e_gross_kg == Approx(1.25));
    CHECK(a.co2e_gross_kg() == Approx(1.8));
  }
}

TEST_CASE("energy::account: hourly range and input errors", "[energy][accounting][hourly]") {
  const Catalog cat;
  const std::string csv = write_four_hours("acc_range.csv", false);
  const auto job = one_kw_for_2_5_h();
  SECTION("the job runs past the end of the series") {
    const auto sc = t::scenario_at({t::site("late_dc", 1.0, 0.5, std::nullopt, csv)}, "2024-03-01T02:00:00Z");
    const std::string msg = t::expect_plain_error([&] { account(job, sc, cat, t::network_inside_chips(), std::nullopt); });
    CHECK(t::contains(msg, "datacenter 'late_dc'"));
    CHECK(t::contains(msg, "covers 2024-03-01T00:00:00Z to 2024-03-01T04:00:00Z (4 hours)"));
    CHECK(t::contains(msg, "the job runs from 2024-03-01T02:00:00Z to 2024-03-01T04:30:00Z"));
    CHECK(t::contains(msg, "needing 2024-03-01T02:00:00Z to 2024-03-01T05:00:00Z"));
  }
  SECTION("the job starts before the series") {
    const auto sc = t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, csv)}, "2024-02-29T23:00:00Z");
    CHECK(t::contains(t::expect_plain_error([&] { account(job, sc, cat, t::network_inside_chips(), std::nullopt); }),
                      "the job runs from 2024-02-29T23:00:00Z"));
  }
  SECTION("a malformed start time names the scenario key") {
    auto sc = t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, csv)}, "2024-03-01 noon", "/x/scenario.yaml");
    const auto e = t::expect_input_error([&] { account(job, sc, cat, t::network_inside_chips(), std::nullopt); });
    CHECK(e.file() == "/x/scenario.yaml");
    CHECK(e.key() == "energy.start_time_utc");
    CHECK(t::contains(e.message(), "'2024-03-01 noon' is not an ISO 8601 UTC timestamp"));
  }
  SECTION("a malformed series fails with its own location") {
    const auto sc = t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, t::data("bad/gap.csv"))}, "2024-03-01T00:00:00Z");
    const auto e = t::expect_input_error([&] { account(job, sc, cat, t::network_inside_chips(), std::nullopt); });
    CHECK(e.file() == t::data("bad/gap.csv"));
    CHECK(e.line() == 6);
  }
  SECTION("a job whose sites do not match the placement") {
    const auto sc = t::scenario_at({t::site("a", 1.0, 0.5), t::site("b", 1.0, 0.5)});
    CHECK(t::contains(t::expect_plain_error([&] { account(job, sc, cat, t::network_inside_chips(), std::nullopt); }),
                      "the job has 1 sites but the scenario places it in 2 datacenters"));
  }
}

TEST_CASE("energy::hourly_series_path: inline paths resolve against the scenario's directory", "[energy][accounting][hourly]") {
  const fs::path dir = t::temp_dir() / "scen";
  fs::create_directories(dir / "grid");
  const std::string csv = (dir / "grid" / "series.csv").string();
  t::write_file("scen/grid/series.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,100\n2024-03-01T01:00:00Z,100\n"
                                        "2024-03-01T02:00:00Z,100\n");
  const std::string scenario_file = (dir / "run.yaml").string();
  const Catalog cat;

  SECTION("inline datacenter, relative path") {
    const auto sc = t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, "grid/series.csv")}, "2024-03-01T00:00:00Z", scenario_file);
    CHECK(moesim::energy::hourly_series_path(sc.placement[0], *sc.placement[0].inline_spec, sc) == csv);
    const Accounting a = account(t::job(10.0, 180.0, {t::site_figures(1, 1000.0, 10.0)}), sc, cat, t::network_inside_chips(),
                                 std::nullopt);  // 0.5 h at 1 kW
    CHECK(a.sites[0].intensity.series_file == csv);
    CHECK(a.sites[0].datacenter.hourly_intensity_csv == csv);
    CHECK(a.sites[0].co2e_gross_kg == Approx(0.5 * 0.1));
  }
  SECTION("inline datacenter, absolute path is kept") {
    const auto sc = t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, csv)}, "", "/elsewhere/run.yaml");
    CHECK(moesim::energy::hourly_series_path(sc.placement[0], *sc.placement[0].inline_spec, sc) == csv);
  }
  SECTION("catalog datacenter: the catalog already resolved it; not re-resolved against the scenario") {
    Catalog with;
    with.add_datacenter(t::site("cat_dc", 1.0, 0.5, std::nullopt, "profiles/datacenters/series.csv"));
    moesim::scenario::Scenario sc;
    sc.source_file = scenario_file;
    moesim::scenario::PlacementEntry p;
    p.datacenter = "cat_dc";
    sc.placement.push_back(p);
    const auto dc = moesim::energy::resolve_datacenter(p, with);
    CHECK(moesim::energy::hourly_series_path(p, dc, sc) == "profiles/datacenters/series.csv");
  }
  SECTION("no series") {
    const auto sc = t::scenario_at({t::site("dc", 1.0, 0.5)});
    CHECK(moesim::energy::hourly_series_path(sc.placement[0], *sc.placement[0].inline_spec, sc).empty());
  }
}

TEST_CASE("energy::check_hourly_inputs: fails fast before a simulation", "[energy][accounting][hourly]") {
  const Catalog cat;
  const std::string csv = write_four_hours("check_four.csv", false);
  SECTION("valid inputs pass") {
    CHECK_NOTHROW(moesim::energy::check_hourly_inputs(
        t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, csv)}, "2024-03-01T01:00:00Z"), cat));
    CHECK_NOTHROW(moesim::energy::check_hourly_inputs(t::scenario_at({t::site("dc", 1.0, 0.5)}), cat));
  }
  SECTION("a malformed series") {
    const auto sc = t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, t::data("bad/unsorted.csv"))}, "2024-03-01T00:00:00Z");
    CHECK(t::expect_input_error([&] { moesim::energy::check_hourly_inputs(sc, cat); }).line() == 6);
  }
  SECTION("a start outside the series") {
    const auto sc = t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, csv)}, "2024-03-02T00:00:00Z");
    CHECK(t::contains(t::expect_plain_error([&] { moesim::energy::check_hourly_inputs(sc, cat); }), "covers"));
  }
  SECTION("a pinned duration that runs past the end") {
    auto sc = t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, csv)}, "2024-03-01T00:00:00Z");
    sc.training.duration_days = 1.0;
    CHECK(t::contains(t::expect_plain_error([&] { moesim::energy::check_hourly_inputs(sc, cat); }),
                      "needing 2024-03-01T00:00:00Z to 2024-03-02T00:00:00Z"));
  }
  SECTION("a malformed start time") {
    const auto sc = t::scenario_at({t::site("dc", 1.0, 0.5)}, "yesterday");
    CHECK(t::expect_input_error([&] { moesim::energy::check_hourly_inputs(sc, cat); }).key() == "energy.start_time_utc");
  }
}

TEST_CASE("energy::to_json(IntensityBasis): provenance names the basis and the series", "[energy][accounting][hourly]") {
  const Catalog cat;
  const std::string csv = write_four_hours("json_four.csv", true);
  const Accounting a = account(one_kw_for_2_5_h(), t::scenario_at({t::site("dc", 1.0, 0.5, std::nullopt, csv)}, "2024-03-01T00:30:00Z"),
                               cat, t::network_inside_chips(), std::nullopt);
  const auto j = moesim::energy::to_json(a.sites[0].intensity);
  CHECK(j.at("gross") == "hourly");
  CHECK(j.at("net") == "hourly_market");
  CHECK(j.at("series_file") == csv);
  CHECK(j.at("series_hours") == 4);
  CHECK(j.at("hours_touched") == 3);
  CHECK(j.at("job_start_utc") == "2024-03-01T00:30:00Z");
  CHECK(j.at("effective_gross_kgco2e_per_kwh").get<double>() == Approx(0.55 / 2.5));
  CHECK_FALSE(j.contains("note"));

  const Accounting annual =
      account(one_kw_for_2_5_h(), t::scenario_at({t::site("dc", 1.0, 0.5, 0.2)}), cat, t::network_inside_chips(), std::nullopt);
  const auto k = moesim::energy::to_json(annual.sites[0].intensity);
  CHECK(k.at("gross") == "annual");
  CHECK(k.at("net") == "annual_net");
  CHECK_FALSE(k.contains("series_file"));
  CHECK_FALSE(k.contains("job_start_utc"));
}
