#!/bin/bash
# Device check, step 2 (on the GPU machine, in the repo root): run the command lines that
# tests/device/prepare.ts recorded, exactly as SSH would hand them to the host's shell, and
# collect every output in one file ($OUT/device-results.txt, sections "@@@ NAME rc=N").
# Usage: bash tests/device/check.sh [PREP_DIR=.device] [OUT=$OUT or .device/out]
set -u
prep=${1:-.device}
out=${2:-${OUT:-$prep/out}}
mkdir -p "$out"
res=$out/device-results.txt
: > "$res"
. "$prep/run.env"
section() { # NAME CMDFILE [timeout]
  local name=$1 file=$2 t=${3:-120} rc
  { echo "@@@ $name"; timeout -s KILL "$t" sh -c "$(cat "$file")" 2>&1; rc=$?; echo "@@@ $name rc=$rc"; } >> "$res"
}
raw() { # NAME COMMAND...
  local name=$1 rc; shift
  { echo "@@@ $name"; "$@" 2>&1; rc=$?; echo "@@@ $name rc=$rc"; } >> "$res"
}
rm -rf /tmp/ugro-dev && mkdir -p "$SCRIPTS" && cp scripts/train.py "$SCRIPTS/"
raw uname uname -a
raw which sh -c 'command -v python3 nvidia-smi flock setsid ip timeout; python3 -c "import torch,sys;print(sys.version.split()[0], torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.nccl.version() if torch.cuda.is_available() else None)"'
raw nvidia-smi-query nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,driver_version --format=csv,noheader,nounits
section probe "$prep/probe.cmd" 30
section driver "$prep/driver.cmd" 30
section driver-too-old "$prep/driver-too-old.cmd" 30
section torch "$prep/torch.cmd" 120
section torch-wrong-cuda "$prep/torch-wrong-cuda.cmd" 120
t0=$(date +%s%N)
section launch "$prep/launch.cmd" 30
# wait.sh blocks on the runner's lock, no polling, and prints torchrun's exit code.
section wait "$prep/wait.cmd" 300
t1=$(date +%s%N)
echo "@@@ elapsed-ms $(( (t1 - t0) / 1000000 ))" >> "$res"
section observe "$prep/observe.cmd" 30
raw rank-0.log cat "$RUN_DIR/rank-0.log"
raw torchrun.log tail -n 40 "$RUN_DIR/torchrun.log"
raw metrics cat "$RUN_DIR/metrics.jsonl"
raw checkpoints ls -la /tmp/ugro-dev/ugro/checkpoints/gpu-check
echo "wrote $res ($(wc -l < "$res") lines)"
