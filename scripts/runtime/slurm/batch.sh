# ---- from here on: scripts/runtime/slurm/batch.sh, the same for every job ----
# UGRO's Slurm batch script body. sbatch runs it on the allocation's first node, in the run
# directory it was submitted from. Set above it: ugro_python, ugro_nproc, ugro_port and
# ugro_join_timeout, and "$@" = UGRO's variables (NAME=VALUE…) -- the job's own variables
# (NAME=VALUE…) -- the training command. Every value up there is quoted (config/quote.ts) or a
# checked number; nothing below is generated.
#
# Files it leaves in the run directory (read by the controller through the login host, on the
# storage the nodes share): launched_at, rdzv_endpoint, rank.sh and slurm-node.sh, per rank what
# rank.sh writes (ranks, rank-N.log, rank-N.exit, heartbeat-N), torchrun-NODE.log per node, and
# exit_code and finished_at when srun returns. `lock` is held while it runs.
set -u
ugro_dir=${SLURM_SUBMIT_DIR:?submit this script with sbatch, from the directory the run should use}
cd "$ugro_dir" || exit 1
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  export "$1"
  shift
done
[ $# -gt 0 ] && shift
export UGRO_RUN_DIR="$ugro_dir" UGRO_METRICS_FILE="$ugro_dir/metrics.jsonl"
: "${UGRO_CHECKPOINT_DIR:=$ugro_dir/checkpoints}"
export UGRO_CHECKPOINT_DIR
mkdir -p "$UGRO_CHECKPOINT_DIR"

# Requeued by Slurm (a node failed, the job was preempted): the script starts again from the top
# in the same directory. The last try's files move aside, and training resumes from the newest
# complete checkpoint (train.py writes `latest` after the checkpoint is in place).
ugro_try=${SLURM_RESTART_COUNT:-0}
case $ugro_try in '' | *[!0-9]*) ugro_try=0 ;; esac
if [ "$ugro_try" -gt 0 ]; then
  mkdir -p "requeue-$ugro_try"
  for f in ranks rank-*.log rank-*.exit rank-*.pid heartbeat-* torchrun-*.log exit_code finished_at rdzv_endpoint; do
    [ -e "$f" ] && mv -f -- "$f" "requeue-$ugro_try/"
  done
  ugro_latest=
  { IFS= read -r ugro_latest <"$UGRO_CHECKPOINT_DIR/latest"; } 2>/dev/null
  case $ugro_latest in
  '' | .* | *[!A-Za-z0-9._-]*) ;;
  *) [ -f "$UGRO_CHECKPOINT_DIR/$ugro_latest.pt" ] && export UGRO_RESUME_FROM="$ugro_latest" ;;
  esac
  export UGRO_RESTART_COUNT=$((${UGRO_RESTART_COUNT:-0} + ugro_try))
fi

# Held while the job runs: `ugro logs -f` follows a rank's log until it is released.
exec 9>>lock
flock -n 9 2>/dev/null || true
date +%s%N >launched_at

ugro_listening() { # PORT: something listens on this TCP port here (ss, else /proc/net/tcp{,6})
  if command -v ss >/dev/null 2>&1; then
    ss -ltn 2>/dev/null | awk -v p="$1" '$1 == "LISTEN" { n = split($4, a, ":"); if (a[n] == p) f = 1 } END { exit !f }'
  else
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null | awk -v p="$1" '$4 == "0A" {
      split($2, a, ":"); h = toupper(a[2]); q = 0
      for (i = 1; i <= length(h); i++) q = q * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1
      if (q == p) f = 1
    } END { exit !f }'
  fi
}

# c10d rendezvous on the first node of the allocation (this one, SLURM_NODEID 0, is_host=1
# there only), at its address and the first port from ugro_port nothing listens on here.
ugro_first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" 2>/dev/null | head -n 1)
[ -n "$ugro_first" ] || ugro_first=$(hostname)
ugro_addr=$(getent ahostsv4 "$ugro_first" 2>/dev/null | awk '{ print $1; exit }')
[ -n "$ugro_addr" ] || ugro_addr=$ugro_first
ugro_rdzv_port=$ugro_port
while ugro_listening "$ugro_rdzv_port"; do ugro_rdzv_port=$((ugro_rdzv_port + 1)); done
echo "$ugro_addr:$ugro_rdzv_port" >rdzv_endpoint

# One task per node: torchrun there (slurm-node.sh). A rank that fails ends the step at once
# (--kill-on-bad-exit); a TERM to this script (scancel --signal=TERM --full, the time limit)
# is passed on, and it waits for the step to end so the ranks can save a checkpoint.
trap 'kill -TERM "$ugro_step" 2>/dev/null' TERM INT
srun --kill-on-bad-exit=1 --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 \
  sh "$ugro_dir/slurm-node.sh" "$ugro_addr" "$ugro_rdzv_port" "$ugro_python" "$ugro_nproc" "$ugro_join_timeout" \
  "$@" 9>&- </dev/null &
ugro_step=$!
while :; do
  wait "$ugro_step"
  rc=$?
  kill -0 "$ugro_step" 2>/dev/null || break
done
echo "$rc" >exit_code.tmp && mv -f exit_code.tmp exit_code
date +%s%N >finished_at
exit "$rc"
