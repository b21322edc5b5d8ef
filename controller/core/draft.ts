/**
 * The status being built by one reconcile: conditions, events and actions gathered by the steps,
 * and `finish` to end the pass. Pure: a value built and returned, nothing done.
 */
import type { StopReason } from '../api/run.ts';
import { type Condition, type JobStatus, type Phase, setCondition } from '../api/status.ts';
import { type RunView, runAlive } from './run-view.ts';
import type { Action, EventDraft, ReconcileInput, ReconcileResult } from './types.ts';

export class Draft {
  readonly now: string;
  readonly actions: Action[] = [];
  readonly events: EventDraft[] = [];
  conditions: Condition[];
  /** The status under construction (for a valid spec). */
  status: JobStatus;

  constructor(readonly input: ReconcileInput) {
    this.now = input.now.toISOString();
    const prev = input.status;
    this.conditions = prev?.conditions ?? [];
    this.status = {
      phase: prev?.phase ?? 'Queued',
      observedGeneration: prev?.observedGeneration ?? 0,
      specHash: prev?.specHash,
      attempt: prev?.attempt ?? 0,
      nodes: [],
      createdAt: prev?.createdAt ?? this.now,
      conditions: this.conditions,
      // Kept while the spec is unchanged, so a Suspended/Cancelled job's time does not creep forward.
      ...(prev?.completionTime ? { completionTime: prev.completionTime } : {}),
      ...(prev?.restarts ? { restarts: prev.restarts } : {}),
      ...(prev?.failures ? { failures: prev.failures } : {}),
      ...(prev?.nextRetryAt ? { nextRetryAt: prev.nextRetryAt } : {}),
      ...(prev?.batchOverrides ? { batchOverrides: prev.batchOverrides } : {}),
      // A copy: the balance step replaces its fields (core/steps/at-checkpoint.ts).
      ...(prev?.balance ? { balance: { ...prev.balance } } : {}),
    };
  }

  get prev(): JobStatus | undefined {
    return this.input.status;
  }

  cond(type: string, status: Condition['status'], reason: string, message: string): void {
    this.conditions = setCondition(this.conditions, { type, status, reason, message }, this.now);
  }

  event(reason: string, message: string, type: EventDraft['type'] = 'Normal'): void {
    this.events.push({ reason, message, type });
  }

  /**
   * Stop whatever of `run` is alive (nothing if nothing is). A part whose runner vanished without
   * an exit code is stopped too: its torchrun and ranks may live on as orphans (stop.sh finds them
   * by their UGRO_RUN_ID marker).
   */
  stop(run: RunView, reason: StopReason, graceSeconds = this.input.cluster.defaultGraceSeconds): void {
    const hosts = run.parts
      .filter((p) => p.alive || (p.pid !== undefined && p.exitCode === undefined && !p.stopReason))
      .filter((p) => !this.input.unreachable.has(p.host))
      .map((p) => p.host);
    if (hosts.length) this.actions.push({ type: 'stop', runId: run.runId, dir: run.dir, hosts, graceSeconds, reason });
  }

  /** End the pass with this phase; an event when phase or reason changed. */
  finish(phase: Phase, reason: string, message: string, requeueAfterMs?: number): ReconcileResult {
    const s = this.status;
    s.phase = phase;
    s.reason = reason;
    s.message = message;
    s.conditions = this.conditions;
    if (this.prev?.phase !== phase || this.prev?.reason !== reason) {
      this.events.push({ reason, message, type: phase === 'Failed' ? 'Warning' : 'Normal' });
    }
    return { status: s, actions: this.actions, requeueAfterMs, events: this.events };
  }

  /** Requeue soon while something of `run` is still alive. */
  static whileAlive(run: RunView | undefined, ms = 1000): number | undefined {
    return run && runAlive(run) ? ms : undefined;
  }
}
