// SPDX-License-Identifier: Apache-2.0
// complete_run is one transaction: any failure leaves no trace of the run's results.
#include <cmath>
#include <limits>

#include <catch2/catch.hpp>

#include "moesim/store/store.hpp"
#include "store_test_support.hpp"

using Catch::Matchers::Contains;
using moesim::store::RunRecord;
using moesim::store::RunStatus;
using moesim::store::Store;
namespace t = moesim::store::test;

namespace {

/** Rows of run `id` in every result table, and its stored status fields, seen by a raw connection. */
struct Trace {
  std::int64_t metrics, datacenters, breakdown, series, points;
  std::string status, finished_at, provenance;
};

Trace trace_of(const std::string& path, std::int64_t id) {
  t::RawDb raw(path, SQLITE_OPEN_READONLY);
  const std::string where = " WHERE run_id = " + std::to_string(id);
  Trace tr;
  tr.metrics = raw.integer("SELECT count(*) FROM metrics" + where);
  tr.datacenters = raw.integer("SELECT count(*) FROM datacenter_results" + where);
  tr.breakdown = raw.integer("SELECT count(*) FROM phase_breakdown" + where);
  tr.series = raw.integer("SELECT count(*) FROM series" + where);
  tr.points = raw.integer("SELECT count(*) FROM series_points WHERE series_id IN (SELECT id FROM series" + where + ")");
  tr.status = raw.text("SELECT status FROM runs WHERE id = " + std::to_string(id));
  tr.finished_at = raw.text("SELECT finished_at_utc FROM runs WHERE id = " + std::to_string(id));
  tr.provenance = raw.text("SELECT provenance_json FROM runs WHERE id = " + std::to_string(id));
  return tr;
}

void require_untouched(const std::string& path, std::int64_t id) {
  const Trace tr = trace_of(path, id);
  CHECK(tr.metrics == 0);
  CHECK(tr.datacenters == 0);
  CHECK(tr.breakdown == 0);
  CHECK(tr.series == 0);
  CHECK(tr.points == 0);
  CHECK(tr.status == "running");
  CHECK(tr.finished_at.empty());
  CHECK(tr.provenance == "null");
}

}  // namespace

TEST_CASE("store::Store: complete_run writes all or nothing", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  Store store(path);
  const std::int64_t id = store.begin_run(t::sample_header());
  // Every failure below sits after some rows were already inserted in the transaction.
  RunRecord bad = t::sample_results(5, 100);
  std::string expected_message;
  bool retry = false;  // retry with good results afterwards, or record the failure

  SECTION("a duplicate metric name violates the primary key") {
    bad.metrics.push_back(bad.metrics[2]);
    expected_message = "metric 'metric_2'";
    retry = true;
  }
  SECTION("a duplicate datacenter") {
    bad.datacenters.push_back(bad.datacenters[0]);
    expected_message = "datacenter 'google_us_east_nc_2020'";
  }
  SECTION("a duplicate phase kind") {
    bad.breakdown.push_back(bad.breakdown[1]);
    expected_message = "phase kind 'comm.all_to_all'";
  }
  SECTION("a duplicate series name") {
    bad.series.push_back(bad.series[0]);
    expected_message = "series 'power_total'";
  }
  SECTION("a PUE below 1 fails the CHECK constraint") {
    bad.datacenters[1].pue = 0.9;
    expected_message = "CHECK constraint failed";
  }
  SECTION("a share above 1") {
    bad.datacenters[1].share = 1.5;
    expected_message = "datacenter 'example_eu'";
  }
  SECTION("NaN in a datacenter's optional field") {
    bad.datacenters[1].cfe_fraction = std::nan("");
    expected_message = "cfe_fraction is NaN";
  }
  SECTION("NaN in the last point of the last series") {
    bad.series.back().y.back() = std::numeric_limits<double>::quiet_NaN();
    expected_message = "series 'power_network': point 99: y is NaN";
  }
  SECTION("a series whose x and y do not pair up") {
    bad.series.back().x.pop_back();
    expected_message = "99 x values but 100 y values";
  }
  SECTION("provenance that is not valid UTF-8 cannot become JSON") {
    bad.provenance["note"] = std::string("\xff\xfe");
    expected_message = "cannot serialize the provenance";
  }

  CHECK_THROWS_WITH(store.complete_run(id, bad), Contains(expected_message) && Contains(path));
  require_untouched(path, id);
  CHECK(store.get_run(id).status == RunStatus::running);
  REQUIRE(store.list_runs().size() == 1);
  CHECK(store.list_runs()[0].status == RunStatus::running);

  // The connection is healthy afterwards: the caller may retry or record the failure.
  if (retry) {
    const RunRecord good = t::sample_results(5, 100);
    store.complete_run(id, good);
    const RunRecord got = store.get_run(id);
    CHECK(got.status == RunStatus::complete);
    t::require_same_results(got, good);
  } else {
    store.fail_run(id, "results rejected");
    CHECK(store.get_run(id).status == RunStatus::failed);
    CHECK(trace_of(path, id).metrics == 0);
  }
}

TEST_CASE("store::Store: a failed complete_run does not disturb other runs", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  Store store(path);
  const std::int64_t done = store.begin_run(t::sample_header("done"));
  const RunRecord results = t::sample_results();
  store.complete_run(done, results);
  const std::int64_t id = store.begin_run(t::sample_header("bad"));
  RunRecord bad = t::sample_results();
  bad.metrics.push_back(bad.metrics[0]);
  CHECK_THROWS(store.complete_run(id, bad));
  t::require_same_results(store.get_run(done), results);
  require_untouched(path, id);
}
