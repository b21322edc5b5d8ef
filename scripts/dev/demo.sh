#!/usr/bin/env bash
# `npm run demo`: the lab up, the controller running, one job trained across three hosts,
# `ugro get jobs` showing it Succeeded. Leaves the lab up (take it down: npm run lab -- down) and
# nothing else: the controller it starts is stopped when the demo ends, fails or is interrupted
# (Ctrl-C, kill), and a job still running then is cancelled first.
#   UGRO_DEMO_LAB=keep   use the lab as it is (it must be up) instead of `lab up`
#   UGRO_DEMO_EPOCHS=N   train N epochs (default 3: a few seconds)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${UGRO_DEMO_LAB:-up}" = keep ]; then
  bash tests/lab/lab.sh status >/dev/null || { echo "demo: the lab is not up (npm run lab -- up)" >&2; exit 1; }
else
  bash tests/lab/lab.sh up
fi
export UGRO_CLUSTER=.lab/cluster.yaml UGRO_JOBS=.lab/demo-jobs
mkdir -p "$UGRO_JOBS"
ugro() { node bin/ugro.mjs "$@"; }

ctl= # the controller's pid, and its process group's id (setsid)
phase=
stop_controller() {
  [ -n "$ctl" ] || return 0
  # Bounded, so seen through: a second Ctrl-C must not leave the controller behind.
  trap '' INT TERM
  local i
  # Interrupted mid-run: cancel the job while the controller is there to stop its ranks.
  case $phase in Succeeded | Failed | Cancelled) ;; *)
    if [ -e "$UGRO_JOBS/demo.yaml" ] && kill -0 "$ctl" 2>/dev/null; then
      echo "== ugro cancel demo (the demo was interrupted)"
      timeout 30 node bin/ugro.mjs cancel demo --grace 5 --wait || true
    fi ;;
  esac
  # The whole group: the controller and anything it started (and the pid itself, should setsid
  # not have run yet). SIGTERM is its own clean stop, which hands back its host leases; SIGKILL
  # only if that takes longer than 30 s.
  # The group alone when there is one: `kill -- -PGID PID` would deliver the signal twice.
  kill -TERM -- "-$ctl" 2>/dev/null || kill -TERM "$ctl" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 -- "-$ctl" 2>/dev/null || kill -0 "$ctl" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL -- "-$ctl" "$ctl" 2>/dev/null || true
  ctl=
}
trap stop_controller EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== ugro health"
ugro health || true
echo "== ugro controller (background, log in .lab/controller.log)"
# setsid, not a backgrounded shell function: node itself leads a process group of its own, which
# the trap above ends (a function in the background is a subshell; killing it orphans node). In
# this shell (no job control) a background child is no group leader, so setsid does not fork and
# $! is node's pid, its group's id.
setsid node bin/ugro.mjs controller </dev/null >.lab/controller.log 2>&1 &
ctl=$!
if [ -e "$UGRO_JOBS/demo.yaml" ]; then
  # The last demo's job, deleted through the controller: it sets that job's runs aside on the
  # hosts. (Removing the files alone would not do: a job without a status adopts the runs of its
  # spec, and this one would show the last demo's result without training.)
  echo "== ugro delete job demo --wait (the last demo's)"
  timeout 60 node bin/ugro.mjs delete job demo --wait
fi
epochs=${UGRO_DEMO_EPOCHS:-3}
case $epochs in '' | *[!0-9]*) echo "demo: UGRO_DEMO_EPOCHS must be a whole number" >&2; exit 2 ;; esac
echo "== ugro launch --name demo --model tiny-mlp --epochs $epochs"
ugro launch --name demo --model tiny-mlp --dataset synthetic --epochs "$epochs" --lr 0.01 --batch-size 32
for _ in $(seq 1 120); do
  phase=$(sed -n 's/^phase: //p' "$UGRO_JOBS/demo.status.yaml" 2>/dev/null || true)
  case "$phase" in Succeeded | Failed) break ;; esac
  kill -0 "$ctl" 2>/dev/null || { echo "demo: the controller exited; its log:" >&2; cat .lab/controller.log >&2; exit 1; }
  sleep 1
done
echo "== ugro get jobs -o wide"
ugro get jobs -o wide
echo "== ugro logs demo --rank 2"
ugro logs demo --rank 2
echo "== ugro results demo"
ugro results demo
[ "$phase" = Succeeded ]
