// SPDX-License-Identifier: Apache-2.0
// Inputs found by fuzzing and by a new user (issue 10): each must end in a located moesim::InputError, quickly,
// never in a yaml-cpp exception, a wrapped integer, an exhausted memory or minutes of work.

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <string>

#include "moesim/scenario/fields.hpp"
#include "moesim_test/temp_dir.hpp"
#include "scenario_test_support.hpp"

using moesim::InputError;
using moesim::scenario::load_alternatives;
using moesim::scenario::load_file;
namespace t = moesim::scenario::test;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/** A "billion laughs" document: `levels` anchors, each a list of ten aliases of the previous one, under `key`. */
std::string alias_bomb(int levels, const std::string& key) {
  std::string y = key + ":\n  - &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int k = 1; k <= levels; ++k) {
    const std::string prev = "*l" + std::to_string(k - 1);
    y += "  - &l" + std::to_string(k) + " [";
    for (int j = 0; j < 10; ++j) y += (j ? ", " : "") + prev;
    y += "]\n";
  }
  return y;
}

}  // namespace

TEST_CASE("scenario::load_alternatives: a mapping key that is not a name is an input error, not a yaml-cpp one",
          "[scenario][compare][hostile]") {
  SECTION("--alt '{label: x, [a]: 1}' (issue 10, item 14)") {
    const std::string alt = "{label: x, [a]: 1}";
    const auto e =
        t::expect_input_error([&] { load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {alt}); });
    CHECK(e.file() == "--alt " + alt);
    CHECK(e.line() == 1);
    CHECK(e.column() == static_cast<int>(alt.find("[a]")) + 1);
    CHECK(e.key() == "compare[]");
    CHECK(t::contains(e.message(), "a key must be a name, got <sequence>"));
  }
  SECTION("a mapping key inside a compare: alternative of the file") {
    const std::string yaml = t::base_yaml() + "compare:\n  - label: x\n    model: {[a]: 1}\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "compare[0].model");
    CHECK(e.line() == t::line_in(yaml, "{[a]: 1}"));
    CHECK(e.column() == t::column_in(yaml, "{[a]: 1}", "[a]"));
    CHECK(t::contains(e.message(), "a key must be a name, got <sequence>"));
  }
  SECTION("a mapping key deeper inside --alt") {
    const std::string alt = "{label: x, model: {{a: 1}: 2}}";
    const auto e =
        t::expect_input_error([&] { load_alternatives(t::data("compare_ok.yaml"), t::real_catalog(), {}, {alt}); });
    CHECK(e.file() == "--alt " + alt);
    CHECK(e.key() == "model");
    CHECK(t::contains(e.message(), "a key must be a name, got <mapping>"));
  }
}

TEST_CASE("scenario::load_string: products of parallel degrees and torus dimensions never wrap",
          "[scenario][resolve][hostile]") {
  SECTION("data x expert x tensor x pipeline past 2^63 (issue 10, item 15)") {
    // 9999999^3 x 8 = 8e21: wraps in 64 bits (the unchecked product passed the device check at 16 in 32 bits).
    const auto e = t::load_error(t::base_yaml(), {"parallelism.data=9999999", "parallelism.tensor=9999999",
                                                  "parallelism.pipeline=9999999"});
    CHECK(e.key() == "parallelism");
    CHECK(t::contains(e.message(), "9999999 x 8 x 9999999 x 9999999 = more than 1000000000000 devices"));
    CHECK(t::contains(e.message(), "the cluster has 8 chips"));
  }
  SECTION("a product that wraps to exactly the device count is still refused") {
    // 1241737 x 8 x 1084757 x 5135573 = 8 + 3 x 2^64: unchecked 64-bit arithmetic gives 8 = the cluster's devices.
    const auto e = t::load_error(t::base_yaml(), {"parallelism.data=1241737", "parallelism.tensor=1084757",
                                                  "parallelism.pipeline=5135573"});
    CHECK(e.key() == "parallelism");
    CHECK(t::contains(e.message(), "= more than 1000000000000 devices"));
  }
  SECTION("torus dimensions whose product passes 2^63") {
    std::string yaml = t::replace_line(t::base_yaml(), "  accelerator: h100", "  accelerator: tpu_v3");
    yaml = t::replace_line(yaml, "  count: 8", "  count: 4\n  topology: {type: torus_3d, dims: [9999999, 9999999, 9999999]}");
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "cluster.topology.dims");
    CHECK(t::contains(e.message(), "= more than 1000000000000 but cluster.count = 4"));
  }
}

