// SPDX-License-Identifier: Apache-2.0
// Sweeps in the store (schema version 3): sweep points, point hashes, resume lookups, the migration from
// version 2, and merging shard stores (idempotent, deduplicated, refusing damaged or foreign files).
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "moesim/core/error.hpp"
#include "moesim/store/store.hpp"
#include "store_test_support.hpp"

using Catch::Matchers::Contains;
using moesim::store::MergeStats;
using moesim::store::RunRecord;
using moesim::store::RunStatus;
using moesim::store::Store;
using moesim::store::SweepPointRecord;
namespace t = moesim::store::test;

namespace {

const std::string kDefHash = "0123456789abcdef0123456789abcdef";

std::string point_hash(int k) { return std::string(31, 'a') + static_cast<char>('0' + k); }

/** A sweep run with point hash `k`, complete with sample results scaled by `k`. */
std::int64_t add_point_run(Store& s, std::int64_t sweep, int k, bool complete = true) {
  RunRecord h = t::sample_header("swept");
  h.point_hash = point_hash(k);
  h.alternative_label = "cluster.count=" + std::to_string(8 * k);
  const std::int64_t id = s.begin_run(h);
  if (complete) {
    RunRecord r = t::sample_results(3 + k, 4 + k);
    r.metrics[0].value *= k;
    s.complete_run(id, r);
  }
  s.set_sweep_point(sweep, {k, h.alternative_label, h.point_hash, "", id, {}});
  return id;
}

std::int64_t open_test_sweep(Store& s) {
  return s.open_sweep("swept", kDefHash, 6, nlohmann::json::array({{{"key", "cluster.count"}, {"values", {8, 16, 24}}}}));
}

}  // namespace

TEST_CASE("store::Store sweeps: points, point hashes and the resume lookup", "[store][sweep]") {
  t::TempDir dir;
  Store s(dir.file("runs.db"));
  const std::int64_t sweep = open_test_sweep(s);
  CHECK(open_test_sweep(s) == sweep);  // the same definition is the same sweep
  CHECK_FALSE(s.find_complete_run(point_hash(1)).has_value());
  const std::int64_t a = add_point_run(s, sweep, 1);
  const std::int64_t b = add_point_run(s, sweep, 2, false);  // killed: still running
  s.set_sweep_point(sweep, {3, "cluster.count=24", "", "cluster.count: 24 chips do not divide", std::nullopt, {}});
  CHECK(s.find_complete_run(point_hash(1)) == a);
  CHECK_FALSE(s.find_complete_run(point_hash(2)).has_value());
  CHECK(s.get_run(a).point_hash == point_hash(1));
  CHECK(s.list_runs()[0].point_hash == point_hash(1));
  const auto rec = s.get_sweep(sweep);
  CHECK(rec.point_count == 6);
  CHECK(rec.axes[0]["key"] == "cluster.count");
  REQUIRE(rec.points.size() == 3);
  CHECK(rec.points[0].run_status == RunStatus::complete);
  CHECK(rec.points[1].run_id == b);
  CHECK(rec.points[1].run_status == RunStatus::running);
  CHECK(rec.points[2].skip_reason == "cluster.count: 24 chips do not divide");
  CHECK_FALSE(rec.points[2].run_id.has_value());
  CHECK(s.list_sweeps().size() == 1);
  CHECK_THROWS_WITH(s.get_sweep(99), Contains("no sweep with id 99"));
  // A skipped point cannot name a run; a point needs a hash or a reason.
  CHECK_THROWS(s.set_sweep_point(sweep, {4, "x", "", "reason", a, {}}));
  CHECK_THROWS(s.set_sweep_point(sweep, {4, "x", "", "", std::nullopt, {}}));
}

