// SPDX-License-Identifier: Apache-2.0
// The schema: pragmas of a fresh store, migration of an older one, refusal of a newer one.
#include <map>
#include <vector>

#include <catch2/catch.hpp>

#include "moesim/core/error.hpp"
#include "moesim/store/store.hpp"
#include "store_test_support.hpp"

using Catch::Matchers::Contains;
using moesim::store::RunRecord;
using moesim::store::RunStatus;
using moesim::store::Store;
namespace t = moesim::store::test;

namespace {

const std::string kV0Fixture = std::string(MOESIM_TEST_DATA) + "/store/schema_v0.sql";

void make_v0_database(const std::string& path) {
  t::RawDb raw(path);
  raw.exec(t::read_text_file(kV0Fixture));
}

/** Every user table's columns as "name type notnull default pk", plus its STRICT flag. */
std::map<std::string, std::vector<std::string>> describe_tables(const std::string& path) {
  t::RawDb raw(path, SQLITE_OPEN_READONLY);
  std::map<std::string, std::vector<std::string>> out;
  sqlite3_stmt* stmt = nullptr;
  const char* sql =
      "SELECT l.name, l.strict, c.name, c.type, c.\"notnull\", coalesce(c.dflt_value, '-'), c.pk "
      "FROM pragma_table_list l, pragma_table_xinfo(l.name) c "
      "WHERE l.schema = 'main' AND l.type = 'table' AND l.name NOT LIKE 'sqlite_%' ORDER BY l.name, c.cid";
  REQUIRE(sqlite3_prepare_v2(raw.handle(), sql, -1, &stmt, nullptr) == SQLITE_OK);
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    std::string row = "strict=" + std::to_string(sqlite3_column_int(stmt, 1));
    for (int c = 2; c <= 6; ++c) row += std::string(" ") + reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
    out[reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))].push_back(row);
  }
  sqlite3_finalize(stmt);
  return out;
}

// Captures the connection the Store opens (sqlite3_auto_extension runs for every new connection
// of the process), to read its per-connection pragmas.
sqlite3* g_last_connection = nullptr;
int capture_connection(sqlite3* db, const char**, const struct sqlite3_api_routines*) {
  g_last_connection = db;
  return SQLITE_OK;
}

std::int64_t connection_pragma(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  const std::int64_t v = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return v;
}

}  // namespace

TEST_CASE("store::Store: a new store has the current schema, WAL, foreign keys and STRICT tables", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  REQUIRE(sqlite3_auto_extension(reinterpret_cast<void (*)()>(capture_connection)) == SQLITE_OK);
  {
    Store store(path, Store::Mode::read_write, 1.25);
    sqlite3_cancel_auto_extension(reinterpret_cast<void (*)()>(capture_connection));
    CHECK(store.schema_version() == Store::kSchemaVersion);
    CHECK(store.mode() == Store::Mode::read_write);
    REQUIRE(g_last_connection != nullptr);
    CHECK(connection_pragma(g_last_connection, "PRAGMA foreign_keys") == 1);
    CHECK(connection_pragma(g_last_connection, "PRAGMA busy_timeout") == 1250);
    store.begin_run(t::sample_header());
  }
  t::RawDb raw(path);
  CHECK(raw.text("PRAGMA journal_mode") == "wal");
  CHECK(raw.integer("PRAGMA user_version") == Store::kSchemaVersion);
  CHECK(raw.integer("PRAGMA application_id") == Store::kApplicationId);
  CHECK(raw.text("PRAGMA integrity_check") == "ok");

  const auto tables = describe_tables(path);
  for (const char* name :
       {"runs", "metrics", "datacenter_results", "phase_breakdown", "series", "series_points", "comparisons", "request_timings",
        "sweeps", "sweep_points"}) {
    INFO("table " << name);
    REQUIRE(tables.count(name) == 1);
    CHECK(tables.at(name).front().rfind("strict=1", 0) == 0);
  }
  CHECK(tables.size() == 10);

  SECTION("STRICT rejects a value of the wrong type") {
    CHECK(raw.try_exec("INSERT INTO metrics (run_id, position, name, value, unit) VALUES (1, 0, 'x', 'abc', 's')") ==
          SQLITE_CONSTRAINT_DATATYPE);
  }
  SECTION("the status column accepts only the three states") {
    CHECK(raw.try_exec("UPDATE runs SET status = 'done' WHERE id = 1") == SQLITE_CONSTRAINT_CHECK);
  }
  SECTION("deleting a run deletes its results (ON DELETE CASCADE)") {
    Store store(path);
    store.complete_run(1, t::sample_results(3, 5));
    raw.exec("PRAGMA foreign_keys = ON; DELETE FROM runs WHERE id = 1");
    CHECK(raw.integer("SELECT count(*) FROM metrics") == 0);
    CHECK(raw.integer("SELECT count(*) FROM datacenter_results") == 0);
    CHECK(raw.integer("SELECT count(*) FROM series_points") == 0);
  }
}

