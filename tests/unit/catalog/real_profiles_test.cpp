// SPDX-License-Identifier: Apache-2.0
// The shipped profiles/: every accelerator and datacenter loads, carries sources, and holds the
// published values it claims to hold.

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <set>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "test_support.hpp"

using moesim::catalog::AcceleratorKind;
using moesim::catalog::Catalog;
using moesim::catalog::DispatchStyle;
using moesim::catalog::PowerConvention;
namespace t = moesim::catalog::test;

namespace {

const Catalog& real() {
  static const Catalog cat = Catalog::load(t::real_profiles());
  return cat;
}

}  // namespace

TEST_CASE("catalog::Catalog: loads the nine shipped accelerators", "[catalog]") {
  const std::vector<std::string> expected = {"a100", "a100_40gb", "h100", "h200", "h800", "tpu_v2", "tpu_v3", "tpu_v4", "v100"};
  CHECK(real().accelerator_names() == expected);
  for (const auto& name : expected) {
    const auto& a = real().accelerator(name);
    INFO(name);
    CHECK(a.name == name);
    CHECK_FALSE(a.display_name.empty());
    CHECK(a.kind == (name.rfind("tpu", 0) == 0 ? AcceleratorKind::tpu : AcceleratorKind::gpu));
    CHECK(a.dispatch == (a.kind == AcceleratorKind::tpu ? DispatchStyle::einsum : DispatchStyle::gather));
    CHECK(a.hbm_bytes > 0);
    CHECK(a.hbm_bandwidth_bytes_per_s > 0);
    CHECK(a.peak_vector_flops_per_s > 0);
    CHECK(a.idle_w <= a.active_w);
    CHECK(a.active_w <= a.full_w);
    if (a.tdp_w > 0) CHECK(a.full_w <= a.tdp_w);
  }
}

TEST_CASE("catalog::AcceleratorSpec: each power curve runs from its measured floor to its measured maximum", "[catalog][power]") {
  for (const auto& kv : real().accelerators()) {
    const auto& a = kv.second;
    INFO(a.name);
    // End points: nothing achieved = active_w (= idle_w on GPUs held at P0); the matrix units at their
    // full-power utilisation, or everything at its peak = the measured maximum.
    CHECK(a.compute_power_w(0.0, 0.0) == a.active_w);
    CHECK(a.compute_power_w(a.flop_utilisation_at_full_w, 0.0) == Approx(a.full_w));
    CHECK(a.compute_power_w(1.0, 1.0) == Approx(a.full_w));
    CHECK(a.compute_power_w(0.0, a.hbm_utilisation_at_memory_bound_w) == Approx(a.memory_bound_w));
    CHECK(a.idle_w <= a.compute_power_w(0.0, 0.0));
    // Monotone in both utilisations, never above the maximum.
    for (int i = 0; i < 10; ++i)
      for (int j = 0; j < 10; ++j) {
        const double uf = i / 10.0, um = j / 10.0, p = a.compute_power_w(uf, um);
        CHECK(a.compute_power_w(uf + 0.1, um) >= p);
        CHECK(a.compute_power_w(uf, um + 0.1) >= p);
        CHECK(p <= a.full_w + 1e-9);
      }
    CHECK(a.flop_utilisation_at_full_w > 0.0);
    CHECK(a.flop_utilisation_at_full_w <= 1.0);
    if (a.full_w > a.active_w) {
      CHECK(a.sources.count("flop_utilisation_at_full_w") == 1);
      CHECK(a.sources.count("hbm_utilisation_at_memory_bound_w") == 1);
    }
  }
  SECTION("a TPU v3 job's system power rises with its achieved utilisation") {
    const auto& v3 = real().accelerator("tpu_v3");
    const double host = v3.host_overhead_w;
    CHECK(v3.compute_power_w(0.0, 0.0) + host == Approx(238.0));  // communicating or waiting
    CHECK(v3.compute_power_w(0.85, 0.0) + host == Approx(325.0));  // dense matmuls at GShard's ceiling
    CHECK(v3.compute_power_w(0.3, 0.0) < v3.compute_power_w(0.6, 0.0));
  }
}

