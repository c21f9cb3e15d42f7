// SPDX-License-Identifier: Apache-2.0
#include "schema.hpp"

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "moesim/core/error.hpp"
#include "moesim/core/version.hpp"
#include "moesim/store/store.hpp"
#include "sqlite.hpp"

namespace moesim::store::detail {

namespace {

// Conventions: every table STRICT; every quantity column carries its unit in its name (SI);
// `position` keeps the order in which the caller gave a run's items, so get_run() returns them
// exactly as written; child rows go with their run (ON DELETE CASCADE).

/** Version 0: the first layout — runs and their results, no comparisons, no provenance. */
constexpr const char* kSchemaV0 = R"sql(
CREATE TABLE runs (
  id              INTEGER PRIMARY KEY,
  scenario_name   TEXT NOT NULL,
  scenario_file   TEXT NOT NULL,
  scenario_json   TEXT NOT NULL CHECK (json_valid(scenario_json)),
  seed            INTEGER NOT NULL,  -- the uint64 seed's bit pattern as a signed 64-bit integer
  moesim_version  TEXT NOT NULL,
  git_hash        TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
  error_message   TEXT NOT NULL DEFAULT '',
  created_at_utc  TEXT NOT NULL,
  finished_at_utc TEXT
) STRICT;

CREATE TABLE metrics (
  run_id   INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  name     TEXT NOT NULL CHECK (name <> ''),
  value    REAL NOT NULL,
  unit     TEXT NOT NULL,
  PRIMARY KEY (run_id, name)
) STRICT;

CREATE TABLE datacenter_results (
  run_id               INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position             INTEGER NOT NULL,
  name                 TEXT NOT NULL CHECK (name <> ''),
  display_name         TEXT NOT NULL,
  country_iso_code     TEXT NOT NULL,
  region               TEXT NOT NULL,
  share                REAL NOT NULL CHECK (share >= 0.0 AND share <= 1.0),
  chips                INTEGER NOT NULL CHECK (chips >= 0),
  -- PUE = total facility energy / IT energy, >= 1 by definition (The Green Grid, White Paper 49).
  pue                  REAL NOT NULL CHECK (pue >= 1.0),
  gross_kgco2e_per_kwh REAL NOT NULL CHECK (gross_kgco2e_per_kwh >= 0.0),
  net_kgco2e_per_kwh   REAL CHECK (net_kgco2e_per_kwh >= 0.0),
  cfe_fraction         REAL CHECK (cfe_fraction >= 0.0 AND cfe_fraction <= 1.0),
  it_energy_j          REAL NOT NULL CHECK (it_energy_j >= 0.0),
  network_energy_j     REAL NOT NULL CHECK (network_energy_j >= 0.0),
  facility_energy_j    REAL NOT NULL CHECK (facility_energy_j >= 0.0),
  co2e_gross_kg        REAL NOT NULL,
  co2e_net_kg          REAL NOT NULL,
  embodied_co2e_kg     REAL NOT NULL,
  PRIMARY KEY (run_id, name)
) STRICT;

CREATE TABLE phase_breakdown (
  run_id          INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position        INTEGER NOT NULL,
  phase_kind      TEXT NOT NULL CHECK (phase_kind <> ''),
  time_s          REAL NOT NULL,
  critical_path_s REAL NOT NULL,
  PRIMARY KEY (run_id, phase_kind)
) STRICT;

CREATE TABLE series (
  id       INTEGER PRIMARY KEY,
  run_id   INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  name     TEXT NOT NULL CHECK (name <> ''),
  x_unit   TEXT NOT NULL,
  y_unit   TEXT NOT NULL,
  UNIQUE (run_id, name)
) STRICT;

CREATE TABLE series_points (
  series_id INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
  idx       INTEGER NOT NULL,
  x         REAL NOT NULL,
  y         REAL NOT NULL,
  PRIMARY KEY (series_id, idx)
) STRICT, WITHOUT ROWID;
)sql";

/** Version 1: comparisons of a scenario's alternatives, and the provenance of each run. */
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE comparisons (
  id             INTEGER PRIMARY KEY,
  scenario_name  TEXT NOT NULL,
  created_at_utc TEXT NOT NULL
) STRICT;

ALTER TABLE runs ADD COLUMN comparison_id INTEGER REFERENCES comparisons(id) ON DELETE SET NULL;
ALTER TABLE runs ADD COLUMN alternative_label TEXT NOT NULL DEFAULT '';
-- Runs written before version 1 recorded no provenance: JSON null.
ALTER TABLE runs ADD COLUMN provenance_json TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(provenance_json));
CREATE INDEX runs_by_comparison ON runs(comparison_id);
)sql";

