-- SPDX-License-Identifier: Apache-2.0
-- Frozen copy of migration 3 (sim/store/schema.cpp, kSchemaV3) as it shipped: applied on top of schema_v0.sql and
-- schema_v1/v2_migration.sql it gives a version-3 store, from which the version-4 test migrates.
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
PRAGMA user_version = 3;
