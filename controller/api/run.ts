/**
 * Run state as the hosts keep it: one run directory per (job, spec hash, attempt) and host.
 * Everything here is read back from hosts, which any job running as the same user can write to,
 * so it is validated (`parseRunMeta`) before anything is built from it.
 */
import { z } from 'zod';
import { DNS1123_LABEL, dnsLabel } from '../../config/names.ts';

/**
 * Why UGRO stopped a run, written to the run dir's `cancelled` file by stop.sh (lib.sh's
 * ugro_stop_args accepts only these words). The typed reason decides what the stop means for the job: see `countsAs`.
 */
export const STOP_REASONS = [
  'cancelled',
  'suspended',
  'deleted',
  'spec-changed',
  'gang-failed',
  'deadline-exceeded',
  'launch-failed',
  'node-lost',
  'runner-vanished',
  'stalled',
  'preempted',
  /** Stopped at a checkpoint to restart on more nodes (spec.scaleUp). */
  'rescaled',
  /** Stopped at a checkpoint to restart with the batch split by measured speed (spec.batch.balance). */
  'rebalanced',
  /** A leftover of an older attempt found alive on a host that came back: never two generations. */
  'superseded',
  /** The rendezvous port was taken on its host when the launch got there: launched again elsewhere. */
  'port-busy',
] as const;
export type StopReason = (typeof STOP_REASONS)[number];

/** Free-text reasons written by UGRO before the typed ones, so old run dirs still read right. */
const LEGACY_REASONS: Record<string, StopReason> = {
  'spec changed': 'spec-changed',
  'gang member failed': 'gang-failed',
  'deadline exceeded': 'deadline-exceeded',
};

export function parseStopReason(text: string | undefined): StopReason | undefined {
  if (!text) return undefined;
  if ((STOP_REASONS as readonly string[]).includes(text)) return text as StopReason;
  return LEGACY_REASONS[text];
}

/**
 * A stop a person (or the scheduler) asked for, or a launch retried on another port: never a
 * failure, never counted against restarts.
 */
export function stoppedOnPurpose(reason: StopReason | undefined): boolean {
  return (
    reason === 'cancelled' ||
    reason === 'suspended' ||
    reason === 'deleted' ||
    reason === 'preempted' ||
    reason === 'rescaled' ||
    reason === 'rebalanced' ||
    reason === 'port-busy'
  );
}

const HASH8 = /^[0-9a-f]{8}$/;

/** Written to each run directory (meta.json); lets a restarted controller recover the assignment. */
export const runMetaSchema = z.strictObject({
  job: dnsLabel,
  runId: z.string().max(100),
  specHash: z.string().regex(HASH8, 'must be 8 hex digits'),
  attempt: z.number().int().min(1).max(1_000_000),
  host: dnsLabel,
  nodeRank: z.number().int().min(0).max(4095),
  nnodes: z.number().int().min(1).max(4096),
  nprocPerNode: z.number().int().min(1).max(64),
  hosts: z.array(dnsLabel).min(1).max(4096),
  rdzvEndpoint: z.string().regex(/^[A-Za-z0-9.:[\]-]+:\d{1,5}$/, 'must be ADDRESS:PORT'),
  masterPort: z.number().int().min(1).max(65535),
  createdAt: z.iso.datetime(),
  /** The controller that launched it (see hosts/lease): another controller's runs are left alone. */
  owner: z.string().max(300).optional(),
  /** The GPUs of this host the part was given (CUDA_VISIBLE_DEVICES); absent on a CPU host. */
  gpus: z
    .array(
      z.strictObject({
        index: z.number().int().min(0).max(1023),
        name: z.string().max(100),
        memoryMiB: z.number().min(0),
      }),
    )
    .max(64)
    .optional(),
  /** Started on idle GPUs ahead of a waiting job: that job may preempt it. */
  backfill: z.boolean().optional(),
});
export type RunMeta = z.output<typeof runMetaSchema>;

