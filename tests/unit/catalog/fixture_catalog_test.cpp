// SPDX-License-Identifier: Apache-2.0
// A small made-up profiles/ tree (tests/data/catalog/mini_profiles) exercising every loader path:
// CSV quoting, CRLF, empty cells, fixed/column years, percent and fraction CFE, generated datacenters,
// default directory selection and duplicate handling.

#include <catch2/catch.hpp>

#include <cstdlib>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "test_support.hpp"

using moesim::catalog::AcceleratorKind;
using moesim::catalog::Catalog;
using moesim::catalog::PowerConvention;
namespace t = moesim::catalog::test;

namespace {

Catalog mini() { return Catalog::load(t::data("mini_profiles")); }

}  // namespace

TEST_CASE("catalog::Catalog: loads a fixture tree", "[catalog]") {
  const Catalog c = mini();
  CHECK(c.profiles_dir() == t::data("mini_profiles"));
  CHECK(c.accelerator_names() == std::vector<std::string>{"mini_gpu", "mini_tpu"});

  const auto& gpu = c.accelerator("mini_gpu");
  CHECK(gpu.kind == AcceleratorKind::gpu);
  CHECK(gpu.peak_flops_for("fp8") == 4.0e14);
  CHECK(gpu.gpus_per_node == 4);
  CHECK(gpu.nvlink_latency_s == 0.0);  // optional latency absent: 0 = unknown
  CHECK(gpu.nvlink_efficiency == 1.0);  // optional efficiency absent: the line rate
  CHECK(gpu.lifetime_years == 4.0);
  CHECK(gpu.notes == "fixture");
  CHECK(gpu.sources.at("peak_matmul_flops_per_s.fp16") == "test fixture");

  const auto& tpu = c.accelerator("mini_tpu");
  CHECK(tpu.power_convention == PowerConvention::system);
  CHECK(tpu.pod_dims == std::vector<int>{4, 8});
  CHECK(tpu.ici_latency_s == 1.0e-6);
  CHECK(tpu.ici_efficiency == 1.0);  // optional efficiency absent: the line rate
  CHECK(tpu.tdp_w == 0.0);  // omitted: unknown
  CHECK_FALSE(tpu.die_area_mm2);
  CHECK_FALSE(tpu.measured_matmul_flops_per_s);
}

TEST_CASE("catalog::load_grid_manifest: CSV parsing and empty cells", "[catalog]") {
  const Catalog c = mini();
  SECTION("percent carbon-free share becomes a fraction; year from a column") {
    const auto& aa = c.grid("zones/AA/2022");
    CHECK(aa.kgco2e_per_kwh == Approx(0.250));
    REQUIRE(aa.cfe_fraction);
    CHECK(*aa.cfe_fraction == Approx(0.40));
    CHECK(aa.year == 2022);
    CHECK(aa.basis == "lifecycle");
    CHECK(aa.licence == "ODbL-1.0");
    CHECK(aa.source.find("zones.csv") != std::string::npos);
  }
  SECTION("an empty carbon-free cell is absent, not zero") {
    const auto& aa = c.grid("zones/AA/2023");
    CHECK(aa.kgco2e_per_kwh == Approx(0.200));
    CHECK_FALSE(aa.cfe_fraction);
  }
  SECTION("an empty intensity cell makes the whole entry absent") {
    CHECK_FALSE(c.has_grid("zones/BB/2023"));
    CHECK_FALSE(c.has_grid("countries/XBB"));
  }
  SECTION("zero is a value, not an absence") {
    REQUIRE(c.has_grid("zones/CC/2023"));
    CHECK(c.grid("zones/CC/2023").kgco2e_per_kwh == 0.0);
    CHECK(*c.grid("zones/CC/2023").cfe_fraction == 1.0);
  }
  SECTION("fixed year per file, 0..1 CFE column, decimals in intensity") {
    const auto& w = c.grid("regions/r-west1/2020");
    CHECK(w.kgco2e_per_kwh == Approx(0.1234));
    CHECK_FALSE(w.cfe_fraction);
    CHECK(w.zone_name == "Westville");
    CHECK(w.basis == "operational");
    CHECK(*c.grid("regions/r-east1/2020").cfe_fraction == Approx(0.5));
  }
  SECTION("keys without a year") {
    const auto& x = c.grid("countries/XAA");
    CHECK(x.year == 2023);
    CHECK(x.kgco2e_per_kwh == Approx(0.3215));
    CHECK(x.basis == "unspecified");
  }
  CHECK(c.grid_keys().size() == 6);
}

