/**
 * The controller's side of the host runtime (scripts/runtime/*.sh): SshBackend turns typed
 * requests into one script run each and parses the answer with the one record parser
 * (records.ts), over any HostTransport (transport.ts: SshTransport is the real one, each script
 * inline over the host's pooled SSH connection as `sh -c TEXT ugro-NAME ARGS…`, every word quoted,
 * so hosts need nothing installed and can never run another version of the runtime).
 */
import { posix } from 'node:path';
import type { Host } from '../../../config/cluster.ts';
import { metricsOfLine, parseRunDirName, parseRunMeta } from '../../api/run.ts';
import {
  type Backend,
  type CheckpointListing,
  type LaunchRequest,
  type LeaseResult,
  type MetricsChunk,
  type ObserveResult,
  type ProgressAsk,
  type ProgressRead,
  type StopRequest,
  stopGraceMs,
} from '../api.ts';
import { HostError } from '../errors.ts';
import type { NodeHealth } from '../health.ts';
import {
  archiveAnswerOf,
  checksumOf,
  launchAnswerOf,
  leaseAnswerOf,
  logOf,
  metricsChunkOf,
  observeResultOf,
  portsOf,
  progressAnswerOf,
  scriptsHashOf,
  stopAnswerOf,
  waitAnswerOf,
} from '../records.ts';
import { checkpointListingOf, deletedCheckpointsOf } from './checkpoint-records.ts';
import type { ExecResult } from './pool.ts';
import { type RuntimeScripts, runtimeScripts } from './scripts.ts';
import type { HostTransport, RunScriptOptions, RuntimeScript } from './transport.ts';

/** How long each call may take on the host before it counts as failed. stop: grace + `stopMarginMs`. */
const RUNTIME_TIMEOUTS = {
  observeMs: 20_000,
  /** sha256sum of a checkpoint: a few GB at disk speed. */
  checksumMs: 600_000,
  launchMs: 30_000,
  stopMarginMs: 20_000,
  archiveMs: 20_000,
  leaseMs: 20_000,
  portsMs: 20_000,
  scriptsHashMs: 20_000,
  readLogMs: 60_000,
  metricsMs: 20_000,
  /** Asked every second: a host that takes longer is better asked again than waited for. */
  progressMs: 10_000,
  /** A listing hashes each new checkpoint once (like checksum); a delete only unlinks. */
  checkpointsMs: 600_000,
} as const;

/** Run dirs per progress.sh exec: their words stay far below sshd's 128 KiB command line. */
const PROGRESS_DIRS_PER_EXEC = 256;

/** The most metrics bytes one readMetrics call brings back (a longer file takes several calls). */
const METRICS_CHUNK_BYTES = 1_048_576;

/** This controller's lease on a host: `<paths.runs>/.ugro-lease` (observe skips dot entries). */
export const LEASE_FILE = '.ugro-lease';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The last few lines of what a failed script said, for an error message. */
function said(res: ExecResult, why?: string): string {
  if (why) return why;
  const text = (res.stderr || res.stdout).trim();
  return text ? text.split('\n').slice(-3).join(' | ') : 'no output';
}

export class SshBackend implements Backend {
  /** `scripts` defaults to the ones shipped with this code, read on first use (rank.sh for launch). */
  constructor(
    private readonly transport: HostTransport,
    private readonly options: { scripts?: RuntimeScripts } = {},
  ) {}

  private run(host: Host, script: RuntimeScript, args: string[], opts?: RunScriptOptions): Promise<ExecResult> {
    return this.transport.run(host, script, args, opts);
  }

  /** `<paths.runs>/<dir>` for a run dir name UGRO could have made (`<job>.<hash8>.<attempt>`). */
  private runDir(host: Host, dir: string): string {
    if (!parseRunDirName(dir)) {
      throw new HostError(host.name, 'config', `${JSON.stringify(dir)} is not a run dir name (JOB.HASH8.ATTEMPT)`);
    }
    return posix.join(host.paths.runs, dir);
  }

  async observe(host: Host, job?: string, checkpointDir?: string): Promise<ObserveResult> {
    if (checkpointDir !== undefined && (!job || !posix.isAbsolute(checkpointDir))) {
      throw new HostError(
        host.name,
        'config',
        `checkpoint dir ${JSON.stringify(checkpointDir)} needs a job and an absolute path`,
      );
    }
    const args = [host.paths.runs, ...(job ? [job] : []), ...(checkpointDir ? [checkpointDir] : [])];
    const res = await this.run(host, 'observe', args, {
      timeoutMs: RUNTIME_TIMEOUTS.observeMs,
    });
    if (res.code !== 0) throw new HostError(host.name, 'other', `observe failed (exit ${res.code}): ${said(res)}`);
    try {
      return observeResultOf(host.name, res.stdout);
    } catch (e) {
      // Whatever the host's answer made the parser throw is about that host (the cause keeps the stack).
      throw e instanceof HostError ? e : new HostError(host.name, 'other', (e as Error).message, { cause: e });
    }
  }

