/**
 * The Slurm backend: the same host interface as SshBackend (launch, observe, stop, wait, …) for
 * a Slurm cluster, reached through its login host over SSH. The controller and the pure core
 * see a Slurm run as one part on the cluster's host, in the run-dir layout of an SSH run (rank.sh,
 * one log and exit code per global rank, metrics, heartbeats), read from the storage the login
 * host shares with the nodes; what Slurm itself says (PENDING and why, the end's reason) comes
 * in RunPart's generic fields (states.ts).
 *
 *   launch   the batch script (batch.ts) written with sftp, then sbatch (scripts/runtime/slurm/submit.sh)
 *   observe  observe.sh + the dir's Slurm files in one exec, and squeue's answer for every job at
 *            once (one call shared by every observe within a second, and by the waiters)
 *   stop     scancel --signal=TERM --full, the grace, then scancel (slurm/cancel.sh)
 *   wait     no exec per run: one squeue call every poll interval for all the runs waited on
 *
 * Run dirs, logs, leases and the scripts/ deployment are plain files on the login host: those
 * calls go to the SshBackend given (the same scripts as for any host).
 */
import { posix } from 'node:path';
import type { Host } from '../../../config/cluster.ts';
import { InternalError } from '../../../config/errors.ts';
import { parseRunDirName, parseRunMeta, type RunPart } from '../../api/run.ts';
import {
  type Backend,
  type CheckpointListing,
  type LaunchRequest,
  type ObserveResult,
  type StopRequest,
  stopGraceMs,
} from '../api.ts';
import { HostError } from '../errors.ts';
import type { NodeHealth } from '../health.ts';
import { blockOf, errorOf, field, fieldsOf, observeResultOf, parseRecords, stopAnswerOf } from '../records.ts';
import type { ExecResult } from '../ssh/pool.ts';
import { batchScript } from './batch.ts';
import { slurmPlan } from './sbatch-plan.ts';
import { type SlurmScript, type SlurmScripts, slurmScripts } from './scripts.ts';
import { type SlurmFiles, type SlurmRow, type SlurmSnapshot, slurmFilesOf, slurmPart, snapshotOf } from './states.ts';
import type { SlurmTransport } from './transport.ts';

export interface SlurmBackendOptions {
  scripts?: SlurmScripts;
  /** The controller's clock (ms). */
  now?: () => number;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (t: unknown) => void;
  /** Observes within this long of a squeue call share its answer (default 1000 ms). */
  shareMs?: number;
}

const TIMEOUTS = { observeMs: 30_000, squeueMs: 30_000, submitMs: 60_000, probeMs: 20_000, stopMarginMs: 60_000 };

interface Watcher {
  jobId?: string;
  state: string;
  resolve: () => void;
}

function said(res: ExecResult, why?: string): string {
  if (why) return why;
  const text = (res.stderr || res.stdout).trim();
  return text ? text.split('\n').slice(-3).join(' | ') : 'no output';
}

export class SlurmBackend implements Backend {
  private readonly now: () => number;
  private readonly timers: { set: (fn: () => void, ms: number) => unknown; clear: (t: unknown) => void };
  /** Per login host: squeue's last answer, and the call in flight. */
  private readonly snaps = new Map<string, { last?: SlurmSnapshot; flight?: Promise<SlurmSnapshot> }>();
  /** What each run dir's job showed last (`host/dir` -> job id, state): what the waiters compare with. */
  private readonly seen = new Map<string, { jobId?: string; state: string }>();
  private readonly watchers = new Map<string, Set<Watcher>>();
  private readonly polling = new Map<string, unknown>();
  /** squeue calls made (tests and the benchmark). */
  readonly stats = { squeue: 0, squeueBytes: 0, observes: 0 };

  constructor(
    private readonly transport: SlurmTransport,
    /** Plain file operations on the login host (run dirs, logs, leases, scripts/). */
    private readonly files: Backend,
    private readonly options: SlurmBackendOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.timers = {
      set:
        options.setTimeout ??
        ((fn, ms) => {
          const t = setTimeout(fn, ms);
          t.unref?.();
          return t;
        }),
      clear: options.clearTimeout ?? ((t) => clearTimeout(t as ReturnType<typeof setTimeout>)),
    };
  }

