# UGRO host runtime: stop a run. SIGTERM to its whole session, wait up to GRACE_MS, SIGKILL,
# then check that no process carrying the run's marker (UGRO_RUN_ID in its environment) is left.
# Usage: stop.sh RUN_DIR RUN_ID GRACE_MS REASON
#   GRACE_MS  a decimal integer (milliseconds); only $(( )) ever computes with it
#   REASON    one of the STOP_REASONS of controller/api/run.ts (lib.sh's ugro_stop_args checks
#             the three); written to the run dir's `cancelled` (the first reason stays)
# Bad arguments: exit 2 with @@error, touching nothing. Answers @@stop with none=1 (no such run
# dir), or killed=0|1, remaining=N (processes still marked after SIGKILL: 0 is the proof nothing
# is left) and waited_ms; exit 1 when remaining is not 0. A run that recorded no exit code by
# then gets 137 (killed) and a finished_at.
[ $# -eq 4 ] || ugro_fail 2 "usage: stop.sh RUN_DIR RUN_ID GRACE_MS REASON"
run_dir=$1 run_id=$2 grace_ms=$3 reason=$4
ugro_stop_args "$run_id" "$grace_ms" "$reason"
[ -d "$run_dir" ] || { printf '@@stop\nnone=1\nkilled=0\nremaining=0\nwaited_ms=0\n@@end\n'; exit 0; }
[ -s "$run_dir/cancelled" ] || echo "$reason" >"$run_dir/cancelled"
ugro_read "$run_dir/pid"
pid=$ugro_v
ugro_read "$run_dir/starttime"
st=$ugro_v
# Same pid and start time (no pid reuse), and not a zombie: its process group gets the signals.
# (`kill -s SIG -- -PGID`: dash's kill takes no `--` after a bare -SIG.)
group=
ugro_alive "$pid" "$st" && group=$pid
# What is left of the run: processes carrying its marker, and the runner itself.
left() {
  {
    ugro_marked "$run_id"
    [ -n "$group" ] && ugro_alive "$group" "$st" && echo "$group"
  } | sort -u
}
[ -n "$group" ] && kill -s TERM -- "-$group" 2>/dev/null
for p in $(ugro_marked "$run_id"); do kill -s TERM "$p" 2>/dev/null; done
# Wait out the grace period, looking 5 times a second.
i=0 limit=$(((grace_ms + 199) / 200))
while [ "$i" -lt "$limit" ] && [ -n "$(left)" ]; do
  sleep 0.2
  i=$((i + 1))
done
survivors=$(left)
killed=0
if [ -n "$survivors" ]; then
  [ -n "$group" ] && kill -s KILL -- "-$group" 2>/dev/null
  for p in $survivors; do kill -s KILL "$p" 2>/dev/null; done
  killed=1
  sleep 0.2
fi
remaining=$(left | wc -l)
remaining=$((remaining + 0))
[ -s "$run_dir/exit_code" ] || { date +%s%N >"$run_dir/finished_at"; echo 137 >"$run_dir/exit_code"; }
printf '@@stop\nkilled=%s\nremaining=%s\nwaited_ms=%s\n@@end\n' "$killed" "$remaining" "$((i * 200))"
[ "$remaining" = 0 ]