/** `<job>.<specHash>.<attempt>`: "." never occurs in a DNS-1123 label, so this splits cleanly. */
export function runDirName(job: string, hash: string, attempt: number): string {
  return `${job}.${hash}.${attempt}`;
}
export function runIdOf(job: string, hash: string, attempt: number): string {
  return `${job}-${hash}-a${attempt}`;
}

export function parseRunDirName(dir: string): { job: string; hash: string; attempt: number } | undefined {
  const m = /^([a-z0-9-]{1,63})\.([0-9a-f]{8})\.([1-9]\d{0,6})$/.exec(dir);
  if (!m || !DNS1123_LABEL.test(m[1])) return undefined;
  return { job: m[1], hash: m[2], attempt: Number(m[3]) };
}

/**
 * Validate a run dir's meta.json as read from `host`: schema, and agreement with the directory's
 * own name, the host it was found on and the run id UGRO derives. A job running as the same user
 * could write anything there; nothing may be built from a field that fails this.
 */
export function parseRunMeta(
  dir: string,
  host: string,
  raw: unknown,
): { ok: true; meta: RunMeta } | { ok: false; why: string } {
  const name = parseRunDirName(dir);
  if (!name) return { ok: false, why: `run dir name ${JSON.stringify(dir.slice(0, 80))} is not JOB.HASH.ATTEMPT` };
  const res = runMetaSchema.safeParse(raw);
  if (!res.success) {
    const i = res.error.issues[0];
    return { ok: false, why: `meta.json: ${i.path.join('.') || '(root)'}: ${i.message}` };
  }
  const m = res.data;
  if (m.job !== name.job || m.specHash !== name.hash || m.attempt !== name.attempt) {
    return { ok: false, why: `meta.json names ${m.job}.${m.specHash}.${m.attempt}, not its directory ${dir}` };
  }
  if (m.runId !== runIdOf(m.job, m.specHash, m.attempt))
    return { ok: false, why: `meta.json runId ${m.runId} is not ${runIdOf(m.job, m.specHash, m.attempt)}` };
  if (m.host !== host) return { ok: false, why: `meta.json says host ${m.host}, found on ${host}` };
  if (m.nnodes !== m.hosts.length || m.nodeRank >= m.nnodes || m.hosts[m.nodeRank] !== host) {
    return { ok: false, why: 'meta.json: nodeRank, nnodes and hosts do not agree' };
  }
  return { ok: true, meta: m };
}

export interface RankObservation {
  rank: number;
  localRank: number;
  pid: number;
  exitCode?: number;
  exitedAt?: number;
  logTail?: string[];
  /** Seconds since the rank last touched UGRO_HEARTBEAT_FILE (or since it started), by the host's clock. */
  heartbeatAgeS?: number;
  /** The training process's state letter (/proc/PID/stat): T when stopped. */
  procState?: string;
  /** It ran out of memory, as its rank.sh saw it (rank-N.oom): see RankOom. */
  oom?: RankOom;
}

/**
 * Out-of-memory evidence of one rank (rank.sh writes it when the rank fails): `kernel`, it died of
 * SIGKILL while its memory cgroup's oom_kill count rose; `cuda`, CUDA's out-of-memory error is in
 * the tail of its log. With the batch values UGRO gave it (absent without spec.batch).
 */
export interface RankOom {
  kind: 'kernel' | 'cuda';
  /** What showed it: the counter's move, or the log line. */
  evidence: string;
  batch?: number;
  micro?: number;
  accum?: number;
}

/**
 * A run submitted to a batch system (Slurm) as that system reports it: shown in status. What the
 * reconcile decides on is in RunPart's generic fields (`alive`, `exitCode`, `waiting`, `ended`).
 */
