#!/bin/sh
# UGRO host runtime: stop a run. SIGTERM to its whole session, wait GRACE seconds, SIGKILL,
# then check that no process carrying the run's marker (UGRO_RUN_ID in its environment) is left.
# Usage: stop.sh RUN_DIR RUN_ID GRACE_SECONDS REASON
run_dir=$1; run_id=$2; grace=$3; reason=${4:-cancelled}
[ -d "$run_dir" ] || { echo "stopped none=1"; exit 0; }
[ -s "$run_dir/cancelled" ] || echo "$reason" > "$run_dir/cancelled"
marked() {
  # Processes of this user whose environment carries the run's marker.
  grep -lzxF "UGRO_RUN_ID=$run_id" /proc/[0-9]*/environ 2>/dev/null | sed 's@/proc/\([0-9]*\)/environ@\1@' | grep -vx "$$" || true
}
pid=$(cat "$run_dir/pid" 2>/dev/null || true)
st=$(cat "$run_dir/starttime" 2>/dev/null || true)
# Same pid and start time (no pid reuse), and not already a zombie: signal its process group.
if [ -n "$pid" ] && { read -r line < "/proc/$pid/stat"; } 2>/dev/null; then
  set -- ${line##*) }
  [ "$1" != Z ] && [ "${20}" = "$st" ] && kill -TERM -- "-$pid" 2>/dev/null
fi
for p in $(marked); do kill -TERM "$p" 2>/dev/null || true; done
# Wait for the grace period, checking 5 times a second.
i=0; limit=$(awk "BEGIN{print int($grace*5)}")
while [ "$i" -lt "$limit" ] && [ -n "$(marked)" ]; do sleep 0.2; i=$((i+1)); done
left=$(marked)
killed=0
if [ -n "$left" ]; then
  [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
  for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
  killed=1
  sleep 0.2
fi
remaining=$(marked | wc -w)
[ -s "$run_dir/exit_code" ] || { echo 137 > "$run_dir/exit_code"; date +%s%N > "$run_dir/finished_at"; }
echo "stopped killed=$killed remaining=$remaining waited_ms=$((i*200))"
[ "$remaining" = 0 ]