/** Version 2: serving runs (the run's kind) and, on request, every measured request's timings. */
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'training' CHECK (kind IN ('training', 'serving'));

CREATE TABLE request_timings (
  run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  idx           INTEGER NOT NULL,
  arrival_s     REAL NOT NULL CHECK (arrival_s >= 0.0),
  first_token_s REAL NOT NULL,
  end_s         REAL NOT NULL,
  queue_s       REAL NOT NULL,
  prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 1),
  output_tokens INTEGER NOT NULL CHECK (output_tokens >= 1),
  replica       INTEGER NOT NULL CHECK (replica >= 0),
  preemptions   INTEGER NOT NULL CHECK (preemptions >= 0),
  PRIMARY KEY (run_id, idx),
  CHECK (first_token_s >= arrival_s AND end_s >= first_token_s)
) STRICT, WITHOUT ROWID;
)sql";

/** Version 3: sweeps (moesim sweep), their enumerated points, and each run's point hash (the content hash of its
 *  resolved scenario), by which resumed sweeps and merged shards recognise a point already run. */
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE sweeps (
  id              INTEGER PRIMARY KEY,
  scenario_name   TEXT NOT NULL,
  -- FNV-1a-128 over the scenario name and every point's identity, in order: the same sweep in any store.
  definition_hash TEXT NOT NULL UNIQUE CHECK (length(definition_hash) = 32),
  point_count     INTEGER NOT NULL CHECK (point_count >= 1),
  axes_json       TEXT NOT NULL CHECK (json_valid(axes_json)),
  created_at_utc  TEXT NOT NULL
) STRICT;

ALTER TABLE runs ADD COLUMN point_hash TEXT CHECK (point_hash IS NULL OR length(point_hash) = 32);
CREATE INDEX runs_by_point_hash ON runs(point_hash);

CREATE TABLE sweep_points (
  sweep_id    INTEGER NOT NULL REFERENCES sweeps(id) ON DELETE CASCADE,
  idx         INTEGER NOT NULL CHECK (idx >= 0),
  label       TEXT NOT NULL,
  -- NULL for a point that did not resolve (skipped, with no scenario to hash).
  point_hash  TEXT CHECK (point_hash IS NULL OR length(point_hash) = 32),
  skip_reason TEXT CHECK (skip_reason IS NULL OR skip_reason <> ''),
  -- The run that computed the point (NULL while skipped or not yet started).
  run_id      INTEGER REFERENCES runs(id) ON DELETE SET NULL,
  PRIMARY KEY (sweep_id, idx),
  CHECK (point_hash IS NOT NULL OR skip_reason IS NOT NULL),
  CHECK (skip_reason IS NULL OR run_id IS NULL)
) STRICT, WITHOUT ROWID;
)sql";

/** Version 4: the --set overrides a sweep's every point ran with. Sweeps stored before it did not record them: JSON
 *  null, which reports show as "not recorded" (not as "none"). */
constexpr const char* kSchemaV4 = R"sql(
ALTER TABLE sweeps ADD COLUMN overrides_json TEXT NOT NULL DEFAULT 'null'
  CHECK (json_valid(overrides_json) AND json_type(overrides_json) IN ('null', 'array'));
)sql";

constexpr int kEmpty = -1;  // a database with no schema yet (new file)

std::int64_t pragma_int(Db& db, const char* pragma) {
  Stmt s(db, pragma, "read schema state");
  if (!s.step()) throw Error(fmt::format("run store {}: {} returned nothing", db.path(), pragma));
  return s.int64(0);
}

