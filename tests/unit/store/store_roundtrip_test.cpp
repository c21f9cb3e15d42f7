// SPDX-License-Identifier: Apache-2.0
// What goes into the store comes back out, field by field and bit by bit.
#include <cmath>
#include <limits>
#include <regex>

#include <catch2/catch.hpp>

#include "moesim/core/error.hpp"
#include "moesim/store/store.hpp"
#include "store_test_support.hpp"

using Catch::Matchers::Contains;
using moesim::store::Comparison;
using moesim::store::DatacenterResult;
using moesim::store::Metric;
using moesim::store::RunRecord;
using moesim::store::RunStatus;
using moesim::store::RunSummary;
using moesim::store::Series;
using moesim::store::Store;
namespace t = moesim::store::test;

namespace {

bool is_iso8601_utc(const std::string& s) {
  static const std::regex iso(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
  return std::regex_match(s, iso);
}

}  // namespace

TEST_CASE("store::Store: a complete run round-trips every field exactly", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");

  RunRecord header = t::sample_header("roundtrip");
  header.seed = 0xfedcba9876543210ULL;  // above INT64_MAX: stored as its bit pattern
  header.scenario["unicode"] = "Zürich — 東京";
  header.scenario["nested"] = {{"list", {1, -2, 3.25, nullptr, true}}, {"empty", nlohmann::json::object()}};
  header.alternative_label = "gcp_us_central1_2021";

  RunRecord results = t::sample_results(6, 2000);
  // Doubles whose decimal forms do not round-trip through a short printf, plus the extremes.
  const double awkward[] = {0.1,
                            1.0 / 3.0,
                            -1e-310,  // a negative subnormal
                            std::numeric_limits<double>::denorm_min(),
                            std::numeric_limits<double>::max(),
                            -std::numeric_limits<double>::infinity(),
                            6.02214076e23};
  for (std::size_t i = 0; i < std::size(awkward); ++i) {
    results.metrics.push_back({"awkward_" + std::to_string(i), awkward[i], "1"});
  }
  results.series[1].x.push_back(std::nextafter(1.0, 2.0));
  results.series[1].y.push_back(-std::numeric_limits<double>::denorm_min());
  results.provenance["licences"] = {{"grid", "CC BY 4.0"}, {"values", {0.1, 1e-300}}};

  std::int64_t id = 0;
  std::int64_t comparison = 0;
  {
    Store store(path);
    comparison = store.create_comparison("roundtrip");
    header.comparison_id = comparison;
    id = store.begin_run(header);
    CHECK(store.has_run(id));
    const RunRecord running = store.get_run(id);
    CHECK(running.status == RunStatus::running);
    CHECK(running.finished_at_utc.empty());
    CHECK(running.metrics.empty());
    store.complete_run(id, results);
  }

  // A new connection, read-only: what is on disk, not what a connection cached.
  Store store(path, Store::Mode::read_only);
  const RunRecord got = store.get_run(id);
  CHECK(got.id == id);
  CHECK(got.scenario_name == header.scenario_name);
  CHECK(got.scenario_file == header.scenario_file);
  CHECK(got.scenario == header.scenario);
  CHECK(got.scenario.dump() == header.scenario.dump());
  CHECK(got.seed == 0xfedcba9876543210ULL);
  CHECK(got.moesim_version == header.moesim_version);
  CHECK(got.git_hash == header.git_hash);
  CHECK(got.status == RunStatus::complete);
  CHECK(got.error_message.empty());
  CHECK(is_iso8601_utc(got.created_at_utc));
  CHECK(is_iso8601_utc(got.finished_at_utc));
  CHECK(got.finished_at_utc >= got.created_at_utc);
  REQUIRE(got.comparison_id.has_value());
  CHECK(*got.comparison_id == comparison);
  CHECK(got.alternative_label == "gcp_us_central1_2021");
  t::require_same_results(got, results);
  CHECK(got.provenance.dump() == results.provenance.dump());
  // The optional fields, both ways.
  CHECK(got.datacenters[0].net_kgco2e_per_kwh.has_value());
  CHECK_FALSE(got.datacenters[1].net_kgco2e_per_kwh.has_value());
  CHECK_FALSE(got.datacenters[1].cfe_fraction.has_value());
  CHECK(std::signbit(got.metrics[8].value));
}

TEST_CASE("store::Store: negative zero is read back as positive zero", "[store]") {
  // Documented SQLite behaviour (datatype3.html, "Storage Classes and Datatypes"): a REAL with no
  // fractional part is written to disk as an integer, which drops the sign of -0.0. Equal as a
  // number; only the sign bit differs.
  t::TempDir dir;
  Store store(dir.file("runs.db"));
  const std::int64_t id = store.begin_run(t::sample_header());
  RunRecord results;
  results.metrics = {{"zero", -0.0, "J"}, {"two", -2.0, "J"}};
  store.complete_run(id, results);
  const RunRecord got = store.get_run(id);
  CHECK(got.metrics[0].value == 0.0);
  CHECK_FALSE(std::signbit(got.metrics[0].value));
  CHECK(t::same_bits(got.metrics[1].value, -2.0));  // other integral values keep their sign
}

TEST_CASE("store::Store: a run with no results and null JSON round-trips", "[store]") {
  t::TempDir dir;
  Store store(dir.file("runs.db"));
  RunRecord header;
  header.scenario_name = "empty";
  const std::int64_t id = store.begin_run(header);
  store.complete_run(id, RunRecord{});
  const RunRecord got = store.get_run(id);
  CHECK(got.status == RunStatus::complete);
  CHECK(got.scenario.is_null());
  CHECK(got.provenance.is_null());
  CHECK(got.scenario_file.empty());
  CHECK(got.seed == 0);
  CHECK_FALSE(got.comparison_id.has_value());
  CHECK(got.metrics.empty());
  CHECK(got.datacenters.empty());
  CHECK(got.breakdown.empty());
  CHECK(got.series.empty());
}

TEST_CASE("store::Store: list_runs derives days, MWh and tonnes from the stored results", "[store]") {
  t::TempDir dir;
  Store store(dir.file("runs.db"));

  RunRecord results;
  results.metrics = {{"train_time_s", 2.0 * 86400.0, "s"}, {"step_time_s", 1.5, "s"}};
  DatacenterResult a;
  a.name = "a";
  a.facility_energy_j = 3.6e9;  // 1 MWh
  a.co2e_gross_kg = 1500.0;
  DatacenterResult b;
  b.name = "b";
  b.facility_energy_j = 7.2e9;  // 2 MWh
  b.co2e_gross_kg = 500.0;
  results.datacenters = {a, b};

  const std::int64_t with_all = store.begin_run(t::sample_header("a"));
  store.complete_run(with_all, results);
  const std::int64_t without = store.begin_run(t::sample_header("b"));
  store.complete_run(without, RunRecord{});
  const std::int64_t running = store.begin_run(t::sample_header("c"));
  const std::int64_t failed = store.begin_run(t::sample_header("d"));
  store.fail_run(failed, "out of memory");

  const std::vector<RunSummary> runs = store.list_runs();
  REQUIRE(runs.size() == 4);
  CHECK(runs[0].id == with_all);
  CHECK(runs[0].scenario_name == "a");
  CHECK(runs[0].status == RunStatus::complete);
  REQUIRE(runs[0].train_days.has_value());
  CHECK(*runs[0].train_days == Approx(2.0).epsilon(1e-15));
  REQUIRE(runs[0].facility_energy_mwh.has_value());
  CHECK(*runs[0].facility_energy_mwh == Approx(3.0).epsilon(1e-15));
  REQUIRE(runs[0].co2e_gross_t.has_value());
  CHECK(*runs[0].co2e_gross_t == Approx(2.0).epsilon(1e-15));
  CHECK(is_iso8601_utc(runs[0].created_at_utc));

  CHECK(runs[1].status == RunStatus::complete);
  CHECK_FALSE(runs[1].train_days.has_value());
  CHECK_FALSE(runs[1].facility_energy_mwh.has_value());
  CHECK_FALSE(runs[1].co2e_gross_t.has_value());
  CHECK(runs[2].id == running);
  CHECK(runs[2].status == RunStatus::running);
  CHECK(runs[3].status == RunStatus::failed);
}

TEST_CASE("store::Store: comparisons collect their runs", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  Store store(path);
  const std::int64_t c = store.create_comparison("gshard-600b");
  CHECK(store.has_comparison(c));
  CHECK_FALSE(store.has_comparison(c + 1));

  RunRecord in_a = t::sample_header();
  in_a.comparison_id = c;
  in_a.alternative_label = "us_central";
  RunRecord in_b = in_a;
  in_b.alternative_label = "eu_north";
  const std::int64_t a = store.begin_run(in_a);
  const std::int64_t outside = store.begin_run(t::sample_header());
  const std::int64_t b = store.begin_run(in_b);

  const Comparison got = store.get_comparison(c);
  CHECK(got.id == c);
  CHECK(got.scenario_name == "gshard-600b");
  CHECK(is_iso8601_utc(got.created_at_utc));
  CHECK(got.run_ids == std::vector<std::int64_t>{a, b});

  const std::vector<RunSummary> listed = store.list_runs(c);
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].alternative_label == "us_central");
  CHECK(listed[1].alternative_label == "eu_north");
  CHECK(listed[1].comparison_id == c);
  CHECK(store.list_runs().size() == 3);
  CHECK_FALSE(store.get_run(outside).comparison_id.has_value());

  SECTION("an unknown comparison is an error naming the id and the path") {
    CHECK_THROWS_WITH(store.get_comparison(c + 7), "no comparison with id " + std::to_string(c + 7) + " in " + path);
  }
  SECTION("a run cannot join a comparison that does not exist") {
    RunRecord orphan = t::sample_header();
    orphan.comparison_id = 4242;
    CHECK_THROWS_WITH(store.begin_run(orphan), Contains("no comparison with id 4242") && Contains(path));
    CHECK(store.list_runs().size() == 3);
  }
}