TEST_CASE("catalog::AcceleratorSpec: every numeric field that is set has a non-empty source", "[catalog]") {
  for (const auto& kv : real().accelerators()) {
    const auto& a = kv.second;
    INFO(a.name);
    std::vector<std::string> fields = {"devices_per_chip", "peak_vector_flops_per_s", "hbm_bytes",
                                       "hbm_bandwidth_bytes_per_s", "matmul_tile", "idle_w", "active_w", "full_w",
                                       "host_overhead_w"};
    if (a.kind == AcceleratorKind::tpu) {
      fields.insert(fields.end(), {"ici_links_per_chip", "ici_link_bandwidth_bytes_per_s", "pod_dims"});
    } else {
      fields.insert(fields.end(), {"nvlink_bandwidth_bytes_per_s", "nvlink_efficiency", "gpus_per_node", "nic_bandwidth_bytes_per_s",
                                   "sm_count", "gemm_block_tile"});
      // Every catalog GPU models wave quantisation.
      CHECK(a.sm_count > 0);
      CHECK(a.gemm_block_tile.size() == 2);
    }
    for (const auto& dt : a.peak_matmul_flops_per_s) fields.push_back("peak_matmul_flops_per_s." + dt.first);
    if (a.tdp_w > 0) fields.push_back("tdp_w");
    if (a.measured_matmul_flops_per_s) fields.push_back("measured_matmul_flops_per_s");
    if (a.die_area_mm2) fields.push_back("die_area_mm2");
    if (a.lifetime_years) fields.push_back("lifetime_years");
    for (const auto& f : fields) {
      INFO(f);
      REQUIRE(a.sources.count(f) == 1);
      CHECK(a.sources.at(f).size() > 10);
    }
  }
}

TEST_CASE("catalog::AcceleratorSpec: TPU structure as published", "[catalog]") {
  const auto& v2 = real().accelerator("tpu_v2");
  const auto& v3 = real().accelerator("tpu_v3");
  const auto& v4 = real().accelerator("tpu_v4");
  CHECK(v2.devices_per_chip == 2);
  CHECK(v3.devices_per_chip == 2);
  CHECK(v4.devices_per_chip == 1);  // megacore
  CHECK(v2.pod_dims == std::vector<int>{16, 16});
  CHECK(v3.pod_dims == std::vector<int>{32, 32});
  CHECK(v4.pod_dims == std::vector<int>{16, 16, 16});
  CHECK(v2.ici_links_per_chip == 4);
  CHECK(v3.ici_links_per_chip == 4);
  CHECK(v4.ici_links_per_chip == 6);
  for (const auto* a : {&v2, &v3, &v4}) {
    INFO(a->name);
    CHECK(a->matmul_tile == 128);
    // XLA DEFAULT precision: an fp32 matmul is one bf16 pass.
    CHECK(a->peak_flops_for("fp32") == a->peak_flops_for("bf16"));
  }
  CHECK(v2.peak_flops_for("bf16") == Approx(46e12));
  CHECK(v3.peak_flops_for("bf16") == Approx(123e12));
  CHECK(v4.peak_flops_for("bf16") == Approx(275e12));
  CHECK(v3.hbm_bandwidth_bytes_per_s == Approx(900e9));
  CHECK(v4.hbm_bandwidth_bytes_per_s == Approx(1200e9));
}

TEST_CASE("catalog::AcceleratorSpec: power conventions and published power figures", "[catalog]") {
  const auto& v2 = real().accelerator("tpu_v2");
  const auto& v3 = real().accelerator("tpu_v3");
  const auto& v4 = real().accelerator("tpu_v4");
  SECTION("TPU v2 uses Patterson's measured system power (host share included)") {
    CHECK(v2.power_convention == PowerConvention::system);
    CHECK(v2.host_overhead_w == 0.0);
    CHECK(v2.active_w == 221.0);  // Patterson et al. 2021 Table 3
    CHECK(v2.tdp_w == 280.0);
  }
  SECTION("TPU v3/v4: idle, then the production applications' min and max (Jouppi et al. ISCA 2023 Table 4)") {
    CHECK(v3.power_convention == PowerConvention::chip);
    CHECK(v3.idle_w == 123.0);
    CHECK(v3.active_w == 175.0);
    CHECK(v3.full_w == 262.0);
    CHECK(v3.tdp_w == 450.0);
    CHECK(v4.idle_w == 90.0);
    CHECK(v4.active_w == 121.0);
    CHECK(v4.full_w == 192.0);
    // The curves pass through the production means (220 W, 170 W) at 44 % and 59 % of peak.
    CHECK(v3.compute_power_w(0.44, 0.0) == Approx(220.0).margin(0.5));
    CHECK(v4.compute_power_w(0.587, 0.0) == Approx(170.0).margin(0.5));
    // Host shares: system average minus mean chip power, Patterson's 283 W fleet figure for TPU v3,
    // GLaM's measured 326 W for TPU v4 (not copied from v3).
    CHECK(220.0 + v3.host_overhead_w == Approx(283.0));
    CHECK(170.0 + v4.host_overhead_w == Approx(326.0));
    CHECK(v4.host_overhead_w != v3.host_overhead_w);
  }
  SECTION("GPUs are chip convention with a host share and full = TDP") {
    for (const auto& name : {"v100", "a100", "h100", "h200", "h800"}) {
      const auto& g = real().accelerator(name);
      INFO(name);
      CHECK(g.power_convention == PowerConvention::chip);
      CHECK(g.host_overhead_w > 0.0);
      CHECK(g.full_w == g.tdp_w);
      CHECK(g.gpus_per_node == 8);
    }
    // H100 node at full compute = Latif et al.'s measured 8.4 kW training maximum: 8 x (700 + 350) W,
    // below the 10.2 kW rating.
    const auto& h100 = real().accelerator("h100");
    CHECK(8 * (h100.full_w + h100.host_overhead_w) == Approx(8400.0));
    CHECK(real().accelerator("h200").host_overhead_w == h100.host_overhead_w);
    const auto& a100 = real().accelerator("a100");
    CHECK(8 * (a100.full_w + a100.host_overhead_w) == Approx(6500.0));
  }
}