/** The schema version of the file, kEmpty for a new one; throws for a file that is not a store. */
int read_version(Db& db) {
  const std::int64_t application_id = pragma_int(db, "PRAGMA application_id");
  const std::int64_t user_version = pragma_int(db, "PRAGMA user_version");
  const std::int64_t objects = pragma_int(db, "SELECT count(*) FROM sqlite_schema");
  if (application_id == 0 && user_version == 0 && objects == 0) return kEmpty;
  if (application_id != Store::kApplicationId) {
    throw Error(fmt::format("not a moesim run store: {}: a SQLite database with application_id {:#x} and {} "
                            "schema objects (a moesim store has application_id {:#x})",
                            db.path(), application_id, objects, Store::kApplicationId));
  }
  if (user_version < 0 || user_version > Store::kSchemaVersion + 1000) {
    // Not a version this or any moesim wrote (they count up from 0): migrating would re-create existing tables.
    throw Error(fmt::format("run store {}: PRAGMA user_version is {}, not a moesim schema version (0 to {} for this "
                            "moesim): the file was changed by another program or is damaged; restore it from a copy",
                            db.path(), user_version, Store::kSchemaVersion));
  }
  return static_cast<int>(user_version);
}

void apply(Db& db, const Migration& m) {
  const std::string context = fmt::format("migrate to schema version {} ({})", m.to_version, m.description);
  Transaction t(db, Transaction::Kind::write, context);
  const int version = read_version(db);  // again, under the write lock: another process may have migrated
  if (version >= m.to_version) return;   // nothing written; the destructor ends the transaction
  if (version != m.to_version - 1 && !(version == kEmpty && m.to_version == 0)) {
    throw Error(fmt::format("run store {}: {}: database is at version {}, expected {}", db.path(), context, version,
                            m.to_version - 1));
  }
  db.exec(m.sql, context);
  // Integers from this file's own tables, not user values: PRAGMA takes no bound parameters.
  db.exec(fmt::format("PRAGMA application_id = {}; PRAGMA user_version = {};", Store::kApplicationId, m.to_version),
          context);
  Stmt check(db, "PRAGMA foreign_key_check", context + ": foreign key check");
  if (check.step()) {
    throw Error(fmt::format("run store {}: {}: table {} row {} violates a foreign key; nothing was migrated",
                            db.path(), context, check.text(0), check.int64(1)));
  }
  t.commit();
}

}  // namespace

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> list = {
      {0, "runs, metrics, datacenter results, phase breakdown, series", kSchemaV0},
      {1, "comparisons, alternative labels, provenance", kSchemaV1},
      {2, "run kind (training or serving), request timings", kSchemaV2},
      {3, "sweeps, sweep points, run point hashes", kSchemaV3},
      {4, "the --set overrides of a sweep", kSchemaV4},
  };
  return list;
}

int open_schema(Db& db, bool read_only) {
  db.exec("PRAGMA foreign_keys = ON", "enable foreign keys");
  if (pragma_int(db, "PRAGMA foreign_keys") != 1) {
    throw Error(fmt::format("run store {}: this SQLite library cannot enforce foreign keys", db.path()));
  }
  int version = read_version(db);
  if (version > Store::kSchemaVersion) {
    throw Error(fmt::format("run store {} has schema version {}, newer than this moesim {} knows (up to {}): "
                            "open it with a newer moesim",
                            db.path(), version, kVersion, Store::kSchemaVersion));
  }
  if (read_only) {
    if (version == kEmpty) throw Error(fmt::format("not a moesim run store: {}: the database is empty", db.path()));
    if (version < Store::kSchemaVersion) {
      throw Error(fmt::format("run store {} has schema version {}, older than {}: open it read-write once to "
                              "migrate it",
                              db.path(), version, Store::kSchemaVersion));
    }
    return version;
  }
  {
    Stmt wal(db, "PRAGMA journal_mode = WAL", "set WAL journal mode");
    const std::string mode = wal.step() ? wal.text(0) : std::string();
    if (mode != "wal" && db.path() != ":memory:") {
      throw Error(fmt::format("run store {}: cannot use the WAL journal (SQLite kept journal_mode '{}'); is the "
                              "file on a network filesystem?",
                              db.path(), mode));
    }
  }
  for (const Migration& m : migrations()) {
    if (version < m.to_version) apply(db, m);
  }
  return read_version(db);
}

}  // namespace moesim::store::detail
