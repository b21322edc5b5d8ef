/** What every CLI command gets: resolved options, output sinks, and lazily-built services. */
import { type Cluster, defaultExpandEnv, loadCluster, resolveClusterFile } from '../../config/cluster.ts';
import { SshPool } from '../hosts/ssh.ts';

export interface Io {
  out: (s: string) => void;
  err: (s: string) => void;
}

export class CliContext {
  private cluster?: Cluster;
  private pool?: SshPool;
  constructor(
    readonly io: Io,
    readonly env: Record<string, string | undefined>,
    private readonly clusterFlag: () => string | undefined,
  ) {}

  get clusterFile(): string {
    return resolveClusterFile(this.clusterFlag(), this.env);
  }

  loadCluster(): Cluster {
    this.cluster ??= loadCluster(this.clusterFile, defaultExpandEnv(this.env));
    return this.cluster;
  }

  ssh(): SshPool {
    this.pool ??= new SshPool(this.loadCluster().hosts, { env: this.env });
    return this.pool;
  }

  close(): void {
    this.pool?.close();
  }
}
