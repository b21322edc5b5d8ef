/**
 * The sweeps' part of the loop: for each sweep, read its file (store.readSweep), its last status
 * and its trials' files and statuses, read the objective at the rungs a trial crossed (its
 * metrics over the backend, loop/sweep-metrics.ts), let core/sweep.ts decide, then write the
 * trial files and the sweep's status (atomic) and log its events. The trials themselves are
 * TrainingJobs: the job reconciler runs them like any other (the watch sees each file written).
 *
 * Level-triggered like the jobs: a pass reads everything it needs. Passes run one at a time, every
 * tick (1 s) for the sweeps still going, and at once when a watch event names a sweep or a trial;
 * a finished sweep is looked at again only when one of its files changes, or at a resync.
 */

import type { JobSource } from '../api/job-source.ts';
import { isNonFinite } from '../api/run.ts';
import { GENERATION_ANNOTATION, PARAMS_ANNOTATION, type ParamSet, SWEEP_LABEL, type SweepState } from '../api/sweep.ts';
import type { SweepStatus } from '../api/sweep-status.ts';
import { specHash } from '../api/trainingjob.ts';
import { decideSweep, type SweepDecision, type TrialFacts } from '../core/sweep.ts';
import { parseTrialName } from '../core/sweep-params.ts';
import { rungValues } from '../core/sweep-stopping.ts';
import { SweepFiles } from '../store/sweeps.ts';
import type { LoopContext } from './context.ts';
import { TrialMetrics } from './sweep-metrics.ts';
import { authorizeSweep, type SweepAuth } from './sweep-owner.ts';

export class SweepLoop {
  readonly files: SweepFiles;
  private readonly metrics: TrialMetrics;
  /** Sweeps with a file or a status. */
  private readonly known = new Set<string>();
  /** Finished (or invalid) sweeps: no pass until one of their files changes. */
  private readonly settled = new Set<string>();
  private running?: Promise<void>;
  private again = false;
  /** The whole-spec hash last kept in .ugro/accepted/ per sweep (written once per accepted change). */
  private readonly kept = new Map<string, string>();

  constructor(
    private readonly ctx: LoopContext,
    /** GitOps: who signed a sweep's file (its owner comes from there). */
    private readonly source?: JobSource,
  ) {
    this.files = new SweepFiles(ctx.store.dir);
    this.metrics = new TrialMetrics(ctx.runtime, (n) => ctx.host(n));
  }

  /** Every sweep in the jobs dir (at start and at each resync): the settled ones are looked at once more. */
  async discover(): Promise<void> {
    const { specs } = await this.ctx.store.listNames();
    for (const n of specs) if ((await this.ctx.store.readSweep(n)).kind !== 'deleted') this.known.add(n);
    for (const n of await this.files.statusNames()) this.known.add(n);
    this.settled.clear();
    this.kick();
  }

  /** A watch event named `name`: a sweep's file, or a trial's (its sweep looks again). */
  async touched(name: string): Promise<void> {
    for (const s of this.known)
      if (s === name || parseTrialName(s, name)) {
        this.settled.delete(s);
        void this.kick();
        return;
      }
    const r = await this.ctx.store.readSweep(name).catch(() => ({ kind: 'deleted' }) as const);
    if (r.kind === 'deleted') return;
    this.known.add(name);
    void this.kick();
  }

  /** One round over the sweeps still going (the 1 s tick, and after a change). */
  kick(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    const round = async () => {
      do {
        this.again = false;
        for (const n of [...this.known]) if (!this.settled.has(n)) await this.passLogged(n);
      } while (this.again);
    };
    // Cleared in a later microtask (never inside a round that had nothing to await, before it is set).
    const p: Promise<void> = round().finally(() => {
      if (this.running === p) this.running = undefined;
    });
    this.running = p;
    return this.running;
  }

  /** Wait for the round in flight (tests, stop). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  list(): string[] {
    return [...this.known].sort();
  }

  private async passLogged(name: string): Promise<void> {
    try {
      await this.pass(name);
    } catch (e) {
      this.ctx.log.warn('sweep reconcile failed; will retry', { sweep: name, error: (e as Error).message });
    }
  }

  /** One sweep's reconcile. */
  async pass(name: string): Promise<SweepDecision> {
    const file = await this.ctx.store.readSweep(name);
    const prev = await this.files.readStatus(name);
    // The owner's rules (loop/sweep-owner.ts): a change by someone else runs the accepted spec.
    const auth = await authorizeSweep(this.ctx, this.files, this.source, name, file, prev);
    const spec = auth.spec;
    const metric = spec.kind === 'valid' ? spec.sweep.spec.objective.metric : undefined;
    const trials = await this.trials(name, prev, metric);
    if (spec.kind === 'valid') await this.readRungs(spec, trials);
    const d: SweepDecision = auth.hold
      ? { write: [], remove: [], status: prev ?? null, events: [] }
      : decideSweep({ name, now: this.ctx.now(), spec, prev, owner: auth.owner?.owner, trials });
    this.withOwner(d, auth);
    await this.apply(name, d, auth);
    // spec.after: a `sweep:` dependency reads the phase and best trial; a change wakes the dependents.
    const facts = d.status && { phase: d.status.phase, message: d.status.message, best: d.status.best?.trial };
    if (this.ctx.jobs.noteSweep(name, facts ?? undefined))
      for (const dep of this.ctx.jobs.dependentsOf(name)) this.ctx.enqueue(dep);
    const ph = d.status?.phase;
    if (!d.status) this.known.delete(name);
    else if (!d.write.length && !d.remove.length && (ph === 'Succeeded' || ph === 'Failed' || ph === 'Invalid'))
      this.settled.add(name);
    return d;
  }

