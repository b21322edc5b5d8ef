# UGRO host runtime: stream one rank's log from byte OFFSET until the run's runner exits.
# Usage: follow-log.sh RUN_DIR RANK OFFSET
# The one script whose stdout is not records: it is the log's raw bytes from OFFSET to the end,
# nothing else, so the caller's new offset is OFFSET plus the bytes it got. The runner holds
# RUN_DIR/lock while it lives and the lock is released the moment it exits (`tail --pid` would
# wait for the reaping, forever under an init that never reaps); what tail had not shown by
# then is read once more from the byte where it stopped. Errors: stderr only, exit 1, 2 (bad
# arguments) or 3 (no such run dir).
[ $# -eq 3 ] || { echo "usage: follow-log.sh RUN_DIR RANK OFFSET" >&2; exit 2; }
ugro_is_uint "$2" && ugro_is_uint "$3" || { echo "ugro: RANK and OFFSET must be decimal integers" >&2; exit 2; }
[ -d "$1" ] || { echo "ugro: no run dir $1" >&2; exit 3; }
log=$1/rank-$2.log lock=$1/lock off=$3
if [ -e "$lock" ]; then
  # tail's bytes reach our stdout through dd (on fd 3, inherited: a socket cannot be reopened
  # by name), and dd's summary says how many it passed: the last line, "N bytes … copied".
  exec 3>&1
  s=$({
    tail -c "+$((off + 1))" -F -- "$log" 2>/dev/null &
    t=$!
    flock -s "$lock" true
    kill "$t" 2>/dev/null
    wait "$t" 2>/dev/null
  } | LC_ALL=C dd bs=65536 2>&1 >&3)
  n=${s##*
}
  n=${n%% *}
  ugro_is_uint "$n" || { echo "ugro: cannot tell how many bytes were shown (dd said: $s)" >&2; exit 1; }
  off=$((off + n))
fi
[ -f "$log" ] && tail -c "+$((off + 1))" -- "$log"
exit 0
