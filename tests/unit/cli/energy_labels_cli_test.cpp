// SPDX-License-Identifier: Apache-2.0
// What a run's report and JSON say about its energy and intensities, end to end: the WAN's energy (no PUE) in the
// facility-energy formula, and the intensity printed beside a site on an hourly series (the one its CO2e used).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "moesim_test/cli_run.hpp"

using nlohmann::json;

namespace {

std::string scratch(const std::string& name) { return moesim::testing::scratch_dir("energy_labels_cli", name); }

std::string read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/** The text of the Markdown report of TARGET (a run id, or cN) in `db`: `report` writes a file and prints its path. */
std::string markdown_report(const std::string& target, const std::string& db, const std::string& dir) {
  const auto r = moesim::testing::run_moesim_in("report " + target + " --format md --output " + dir + "/md --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  std::string path = r.out;
  while (!path.empty() && (path.back() == '\n' || path.back() == '\r')) path.pop_back();
  return read(path);
}

}  // namespace

TEST_CASE("cli::report: a run across the WAN shows the WAN's energy, and facility = (IT + network - WAN) x PUE + WAN",
          "[cli][reports]") {
  const std::string dir = scratch("wan");
  const std::string db = dir + "/runs.db";
  const auto r = moesim::testing::run_moesim_in(
      std::string("run ") + MOESIM_SOURCE_ROOT + "/scenarios/examples/two-datacenter-data-parallel.yaml --json --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  const double it = j.at("it_energy_mwh").get<double>(), net = j.at("network_energy_mwh").get<double>(),
               wan = j.at("wan_energy_mwh").get<double>(), facility = j.at("facility_energy_mwh").get<double>();
  REQUIRE(wan > 0.0);
  REQUIRE(j.at("datacenters").size() == 2);
  const double pue = j.at("datacenters")[0].at("pue").get<double>();
  REQUIRE(j.at("datacenters")[1].at("pue").get<double>() == pue);
  CHECK(facility == Approx((it + net - wan) * pue + wan).epsilon(1e-9));
  const auto md = moesim::testing::run_moesim_in("report " + std::to_string(j.at("run_id").get<long long>()) + " --format md -o " + dir +
                                                     " --db " + db,
                                                 dir);
  INFO(md.err);
  REQUIRE(md.status == 0);
  std::string text;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.path().extension() == ".md") text += read(e.path().string());
  CHECK(text.find("of which WAN (carrier networks, no PUE)") != std::string::npos);
  CHECK(text.find("+ WAN energy (drawn by carrier networks, no PUE)") != std::string::npos);
  CHECK(text.find("Facility energy = (IT + network) \xC3\x97 PUE;") == std::string::npos);
}

TEST_CASE("cli::run: on an hourly series a site's intensities are the ones its CO2e used", "[cli][energy]") {
  const std::string dir = scratch("hourly");
  const std::string csv = std::string(MOESIM_SOURCE_ROOT) + "/tests/data/energy/hourly_synthetic.csv";
  REQUIRE(std::filesystem::exists(csv));
  const auto r = moesim::testing::run_moesim_in(
      std::string("run ") + MOESIM_SOURCE_ROOT + "/scenarios/quickstart.yaml --json --no-store --set 'placement=[{datacenter: {name: hx, "
      "pue: 1.1, gross_kgco2e_per_kwh: 0.43, hourly_intensity_csv: " + csv + "}}]' --set energy.start_time_utc=2024-03-01T00:00:00Z",
      dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  const json& site = j.at("datacenters")[0];
  const double kwh = j.at("facility_energy_mwh").get<double>() * 1000.0;
  const double gross_kg = j.at("co2e_gross_t").get<double>() * 1000.0, net_kg = j.at("co2e_net_t").get<double>() * 1000.0;
  CHECK(site.at("gross_kgco2e_per_kwh").get<double>() * kwh == Approx(gross_kg).epsilon(1e-9));
  CHECK(site.at("gross_kgco2e_per_kwh").get<double>() != Approx(0.43));  // not the annual figure it did not use
  REQUIRE(site.at("net_kgco2e_per_kwh").is_number());
  CHECK(site.at("net_kgco2e_per_kwh").get<double>() * kwh == Approx(net_kg).epsilon(1e-9));
}

TEST_CASE("cli::report: a site's intensity is attributed and traced to its data: an inline grid key, an hourly series",
          "[cli][energy]") {
  const std::string dir = scratch("attribution");
  const std::string db = dir + "/runs.db";
  std::filesystem::remove(db);
  SECTION("an inline datacenter on an Electricity Maps zone carries the dataset's attribution, and no CFE") {
    const auto r = moesim::testing::run_moesim_in(
        std::string("run ") + MOESIM_SOURCE_ROOT + "/scenarios/quickstart.yaml --db " + db +
            " --set 'placement=[{datacenter: {name: colo_de, pue: 1.3, grid: electricity_maps/DE/2023}}]'",
        dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    const std::string md = markdown_report("1", db, dir);
    CHECK(md.find("Data from Electricity Maps (https://www.electricitymaps.com)") != std::string::npos);
    CHECK(md.find("grid key electricity_maps/DE/2023: lifecycle intensity") != std::string::npos);
    const auto j = json::parse(moesim::testing::run_moesim_in("runs show 1 --json --db " + db, dir).out);
    INFO(j.dump());
    CHECK(j.dump().find("\"cfe_fraction\":0.62") == std::string::npos);  // the zone's carbon-free generation share
  }
  SECTION("an hourly series is named in the report with the hours and the intensities it gave") {
    const std::string csv = std::string(MOESIM_SOURCE_ROOT) + "/tests/data/energy/hourly_synthetic.csv";
    const auto r = moesim::testing::run_moesim_in(
        std::string("run ") + MOESIM_SOURCE_ROOT + "/scenarios/quickstart.yaml --json --db " + db +
            " --set 'placement=[{datacenter: {name: hx, pue: 1.1, gross_kgco2e_per_kwh: 0.43, hourly_intensity_csv: " + csv +
            "}}]' --set energy.start_time_utc=2024-03-01T00:00:00Z",
        dir);
    INFO(r.err);
    REQUIRE(r.status == 0);
    const json j = json::parse(r.out);
    const double gross = j.at("datacenters")[0].at("gross_kgco2e_per_kwh").get<double>();
    const std::string md = markdown_report(std::to_string(j.at("run_id").get<long long>()), db, dir);
    CHECK(md.find("hourly series " + csv) != std::string::npos);
    CHECK(md.find("the annual figure above is not used") != std::string::npos);
    char shown[32];
    std::snprintf(shown, sizeof shown, "energy-weighted gross %.4g kgCO2e/kWh", gross);
    CHECK(md.find(shown) != std::string::npos);  // the intensity the CO2e used, as the sites table shows it
  }
}

TEST_CASE("cli::compare: alternatives on lifecycle and operational grid intensities are flagged, in text and reports",
          "[cli][energy]") {
  const std::string dir = scratch("basis");
  const std::string db = dir + "/runs.db";
  std::filesystem::remove(db);
  // The shipped example compares Iowa's 2024 grid (Google, operational) with its 2019 grid (Google, lifecycle).
  const auto r = moesim::testing::run_moesim_in(std::string("compare ") + MOESIM_SOURCE_ROOT + "/scenarios/compare/small_placement.yaml --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const std::string note = "Grid intensities on different accounting bases: lifecycle: gcp_us_central1_2019 (iowa_2019_grid); operational: "
                           "gcp_us_central1_2024 (base";
  CHECK(r.out.find("note: " + note) != std::string::npos);
  CHECK(markdown_report("c1", db, dir).find("> **Note:** " + note) != std::string::npos);
  const auto html = moesim::testing::run_moesim_in("report c1 --format html --output " + dir + "/html --db " + db, dir);
  INFO(html.err);
  REQUIRE(html.status == 0);
  std::string page;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/html")) page += read(e.path().string());
  CHECK(page.find("id=\"grid-basis-note\"") != std::string::npos);
  // One basis, no note: the same comparison without its 2019 alternative.
  const std::string db2 = dir + "/one_basis.db";
  std::filesystem::remove(db2);
  const auto one = moesim::testing::run_moesim_in(std::string("compare ") + MOESIM_SOURCE_ROOT +
                                                      "/scenarios/quickstart.yaml --alt '{label: finland, placement: [{datacenter: "
                                                      "gcp_europe_north1_2024}]}' --db " + db2,
                                                  dir);
  INFO(one.err);
  REQUIRE(one.status == 0);
  CHECK(one.out.find("accounting bases") == std::string::npos);
}

TEST_CASE("cli::sweep report: points on lifecycle and operational grid intensities are flagged", "[cli][energy]") {
  const std::string dir = scratch("sweep_basis");
  const std::string db = dir + "/runs.db";
  std::filesystem::remove(db);
  // The small sweep's placement axis, with Iowa's 2019 grid (Google, lifecycle) beside its 2024 grid (operational).
  std::string yaml = read(std::string(MOESIM_SOURCE_ROOT) + "/tests/data/cli/small_sweep.yaml");
  const std::string finland = "gcp_europe_north1_2024";
  REQUIRE(yaml.find(finland) != std::string::npos);
  yaml.replace(yaml.find(finland), finland.size(), "gcp_us_central1_2019");
  const std::string file = dir + "/basis_sweep.yaml";
  std::ofstream(file) << yaml;
  const auto r = moesim::testing::run_moesim_in("sweep " + file + " --db " + db, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const std::string md = markdown_report("s1", db, dir);
  CHECK(md.find("> **Note:** Grid intensities on different accounting bases: lifecycle: gcp_us_central1_2019") != std::string::npos);
  CHECK(md.find("operational: gcp_us_central1_2024") != std::string::npos);
}