  /** The owner, how it was set, the accepted hash and what was refused, into the new status. */
  private withOwner(d: SweepDecision, auth: SweepAuth): void {
    const s = d.status;
    if (!s || !this.ctx.auth) return;
    d.status = { ...s };
    if (auth.owner) Object.assign(d.status, { owner: auth.owner.owner, ownerBy: auth.owner.by });
    if (auth.acceptedHash) d.status.acceptedHash = auth.acceptedHash;
    if (auth.denied) d.status.denied = auth.denied;
    else delete d.status.denied;
  }

  /** The spec the sweep now runs with, when it is the file's and new: kept for the next refusal. */
  private async keepAccepted(name: string, auth: SweepAuth): Promise<void> {
    const spec = auth.spec;
    if (!this.ctx.auth || auth.hold || spec.kind !== 'valid' || !auth.acceptedHash) return;
    if (this.kept.get(name) === auth.acceptedHash) return;
    await this.files.writeAccepted(name, spec.sweep);
    this.kept.set(name, auth.acceptedHash);
  }

  /** Every trial file of this sweep (its name's pattern and its label), with its status. */
  private async trials(name: string, prev: SweepStatus | undefined, metric?: string): Promise<TrialFacts[]> {
    const known = new Map((prev?.trials ?? []).map((r) => [r.name, r]));
    const out: TrialFacts[] = [];
    for (const stem of await this.files.stems()) {
      const id = parseTrialName(name, stem);
      if (!id) continue;
      const js = await this.ctx.store.readSpec(stem);
      if (js.kind !== 'valid' || js.job.metadata.labels?.[SWEEP_LABEL] !== name) continue;
      const st = await this.ctx.store.readStatus(stem);
      const cur = st?.specHash === js.hash ? st : undefined;
      const ann = js.job.metadata.annotations ?? {};
      const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
      const step = num(cur?.progress?.step);
      const objective = metric ? num(cur?.progress?.[metric]) : undefined;
      const diverged = metric !== undefined && isNonFinite(cur?.progress?.[metric]);
      out.push({
        name: stem,
        generation: Number(ann[GENERATION_ANNOTATION]) || id.generation,
        index: id.index,
        params: paramsOf(ann[PARAMS_ANNOTATION]),
        job: js.job,
        rungs: known.get(stem)?.rungs ?? [],
        ...(cur ? { phase: cur.phase, ...(cur.reason ? { reason: cur.reason } : {}) } : {}),
        ...(cur?.message ? { message: cur.message } : {}),
        ...(step !== undefined ? { step: Math.floor(step) } : {}),
        ...(objective !== undefined ? { objective } : {}),
        ...(diverged ? { diverged } : {}),
      });
    }
    return out;
  }

  /** The objective at each rung a trial crossed and the sweep does not know yet: read from its metrics. */
  private async readRungs(spec: Extract<SweepState, { kind: 'valid' }>, trials: TrialFacts[]): Promise<void> {
    const es = spec.sweep.spec.earlyStopping;
    if (!es) return;
    const steps = es.type === 'asha' ? es.rungs : es.steps;
    const metric = spec.sweep.spec.objective.metric;
    await Promise.all(
      trials.map(async (t) => {
        const next = steps[t.rungs.length];
        if (next === undefined || t.step === undefined || t.step < next || !t.job) return;
        const hash = specHash(t.job.spec);
        const points = await this.metrics.series(t.name, hash, metric, this.ctx.hostsState.partsOf(t.name));
        if (!points) return;
        const got = rungValues(steps, points);
        if (got.length > t.rungs.length) t.rungs = got;
      }),
    );
  }

  private async apply(name: string, d: SweepDecision, auth: SweepAuth): Promise<void> {
    for (const job of d.write) {
      const n = job.metadata.name;
      // A job of that name that is not this sweep's trial is never overwritten.
      const cur = await this.ctx.store.readSpec(n);
      if (cur.kind === 'valid' && cur.job.metadata.labels?.[SWEEP_LABEL] !== name) {
        d.events.push({
          type: 'Warning',
          reason: 'TrialNameTaken',
          message: `job ${n} exists and is not this sweep's`,
        });
        continue;
      }
      if (cur.kind === 'invalid' || (await this.ctx.store.readSweep(n)).kind !== 'deleted') {
        d.events.push({ type: 'Warning', reason: 'TrialNameTaken', message: `${n}.yaml exists and is not a trial` });
        continue;
      }
      await this.files.writeTrial(job, name);
      this.ctx.enqueue(n);
    }
    for (const n of d.remove) {
      await this.files.deleteTrial(n);
      this.metrics.forget(n);
      this.ctx.enqueue(n);
    }
    if (d.status) await this.files.writeStatus(name, d.status);
    else {
      await this.files.deleteStatus(name);
      await this.files.deleteAccepted(name);
      this.kept.delete(name);
    }
    if (d.status) await this.keepAccepted(name, auth);
    const time = this.ctx.now().toISOString();
    await this.ctx.store.appendEvents([
      ...auth.events.map((e) => ({ time, job: name, type: e.type ?? 'Normal', ...e })),
      ...d.events.map((e) => ({ time, job: name, ...e })),
    ]);
  }
}

function paramsOf(text: string | undefined): ParamSet {
  if (!text) return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) return {};
    const out: ParamSet = {};
    for (const [k, x] of Object.entries(v).slice(0, 64))
      if ((typeof x === 'number' && Number.isFinite(x)) || (typeof x === 'string' && x.length <= 1024)) out[k] = x;
    return out;
  } catch {
    return {};
  }
}