TEST_CASE("catalog::AcceleratorSpec: GPU matrix dtypes and measured ceilings", "[catalog]") {
  const auto& v100 = real().accelerator("v100");
  SECTION("V100 has no bf16 matrix unit: asking for it names the supported dtypes") {
    CHECK(v100.peak_flops_for("fp16") == Approx(125e12));
    try {
      v100.peak_flops_for("bf16");
      FAIL("expected moesim::Error");
    } catch (const moesim::Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("bf16") != std::string::npos);
      CHECK(msg.find("supported dtypes: fp16") != std::string::npos);
    }
  }
  SECTION("H100 and H200 carry the ceilings measured on the project's devices") {
    const auto& h100 = real().accelerator("h100");
    const auto& h200 = real().accelerator("h200");
    REQUIRE(h100.measured_matmul_flops_per_s);
    REQUIRE(h100.measured_hbm_bandwidth_bytes_per_s);
    CHECK(*h100.measured_matmul_flops_per_s == Approx(798e12));
    CHECK(*h100.measured_hbm_bandwidth_bytes_per_s == Approx(3.0e12));
    REQUIRE(h200.measured_matmul_flops_per_s);
    CHECK(*h200.measured_matmul_flops_per_s == Approx(788e12));
    CHECK(*h200.measured_hbm_bandwidth_bytes_per_s == Approx(4.3e12));
    CHECK(h200.peak_flops_for("bf16") == h100.peak_flops_for("bf16"));
    CHECK(h200.hbm_bandwidth_bytes_per_s / h100.hbm_bandwidth_bytes_per_s == Approx(4.8 / 3.35));
  }
  SECTION("NIC per GPU per direction by generation") {
    CHECK(real().accelerator("a100").nic_bandwidth_bytes_per_s == Approx(200e9 / 8));  // HDR 200 Gb/s
    CHECK(real().accelerator("h100").nic_bandwidth_bytes_per_s == Approx(400e9 / 8));  // NDR 400 Gb/s
    CHECK(real().accelerator("h200").nic_bandwidth_bytes_per_s == Approx(400e9 / 8));
    CHECK(real().accelerator("h800").nic_bandwidth_bytes_per_s == Approx(400e9 / 8));
  }
  SECTION("H800 is the H100 with NVLink cut from 900 to 400 GB/s: nothing else the simulator uses differs") {
    const auto& h100 = real().accelerator("h100");
    const auto& h800 = real().accelerator("h800");
    CHECK(h800.nvlink_bandwidth_bytes_per_s == Approx(400e9 / 2));
    CHECK(h100.nvlink_bandwidth_bytes_per_s / h800.nvlink_bandwidth_bytes_per_s == Approx(900.0 / 400.0));
    // DeepSeek-V3 (arXiv 2412.19437 section 3.2.2) reports 160 GB/s over its NVLink: the payload rate within 5 %.
    CHECK(h800.nvlink_bandwidth_bytes_per_s * h800.nvlink_efficiency == Approx(160e9).epsilon(0.05));
    for (const char* dt : {"bf16", "fp16", "fp8"}) CHECK(h800.peak_flops_for(dt) == h100.peak_flops_for(dt));
    CHECK(h800.hbm_bytes == h100.hbm_bytes);
    CHECK(h800.hbm_bandwidth_bytes_per_s == h100.hbm_bandwidth_bytes_per_s);
    CHECK(h800.full_w == h100.full_w);
    CHECK(h800.host_overhead_w == h100.host_overhead_w);
    CHECK_FALSE(h800.measured_matmul_flops_per_s);  // nothing was measured on an H800
  }
}

