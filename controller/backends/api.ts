/**
 * What the controller (and the CLI) need from a backend, as small roles: each caller takes the roles it
 * uses (leases HostLease, liveness Reachability, the dashboard LogReader and MetricsReader, …) and a
 * backend implements them all (Backend). Backends live in their own folders (ssh/, slurm/); router.ts
 * picks one per host. Nothing here names a backend: requests carry the job and plain data, and each
 * backend turns them into what it runs.
 */
import type { Host } from '../../config/cluster.ts';
import {
  type CheckpointInfo,
  type Metrics,
  type RunMeta,
  type RunPart,
  STOP_REASONS,
  type StopReason,
} from '../api/run.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import { HostError } from './errors.ts';
import type { NodeHealth } from './health.ts';

export interface LaunchRequest {
  /** Run dir name (`<job>.<hash>.<attempt>`) under the host's paths.runs. */
  dir: string;
  /** Rendezvous address: launch.sh picks the network interface that routes to it. */
  rdzvAddr: string;
  meta: RunMeta;
  /** torchrun's argv (python -m torch.distributed.run …), for a backend that starts torchrun on the host. */
  argv: string[];
  /**
   * What a backend that places the ranks itself (Slurm) plans from; the loop always sends it, and
   * such a backend refuses a launch without it.
   */
  training?: TrainingRequest;
  /** UGRO_* and torch-facing variables UGRO sets. */
  ugroEnv: Record<string, string>;
  /** The job's own spec.env: applied to the training process only, never to launch.sh itself. */
  jobEnv: Record<string, string>;
  /** On the rendezvous host of a fresh launch: refuse (PortBusy) if this TCP port is listening. */
  checkPort?: number;
}

export interface TrainingRequest {
  /** The job as applied. */
  job: TrainingJob;
  /** The training command alone (python script args…): the backend wraps its own launcher around it. */
  target: string[];
  /** How long torchrun's rendezvous may wait for the other nodes, seconds. */
  rdzvTimeoutSeconds: number;
}

export interface StopRequest {
  dir: string;
  runId: string;
  graceSeconds: number;
  reason: StopReason;
}

/** Longest grace a stop may ask for: a day. */
const MAX_GRACE_SECONDS = 86_400;

/**
 * A stop request checked before anything reaches a host (either backend): a known reason and a
 * grace in range. Its grace in whole milliseconds, the only form the scripts take.
 */
export function stopGraceMs(host: Host, req: StopRequest): number {
  if (!(STOP_REASONS as readonly string[]).includes(req.reason))
    throw new HostError(host.name, 'config', `stop of ${req.dir}: ${JSON.stringify(req.reason)} is not a stop reason`);
  if (!(Number.isFinite(req.graceSeconds) && req.graceSeconds >= 0 && req.graceSeconds <= MAX_GRACE_SECONDS))
    throw new HostError(host.name, 'config', `stop of ${req.dir}: grace ${req.graceSeconds} s is out of range`);
  return Math.round(req.graceSeconds * 1000);
}

export interface ObserveResult {
  parts: RunPart[];
  /** The job's newest complete checkpoint on this host (when a checkpoint dir was given). */
  checkpoint?: CheckpointInfo;
  /** Run dirs that failed validation (hostile or torn meta.json): ignored, reported for the log. */
  rejected: { dir: string; why: string }[];
}

export interface LeaseResult {
  held: boolean;
  /** The owner recorded on the host (another controller's, when not held). */
  owner?: string;
  /** Seconds until that lease expires, by the host's clock. */
  expiresInSeconds?: number;
}

/** Run parts on a host: what runs there, start one, stop one, archive one that ended. */
export interface RunControl {
  /** Run dirs (of `job`), and with `checkpointDir` the job's newest complete checkpoint there. */
  observe(host: Host, job?: string, checkpointDir?: string): Promise<ObserveResult>;
  /** Throws a HostError whose message says why (PortBusy: `kind: 'port-busy'`). */
  launch(host: Host, req: LaunchRequest): Promise<{ pid: number; existed: boolean }>;
  stop(host: Host, req: StopRequest): Promise<{ remaining: number; killed: boolean }>;
  /** Move a run dir to `<runs>/.deleted/<dir>.<nowMs>`; prune entries older than keepDays. */
  archive(host: Host, dir: string, nowMs: number, keepDays?: number): Promise<void>;
}

export interface RunWaiter {
  /** Resolves when the run's runner on this host has exited, or the signal aborts. */
  wait(host: Host, dir: string, signal: AbortSignal): Promise<void>;
}

export interface HostLease {
  /** Take or renew this controller's lease on the host (or release it). */
  lease(host: Host, owner: string, ttlSeconds: number, release?: boolean): Promise<LeaseResult>;
}