TEST_CASE("catalog::load_datacenter_file: explicit sites and generated datacenters", "[catalog]") {
  const Catalog c = mini();
  SECTION("explicit site with every optional field") {
    const auto& a = c.datacenter("site_a");
    CHECK(a.pue == 1.2);
    CHECK(a.gross_kgco2e_per_kwh == 0.3);
    CHECK(a.net_or_gross_kgco2e_per_kwh() == 0.1);
    CHECK(*a.cfe_fraction == 0.6);
    CHECK(a.wan_bandwidth_bytes_per_s == 1.25e9);
    CHECK(a.wan_latency_s == 0.01);
    CHECK(a.hourly_intensity_csv == t::data("mini_profiles/datacenters/hourly/site_a.csv"));
    CHECK(a.country_iso_code == "XAA");
  }
  SECTION("region-years with the fleet PUE of their year and no net figure") {
    const auto& e = c.datacenter("cloud_r_east1_2020");
    CHECK(e.pue == 1.11);
    CHECK(e.gross_kgco2e_per_kwh == Approx(0.4));
    CHECK(*e.cfe_fraction == Approx(0.5));
    CHECK_FALSE(e.net_kgco2e_per_kwh);
    CHECK(e.cloud_region == "r-east1");
    CHECK(e.location == "Eastville");
    CHECK(e.country_iso_code == "XAA");
    CHECK(e.licence == "Apache-2.0");
    CHECK_FALSE(c.datacenter("cloud_r_west1_2020").cfe_fraction);
  }
  SECTION("grid:<key> datacenters for the listed datasets only") {
    const auto& z = c.datacenter("grid:zones/AA/2023");
    CHECK(z.pue == 1.5);
    CHECK(z.gross_kgco2e_per_kwh == Approx(0.2));
    CHECK(z.grid_zone == "AA");
    CHECK_FALSE(z.cfe_fraction);
    CHECK(c.has_datacenter("grid:countries/XAA"));
    CHECK_FALSE(c.has_datacenter("grid:regions/r-east1/2020"));  // `regions` is not listed
  }
  CHECK(c.datacenters().size() == 1 + 2 + 4);  // site_a, 2 region-years, 3 zone-years + 1 country
}

TEST_CASE("catalog::Catalog: adding, duplicates and bad directories", "[catalog]") {
  Catalog c = mini();
  SECTION("an inline datacenter can be added and found") {
    moesim::catalog::DatacenterSpec dc;
    dc.name = "inline_dc";
    dc.gross_kgco2e_per_kwh = 0.25;
    c.add_datacenter(dc);
    CHECK(c.datacenter("inline_dc").gross_kgco2e_per_kwh == 0.25);
    CHECK_THROWS_AS(c.add_datacenter(dc), moesim::Error);
  }
  SECTION("a duplicate accelerator is refused") {
    CHECK_THROWS_AS(c.add_accelerator(c.accelerator("mini_gpu")), moesim::Error);
  }
  SECTION("a profiles directory that does not exist") {
    CHECK_THROWS_WITH(Catalog::load(t::data("no_such_dir")), Catch::Contains("does not exist"));
  }
}

TEST_CASE("catalog::Catalog: default profiles directory", "[catalog]") {
  const char* old = std::getenv("MOESIM_PROFILES");
  const std::string saved = old ? old : "";
  SECTION("MOESIM_PROFILES wins when set") {
    ::setenv("MOESIM_PROFILES", "/some/where", 1);
    CHECK(Catalog::default_profiles_dir() == "/some/where");
  }
  SECTION("otherwise the source tree's profiles/") {
    ::unsetenv("MOESIM_PROFILES");
    CHECK(Catalog::default_profiles_dir() == std::string(MOESIM_DEFAULT_PROFILES_DIR));
    CHECK(Catalog::default_profiles_dir() == t::real_profiles());
  }
  if (old) ::setenv("MOESIM_PROFILES", saved.c_str(), 1);
  else ::unsetenv("MOESIM_PROFILES");
}
