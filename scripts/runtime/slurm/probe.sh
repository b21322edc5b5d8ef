# UGRO host runtime (Slurm login host): can jobs be submitted here?
# Usage: slurm/probe.sh
# Answers @@slurm-probe with hostname, sbatch= squeue= scancel= (1: on PATH), version (sbatch's),
# squeue_rc and squeue_error (whether slurmctld answers), and one partition= per partition
# (`NAME AVAIL NODES STATE`, sinfo's words).
printf '@@slurm-probe\nhostname=%s\n' "$(hostname 2>/dev/null)"
for c in sbatch squeue scancel sinfo; do
  if command -v "$c" >/dev/null 2>&1; then echo "$c=1"; else echo "$c=0"; fi
done
command -v sbatch >/dev/null 2>&1 && printf 'version=%s\n' "$(sbatch --version 2>/dev/null | head -n 1)"
if command -v squeue >/dev/null 2>&1; then
  err=$(squeue --me --noheader --format=%i 2>&1 >/dev/null)
  printf 'squeue_rc=%s\n' "$?"
  [ -n "$err" ] && printf '%s\n' "$err" | head -n 3 | ugro_lines squeue_error= 500
fi
command -v sinfo >/dev/null 2>&1 && sinfo --noheader --format='%P %a %D %T' 2>/dev/null | head -n 64 | ugro_lines partition= 200
echo "@@end"
