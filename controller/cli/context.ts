/**
 * What every CLI command gets: the global flags, output sinks, the environment, and services
 * built on first use. Nothing heavy is imported here: the cluster loader (zod, yaml) and the SSH
 * pool (ssh2) load when a command first asks for them, so `ugro --help` never pays for them.
 */
import { resolve } from 'node:path';
import type { Cluster } from '../../config/cluster.ts';
import type { Backend } from '../backends/api.ts';
import type { SshPool } from '../backends/ssh/pool.ts';

export interface Io {
  /** A line (or lines) on stdout; the newline is added. */
  out: (s: string) => void;
  /** A line on stderr; the newline is added. */
  err: (s: string) => void;
  /** Bytes to stdout as they are (a streamed log); without it, they go through out(). */
  write?: (chunk: string | Uint8Array) => void;
}

export type Env = Record<string, string | undefined>;

/** What talks to the hosts, replaceable in tests (production default: SshBackend over SSH). */
export interface CliDeps {
  runtime?: (cluster: Cluster) => Backend;
  /** What `-f -` reads (default: this process's stdin). */
  stdin?: () => AsyncIterable<Uint8Array | string>;
}

/** The global flags (`--cluster`, `--jobs`), read when a command runs (commander fills them first). */
export interface GlobalFlags {
  cluster?: string;
  jobs?: string;
}

export class CliContext {
  /**
   * 'failed' when a command reported a failure itself (an invalid file among several, a host
   * NotReady) and carried on; main.ts turns it into exit code 1.
   */
  outcome: 'ok' | 'failed' = 'ok';
  private cluster?: Promise<Cluster>;
  private pool?: SshPool;

  constructor(
    readonly io: Io,
    readonly env: Env,
    private readonly flags: () => GlobalFlags,
    private readonly deps: CliDeps = {},
  ) {}

  /** Stream bytes to stdout unchanged (no newline added). */
  raw(chunk: string | Uint8Array): void {
    if (this.io.write) this.io.write(chunk);
    else if (chunk.length) this.io.out(Buffer.from(chunk).toString('utf8').replace(/\n$/, ''));
  }

  /** This command's stdin (`apply -f -`). */
  stdin(): AsyncIterable<Uint8Array | string> {
    return this.deps.stdin ? this.deps.stdin() : process.stdin;
  }

  /** Mark the command as failed (exit 1) after it has said why. */
  fail(): void {
    this.outcome = 'failed';
  }

  /** --cluster, then $UGRO_CLUSTER, then config/cluster.yaml (relative to the working directory). */
  async clusterFile(): Promise<string> {
    const { resolveClusterFile } = await import('../../config/cluster.ts');
    return resolveClusterFile(this.flags().cluster, this.env);
  }

  /** --jobs, then $UGRO_JOBS, then ./jobs. */
  get jobsDir(): string {
    return resolve(this.flags().jobs ?? this.env.UGRO_JOBS ?? 'jobs');
  }

  /** The cluster inventory, read and validated once (a ValidationError lists every problem). */
  loadCluster(): Promise<Cluster> {
    this.cluster ??= import('../../config/cluster.ts').then((m) =>
      m.loadCluster(m.resolveClusterFile(this.flags().cluster, this.env), m.defaultExpandEnv(this.env)),
    );
    return this.cluster;
  }

  /** One pooled SSH connection per host, closed by close(). */
  async ssh(): Promise<SshPool> {
    const cluster = await this.loadCluster();
    if (!this.pool) {
      const [{ SshPool }, { allHosts }] = await Promise.all([
        import('../backends/ssh/pool.ts'),
        import('../../config/cluster.ts'),
      ]);
      // A Slurm cluster's login host too (the cluster file's slurm:), with the same pinned keys.
      this.pool ??= new SshPool(allHosts(cluster), { env: this.env });
    }
    return this.pool;
  }

  /**
   * The typed host operations (read a rank's log, follow it) over the SSH pool; with a `slurm:`
   * section, the Slurm backend for its login host behind the same interface.
   */
  async runtime(): Promise<Backend> {
    if (this.deps.runtime) return this.deps.runtime(await this.loadCluster());
    const [cluster, pool, { SshBackend }, { SshTransport }, { backendFor }] = await Promise.all([
      this.loadCluster(),
      this.ssh(),
      import('../backends/ssh/backend.ts'),
      import('../backends/ssh/transport.ts'),
      import('../backends/router.ts'),
    ]);
    return backendFor(cluster, new SshBackend(new SshTransport(pool, cluster)), pool);
  }

  close(): void {
    this.pool?.close();
  }
}