  async launch(host: Host, req: LaunchRequest): Promise<{ pid: number; existed: boolean }> {
    const runDir = this.runDir(host, req.dir);
    const bad = (why: string) => new HostError(host.name, 'config', `launch of ${req.dir}: ${why}`);
    // Never start what observe would reject as not ours.
    const meta = parseRunMeta(req.dir, host.name, req.meta);
    if (!meta.ok) throw bad(meta.why);
    if (!req.argv.length || req.argv[0].includes('=')) throw bad('argv[0] must be a program (without "=")');
    if (
      req.checkPort !== undefined &&
      !(Number.isInteger(req.checkPort) && req.checkPort >= 1 && req.checkPort <= 65535)
    )
      throw bad(`checkPort ${req.checkPort} is not a TCP port`);
    const words = (env: Record<string, string>, what: string) =>
      Object.entries(env).map(([k, v]) => {
        if (!ENV_NAME.test(k)) throw bad(`${what}: ${JSON.stringify(k)} is not a variable name`);
        return `${k}=${v}`;
      });
    // UGRO_RUN_ID is the marker stop.sh finds the run's processes by: always there, always this
    // run's. UGRO_* stay UGRO's; for any other name in both, the job's value is the one it sees.
    const runId = req.ugroEnv.UGRO_RUN_ID ?? meta.meta.runId;
    if (runId !== meta.meta.runId) throw bad(`UGRO_RUN_ID ${runId} is not the run's id ${meta.meta.runId}`);
    const ugroEnv = { ...req.ugroEnv, UGRO_RUN_ID: runId };
    const jobEnv = Object.fromEntries(Object.entries(req.jobEnv).filter(([k]) => !k.startsWith('UGRO_')));
    const args = [
      runDir,
      req.rdzvAddr,
      req.checkPort !== undefined ? String(req.checkPort) : '',
      (this.options.scripts ?? runtimeScripts()).rank,
      JSON.stringify(meta.meta),
      ...words(ugroEnv, 'ugroEnv'),
      '--',
      ...words(jobEnv, 'jobEnv'),
      ...req.argv,
    ];
    if (args.some((a) => a.includes('\0'))) throw bad('a NUL byte cannot be passed to a program');
    const res = await this.run(host, 'launch', args, { timeoutMs: RUNTIME_TIMEOUTS.launchMs });
    const a = launchAnswerOf(res.stdout);
    if (a.result === 'port-busy') {
      throw new HostError(
        host.name,
        'port-busy',
        `port ${a.port} is already listening (another program, or a run UGRO does not know about): ` +
          `${req.dir} was not started`,
      );
    }
    if (a.result === 'error' || res.code !== 0) {
      throw new HostError(
        host.name,
        'other',
        `launch of ${req.dir} failed (exit ${res.code}): ${said(res, a.result === 'error' ? a.why : undefined)}`,
      );
    }
    return { pid: a.pid, existed: a.result === 'exists' };
  }

  async stop(host: Host, req: StopRequest): Promise<{ remaining: number; killed: boolean }> {
    const runDir = this.runDir(host, req.dir);
    const graceMs = stopGraceMs(host, req);
    const res = await this.run(host, 'stop', [runDir, req.runId, String(graceMs), req.reason], {
      timeoutMs: graceMs + RUNTIME_TIMEOUTS.stopMarginMs,
    });
    const a = stopAnswerOf(res.stdout);
    if ('error' in a)
      throw new HostError(host.name, 'other', `stop of ${req.dir} failed (exit ${res.code}): ${a.error}`);
    return a;
  }

  async wait(host: Host, dir: string, signal: AbortSignal): Promise<void> {
    const res = await this.run(host, 'wait', [this.runDir(host, dir)], { signal });
    if (signal.aborted || waitAnswerOf(res.stdout)) return;
    throw new HostError(
      host.name,
      'channel',
      `waiting for ${dir} ended without an answer (exit ${res.code}): ${said(res)}`,
    );
  }

  async archive(host: Host, dir: string, nowMs: number, keepDays = 7): Promise<void> {
    this.runDir(host, dir);
    const cutoff = Math.max(0, Math.round(nowMs - keepDays * 86_400_000));
    const res = await this.run(host, 'archive', [host.paths.runs, dir, String(Math.round(nowMs)), String(cutoff)], {
      timeoutMs: RUNTIME_TIMEOUTS.archiveMs,
    });
    const a = archiveAnswerOf(res.stdout);
    if ('error' in a || res.code !== 0)
      throw new HostError(
        host.name,
        'other',
        `cannot move run ${dir} aside (exit ${res.code}): ${said(res, 'error' in a ? a.error : undefined)}`,
      );
  }

