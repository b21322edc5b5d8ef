/**
 * PURE: what Slurm says about a job (squeue, sacct, the run dir's own files) mapped onto the
 * RunPart every backend reports, so the reconcile decides for a Slurm run exactly as for an SSH
 * one: alive while Slurm runs (or will run) it, `waiting` while it is PENDING (Queued, with
 * Slurm's reason), an exit code when it ended, and `ended` when Slurm's own state says why
 * (NODE_FAIL, TIMEOUT, OUT_OF_MEMORY, a cancel from outside UGRO, a job Slurm forgot).
 *
 * squeue's and sacct's output is read like every other host output: bounded, field by field,
 * nothing trusted (a job name can hold anything; it comes last and is only compared).
 */
import type { RankObservation, RunPart, SlurmJobView } from '../../api/run.ts';
import { field, fieldsOf, parseRecords, type RecordBlock } from '../records.ts';

export interface SlurmRow {
  jobId: string;
  /** JobState (a sacct state like "CANCELLED by 1000" is cut to its first word). */
  state: string;
  reason?: string;
  nodes?: string;
  /** squeue only: the job name (the run id for UGRO's jobs). */
  name?: string;
  /** sacct only: ExitCode's first number. */
  exitCode?: number;
  /** sacct only: ExitCode's signal. */
  signal?: number;
}

export interface SlurmSnapshot {
  /** squeue's rows by job id. */
  byId: Map<string, SlurmRow>;
  /** Job ids by name (a submit cut short before it wrote the id is found by the run id). */
  byName: Map<string, string>;
  /** When it was asked (controller clock, ms). */
  at: number;
  /** squeue failed (slurmctld down?): no job's absence means anything. */
  error?: string;
  /** Bytes squeue's answer took (for the benchmark). */
  bytes: number;
}

const JOB_ID = /^\d{1,12}$/;
const STATE = /^[A-Z_]{2,32}$/;

/** Slurm states in which the job still is, or will again be, Slurm's to run. */
const LIVE_STATES = new Set([
  'PENDING',
  'CONFIGURING',
  'RUNNING',
  'COMPLETING',
  'SUSPENDED',
  'REQUEUED',
  'REQUEUE_HOLD',
  'REQUEUE_FED',
  'RESIZING',
  'SIGNALING',
  'STAGE_OUT',
  'STOPPED',
  'RESV_DEL_HOLD',
]);

