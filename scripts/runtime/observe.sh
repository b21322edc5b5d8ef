# UGRO host runtime: report the run directories in RUNS_DIR (all, or only those of JOB).
# Usage: observe.sh RUNS_DIR [JOB [CHECKPOINT_DIR]]
# Answers, per directory with a meta.json: @@run DIR with pid, starttime, alive (0|1), exit_code,
# cancelled, launched_at, finished_at (ns), meta (meta.json on one line), rank= per started rank
# (`RANK LOCAL_RANK GROUP_RANK PID NS`), rankexit= per exited rank (`RANK CODE SECONDS.NANOS`),
# ranklog= (`RANK LINE`, last 20 lines of each failed rank), rankoom= (`RANK KIND BATCH MICRO
# ACCUM EVIDENCE`: rank.sh's out-of-memory record of a failed rank), agentlog= (torchrun's last 20
# lines when it failed), metrics= (the last metrics.jsonl line) and rankbeat= per live rank
# (`RANK MS`: milliseconds since it touched its heartbeat file) with rankproc= (`RANK STATE`: the
# training process's state letter from /proc, T when stopped). With CHECKPOINT_DIR, first a
# @@checkpoint block: the job's newest complete checkpoint (name from its `latest` index, size in
# bytes, mtime_ns), when there is one. A name that cannot be a run
# dir (unsafe bytes, or a leading -) is @@rejected NAME (unsafe bytes shown as ?) with why=.
# Last, @@observe with runs_dir=present|absent and runs= (how many @@run blocks): output without
# it was cut short.
# Everything here was written by jobs as much as by UGRO: every value is one line, capped, and
# the controller validates it (meta.json above all) before believing it.
runs=$1 job=${2:-} ckpt=${3:-}
case $job in *[!a-z0-9-]*) ugro_fail 2 "JOB must be a DNS label" ;; esac
now=$(date +%s%N)
# `latest` names the newest checkpoint renamed into place (train.py writes it after the rename).
if [ -n "$ckpt" ] && [ -f "$ckpt/latest" ] && [ ! -L "$ckpt/latest" ]; then
  ugro_read "$ckpt/latest"
  name=$ugro_v
  case $name in '' | .* | *[!A-Za-z0-9._-]*) name= ;; esac
  f="$ckpt/$name.pt"
  if [ -n "$name" ] && [ -f "$f" ] && [ ! -L "$f" ]; then
    size=$(wc -c <"$f")
    printf '@@checkpoint\nname=%s\nsize=%s\nmtime_ns=%s\n@@end\n' "$name" "$size" "$(date -r "$f" +%s%N)"
  fi
fi
[ -d "$runs" ] || { printf '@@observe\nruns_dir=absent\nruns=0\n@@end\n'; exit 0; }
cd "$runs" || ugro_fail 1 "cannot enter $runs"
n=0
for d in */; do
  d=${d%/}
  [ -f "$d/meta.json" ] || continue
  [ -L "$d" ] && continue
  if [ -n "$job" ]; then case $d in "$job".*) ;; *) continue ;; esac; fi
  # (A leading - would read as an option to tail, head and date below.)
  case $d in -* | *[!a-z0-9.-]*)
    printf '@@rejected %s\n' "$(printf '%s' "$d" | tr -c 'a-z0-9.-' '?')"
    printf 'why=%s\n@@end\n' 'directory name has bytes outside [a-z0-9.-] or starts with -'
    continue
    ;;
  esac
  n=$((n + 1))
  echo "@@run $d"
  ugro_read "$d/pid"
  pid=$ugro_v
  ugro_read "$d/starttime"
  st=$ugro_v
  printf 'pid=%s\nstarttime=%s\n' "$pid" "$st"
  if ugro_alive "$pid" "$st"; then echo alive=1; else echo alive=0; fi
  ugro_kv exit_code "$d/exit_code"
  code=$ugro_v
  ugro_kv cancelled "$d/cancelled"
  ugro_kv launched_at "$d/launched_at"
  ugro_kv finished_at "$d/finished_at"
  printf 'meta=%s\n' "$(head -c 16384 "$d/meta.json" | tr -d '\n')"
  [ -f "$d/ranks" ] && tail -n 4096 "$d/ranks" | ugro_lines rank= 200
  for f in "$d"/rank-*.exit; do
    [ -f "$f" ] || continue
    r=${f##*/rank-}
    r=${r%.exit}
    ugro_is_uint "$r" || continue
    ugro_read "$f"
    # Sub-second exit times: ranks that die of a peer's failure exit within milliseconds of it.
    printf 'rankexit=%s %s %s\n' "$r" "$ugro_v" "$(date -r "$f" +%s.%N)"
    [ "$ugro_v" = 0 ] || tail -c 1048576 "$d/rank-$r.log" 2>/dev/null | tail -n 20 | ugro_lines "ranklog=$r " 2000
    # rank.sh's out-of-memory evidence for a failed rank (one line)
    if [ "$ugro_v" != 0 ] && [ -f "$d/rank-$r.oom" ] && [ ! -L "$d/rank-$r.oom" ]; then
      head -c 1024 "$d/rank-$r.oom" | head -n 1 | ugro_lines "rankoom=$r " 600
    fi
  done
  for f in "$d"/heartbeat-*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    r=${f##*/heartbeat-}
    ugro_is_uint "$r" || continue
    [ -f "$d/rank-$r.exit" ] && continue
    t=$(date -r "$f" +%s%N) || continue
    # (19 digits of ns: past ugro_is_uint's 18, still far inside $(( ))'s 64 bits.)
    case $t$now in '' | *[!0-9]*) continue ;; esac
    printf 'rankbeat=%s %s\n' "$r" "$(((now - t) / 1000000))"
    ugro_read "$d/rank-$r.pid"
    if ugro_is_uint "$ugro_v" && { read -r _l <"/proc/$ugro_v/stat"; } 2>/dev/null; then
      set -- ${_l##*) }
      # (Z: dead, waiting to be reaped; nothing to report.)
      [ "$1" = Z ] || printf 'rankproc=%s %s\n' "$r" "$1"
    fi
  done
  case $code in
  '' | 0) ;;
  *) tail -c 1048576 "$d/torchrun.log" 2>/dev/null | tail -n 20 | ugro_lines agentlog= 2000 ;;
  esac
  [ -f "$d/metrics.jsonl" ] && tail -c 65536 "$d/metrics.jsonl" | tail -n 1 | ugro_lines metrics=
  echo "@@end"
done
printf '@@observe\nruns_dir=present\nruns=%s\n@@end\n' "$n"
