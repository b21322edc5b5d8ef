#!/bin/sh
# UGRO rank wrapper: torchrun --no_python runs this once per local rank. One log file per
# global rank, on the host that ran it, plus its exit code; signals reach the training process.
# launch.sh writes it into the run dir (RUN_DIR/rank.sh); it is not sent with lib.sh.
# The rank's heartbeat: the training touches it every step (the reference train.py does); its age
# is how long the rank made no progress. Created first, so a rank that never beats is seen too.
UGRO_HEARTBEAT_FILE="$UGRO_RUN_DIR/heartbeat-$RANK"
export UGRO_HEARTBEAT_FILE
: > "$UGRO_HEARTBEAT_FILE"
echo "$RANK $LOCAL_RANK ${GROUP_RANK:-} $$ $(date +%s%N)" >> "$UGRO_RUN_DIR/ranks"
# spec.batch: UGRO passes per-local-rank lists; this rank gets its own share, offset, micro batch
# and accumulation steps as plain numbers.
if [ -n "${UGRO_RANK_BATCHES:-}" ]; then
  nth() {
    _i=0
    _old=$IFS
    IFS=,
    for _v in $2; do
      [ "$_i" = "$1" ] && { IFS=$_old; ugro_nth=$_v; return 0; }
      _i=$((_i + 1))
    done
    IFS=$_old
    ugro_nth=
  }
  nth "$LOCAL_RANK" "$UGRO_RANK_BATCHES"; UGRO_RANK_BATCH=$ugro_nth
  nth "$LOCAL_RANK" "${UGRO_RANK_OFFSETS:-}"; UGRO_RANK_OFFSET=$ugro_nth
  nth "$LOCAL_RANK" "${UGRO_MICRO_BATCHES:-}"; UGRO_MICRO_BATCH=$ugro_nth
  nth "$LOCAL_RANK" "${UGRO_GRAD_ACCUMS:-}"; UGRO_GRAD_ACCUM=$ugro_nth
  export UGRO_RANK_BATCH UGRO_RANK_OFFSET UGRO_MICRO_BATCH UGRO_GRAD_ACCUM
fi
# Out of memory (UGRO's OOM failure class): the kernel's OOM killer counts each kill in the
# memory cgroup of its victim (cgroup v1 memory.oom_control, v2 memory.events: `oom_kill N`). The
# rank runs in this shell's cgroup: its count now, and again if the rank dies of SIGKILL.
oom_kills() {
  oom_n=
  oom_f=
  _cg=$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup 2>/dev/null)
  if [ -n "$_cg" ]; then
    oom_f="/sys/fs/cgroup/memory${_cg%/}/memory.oom_control"
  else
    _cg=$(sed -n 's/^0:://p' /proc/self/cgroup 2>/dev/null)
    oom_f="/sys/fs/cgroup${_cg%/}/memory.events"
  fi
  oom_n=$(sed -n 's/^oom_kill \([0-9][0-9]*\)$/\1/p' "$oom_f" 2>/dev/null)
}
oom_kills
oom_before=$oom_n
"$@" > "$UGRO_RUN_DIR/rank-$RANK.log" 2>&1 &
child=$!
# The training process itself: observe reports its state (a stopped or stuck rank shows there).
echo "$child" > "$UGRO_RUN_DIR/rank-$RANK.pid"
# told: torchrun or a stop asked this rank to end (its exit is then theirs, not its own failure).
told=
trap 'told=1; kill -TERM "$child" 2>/dev/null' TERM INT HUP
while :; do
  # (2>/dev/null: the shell's "Terminated" job notice is ours, not the training's, and would end
  # up in torchrun's log, the tail shown on failure.)
  wait "$child" 2>/dev/null; rc=$?
  kill -0 "$child" 2>/dev/null || break
done
# A failed rank's out-of-memory evidence, written before its exit code (whoever sees the exit sees
# it too), one line: KIND BATCH MICRO ACCUM EVIDENCE (`-` for a value UGRO did not give). KIND
# kernel: SIGKILL (137) and one more OOM kill in the cgroup; cuda: CUDA's out-of-memory error among
# the last 40 lines of the rank's log (a Python traceback ends with it). Not for a rank told to end
# (torchrun or a stop tears it down). 2>/dev/null: the shell may print a pending "Terminated" notice
# of the child at its next fork, which would land in torchrun's log (fake-agrees saw it 3 runs in 6).
if [ "$rc" != 0 ] && [ -z "$told" ]; then
  oom=
  if [ "$rc" = 137 ] && [ -n "$oom_before" ]; then
    oom_kills
    [ -n "$oom_n" ] && [ "$oom_n" -gt "$oom_before" ] 2>/dev/null &&
      oom="kernel the kernel's OOM killer: SIGKILL while oom_kill went $oom_before -> $oom_n in $oom_f"
  fi
  if [ -z "$oom" ]; then
    oom=$(tail -c 262144 "$UGRO_RUN_DIR/rank-$RANK.log" 2>/dev/null | tail -n 40 |
      grep -m 1 -E 'CUDA out of memory|torch\.cuda\.OutOfMemoryError|CUDA error: out of memory' | tr -d '\r' | cut -c 1-300)
    [ -z "$oom" ] || oom="cuda $oom"
  fi
  if [ -n "$oom" ]; then
    printf '%s %s %s %s %s\n' "${oom%% *}" "${UGRO_RANK_BATCH:--}" "${UGRO_MICRO_BATCH:--}" "${UGRO_GRAD_ACCUM:--}" \
      "${oom#* }" > "$UGRO_RUN_DIR/rank-$RANK.oom"
  fi
fi 2>/dev/null
echo "$rc" > "$UGRO_RUN_DIR/rank-$RANK.exit"
# A rank that failed on its own ends its torchrun now (SIGTERM: torchrun stops its other local
# ranks and exits). UGRO runs torchrun with --max_restarts=0, so that is all torchrun would do,
# but only at its next monitor look, and it would then wait in its exit barrier for every other
# node's torchrun (up to 300 s): a peer stuck in a collective held the gang until the controller's
# next look. The runner's exit wakes the controller, which stops the gang. Only torchrun is told,
# and only while it is still this shell's parent (not a reused pid): /proc/$$/stat's 4th field.
if [ "$rc" != 0 ] && [ -z "$told" ]; then
  { read -r stat < "/proc/$$/stat"; } 2>/dev/null || stat=
  set -- ${stat##*) }
  if [ "${2:-}" = "$PPID" ] && grep -qF torch.distributed.run "/proc/$PPID/cmdline" 2>/dev/null; then
    echo "ugro: rank $RANK exited with code $rc: ending torchrun (pid $PPID) now; UGRO stops the gang" >&2
    kill -TERM "$PPID" 2>/dev/null
  fi
fi
exit "$rc"
