#!/bin/sh
# UGRO host runtime: report the runs in RUNS_DIR (all, or only those of JOB), one block each.
# Usage: observe.sh RUNS_DIR [JOB]
runs=$1; job=${2:-}
[ -d "$runs" ] || { echo "@@none"; exit 0; }
cd "$runs" || exit 0
for d in */; do
  d=${d%/}
  [ -f "$d/meta.json" ] || continue
  if [ -n "$job" ]; then case "$d" in "$job".*) ;; *) continue ;; esac; fi
  echo "@@run $d"
  pid=$(cat "$d/pid" 2>/dev/null || true)
  st=$(cat "$d/starttime" 2>/dev/null || true)
  alive=0
  # Alive = that pid with that start time (pid reuse), and not a zombie waiting to be reaped
  # (a slow or absent init would otherwise keep a finished run "alive").
  if [ -n "$pid" ] && { read -r line < "/proc/$pid/stat"; } 2>/dev/null; then
    set -- ${line##*) }
    [ "$1" != Z ] && [ "${20}" = "$st" ] && alive=1
  fi
  echo "pid=$pid"
  echo "starttime=$st"
  echo "alive=$alive"
  echo "exit=$(cat "$d/exit_code" 2>/dev/null || true)"
  echo "cancelled=$(cat "$d/cancelled" 2>/dev/null || true)"
  echo "launched_at=$(cat "$d/launched_at" 2>/dev/null || true)"
  echo "finished_at=$(cat "$d/finished_at" 2>/dev/null || true)"
  echo "meta=$(tr -d '\n' < "$d/meta.json")"
  [ -f "$d/ranks" ] && sed 's/^/rank=/' "$d/ranks"
  for f in "$d"/rank-*.exit; do
    [ -f "$f" ] || continue
    r=${f##*/rank-}; r=${r%.exit}
    # Sub-second exit times: ranks that die of a peer's failure exit within milliseconds of it.
    echo "rankexit=$r $(cat "$f") $(date -r "$f" +%s.%N)"
    if [ "$(cat "$f")" != 0 ]; then tail -n 20 "$d/rank-$r.log" 2>/dev/null | sed "s/^/ranklog=$r /"; fi
  done
  if [ -n "$(cat "$d/exit_code" 2>/dev/null)" ] && [ "$(cat "$d/exit_code")" != 0 ]; then
    tail -n 20 "$d/torchrun.log" 2>/dev/null | sed 's/^/agentlog=/'
  fi
  [ -f "$d/metrics.jsonl" ] && tail -n 1 "$d/metrics.jsonl" | sed 's/^/metrics=/'
done
echo "@@end"