TEST_CASE("scenario::load_string: a huge cluster.count is refused at once, naming its bound", "[scenario][hostile]") {
  // Issue 10, item 19: 2147483647 chips took 7.6 s of torus factorisation before any error.
  const auto t0 = std::chrono::steady_clock::now();
  std::string yaml = t::replace_line(t::base_yaml(), "  accelerator: h100", "  accelerator: tpu_v3");
  yaml = t::replace_line(yaml, "  count: 8", "  count: 2147483647");
  const auto e = t::load_error(yaml);
  CHECK(e.key() == "cluster.count");
  CHECK(e.line() == t::line_in(yaml, "count: 2147483647"));
  CHECK(t::contains(e.message(), "must be <= 10000000 (50x the largest clusters built"));
  // At the bound (a prime, the factorisation's worst case) the torus is factorised in O(sqrt(count)).
  const auto e2 = t::load_error(t::replace_line(yaml, "  count: 2147483647", "  count: 9999991"));
  CHECK(e2.key() == "parallelism");  // 8 devices against 2 x 9999991: the factorisation itself passed
  CHECK(seconds_since(t0) < 1.0);
}

TEST_CASE("scenario::load_string: aliases that expand past the size bound are refused where they expand",
          "[scenario][hostile]") {
  SECTION("nested aliases under compare: (issue 10, item 17)") {
    // 9 levels = 10^10 expanded nodes from a 1 kB text: > 4 GB once walked.
    const std::string yaml = t::base_yaml() + alias_bomb(9, "compare");
    const auto t0 = std::chrono::steady_clock::now();
    const auto e = t::load_error(yaml);
    CHECK(seconds_since(t0) < 1.0);
    CHECK(t::contains(e.message(), "expands to more than 200000 nodes"));
    // Located at the alias that crosses the bound: on one of the anchored lines after the first.
    CHECK(e.line() > t::line_in(yaml, "&l0"));
    CHECK(e.column() > 1);
    CHECK(e.key().rfind("compare[", 0) == 0);
  }
  SECTION("also for `run` (anywhere in the document) and in --set values") {
    CHECK(t::contains(t::load_error(t::base_yaml() + alias_bomb(7, "description")).message(), "expands to more than"));
    const auto e = t::load_error(t::base_yaml(), {"description=" + alias_bomb(7, "a").substr(3)});
    CHECK(t::contains(e.file(), "--set description="));
    CHECK(t::contains(e.message(), "expands to more than"));
  }
  SECTION("an alias inside its own anchor (a cycle)") {
    const std::string yaml = t::base_yaml() + "compare: &c [*c]\n";
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "compare[0]");
    CHECK(e.line() == t::line_in(yaml, "compare: &c"));
    CHECK(t::contains(e.message(), "cycle"));
  }
  SECTION("ordinary aliases still work") {
    const std::string yaml = t::replace_line(t::base_yaml(), "name: base", "name: &n base\ndescription: *n");
    CHECK(t::load(yaml).description == "base");
    // Five levels (10^5 nodes) are within the bound: the document is walked, and its items (lists, not
    // alternatives) are refused for what they are.
    const auto e = t::load_error(t::base_yaml() + alias_bomb(4, "compare"));
    CHECK(t::contains(e.message(), "each alternative must be a mapping"));
  }
}

TEST_CASE("scenario::load_string: absurd magnitudes are refused by the field's declared bound", "[scenario][hostile]") {
  // Issue 10, item 3: training.tokens 1e308 ran and printed 300-digit numbers.
  for (const std::string v : {"1e30", "1e308"}) {
    INFO(v);
    const std::string yaml = t::replace_line(t::base_yaml(), "  tokens: 1.0e9", "  tokens: " + v);
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "training.tokens");
    CHECK(e.line() == t::line_in(yaml, "tokens: " + v));
    CHECK(t::contains(e.message(), "must be <= 1e+16 (640x the largest published run"));
  }
  SECTION("every bound is declared with its field and shown by explain") {
    const auto* f = moesim::scenario::find_field("cluster.count");
    REQUIRE(f != nullptr);
    REQUIRE(f->max);
    CHECK_FALSE(f->max_note.empty());
    CHECK(t::contains(moesim::scenario::explain_text(), f->max_note));
    for (const auto& field : moesim::scenario::fields()) {
      INFO(field.path);
      const bool numeric = field.type == moesim::scenario::FieldType::number ||
                           field.type == moesim::scenario::FieldType::number_list;
      if (numeric) CHECK(field.max.has_value());  // integers are bounded by the loader at 2^31 - 1 anyway
    }
  }
  SECTION("other fields: PUE, power, days") {
    const auto e = t::load_error(t::base_yaml() + "energy: {average_chip_power_w: 1e9}\n");
    CHECK(e.key() == "energy.average_chip_power_w");
    CHECK(t::contains(e.message(), "must be <= 100000"));
    const auto e2 = t::load_error(t::replace_line(t::base_yaml(), "  tokens: 1.0e9", "  tokens: 1.0e9\n  duration_days: 1e12"));
    CHECK(e2.key() == "training.duration_days");
    CHECK(t::contains(e2.message(), "must be <= 36500 (100 years)"));
  }
}

