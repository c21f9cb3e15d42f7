-- SPDX-License-Identifier: Apache-2.0
-- A run store as schema version 0 left it, written by hand (not by the code under test): runs
-- and their results, no comparisons table, no runs.comparison_id / alternative_label /
-- provenance_json. Two runs: one complete with results, one that was killed while running.
-- The values are test values, not measurements.
PRAGMA application_id = 1299137875;  -- 0x4d6f4553, "MoES" (Store::kApplicationId)
PRAGMA user_version = 0;

CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  scenario_name TEXT NOT NULL,
  scenario_file TEXT NOT NULL,
  scenario_json TEXT NOT NULL CHECK (json_valid(scenario_json)),
  seed INTEGER NOT NULL,
  moesim_version TEXT NOT NULL,
  git_hash TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
  error_message TEXT NOT NULL DEFAULT '',
  created_at_utc TEXT NOT NULL,
  finished_at_utc TEXT
) STRICT;

CREATE TABLE metrics (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  name TEXT NOT NULL CHECK (name <> ''),
  value REAL NOT NULL,
  unit TEXT NOT NULL,
  PRIMARY KEY (run_id, name)
) STRICT;

CREATE TABLE datacenter_results (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  name TEXT NOT NULL CHECK (name <> ''),
  display_name TEXT NOT NULL,
  country_iso_code TEXT NOT NULL,
  region TEXT NOT NULL,
  share REAL NOT NULL CHECK (share >= 0.0 AND share <= 1.0),
  chips INTEGER NOT NULL CHECK (chips >= 0),
  pue REAL NOT NULL CHECK (pue >= 1.0),
  gross_kgco2e_per_kwh REAL NOT NULL CHECK (gross_kgco2e_per_kwh >= 0.0),
  net_kgco2e_per_kwh REAL CHECK (net_kgco2e_per_kwh >= 0.0),
  cfe_fraction REAL CHECK (cfe_fraction >= 0.0 AND cfe_fraction <= 1.0),
  it_energy_j REAL NOT NULL CHECK (it_energy_j >= 0.0),
  network_energy_j REAL NOT NULL CHECK (network_energy_j >= 0.0),
  facility_energy_j REAL NOT NULL CHECK (facility_energy_j >= 0.0),
  co2e_gross_kg REAL NOT NULL,
  co2e_net_kg REAL NOT NULL,
  embodied_co2e_kg REAL NOT NULL,
  PRIMARY KEY (run_id, name)
) STRICT;

CREATE TABLE phase_breakdown (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  phase_kind TEXT NOT NULL CHECK (phase_kind <> ''),
  time_s REAL NOT NULL,
  critical_path_s REAL NOT NULL,
  PRIMARY KEY (run_id, phase_kind)
) STRICT;

CREATE TABLE series (
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  name TEXT NOT NULL CHECK (name <> ''),
  x_unit TEXT NOT NULL,
  y_unit TEXT NOT NULL,
  UNIQUE (run_id, name)
) STRICT;

CREATE TABLE series_points (
  series_id INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  x REAL NOT NULL,
  y REAL NOT NULL,
  PRIMARY KEY (series_id, idx)
) STRICT, WITHOUT ROWID;

INSERT INTO runs (id, scenario_name, scenario_file, scenario_json, seed, moesim_version, git_hash, status,
                  error_message, created_at_utc, finished_at_utc)
VALUES (1, 'legacy-small', 'scenarios/legacy-small.yaml', '{"name":"legacy-small","seed":7}', 7, '0.0.1',
        'deadbeef0001', 'complete', '', '2024-01-02T03:04:05.678Z', '2024-01-02T03:09:00.000Z'),
       (2, 'legacy-killed', 'scenarios/legacy-killed.yaml', '{"name":"legacy-killed"}', -1, '0.0.1',
        'deadbeef0001', 'running', '', '2024-01-03T00:00:00.000Z', NULL);

INSERT INTO metrics (run_id, position, name, value, unit)
VALUES (1, 0, 'train_time_s', 172800.0, 's'),
       (1, 1, 'step_time_s', 1.39, 's');

INSERT INTO datacenter_results (run_id, position, name, display_name, country_iso_code, region, share, chips, pue,
                                gross_kgco2e_per_kwh, net_kgco2e_per_kwh, cfe_fraction, it_energy_j,
                                network_energy_j, facility_energy_j, co2e_gross_kg, co2e_net_kg, embodied_co2e_kg)
VALUES (1, 0, 'test_dc', 'Test DC', 'US', 'test-region', 1.0, 64, 1.5, 0.4, NULL, NULL, 2.0e9, 4.0e8, 3.6e9,
        400.0, 400.0, 0.0);

INSERT INTO phase_breakdown (run_id, position, phase_kind, time_s, critical_path_s)
VALUES (1, 0, 'compute.dense', 1.0, 0.9);

INSERT INTO series (id, run_id, position, name, x_unit, y_unit) VALUES (1, 1, 0, 'power_total', 's', 'W');
INSERT INTO series_points (series_id, idx, x, y) VALUES (1, 0, 0.0, 100.0), (1, 1, 0.5, 200.0);
