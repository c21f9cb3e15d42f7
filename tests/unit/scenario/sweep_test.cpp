// SPDX-License-Identifier: Apache-2.0
// The `sweep:` section: enumeration order (cartesian product, zip groups), point resolution, content hashes, and
// the located errors that refuse a whole sweep up front (empty axis, unknown key, unequal zip groups).
#include <fstream>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "moesim/core/error.hpp"
#include "moesim/scenario/fields.hpp"
#include "moesim_test/input_error.hpp"
#include "moesim/scenario/sweep.hpp"
#include "moesim_test/temp_dir.hpp"
#include "scenario_test_support.hpp"

using Catch::Matchers::Contains;
using nlohmann::json;
namespace sc = moesim::scenario;
namespace t = moesim::scenario::test;

namespace {

struct Fixture {
  moesim::testing::TempDir dir{"moesim-sweep"};
  std::string write(const std::string& sweep_yaml) {
    const std::string path = dir.file("sweep.yaml");
    std::ofstream(path) << t::base_yaml() << sweep_yaml;
    return path;
  }
};

using moesim::testing::expect_input_error;

}  // namespace

TEST_CASE("scenario::load_sweep: axes multiply in the order given, the last fastest", "[scenario][sweep]") {
  Fixture fx;
  const auto def = sc::load_sweep(fx.write("sweep:\n  axes:\n    - {key: cluster.count, values: [8, 16]}\n"
                                           "    - {key: model.experts, values: [8, 16, 32]}\n"));
  REQUIRE(def.points.size() == 6);
  CHECK(def.points[0].label() == "cluster.count=8, model.experts=8");
  CHECK(def.points[1].label() == "cluster.count=8, model.experts=16");
  CHECK(def.points[3].label() == "cluster.count=16, model.experts=8");
  CHECK(def.points[5].label() == "cluster.count=16, model.experts=32");
  for (std::size_t i = 0; i < def.points.size(); ++i) CHECK(def.points[i].index == i);
  CHECK(def.points[4].overrides() == std::vector<std::string>{"cluster.count=16", "model.experts=16"});
}

TEST_CASE("scenario::load_sweep: zipped axes advance together, at the place of their first axis", "[scenario][sweep]") {
  Fixture fx;
  const auto def = sc::load_sweep(fx.write("sweep:\n  axes:\n    - {key: cluster.count, values: [8, 16]}\n"
                                           "    - {key: placement, values: [[{datacenter: a}], [{datacenter: b}]]}\n"
                                           "    - {key: parallelism.expert, values: [8, 16]}\n"
                                           "  zip: [[parallelism.expert, cluster.count]]\n"));
  REQUIRE(def.points.size() == 4);
  REQUIRE(def.dimensions.size() == 2);
  CHECK(def.points[0].label() == R"(cluster.count=8, placement=[{"datacenter":"a"}], parallelism.expert=8)");
  CHECK(def.points[1].label() == R"(cluster.count=8, placement=[{"datacenter":"b"}], parallelism.expert=8)");
  CHECK(def.points[2].label() == R"(cluster.count=16, placement=[{"datacenter":"a"}], parallelism.expert=16)");
}

TEST_CASE("scenario::load_point: a point resolves with its values - its hash is the resolved scenario's", "[scenario][sweep]") {
  Fixture fx;
  const std::string path = fx.write("sweep:\n  axes:\n    - {key: model.layers, values: [4, 6, 4.0]}\n"
                                    "    - {key: cluster.accelerator, values: [h100, not_a_chip]}\n");
  const auto def = sc::load_sweep(path);
  REQUIRE(def.points.size() == 6);
  const auto& cat = t::real_catalog();
  const sc::Scenario p0 = sc::load_point(path, cat, {}, def.points[0]);
  CHECK(p0.resolved["model"]["layers"] == 4);
  CHECK_FALSE(p0.resolved.contains("sweep"));  // the definition is no part of a point
  const sc::Scenario p2 = sc::load_point(path, cat, {}, def.points[2]);
  CHECK(p2.resolved["model"]["layers"] == 6);
  // 4 and 4.0 resolve to the same scenario: the same hash, whichever way the value was written.
  const sc::Scenario p4 = sc::load_point(path, cat, {}, def.points[4]);
  CHECK(sc::content_hash(p0.resolved) == sc::content_hash(p4.resolved));
  CHECK(sc::content_hash(p0.resolved) != sc::content_hash(p2.resolved));
  // The hash is of the canonical JSON: stable across runs and machines (this value is fixed here on purpose).
  CHECK(sc::content_hash(json{{"b", 1}, {"a", {1.5, "x"}}}) == sc::fnv1a_128_hex(R"({"a":[1.5,"x"],"b":1})"));
  // --set applies under the point; the point's own value wins.
  const sc::Scenario p0s = sc::load_point(path, cat, {"model.layers=12", "seed=5"}, def.points[0]);
  CHECK(p0s.resolved["model"]["layers"] == 4);
  CHECK(p0s.seed == 5);
  CHECK(sc::content_hash(p0s.resolved) != sc::content_hash(p0.resolved));
  // A point that does not resolve throws the loader's error, naming the bad value.
  CHECK_THROWS_WITH(sc::load_point(path, cat, {}, def.points[1]), Contains("not_a_chip"));
}