TEST_CASE("scenario::load_string: the same datacenter listed twice is refused up front", "[scenario][resolve][hostile]") {
  // Issue 10, item 2: it simulated, then failed storing with a raw SQLite UNIQUE error.
  std::string yaml = t::replace_line(t::base_yaml(), "  expert: 8", "  data: 2\n  expert: 4");
  yaml = t::replace_line(yaml, "  - datacenter: gcp_us_central1_2023",
                         "  - datacenter: gcp_us_central1_2023\n    share: 0.5\n  - datacenter: gcp_us_central1_2023\n"
                         "    share: 0.5");
  yaml += "wan:\n  bandwidth_gbps: 100\n  latency_ms: 50\n";
  const auto e = t::load_error(yaml);
  CHECK(e.key() == "placement[1].datacenter");
  const auto lines = t::lines_of(yaml);
  int second = 0, seen = 0;
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (lines[i].find("datacenter: gcp_us_central1_2023") != std::string::npos && ++seen == 2) second = static_cast<int>(i) + 1;
  CHECK(e.line() == second);
  CHECK(t::contains(e.message(), "datacenter 'gcp_us_central1_2023' is already placement[0]"));
}

TEST_CASE("scenario::load_string: an inline datacenter named like another entry is refused", "[scenario][resolve][hostile]") {
  std::string yaml = t::replace_line(t::base_yaml(), "  expert: 8", "  data: 2\n  expert: 4");
  yaml = t::replace_line(yaml, "  - datacenter: gcp_us_central1_2023",
                         "  - datacenter: gcp_us_central1_2023\n    share: 0.5\n  - datacenter:\n"
                         "      name: gcp_us_central1_2023\n      pue: 1.1\n      gross_kgco2e_per_kwh: 0.4\n"
                         "    share: 0.5");
  yaml += "wan:\n  bandwidth_gbps: 100\n  latency_ms: 50\n";
  const auto e = t::load_error(yaml);
  CHECK(e.key() == "placement[1].datacenter.name");
  CHECK(e.line() == t::line_in(yaml, "      name: gcp_us_central1_2023"));
  CHECK(t::contains(e.message(), "is already placement[0]"));
}

TEST_CASE("scenario::load_file: a directory is not a scenario", "[scenario][hostile]") {
  moesim::testing::TempDir dir("scenario_dir");
  const auto e = t::expect_input_error([&] { load_file(dir.path().string(), t::real_catalog()); });
  CHECK(e.file() == dir.path().string());
  CHECK(t::contains(e.message(), "is a directory"));
  CHECK_FALSE(t::contains(e.message(), "empty"));
}

TEST_CASE("scenario::load_string: hourly series and start times are checked where they are written",
          "[scenario][resolve][hostile]") {
  const std::string inline_dc =
      "  - datacenter:\n      name: my_site\n      pue: 1.1\n      gross_kgco2e_per_kwh: 0.4\n"
      "      hourly_intensity_csv: no_such_series.csv\n";
  const std::string yaml = t::replace_line(t::base_yaml(), "  - datacenter: gcp_us_central1_2023", inline_dc);
  SECTION("a series that does not exist, even without a start time (issue 10, item 22)") {
    const auto e = t::load_error(yaml);
    CHECK(e.key() == "placement[0].datacenter.hourly_intensity_csv");
    CHECK(e.line() == t::line_in(yaml, "hourly_intensity_csv: no_such_series.csv"));
    CHECK(t::contains(e.message(), "no_such_series.csv' does not exist"));
  }
  SECTION("a start time without any hourly series is not silently ignored (issue 10, item 12)") {
    const std::string y2 = t::base_yaml() + "energy:\n  start_time_utc: 2024-03-01T00:00:00Z\n";
    const auto e = t::load_error(y2);
    CHECK(e.key() == "energy.start_time_utc");
    CHECK(e.line() == t::line_in(y2, "start_time_utc:"));
    CHECK(t::contains(e.message(), "no datacenter of `placement` has one"));
  }
  SECTION("a malformed start time is located") {
    const std::string y3 = t::base_yaml() + "energy:\n  start_time_utc: 2024-03-01 noon\n";
    const auto e = t::load_error(y3);
    CHECK(e.key() == "energy.start_time_utc");
    CHECK(e.line() == t::line_in(y3, "start_time_utc:"));
    CHECK(e.column() == t::column_in(y3, "start_time_utc:", "2024"));
    CHECK(t::contains(e.message(), "is not an ISO 8601 UTC timestamp"));
  }
}
