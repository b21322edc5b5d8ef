# UGRO host runtime: start one node's part of a run, detached from the SSH session.
# Usage: launch.sh RUN_DIR RDZV_ADDR CHECK_PORT RANK_SH META_JSON [NAME=VALUE…] -- [NAME=VALUE…] ARGV…
#   CHECK_PORT  a TCP port that must not be listening here (the rendezvous port of a fresh
#               launch), or "" for none
#   RANK_SH     the text of rank.sh, written into the run dir
#   the words before `--`: UGRO's own variables, exported here (the runner, torchrun and the
#               ranks inherit them; UGRO_RUN_ID is what stop.sh finds the run's processes by)
#   the words after `--`: the job's own env, then torchrun's argv (ARGV[0] has no `=`). The job's
#               env is handed to `env` at the training process's exec and nowhere else: a job's
#               PATH or LD_PRELOAD never changes which flock, setsid, ip or date this script runs.
# Answers @@launch with result=launched|exists, pid and starttime; result=port-busy and port
# (exit 3, nothing created) when CHECK_PORT is listening. Idempotent: a run directory that has a
# pid is reported (exists), never started twice.
set -eu
[ $# -ge 7 ] ||
  ugro_fail 2 "usage: launch.sh RUN_DIR RDZV_ADDR CHECK_PORT RANK_SH META_JSON [K=V…] -- [K=V…] ARGV…"
run_dir=$1 rdzv_addr=$2 check_port=$3 rank_sh=$4 meta=$5
shift 5
case $check_port in
'') ;;
*) { ugro_is_uint "$check_port" && [ "$check_port" -ge 1 ] && [ "$check_port" -le 65535 ]; } ||
  ugro_fail 2 "CHECK_PORT must be a TCP port number or empty" ;;
esac
while :; do
  [ $# -gt 0 ] || ugro_fail 2 "no -- after UGRO's variables"
  [ "$1" = -- ] && { shift; break; }
  case $1 in [A-Za-z_]*=*) ;; *) ugro_fail 2 "not NAME=VALUE: $1" ;; esac
  case ${1%%=*} in *[!A-Za-z0-9_]*) ugro_fail 2 "not a variable name: ${1%%=*}" ;; esac
  export "$1"
  shift
done
[ $# -gt 0 ] || ugro_fail 2 "no command to run"

exists() {
  ugro_read "$run_dir/pid"
  p=$ugro_v
  ugro_read "$run_dir/starttime"
  printf '@@launch\nresult=exists\npid=%s\nstarttime=%s\n@@end\n' "$p" "${ugro_v:-0}"
  exit 0
}
[ -s "$run_dir/pid" ] && exists
# Before anything is created: a refused launch leaves nothing behind.
if [ -n "$check_port" ] && ugro_is_listening "$check_port"; then
  printf '@@launch\nresult=port-busy\nport=%s\n@@end\n' "$check_port"
  exit 3
fi

mkdir -p "$run_dir"
cd "$run_dir"
# The run's lock, taken before anything is written; the runner inherits it (see below). Held
# already: either a launch of this dir running right now (its pid file comes within moments),
# or the runner of a launch cut short before it wrote `pid`. Never start a second runner.
exec 9>lock
flock -n 9 || {
  rc=$?
  [ "$rc" = 1 ] || ugro_fail 1 "flock failed (exit $rc): is util-linux installed?"
  i=0
  while [ "$i" -lt 30 ]; do
    [ -s pid ] && exists
    sleep 0.1
    i=$((i + 1))
  done
  ugro_fail 1 "$run_dir: a runner of an interrupted launch holds its lock but wrote no pid:" \
    "stop the processes whose environment has UGRO_RUN_ID=${UGRO_RUN_ID:-?}" \
    "(grep -lz UGRO_RUN_ID= /proc/*/environ), then remove $run_dir"
}
printf '%s\n' "$meta" >meta.json
printf '%s\n' "$rank_sh" >rank.sh
chmod 755 rank.sh

# gloo/NCCL pick an interface from the hostname, wrong on multi-NIC hosts: use the one that
# routes to the rendezvous address (on the rendezvous host itself that route is via lo, so
# take the interface that owns the address instead). A job's own GLOO/NCCL_SOCKET_IFNAME, in
# its env, still wins: it is applied after these, at the training process's exec.
# (lib.sh's ugro_collective_dev; `ugro doctor` reports the same choice.)
ugro_collective_dev "$rdzv_addr"
dev=$ugro_v
if [ -n "$dev" ]; then
  export GLOO_SOCKET_IFNAME="$dev" NCCL_SOCKET_IFNAME="$dev"
fi
export UGRO_RUN_DIR="$run_dir"
date +%s%N >launched_at

# The runner: new session (setsid, no pty, stdio to files) so neither a dropped SSH connection
# nor a controller restart reaches it. It holds `lock` for its lifetime (waiters block on it),
# outlives a SIGTERM to the session so it can record torchrun's exit code, and closes the lock
# fd for torchrun so stray children never hold it. The lock was taken above, before the runner
# exists, and the runner inherits it on fd 9: a waiter or `logs -f` that comes right after this
# script returns can never take the lock first and conclude the run is over. `env` applies the
# job's variables to torchrun alone (the runner's own mv and date use this script's PATH). The
# subshell keeps the shell's own notice ("Terminated") out of torchrun.log: dash applies a simple
# command's redirections in the parent, and would print it there. finished_at is written before
# exit_code: whoever sees the exit code (observe, a stop that just returned) sees its time too.
setsid sh -c '
  trap : TERM INT HUP
  (exec env "$@" 9>&- </dev/null >torchrun.log 2>&1)
  rc=$?
  date +%s%N >finished_at
  echo "$rc" >exit_code.tmp && mv exit_code.tmp exit_code
' ugro-runner "$@" </dev/null >/dev/null 2>&1 &
pid=$!
# Start time (clock ticks since boot, /proc/PID/stat field 22) guards against pid reuse.
ugro_starttime "$pid" || true
st=${ugro_v:-0}
# Written then renamed (a reader must never see a half-written pid).
echo "$st" >starttime.tmp && echo "$pid" >pid.tmp && mv starttime.tmp starttime && mv pid.tmp pid
exec 9>&-
printf '@@launch\nresult=launched\npid=%s\nstarttime=%s\n@@end\n' "$pid" "$st"
