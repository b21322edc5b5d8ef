# UGRO host runtime: the newest metrics line of each run dir asked for, only where it changed.
# The controller's progress watcher sends one of these per host every second while runs of its
# jobs live there: everything it wants from the host in one exec, whatever the number of runs.
# Usage: progress.sh RUNS_DIR [DIR SIG]…
#   DIR  a run dir name under RUNS_DIR ([a-z0-9.-], not starting with -)
#   SIG  what this script answered as sig= for DIR last time, or '' (not read yet)
# Answers, per DIR whose metrics.jsonl is a regular file whose signature (inode.size.mtime) is not
# SIG: @@progress DIR with sig= and metrics= (its last line, from its last 64 KiB). Unchanged files
# are not read at all: one stat for every file, one tail per changed file. Last, @@progress-read
# with asked= (how many DIRs): output without it was cut short.
# Everything read is written by jobs: printed as data, one line, and validated by the controller.
[ $# -ge 1 ] && [ $((($# - 1) % 2)) -eq 0 ] || ugro_fail 2 "usage: progress.sh RUNS_DIR [DIR SIG]…"
runs=$1
shift
asked=$(($# / 2))
# No runs dir (yet): nothing to answer, once the arguments are checked.
{ [ -d "$runs" ] && cd "$runs"; } 2>/dev/null || runs=
nl='
'
known=$nl files=
while [ $# -ge 2 ]; do
  d=$1 s=$2
  shift 2
  case $d in '' | -* | *[!a-z0-9.-]*) ugro_fail 2 "DIR must be a run dir name ([a-z0-9.-], no leading -)" ;; esac
  case $s in *[!0-9.]*) ugro_fail 2 "SIG must be digits and dots" ;; esac
  [ -n "$runs" ] && [ -d "$d" ] && [ ! -L "$d" ] && [ -f "$d/metrics.jsonl" ] && [ ! -L "$d/metrics.jsonl" ] || continue
  known=$known$d' '$s$nl
  files="$files $d/metrics.jsonl"
done
if [ -n "$files" ]; then
  # (Split on spaces: every name is [a-z0-9.-]/metrics.jsonl, nothing to glob or split wrongly.)
  stat -c '%n %i.%s.%Y' -- $files 2>/dev/null | while read -r f sig; do
    d=${f%/metrics.jsonl}
    case $known in *"$nl$d $sig$nl"*) continue ;; esac
    printf '@@progress %s\nsig=%s\n' "$d" "$sig"
    # awk's $0 in END is the last record: the last line, ended by a newline whatever the file.
    tail -c 65536 -- "$f" | awk 'END { print "metrics=" $0 }'
    echo "@@end"
  done
fi
printf '@@progress-read\nasked=%s\n@@end\n' "$asked"
