# UGRO host runtime (Slurm login host): stop a run's Slurm job, gracefully first.
# Usage: slurm/cancel.sh RUN_DIR RUN_ID GRACE_MS REASON
#   GRACE_MS  decimal milliseconds; REASON one of UGRO's stop reasons (as stop.sh), written to
#             the run dir's `cancelled` (the first one stays)
# SIGTERM to the batch script and every step (scancel --signal=TERM --full: the ranks can save a
# checkpoint), up to GRACE_MS for the job to end, then scancel (Slurm kills what is left) and up
# to 30 s more. Answers @@stop with killed=0|1 and remaining=0|1 (1: Slurm still lists the job as
# live), or none=1 when the dir has no job. Exit 1 when remaining is not 0.
[ $# -eq 4 ] || ugro_fail 2 "usage: slurm/cancel.sh RUN_DIR RUN_ID GRACE_MS REASON"
run_dir=$1 run_id=$2 grace_ms=$3 reason=$4
ugro_stop_args "$run_id" "$grace_ms" "$reason"
none() { printf '@@stop\nnone=1\nkilled=0\nremaining=0\nwaited_ms=0\n@@end\n'; exit 0; }
[ -d "$run_dir" ] || none
[ -s "$run_dir/cancelled" ] || echo "$reason" >"$run_dir/cancelled"
ugro_read "$run_dir/slurm_job_id"
id=$ugro_v
ugro_is_uint "$id" || id=$(squeue --me --noheader --states=all --name="$run_id" --format=%i 2>/dev/null | head -n 1)
ugro_is_uint "$id" || none
live() { # the job is still something Slurm runs or will run
  s=$(squeue --noheader --states=all --jobs="$id" --format=%T 2>/dev/null | head -n 1)
  case $s in PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED | REQUEUED | REQUEUE_HOLD | REQUEUE_FED | \
    RESIZING | SIGNALING | STAGE_OUT | STOPPED | RESV_DEL_HOLD) return 0 ;; esac
  return 1
}
i=0 killed=0
if live; then
  # A pending job has nothing to signal: it just goes.
  case $s in
  PENDING | REQUEUED | REQUEUE_HOLD | REQUEUE_FED) scancel "$id" 2>/dev/null ;;
  *) scancel --signal=TERM --full "$id" 2>/dev/null ;;
  esac
  limit=$(((grace_ms + 199) / 200))
  while [ "$i" -lt "$limit" ] && live; do
    sleep 0.2
    i=$((i + 1))
  done
  if live; then
    scancel "$id" 2>/dev/null
    killed=1
    j=0
    while [ "$j" -lt 150 ] && live; do
      sleep 0.2
      j=$((j + 1))
    done
  fi
fi
remaining=0
live && remaining=1
printf '@@stop\nkilled=%s\nremaining=%s\nwaited_ms=%s\njob_id=%s\n@@end\n' "$killed" "$remaining" "$((i * 200))" "$id"
[ "$remaining" = 0 ]
