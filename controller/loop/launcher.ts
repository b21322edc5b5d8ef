/**
 * Starts a run's parts on their hosts: works out what each part sends (meta, torchrun argv,
 * environment) without touching a host, copies the checkpoint the new rank 0 lacks, deploys
 * scripts/ where needed, launches every part at once and stops the started ones if one fails. A job
 * with spec.preflight has its gang's network checked first (core/preflight.ts).
 */
import { posix } from 'node:path';
import type { Host } from '../../config/cluster.ts';
import { UgroError } from '../../config/errors.ts';
import type { RunMeta, RunPart } from '../api/run.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import type { LaunchRequest } from '../backends/api.ts';
import { HostError } from '../backends/errors.ts';
import { afterEnv, checkpointDir, torchrunArgv, trainingTarget, ugroEnv } from '../core/launch.ts';
import { preflightCulprit, preflightMessage, wantsPreflight } from '../core/preflight.ts';
import type { AfterCheckpoint, EventDraft, LaunchAction } from '../core/types.ts';
import type { LoopContext } from './context.ts';
import type { ScriptsDeploy } from './scripts-deploy.ts';
import { stopRun } from './stop.ts';

/** One part of a launch as it will be sent, or why it cannot be (raised when that part is launched). */
export type PreparedPart = { host: Host; req: LaunchRequest; scriptsHash?: string } | { host: Host; error: Error };

/** Why a launch did not start (`preflight`: its preflight failed; `portBusy`: choose another port). */
export type LaunchFailure = { host: string; message: string; portBusy?: boolean; preflight?: boolean };

export class Launcher {
  constructor(
    private readonly ctx: LoopContext,
    private readonly scripts: ScriptsDeploy,
  ) {}

  /**
   * What each part of a launch sends (meta, torchrun argv, environment, the scripts' hash), worked
   * out without touching a host. A part that cannot be launched (a checkpoint dir outside its
   * host's roots, an unreadable scripts/) carries its error, raised when that part is launched.
   */
  prepare(job: TrainingJob, a: LaunchAction): PreparedPart[] {
    const rdzv = this.ctx.host(a.rdzvHost);
    const fresh = a.parts.length === a.allParts.length;
    let scripts: { hash: string } | { error: Error } | undefined;
    return a.parts.map((p) => {
      const h = this.ctx.host(p.host)!;
      try {
        if (!rdzv) throw new UgroError(`unknown rendezvous host ${a.rdzvHost}`);
        if (job.spec.script) {
          scripts ??= (() => {
            try {
              return { hash: this.scripts.hash() };
            } catch (e) {
              return { error: e instanceof Error ? e : new UgroError(String(e), { cause: e }) };
            }
          })();
          if ('error' in scripts) throw scripts.error;
        }
        const runDir = posix.join(h.paths.runs, a.dir);
        const n = {
          host: h,
          nodeRank: p.nodeRank,
          nnodes: a.allParts.length,
          nproc: p.nproc,
          rdzvAddr: rdzv.address,
          port: a.port,
          runId: a.runId,
          runDir,
          attempt: a.attempt,
          rdzvTimeoutSeconds: this.ctx.rdzvTimeoutSeconds,
          ...(p.gpus ? { gpus: p.gpus } : {}),
          ...(p.batches ? { batches: p.batches } : {}),
        };
        const ckpt = checkpointDir(job, h);
        if (!ckpt.ok) throw new UgroError(ckpt.why);
        const meta: RunMeta = {
          job: a.job,
          runId: a.runId,
          specHash: a.specHash,
          attempt: a.attempt,
          host: h.name,
          nodeRank: p.nodeRank,
          nnodes: a.allParts.length,
          nprocPerNode: p.nproc,
          hosts: a.allParts.map((x) => x.host),
          rdzvEndpoint: `${rdzv.address}:${a.port}`,
          masterPort: a.port,
          createdAt: a.createdAt,
          owner: this.ctx.owner,
          ...(p.gpus
            ? { gpus: p.gpus.map((g) => ({ index: g.index, name: g.name.slice(0, 100), memoryMiB: g.memoryMiB })) }
            : {}),
          ...(a.backfill ? { backfill: true } : {}),
        };
        const req: LaunchRequest = {
          dir: a.dir,
          rdzvAddr: rdzv.address,
          meta,
          argv: torchrunArgv(job, n),
          training: { job, target: trainingTarget(job, h), rdzvTimeoutSeconds: n.rdzvTimeoutSeconds },
          ugroEnv: {
            ...ugroEnv(job, n, ckpt.path, { resumeFrom: a.resumeFrom, restartCount: a.restartCount }),
            ...afterEnv(a.after, h.name),
          },
          jobEnv: job.spec.env,
          // A fresh launch checks its port on the rendezvous host in the same exec.
          ...(fresh && h.name === rdzv.name ? { checkPort: a.port } : {}),
        };
        return { host: h, req, ...(scripts && 'hash' in scripts ? { scriptsHash: scripts.hash } : {}) };
      } catch (e) {
        return { host: h, error: e instanceof Error ? e : new UgroError(String(e), { cause: e }) };
      }
    });
  }

