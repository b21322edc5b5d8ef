# UGRO host runtime (Slurm login host): submit a run's batch script with sbatch.
# Usage: slurm/submit.sh RUN_DIR RUN_ID META_JSON
#   RUN_DIR   holds job.sbatch (written over sftp just before; its #SBATCH lines name the job
#             RUN_ID); sbatch runs here, so the job's working directory is RUN_DIR
#   META_JSON written to meta.json once the job is submitted (observe reads only run dirs that
#             have one: a failed sbatch leaves nothing the controller would take for a run)
# Answers @@submit with result=submitted|exists and job_id. Idempotent: a dir that already has a
# job id, or whose job Slurm already knows by name (a submit cut short before it wrote the id),
# is reported (exists), never submitted twice. sbatch's refusal is an @@error with its message.
[ $# -eq 3 ] || ugro_fail 2 "usage: slurm/submit.sh RUN_DIR RUN_ID META_JSON"
run_dir=$1 run_id=$2 meta=$3
case $run_id in '' | *[!A-Za-z0-9._-]*) ugro_fail 2 "RUN_ID must be [A-Za-z0-9._-]+" ;; esac
cd "$run_dir" 2>/dev/null || ugro_fail 1 "no run dir $run_dir"
[ -f job.sbatch ] || ugro_fail 1 "$run_dir/job.sbatch is missing"
command -v sbatch >/dev/null 2>&1 || ugro_fail 1 "sbatch is not installed on this login host (or not on PATH)"
# One submit of a dir at a time.
exec 8>submit.lock
flock 8 2>/dev/null || true
answer() {
  echo "$2" >slurm_job_id.tmp && mv -f slurm_job_id.tmp slurm_job_id
  [ -f meta.json ] || printf '%s\n' "$meta" >meta.json
  printf '@@submit\nresult=%s\njob_id=%s\n@@end\n' "$1" "$2"
  exit 0
}
ugro_read slurm_job_id
ugro_is_uint "$ugro_v" && answer exists "$ugro_v"
known=$(squeue --me --noheader --states=all --name="$run_id" --format=%i 2>/dev/null | head -n 1)
ugro_is_uint "$known" && answer exists "$known"
out=$(sbatch --parsable job.sbatch 2>&1) || ugro_fail 1 "sbatch refused the job: $(printf '%s' "$out" | tail -n 3)"
# --parsable: "JOBID" or "JOBID;CLUSTER"; warnings may come first.
id=$(printf '%s\n' "$out" | tail -n 1)
id=${id%%;*}
ugro_is_uint "$id" || ugro_fail 1 "sbatch answered no job id: $(printf '%s' "$out" | tail -n 3)"
date +%s%N >submitted_at
answer submitted "$id"
