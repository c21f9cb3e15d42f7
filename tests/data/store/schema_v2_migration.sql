-- SPDX-License-Identifier: Apache-2.0
-- Frozen copy of migration 2 (sim/store/schema.cpp, kSchemaV2) as it shipped: applied on top of
-- schema_v0.sql and schema_v1_migration.sql it gives a version-2 store, from which the version-3 test migrates.
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
PRAGMA user_version = 2;
