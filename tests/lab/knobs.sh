# shellcheck shell=bash
# Lab knobs: a real CPU slowdown (`speed`) and a real memory limit (`mem`) per lab host, with
# cgroup v1 `cpu` and `memory` controllers. Sourced by lab.sh (uses its host table and helpers).
#
# A host's processes are every process in its network namespace (its sshd, the per-connection
# sshds, the shells and everything they start) plus every process of its user, as for
# `stop-host`. A knob moves them all into /sys/fs/cgroup/<controller>/ugro-lab/<host>; processes
# started later over ssh are children of the host's sshd and inherit its cgroup. Undoing a knob
# (`speed H 1`, `mem H off`, `up`) lifts the limit and leaves the processes where they are (an
# unlimited cgroup is nominal); `down` removes the cgroups.
#
# What a speed factor means: FACTOR x CORES CPUs, CORES (`--cores`) the CPU a full-speed host
# may use, 1 by default (a lab rank is one process: a full-speed single-threaded rank uses one
# core, so factor 1 without --cores is no limit at all). The quota is cpu.cfs_quota_us =
# FACTOR x CORES x cpu.cfs_period_us (10 ms, not the kernel's 100 ms default: a training step of
# a few tens of ms under a 100 ms period runs at full speed until the quota is spent, then waits
# out the period, so step times came in lumps of the period instead of in proportion to the
# factor, and a split by measured speed had nothing steady to measure). A quota is a ceiling, not a reservation: on this
# 2-core machine three busy hosts at 1.0/0.7/0.6 of one core want 2.3 cores and the one without
# a quota gets what the other two leave. For exact ratios under load give every host a quota
# whose sum fits the machine, e.g. `--cores 0.6` on all three: 0.6/0.42/0.36 of a core.

CG_ROOT=${UGRO_LAB_CGROUP_ROOT:-/sys/fs/cgroup}
CG_NAME=ugro-lab
CPU_PERIOD_US=10000

cg_dir() { echo "$CG_ROOT/$1/$CG_NAME/$(host_name "$2")"; } # cg_dir cpu|memory I

require_cgroup_v1() { # require_cgroup_v1 cpu|memory
  [ -e "$CG_ROOT/$1/cgroup.procs" ] && [ -e "$CG_ROOT/$1/tasks" ] ||
    die "$2 needs the cgroup v1 '$1' controller mounted at $CG_ROOT/$1 (this machine: $(
      awk '$3 ~ /^cgroup/ {printf "%s(%s) ", $2, $3}' /proc/mounts))"
}

# Every process of host I, one pid a line: its network namespace's and its user's.
host_pids() {
  local i=$1
  { ip netns pids "$(host_name "$i")" 2>/dev/null || true
    pgrep -u "$(host_user "$i")" 2>/dev/null || true; } | sort -un
}

