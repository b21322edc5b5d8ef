# ---- after observe.sh (run just before, in a subshell): scripts/runtime/slurm/observe.sh ----
# UGRO host runtime (Slurm login host): what a Slurm run dir holds besides what observe.sh
# reports. Same arguments as observe.sh (RUNS_DIR [JOB [CHECKPOINT_DIR]]). Per run dir with a
# meta.json: @@slurm DIR with job_id (the Slurm job), rdzv (the endpoint the batch script chose)
# and, when the batch script recorded a non-zero exit code, out= per line of the last 20 of its
# Slurm output (slurm-JOBID.out: srun's own messages) and of the first failed node's torchrun
# log. Values are data, one line each, capped like observe.sh's.
runs=$1 job=${2:-}
[ -d "$runs" ] || exit 0
cd "$runs" || exit 0
for d in */; do
  d=${d%/}
  [ -f "$d/meta.json" ] || continue
  [ -L "$d" ] && continue
  if [ -n "$job" ]; then case $d in "$job".*) ;; *) continue ;; esac; fi
  case $d in -* | *[!a-z0-9.-]*) continue ;; esac
  echo "@@slurm $d"
  ugro_kv job_id "$d/slurm_job_id"
  id=$ugro_v
  ugro_kv rdzv "$d/rdzv_endpoint"
  ugro_read "$d/exit_code"
  case $ugro_v in
  '' | 0) ;;
  *)
    ugro_is_uint "$id" && [ -f "$d/slurm-$id.out" ] &&
      tail -c 1048576 "$d/slurm-$id.out" 2>/dev/null | tail -n 20 | ugro_lines out= 2000
    for f in "$d"/torchrun-*.log; do
      [ -f "$f" ] && [ ! -L "$f" ] || continue
      grep -q -i -e error -e failed -e exitcode "$f" 2>/dev/null || continue
      tail -c 1048576 "$f" | tail -n 20 | ugro_lines out= 2000
      break
    done
    ;;
  esac
  echo "@@end"
done
exit 0