  /**
   * A checkpoint the new rank 0 does not have is copied there first, host to host through this
   * controller's connections, and verified (SHA-256 on both ends and of what passed through).
   */
  private async copyCheckpoint(job: TrainingJob, a: LaunchAction, event: (e: EventDraft) => void): Promise<void> {
    const c = a.copyCheckpoint!;
    const from = this.ctx.host(c.from);
    const to = this.ctx.host(c.to);
    if (!from || !to) throw new UgroError(`checkpoint copy: unknown host ${!from ? c.from : c.to}`);
    const src = checkpointDir(job, from);
    const dst = checkpointDir(job, to);
    if (!src.ok) throw new UgroError(src.why);
    if (!dst.ok) throw new UgroError(dst.why);
    const t0 = Date.now();
    let logged = t0;
    const r = await this.ctx.runtime.copyCheckpoint(from, src.path, to, dst.path, c.name, (bytes) => {
      // Progress for big files: at most every 5 s.
      if (Date.now() - logged >= 5000) {
        logged = Date.now();
        this.ctx.log.info('copying checkpoint', { job: a.job, name: c.name, from: c.from, to: c.to, bytes });
      }
    });
    const s = (Date.now() - t0) / 1000;
    this.ctx.log.info('checkpoint copied', {
      job: a.job,
      name: c.name,
      from: c.from,
      to: c.to,
      bytes: r.bytes,
      sha256: r.sha256,
      seconds: s,
    });
    event({
      reason: 'CheckpointCopied',
      message:
        `${c.name} copied from ${c.from} to ${c.to}: ${r.bytes} bytes in ${s.toFixed(1)} s, ` +
        `sha256 ${r.sha256} on both`,
    });
  }

