# UGRO host runtime: what `ugro doctor` reads of one host besides the health probe (probe.sh).
# Usage: doctor.sh RDZV_ADDR CKPT_DIR
#   RDZV_ADDR  the rendezvous host's address: the interface that routes there is the one gloo/NCCL
#              use (lib.sh's ugro_collective_dev, as launch.sh exports it)
#   CKPT_DIR   where checkpoints go (absolute): the free disk of the nearest existing directory
# Answers @@doctor (iface, cuda_driver, disk_path, disk_total_kb, disk_free_kb) and @@gpu-health
# (line= per GPU: controller/backends/gpu-health.ts's query; rc= nvidia-smi's exit, notfound).
set -u
[ $# -eq 2 ] || ugro_fail 2 "usage: doctor.sh RDZV_ADDR CKPT_DIR"
case $2 in /*) ;; *) ugro_fail 2 "CKPT_DIR must be an absolute path" ;; esac
t=""
command -v timeout >/dev/null 2>&1 && t="timeout -s KILL 10" # a wedged driver can hang nvidia-smi
smi=0
command -v nvidia-smi >/dev/null 2>&1 && smi=1

echo "@@doctor"
ugro_collective_dev "$1"
printf 'iface=%s\n' "$ugro_v"
# The newest CUDA the driver supports (`nvidia-smi --version`: "CUDA Version : 12.8").
[ "$smi" = 0 ] || $t nvidia-smi --version 2>/dev/null | awk -F': *' '/^CUDA Version/ { print "cuda_driver=" $2; exit }'
d=$2
while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done
printf 'disk_path=%s\n' "$d"
df -Pk -- "$d" 2>/dev/null | awk 'NR == 2 { print "disk_total_kb=" $2; print "disk_free_kb=" $4 }'
echo "@@end"

echo "@@gpu-health"
if [ "$smi" = 1 ]; then
  q=index,pci.bus_id,temperature.gpu,clocks_event_reasons.active,clocks_event_reasons.hw_slowdown
  q=$q,clocks_event_reasons.sw_thermal_slowdown,clocks_event_reasons.hw_thermal_slowdown
  q=$q,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max
  q=$q,ecc.mode.current,ecc.errors.uncorrected.volatile.total,driver_version,utilization.gpu
  out=$($t nvidia-smi --query-gpu="$q" --format=csv,noheader,nounits 2>&1)
  rc=$?
  if [ "$rc" != 0 ]; then # drivers before the rename know only clocks_throttle_reasons.*
    q=$(printf '%s' "$q" | sed 's/clocks_event_reasons/clocks_throttle_reasons/g')
    out=$($t nvidia-smi --query-gpu="$q" --format=csv,noheader,nounits 2>&1)
    rc=$?
  fi
  printf '%s\n' "$out" | head -n 64 | ugro_lines line= 400
  echo "rc=$rc"
else
  echo "rc=notfound"
fi
echo "@@end"
