/**
 * What the controller tells an observer (the dashboard, /metrics, notifications: controller/observability/)
 * as it works: the job files as each reconcile read them, every status it writes (the observer
 * may add what it derived, such as the progress estimate, before it is written), the events,
 * each health round, and how long each reconcile took. The observer keeps a view of the same
 * objects the status files are written from: never a second source of truth.
 */
import type { SpecState } from '../api/job-state.ts';
import type { RunPart } from '../api/run.ts';
import type { JobStatus } from '../api/status.ts';
import type { NodeHealth } from '../backends/health.ts';
import type { JobEvent, JobStore } from '../store/store.ts';

export interface ControllerObserver {
  /** At the start of a reconcile: the spec and status as the files hold them. */
  read?(name: string, spec: SpecState, status: JobStatus | undefined): void;
  /** Just before a status is written: what to write (the same status, or one with derived fields added). */
  decorate?(name: string, status: JobStatus): JobStatus;
  /** A status written (null: the job is gone) and the events appended with it. */
  persisted?(name: string, status: JobStatus | null, events: readonly JobEvent[]): void;
  /** One health round's verdicts (all hosts, or those probed again). */
  health?(nodes: readonly NodeHealth[]): void;
  /** A reconcile of `name` ended, after `ms` milliseconds. */
  reconciled?(name: string, ms: number): void;
}

/**
 * What observability reads of the controller itself (loop/controller.ts's Controller has it): its job
 * files, each job's run parts (for the loss curves) and the work queue's depth. Declared here so that
 * observability never imports the loop.
 */
export interface ObservedController {
  readonly store: JobStore;
  partsOf(job: string): RunPart[];
  queueDepth(): { waiting: number; running: number };
}