TEST_CASE("store::Store: opening a version-2 store migrates it to sweeps", "[store][sweep]") {
  t::TempDir dir;
  const std::string path = dir.file("v2.db");
  {
    t::RawDb raw(path);
    raw.exec(t::read_text_file(std::string(MOESIM_TEST_DATA) + "/store/schema_v0.sql"));
    raw.exec(t::read_text_file(std::string(MOESIM_TEST_DATA) + "/store/schema_v1_migration.sql"));
    raw.exec(t::read_text_file(std::string(MOESIM_TEST_DATA) + "/store/schema_v2_migration.sql"));
    REQUIRE(raw.integer("PRAGMA user_version") == 2);
  }
  CHECK_THROWS_WITH(Store(path, Store::Mode::read_only), Contains("schema version 2, older than 4"));
  Store s(path);
  CHECK(s.schema_version() == Store::kSchemaVersion);
  CHECK(s.get_run(1).point_hash.empty());  // runs before sweeps have no point hash
  const std::int64_t sweep = open_test_sweep(s);
  add_point_run(s, sweep, 1);
  t::RawDb raw(path);
  CHECK(raw.integer("PRAGMA user_version") == Store::kSchemaVersion);
  CHECK(raw.text("PRAGMA integrity_check") == "ok");
}

TEST_CASE("store::Store: opening a version-3 store migrates it: its sweeps' overrides are not recorded, new ones are",
          "[store][sweep]") {
  t::TempDir dir;
  const std::string path = dir.file("v3.db");
  {
    t::RawDb raw(path);
    for (const char* f : {"schema_v0.sql", "schema_v1_migration.sql", "schema_v2_migration.sql", "schema_v3_migration.sql"})
      raw.exec(t::read_text_file(std::string(MOESIM_TEST_DATA) + "/store/" + f));
    REQUIRE(raw.integer("PRAGMA user_version") == 3);
    raw.exec("INSERT INTO sweeps (scenario_name, definition_hash, point_count, axes_json, created_at_utc) VALUES "
             "('old', 'ffffffffffffffffffffffffffffffff', 2, '[]', '2026-01-01T00:00:00Z')");
  }
  CHECK_THROWS_WITH(Store(path, Store::Mode::read_only), Contains("schema version 3, older than 4"));
  Store s(path);
  CHECK(s.schema_version() == 4);
  REQUIRE(s.list_sweeps().size() == 1);
  CHECK(s.list_sweeps()[0].overrides.is_null());  // not recorded, not "none"
  const std::int64_t id = s.open_sweep("new", kDefHash, 2, nlohmann::json::array(), nlohmann::json::array({"cluster.count=16"}));
  CHECK(s.get_sweep(id).overrides == nlohmann::json::array({"cluster.count=16"}));
  CHECK(open_test_sweep(s) == id);  // the same definition hash: the sweep as first stored, overrides included
  CHECK(s.get_sweep(id).overrides.size() == 1);
  CHECK_THROWS_WITH(s.open_sweep("bad", std::string(32, 'e'), 1, nlohmann::json::array(), nlohmann::json("x=1")),
                    Contains("must be a JSON array"));
  // Migrating gives exactly the layout a new store gets; a merge carries the overrides over.
  const std::string out = dir.file("out.db");
  Store m(out);
  m.merge_from(path);
  CHECK(m.list_sweeps()[0].overrides.is_null());
  CHECK(m.list_sweeps()[1].overrides == nlohmann::json::array({"cluster.count=16"}));
  t::RawDb raw(path);
  CHECK(raw.text("PRAGMA integrity_check") == "ok");
  CHECK_THROWS(raw.exec("UPDATE sweeps SET overrides_json = '{}'"));  // an array or null only
}

