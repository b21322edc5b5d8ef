# UGRO host runtime: move a deleted job's run dir aside, where its logs stay readable, and prune
# what was moved there long ago, so RUNS_DIR/.deleted does not grow forever.
# Usage: archive.sh RUNS_DIR DIR NOW_MS CUTOFF_MS
#   moves RUNS_DIR/DIR to RUNS_DIR/.deleted/DIR.NOW_MS (observe skips dot entries), then removes
#   every .deleted/NAME.MS whose MS is older than CUTOFF_MS; other names there are left alone.
# Answers @@archive with moved=0|1 and pruned=N.
[ $# -eq 4 ] || ugro_fail 2 "usage: archive.sh RUNS_DIR DIR NOW_MS CUTOFF_MS"
runs=$1 dir=$2 now=$3 cutoff=$4
case $dir in '' | . | .. | */* | .*) ugro_fail 2 "DIR must be a plain run dir name" ;; esac
ugro_is_uint "$now" && ugro_is_uint "$cutoff" || ugro_fail 2 "NOW_MS and CUTOFF_MS must be decimal integers"
moved=0
if [ -d "$runs/$dir" ]; then
  mkdir -p "$runs/.deleted" && mv -- "$runs/$dir" "$runs/.deleted/$dir.$now" ||
    ugro_fail 1 "cannot move $runs/$dir aside"
  moved=1
fi
pruned=0
for d in "$runs"/.deleted/*; do
  [ -d "$d" ] || continue
  ts=${d##*.}
  ugro_is_uint "$ts" || continue
  [ "$ts" -lt "$cutoff" ] && rm -rf -- "$d" && pruned=$((pruned + 1))
done
printf '@@archive\nmoved=%s\npruned=%s\n@@end\n' "$moved" "$pruned"
