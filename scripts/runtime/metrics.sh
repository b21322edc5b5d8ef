# UGRO host runtime: the metrics lines a run's rank 0 wrote (UGRO_METRICS_FILE), from a byte offset.
# Usage: metrics.sh RUN_DIR OFFSET MAX_BYTES
# Answers @@metrics with size= (the file's size), next= (the offset after the last whole line
# given: the next call starts there) and one line= per whole line (cut at 4096 bytes) among the
# at most MAX_BYTES bytes from OFFSET. A last line without its newline yet is left for the next
# call. An OFFSET past the end (the file was replaced) starts again at 0. No metrics file: size=0.
[ $# -eq 3 ] || ugro_fail 2 "usage: metrics.sh RUN_DIR OFFSET MAX_BYTES"
ugro_is_uint "$2" || ugro_fail 2 "OFFSET must be a decimal integer"
ugro_is_uint "$3" || ugro_fail 2 "MAX_BYTES must be a decimal integer"
[ -d "$1" ] && [ ! -L "$1" ] || ugro_fail 3 "no run dir $1"
f=$1/metrics.jsonl
if [ ! -f "$f" ] || [ -L "$f" ]; then
  printf '@@metrics\nsize=0\nnext=0\n@@end\n'
  exit 0
fi
size=$(wc -c <"$f") || ugro_fail 1 "cannot read $f"
size=$((size + 0))
off=$2
[ "$off" -le "$size" ] || off=0
# The file only grows: both reads below see the same len bytes.
len=$((size - off))
[ "$len" -le "$3" ] || len=$3
nl=0
[ "$len" -gt 0 ] && [ "$(tail -c +$((off + 1)) -- "$f" | head -c "$len" | tail -c 1 | od -An -tx1 | tr -d ' ')" = 0a ] &&
  nl=1
printf '@@metrics\nsize=%s\n' "$size"
tail -c +$((off + 1)) -- "$f" | head -c "$len" | LC_ALL=C awk -v off="$off" -v nl="$nl" '
  function give(s) { pos += length(s) + 1; if (length(s) > 4096) s = substr(s, 1, 4096); print "line=" s }
  NR > 1 { give(held) }
  { held = $0 }
  END { if (NR > 0 && nl == 1) give(held); printf "next=%d\n", off + pos }'
echo "@@end"
