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