TEST_CASE("catalog::DatacenterSpec: Patterson et al. 2021 sites hold the published values", "[catalog]") {
  struct Row {
    const char* name;
    double pue, gross, net, cfe;
  };
  const Row rows[] = {{"patterson_t5_taiwan_2019", 1.12, 0.545, 0.545, 0.19},
                      {"patterson_gshard_north_carolina_2020", 1.09, 0.201, 0.177, 0.73},
                      {"patterson_switch_georgia_2020", 1.10, 0.403, 0.330, 0.43},
                      {"patterson_et_nas_georgia_2018", 1.10, 0.431, 0.431, 0.31}};
  for (const auto& r : rows) {
    INFO(r.name);
    const auto& dc = real().datacenter(r.name);
    CHECK(dc.pue == r.pue);
    CHECK(dc.gross_kgco2e_per_kwh == r.gross);
    REQUIRE(dc.net_kgco2e_per_kwh);
    CHECK(*dc.net_kgco2e_per_kwh == r.net);
    REQUIRE(dc.cfe_fraction);
    CHECK(*dc.cfe_fraction == r.cfe);
    CHECK(dc.sources.at("pue").find("Patterson") != std::string::npos);
  }
  SECTION("GShard accounting: 24.1 MWh x 0.201 / 0.177 -> 4.8 / 4.3 tCO2e (Table 4)") {
    const auto& dc = real().datacenter("patterson_gshard_north_carolina_2020");
    CHECK(24.1 * dc.gross_kgco2e_per_kwh == Approx(4.8).epsilon(0.01));
    CHECK(24.1 * dc.net_or_gross_kgco2e_per_kwh() == Approx(4.3).epsilon(0.01));
  }
  SECTION("LaMDA: PUE 1.10 and the single published intensity 0.056") {
    const auto& dc = real().datacenter("lamda_2022");
    CHECK(dc.pue == 1.10);
    CHECK(dc.net_or_gross_kgco2e_per_kwh() == 0.056);
    CHECK_FALSE(dc.cfe_fraction);
    CHECK(451.0 * 0.056 == Approx(25.2).epsilon(0.01));  // the paper's 451 MWh -> 25.2 tCO2e
  }
}

TEST_CASE("catalog::DatacenterSpec: Google region-years match the shipped CSV row for row", "[catalog]") {
  for (int year = 2019; year <= 2024; ++year) {
    const std::string csv =
        t::real_profiles() + "/grid/google/google-cloud-region-carbon-" + std::to_string(year) + ".csv";
    std::ifstream in(csv);
    REQUIRE(in);
    std::string line;
    std::getline(in, line);  // header
    int rows = 0;
    while (std::getline(in, line)) {
      const auto cells = t::split_commas(line);
      if (cells.size() < 4) continue;  // trailing blank line
      ++rows;
      std::string id = cells[0];
      for (char& c : id)
        if (c == '-') c = '_';
      const std::string name = "gcp_" + id + "_" + std::to_string(year);
      INFO(name);
      REQUIRE(real().has_datacenter(name));
      const auto& dc = real().datacenter(name);
      CHECK(dc.gross_kgco2e_per_kwh == Approx(std::stod(cells[3]) / 1000.0));
      CHECK(dc.cloud_region == cells[0]);
      CHECK(dc.year == year);
      CHECK(dc.country_iso_code.size() == 3);
      CHECK_FALSE(dc.net_kgco2e_per_kwh);  // not published per region: falls back to gross
      CHECK(dc.net_or_gross_kgco2e_per_kwh() == dc.gross_kgco2e_per_kwh);
      if (cells[2].empty()) {
        CHECK_FALSE(dc.cfe_fraction);  // empty CFE cell: absent, not zero
      } else {
        REQUIRE(dc.cfe_fraction);
        CHECK(*dc.cfe_fraction == Approx(std::stod(cells[2])));
      }
      CHECK(dc.pue == Approx(year == 2024 ? 1.09 : 1.10));
    }
    CHECK(rows > 20);
  }
  SECTION("spot check: us-central1 2021 and asia-east1 2019 (Patterson's Taiwan 2019: CFE 0.19, 541 g)") {
    const auto& iowa = real().datacenter("gcp_us_central1_2021");
    CHECK(iowa.gross_kgco2e_per_kwh == Approx(0.394));
    CHECK(*iowa.cfe_fraction == Approx(0.97));
    CHECK(iowa.country_iso_code == "USA");
    CHECK(iowa.licence == "Apache-2.0");
    const auto& taiwan = real().datacenter("gcp_asia_east1_2019");
    CHECK(taiwan.gross_kgco2e_per_kwh == Approx(0.541));
    CHECK(*taiwan.cfe_fraction == Approx(0.19));
    CHECK(taiwan.country_iso_code == "TWN");
    CHECK_FALSE(real().datacenter("gcp_asia_east2_2019").cfe_fraction);  // empty cell in the 2019 CSV
  }
}

