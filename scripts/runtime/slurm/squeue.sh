# UGRO host runtime (Slurm login host): what Slurm says about this user's jobs, in one call.
# Usage: slurm/squeue.sh [SACCT_IDS]
#   SACCT_IDS  comma-separated job ids squeue no longer lists, asked of sacct (accounting)
# Answers @@squeue with one row= per job (`ID|STATE|REASON|NODES|NAME`, squeue's own words; the
# name last, since only it may hold a |), rc= squeue's exit code, and with SACCT_IDS an @@sacct
# block with one row= per job (`ID|STATE|EXITCODE|NODES`) and its rc=.
ids=${1:-}
case $ids in *[!0-9,]*) ugro_fail 2 "SACCT_IDS must be job ids separated by commas" ;; esac
command -v squeue >/dev/null 2>&1 || ugro_fail 1 "squeue is not installed on this login host (or not on PATH)"
out=$(squeue --me --noheader --states=all --format='%i|%T|%r|%N|%j' 2>&1)
rc=$?
echo "@@squeue"
echo "rc=$rc"
printf '%s\n' "$out" | ugro_lines row= 4096
echo "@@end"
if [ -n "$ids" ]; then
  out=$(sacct --noheader --parsable2 --allocations --jobs="$ids" --format=JobID,State,ExitCode,NodeList 2>&1)
  rc=$?
  echo "@@sacct"
  echo "rc=$rc"
  printf '%s\n' "$out" | ugro_lines row= 4096
  echo "@@end"
fi
exit 0
