# UGRO host runtime: list or delete a job's checkpoints in its checkpoint dir on this host.
# Usage: checkpoints.sh list CHECKPOINT_DIR HASH [RUNS_DIR JOB]
#        checkpoints.sh delete CHECKPOINT_DIR NAME…
# list answers @@latest with name= (what `latest` names, empty if none), then per complete
# checkpoint (a regular NAME.pt, never a symlink, a dot file or train.py's .NAME.pt.tmp) @@checkpoint
# NAME with size (bytes), mtime_ns and, with HASH 1, sha256. The SHA-256 is computed once per file
# and kept beside it in NAME.pt.sha256 (`SHA SIZE MTIME_NS`): a file whose size or mtime changed is
# hashed again, so listing twice does not read GBs twice. With RUNS_DIR and JOB, per run dir of
# JOB there (JOB.HASH.ATTEMPT with a meta.json) @@run DIR with launched_at, finished_at (ns) and
# metric= `STEP LINE` per checkpoint step-STEP: its metrics.jsonl line with the largest "step" at
# or before STEP (the last such line). Last, @@checkpoints with dir=present|absent and count=:
# output without it was cut short.
# delete removes NAME.pt (and its .sha256) for each NAME, never the one `latest` names, and
# answers @@deleted NAME with size= per file removed, then @@checkpoints with deleted=.
# Everything in the dir was written by jobs too: names are checked, values printed as data, each
# one line; awk gets the steps as a -v value (digits only), never as program text.
[ $# -ge 2 ] || ugro_fail 2 "usage: checkpoints.sh list|delete CHECKPOINT_DIR …"
mode=$1 dir=$2
shift 2
case $dir in /*) ;; *) ugro_fail 2 "CHECKPOINT_DIR must be an absolute path" ;; esac

# The name `latest` points at (empty unless it is a checkpoint name).
latest=
if [ -f "$dir/latest" ] && [ ! -L "$dir/latest" ]; then
  ugro_read "$dir/latest"
  latest=$ugro_v
  case $latest in '' | .* | -* | *[!A-Za-z0-9._-]*) latest= ;; esac
fi

# ugro_ckpt_name NAME: a checkpoint name UGRO could have made (what train.py and resumeFrom accept).
ugro_ckpt_name() {
  case $1 in '' | .* | -* | *[!A-Za-z0-9._-]*) return 1 ;; esac
  [ ${#1} -le 128 ]
}

case $mode in
list)
  [ $# -eq 1 ] || [ $# -eq 3 ] || ugro_fail 2 "usage: checkpoints.sh list CHECKPOINT_DIR HASH [RUNS_DIR JOB]"
  hash=$1 runs=${2:-} job=${3:-}
  case $hash in 0 | 1) ;; *) ugro_fail 2 "HASH must be 0 or 1" ;; esac
  case $job in *[!a-z0-9-]*) ugro_fail 2 "JOB must be a DNS label" ;; esac
  if [ ! -d "$dir" ] || [ -L "$dir" ]; then
    printf '@@checkpoints\ndir=absent\ncount=0\n@@end\n'
    exit 0
  fi
  printf '@@latest\nname=%s\n@@end\n' "$latest"
  n=0 steps=
  for f in "$dir"/*.pt; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    name=${f##*/}
    name=${name%.pt}
    ugro_ckpt_name "$name" || continue
    size=$(wc -c <"$f") || continue
    mtime=$(date -r "$f" +%s%N) || continue
    sum=
    if [ "$hash" = 1 ]; then
      side=$f.sha256
      if [ -f "$side" ] && [ ! -L "$side" ]; then
        { read -r s1 s2 s3 <"$side"; } 2>/dev/null || s1=
        [ "$s2 $s3" = "$size $mtime" ] && sum=$s1
        case $sum in *[!0-9a-f]*) sum= ;; esac
        [ ${#sum} -eq 64 ] || sum=
      fi
      if [ -z "$sum" ]; then
        sum=$(sha256sum <"$f") || ugro_fail 1 "sha256sum failed on $f"
        sum=${sum%% *}
        # Kept only if the file did not change while it was read; a dir we cannot write is no error.
        if [ "$(date -r "$f" +%s%N)" = "$mtime" ]; then
          tmp=$dir/.$name.pt.sha256.$$
          { printf '%s %s %s\n' "$sum" "$size" "$mtime" >"$tmp" && mv -f "$tmp" "$side"; } 2>/dev/null ||
            rm -f "$tmp" 2>/dev/null
        fi
      fi
    fi
    n=$((n + 1))
    printf '@@checkpoint %s\nsize=%s\nmtime_ns=%s\n' "$name" "$size" "$mtime"
    [ -n "$sum" ] && printf 'sha256=%s\n' "$sum"
    echo @@end
    case $name in step-*)
      s=${name#step-}
      ugro_is_uint "$s" && steps="$steps $s"
      ;;
    esac
  done
  if [ -n "$job" ] && [ -n "$runs" ] && [ -d "$runs" ]; then
    for d in "$runs/$job".*; do
      [ -d "$d" ] && [ ! -L "$d" ] && [ -f "$d/meta.json" ] || continue
      b=${d##*/}
      case $b in -* | *[!a-z0-9.-]*) continue ;; esac
      printf '@@run %s\n' "$b"
      ugro_kv launched_at "$d/launched_at"
      ugro_kv finished_at "$d/finished_at"
      m=$d/metrics.jsonl
      if [ -n "$steps" ] && [ -f "$m" ] && [ ! -L "$m" ]; then
        tail -c 16777216 "$m" | awk -v want="$steps" '
          BEGIN { n = split(want, w, " ") }
          match($0, /"step": *[0-9]+/) {
            s = substr($0, RSTART, RLENGTH)
            sub(/^"step": */, "", s)
            s = s + 0
            for (i = 1; i <= n; i++)
              if (s <= w[i] + 0 && (!(i in at) || s >= at[i])) { at[i] = s; line[i] = $0 }
          }
          END {
            for (i = 1; i <= n; i++)
              if (i in at) print "metric=" w[i] " " substr(line[i], 1, 4000)
          }'
      fi
      echo @@end
    done
  fi
  printf '@@checkpoints\ndir=present\ncount=%s\n@@end\n' "$n"
  ;;
delete)
  [ $# -ge 1 ] || ugro_fail 2 "usage: checkpoints.sh delete CHECKPOINT_DIR NAME…"
  for name in "$@"; do ugro_ckpt_name "$name" || ugro_fail 2 "$name is not a checkpoint name"; done
  n=0
  for name in "$@"; do
    # The one `latest` names is what a restart resumes from: never removed here, whoever asks.
    [ "$name" = "$latest" ] && continue
    f=$dir/$name.pt
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    size=$(wc -c <"$f") || continue
    rm -f "$f" || ugro_fail 1 "cannot remove $f"
    rm -f "$f.sha256" 2>/dev/null
    n=$((n + 1))
    printf '@@deleted %s\nsize=%s\n@@end\n' "$name" "$size"
  done
  printf '@@checkpoints\ndeleted=%s\n@@end\n' "$n"
  ;;
*) ugro_fail 2 "usage: checkpoints.sh list|delete CHECKPOINT_DIR …" ;;
esac