  async lease(host: Host, owner: string, ttlSeconds: number, release = false): Promise<LeaseResult> {
    const res = await this.run(
      host,
      'lease',
      [posix.join(host.paths.runs, LEASE_FILE), owner, String(Math.ceil(ttlSeconds)), release ? 'release' : 'acquire'],
      { timeoutMs: RUNTIME_TIMEOUTS.leaseMs },
    );
    const a = leaseAnswerOf(res.stdout);
    if ('error' in a) throw new HostError(host.name, 'other', `lease failed (exit ${res.code}): ${said(res, a.error)}`);
    return a;
  }

  async listeningPorts(host: Host): Promise<Set<number>> {
    const res = await this.run(host, 'ports', [], { timeoutMs: RUNTIME_TIMEOUTS.portsMs });
    const ports = portsOf(res.stdout);
    if (!ports || res.code !== 0)
      throw new HostError(host.name, 'other', `cannot list listening ports (exit ${res.code}): ${said(res)}`);
    return ports;
  }

  async syncScripts(host: Host, localDir: string, hash: string): Promise<boolean> {
    if (!/^[0-9a-f]{8,128}$/.test(hash)) throw new HostError(host.name, 'config', `scripts hash ${hash} is not hex`);
    const marker = async (args: string[]) => {
      const res = await this.run(host, 'scripts-hash', [host.paths.scripts, ...args], {
        timeoutMs: RUNTIME_TIMEOUTS.scriptsHashMs,
      });
      const a = scriptsHashOf(res.stdout);
      if ('error' in a)
        throw new HostError(host.name, 'other', `scripts marker (exit ${res.code}): ${said(res, a.error)}`);
      return a.hash;
    };
    if ((await marker([])) === hash) return false;
    await this.transport.upload(host, localDir, host.paths.scripts);
    await marker([hash]);
    return true;
  }

  probe(host: Host): Promise<NodeHealth> {
    return this.transport.probe(host);
  }

  async readLog(host: Host, dir: string, rank: number, tail?: number): Promise<{ text: string; offset: number }> {
    if (!Number.isInteger(rank) || rank < 0) throw new HostError(host.name, 'config', `rank ${rank} is not a rank`);
    if (tail !== undefined && !(Number.isInteger(tail) && tail >= 0))
      throw new HostError(host.name, 'config', `tail ${tail} is not a line count`);
    const res = await this.run(
      host,
      'read-log',
      [this.runDir(host, dir), String(rank), ...(tail !== undefined ? [String(tail)] : [])],
      { timeoutMs: RUNTIME_TIMEOUTS.readLogMs },
    );
    const a = logOf(res.stdout);
    if ('error' in a)
      throw new HostError(host.name, 'other', `cannot read the log of rank ${rank} of ${dir}: ${said(res, a.error)}`);
    return a;
  }

  /**
   * Streams the raw log bytes to onData. On a failure (connection lost) it throws; the caller
   * resumes from `offset` plus the bytes onData got.
   */
  async followLog(
    host: Host,
    dir: string,
    rank: number,
    offset: number,
    onData: (b: Buffer) => void,
    signal?: AbortSignal,
  ): Promise<number> {
    if (!Number.isInteger(rank) || rank < 0) throw new HostError(host.name, 'config', `rank ${rank} is not a rank`);
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new HostError(host.name, 'config', `offset ${offset} is not a byte offset`);
    let got = 0;
    const res = await this.run(host, 'follow-log', [this.runDir(host, dir), String(rank), String(offset)], {
      onStdout: (b) => {
        got += b.length;
        onData(b);
      },
      ...(signal ? { signal } : {}),
    });
    if (signal?.aborted) return offset + got;
    if (res.code !== 0) {
      throw new HostError(
        host.name,
        res.code === null ? 'channel' : 'other',
        `following the log of rank ${rank} of ${dir} stopped (exit ${res.code}) at byte ${offset + got}: ${said(res)}`,
      );
    }
    return offset + got;
  }

  async readMetrics(host: Host, dir: string, offset: number): Promise<MetricsChunk> {
    if (!Number.isSafeInteger(offset) || offset < 0)
      throw new HostError(host.name, 'config', `offset ${offset} is not a byte offset`);
    const res = await this.run(host, 'metrics', [this.runDir(host, dir), String(offset), String(METRICS_CHUNK_BYTES)], {
      timeoutMs: RUNTIME_TIMEOUTS.metricsMs,
    });
    const a = metricsChunkOf(res.stdout);
    if ('error' in a)
      throw new HostError(host.name, 'other', `cannot read the metrics of ${dir}: ${said(res, a.error)}`);
    const lines = a.lines.map(metricsOfLine);
    // One line longer than a whole chunk would never end: skip what is left of the file.
    const stuck = a.next === offset && !a.lines.length && a.size - offset >= METRICS_CHUNK_BYTES;
    return { lines, next: stuck ? a.size : a.next, size: a.size };
  }