TEST_CASE("store::Store: opening a version-0 store migrates it and keeps its rows", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("v0.db");
  make_v0_database(path);
  {
    t::RawDb raw(path);
    REQUIRE(raw.integer("PRAGMA user_version") == 0);
    REQUIRE(raw.integer("SELECT count(*) FROM pragma_table_xinfo('runs') WHERE name = 'provenance_json'") == 0);
  }

  SECTION("read-only refuses to migrate and leaves the file alone") {
    CHECK_THROWS_WITH(Store(path, Store::Mode::read_only),
                      Contains(path) && Contains("schema version 0, older than 4") && Contains("read-write"));
    t::RawDb raw(path);
    CHECK(raw.integer("PRAGMA user_version") == 0);
  }

  SECTION("read-write migrates") {
    Store store(path);
    CHECK(store.schema_version() == Store::kSchemaVersion);
    CHECK(store.get_run(1).kind == "training");

    const RunRecord old = store.get_run(1);
    CHECK(old.scenario_name == "legacy-small");
    CHECK(old.scenario_file == "scenarios/legacy-small.yaml");
    CHECK(old.scenario == nlohmann::json{{"name", "legacy-small"}, {"seed", 7}});
    CHECK(old.seed == 7);
    CHECK(old.moesim_version == "0.0.1");
    CHECK(old.status == RunStatus::complete);
    CHECK(old.created_at_utc == "2024-01-02T03:04:05.678Z");
    CHECK(old.finished_at_utc == "2024-01-02T03:09:00.000Z");
    CHECK(old.provenance.is_null());  // version 0 recorded none
    CHECK_FALSE(old.comparison_id.has_value());
    CHECK(old.alternative_label.empty());
    REQUIRE(old.metrics.size() == 2);
    CHECK(old.metrics[1].name == "step_time_s");
    CHECK(old.metrics[1].value == 1.39);
    REQUIRE(old.datacenters.size() == 1);
    CHECK(old.datacenters[0].chips == 64);
    CHECK_FALSE(old.datacenters[0].cfe_fraction.has_value());
    REQUIRE(old.series.size() == 1);
    CHECK(old.series[0].y == std::vector<double>{100.0, 200.0});
    CHECK(store.get_run(2).status == RunStatus::running);
    CHECK(store.get_run(2).seed == 0xffffffffffffffffULL);

    const auto runs = store.list_runs();
    REQUIRE(runs.size() == 2);
    CHECK(runs[0].train_days == 2.0);
    CHECK(runs[0].facility_energy_mwh == 1.0);

    // The migrated store takes new runs with the version-1 fields.
    const std::int64_t c = store.create_comparison("legacy-small");
    RunRecord header = t::sample_header("legacy-small");
    header.comparison_id = c;
    const std::int64_t id = store.begin_run(header);
    CHECK(id == 3);
    store.complete_run(id, t::sample_results());
    CHECK(store.get_run(id).provenance == t::sample_results().provenance);

    t::RawDb raw(path);
    CHECK(raw.integer("PRAGMA user_version") == Store::kSchemaVersion);
    CHECK(raw.text("PRAGMA journal_mode") == "wal");
    CHECK(raw.text("PRAGMA integrity_check") == "ok");
    CHECK(raw.text("PRAGMA foreign_key_check").empty());

    // Migrating gives exactly the layout a new store gets.
    const std::string fresh = dir.file("fresh.db");
    { Store created(fresh); }
    CHECK(describe_tables(path) == describe_tables(fresh));
  }

  SECTION("a migration that fails is rolled back whole") {
    {
      t::RawDb raw(path);
      // Version 1 creates `comparisons`; a table of that name makes its first statement fail.
      raw.exec("CREATE TABLE comparisons (x INTEGER) STRICT");
    }
    CHECK_THROWS_WITH(Store(path), Contains("migrate to schema version 1") && Contains("comparisons") &&
                                       Contains(path));
    t::RawDb raw(path);
    CHECK(raw.integer("PRAGMA user_version") == 0);
    CHECK(raw.integer("SELECT count(*) FROM pragma_table_xinfo('runs') WHERE name = 'alternative_label'") == 0);
    CHECK(raw.integer("SELECT count(*) FROM runs") == 2);
  }
}

