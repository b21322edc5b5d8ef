# UGRO host runtime: one rank's log, whole or its last lines.
# Usage: read-log.sh RUN_DIR RANK [TAIL]
# Answers @@log with size= (the bytes read: a follow-log from there neither repeats nor skips
# anything) and one line= per log line; exit 3 when there is no such log.
[ $# -eq 2 ] || [ $# -eq 3 ] || ugro_fail 2 "usage: read-log.sh RUN_DIR RANK [TAIL]"
ugro_is_uint "$2" || ugro_fail 2 "RANK must be a decimal integer"
[ -z "${3:-}" ] || ugro_is_uint "$3" || ugro_fail 2 "TAIL must be a decimal integer"
log=$1/rank-$2.log
[ -f "$log" ] || ugro_fail 3 "no log for rank $2 in $1"
size=$(wc -c <"$log") || ugro_fail 1 "cannot read $log"
size=$((size + 0))
printf '@@log\nsize=%s\n' "$size"
if [ -n "${3:-}" ]; then
  head -c "$size" -- "$log" | tail -n "$3" | ugro_lines line=
else
  head -c "$size" -- "$log" | ugro_lines line=
fi
echo "@@end"