TEST_CASE("store::Store: fail_run records the message and the end time", "[store]") {
  t::TempDir dir;
  Store store(dir.file("runs.db"));
  const std::int64_t id = store.begin_run(t::sample_header());
  store.fail_run(id, "profile tpu_v3 missing: 'gemm'");
  const RunRecord got = store.get_run(id);
  CHECK(got.status == RunStatus::failed);
  CHECK(got.error_message == "profile tpu_v3 missing: 'gemm'");
  CHECK(is_iso8601_utc(got.finished_at_utc));
  CHECK(got.metrics.empty());
}

TEST_CASE("store::Store: only a running run can be completed or failed", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  Store store(path);
  const std::int64_t id = store.begin_run(t::sample_header());

  SECTION("completing twice") {
    store.complete_run(id, t::sample_results());
    CHECK_THROWS_WITH(store.complete_run(id, RunRecord{}), Contains("already complete") && Contains(path));
    CHECK_THROWS_WITH(store.fail_run(id, "late"), Contains("already complete"));
    CHECK(store.get_run(id).status == RunStatus::complete);
    CHECK(store.get_run(id).metrics.size() == 4);
  }
  SECTION("completing a failed run") {
    store.fail_run(id, "boom");
    CHECK_THROWS_WITH(store.complete_run(id, t::sample_results()), Contains("already failed"));
    CHECK_THROWS_WITH(store.fail_run(id, "again"), Contains("already failed"));
    CHECK(store.get_run(id).error_message == "boom");
  }
  SECTION("an unknown id") {
    const std::string expected = "no run with id 999 in " + path;
    CHECK_THROWS_AS(store.get_run(999), moesim::Error);
    CHECK_THROWS_WITH(store.get_run(999), expected);
    CHECK_THROWS_WITH(store.complete_run(999, t::sample_results()), expected);
    CHECK_THROWS_WITH(store.fail_run(999, "x"), expected);
    CHECK_FALSE(store.has_run(999));
  }
}

