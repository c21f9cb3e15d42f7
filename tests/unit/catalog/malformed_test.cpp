// SPDX-License-Identifier: Apache-2.0
// Malformed profiles give moesim::InputError naming the file, the line (and column), the key and
// what was expected. The fixtures are in tests/data/catalog/bad/; expected lines are looked up in the
// fixture text so the check cannot drift from the file.

#include <catch2/catch.hpp>

#include "moesim/catalog/catalog.hpp"
#include "moesim/core/error.hpp"
#include "moesim_test/input_error.hpp"
#include "test_support.hpp"

using moesim::InputError;
using moesim::catalog::load_accelerator_file;
using moesim::catalog::load_datacenter_file;
using moesim::catalog::load_grid_manifest;
namespace t = moesim::catalog::test;

namespace {

using moesim::testing::expect_input_error;

InputError accel_error(const std::string& fixture) {
  const std::string file = t::data("bad/" + fixture + ".yaml");
  return expect_input_error([&] { load_accelerator_file(file); });
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("catalog::load_accelerator_file: malformed profiles name file, line, key and expectation", "[catalog]") {
  SECTION("unknown key, with the closest allowed key suggested") {
    const auto e = accel_error("accel_unknown_key");
    const std::string file = t::data("bad/accel_unknown_key.yaml");
    CHECK(e.file() == file);
    CHECK(e.line() == t::line_of(file, "tdp_watts: {"));
    CHECK(e.column() == 1);
    CHECK(e.key() == "tdp_watts");
    CHECK(contains(e.message(), "did you mean 'tdp_w'"));
    CHECK(contains(e.what(), file + ":" + std::to_string(e.line()) + ":1: tdp_watts:"));
  }
  SECTION("missing required field: points at the mapping that should hold it") {
    const auto e = accel_error("accel_missing_field");
    CHECK(e.key() == "hbm_bytes");
    CHECK(e.line() == t::line_of(t::data("bad/accel_missing_field.yaml"), "name: accel_missing_field"));
    CHECK(contains(e.message(), "missing required field"));
  }
  SECTION("wrong type: a word where a number is expected") {
    const auto e = accel_error("accel_wrong_type");
    CHECK(e.key() == "hbm_bandwidth_bytes_per_s.value");
    CHECK(e.line() == t::line_of(t::data("bad/accel_wrong_type.yaml"), "value: fast"));
    CHECK(e.column() > 1);
    CHECK(contains(e.message(), "expected a number > 0, got 'fast'"));
  }
  SECTION("negative power") {
    const auto e = accel_error("accel_negative_power");
    CHECK(e.key() == "idle_w.value");
    CHECK(e.line() == t::line_of(t::data("bad/accel_negative_power.yaml"), "idle_w:"));
    CHECK(contains(e.message(), ">= 0"));
  }
  SECTION("an NVLink or ICI efficiency outside (0, 1]") {
    for (const std::string key : {"nvlink_efficiency", "ici_efficiency"}) {
      INFO(key);
      const auto e = accel_error("accel_" + key);
      CHECK(e.key() == key + ".value");
      CHECK(e.line() == t::line_of(t::data("bad/accel_" + key + ".yaml"), key + ":"));
      const auto z = accel_error("accel_" + key + "_zero");
      CHECK(z.key() == key);
      CHECK(contains(z.message(), "must be > 0"));
    }
  }
  SECTION("a TPU-only key on a GPU") {
    const auto g = accel_error("accel_ici_efficiency_gpu");
    CHECK(g.key() == "ici_efficiency");
    CHECK(contains(g.message(), "not used for kind 'gpu'"));
  }
  SECTION("the wave-quantisation keys: both or neither, and a tile of two numbers") {
    const auto e = accel_error("accel_sm_count_alone");
    CHECK(e.key() == "gemm_block_tile");
    CHECK(e.line() == t::line_of(t::data("bad/accel_sm_count_alone.yaml"), "sm_count:"));
    CHECK(contains(e.message(), "give both or neither"));
    const auto f = accel_error("accel_block_tile_three");
    CHECK(f.key() == "gemm_block_tile");
    CHECK(f.line() == t::line_of(t::data("bad/accel_block_tile_three.yaml"), "gemm_block_tile:"));
    CHECK(contains(f.message(), "expected [rows, columns]"));
    CHECK(contains(f.message(), "got 3 numbers"));
  }
  SECTION("a number without a source") {
    const auto e = accel_error("accel_missing_source");
    CHECK(e.key() == "tdp_w.source");
    CHECK(e.line() == t::line_of(t::data("bad/accel_missing_source.yaml"), "tdp_w:"));
    CHECK(contains(e.message(), "source"));
  }
  SECTION("a bare number instead of {value, source}") {
    const auto e = accel_error("accel_bare_number");
    CHECK(e.key() == "tdp_w");
    CHECK(e.line() == t::line_of(t::data("bad/accel_bare_number.yaml"), "tdp_w: 300"));
    CHECK(contains(e.message(), "expected {value:"));
  }
  SECTION("unknown dtype in the matrix-unit table lists the known dtypes") {
    const auto e = accel_error("accel_unknown_dtype");
    CHECK(e.key() == "peak_matmul_flops_per_s.int8");
    CHECK(e.line() == t::line_of(t::data("bad/accel_unknown_dtype.yaml"), "int8:"));
    CHECK(contains(e.message(), "fp32, tf32, bf16, fp16, fp8"));
  }
  SECTION("active power above full power") {
    const auto e = accel_error("accel_power_order");
    CHECK(e.key() == "active_w");
    CHECK(e.line() == t::line_of(t::data("bad/accel_power_order.yaml"), "active_w:"));
    CHECK(contains(e.message(), "exceeds full_w"));
  }
  SECTION("a power-curve utilisation above 1 names the key and the allowed range") {
    const auto e = accel_error("accel_curve_above_one");
    CHECK(e.key() == "flop_utilisation_at_full_w");
    CHECK(e.line() == t::line_of(t::data("bad/accel_curve_above_one.yaml"), "flop_utilisation_at_full_w:"));
    CHECK(contains(e.message(), "(0, 1]"));
    CHECK(contains(e.message(), "1.2"));
  }
  SECTION("a power-curve utilisation of 0") {
    const auto e = accel_error("accel_curve_zero");
    CHECK(e.key() == "hbm_utilisation_at_memory_bound_w.value");
    CHECK(e.line() == t::line_of(t::data("bad/accel_curve_zero.yaml"), "hbm_utilisation_at_memory_bound_w:"));
    CHECK(contains(e.message(), "> 0"));
  }
  SECTION("memory-bound power below active power: the curve would fall with HBM traffic") {
    const auto e = accel_error("accel_curve_memory_below_active");
    CHECK(e.key() == "memory_bound_w");
    CHECK(e.line() == t::line_of(t::data("bad/accel_curve_memory_below_active.yaml"), "memory_bound_w:"));
    CHECK(contains(e.message(), "between active_w (120) and full_w (300)"));
  }
  SECTION("a misspelt power-curve key suggests the allowed one") {
    const auto e = accel_error("accel_curve_misspelt");
    CHECK(e.key() == "flop_utilization_at_full_w");
    CHECK(contains(e.message(), "did you mean 'flop_utilisation_at_full_w'"));
  }
  SECTION("a TPU-only key on a GPU") {
    const auto e = accel_error("accel_foreign_key");
    CHECK(e.key() == "pod_dims");
    CHECK(e.line() == t::line_of(t::data("bad/accel_foreign_key.yaml"), "pod_dims:"));
    CHECK(contains(e.message(), "not used for kind 'gpu'"));
  }
  SECTION("an enum value outside the allowed set") {
    const auto e = accel_error("accel_bad_kind");
    CHECK(e.key() == "kind");
    CHECK(e.line() == t::line_of(t::data("bad/accel_bad_kind.yaml"), "kind: fpga"));
    CHECK(contains(e.message(), "expected one of: tpu, gpu"));
  }
  SECTION("name must match the file name") {
    const auto e = accel_error("accel_name_mismatch");
    CHECK(e.key() == "name");
    CHECK(e.line() == t::line_of(t::data("bad/accel_name_mismatch.yaml"), "name: some_other_name"));
  }
  SECTION("an integer field holding a fraction") {
    const auto e = accel_error("accel_not_integer");
    CHECK(e.key() == "gpus_per_node.value");
    CHECK(e.line() == t::line_of(t::data("bad/accel_not_integer.yaml"), "gpus_per_node:"));
    CHECK(contains(e.message(), "integer"));
  }
  SECTION("YAML syntax error: yaml-cpp's position is kept") {
    const auto e = accel_error("accel_bad_yaml");
    CHECK(e.line() > 0);
    CHECK(contains(e.message(), "invalid YAML"));
  }
  SECTION("a file that does not exist") {
    const auto e = accel_error("no_such_accelerator");
    CHECK(contains(e.message(), "cannot open"));
  }
}

TEST_CASE("catalog::load_datacenter_file: malformed datacenters name file, line and key", "[catalog]") {
  const std::map<std::string, moesim::catalog::GridIntensity> no_grid;
  SECTION("PUE below 1 in the second entry") {
    const std::string file = t::data("bad/dc_bad_pue.yaml");
    const auto e = expect_input_error([&] { load_datacenter_file(file, no_grid); });
    CHECK(e.key() == "datacenters[1].pue.value");
    CHECK(e.line() == t::line_of(file, "value: 0.9"));
    CHECK(contains(e.message(), ">= 1"));
  }
  SECTION("misspelt key") {
    const std::string file = t::data("bad/dc_unknown_key.yaml");
    const auto e = expect_input_error([&] { load_datacenter_file(file, no_grid); });
    CHECK(e.key() == "datacenters[0].cfe_fracton");
    CHECK(e.line() == t::line_of(file, "cfe_fracton"));
    CHECK(contains(e.message(), "did you mean 'cfe_fraction'"));
  }
  SECTION("country code that is not alpha-3") {
    const std::string file = t::data("bad/dc_bad_iso.yaml");
    const auto e = expect_input_error([&] { load_datacenter_file(file, no_grid); });
    CHECK(e.key() == "datacenters[0].country_iso_code");
    CHECK(e.line() == t::line_of(file, "country_iso_code: US"));
  }
  SECTION("generated region-years need a fleet PUE for their year") {
    const auto grid = load_grid_manifest(t::data("mini_profiles/grid/datasets.yaml"));
    const std::string file = t::data("bad/dc_missing_pue_year.yaml");
    const auto e = expect_input_error([&] { load_datacenter_file(file, grid); });
    CHECK(e.key() == "google_cloud_regions.fleet_pue");
    CHECK(contains(e.message(), "no fleet PUE for 2020"));
  }
  SECTION("generators refuse a dataset that is not loaded") {
    const std::string file = t::data("bad/dc_missing_pue_year.yaml");
    const auto e = expect_input_error([&] { load_datacenter_file(file, no_grid); });
    CHECK(e.key() == "google_cloud_regions.dataset");
    CHECK(e.line() == t::line_of(file, "dataset: regions"));
  }
}

TEST_CASE("catalog::load_grid_manifest: bad CSV cells give the CSV's file, line and column", "[catalog]") {
  SECTION("non-numeric intensity") {
    const auto e = expect_input_error([] { load_grid_manifest(t::data("bad/grid_bad_number/datasets.yaml")); });
    CHECK(e.file() == t::data("bad/grid_bad_number/data.csv"));
    CHECK(e.line() == 3);
    CHECK(e.column() == 2);
    CHECK(e.key() == "g");
    CHECK(contains(e.message(), "'lots'"));
  }
  SECTION("row with a missing cell") {
    const auto e = expect_input_error([] { load_grid_manifest(t::data("bad/grid_ragged/datasets.yaml")); });
    CHECK(e.file() == t::data("bad/grid_ragged/data.csv"));
    CHECK(e.line() == 3);
    CHECK(contains(e.message(), "expected 2 cells"));
  }
}