/** Live, but not running anything: the job waits in Slurm's queue (Queued here). */
const WAITING_STATES = new Set(['PENDING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'SUSPENDED', 'STOPPED']);

const clip = (s: string | undefined, n: number) => (s === undefined ? undefined : s.slice(0, n));

/** One `ID|STATE|REASON|NODES|NAME` row of slurm/squeue.sh. */
function squeueRow(line: string): SlurmRow | undefined {
  const w = line.split('|');
  if (w.length < 5) return undefined;
  const [jobId, state, reason, nodes] = w;
  if (!JOB_ID.test(jobId) || !STATE.test(state)) return undefined;
  return {
    jobId,
    state,
    ...(reason && reason !== 'None' ? { reason: clip(reason, 512) } : {}),
    ...(nodes && nodes !== '(null)' ? { nodes: clip(nodes, 4096) } : {}),
    name: clip(w.slice(4).join('|'), 300),
  };
}

/** One `ID|STATE|EXITCODE|NODES` row of `sacct --parsable2`. */
function sacctRow(line: string): SlurmRow | undefined {
  const w = line.split('|');
  if (w.length < 4) return undefined;
  const [jobId, stateText, exit, nodes] = w;
  const state = stateText.split(' ')[0];
  if (!JOB_ID.test(jobId) || !STATE.test(state)) return undefined;
  const m = /^(\d{1,3}):(\d{1,3})$/.exec(exit);
  return {
    jobId,
    state,
    ...(stateText !== state ? { reason: clip(stateText, 512) } : {}),
    ...(nodes && nodes !== 'None assigned' ? { nodes: clip(nodes, 4096) } : {}),
    ...(m ? { exitCode: Number(m[1]), signal: Number(m[2]) } : {}),
  };
}

/** slurm/squeue.sh's answer. */
export function snapshotOf(text: string, at: number): { snapshot: SlurmSnapshot; sacct: Map<string, SlurmRow> } {
  const blocks = parseRecords(text);
  const snapshot: SlurmSnapshot = { byId: new Map(), byName: new Map(), at, bytes: Buffer.byteLength(text) };
  const sacct = new Map<string, SlurmRow>();
  const err = blocks.find((b) => b.kind === 'error');
  const sq = blocks.find((b) => b.kind === 'squeue' && b.complete);
  if (err || !sq) {
    snapshot.error = err ? (field(err, 'why') ?? 'squeue failed') : 'squeue gave no answer';
    return { snapshot, sacct };
  }
  const rows = fieldsOf(sq, 'row');
  if (field(sq, 'rc') !== '0') {
    snapshot.error = `squeue failed (exit ${field(sq, 'rc')}): ${rows.slice(-3).join(' | ') || 'no output'}`;
    return { snapshot, sacct };
  }
  for (const line of rows) {
    const r = squeueRow(line);
    if (!r) continue;
    snapshot.byId.set(r.jobId, r);
    if (r.name) snapshot.byName.set(r.name, r.jobId);
  }
  const sa = blocks.find((b) => b.kind === 'sacct' && b.complete);
  if (sa && field(sa, 'rc') === '0') {
    for (const line of fieldsOf(sa, 'row')) {
      const r = sacctRow(line);
      if (r) sacct.set(r.jobId, r);
    }
  }
  return { snapshot, sacct };
}

/** slurm/observe.sh's @@slurm DIR block: the run dir's Slurm files. */
export interface SlurmFiles {
  jobId?: string;
  rdzv?: string;
  /** The last lines of the Slurm output and a failed node's torchrun log (when the batch failed). */
  out: string[];
}

export function slurmFilesOf(b: RecordBlock): SlurmFiles {
  const id = field(b, 'job_id')?.trim();
  const rdzv = field(b, 'rdzv')?.trim();
  return {
    ...(id && JOB_ID.test(id) ? { jobId: id } : {}),
    ...(rdzv && /^[A-Za-z0-9.:[\]-]{1,300}:\d{1,5}$/.test(rdzv) ? { rdzv } : {}),
    out: fieldsOf(b, 'out')
      .slice(-40)
      .map((l) => l.slice(0, 2000)),
  };
}

/**
 * The part as Slurm shows it. `part` is what observe.sh read from the run dir (ranks, rank exits
 * and logs, metrics, the exit code the batch script recorded, UGRO's stop reason); `row` is
 * squeue's (or sacct's) line for its job, undefined when neither lists it.
 */
export function slurmPart(part: RunPart, files: SlurmFiles, row: SlurmRow | undefined): RunPart {
  // No runner pid here: the run lives on the compute nodes, and a pid read on the login host
  // would be some other process's (so would a process state).
  const { pid: _pid, ...rest } = part;
  const ranks: RankObservation[] = part.ranks.map(({ procState: _s, ...r }) => r);
  const out: RunPart = { ...rest, ranks };
  if (files.rdzv) out.meta = { ...part.meta, rdzvEndpoint: files.rdzv };
  if (files.out.length && !out.agentLogTail.length) out.agentLogTail = files.out.slice(-20);
  const id = files.jobId ?? row?.jobId;
  if (!id) {
    // meta.json is written only after sbatch gave an id: a dir without one lost it.
    return { ...out, alive: false, ...lost(part, 'its Slurm job id is missing from the run directory') };
  }
  const view: SlurmJobView = {
    jobId: id,
    state: row?.state ?? 'UNKNOWN',
    ...(row?.reason ? { reason: row.reason } : {}),
    ...(row?.nodes ? { nodes: row.nodes } : {}),
  };
  out.slurm = view;
  if (!row) {
    // Slurm forgot it (squeue keeps ended jobs for MinJobAge, 300 s by default). What the batch
    // script recorded decides; without that, the run is lost (as a runner that vanished).
    if (part.exitCode !== undefined) return { ...out, alive: false };
    return {
      ...out,
      alive: false,
      ...lost(
        part,
        `Slurm no longer lists job ${id} and it recorded no exit code ` +
          '(squeue forgets ended jobs after MinJobAge: set slurm.accounting for sacct, or look in slurmctld.log)',
      ),
    };
  }
  const s = row.state;
  if (LIVE_STATES.has(s)) {
    if (WAITING_STATES.has(s)) {
      const why = row.reason ? ` (${row.reason})` : '';
      const message =
        s === 'PENDING' ? `Slurm job ${id} is PENDING${why}` : `Slurm job ${id} is ${s}${why}: waiting to run again`;
      // Nothing of it runs: rank files are from a try Slurm requeued.
      return { ...out, alive: true, ranks: [], waiting: { reason: 'SlurmPending', message } };
    }
    return { ...out, alive: true };
  }
  // Ended. The batch script's own exit code is the truth when it wrote one.
  const code = part.exitCode ?? row.exitCode ?? (s === 'COMPLETED' ? 0 : s === 'CANCELLED' ? 143 : 1);
  const done: RunPart = { ...out, alive: false, exitCode: code };
  const ended = endedBy(s, id, row, part);
  return ended ? { ...done, ended } : done;
}

function lost(part: RunPart, why: string): Pick<RunPart, 'ended' | 'exitCode'> {
  if (part.stopReason) return { exitCode: part.exitCode ?? 137 };
  return { exitCode: part.exitCode ?? 1, ended: { class: 'infra', reason: 'SlurmJobLost', message: why } };
}

/** Slurm's own reason for the end, where the exit code alone would mislead. */
function endedBy(state: string, id: string, row: SlurmRow, part: RunPart): RunPart['ended'] | undefined {
  const on = row.nodes ? ` on ${row.nodes}` : '';
  switch (state) {
    case 'COMPLETED':
      return undefined;
    case 'FAILED': {
      // A rank that failed says more (its exit code and log): the reconcile names it.
      if (part.ranks.some((r) => r.exitCode !== undefined && r.exitCode !== 0)) return undefined;
      const why = row.reason ? ` (${row.reason})` : '';
      return {
        class: 'training',
        reason: 'SlurmJobFailed',
        message: `Slurm job ${id} FAILED${why}${on} with no rank reporting a failure: see the log tail`,
      };
    }
    case 'CANCELLED':
      // UGRO's own stop (its reason is in the run dir) is the reconcile's to read.
      if (part.stopReason) return undefined;
      return {
        class: 'training',
        reason: 'CancelledInSlurm',
        message: `Slurm job ${id} was cancelled outside UGRO (scancel, or an administrator): not restarted`,
        final: true,
      };
    case 'TIMEOUT':
      return {
        class: 'training',
        reason: 'SlurmTimeLimit',
        message: `Slurm job ${id} reached its time limit${on} (--time from activeDeadlineSeconds, or the partition's)`,
        final: true,
      };
    case 'DEADLINE':
      return {
        class: 'training',
        reason: 'SlurmDeadline',
        message: `Slurm job ${id} passed its deadline`,
        final: true,
      };
    case 'NODE_FAIL':
      return { class: 'infra', reason: 'SlurmNodeFail', message: `a node of Slurm job ${id} failed${on} (NODE_FAIL)` };
    case 'BOOT_FAIL':
      return { class: 'infra', reason: 'SlurmBootFail', message: `the nodes of Slurm job ${id} failed to boot${on}` };
    case 'PREEMPTED':
      return { class: 'infra', reason: 'SlurmPreempted', message: `Slurm preempted job ${id}${on}` };
    case 'OUT_OF_MEMORY':
      return {
        class: 'training',
        reason: 'OutOfMemory',
        message: `Slurm job ${id} ran out of memory${on} (OUT_OF_MEMORY: raise --mem with slurm.sbatch, or use less)`,
      };
    default:
      return {
        class: 'infra',
        reason: 'SlurmJobEnded',
        message: `Slurm job ${id} ended as ${state}${row.reason ? ` (${row.reason})` : ''}`,
      };
  }
}
