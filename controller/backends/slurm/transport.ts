/**
 * How the Slurm backend reaches its login host: a script run inline (`sh -c TEXT NAME ARGS…`, every
 * word quoted) and an atomic file write. SshSlurmTransport is the real one, over the controller's pool.
 */
import type { Host } from '../../../config/cluster.ts';
import type { ExecResult, SshPool } from '../ssh/pool.ts';

/** What the Slurm backend needs from a connection to the login host. */
export interface SlurmTransport {
  /** `sh -c TEXT NAME ARGS…` on the host, every word quoted. */
  exec(
    host: Host,
    text: string,
    name: string,
    args: readonly string[],
    opts?: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<ExecResult>;
  /** Write a file atomically (temp name, then rename): sftp, never a shell. */
  writeFile(host: Host, path: string, data: string): Promise<void>;
}

/** SlurmTransport over the controller's SSH pool. */
export class SshSlurmTransport implements SlurmTransport {
  constructor(private readonly pool: Pick<SshPool, 'exec' | 'host'>) {}

  exec(
    host: Host,
    text: string,
    name: string,
    args: readonly string[],
    opts: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<ExecResult> {
    return this.pool.exec(host.name, ['sh', '-c', text, name, ...args], opts);
  }

  writeFile(host: Host, path: string, data: string): Promise<void> {
    return this.pool.host(host.name).writeFile(path, data, 0o644);
  }
}