# Move every process of host I into cgroup DIR. A process that forks while we move it may leave
# a child behind in the old cgroup, so repeat until a pass finds none outside (a few passes).
move_host_into() {
  local i=$1 dir=$2 ctl=$3 pass pid left rel
  rel=${dir#"$CG_ROOT/$ctl"}
  for ((pass = 0; pass < 5; pass++)); do
    left=0
    for pid in $(host_pids "$i"); do
      grep -qx "[0-9]*:$ctl:$rel" "/proc/$pid/cgroup" 2>/dev/null && continue
      # gone, or a zombie (dead, waiting for its parent to reap it: it cannot move and runs nothing)
      [ -e "/proc/$pid" ] || continue
      grep -q "^State:[[:space:]]*[ZX]" "/proc/$pid/status" 2>/dev/null && continue
      left=1
      echo "$pid" >"$dir/cgroup.procs" 2>/dev/null || true # gone meanwhile: nothing to move
    done
    [ "$left" -eq 0 ] && return 0
  done
  die "could not move every process of $(host_name "$i") into $dir (still forking?)"
}

ensure_cg() { # ensure_cg cpu|memory I: the host's cgroup exists and holds its processes
  local dir
  dir=$(cg_dir "$1" "$2")
  mkdir -p "$dir"
  move_host_into "$2" "$dir" "$1"
}

# The host sees the cgroup hierarchies (read-only) in its own mount namespace, as a real host
# does: `ip netns exec` mounted a fresh /sys without them. Then a controller can read, over ssh,
# the memory cgroup's OOM record of the host's processes (see README, "Lab knobs").
host_cgroup_view() {
  local i=$1 pid
  pid=$(sshd_pid "$i") || return 0
  nsenter -t "$pid" -m sh -c "
    mountpoint -q '$CG_ROOT/memory' && exit 0
    mountpoint -q '$CG_ROOT' || mount -t tmpfs -o mode=755,size=64k ugro-lab-cgroup '$CG_ROOT' || exit 1
    for c in cpu memory; do
      mkdir -p '$CG_ROOT'/\$c && mount -t cgroup -o ro,nosuid,nodev,noexec,\$c cgroup '$CG_ROOT'/\$c || exit 1
    done" || log "warning: $(host_name "$i"): could not mount the cgroup view in its namespace"
}

knob_file() { echo "$(host_dir "$1")/knobs"; } # speed=F cores=C / mem=MiB, for status and start-host

knob_get() { sed -n "s/^$2=//p" "$(knob_file "$1")" 2>/dev/null || true; }

knob_set() { # knob_set I KEY VALUE ('' removes KEY)
  local f
  f=$(knob_file "$1")
  { grep -v "^$2=" "$f" 2>/dev/null || true; [ -z "$3" ] || echo "$2=$3"; } >"$f.new"
  mv -f "$f.new" "$f"
}

is_decimal() { [[ $1 =~ ^([0-9]+(\.[0-9]*)?|\.[0-9]+)$ ]]; }

cmd_speed() {
  local usage='usage: speed H FACTOR [--cores N]   (FACTOR in (0,1]; N: CPUs of a full-speed host, default 1)'
  local host=${1:-} factor=${2:-} cores=1 cores_given=0 i quota dir
  [ -n "$host" ] && [ -n "$factor" ] || die "$usage"
  shift 2
  while [ $# -gt 0 ]; do
    case $1 in
      --cores) cores=${2:-}; cores_given=1; shift 2 || die "$usage" ;;
      --cores=*) cores=${1#--cores=}; cores_given=1; shift ;;
      *) die "speed: unknown argument '$1'; $usage" ;;
    esac
  done
  is_decimal "$factor" && awk -v f="$factor" 'BEGIN { exit !(f > 0 && f <= 1) }' ||
    die "speed: FACTOR '$factor' is not a number in (0,1] (e.g. 0.7; 1 lifts the limit); $usage"
  is_decimal "$cores" && awk -v c="$cores" -v n="$(nproc)" 'BEGIN { exit !(c > 0 && c <= n) }' ||
    die "speed: --cores '$cores' is not a number in (0,$(nproc)] (this machine has $(nproc) CPUs); $usage"
  require_root; require_cgroup_v1 cpu speed; take_lock
  i=$(resolve_host "$host")
  dir=$(cg_dir cpu "$i")
  if awk -v f="$factor" 'BEGIN { exit !(f == 1) }' && [ "$cores_given" -eq 0 ]; then
    # full speed: no quota. Processes stay in the (now unlimited) cgroup.
    [ ! -d "$dir" ] || echo -1 >"$dir/cpu.cfs_quota_us"
    knob_set "$i" speed ''; knob_set "$i" cores ''
    log "speed: $(host_name "$i") -> 1 (no CPU limit)"
    return 0
  fi
  quota=$(awk -v f="$factor" -v c="$cores" -v p=$CPU_PERIOD_US 'BEGIN { q = int(f * c * p + 0.5); print (q < 1000 ? 1000 : q) }')
  ensure_cg cpu "$i"
  echo "$CPU_PERIOD_US" >"$dir/cpu.cfs_period_us"
  echo "$quota" >"$dir/cpu.cfs_quota_us"
  knob_set "$i" speed "$factor"; knob_set "$i" cores "$cores"
  host_cgroup_view "$i"
  log "speed: $(host_name "$i") -> $factor x $cores CPU (cpu.cfs_quota_us=$quota per ${CPU_PERIOD_US} us, $dir)"
}

