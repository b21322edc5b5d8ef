# UGRO host runtime: helpers shared by every script. The controller sends each script as
# lib.sh + "\n" + NAME.sh and runs it as `sh -c TEXT ugro-NAME ARGS…`, every word quoted, so a
# host needs only sshd, POSIX sh and standard Linux tools (flock, setsid, ip, ss or /proc).
#
# Output, the only format the controller parses (controller/backends/records.ts): blocks of
#   @@KIND [ID]
#   key=value        (one line each; values never span lines, repeated keys are a list)
#   @@end
# A failure is an `@@error` block with `why=` (and the message on stderr), exit 1, or 2 for bad
# arguments. Values read from a run dir are written by jobs too: they are printed as data, one
# line at most, and never pasted into sh, awk or sed program text.

# ugro_alive PID STARTTIME: that pid, with that start time (field 22 of /proc/PID/stat, clock
# ticks since boot: a reused pid has another), is alive and not a zombie (a finished process a
# slow or absent init has not reaped yet).
ugro_alive() {
  ugro_is_uint "$1" && ugro_is_uint "$2" || return 1
  # Braces: dash reports a failed redirect before a 2>/dev/null on the same command applies.
  { read -r _ugro_l <"/proc/$1/stat"; } 2>/dev/null || return 1
  set -- "$2" ${_ugro_l##*) }
  [ "$2" != Z ] && [ "${21}" = "$1" ]
}

# ugro_starttime PID: set ugro_v to field 22 of /proc/PID/stat (false, and empty, if PID is gone).
ugro_starttime() {
  ugro_v=
  ugro_is_uint "$1" || return 1
  { read -r _ugro_l <"/proc/$1/stat"; } 2>/dev/null || return 1
  set -- ${_ugro_l##*) }
  ugro_v=${20}
}

# ugro_is_uint VALUE: a decimal integer of at most 18 digits (so $(( )) cannot overflow).
ugro_is_uint() {
  case $1 in '' | *[!0-9]*) return 1 ;; esac
  [ ${#1} -le 18 ]
}

# ugro_read FILE: set ugro_v to the first line of FILE, empty if it is missing (no fork).
ugro_read() {
  ugro_v=
  { IFS= read -r ugro_v <"$1"; } 2>/dev/null
  return 0
}

# ugro_kv KEY FILE: print KEY=<first line of FILE>, whatever else the file holds.
ugro_kv() {
  ugro_read "$2"
  printf '%s=%s\n' "$1" "$ugro_v"
}

# ugro_lines PREFIX [MAX]: every line of stdin as PREFIX LINE (PREFIX is `key=` or `key=N `), the
# line cut at MAX characters. awk also ends a last line that has no newline, so the block's @@end
# always starts a line of its own.
ugro_lines() {
  awk -v k="$1" -v m="${2:-0}" '{ if (m > 0 && length($0) > m) $0 = substr($0, 1, m); print k $0 }'
}

# ugro_fail CODE MESSAGE…: the message on stderr and as an @@error block (one line), then exit.
# The arguments every stop takes (stop.sh, slurm/cancel.sh): RUN_ID GRACE_MS REASON, checked
# before anything is touched (exit 2). REASON: the STOP_REASONS of controller/api/run.ts (keep
# the two lists the same; tests/unit/runtime-stop.test.ts checks every one is accepted).
ugro_stop_args() {
  ugro_is_uint "$2" && [ ${#2} -le 9 ] || ugro_fail 2 "GRACE_MS must be a decimal integer of milliseconds"
  case $3 in
  cancelled | suspended | deleted | spec-changed | gang-failed | deadline-exceeded | launch-failed | node-lost | \
    runner-vanished | stalled | preempted | rescaled | rebalanced | superseded | port-busy) ;;
  *) ugro_fail 2 "REASON is not one of UGRO's stop reasons" ;;
  esac
  case $1 in '' | *[!A-Za-z0-9._-]*) ugro_fail 2 "RUN_ID must be [A-Za-z0-9._-]+" ;; esac
}

ugro_fail() {
  _ugro_c=$1
  shift
  _ugro_m=$(printf '%s' "$*" | tr '\n\r' '  ')
  printf 'ugro: %s\n' "$_ugro_m" >&2
  printf '@@error\nwhy=%s\n@@end\n' "$_ugro_m"
  exit "$_ugro_c"
}

# ugro_marked RUN_ID: pids of this user's processes whose environment holds UGRO_RUN_ID=RUN_ID
# (the runner, torchrun and the ranks inherit it from launch.sh), this shell excepted.
ugro_marked() {
  grep -lzxF -e "UGRO_RUN_ID=$1" /proc/[0-9]*/environ 2>/dev/null |
    sed 's@/proc/\([0-9]*\)/environ@\1@' | grep -vx "$$" || true
}

# ugro_listening_ports: the TCP ports something listens on here, one per line, sorted: ss when
# installed, else /proc/net/tcp and tcp6 (state 0A is LISTEN; the local port is hex).
ugro_listening_ports() {
  if command -v ss >/dev/null 2>&1; then
    ss -ltn 2>/dev/null | awk '$1 == "LISTEN" { n = split($4, a, ":"); print a[n] }'
  else
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk '$4 == "0A" {
      split($2, a, ":"); h = toupper(a[2]); p = 0
      for (i = 1; i <= length(h); i++) p = p * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1
      print p
    }'
  fi | sort -un
}

# ugro_is_listening PORT
ugro_is_listening() {
  ugro_listening_ports | grep -qx -e "$1"
}

# ugro_collective_dev ADDR: set ugro_v to the network interface gloo/NCCL should use to reach the
# rendezvous address ADDR: the one that routes there (on the rendezvous host itself that route is
# via lo, so the interface that owns the address instead); empty when none or only lo. launch.sh
# exports it as GLOO/NCCL_SOCKET_IFNAME, doctor.sh reports it. (Word splitting instead of sed/head:
# every fork here is launch latency.)
ugro_collective_dev() {
  ugro_v= _ugro_p=
  for _ugro_w in $(ip -o route get "$1" 2>/dev/null); do
    [ "$_ugro_p" = dev ] && { ugro_v=$_ugro_w; break; }
    _ugro_p=$_ugro_w
  done
  if [ -z "$ugro_v" ] || [ "$ugro_v" = lo ]; then
    ugro_v=$(ip -o addr show to "$1" 2>/dev/null | awk '{ print $2; exit }')
  fi
  [ "$ugro_v" != lo ] || ugro_v=
}
