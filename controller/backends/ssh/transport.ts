/**
 * How the SSH backend reaches a host: HostTransport runs one of UGRO's host runtime scripts
 * (scripts/runtime/NAME.sh) with arguments, uploads a directory, probes health and streams a file
 * between hosts. SshTransport is the real one, over the pooled connections; tests have an in-memory
 * stand-in that models the scripts (tests/support/fake-hosts.ts) and a local one that runs the real
 * scripts on this machine. The typed operations on top (backend.ts) are shared by every transport,
 * so the parsing is always the real one.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Cluster, Host } from '../../../config/cluster.ts';
import { HostError } from '../errors.ts';
import type { NodeHealth } from '../health.ts';
import type { ExecResult, SshPool } from './pool.ts';
import { probeHost } from './probe.ts';
import { type RuntimeScript, type RuntimeScripts, runtimeScripts } from './scripts.ts';

export type { RuntimeScript };

export interface RunScriptOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  onStdout?: (chunk: Buffer) => void;
}

export interface HostTransport {
  /** `sh -c <scripts/runtime/NAME.sh> ugro-NAME ARGS…` on the host, every word quoted. */
  run(host: Host, script: RuntimeScript, args: readonly string[], opts?: RunScriptOptions): Promise<ExecResult>;
  /** Copy a local directory tree to `remoteDir` on the host (files replaced atomically). */
  upload(host: Host, localDir: string, remoteDir: string): Promise<void>;
  /** Health: never throws; an unreachable host is NotReady with the reason. */
  probe(host: Host): Promise<NodeHealth>;
  /** When the host last said anything (keepalive replies included), ms since the epoch; undefined if never. */
  lastHeard(host: Host): number | undefined;
  /** Connect if not connected (nothing is run): resolves when the host answers, throws why not. */
  reach(host: Host): Promise<void>;
  /**
   * Stream a file from one host to another through this controller (never a shell on either
   * side): written to a temp name beside `toPath` and renamed into place. Resolves with the byte
   * count and the SHA-256 of what passed through.
   */
  copyFile(
    from: Host,
    fromPath: string,
    to: Host,
    toPath: string,
    onProgress?: (bytes: number) => void,
  ): Promise<{ bytes: number; sha256: string }>;
}

/** HostTransport over SSH: the scripts inline through the pool, sftp uploads, health's probe. */
export class SshTransport implements HostTransport {
  /** `pool`: an SshPool (or anything with its exec and host, e.g. a recorder). */
  constructor(
    private readonly pool: Pick<SshPool, 'exec' | 'host'>,
    private readonly cluster: Pick<Cluster, 'environment' | 'health'>,
    private readonly scripts?: RuntimeScripts,
  ) {}

  run(host: Host, script: RuntimeScript, args: readonly string[], opts: RunScriptOptions = {}): Promise<ExecResult> {
    const text = (this.scripts ?? runtimeScripts()).text(script);
    return this.pool.exec(host.name, ['sh', '-c', text, `ugro-${script}`, ...args], {
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      onStdout: opts.onStdout,
    });
  }

  async upload(host: Host, localDir: string, remoteDir: string): Promise<void> {
    await this.pool.host(host.name).upload(localDir, remoteDir);
  }

  probe(host: Host): Promise<NodeHealth> {
    return probeHost(this.cluster, host, { connection: (h) => this.pool.host(h), scripts: this.scripts });
  }

  lastHeard(host: Host): number | undefined {
    return this.pool.host(host.name).lastHeardAt;
  }

  reach(host: Host): Promise<void> {
    return this.pool.host(host.name).ensureConnected();
  }

  async copyFile(
    from: Host,
    fromPath: string,
    to: Host,
    toPath: string,
    onProgress?: (bytes: number) => void,
  ): Promise<{ bytes: number; sha256: string }> {
    const src = this.pool.host(from.name);
    const dst = this.pool.host(to.name);
    const mk = await dst.exec(['mkdir', '-p', '--', posix.dirname(toPath)]);
    if (mk.code !== 0) throw new HostError(to.name, 'other', `mkdir ${posix.dirname(toPath)}: ${mk.stderr.trim()}`);
    const tmp = `${toPath}.ugro-tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    const hash = createHash('sha256');
    let bytes = 0;
    const reader = await src.readStream(fromPath);
    const writer = await dst.writeStream(tmp);
    try {
      await pipeline(
        reader,
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const c of chunks) {
            hash.update(c);
            bytes += c.length;
            onProgress?.(bytes);
            yield c;
          }
        },
        writer,
      );
      await dst.rename(tmp, toPath);
    } catch (e) {
      await dst.exec(['rm', '-f', '--', tmp]).catch(() => undefined);
      throw e instanceof HostError
        ? e
        : new HostError(to.name, 'other', `copying ${from.name}:${fromPath}: ${(e as Error).message}`);
    }
    return { bytes, sha256: hash.digest('hex') };
  }
}