TEST_CASE("catalog::Catalog: grid keys from the three shipped datasets", "[catalog]") {
  const auto& c = real();
  SECTION("Google: lifecycle 2019-2020, operational from 2021, gCO2/kWh -> kgCO2/kWh") {
    CHECK(c.grid("google/asia-east1/2019").kgco2e_per_kwh == Approx(0.541));
    CHECK(c.grid("google/asia-east1/2019").basis == "lifecycle");
    CHECK(c.grid("google/us-central1/2021").basis == "operational");
    CHECK(c.grid("google/us-central1/2021").licence == "Apache-2.0");
  }
  SECTION("Electricity Maps: percent carbon-free becomes a fraction; quoted names keep their commas") {
    const auto& yad = c.grid("electricity_maps/US-CAR-YAD/2021");
    CHECK(yad.zone_name == "Alcoa Power Generating, Inc. Yadkin Division");
    CHECK(yad.kgco2e_per_kwh == Approx(0.054));
    REQUIRE(yad.cfe_fraction);
    CHECK(*yad.cfe_fraction == Approx(0.95));
    CHECK(yad.licence == "ODbL-1.0");
    CHECK(c.grid("electricity_maps/AE/2021").kgco2e_per_kwh == Approx(0.447));
  }
  SECTION("Ember: keyed by code only, with the figure's year") {
    const auto& afg = c.grid("ember/AFG");
    CHECK(afg.kgco2e_per_kwh == Approx(0.12371));
    CHECK(afg.year == 2023);
    CHECK(afg.licence == "CC-BY-SA-4.0");
    CHECK_FALSE(afg.cfe_fraction);
  }
  SECTION("counts: 6 Google years, 352 zones x 5 years, 222 Ember keys") {
    std::set<std::string> datasets;
    int em = 0, ember = 0;
    for (const auto& k : c.grid_keys()) {
      datasets.insert(c.grid(k).dataset);
      em += c.grid(k).dataset == "electricity_maps";
      ember += c.grid(k).dataset == "ember";
    }
    CHECK(datasets == std::set<std::string>{"electricity_maps", "ember", "google"});
    CHECK(em == 352 * 5);
    CHECK(ember == 222);
  }
}

TEST_CASE("catalog::Catalog: any grid zone is a datacenter named grid:<key>", "[catalog]") {
  const auto& dc = real().datacenter("grid:electricity_maps/DE/2023");
  CHECK(dc.gross_kgco2e_per_kwh == real().grid("electricity_maps/DE/2023").kgco2e_per_kwh);
  CHECK(dc.pue == 1.56);  // Uptime Institute 2024 industry average
  CHECK(dc.sources.at("pue").find("Uptime") != std::string::npos);
  CHECK_FALSE(dc.net_kgco2e_per_kwh);
  CHECK(dc.licence == "ODbL-1.0");
  CHECK(real().datacenter("grid:ember/FRA").year == real().grid("ember/FRA").year);
  CHECK(real().has_datacenter("grid:google/europe-west1/2022"));
}

TEST_CASE("catalog::Catalog: misspelt names get up to three suggestions", "[catalog]") {
  SECTION("accelerator") {
    try {
      real().accelerator("h10");
      FAIL("expected moesim::Error");
    } catch (const moesim::Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("unknown accelerator 'h10'") != std::string::npos);
      CHECK(msg.find("did you mean: h100") != std::string::npos);
    }
  }
  SECTION("datacenter") {
    try {
      real().datacenter("patterson_t5_taiwan_2018");
      FAIL("expected moesim::Error");
    } catch (const moesim::Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("did you mean: patterson_t5_taiwan_2019") != std::string::npos);
      CHECK(msg.find("grid:") != std::string::npos);
    }
  }
  SECTION("grid key") {
    try {
      real().grid("ember/FRX");
      FAIL("expected moesim::Error");
    } catch (const moesim::Error& e) {
      CHECK(std::string(e.what()).find("ember/FRA") != std::string::npos);
    }
  }
}
