/**
 * Test helpers (not a stand-in): valid RunMeta values and the stand-in "torchrun" used where the
 * real scripts run (LocalTransport, the lab): a sh script that starts ranks through the run's
 * real rank.sh and lets the test end each rank with a code by writing a control file.
 */
import { type RunMeta, runDirName, runIdOf } from '../../controller/api/run.ts';

/** observe.sh's why= for a directory name that cannot be a run dir's. */
export const REJECTED_NAME = 'directory name has bytes outside [a-z0-9.-] or starts with -';

/** A meta.json that parseRunMeta accepts for `<job>.<hash>.<attempt>` on `host` (a one-node run by default). */
export function metaFor(
  host: string,
  job = 'train',
  hash = 'abcd1234',
  attempt = 1,
  over: Partial<RunMeta> = {},
): RunMeta {
  return {
    job,
    runId: runIdOf(job, hash, attempt),
    specHash: hash,
    attempt,
    host,
    nodeRank: 0,
    nnodes: 1,
    nprocPerNode: 1,
    hosts: [host],
    rdzvEndpoint: '127.0.0.1:29500',
    masterPort: 29500,
    createdAt: '2026-03-01T10:00:00.000Z',
    ...over,
  };
}

/** dir, runId and meta of one run of `job` on `host`. */
export function runOf(host: string, job: string, hash = 'abcd1234', attempt = 1) {
  return {
    dir: runDirName(job, hash, attempt),
    runId: runIdOf(job, hash, attempt),
    meta: metaFor(host, job, hash, attempt),
  };
}

/**
 * A stand-in for torchrun, run as `sh -c STANDIN_TORCHRUN torchrun CTL NRANKS [ignore-term]`:
 * starts NRANKS ranks through "$UGRO_RUN_DIR/rank.sh" (RANK=LOCAL_RANK=i, GROUP_RANK=0), each
 * of which waits for CTL/exit-<rank>, prints CTL/log-<rank> and exits with the code in it;
 * then exits with CTL/exit-run (0 when absent). With ignore-term, it and its ranks ignore SIGTERM
 * (a signal ignored on entry cannot be trapped, so rank.sh cannot forward it either).
 */
export const STANDIN_TORCHRUN = `
ctl=$1 n=$2
[ "\${3:-}" = ignore-term ] && trap '' TERM
r=0
while [ "$r" -lt "$n" ]; do
  RANK=$r LOCAL_RANK=$r GROUP_RANK=0 "$UGRO_RUN_DIR/rank.sh" sh -c '
    while [ ! -f "$1/exit-$RANK" ]; do sleep 0.05; done
    cat "$1/log-$RANK" 2>/dev/null
    exit "$(cat "$1/exit-$RANK")"' rank "$ctl" &
  r=$((r + 1))
done
wait 2>/dev/null
exit "$(cat "$ctl/exit-run" 2>/dev/null || echo 0)"
`;

/** torchrun's argv for the stand-in. */
export function standinArgv(ctl: string, ranks: number, ignoreTerm = false): string[] {
  return ['sh', '-c', STANDIN_TORCHRUN, 'torchrun', ctl, String(ranks), ...(ignoreTerm ? ['ignore-term'] : [])];
}