cmd_mem() {
  local usage='usage: mem H MiB|off   (MiB a whole number >= 16)'
  local host=${1:-} mib=${2:-} i dir bytes
  [ -n "$host" ] && [ -n "$mib" ] && [ $# -eq 2 ] || die "$usage"
  if [ "$mib" != off ]; then
    [[ $mib =~ ^[0-9]+$ ]] && [ "${#mib}" -le 7 ] && [ "$mib" -ge 16 ] && [ "$mib" -le 1048576 ] ||
      die "mem: '$mib' is not a whole number of MiB in 16..1048576, or 'off'; $usage"
  fi
  require_root; require_cgroup_v1 memory mem; take_lock
  i=$(resolve_host "$host")
  dir=$(cg_dir memory "$i")
  if [ "$mib" = off ]; then
    if [ -d "$dir" ]; then # memsw (memory+swap) must stay >= memory: lift it first
      [ ! -e "$dir/memory.memsw.limit_in_bytes" ] || echo -1 >"$dir/memory.memsw.limit_in_bytes"
      echo -1 >"$dir/memory.limit_in_bytes"
    fi
    knob_set "$i" mem ''
    log "mem: $(host_name "$i") -> off (no memory limit)"
    return 0
  fi
  bytes=$((mib * 1048576))
  ensure_cg memory "$i"
  [ ! -e "$dir/memory.memsw.limit_in_bytes" ] || echo -1 >"$dir/memory.memsw.limit_in_bytes"
  # Lowering the limit below what the cgroup holds makes the kernel reclaim; EBUSY if it can't.
  echo "$bytes" >"$dir/memory.limit_in_bytes" 2>/dev/null ||
    die "mem: $(host_name "$i") holds $(($(cat "$dir/memory.usage_in_bytes") / 1048576)) MiB now and the kernel could not reclaim it below $mib MiB; stop what runs there or pick more"
  # memory+swap at the same limit: no swapping around the limit, an OOM kill instead
  [ ! -e "$dir/memory.memsw.limit_in_bytes" ] || echo "$bytes" >"$dir/memory.memsw.limit_in_bytes"
  knob_set "$i" mem "$mib"
  host_cgroup_view "$i"
  log "mem: $(host_name "$i") -> $mib MiB (memory.limit_in_bytes=$bytes, $dir)"
}

# For status: "1" or "0.7x1cpu"; "off" or "64MiB". What the cgroup says, not only the record.
knob_speed_text() {
  local i=$1 dir q f
  dir=$(cg_dir cpu "$i"); f=$(knob_get "$i" speed)
  q=$(cat "$dir/cpu.cfs_quota_us" 2>/dev/null || echo -1)
  if [ "$q" = -1 ]; then echo 1; elif [ -n "$f" ]; then echo "${f}x$(knob_get "$i" cores)cpu"; else echo "quota=${q}us"; fi
}
knob_mem_text() {
  local l
  l=$(cat "$(cg_dir memory "$1")/memory.limit_in_bytes" 2>/dev/null || echo -1)
  if [ "$l" = -1 ] || [ "$l" -ge $((1 << 62)) ]; then echo off; else echo "$((l / 1048576))MiB"; fi
}

# start-host: a knob outlives a restarted sshd (the new one is moved back in).
knobs_reapply() {
  local i=$1
  [ -n "$(knob_get "$i" speed)" ] && [ -d "$(cg_dir cpu "$i")" ] && move_host_into "$i" "$(cg_dir cpu "$i")" cpu
  [ -n "$(knob_get "$i" mem)" ] && [ -d "$(cg_dir memory "$i")" ] && move_host_into "$i" "$(cg_dir memory "$i")" memory
  return 0
}

# up: nominal, no limits (the cgroups stay, unlimited).
knobs_nominal() {
  local i=$1 d
  d=$(cg_dir cpu "$i"); [ ! -d "$d" ] || echo -1 >"$d/cpu.cfs_quota_us"
  d=$(cg_dir memory "$i")
  if [ -d "$d" ]; then
    [ ! -e "$d/memory.memsw.limit_in_bytes" ] || echo -1 >"$d/memory.memsw.limit_in_bytes"
    echo -1 >"$d/memory.limit_in_bytes"
  fi
  rm -f "$(knob_file "$i")"
}

# down: the host's processes are gone; remove its cgroups (and ugro-lab when empty).
knobs_remove() {
  local i=$1 c d k
  for c in cpu memory; do
    d=$(cg_dir "$c" "$i")
    [ -d "$d" ] || continue
    for ((k = 0; k < 20; k++)); do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
    [ ! -d "$d" ] || log "warning: could not remove $d (processes left: $(tr '\n' ' ' <"$d/cgroup.procs"))"
    rmdir "$CG_ROOT/$c/$CG_NAME" 2>/dev/null || true
  done
}
