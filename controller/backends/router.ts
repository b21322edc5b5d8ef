/**
 * The one place that picks a backend for a host: a table of rows, each a test of the hosts it
 * serves and the backend that serves them, first match wins. The controller and the CLI hold only
 * the router (a Backend like any other); nothing above it knows which backend ran a job. A new
 * backend is one folder beside ssh/ and slurm/ and one row in backendFor.
 */
import type { Host } from '../../config/cluster.ts';
import type { Backend, LaunchRequest, ProgressAsk, StopRequest } from './api.ts';
import { HostError } from './errors.ts';

export interface Route {
  /** Which backend, for messages. */
  name: string;
  serves(host: Host): boolean;
  backend: Backend;
}

export class BackendRouter implements Backend {
  constructor(private readonly routes: readonly Route[]) {}

  private route(host: Host): Route {
    const r = this.routes.find((x) => x.serves(host));
    if (!r) throw new HostError(host.name, 'config', 'no backend serves this host');
    return r;
  }

  private of(host: Host): Backend {
    return this.route(host).backend;
  }

  observe(host: Host, job?: string, checkpointDir?: string) {
    return this.of(host).observe(host, job, checkpointDir);
  }
  launch(host: Host, req: LaunchRequest) {
    return this.of(host).launch(host, req);
  }
  stop(host: Host, req: StopRequest) {
    return this.of(host).stop(host, req);
  }
  wait(host: Host, dir: string, signal: AbortSignal) {
    return this.of(host).wait(host, dir, signal);
  }
  archive(host: Host, dir: string, nowMs: number, keepDays?: number) {
    return this.of(host).archive(host, dir, nowMs, keepDays);
  }
  lease(host: Host, owner: string, ttlSeconds: number, release?: boolean) {
    return this.of(host).lease(host, owner, ttlSeconds, release);
  }
  syncScripts(host: Host, localDir: string, hash: string) {
    return this.of(host).syncScripts(host, localDir, hash);
  }
  probe(host: Host) {
    return this.of(host).probe(host);
  }
  readLog(host: Host, dir: string, rank: number, tail?: number) {
    return this.of(host).readLog(host, dir, rank, tail);
  }
  followLog(host: Host, dir: string, rank: number, offset: number, onData: (b: Buffer) => void, signal?: AbortSignal) {
    return this.of(host).followLog(host, dir, rank, offset, onData, signal);
  }
  readMetrics(host: Host, dir: string, offset: number) {
    const r = this.route(host);
    if (!r.backend.readMetrics) throw new HostError(host.name, 'config', `the ${r.name} backend has no metrics reader`);
    return r.backend.readMetrics(host, dir, offset);
  }
  readProgress(host: Host, runs: readonly ProgressAsk[], signal?: AbortSignal) {
    const r = this.route(host);
    if (!r.backend.readProgress)
      throw new HostError(host.name, 'config', `the ${r.name} backend reports progress with its observe`);
    return r.backend.readProgress(host, runs, signal);
  }
  lastHeard(host: Host) {
    return this.of(host).lastHeard(host);
  }
  reach(host: Host) {
    return this.of(host).reach(host);
  }
  listCheckpoints(host: Host, dir: string, opts?: { sha256?: boolean; runsOf?: string; signal?: AbortSignal }) {
    return this.of(host).listCheckpoints(host, dir, opts);
  }
  deleteCheckpoints(host: Host, dir: string, names: readonly string[]) {
    return this.of(host).deleteCheckpoints(host, dir, names);
  }
  /** A copy between two backends goes through the first row that serves either host (it rides on the other). */
  copyCheckpoint(
    from: Host,
    fromDir: string,
    to: Host,
    toDir: string,
    name: string,
    onProgress?: (bytes: number) => void,
  ) {
    const r = this.routes.find((x) => x.serves(from) || x.serves(to));
    if (!r) throw new HostError(from.name, 'config', 'no backend serves this host');
    return r.backend.copyCheckpoint(from, fromDir, to, toDir, name, onProgress);
  }
}

/** The production backend for a cluster: SSH alone, or one row per backend in front of it. */
export async function backendFor(
  cluster: { slurm?: Host },
  ssh: Backend,
  pool: ConstructorParameters<typeof import('./slurm/transport.ts').SshSlurmTransport>[0],
): Promise<Backend> {
  if (!cluster.slurm) return ssh;
  const [{ SlurmBackend }, { SshSlurmTransport }] = await Promise.all([
    import('./slurm/backend.ts'),
    import('./slurm/transport.ts'),
  ]);
  return new BackendRouter([
    {
      name: 'slurm',
      serves: (h) => h.slurm !== undefined,
      backend: new SlurmBackend(new SshSlurmTransport(pool), ssh),
    },
    { name: 'ssh', serves: () => true, backend: ssh },
  ]);
}
