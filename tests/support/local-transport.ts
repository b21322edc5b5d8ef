/**
 * Test stand-in for SSH: LocalTransport runs the REAL host scripts (scripts/runtime/) with
 * `sh -c` on this machine, as SshTransport sends them to a host (same text, same argv, no
 * login shell in between), for hosts whose paths point into a temp dir. No SSH, no root.
 * `localHost(root)` makes such a host. Upload is a local copy; probe runs the real probe.sh
 * and judges it.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Cluster, Host } from '../../config/cluster.ts';
import { HostError } from '../../controller/backends/errors.ts';
import { judge, type NodeHealth, parseProbe } from '../../controller/backends/health.ts';
import type { ExecResult } from '../../controller/backends/ssh/pool.ts';
import { type RuntimeScripts, runtimeScripts, type SentScript } from '../../controller/backends/ssh/scripts.ts';
import type { HostTransport, RunScriptOptions, RuntimeScript } from '../../controller/backends/ssh/transport.ts';

/** A host whose every path lies under `root` (created), for LocalTransport. */
export function localHost(root: string, name = 'local', over: Partial<Host> = {}): Host {
  const project = join(root, 'ugro');
  const paths = {
    home: root,
    project,
    scripts: join(project, 'scripts'),
    runs: join(project, 'runs'),
    checkpoints: join(project, 'checkpoints'),
    checkpointRoots: [],
    logs: join(project, 'logs'),
    experiments: join(project, 'experiments'),
  };
  mkdirSync(root, { recursive: true });
  return {
    name,
    hostname: name,
    address: '127.0.0.1',
    port: 22,
    user: process.env.USER ?? 'root',
    rank: 0,
    role: 'master',
    gpus: [],
    paths,
    ssh: { knownHosts: '/dev/null', useAgent: false, connectTimeoutMs: 5000, keepaliveMs: 15000 },
    python: 'python3',
    labels: {},
    ...over,
  };
}

export interface LocalTransportOptions {
  scripts?: RuntimeScripts;
  /** The environment the scripts start with (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** What probe judges against (default: driver 525.60.13, 5 GB free disk). */
  cluster?: Pick<Cluster, 'environment' | 'health'>;
}

export interface LocalCall {
  host: string;
  script: SentScript;
  args: readonly string[];
}

export class LocalTransport implements HostTransport {
  readonly calls: LocalCall[] = [];

  constructor(private readonly opts: LocalTransportOptions = {}) {}

  private scripts(): RuntimeScripts {
    return this.opts.scripts ?? runtimeScripts();
  }

  run(host: Host, script: RuntimeScript, args: readonly string[], opts: RunScriptOptions = {}): Promise<ExecResult> {
    return this.sh(host, script, args, opts);
  }

  /** `sh -c <lib + NAME.sh> ugro-NAME ARGS…` here. Timeout: rejects like SshPool's (HostError). Abort: resolves. */
  sh(host: Host, script: SentScript, args: readonly string[], opts: RunScriptOptions = {}): Promise<ExecResult> {
    this.calls.push({ host: host.name, script, args: [...args] });
    const t0 = performance.now();
    return new Promise((resolve, reject) => {
      // Its own process group, so a timeout or an abort takes its children (flock, tail) too;
      // the runners launch.sh starts are in sessions of their own and live on, as on a host.
      const child = spawn('sh', ['-c', this.scripts().text(script), `ugro-${script}`, ...args], {
        env: this.opts.env ?? process.env,
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      const kill = () => {
        try {
          if (child.pid) process.kill(-child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      };
      const result = (code: number | null, signal: string | null): ExecResult => ({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        durationMs: performance.now() - t0,
      });
      const finish = (fn: () => void) => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const onAbort = () => {
        finish(() => resolve(result(null, null)));
        kill();
      };
      child.stdout.on('data', (b: Buffer) => {
        out.push(b);
        opts.onStdout?.(b);
      });
      child.stderr.on('data', (b: Buffer) => err.push(b));
      child.on('error', (e) => finish(() => reject(new HostError(host.name, 'other', `sh: ${e.message}`))));
      child.on('close', (code, signal) => finish(() => resolve(result(code, signal))));
      if (opts.timeoutMs) {
        timer = setTimeout(() => {
          finish(() =>
            reject(new HostError(host.name, 'timeout', `command did not finish within ${opts.timeoutMs} ms: sh`)),
          );
          kill();
        }, opts.timeoutMs);
      }
      if (opts.signal) {
        if (opts.signal.aborted) onAbort();
        else opts.signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  lastHeard(_host: Host): number | undefined {
    return Date.now();
  }

  async reach(_host: Host): Promise<void> {}

  /** A local copy through a temp name, hashed on the way (as SshTransport streams it). */
  async copyFile(
    _from: Host,
    fromPath: string,
    _to: Host,
    toPath: string,
    onProgress?: (bytes: number) => void,
  ): Promise<{ bytes: number; sha256: string }> {
    const data = readFileSync(fromPath);
    mkdirSync(dirname(toPath), { recursive: true });
    const tmp = `${toPath}.ugro-tmp-${process.pid}`;
    writeFileSync(tmp, data);
    renameSync(tmp, toPath);
    onProgress?.(data.length);
    return { bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') };
  }

  async upload(_host: Host, localDir: string, remoteDir: string): Promise<void> {
    mkdirSync(remoteDir, { recursive: true });
    cpSync(localDir, remoteDir, { recursive: true });
  }

  async probe(host: Host): Promise<NodeHealth> {
    const res = await this.sh(host, 'probe', [host.paths.project, host.python], { timeoutMs: 15_000 });
    const cluster = this.opts.cluster ?? {
      environment: { min_driver_version: '525.60.13' } as Cluster['environment'],
      health: { maxClockOffsetMs: 2000, minFreeDiskGb: 5 },
    };
    return judge(host, cluster, parseProbe(res.stdout), {}, new Date().toISOString());
  }
}