  /** A producer's checkpoint (spec.after) copied from its host to `to`, into its dir there, verified. */
  private async copyAfter(
    a: LaunchAction,
    c: AfterCheckpoint,
    to: string,
    event: (e: EventDraft) => void,
  ): Promise<void> {
    const src = this.ctx.host(c.from);
    const dst = this.ctx.host(to);
    if (!src || !dst || !c.dirs[to]) throw new UgroError(`unknown host ${!src ? c.from : to}`);
    const r = await this.ctx.runtime.copyCheckpoint(src, c.fromDir, dst, c.dirs[to], c.name);
    this.ctx.log.info('producer checkpoint copied', { job: a.job, producer: c.job, name: c.name, from: c.from, to });
    event({
      reason: 'CheckpointCopied',
      message:
        `${c.trial ? `sweep ${c.job}'s best trial ${c.trial}` : c.job}'s ${c.name} copied from ${c.from} to ${to}` +
        ` (spec.after): ${r.bytes} bytes, sha256 ${r.sha256}`,
    });
  }

  /**
   * spec.preflight: the gang's hosts reach each other from its rendezvous port up (one listen/connect
   * round over the existing connections, bounded), or the failure naming the pairs that did not.
   */
  private async preflight(
    job: TrainingJob,
    a: LaunchAction,
    event: (e: EventDraft) => void,
  ): Promise<LaunchFailure | undefined> {
    const run = this.ctx.preflight;
    if (!run || !wantsPreflight(job, a, (h) => !!this.ctx.host(h)?.slurm)) return undefined;
    const hosts = a.allParts.map((p) => this.ctx.host(p.host)).filter((h): h is Host => !!h);
    const t0 = Date.now();
    try {
      const failed = await run(hosts, { port: a.port });
      const seconds = (Date.now() - t0) / 1000;
      if (failed.length) {
        const message = preflightMessage(failed);
        this.ctx.log.warn('preflight failed', { job: a.job, run: a.runId, seconds, pairs: message });
        return { host: preflightCulprit(failed), message, preflight: true };
      }
      const n = hosts.length * (hosts.length - 1);
      this.ctx.log.info('preflight passed', { job: a.job, run: a.runId, seconds });
      event({
        reason: 'PreflightPassed',
        message:
          `preflight: ${hosts.map((h) => h.name).join(', ')} reach each other from port ${a.port} ` +
          `(${n} pairs, ${seconds.toFixed(1)} s)`,
      });
      return undefined;
    } catch (e) {
      return { host: a.rdzvHost, message: `could not run: ${(e as Error).message}`, preflight: true };
    }
  }

  /**
   * Launch the parts of a launch action in parallel. Returns undefined when every part started,
   * else the first failure (the parts that did start are stopped first).
   */
  async launch(
    job: TrainingJob,
    a: LaunchAction,
    prepared: PreparedPart[],
    event: (e: EventDraft) => void,
  ): Promise<LaunchFailure | undefined> {
    // Before anything is copied or started: nothing to undo when it fails.
    const pf = await this.preflight(job, a, event);
    if (pf) return pf;
    if (a.copyCheckpoint) {
      try {
        await this.copyCheckpoint(job, a, event);
      } catch (e) {
        const c = a.copyCheckpoint;
        return { host: c.to, message: `copying checkpoint ${c.name} from ${c.from} failed: ${(e as Error).message}` };
      }
    }
    // spec.after: the producers' checkpoints this launch's hosts lack (its env var names them).
    for (const c of a.after ?? [])
      for (const to of c.copyTo) {
        try {
          await this.copyAfter(a, c, to, event);
        } catch (e) {
          return {
            host: to,
            message: `copying ${c.job}'s checkpoint ${c.name} from ${c.from} failed: ${(e as Error).message}`,
          };
        }
      }
    const started: RunPart[] = [];
    // Every part goes out at once: no await before a part's launch exec unless its host needs
    // scripts/ deployed first.
    const results = await Promise.allSettled(
      prepared.map(async (pp) => {
        const h = pp.host;
        try {
          if ('error' in pp) throw pp.error;
          if (pp.scriptsHash !== undefined && !this.scripts.has(h, pp.scriptsHash))
            await this.scripts.sync(h, pp.scriptsHash);
          const r = await this.ctx.runtime.launch(h, pp.req);
          this.ctx.stats.launches++;
          this.ctx.log.info(r.existed ? 'run part already running' : 'launched run part', {
            job: a.job,
            host: h.name,
            run: a.runId,
            attempt: a.attempt,
            pid: r.pid,
          });
          // Record it at once so scheduling sees the host busy before the next observe.
          const part: RunPart = {
            dir: a.dir,
            host: h.name,
            meta: pp.req.meta,
            pid: r.pid,
            alive: true,
            ranks: [],
            agentLogTail: [],
            launchedAtMs: this.ctx.now().getTime(),
          };
          this.ctx.hostsState.put(part);
          started.push(part);
        } catch (e) {
          throw Object.assign(e instanceof Error ? e : new UgroError(String(e), { cause: e }), { launchHost: h.name });
        }
      }),
    );
    // Waiters once every part's launch has answered: a wait exec started while another host is
    // still launching would only compete with it. (launch.sh holds the run's lock before it
    // returns, so a waiter started now still sees a part that already ended.)
    for (const part of started) this.ctx.waiters.ensure(this.ctx.host(part.host)!, part);
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (!failure) return undefined;
    const err = failure.reason as Error & { launchHost?: string };
    const host = err.launchHost ?? '?';
    const portBusy = err instanceof HostError && err.kind === 'port-busy';
    if (!portBusy) this.ctx.log.warn('launch failed', { job: a.job, run: a.runId, host, error: err.message });
    if (started.length) {
      // A busy port is not a failure: the parts that started go, and the next attempt takes another port.
      const reason = portBusy ? 'port-busy' : 'launch-failed';
      const hosts = started.map((p) => p.host);
      await stopRun(this.ctx, a.job, { type: 'stop', runId: a.runId, dir: a.dir, hosts, graceSeconds: 2, reason });
    }
    return { host, message: err.message.replace(`${host}: `, ''), ...(portBusy ? { portBusy } : {}) };
  }
}