TEST_CASE("store::Store: opening a version-1 store migrates it to serving runs and request timings", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("v1.db");
  make_v0_database(path);
  {
    t::RawDb raw(path);
    raw.exec(t::read_text_file(std::string(MOESIM_TEST_DATA) + "/store/schema_v1_migration.sql"));
    REQUIRE(raw.integer("PRAGMA user_version") == 1);
    REQUIRE(raw.integer("SELECT count(*) FROM pragma_table_xinfo('runs') WHERE name = 'kind'") == 0);
  }
  SECTION("read-only refuses to migrate") {
    CHECK_THROWS_WITH(Store(path, Store::Mode::read_only), Contains("schema version 1, older than 4"));
  }
  SECTION("read-write migrates: old runs are training runs, serving runs keep their requests") {
    Store store(path);
    CHECK(store.schema_version() == Store::kSchemaVersion);
    CHECK(store.get_run(1).kind == "training");
    CHECK(store.list_runs().front().kind == "training");
    RunRecord header = t::sample_header("serving-small");
    header.kind = "serving";
    const std::int64_t id = store.begin_run(header);
    RunRecord results = t::sample_results();
    results.requests = {{0.5, 0.75, 2.0, 0.1, 100, 20, 0, 0}, {0.6, 0.9, 3.5, 0.2, 300, 40, 1, 2}};
    store.complete_run(id, results);
    CHECK(store.get_run(id).kind == "serving");
    CHECK(store.get_run(id).requests.empty());  // read separately
    const auto timings = store.request_timings(id);
    REQUIRE(timings.size() == 2);
    CHECK(timings[1].prompt_tokens == 300);
    CHECK(timings[1].preemptions == 2);
    CHECK(timings[1].end_s == 3.5);
    CHECK(store.request_timings(1).empty());
    // Migrating gives exactly the layout a new store gets.
    const std::string fresh = dir.file("fresh.db");
    { Store created(fresh); }
    CHECK(describe_tables(path) == describe_tables(fresh));
  }
  SECTION("a request that ends before its first token is refused, and nothing of the run is written") {
    Store store(path);
    const std::int64_t id = store.begin_run(t::sample_header("bad"));
    RunRecord results = t::sample_results();
    results.requests = {{1.0, 0.5, 2.0, 0.0, 10, 10, 0, 0}};
    CHECK_THROWS(store.complete_run(id, results));
    CHECK(store.get_run(id).status == RunStatus::running);
    CHECK(store.get_run(id).metrics.empty());
  }
}

TEST_CASE("store::Store: a store from a newer moesim is refused", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("runs.db");
  { Store store(path); }
  {
    t::RawDb raw(path);
    raw.exec("PRAGMA user_version = 5");
  }
  const auto mode = GENERATE(Store::Mode::read_write, Store::Mode::read_only);
  CHECK_THROWS_WITH(Store(path, mode), Contains(path) && Contains("schema version 5, newer") &&
                                           Contains("up to 4") && Contains("newer moesim"));
  t::RawDb raw(path);
  CHECK(raw.integer("PRAGMA user_version") == 5);
}

TEST_CASE("store::Store: a SQLite database that is not a run store is refused", "[store]") {
  t::TempDir dir;
  const std::string path = dir.file("other.db");
  {
    t::RawDb raw(path);
    SECTION("another application's tables") { raw.exec("CREATE TABLE accounts (id INTEGER PRIMARY KEY)"); }
    SECTION("another application's id") { raw.exec("PRAGMA application_id = 42; CREATE TABLE t (x)"); }
  }
  CHECK_THROWS_WITH(Store(path), Contains("not a moesim run store") && Contains(path));
  CHECK_THROWS_WITH(Store(path, Store::Mode::read_only), Contains("not a moesim run store"));
  t::RawDb raw(path);
  CHECK(raw.text("PRAGMA journal_mode") == "delete");  // refused before anything was changed
}