  private get scripts(): SlurmScripts {
    return this.options.scripts ?? slurmScripts();
  }

  private run(host: Host, script: SlurmScript, args: string[], timeoutMs: number): Promise<ExecResult> {
    return this.transport.exec(host, this.scripts.text(script), `ugro-slurm-${script}`, args, { timeoutMs });
  }

  private settings(host: Host): NonNullable<Host['slurm']> {
    if (!host.slurm) throw new HostError(host.name, 'config', `${host.name} is not a Slurm cluster's login host`);
    return host.slurm;
  }

  private runDir(host: Host, dir: string): string {
    if (!parseRunDirName(dir))
      throw new HostError(host.name, 'config', `${JSON.stringify(dir)} is not a run dir name (JOB.HASH8.ATTEMPT)`);
    return posix.join(host.paths.runs, dir);
  }

  // ------------------------------------------------------------------ squeue, shared

  /**
   * squeue's answer for every job of the login user: the last one when it is younger than
   * `maxAgeMs` and was asked at or after `notBefore`, else one new call (concurrent callers
   * share it). With `sacctIds`, sacct is asked about those too (never cached).
   */
  async snapshot(
    host: Host,
    o: { maxAgeMs: number; notBefore?: number; sacctIds?: string[] } = { maxAgeMs: 0 },
  ): Promise<{ snapshot: SlurmSnapshot; sacct: Map<string, SlurmRow> }> {
    const st = this.snaps.get(host.name) ?? {};
    this.snaps.set(host.name, st);
    const fresh = (s?: SlurmSnapshot) =>
      s && this.now() - s.at <= o.maxAgeMs && (o.notBefore === undefined || s.at >= o.notBefore);
    if (!o.sacctIds?.length) {
      if (fresh(st.last)) return { snapshot: st.last!, sacct: new Map() };
      if (st.flight) {
        const s = await st.flight;
        if (o.notBefore === undefined || s.at >= o.notBefore) return { snapshot: s, sacct: new Map() };
      }
    }
    const at = this.now();
    let sacct = new Map<string, SlurmRow>();
    const flight = (async () => {
      const res = await this.run(host, 'squeue', o.sacctIds?.length ? [o.sacctIds.join(',')] : [], TIMEOUTS.squeueMs);
      this.stats.squeue++;
      this.stats.squeueBytes += Buffer.byteLength(res.stdout);
      const r = snapshotOf(res.stdout, at);
      sacct = r.sacct;
      if (!r.snapshot.error && res.code !== 0)
        r.snapshot.error = `slurm/squeue.sh failed (exit ${res.code}): ${said(res)}`;
      return r.snapshot;
    })();
    if (!o.sacctIds?.length) st.flight = flight;
    try {
      const s = await flight;
      if (!st.last || s.at >= st.last.at) st.last = s;
      return { snapshot: s, sacct };
    } finally {
      if (st.flight === flight) st.flight = undefined;
    }
  }

  /** Forget squeue's last answer (after a submit or a cancel: states changed). */
  private invalidate(host: Host): void {
    const st = this.snaps.get(host.name);
    if (st) st.last = undefined;
  }

  // ------------------------------------------------------------------ the host interface

