-- SPDX-License-Identifier: Apache-2.0
-- Frozen copy of migration 1 (sim/store/schema.cpp, kSchemaV1) as it shipped: applied on top of
-- schema_v0.sql it gives a version-1 store, from which the migration test moves to the current version.
CREATE TABLE comparisons (
  id             INTEGER PRIMARY KEY,
  scenario_name  TEXT NOT NULL,
  created_at_utc TEXT NOT NULL
) STRICT;

ALTER TABLE runs ADD COLUMN comparison_id INTEGER REFERENCES comparisons(id) ON DELETE SET NULL;
ALTER TABLE runs ADD COLUMN alternative_label TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN provenance_json TEXT NOT NULL DEFAULT 'null' CHECK (json_valid(provenance_json));
CREATE INDEX runs_by_comparison ON runs(comparison_id);
PRAGMA user_version = 1;