TEST_CASE("scenario::fnv1a_128_hex: the published FNV-1a 128-bit test values", "[scenario][sweep]") {
  // Offset basis and FNV-1a("a") from the FNV reference (draft-eastlake-fnv, test vectors).
  CHECK(sc::fnv1a_128_hex("") == "6c62272e07bb014262b821756295c58d");
  CHECK(sc::fnv1a_128_hex("a") == "d228cb696f1a8caf78912b704e4a8964");
}

TEST_CASE("scenario::load_sweep: a bad definition is refused whole, with its location", "[scenario][sweep]") {
  Fixture fx;
  const int sweep_line = static_cast<int>(t::lines_of(t::base_yaml()).size()) + 1;
  SECTION("no sweep section") {
    const auto e = expect_input_error([&] { sc::load_sweep(fx.write("")); });
    CHECK_THAT(e.message(), Contains("no `sweep:` section"));
  }
  SECTION("an empty axis") {
    const auto e = expect_input_error([&] { sc::load_sweep(fx.write("sweep:\n  axes:\n    - key: cluster.count\n      values: []\n")); });
    CHECK(e.key() == "sweep.axes[0].values");
    CHECK(e.line() == sweep_line + 3);
    CHECK_THAT(e.message(), Contains("empty axis"));
  }
  SECTION("no axes") {
    const auto e = expect_input_error([&] { sc::load_sweep(fx.write("sweep:\n  axes: []\n")); });
    CHECK_THAT(e.message(), Contains("no axes"));
  }
  SECTION("an unknown key, with the valid keys of its section and the likely one") {
    const auto e = expect_input_error([&] {
      sc::load_sweep(fx.write("sweep:\n  axes:\n    - {key: cluster.count, values: [8]}\n    - {key: cluster.cout, values: [8]}\n"));
    });
    CHECK(e.key() == "sweep.axes[1].key");
    CHECK(e.line() == sweep_line + 3);
    CHECK_THAT(e.message(), Contains("'cluster.cout' is not a scenario key") && Contains("did you mean 'cluster.count'") &&
                                Contains("cluster.accelerator"));
  }
  SECTION("keys that cannot be swept") {
    for (const char* key : {"name", "sweep.axes", "compare", "'placement[].share'"}) {
      INFO(key);
      const auto e = expect_input_error([&] { sc::load_sweep(fx.write(std::string("sweep:\n  axes:\n    - {key: ") + key + ", values: [x]}\n")); });
      CHECK(e.key() == "sweep.axes[0].key");
    }
  }
  SECTION("a key swept twice") {
    const auto e = expect_input_error([&] {
      sc::load_sweep(fx.write("sweep:\n  axes:\n    - {key: cluster.count, values: [8]}\n    - {key: cluster.count, values: [16]}\n"));
    });
    CHECK_THAT(e.message(), Contains("already swept"));
  }
  SECTION("a missing values list") {
    const auto e = expect_input_error([&] { sc::load_sweep(fx.write("sweep:\n  axes:\n    - {key: cluster.count}\n")); });
    CHECK_THAT(e.key(), Contains("values"));
  }
  SECTION("zip groups of unequal lengths") {
    const auto e = expect_input_error([&] {
      sc::load_sweep(fx.write("sweep:\n  axes:\n    - {key: cluster.count, values: [8, 16]}\n"
                              "    - {key: parallelism.expert, values: [8, 16, 32]}\n"
                              "  zip: [[cluster.count, parallelism.expert]]\n"));
    });
    CHECK(e.key() == "sweep.zip[0]");
    CHECK(e.line() == sweep_line + 4);
    CHECK_THAT(e.message(), Contains("'cluster.count' has 2") && Contains("'parallelism.expert' has 3"));
  }
  SECTION("a zip group naming no axis, or an axis twice") {
    auto e = expect_input_error([&] {
      sc::load_sweep(fx.write("sweep:\n  axes:\n    - {key: cluster.count, values: [8]}\n    - {key: model.layers, values: [2]}\n"
                              "  zip: [[cluster.count, model.experts]]\n"));
    });
    CHECK(e.key() == "sweep.zip[0][1]");
    CHECK_THAT(e.message(), Contains("model.experts is not the key of an axis"));
    e = expect_input_error([&] {
      sc::load_sweep(fx.write("sweep:\n  axes:\n    - {key: cluster.count, values: [8]}\n    - {key: model.layers, values: [2]}\n"
                              "  zip: [[cluster.count, model.layers], [model.layers, cluster.count]]\n"));
    });
    CHECK_THAT(e.message(), Contains("already in zip group 0"));
  }
  SECTION("values that are not a list") {
    const auto e = expect_input_error([&] { sc::load_sweep(fx.write("sweep:\n  axes:\n    - {key: cluster.count, values: 8}\n")); });
    CHECK(e.key() == "sweep.axes[0].values");
  }
}

TEST_CASE("scenario fields: the sweep section is declared (explain and docs cover it)", "[scenario][sweep]") {
  for (const char* path : {"sweep", "sweep.axes", "sweep.axes[].key", "sweep.axes[].values", "sweep.zip"}) {
    INFO(path);
    CHECK(sc::find_field(path) != nullptr);
  }
  CHECK_THAT(sc::explain_text(), Contains("sweep.zip"));
  // `moesim run` of a scenario with a sweep section runs the scenario as written.
  Fixture fx;
  const sc::Scenario s = sc::load_file(fx.write("sweep:\n  axes:\n    - {key: cluster.count, values: [16]}\n"), t::real_catalog());
  CHECK(s.cluster.count == 8);
}