TEST_CASE("store::Store::merge_from: shards merge idempotently, deduplicated by point hash", "[store][sweep][merge]") {
  t::TempDir dir;
  const std::string a = dir.file("a.db"), b = dir.file("b.db"), out = dir.file("out.db");
  std::int64_t a1 = 0;
  {
    Store s(a);
    const std::int64_t sw = open_test_sweep(s);
    a1 = add_point_run(s, sw, 1);
    add_point_run(s, sw, 2);
    s.begin_run(t::sample_header("not-a-sweep"));  // a plain run: left out of merges
  }
  {
    Store s(b);
    const std::int64_t sw = open_test_sweep(s);
    add_point_run(s, sw, 2);  // overlaps a.db
    add_point_run(s, sw, 3);
    add_point_run(s, sw, 4, false);  // unfinished: left out, its point is recorded without a run
    s.set_sweep_point(sw, {5, "cluster.count=40", "", "does not fit", std::nullopt, {}});
  }
  Store m(out);
  const MergeStats sa = m.merge_from(a);
  CHECK(sa.sweeps_added == 1);
  CHECK(sa.runs_copied == 2);
  CHECK(sa.runs_left_out == 1);
  const MergeStats sb = m.merge_from(b);
  CHECK(sb.sweeps_added == 0);
  CHECK(sb.runs_copied == 1);
  CHECK(sb.runs_already_present == 1);
  CHECK(sb.runs_left_out == 1);
  CHECK(sb.points_added == 3);
  // Idempotent: merging again adds nothing.
  for (const auto& shard : {a, b}) {
    const MergeStats again = m.merge_from(shard);
    CHECK(again.runs_copied == 0);
    CHECK(again.points_added == 0);
    CHECK(again.points_updated == 0);
    CHECK(again.sweeps_added == 0);
  }
  REQUIRE(m.list_sweeps().size() == 1);
  const auto sweep = m.get_sweep(m.list_sweeps()[0].id);
  REQUIRE(sweep.points.size() == 5);
  CHECK(m.list_runs().size() == 3);
  // Copied runs keep every result row bit for bit, and their identity.
  const Store src(a, Store::Mode::read_only);
  const RunRecord want = src.get_run(a1);
  const RunRecord got = m.get_run(*m.find_complete_run(point_hash(1)));
  t::require_same_results(got, want);
  CHECK(got.created_at_utc == want.created_at_utc);
  CHECK(got.finished_at_utc == want.finished_at_utc);
  CHECK(got.alternative_label == want.alternative_label);
  CHECK(sweep.points[3].index == 4);
  CHECK_FALSE(sweep.points[3].run_id.has_value());
  CHECK(sweep.points[4].skip_reason == "does not fit");
}

TEST_CASE("store::Store::merge_from: refuses bad shards with the file named, and leaves the output as it was",
          "[store][sweep][merge]") {
  t::TempDir dir;
  const std::string out = dir.file("out.db");
  Store m(out);
  SECTION("a missing file") { CHECK_THROWS_WITH(m.merge_from(dir.file("nope.db")), Contains("nope.db") && Contains("no such file")); }
  SECTION("the output itself") { CHECK_THROWS_WITH(m.merge_from(out), Contains("output store itself")); }
  SECTION("not a SQLite file") {
    const std::string bad = dir.file("text.db");
    std::ofstream(bad) << "hello, this is not a database at all, but it is long enough to be looked at.............";
    CHECK_THROWS_WITH(m.merge_from(bad), Contains("cannot merge") && Contains("text.db"));
  }
  SECTION("an older schema version") {
    const std::string old = dir.file("old.db");
    {
      t::RawDb raw(old);
      raw.exec(t::read_text_file(std::string(MOESIM_TEST_DATA) + "/store/schema_v0.sql"));
    }
    CHECK_THROWS_WITH(m.merge_from(old), Contains("cannot merge") && Contains("old.db") && Contains("schema version 0"));
  }
  SECTION("a newer schema version") {
    const std::string newer = dir.file("newer.db");
    { Store s(newer); }
    {
      t::RawDb raw(newer);
      raw.exec("PRAGMA user_version = 5");
    }
    CHECK_THROWS_WITH(m.merge_from(newer), Contains("newer.db") && Contains("schema version 5, newer"));
  }
  SECTION("a shard that fails PRAGMA integrity_check") {
    const std::string broken = dir.file("broken.db");
    {
      Store s(broken);
      const std::int64_t sw = open_test_sweep(s);
      add_point_run(s, sw, 1);
    }
    {
      t::RawDb raw(broken);
      // An index whose entries disagree with its table (it now claims to index another column): integrity_check
      // reports the rows missing from it.
      raw.exec("PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = replace(sql, 'runs(point_hash)', "
               "'runs(scenario_name)') WHERE name = 'runs_by_point_hash'; PRAGMA writable_schema = OFF;");
      raw.exec("PRAGMA journal_mode = DELETE");
    }
    CHECK_THROWS_WITH(m.merge_from(broken), Contains("broken.db") && Contains("integrity_check"));
  }
  CHECK(m.list_runs().empty());
  CHECK(m.list_sweeps().empty());
}
