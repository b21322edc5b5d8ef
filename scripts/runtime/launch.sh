#!/bin/sh
# UGRO host runtime: start one node's part of a run, detached from the SSH session.
# Usage: launch.sh RUN_DIR RDZV_ADDR RANK_WRAPPER META_JSON -- torchrun ARGS...
# The controller runs it as `sh -c "$(cat launch.sh)" launch.sh ARGS…` with every word quoted.
# Idempotent: a run directory that already has a pid is reported, never started twice.
set -eu
run_dir=$1; rdzv_addr=$2; wrapper=$3; meta=$4; shift 4
[ "${1:-}" = "--" ] && shift

mkdir -p "$run_dir"
cd "$run_dir"
exists() { echo "exists pid=$(cat pid) starttime=$(cat starttime 2>/dev/null || echo 0)"; exit 0; }
[ -s pid ] && exists
# The run's lock, taken before anything is written; the runner inherits it (see below). Held
# already: either a launch of this dir running right now (its pid file comes within moments),
# or the runner of a launch cut short before it wrote `pid`. Never start a second runner.
exec 9>lock
flock -n 9 || {
  rc=$?
  [ "$rc" = 1 ] || { echo "ugro: flock failed (exit $rc): is util-linux installed?" >&2; exit 1; }
  i=0
  while [ "$i" -lt 30 ]; do [ -s pid ] && exists; sleep 0.1; i=$((i + 1)); done
  echo "ugro: $run_dir: a runner of an interrupted launch holds its lock but wrote no pid: stop the processes whose environment has UGRO_RUN_ID=${UGRO_RUN_ID:-?} (grep -lz UGRO_RUN_ID= /proc/*/environ), then remove $run_dir" >&2
  exit 1
}
printf '%s\n' "$meta" > meta.json
printf '%s\n' "$wrapper" > rank.sh
chmod 755 rank.sh

# gloo/NCCL pick an interface from the hostname, wrong on multi-NIC hosts: use the one that
# routes to the rendezvous address (on the rendezvous host itself that route is via lo, so
# take the interface that owns the address instead).
# (Word splitting instead of sed/head: every fork here is launch latency.)
dev=; prev=
for w in $(ip -o route get "$rdzv_addr" 2>/dev/null); do
  [ "$prev" = dev ] && { dev=$w; break; }
  prev=$w
done
if [ -z "$dev" ] || [ "$dev" = lo ]; then
  dev=$(ip -o addr show to "$rdzv_addr" 2>/dev/null | awk '{print $2; exit}')
fi
if [ -n "$dev" ] && [ "$dev" != lo ]; then
  export GLOO_SOCKET_IFNAME="$dev" NCCL_SOCKET_IFNAME="$dev"
fi
export UGRO_RUN_DIR="$run_dir"
date +%s%N > launched_at

# The runner: new session (setsid, no pty, stdio to files) so neither a dropped SSH connection
# nor a controller restart reaches it. It holds `lock` for its lifetime (waiters block on it),
# outlives a SIGTERM to the session so it can record torchrun's exit code, and closes the lock fd for
# torchrun so stray children never hold it. The lock was taken above, before the runner exists,
# and the runner inherits it on fd 9: a waiter or `logs -f` that comes right after this script
# returns can never take the lock first and conclude the run is over.
setsid sh -c '
  trap : TERM INT HUP
  "$@" 9>&- </dev/null >torchrun.log 2>&1
  rc=$?
  echo "$rc" > exit_code.tmp && mv exit_code.tmp exit_code
  date +%s%N > finished_at
' ugro-runner "$@" </dev/null >/dev/null 2>&1 &
pid=$!
# Start time (clock ticks since boot, /proc/PID/stat field 22) guards against pid reuse.
st=0
if { read -r line < "/proc/$pid/stat"; } 2>/dev/null; then set -- ${line##*) }; st=${20}; fi
# Written then renamed (mv is not a builtin, but a reader must never see a half-written pid).
echo "$st" > starttime.tmp && echo "$pid" > pid.tmp && mv starttime.tmp starttime && mv pid.tmp pid
exec 9>&-
echo "launched pid=$pid starttime=${st:-0}"
