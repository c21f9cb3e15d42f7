#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A private single-node Slurm cluster on localhost for the end-to-end test (tests/slurm/e2e.sh):
#   slurm_cluster.sh start DIR   writes DIR/etc/slurm.conf and cgroup.conf, a munge key, starts munged, slurmctld and
#                                slurmd (their pids in DIR/*.pid), waits (bounded) for the node to be idle; prints
#                                `export SLURM_CONF=DIR/etc/slurm.conf`. Exit 77 with "SKIPPED: <reason>" when Slurm
#                                cannot run here (not root, packages missing, a daemon does not start).
#   slurm_cluster.sh stop DIR    cancels the cluster's jobs and stops exactly the processes started here, by pid.
# Nothing outside DIR is written: not /etc/slurm, not /etc/munge, not /run/munge (the clients find this cluster
# through SLURM_CONF, Slurm finds this munged through AuthInfo=socket=...). What lets slurmd 22.05 start on these
# machines (cgroup/v1 with IgnoreSystemd, proctrack/linuxproc, task/none) is measured in ../shared/notes/slurm.md.
# Every process started here carries MOESIM_SLURM_FIXTURE=DIR in its environment (slurmd's job steps inherit it),
# so `stop` also finds, by pid, the children the daemons forked (slurmscriptd, slurmstepd) — never by name.
set -u

skip() {
  echo "SKIPPED: $*"
  exit 77
}

usage() {
  echo "usage: $0 start|stop DIR" >&2
  exit 2
}

[ $# -eq 2 ] || usage
action=$1
dir=$2
marker="MOESIM_SLURM_FIXTURE=$dir"

# Pids of the processes carrying this cluster's marker (read from /proc/PID/environ; needs root).
marked_pids() {
  local p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    { tr '\0' '\n' <"$p/environ" | grep -qxF "$marker"; } 2>/dev/null && echo "$pid"
  done
  return 0
}

# A free TCP port on 127.0.0.1 from FROM upwards (nothing answers a connect).
free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

start_daemon() {  # NAME CMD...: starts CMD in the foreground mode of the daemon, in its own session; pid in DIR/NAME.pid
  local name=$1
  shift
  setsid env "$marker" "$@" >"$dir/log/$name.out" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

stop_cluster() {
  [ -d "$dir" ] || return 0
  if [ -f "$dir/etc/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ]; then
    # Jobs first, so their steps end cleanly; bounded: the controller may already be gone.
    SLURM_CONF="$dir/etc/slurm.conf" timeout 10 scancel --full --quiet --user="$(id -un)" >/dev/null 2>&1 || true
  fi
  local pids="" f p
  for f in slurmd slurmctld munged; do
    [ -f "$dir/$f.pid" ] && pids="$pids $(cat "$dir/$f.pid")"
  done
  pids="$pids $(marked_pids)"
  for p in $pids; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 1 50); do
    local alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null; done
  rm -f "$dir"/*.pid
  return 0
}

case "$action" in
  stop)
    stop_cluster
    exit 0
    ;;
  start) ;;
  *) usage ;;
esac

[ "$(id -u)" = 0 ] || skip "a Slurm cluster needs root to start slurmd and munged (running as $(id -un))"
for c in munged munge unmunge mungekey slurmctld slurmd sbatch squeue sinfo scontrol scancel setsid setpriv; do
  command -v "$c" >/dev/null 2>&1 || skip "'$c' is not installed (Debian: apt-get install slurm-wlm munge)"
done
id munge >/dev/null 2>&1 || skip "no 'munge' user (is Debian's munge package installed?)"

mkdir -p "$dir" || skip "cannot create $dir"
dir=$(cd "$dir" && pwd)
marker="MOESIM_SLURM_FIXTURE=$dir"
chmod 755 "$dir"
mkdir -p "$dir/etc" "$dir/state" "$dir/spool" "$dir/log"
# A cluster left by a killed test in the same directory is stopped first.
stop_cluster

# munge: its own key, socket, log and seed, owned by the munge user (munged refuses a key others can read, and a
# socket directory that is not traversable by all).
mkdir -p "$dir/munge"
rm -f "$dir/munge/munge.key"
mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null 2>&1 || skip "mungekey --create failed"
chown -R munge:munge "$dir/munge"
chmod 711 "$dir/munge"
chmod 400 "$dir/munge/munge.key"
socket="$dir/munge/munge.socket"
start_daemon munged setpriv --reuid=munge --regid=munge --init-groups munged -F --socket="$socket" \
  --key-file="$dir/munge/munge.key" --log-file="$dir/munge/munged.log" --pid-file="$dir/munge/munged.pid" \
  --seed-file="$dir/munge/munged.seed"
ok=""
for _ in $(seq 1 50); do
  if munge -S "$socket" -n 2>/dev/null | unmunge -S "$socket" 2>/dev/null | grep -q 'STATUS: *Success'; then
    ok=1
    break
  fi
  sleep 0.1
done
if [ -z "$ok" ]; then
  cat "$dir/log/munged.out" "$dir/munge/munged.log" 2>/dev/null | tail -5
  stop_cluster
  skip "munged did not start (log above)"
fi

host=$(hostname -s)
cpus=$(nproc)
# The node's memory as Slurm counts it (MB), a little under the real total: slurmd drains a node configured with
# more memory than it has; jobs asking for --mem need RealMemory at least that large.
mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
ctld_port=$(free_port 16817)
slurmd_port=$(free_port $((ctld_port + 1)))
cat >"$dir/etc/slurm.conf" <<EOF
# Written by tests/slurm/slurm_cluster.sh: a private single-node cluster (see ../shared/notes/slurm.md).
ClusterName=moesimtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/state/slurmctld.pid
SlurmdPidFile=$dir/spool/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=moesimtest Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
# CgroupPlugin=disabled makes slurmd 22.05 fail here; cgroup/v1 without systemd starts (shared/notes/slurm.md).
cat >"$dir/etc/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
IgnoreSystemd=yes
EOF
export SLURM_CONF="$dir/etc/slurm.conf"
start_daemon slurmctld slurmctld -D -c -f "$SLURM_CONF"
start_daemon slurmd slurmd -D -f "$SLURM_CONF" -N "$host"

# The node idle, bounded (a few seconds here).
state=""
for _ in $(seq 1 60); do
  state=$(timeout 5 sinfo -h -N -n "$host" -o %T 2>/dev/null | head -1)
  [ "$state" = idle ] && break
  for f in slurmctld slurmd; do
    if ! kill -0 "$(cat "$dir/$f.pid")" 2>/dev/null; then
      tail -5 "$dir/log/$f.out" "$dir/log/$f.log" 2>/dev/null
      stop_cluster
      skip "$f exited at start (log above)"
    fi
  done
  sleep 0.5
done
if [ "$state" != idle ]; then
  tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" 2>/dev/null
  stop_cluster
  skip "the node is '${state:-unknown}', not idle, 30 s after start (logs above)"
fi
echo "export SLURM_CONF=$SLURM_CONF"
