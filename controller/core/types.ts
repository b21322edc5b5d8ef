/** The inputs and outputs of the pure reconcile (decisions as data, executed by the runtime: docs/conventions.md). */

import type { Host } from '../../config/cluster.ts';
import type { ControlState } from '../api/control.ts';
import type { JobSourceInfo } from '../api/job-source.ts';
import type { SpecState } from '../api/job-state.ts';
import type { CheckpointInfo, RunPart, StopReason } from '../api/run.ts';
import type { JobStatus, Phase } from '../api/status.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import type { AuthContext } from './authorize-types.ts';
import type { Decision, Gpu } from './placement.ts';
import type { RunView } from './run-view.ts';

export interface ClusterView {
  hosts: Host[];
  /** Hosts that passed health (Ready). */
  ready: Set<string>;
  notReady: Map<string, string>;
  /** Host -> job currently holding it (a live run of another job, or a launch in flight). */
  busy: Map<string, string>;
  /** Hosts leased by another controller: host -> a sentence naming it. Never scheduled here. */
  foreign: Map<string, string>;
  usedPorts: Set<number>;
  basePort: number;
  /** GPUs per host as observed by health (index and name when known). */
  gpus: Map<string, { index?: number; name?: string; memoryTotalMiB: number }[]>;
  /** Pending jobs that come before this one (priority, then age). */
  ahead: string[];
  rdzvTimeoutSeconds: number;
  defaultGraceSeconds: number;
  /** When each host last answered (SSH keepalive or any reply), controller clock in ms. */
  lastHeard: Map<string, number>;
  /** Hosts lost or refusing connections right now: never scheduled. Host -> why. */
  down: Map<string, string>;
  /**
   * The controller's placement for this job, from one pass over the whole queue (core/placement.ts).
   * Without it (a single job, the unit tests), scheduling places this job alone.
   */
  decision?: Decision;
  /** Who preempted this job's last run, and when (controller memory). */
  preemptedBy?: { job: string; at: string };
  /**
   * spec.scaleUp: on how many nodes this running job could run now, its own GPUs counted free,
   * without preempting anyone or taking GPUs a job ahead of it waits for (undefined: no more).
   */
  growTo?: number;
}

export interface RankBatch {
  /** This rank's share of the global batch, and the index of its first sample. */
  batch: number;
  offset: number;
  micro: number;
  accum: number;
}

export interface LaunchPart {
  host: string;
  nodeRank: number;
  nproc: number;
  /** The GPUs given to this node (CUDA_VISIBLE_DEVICES); absent for a CPU host. */
  gpus?: Gpu[];
  /** Per local rank: its share of spec.batch.global (UGRO_RANK_BATCH, …). */
  batches?: RankBatch[];
}

export type Action =
  | {
      type: 'launch';
      job: string;
      runId: string;
      dir: string;
      attempt: number;
      specHash: string;
      /** The parts to start now (all of them, or the missing ones of a half-done launch). */
      parts: LaunchPart[];
      allParts: LaunchPart[];
      rdzvHost: string;
      port: number;
      createdAt: string;
      /** UGRO_RESUME_FROM for this attempt (a checkpoint name), when it resumes. */
      resumeFrom?: string;
      /** UGRO_RESTART_COUNT: restarts of this spec so far. */
      restartCount?: number;
      /** Copy this checkpoint to the new rank 0's host before launching (it is elsewhere). */
      copyCheckpoint?: { from: string; to: string; name: string };
      /** Started on idle GPUs ahead of a waiting job (that job may preempt it). */
      backfill?: boolean;
      /** spec.after: each producer's newest checkpoint (UGRO_AFTER_<NAME>_CHECKPOINT), copied where missing. */
      after?: AfterCheckpoint[];
    }
  | {
      type: 'stop';
      runId: string;
      dir: string;
      hosts: string[];
      graceSeconds: number;
      reason: StopReason;
      /** Another job's run (a preemption victim), and who preempts it. */
      job?: string;
      by?: string;
    }
  /**
   * Move a deleted job's finished run directories aside (runs/.deleted/), so the same spec applied again
   * starts afresh.
   */
  | { type: 'archive'; parts: { host: string; dir: string }[] };

export type LaunchAction = Extract<Action, { type: 'launch' }>;

