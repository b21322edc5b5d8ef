# UGRO host runtime (Slurm login host): make the run directory, before the batch script is
# written into it over sftp.
# Usage: slurm/prepare.sh RUN_DIR
[ $# -eq 1 ] || ugro_fail 2 "usage: slurm/prepare.sh RUN_DIR"
mkdir -p -- "$1" || ugro_fail 1 "cannot create $1"
printf '@@prepare\nrun_dir=%s\n@@end\n' "$1"
