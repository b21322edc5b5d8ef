#!/usr/bin/env bash
# `npm run demo`: the lab up, the controller running, one job trained across three hosts,
# `ugro get jobs` showing it Succeeded. Leaves the lab up (take it down: npm run lab -- down).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/lab/lab.sh up
export UGRO_CLUSTER=.lab/cluster.yaml UGRO_JOBS=.lab/demo-jobs
rm -rf "$UGRO_JOBS" && mkdir -p "$UGRO_JOBS"
ugro() { node bin/ugro.mjs "$@"; }
echo "== ugro health"
ugro health || true
echo "== ugro controller (background, log in .lab/controller.log)"
ugro controller > .lab/controller.log 2>&1 &
ctl=$!
trap 'kill -TERM $ctl 2>/dev/null || true' EXIT
sleep 2
echo "== ugro launch --name demo --model tiny-mlp --epochs 3"
ugro launch --name demo --model tiny-mlp --dataset synthetic --epochs 3 --lr 0.01 --batch-size 32
for _ in $(seq 1 120); do
  phase=$(sed -n 's/^phase: //p' "$UGRO_JOBS/demo.status.yaml" 2>/dev/null || true)
  case "$phase" in Succeeded|Failed) break ;; esac
  sleep 1
done
echo "== ugro get jobs -o wide"
ugro get jobs -o wide
echo "== ugro logs demo --rank 2"
ugro logs demo --rank 2
echo "== ugro results demo"
ugro results demo
[ "$phase" = Succeeded ]