/** A producer's checkpoint handed to a dependent's launch (core/steps/dependencies.ts). */
export interface AfterCheckpoint {
  /** The producer (spec.after[].job, or .sweep: its env var is named after it). */
  job: string;
  /** A sweep's best trial, whose checkpoint this is. */
  trial?: string;
  /** The checkpoint's name (file `<name>.pt`). */
  name: string;
  /** Where it is: the producer's host and checkpoint dir there. */
  from: string;
  fromDir: string;
  /** Host -> the producer's checkpoint dir on that host of the launch (the env var's directory). */
  dirs: Record<string, string>;
  /** Hosts of this launch that lack it: copied there from `from` before the launch. */
  copyTo: string[];
}

/**
 * What a job's spec.after needs to know of another job, from the loop's memory of every job
 * (loop/jobs.ts): its spec and status as last read, and its checkpoints as last observed.
 */
export interface JobFacts {
  /** Its spec as last read; absent while its file is invalid. */
  job?: TrainingJob;
  /** That spec's hash: the status counts only when it is for this hash (its current generation). */
  specHash?: string;
  phase?: Phase;
  reason?: string;
  /** The spec hash the status is for. */
  statusHash?: string;
  /** When its generation began (checkpoints older than that are not its own). */
  since?: string;
  /** Its newest complete checkpoint on each host that has one (undefined: not observed yet). */
  checkpoints?: CheckpointInfo[];
  /** Deleted while this controller ran: a dependency on it can no longer be met. */
  deleted?: true;
  /**
   * A Sweep (spec.after[].sweep), from its status: then `job`, `checkpoints` and `since` are its
   * best trial's (what a dependent is handed), and `phase` is unset.
   */
  sweep?: { phase: string; message?: string; best?: string };
}
export type StopAction = Extract<Action, { type: 'stop' }>;

export interface EventDraft {
  reason: string;
  message: string;
  type?: 'Normal' | 'Warning';
  /** The account whose request this answers (`Cancelled by ollie`), when one did. */
  actor?: string;
}

export interface ReconcileInput {
  name: string;
  now: Date;
  spec: SpecState;
  status?: JobStatus;
  control?: ControlState;
  /** Every run part of this job (launched by this controller) found on reachable hosts. */
  parts: RunPart[];
  /** Hosts that did not answer this round: host -> why. */
  unreachable: Map<string, string>;
  cluster: ClusterView;
  /** The newest complete checkpoint of this job on each host that has one. */
  checkpoints?: CheckpointInfo[];
  /**
   * The highest attempt of this job's current spec found on any host, whoever launched it (a
   * controller on another jobs dir may have left one): a new attempt never reuses its run dir.
   */
  attemptFloor?: number;
  /** GitOps: what the git source knows about this job (core/source.ts records it in the status). */
  source?: JobSourceInfo;
  /** Who may change the job (core/authorize.ts); absent: no accounts known, the owner is the annotation's. */
  auth?: AuthContext;
  /**
   * spec.after: the jobs it names and, for finding cycles, the jobs theirs name, and so on. A name
   * absent has no job (yet). Absent without spec.after.
   */
  producers?: ReadonlyMap<string, JobFacts>;
}

export interface ReconcileResult {
  /** null: remove the status file (job deleted and fully stopped). */
  status: JobStatus | null;
  actions: Action[];
  requeueAfterMs?: number;
  events: EventDraft[];
  /** The spec the steps ran on when it is not the file's (core/authorize.ts kept the accepted one). */
  spec?: SpecState;
  /**
   * A control file written by someone who may not act on the job was ignored: remove it, so it
   * stands in no one's way (its owner could otherwise keep the owner's own cancel from being written).
   */
  dropControl?: boolean;
}

/**
 * What the next step should do when this one does not end the pass (steps/observe-run.ts hands it to
 * steps/schedule-next.ts).
 */
export interface ScheduleNext {
  attempt: number;
  /** The attempt that was stopped on purpose and now resumes (suspend off, cancel withdrawn). */
  resuming?: RunView;
  /** The attempt that failed and is being restarted, and why. */
  afterFailure?: { attempt: number; what: string };
  /** Hosts of the previous attempt, still usable: preferred for the next one. */
  prefer?: string[];
  /** When this spec's first attempt was created (ms): checkpoints older than that are not its own. */
  since?: number;
}