export interface SlurmJobView {
  /** Slurm's job id (digits; an array or het job is never submitted by UGRO). */
  jobId: string;
  /** JobState as squeue/sacct print it (PENDING, RUNNING, COMPLETED, FAILED, …), or UNKNOWN. */
  state: string;
  /** Slurm's reason (PENDING: Resources, Priority…; ended: NonZeroExitCode, TimeLimit…). */
  reason?: string;
  /** The allocation's nodes (Slurm's hostlist expression, as printed). */
  nodes?: string;
  /** How often Slurm requeued it (node failure, preemption). */
  restarts?: number;
}

/** One host's part of one run, as observed there. */
export interface RunPart {
  dir: string;
  host: string;
  meta: RunMeta;
  pid?: number;
  alive: boolean;
  exitCode?: number;
  /** Why UGRO stopped it, if it did. */
  stopReason?: StopReason;
  launchedAtMs?: number;
  finishedAtMs?: number;
  ranks: RankObservation[];
  agentLogTail: string[];
  metrics?: Metrics;
  /**
   * Alive but waiting in a backend's own queue (Slurm PENDING), with that backend's reason: the
   * job is Queued, not Starting.
   */
  waiting?: { reason: string; message: string };
  /**
   * Ended for a reason the backend reports itself (Slurm NODE_FAIL, TIMEOUT, OUT_OF_MEMORY, a
   * cancel from outside UGRO, a job Slurm forgot): classified as such, not from the exit code.
   */
  ended?: { class: 'infra' | 'training'; reason: string; message: string; final?: boolean };
  /** Set for a run submitted to Slurm: what Slurm says about it (status shows it). */
  slurm?: SlurmJobView;
}

/** The newest complete checkpoint of a job on one host (its `latest` index), as observed there. */
export interface CheckpointInfo {
  host: string;
  /** The checkpoint name (file `<name>.pt` in the job's checkpoint dir), e.g. step-400. */
  name: string;
  /** The step in the name, when it has one (step-N). */
  step?: number;
  sizeBytes: number;
  /** When it was written, by the host's clock. */
  mtimeMs: number;
}

/** The last metrics line a rank wrote; only flat, small, printable values survive validation. */
export type Metrics = Record<string, number | string | boolean>;

/** How a value that is not a finite number is kept in a metrics line (Python's json writes these bare). */
export const NON_FINITE = ['NaN', 'Infinity', '-Infinity'] as const;

/** Whether a metrics value says its number was not finite (a diverged loss). */
export function isNonFinite(v: unknown): boolean {
  return (typeof v === 'number' && !Number.isFinite(v)) || (NON_FINITE as readonly unknown[]).includes(v);
}

/**
 * One host-written metrics line, parsed and sanitized; undefined when it is not a JSON object.
 * Python's json.dumps writes a NaN loss as a bare `NaN` (not JSON): such tokens outside strings
 * are read as the strings "NaN", "Infinity", "-Infinity", so a diverged step is seen, not dropped.
 */
export function metricsOfLine(text: string): Metrics | undefined {
  try {
    return sanitizeMetrics(JSON.parse(text));
  } catch {
    if (!/NaN|Infinity/.test(text)) return undefined;
    try {
      return sanitizeMetrics(JSON.parse(quoteNonFinite(text)));
    } catch {
      return undefined;
    }
  }
}

/** `text` with each bare NaN, Infinity and -Infinity outside a string quoted. */
function quoteNonFinite(text: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    const tok = NON_FINITE.find((t) => text.startsWith(t, i));
    if (tok) {
      out += `"${tok}"`;
      i += tok.length;
      continue;
    }
    out += c;
    i++;
  }
  return out;
}

/** Keep what is safe to store and show from a host-written metrics line; drop the rest. */
export function sanitizeMetrics(raw: unknown): Metrics | undefined {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const out: Metrics = {};
  let n = 0;
  for (const [k, v] of Object.entries(raw)) {
    if (n >= 32 || !/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/.test(k)) continue;
    if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
    else if (typeof v === 'boolean') out[k] = v;
    else if (typeof v === 'string') out[k] = v.slice(0, 200);
    else continue;
    n++;
  }
  return n ? out : undefined;
}