  async readProgress(host: Host, runs: readonly ProgressAsk[], signal?: AbortSignal): Promise<ProgressRead[]> {
    const out: ProgressRead[] = [];
    for (let i = 0; i < runs.length; i += PROGRESS_DIRS_PER_EXEC) {
      const args = [host.paths.runs];
      for (const r of runs.slice(i, i + PROGRESS_DIRS_PER_EXEC)) {
        this.runDir(host, r.dir);
        if (r.sig !== undefined && !/^[0-9.]{0,64}$/.test(r.sig))
          throw new HostError(
            host.name,
            'config',
            `progress signature ${JSON.stringify(r.sig)} is not digits and dots`,
          );
        args.push(r.dir, r.sig ?? '');
      }
      const res = await this.run(host, 'progress', args, {
        timeoutMs: RUNTIME_TIMEOUTS.progressMs,
        ...(signal ? { signal } : {}),
      });
      if (signal?.aborted) return out;
      const a = progressAnswerOf(res.stdout);
      if ('error' in a || res.code !== 0)
        throw new HostError(
          host.name,
          'other',
          `cannot read progress (exit ${res.code}): ${said(res, 'error' in a ? a.error : undefined)}`,
        );
      out.push(...a);
    }
    return out;
  }

  lastHeard(host: Host): number | undefined {
    return this.transport.lastHeard(host);
  }

  reach(host: Host): Promise<void> {
    return this.transport.reach(host);
  }

  async listCheckpoints(
    host: Host,
    dir: string,
    opts: { sha256?: boolean; runsOf?: string; signal?: AbortSignal } = {},
  ): Promise<CheckpointListing> {
    if (!posix.isAbsolute(dir)) throw new HostError(host.name, 'config', `checkpoint dir ${dir} is not absolute`);
    const runs = opts.runsOf !== undefined ? [host.paths.runs, opts.runsOf] : [];
    const res = await this.run(host, 'checkpoints', ['list', dir, opts.sha256 ? '1' : '0', ...runs], {
      timeoutMs: RUNTIME_TIMEOUTS.checkpointsMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (res.code !== 0 && !res.stdout.includes('@@error'))
      throw new HostError(host.name, 'other', `listing checkpoints in ${dir} failed (exit ${res.code}): ${said(res)}`);
    return checkpointListingOf(host.name, res.stdout);
  }

  async deleteCheckpoints(
    host: Host,
    dir: string,
    names: readonly string[],
  ): Promise<{ name: string; sizeBytes: number }[]> {
    if (!posix.isAbsolute(dir)) throw new HostError(host.name, 'config', `checkpoint dir ${dir} is not absolute`);
    if (!names.length) return [];
    const res = await this.run(host, 'checkpoints', ['delete', dir, ...names], {
      timeoutMs: RUNTIME_TIMEOUTS.checkpointsMs,
    });
    return deletedCheckpointsOf(host.name, res.stdout);
  }

  async copyCheckpoint(
    from: Host,
    fromDir: string,
    to: Host,
    toDir: string,
    name: string,
    onProgress?: (bytes: number) => void,
  ): Promise<{ bytes: number; sha256: string }> {
    if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(name)) {
      throw new HostError(from.name, 'config', `${JSON.stringify(name)} is not a checkpoint name`);
    }
    const src = posix.join(fromDir, `${name}.pt`);
    const dst = posix.join(toDir, `${name}.pt`);
    const sum = async (h: Host, path: string) => {
      const res = await this.run(h, 'checksum', [path], { timeoutMs: RUNTIME_TIMEOUTS.checksumMs });
      const a = checksumOf(res.stdout);
      if ('error' in a) throw new HostError(h.name, 'other', `checksum of ${path}: ${said(res, a.error)}`);
      return a;
    };
    const before = await sum(from, src);
    const moved = await this.transport.copyFile(from, src, to, dst, onProgress);
    const after = await sum(to, dst);
    if (moved.sha256 !== before.sha256 || after.sha256 !== before.sha256 || after.size !== before.size) {
      throw new HostError(
        to.name,
        'other',
        `checkpoint ${name} copied from ${from.name} does not match: source ${before.sha256} (${before.size} B), ` +
          `streamed ${moved.sha256}, copy ${after.sha256} (${after.size} B)`,
      );
    }
    return { bytes: moved.bytes, sha256: after.sha256 };
  }
}