export interface Reachability {
  /** When the host last said anything (keepalive replies included), ms since the epoch; undefined if never. */
  lastHeard(host: Host): number | undefined;
  /** Connect if not connected (nothing is run): resolves when the host answers, throws why not. */
  reach(host: Host): Promise<void>;
}

export interface HealthProbe {
  /** Never throws: an unreachable host is NotReady with the reason. */
  probe(host: Host): Promise<NodeHealth>;
}

export interface ScriptDeploy {
  /** Deploy `localDir` to the host's paths.scripts when its content hash differs; true if uploaded. */
  syncScripts(host: Host, localDir: string, hash: string): Promise<boolean>;
}

export interface CheckpointCopy {
  /**
   * Copy checkpoint `name` (`<dir>/<name>.pt`) from one host's checkpoint dir to another's,
   * verified: the SHA-256 streamed through must equal sha256sum on both ends.
   */
  copyCheckpoint(
    from: Host,
    fromDir: string,
    to: Host,
    toDir: string,
    name: string,
    onProgress?: (bytes: number) => void,
  ): Promise<{ bytes: number; sha256: string }>;
}

/** A checkpoint file in a job's checkpoint dir on one host (checkpoints.sh list). */
export interface CheckpointFile {
  /** The file is `<name>.pt`. */
  name: string;
  /** From a `step-N` name. */
  step?: number;
  sizeBytes: number;
  /** By the host's clock. */
  mtimeMs: number;
  /** When asked for (computed once per file on the host, then cached beside it). */
  sha256?: string;
}

/** A run dir of the job on that host, with the metrics line at (or nearest before) each checkpoint step. */
export interface CheckpointRun {
  dir: string;
  launchedAtMs?: number;
  finishedAtMs?: number;
  metrics: { step: number; metrics: Metrics }[];
}

export interface CheckpointListing {
  /** The checkpoint dir exists on the host. */
  present: boolean;
  /** What its `latest` index names (the newest complete one, what a restart resumes from). */
  latest?: string;
  files: CheckpointFile[];
  /** Only when the listing was asked for a job's runs. */
  runs: CheckpointRun[];
}

/** A job's checkpoint files on a host: list them (with their sums, the metrics at their steps), delete some. */
export interface CheckpointStore {
  listCheckpoints(
    host: Host,
    dir: string,
    opts?: { sha256?: boolean; runsOf?: string; signal?: AbortSignal },
  ): Promise<CheckpointListing>;
  /** Removes `<dir>/<name>.pt` for each name (never the one `latest` names); what was removed, with its size. */
  deleteCheckpoints(host: Host, dir: string, names: readonly string[]): Promise<{ name: string; sizeBytes: number }[]>;
}

export interface LogReader {
  /** A rank's log: whole, or the last `tail` lines; `offset` is the byte size read (for follow). */
  readLog(host: Host, dir: string, rank: number, tail?: number): Promise<{ text: string; offset: number }>;
  /**
   * Stream a rank's log from byte `offset` until the run's runner exits (or `signal` aborts);
   * resolves with the new offset.
   */
  followLog(
    host: Host,
    dir: string,
    rank: number,
    offset: number,
    onData: (b: Buffer) => void,
    signal?: AbortSignal,
  ): Promise<number>;
}

/** Optional: a backend without it has no metrics history (the dashboard says so). */
export interface MetricsReader {
  /**
   * The metrics lines (metrics.jsonl) of a run part from byte `offset`: each line parsed and
   * sanitized (undefined for a line that is not a JSON object), and the offset to read on from.
   */
  readMetrics?(host: Host, dir: string, offset: number): Promise<MetricsChunk>;
}

/** Optional: a backend without it reports progress with its observe (Slurm). */
export interface ProgressReader {
  /**
   * The newest metrics line of each of these run dirs, in one exec: only for those whose metrics
   * file changed since `sig` (what the last reading of that dir returned; absent: never read).
   */
  readProgress?(host: Host, runs: readonly ProgressAsk[], signal?: AbortSignal): Promise<ProgressRead[]>;
}

/** Every role: what a backend implements, and what the router offers over all of them. */
export interface Backend
  extends RunControl,
    RunWaiter,
    HostLease,
    Reachability,
    HealthProbe,
    ScriptDeploy,
    CheckpointCopy,
    CheckpointStore,
    LogReader,
    MetricsReader,
    ProgressReader {}

/** A run dir to read the progress of, and the signature of its metrics file as last read. */
export interface ProgressAsk {
  dir: string;
  sig?: string;
}

/** A run dir whose metrics file changed: its new signature and its last line (if it is one). */
export interface ProgressRead {
  dir: string;
  sig: string;
  /** Undefined when the last line is not a metrics object (half written, or not JSON). */
  metrics?: Metrics;
}

export interface MetricsChunk {
  lines: (Metrics | undefined)[];
  /** Read on from here next time. */
  next: number;
  /** The file's size: more than `next` when the read was capped (call again at once). */
  size: number;
}