TEST_CASE("store::RunRecord: metric() finds a metric by name", "[store]") {
  RunRecord r;
  r.metrics = {{"step_time_s", 1.39, "s"}, {"it_energy_j", 5.0e9, "J"}};
  REQUIRE(r.metric("it_energy_j") != nullptr);
  CHECK(r.metric("it_energy_j")->value == 5.0e9);
  CHECK(r.metric("it_energy_j")->unit == "J");
  CHECK(r.metric("step_time_s") == &r.metrics[0]);
  CHECK(r.metric("nonexistent") == nullptr);
  CHECK(r.metric("") == nullptr);
}

TEST_CASE("store::RunStatus: to_string spells the stored values", "[store]") {
  CHECK(moesim::store::to_string(RunStatus::running) == "running");
  CHECK(moesim::store::to_string(RunStatus::complete) == "complete");
  CHECK(moesim::store::to_string(RunStatus::failed) == "failed");
}

TEST_CASE("store::Store: a moved store keeps working", "[store]") {
  t::TempDir dir;
  Store a(dir.file("runs.db"));
  const std::int64_t id = a.begin_run(t::sample_header());
  Store b(std::move(a));
  CHECK(b.has_run(id));
  Store c(dir.file("other.db"));
  c = std::move(b);
  CHECK(c.path() == dir.file("runs.db"));
  CHECK(c.schema_version() == Store::kSchemaVersion);
  CHECK(c.get_run(id).status == RunStatus::running);
}
