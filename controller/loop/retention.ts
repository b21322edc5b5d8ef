/**
 * spec.checkpoint.keep, executed: when a reconcile sees a job's newest checkpoints change (a new
 * one written, or the first look after this controller started), its checkpoint dir is listed on
 * every SSH host (one exec each, in parallel; no hashing), the pure decision (core/retention.ts)
 * picks what goes, and each host deletes its share in one exec. The event says what was deleted
 * where and the disk freed: `CheckpointsPruned: 3 deleted on gpu1, 1.2 GB freed`. One pass per job
 * at a time; a change during a pass runs one more after it. A host that does not answer, or a
 * registry that cannot be read, prunes nothing this time (a checkpoint is never deleted on a guess).
 */

import { modelRef } from '../api/model.ts';
import type { CheckpointInfo } from '../api/run.ts';
import { type JobStatus, TERMINAL_PHASES } from '../api/status.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import { checkpointRows, type HostListing } from '../core/checkpoints.ts';
import { checkpointDir } from '../core/launch.ts';
import { bytesText, retention } from '../core/retention.ts';
import { newestCheckpoint } from '../core/steps/schedule-next.ts';
import { ModelRegistry } from '../store/models.ts';
import type { LoopContext } from './context.ts';

interface Pass {
  job: TrainingJob;
  status: JobStatus | undefined;
  checkpoints: CheckpointInfo[];
}

export class Retention {
  /** Per job: the newest checkpoints as last acted on. */
  private readonly seen = new Map<string, string>();
  /** Per job: a pass in flight, and what the next one (if due) reads. */
  private readonly busy = new Map<string, { again?: Pass }>();

  constructor(private readonly ctx: LoopContext) {}

  /** A reconcile observed `name`'s newest checkpoint on each host (scan.ts). Never throws; never waits. */
  observed(name: string, job: TrainingJob, status: JobStatus | undefined, checkpoints: CheckpointInfo[]): void {
    if (!job.spec.checkpoint?.keep || !checkpoints.length) return;
    const key = checkpoints
      .map((c) => `${c.host}/${c.name}/${c.mtimeMs}`)
      .sort()
      .join(' ');
    if (this.seen.get(name) === key) return;
    this.seen.set(name, key);
    const pass: Pass = { job, status, checkpoints };
    const b = this.busy.get(name);
    if (b) {
      b.again = pass;
      return;
    }
    const state: { again?: Pass } = {};
    this.busy.set(name, state);
    const loop = async () => {
      for (let p: Pass | undefined = pass; p; p = state.again) {
        state.again = undefined;
        await this.prune(name, p).catch((e) => {
          // Tried again at the next checkpoint (forgotten, so the same newest counts as new).
          this.seen.delete(name);
          this.ctx.log.warn('checkpoint retention failed', { job: name, error: (e as Error).message });
        });
      }
      this.busy.delete(name);
    };
    void loop();
  }

  /** No pass is in flight. */
  get idle(): boolean {
    return this.busy.size === 0;
  }

  private async prune(name: string, { job, status, checkpoints: observed }: Pass): Promise<void> {
    const keep = job.spec.checkpoint!.keep!;
    const down = this.ctx.liveness.downAll();
    const hosts = this.ctx.hosts.filter((h) => h.slurm === undefined);
    const registry = ModelRegistry.of(this.ctx.store.dir);
    const [models, listings] = await Promise.all([
      registry.list(),
      Promise.all(
        hosts.map(async (h): Promise<HostListing | undefined> => {
          const dir = checkpointDir(job, h);
          if (!dir.ok || down.has(h.name)) return undefined;
          // A host not listed keeps all it has: the others keep at least what they would with it.
          const l = await this.ctx.runtime
            .listCheckpoints(h, dir.path, keep.best !== undefined ? { runsOf: name } : {})
            .catch((e) => {
              this.ctx.log.warn('cannot list checkpoints', { job: name, host: h.name, error: (e as Error).message });
              return undefined;
            });
          if (!l) return undefined;
          return {
            host: h.name,
            dir: dir.path,
            ...(l.latest ? { latest: l.latest } : {}),
            files: l.files,
            runs: l.runs,
          };
        }),
      ),
    ]);
    const since = status ? Date.parse(status.generationSince ?? status.createdAt) : undefined;
    const next = newestCheckpoint(observed, since)?.name;
    const dependents = this.ctx.jobs
      .dependentsOf(name)
      .map((d) => ({ job: d, phase: this.ctx.jobs.facts(d)?.phase }))
      .filter((d) => !d.phase || !TERMINAL_PHASES.includes(d.phase as (typeof TERMINAL_PHASES)[number]))
      .flatMap((d) => (next ? [{ job: d.job, name: next }] : []));
    const decision = retention({
      keep,
      rows: checkpointRows(listings.filter((l): l is HostListing => !!l)),
      restart: [...(next ? [next] : []), ...(job.spec.checkpoint?.resumeFrom ? [job.spec.checkpoint.resumeFrom] : [])],
      dependents,
      promoted: models.versions.filter((v) => v.job === name).map((v) => ({ name: v.checkpoint, model: modelRef(v) })),
    });
    if (!decision.delete.length) return;
    const byHost = new Map<string, { dir: string; names: string[] }>();
    for (const d of decision.delete) {
      const e = byHost.get(d.host) ?? { dir: d.dir, names: [] };
      e.names.push(d.name);
      byHost.set(d.host, e);
    }
    const done = await Promise.all(
      [...byHost].map(async ([hn, e]) => {
        const h = this.ctx.host(hn)!;
        const gone = await this.ctx.runtime.deleteCheckpoints(h, e.dir, e.names);
        return { host: hn, gone };
      }),
    );
    const parts = done
      .filter((d) => d.gone.length)
      .map((d) => {
        const bytes = d.gone.reduce((s, g) => s + g.sizeBytes, 0);
        const names = d.gone.map((g) => g.name).join(', ');
        return `${d.gone.length} deleted on ${d.host} (${names}), ${bytesText(bytes)} freed`;
      });
    if (!parts.length) return;
    const kept = decision.keep.map((k) => k.name).join(', ');
    const policy = [
      keep.last !== undefined ? `last ${keep.last}` : '',
      keep.best !== undefined ? `best ${keep.best} by ${keep.metric}` : '',
    ]
      .filter(Boolean)
      .join(', ');
    const message = `${parts.join('; ')}; kept ${kept} (keep: ${policy})`;
    await this.ctx.store.appendEvents([
      { time: this.ctx.now().toISOString(), job: name, type: 'Normal', reason: 'CheckpointsPruned', message },
    ]);
    this.ctx.log.info(message, { job: name, reason: 'CheckpointsPruned' });
  }
}

const byContext = new WeakMap<LoopContext, Retention>();
/** The controller's one Retention (its state is per controller: the loop context's). */
export function retentionOf(ctx: LoopContext): Retention {
  let r = byContext.get(ctx);
  if (!r) {
    r = new Retention(ctx);
    byContext.set(ctx, r);
  }
  return r;
}
