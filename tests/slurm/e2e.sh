#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The Slurm end-to-end test (issue 11): a real single-node Slurm cluster on localhost (tests/slurm/slurm_cluster.sh,
# Debian's slurm-wlm 22.05 and munge) runs a 16-point sweep as a 4-task array submitted by `moesim sweep --submit`;
# the shards' stores are merged with `moesim db merge`, and the merged store must hold exactly the numbers of a
# local `moesim sweep -j 2` of the same scenario, bit for bit.
#   e2e.sh MOESIM_BINARY SCENARIO WORK_DIR
# Exit 0 when it passed, 77 with "SKIPPED: <reason>" where Slurm cannot run (not root, packages missing, daemons do
# not start; ctest's SKIP_RETURN_CODE), anything else when it failed. The cluster is always stopped (trap on exit).
set -u
[ $# -eq 3 ] || { echo "usage: $0 MOESIM_BINARY SCENARIO WORK_DIR" >&2; exit 2; }
moesim=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
scenario=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
here=$(cd "$(dirname "$0")" && pwd)
work=$3
fixture="$here/slurm_cluster.sh"
# Each step is bounded: the whole test takes well under a minute here.
array_timeout_s=${MOESIM_SLURM_E2E_TIMEOUT_S:-240}

fail() {
  echo "FAILED: $*"
  exit 1
}

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
cluster="$work/cluster"
trap '"$fixture" stop "$cluster"' EXIT
trap 'exit 130' INT TERM

start_out=$("$fixture" start "$cluster")
rc=$?
echo "$start_out"
if [ $rc -eq 77 ]; then exit 77; fi
[ $rc -eq 0 ] || fail "the cluster fixture failed (status $rc)"
command -v sqlite3 >/dev/null 2>&1 || { echo "SKIPPED: the sqlite3 command is not installed (scripts/install-deps.sh installs it)"; exit 77; }
export SLURM_CONF="$cluster/etc/slurm.conf"
# The array's tasks carry the cluster's marker too, so that stopping the cluster also ends a task still running.
export MOESIM_SLURM_FIXTURE="$cluster"
unset SLURM_ARRAY_TASK_ID SLURM_ARRAY_TASK_COUNT SLURM_ARRAY_TASK_MIN SLURM_JOB_ID

# 1. The array: `moesim sweep --submit` writes the sbatch script next to the stores and hands it to sbatch.
cd "$work" || fail "cannot enter $work"
submit=$("$moesim" sweep "$scenario" --submit --shards 4 -j 1 --time 00:10:00 --mem 1G --db "$work/study.db" 2>&1)
rc=$?
echo "$submit"
[ $rc -eq 0 ] || fail "moesim sweep --submit failed (status $rc)"
job=$(echo "$submit" | sed -n 's/^Submitted batch job \([0-9][0-9]*\).*/\1/p' | head -1)
[ -n "$job" ] || fail "no 'Submitted batch job N' in the output of --submit"
grep -q '^#SBATCH --array=0-3$' "$work/study.sbatch.sh" || fail "the job script has no 4-task array"

# 2. Wait for the array (bounded), then every task must have completed with status 0.
t0=$(date +%s)
while [ -n "$(squeue -h -j "$job" -o %i 2>/dev/null)" ]; do
  if [ $(($(date +%s) - t0)) -gt "$array_timeout_s" ]; then
    squeue -j "$job"
    tail -n 5 "$work"/study.shard*.log 2>/dev/null
    fail "the array job $job did not finish in $array_timeout_s s"
  fi
  sleep 1
done
echo "array job $job finished in $(($(date +%s) - t0)) s"
tasks=$(scontrol -o show job "$job" 2>/dev/null)
for i in 0 1 2 3; do
  line=$(echo "$tasks" | grep " ArrayTaskId=$i ")
  echo "$line" | grep -q 'JobState=COMPLETED .*ExitCode=0:0' || {
    echo "$line"
    cat "$work/study.shard$i.log" 2>/dev/null
    fail "array task $i did not complete with status 0"
  }
  [ -f "$work/study.shard$i.db" ] || fail "array task $i wrote no store study.shard$i.db"
done

# 3. Merge the four shards; the local sweep of the same scenario at -j 2.
"$moesim" db merge "$work/merged.db" "$work"/study.shard{0,1,2,3}.db || fail "moesim db merge failed"
"$moesim" sweep "$scenario" -j 2 --db "$work/local.db" 2>"$work/local.err" || { cat "$work/local.err"; fail "the local sweep failed"; }

# 4. The numbers of every point, keyed by point hash, bit for bit. SQLite compares REALs as doubles (equal only when
# the bits are, but for -0.0 = 0.0); the %!.17g text of each value (17 significant digits determine a double, and
# keep the sign of zero) is compared too. Left out, as they must differ: run ids, timestamps, host names, and the
# simulator's own wall time (the sim_wall_s metric, a measurement of the machine rather than a result).
rows() {  # SCHEMA: every number of every complete sweep run, one row each
  local s=$1
  cat <<EOF
SELECT r.point_hash, 'scenario', r.scenario_json, NULL FROM $s.runs r WHERE r.status = 'complete' AND r.point_hash IS NOT NULL
UNION ALL
SELECT r.point_hash, 'metric ' || m.name || ' [' || m.unit || ']', m.value, printf('%!.17g', m.value)
  FROM $s.runs r JOIN $s.metrics m ON m.run_id = r.id
  WHERE r.status = 'complete' AND r.point_hash IS NOT NULL AND m.name <> 'sim_wall_s'
UNION ALL
SELECT r.point_hash, 'phase ' || p.phase_kind || ' time_s', p.time_s, printf('%!.17g', p.time_s)
  FROM $s.runs r JOIN $s.phase_breakdown p ON p.run_id = r.id
  WHERE r.status = 'complete' AND r.point_hash IS NOT NULL
UNION ALL
SELECT r.point_hash, 'phase ' || p.phase_kind || ' critical_path_s', p.critical_path_s, printf('%!.17g', p.critical_path_s)
  FROM $s.runs r JOIN $s.phase_breakdown p ON p.run_id = r.id
  WHERE r.status = 'complete' AND r.point_hash IS NOT NULL
UNION ALL
SELECT r.point_hash, 'series ' || se.name || ' ' || sp.idx, sp.x, printf('%!.17g|%!.17g', sp.x, sp.y)
  FROM $s.runs r JOIN $s.series se ON se.run_id = r.id JOIN $s.series_points sp ON sp.series_id = se.id
  WHERE r.status = 'complete' AND r.point_hash IS NOT NULL
EOF
  local col
  for col in share chips pue gross_kgco2e_per_kwh net_kgco2e_per_kwh cfe_fraction it_energy_j network_energy_j \
    facility_energy_j co2e_gross_kg co2e_net_kg embodied_co2e_kg; do
    cat <<EOF
UNION ALL
SELECT r.point_hash, 'datacenter ' || d.name || ' $col', d.$col, printf('%!.17g', d.$col)
  FROM $s.runs r JOIN $s.datacenter_results d ON d.run_id = r.id
  WHERE r.status = 'complete' AND r.point_hash IS NOT NULL
EOF
  done
  # The sweep's points: index, label, hash, skip reason, and whether a run computed it.
  cat <<EOF
UNION ALL
SELECT coalesce(p.point_hash, ''), 'sweep point ' || p.idx || ' ' || p.label, coalesce(p.skip_reason, ''),
       CASE WHEN p.run_id IS NULL THEN 'no run' ELSE 'run' END
  FROM $s.sweep_points p
EOF
}
echo "ATTACH DATABASE '$work/local.db' AS l;" >"$work/compare.sql"
{
  # Each side a subquery: compound SELECTs associate left to right, so a bare A1 UNION ALL A2 EXCEPT B1 UNION ALL B2
  # would not be A EXCEPT B.
  echo "SELECT 'merged-only', count(*) FROM (SELECT * FROM ($(rows main)) EXCEPT SELECT * FROM ($(rows l)));"
  echo "SELECT 'local-only', count(*) FROM (SELECT * FROM ($(rows l)) EXCEPT SELECT * FROM ($(rows main)));"
  echo "SELECT 'rows', count(*) FROM ($(rows main));"
  echo "SELECT 'runs', (SELECT count(*) FROM main.runs WHERE status = 'complete'), (SELECT count(*) FROM l.runs WHERE status = 'complete');"
  echo "SELECT 'sweeps', (SELECT count(*) FROM main.sweeps), (SELECT count(*) FROM l.sweeps), (SELECT count(*) FROM main.sweeps m JOIN l.sweeps s ON s.definition_hash = m.definition_hash);"
  echo "SELECT 'metric rows', count(*) FROM main.metrics m JOIN main.runs r ON r.id = m.run_id WHERE r.status = 'complete' AND m.name <> 'sim_wall_s';"
} >>"$work/compare.sql"
result=$(sqlite3 -separator ' ' "$work/merged.db" <"$work/compare.sql" 2>&1) || { echo "$result"; fail "the comparison SQL failed"; }
echo "$result"
echo "$result" | grep -qx 'merged-only 0' || fail "the merged store holds numbers the local sweep does not"
echo "$result" | grep -qx 'local-only 0' || fail "the local sweep holds numbers the merged store does not"
echo "$result" | grep -qx 'runs 16 16' || fail "expected 16 complete runs in each store"
echo "$result" | grep -qx 'sweeps 1 1 1' || fail "expected one sweep, the same definition, in each store"
metric_rows=$(echo "$result" | sed -n 's/^metric rows //p')
[ "${metric_rows:-0}" -ge 160 ] || fail "too few metric rows compared ($metric_rows)"
echo "PASSED: the 4-task Slurm array's merged shards hold exactly the numbers of the local -j 2 sweep"