  async observe(host: Host, job?: string, checkpointDir?: string): Promise<ObserveResult> {
    const s = this.settings(host);
    if (checkpointDir !== undefined && (!job || !posix.isAbsolute(checkpointDir)))
      throw new HostError(host.name, 'config', `checkpoint dir ${JSON.stringify(checkpointDir)} needs a job`);
    const started = this.now();
    this.stats.observes++;
    const args = [host.paths.runs, ...(job ? [job] : []), ...(checkpointDir ? [checkpointDir] : [])];
    const [res, snap] = await Promise.all([
      this.run(host, 'observe', args, TIMEOUTS.observeMs),
      this.snapshot(host, { maxAgeMs: this.options.shareMs ?? 1000 }),
    ]);
    if (res.code !== 0) throw new HostError(host.name, 'other', `observe failed (exit ${res.code}): ${said(res)}`);
    let base: ObserveResult;
    try {
      base = observeResultOf(host.name, res.stdout);
    } catch (e) {
      throw e instanceof HostError ? e : new HostError(host.name, 'other', (e as Error).message, { cause: e });
    }
    const files = new Map<string, SlurmFiles>();
    for (const b of parseRecords(res.stdout))
      if (b.kind === 'slurm' && b.complete && b.id) files.set(b.id, slurmFilesOf(b));
    let { snapshot } = snap;
    let sacct = new Map<string, SlurmRow>();
    const idOf = (p: RunPart) => files.get(p.dir)?.jobId ?? snapshot.byName.get(p.meta.runId);
    const missing = () =>
      base.parts.filter((p) => {
        const id = idOf(p);
        return id !== undefined && !snapshot.byId.has(id) && !sacct.has(id) && p.exitCode === undefined;
      });
    // A job squeue did not list: believe that only from an answer asked after these files were
    // read (the job may have been submitted in between), and ask sacct when accounting is on.
    if (missing().length && snapshot.at < started)
      snapshot = (await this.snapshot(host, { maxAgeMs: 0, notBefore: started })).snapshot;
    if (missing().length && s.accounting) {
      const ids = missing().map((p) => idOf(p)!);
      sacct = (await this.snapshot(host, { maxAgeMs: 0, sacctIds: ids })).sacct;
    }
    if (snapshot.error)
      throw new HostError(host.name, 'other', `Slurm did not answer: ${snapshot.error} (is slurmctld up?)`);
    const parts = base.parts.map((p) => {
      const f = files.get(p.dir) ?? { out: [] };
      const id = f.jobId ?? snapshot.byName.get(p.meta.runId);
      const row = id === undefined ? undefined : (snapshot.byId.get(id) ?? sacct.get(id));
      const part = slurmPart(p, id && !f.jobId ? { ...f, jobId: id } : f, row);
      this.seen.set(`${host.name}/${p.dir}`, { jobId: part.slurm?.jobId, state: part.slurm?.state ?? 'UNKNOWN' });
      return part;
    });
    return { ...base, parts };
  }

  async launch(host: Host, req: LaunchRequest): Promise<{ pid: number; existed: boolean }> {
    const settings = this.settings(host);
    const runDir = this.runDir(host, req.dir);
    const bad = (why: string, cause?: unknown) =>
      new HostError(host.name, 'config', `launch of ${req.dir}: ${why}`, cause === undefined ? undefined : { cause });
    const meta = parseRunMeta(req.dir, host.name, req.meta);
    if (!meta.ok) throw bad(meta.why);
    const t = req.training;
    if (!t) throw bad('a Slurm launch needs the job and its training command');
    if (!t.target.length || t.target[0].includes('=')) throw bad('target[0] must be a program (without "=")');
    const runId = meta.meta.runId;
    if ((req.ugroEnv.UGRO_RUN_ID ?? runId) !== runId) throw bad(`UGRO_RUN_ID is not the run's id ${runId}`);
    let script: string;
    try {
      script = batchScript(
        {
          runId,
          // Slurm places the nodes itself: the plan comes from the job's spec and the cluster file's slurm: section.
          plan: slurmPlan(t.job, settings, { rdzvTimeoutSeconds: t.rdzvTimeoutSeconds }),
          python: host.python,
          ugroEnv: { ...req.ugroEnv, UGRO_RUN_ID: runId },
          jobEnv: Object.fromEntries(Object.entries(req.jobEnv).filter(([k]) => !k.startsWith('UGRO_'))),
          target: t.target,
        },
        this.scripts.batch,
      );
    } catch (e) {
      // A bug stays a bug; what the job or the cluster file asked for that Slurm cannot take is the host's config.
      if (e instanceof InternalError) throw e;
      throw bad((e as Error).message, e);
    }
    const mk = await this.run(host, 'prepare', [runDir], 20_000);
    if (mk.code !== 0)
      throw new HostError(host.name, 'other', `cannot create ${runDir}: ${said(mk, errorOf(parseRecords(mk.stdout)))}`);
    await this.transport.writeFile(host, posix.join(runDir, 'job.sbatch'), script);
    const res = await this.run(host, 'submit', [runDir, runId, JSON.stringify(meta.meta)], TIMEOUTS.submitMs);
    this.invalidate(host);
    const blocks = parseRecords(res.stdout);
    const err = errorOf(blocks);
    const b = blockOf(blocks, 'submit');
    const id = b && field(b, 'job_id');
    const result = b && field(b, 'result');
    if (err || res.code !== 0 || !id || !/^\d{1,12}$/.test(id) || (result !== 'submitted' && result !== 'exists'))
      throw new HostError(host.name, 'other', `submitting ${req.dir} failed (exit ${res.code}): ${said(res, err)}`);
    this.seen.set(`${host.name}/${req.dir}`, { jobId: id, state: 'PENDING' });
    return { pid: Number(id), existed: result === 'exists' };
  }

