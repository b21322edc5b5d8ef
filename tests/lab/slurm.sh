#!/usr/bin/env bash
# The lab's Slurm cluster: Debian's slurm-wlm (22.05) and munge on the lab hosts, so the Slurm
# backend is tested on real Slurm. slurmctld on gpu-master, one slurmd per lab host with that
# host's network, name, /etc/hosts and a resolv.conf of its own, one munged for all (its socket is
# shared through the file system), proctrack/cgroup so a cancel leaves nothing behind.
#
# Usage: bash tests/lab/slurm.sh up|down|status   (npm run lab -- slurm up|down|status)
#   up      install slurm-wlm and munge if missing, write /etc/slurm/{slurm,cgroup}.conf, start
#           munged, slurmctld and the slurmds, wait until every node is idle, add the `slurm:`
#           section to the lab's cluster file and print how to send a job to it. Idempotent.
#   down    cancel every job, stop the daemons this script started (by the process group each
#           was started in, recorded in .lab/slurm/), remove the config it wrote, its state,
#           Slurm's cgroup folders and the cluster file's `slurm:` section. Works after a failed
#           or partial up, and twice.
#   status  sinfo and squeue, exit 0 only if slurmctld answers and every node is idle or busy
#   section (re)write the cluster file's `slurm:` section if Slurm is up (`lab up` calls it)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LAB=${UGRO_LAB_DIR:-$REPO/.lab}
case $LAB in /*) ;; *) LAB=$PWD/$LAB ;; esac # printed in commands to copy
S=$LAB/slurm
CONF_DIR=/etc/slurm
MARK="# Written by the UGRO lab (tests/lab/slurm.sh): removed by \`lab slurm down\`."
SUBNET=10.250.77
LOGIN_USER=master # gpu-master's user (tests/lab/lab.sh): the login host's, in the cluster file
PARTITION=lab

log() { printf '[lab slurm] %s\n' "$*" >&2; }
die() { printf '[lab slurm] error: %s\n' "$*" >&2; exit 1; }

host_name() { if [ "$1" -eq 0 ]; then echo gpu-master; else echo "gpu$1"; fi; }
host_ip() { echo "$SUBNET.$((10 + $1))"; }
host_count() { if [ -r "$LAB/hosts.count" ]; then cat "$LAB/hosts.count"; else echo 0; fi; }

ensure_packages() {
  local missing=() p
  for p in slurm-wlm munge; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  # The packages' own services must not start: this script starts what the lab needs.
  local policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; }
  [ "$policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
}

# A daemon in a session (process group) of its own, its pid (= the group's id) recorded.
start_daemon() { # NAME CMD...
  local name=$1
  shift
  setsid "$@" </dev/null >>"$S/$name.out" 2>&1 &
  echo $! >"$S/$name.pgid"
}

alive_group() { [ -r "$S/$1.pgid" ] && kill -0 -- "-$(cat "$S/$1.pgid")" 2>/dev/null; }

write_conf() {
  local n=$1 i h nodes=()
  mkdir -p "$CONF_DIR"
  if [ -e "$CONF_DIR/slurm.conf" ] && ! grep -qF "$MARK" "$CONF_DIR/slurm.conf"; then
    die "$CONF_DIR/slurm.conf exists and is not the lab's: not touching it"
  fi
  for ((i = 0; i < n; i++)); do nodes+=("$(host_name $i)"); done
  {
    echo "$MARK"
    cat <<EOF
ClusterName=ugrolab
SlurmctldHost=gpu-master($(host_ip 0))
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/cgroup
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
KillWait=5
MinJobAge=300
MaxJobCount=20000
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd-%n.pid
SlurmdSpoolDir=$S/spool-%n
StateSaveLocation=$S/state
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd-%n.log
SlurmctldPort=6817
SlurmdPort=6818
EOF
    for ((i = 0; i < n; i++)); do
      echo "NodeName=$(host_name $i) NodeAddr=$(host_ip $i) CPUs=2 Sockets=1 CoresPerSocket=2" \
        "ThreadsPerCore=1 RealMemory=2000"
    done
    echo "PartitionName=$PARTITION Nodes=$(IFS=,; echo "${nodes[*]}") Default=YES MaxTime=INFINITE State=UP"
  } >"$CONF_DIR/slurm.conf"
  # Without this cgroup.conf the node drains ("cgroup namespace 'freezer' not mounted").
  printf '%s\nCgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\nCgroupAutomount=no\n' "$MARK" \
    >"$CONF_DIR/cgroup.conf"
  chmod 644 "$CONF_DIR/slurm.conf" "$CONF_DIR/cgroup.conf"
  # Each slurmd's own /etc/hosts (the lab's, plus this machine's name, which submits and
  # resolves too) and a resolv.conf whose misses fail at once (no resolver is reachable).
  for ((i = 0; i < n; i++)); do
    h=$(host_name $i)
    { cat "/etc/netns/$h/hosts"; echo "$SUBNET.1 $(hostname)"; } >"$S/hosts-$h"
  done
  printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$S/resolv.conf"
}

start_munge() {
  alive_group munged && return 0
  # One already answering (started by the package, or by hand): use it, leave it to its owner.
  munge -n </dev/null >/dev/null 2>&1 && return 0
  install -d -o munge -g munge -m 755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null 2>&1; then mungekey --create --keyfile=/etc/munge/munge.key >/dev/null
    else create-munge-key -f >/dev/null; fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  start_daemon munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
  local k
  for ((k = 0; k < 50; k++)); do
    [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munged did not come up (see $S/munged.out)"
}

# The cluster file's `slurm:` section: the lab Slurm, gpu-master its login host (the YAML edited
# with the yaml package, the rest of the file kept as it is).
cluster_section() { # add|remove
  [ -e "$LAB/cluster.yaml" ] || return 0
  if [ "$1" = add ]; then
    node "$HERE/slurm-cluster-file.mjs" add "$LAB/cluster.yaml" "$(host_name 0)" "$(host_ip 0)" "$LOGIN_USER" \
      "$PARTITION" /usr/bin/python3
  else
    node "$HERE/slurm-cluster-file.mjs" remove "$LAB/cluster.yaml"
  fi
}

# On stdout, to be copied: how to send a job to the lab Slurm.
print_usage() {
  local c="npx ugro --cluster $LAB/cluster.yaml --jobs $LAB/slurm-jobs"
  cat <<EOT
# The lab Slurm is the \`slurm:\` section of $LAB/cluster.yaml (until \`npm run lab -- slurm down\`).
# A controller for it (in a terminal of its own; Ctrl-C stops it):
$c controller
# A job sent to it (spec.backend: slurm); \`get jobs\`, \`logs slurm-hello --rank 2\` with the same flags follow it:
$c apply -f $HERE/slurm-hello.yaml
EOT
}

cmd_up() {
  [ "$(id -u)" -eq 0 ] || die "needs root"
  local n i h t0
  n=$(host_count)
  [ "$n" -gt 0 ] || die "the lab is not up: run \`npm run lab -- up\` first"
  t0=$(date +%s%N)
  ensure_packages
  mkdir -p "$S/state"
  write_conf "$n"
  start_munge
  if ! alive_group slurmctld; then
    # In gpu-master's network, under its name (slurmctld checks it is SlurmctldHost).
    start_daemon slurmctld ip netns exec gpu-master unshare --uts sh -c 'hostname gpu-master; exec slurmctld -D -i'
  fi
  for ((i = 0; i < n; i++)); do
    h=$(host_name $i)
    alive_group "slurmd-$h" && continue
    mkdir -p "$S/spool-$h"
    # Not `ip netns exec`: that mounts a fresh /sys without the cgroup hierarchies slurmd needs.
    # The host's network, its own name and mount namespace, its hosts and resolv.conf bound in.
    start_daemon "slurmd-$h" nsenter --net="/run/netns/$h" unshare --uts --mount sh -c \
      'hostname "$1"; mount --bind "$2" /etc/hosts; mount --bind "$3" /etc/resolv.conf; exec slurmd -D -N "$1"' \
      ugro-slurmd "$h" "$S/hosts-$h" "$S/resolv.conf"
  done
  local k idle=0
  for ((k = 0; k < 150; k++)); do
    idle=$(sinfo --noheader --format='%T %D' 2>/dev/null | awk '$1 == "idle" { s += $2 } END { print s + 0 }')
    [ "$idle" -ge "$n" ] && break
    # A node that registered with a problem once (cgroups) is drained: give it back.
    sinfo --noheader --format='%T %N' 2>/dev/null | awk '$1 ~ /drain|down/ { print $2 }' | while read -r nl; do
      scontrol update nodename="$nl" state=resume >/dev/null 2>&1 || true
    done
    sleep 0.2
  done
  [ "$idle" -ge "$n" ] || { sinfo >&2 || true; die "not every node is idle after 30 s (logs: $S/)"; }
  cluster_section add
  local ms=$((($(date +%s%N) - t0) / 1000000))
  log "up: slurmctld on gpu-master, $n slurmd idle in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s"
  print_usage
}

# Every process below PID (children first), from the process table.
descendants() {
  local pid=$1 c
  for c in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    descendants "$c"
    echo "$c"
  done
}

stop_group() { # NAME: TERM to its group and what it started, then KILL what is left
  local f=$S/$1.pgid g pids k
  [ -r "$f" ] || return 0
  g=$(cat "$f")
  pids="$(descendants "$g") $g"
  kill -TERM -- "-$g" 2>/dev/null || true
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for ((k = 0; k < 50; k++)); do
    # shellcheck disable=SC2086
    kill -0 $pids 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$g" 2>/dev/null || true
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  rm -f "$f"
}

cmd_down() {
  [ "$(id -u)" -eq 0 ] || die "needs root"
  local f k
  if alive_group slurmctld && command -v squeue >/dev/null 2>&1; then
    # Every job goes first (slurmd kills its steps with their cgroups), then the daemons.
    squeue --noheader --format=%i 2>/dev/null | xargs -r scancel 2>/dev/null || true
    for ((k = 0; k < 50; k++)); do
      [ -z "$(squeue --noheader --states=PD,R,CG,CF,S --format=%i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  for f in "$S"/slurmd-*.pgid; do [ -e "$f" ] && stop_group "$(basename "$f" .pgid)"; done
  stop_group slurmctld
  stop_group munged
  for f in slurm.conf cgroup.conf; do
    [ -e "$CONF_DIR/$f" ] && grep -qF "$MARK" "$CONF_DIR/$f" && rm -f "$CONF_DIR/$f"
  done
  # Slurm's cgroup folders (proctrack/cgroup): empty by now, removed bottom up.
  find /sys/fs/cgroup -mindepth 2 -maxdepth 6 -depth -type d -name 'slurm*' 2>/dev/null |
    while read -r d; do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true; done
  rm -rf "$S"
  cluster_section remove
  log "down: Slurm stopped and removed"
}

cmd_status() {
  command -v sinfo >/dev/null 2>&1 || { echo "slurm is not installed"; return 1; }
  alive_group slurmctld || { echo "slurmctld is not running (lab slurm up)"; return 1; }
  sinfo || return 1
  squeue || return 1
  [ -z "$(sinfo --noheader --format='%T' | grep -v -e idle -e alloc -e mix)" ]
}

verb=${1:-}
[ $# -gt 0 ] && shift
case $verb in
  up) mkdir -p "$S"; cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  section) if alive_group slurmctld; then cluster_section add; fi ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