  async stop(host: Host, req: StopRequest): Promise<{ remaining: number; killed: boolean }> {
    const runDir = this.runDir(host, req.dir);
    const graceMs = stopGraceMs(host, req);
    const res = await this.run(
      host,
      'cancel',
      [runDir, req.runId, String(graceMs), req.reason],
      graceMs + TIMEOUTS.stopMarginMs,
    );
    this.invalidate(host);
    const a = stopAnswerOf(res.stdout);
    if ('error' in a)
      throw new HostError(host.name, 'other', `stop of ${req.dir} failed (exit ${res.code}): ${a.error}`);
    return a;
  }

  /**
   * Resolves when the Slurm job of this run dir changes state (PENDING to RUNNING, RUNNING to
   * ended…), or the signal aborts. All runs waited on share one squeue call per poll interval.
   */
  wait(host: Host, dir: string, signal: AbortSignal): Promise<void> {
    const s = this.settings(host);
    const seen = this.seen.get(`${host.name}/${dir}`);
    return new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      if (!seen) {
        // Not observed yet: let the job look again after one interval.
        const t = this.timers.set(resolve, s.pollMs);
        signal.addEventListener('abort', () => {
          this.timers.clear(t);
          resolve();
        });
        return;
      }
      const set = this.watchers.get(host.name) ?? new Set<Watcher>();
      this.watchers.set(host.name, set);
      const w: Watcher = {
        ...(seen.jobId ? { jobId: seen.jobId } : {}),
        state: seen.state,
        resolve: () => {
          set.delete(w);
          resolve();
        },
      };
      set.add(w);
      signal.addEventListener('abort', () => w.resolve());
      this.poll(host);
    });
  }

  /** While runs are waited on: one squeue call every poll interval, waking those whose job moved. */
  private poll(host: Host): void {
    if (this.polling.has(host.name)) return;
    const tick = async () => {
      const set = this.watchers.get(host.name);
      if (!set?.size) {
        this.polling.delete(host.name);
        return;
      }
      try {
        const { snapshot } = await this.snapshot(host, { maxAgeMs: 0, notBefore: this.now() });
        if (!snapshot.error) {
          for (const w of [...set]) {
            const state = (w.jobId && snapshot.byId.get(w.jobId)?.state) || 'GONE';
            if (state !== w.state) w.resolve();
          }
        }
      } catch {
        // The login host did not answer: try again next interval (liveness watches the host).
      }
      this.polling.set(
        host.name,
        this.timers.set(() => void tick(), this.settings(host).pollMs),
      );
    };
    this.polling.set(
      host.name,
      this.timers.set(() => void tick(), this.settings(host).pollMs),
    );
  }

  /** Runs waited on right now (tests). */
  get waiting(): number {
    let n = 0;
    for (const s of this.watchers.values()) n += s.size;
    return n;
  }

  async probe(host: Host): Promise<NodeHealth> {
    const checkedAt = new Date(this.now()).toISOString();
    const base = { name: host.name, address: host.address, user: host.user, role: host.role, gpus: [], checkedAt };
    let res: ExecResult;
    try {
      res = await this.run(host, 'probe', [], TIMEOUTS.probeMs);
    } catch (e) {
      return { ...base, status: 'NotReady', reasons: [(e as Error).message], warnings: [] };
    }
    const b = blockOf(parseRecords(res.stdout), 'slurm-probe');
    if (!b) return { ...base, status: 'NotReady', reasons: [`slurm probe gave no answer: ${said(res)}`], warnings: [] };
    const reasons: string[] = [];
    for (const c of ['sbatch', 'squeue', 'scancel'])
      if (field(b, c) !== '1') reasons.push(`${c} is not installed on the login host (or not on PATH)`);
    const rc = field(b, 'squeue_rc');
    if (!reasons.length && rc !== '0')
      reasons.push(
        `squeue failed (exit ${rc}): ${fieldsOf(b, 'squeue_error').join(' | ') || 'no message'} (slurmctld down?)`,
      );
    const parts = fieldsOf(b, 'partition');
    const warnings = parts.filter((p) => p.split(' ')[1] !== 'up').map((p) => `partition ${p.split(' ')[0]} is not up`);
    const hostname = field(b, 'hostname');
    return {
      ...base,
      status: reasons.length ? 'NotReady' : 'Ready',
      reasons,
      warnings,
      ...(hostname ? { hostname } : {}),
    };
  }

  archive(host: Host, dir: string, nowMs: number, keepDays?: number): Promise<void> {
    return this.files.archive(host, dir, nowMs, keepDays);
  }

  lease(host: Host, owner: string, ttlSeconds: number, release?: boolean) {
    return this.files.lease(host, owner, ttlSeconds, release);
  }

  syncScripts(host: Host, localDir: string, hash: string): Promise<boolean> {
    return this.files.syncScripts(host, localDir, hash);
  }

  readLog(host: Host, dir: string, rank: number, tail?: number) {
    return this.files.readLog(host, dir, rank, tail);
  }

  followLog(
    host: Host,
    dir: string,
    rank: number,
    offset: number,
    onData: (b: Buffer) => void,
    signal?: AbortSignal,
  ): Promise<number> {
    return (this.files.followLog as (...a: unknown[]) => Promise<number>)(host, dir, rank, offset, onData, signal);
  }

  readMetrics(host: Host, dir: string, offset: number) {
    const f = (this.files as { readMetrics?: Backend['readMetrics'] }).readMetrics;
    if (!f) throw new HostError(host.name, 'config', 'reading metrics is not supported here');
    return f.call(this.files, host, dir, offset);
  }

  lastHeard(host: Host): number | undefined {
    return this.files.lastHeard(host);
  }

  reach(host: Host): Promise<void> {
    return this.files.reach(host);
  }

  /** Refused: the checkpoints are on the Slurm nodes' shared storage, which only the job's nodes see. */
  async listCheckpoints(host: Host): Promise<CheckpointListing> {
    throw new HostError(
      host.name,
      'config',
      "a Slurm run's checkpoints are on its nodes' shared storage: list them there (ugro checkpoints covers SSH hosts)",
    );
  }

  async deleteCheckpoints(host: Host): Promise<{ name: string; sizeBytes: number }[]> {
    throw new HostError(
      host.name,
      'config',
      "a Slurm run's checkpoints are on its nodes' shared storage: spec.checkpoint.keep is for SSH hosts",
    );
  }

  async copyCheckpoint(from: Host): Promise<{ bytes: number; sha256: string }> {
    throw new HostError(
      from.name,
      'config',
      "a Slurm run's checkpoints are on the storage its nodes share: nothing to copy between hosts",
    );
  }
}
