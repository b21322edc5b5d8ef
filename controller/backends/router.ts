/**
 * One host interface over both backends: calls for a Slurm cluster's login host (a Host with
 * `slurm`) go to the Slurm backend, every other host's to the SSH one. The controller and the CLI
 * hold only this; nothing above it knows which backend ran a job.
 */
import type { Host } from '../../config/cluster.ts';
import type { HostRuntimeApi, LaunchRequest, ProgressAsk, StopRequest } from './api.ts';
import { HostError } from './errors.ts';

export class BackendRuntime implements HostRuntimeApi {
  constructor(
    private readonly ssh: HostRuntimeApi,
    private readonly slurm: HostRuntimeApi,
  ) {}

  private of(host: Host): HostRuntimeApi {
    return host.slurm ? this.slurm : this.ssh;
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
  listeningPorts(host: Host) {
    return this.of(host).listeningPorts(host);
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
    const rt = this.of(host);
    return (rt.followLog as (...a: unknown[]) => Promise<number>).call(rt, host, dir, rank, offset, onData, signal);
  }
  readMetrics(host: Host, dir: string, offset: number) {
    const rt = this.of(host) as { readMetrics?: HostRuntimeApi['readMetrics'] };
    if (!rt.readMetrics) throw new HostError(host.name, 'config', 'reading metrics is not supported here');
    return rt.readMetrics.call(rt, host, dir, offset);
  }
  /** SSH hosts only: a Slurm job's progress comes with its observe (known gap). */
  readProgress(host: Host, runs: readonly ProgressAsk[], signal?: AbortSignal) {
    const rt = host.slurm ? undefined : this.ssh;
    if (!rt?.readProgress) throw new HostError(host.name, 'config', 'reading progress is not supported here');
    return rt.readProgress(host, runs, signal);
  }
  lastHeard(host: Host) {
    return this.of(host).lastHeard(host);
  }
  reach(host: Host) {
    return this.of(host).reach(host);
  }
  copyCheckpoint(
    from: Host,
    fromDir: string,
    to: Host,
    toDir: string,
    name: string,
    onProgress?: (bytes: number) => void,
  ) {
    if (from.slurm || to.slurm) return this.slurm.copyCheckpoint(from, fromDir, to, toDir, name, onProgress);
    return this.ssh.copyCheckpoint(from, fromDir, to, toDir, name, onProgress);
  }
}

/** The production host interface for a cluster: SSH alone, or SSH and Slurm behind one router. */
export async function hostRuntimeFor(
  cluster: { slurm?: Host },
  ssh: HostRuntimeApi,
  pool: ConstructorParameters<typeof import('./slurm/backend.ts').SshSlurmTransport>[0],
): Promise<HostRuntimeApi> {
  if (!cluster.slurm) return ssh;
  const { SlurmRuntime, SshSlurmTransport } = await import('./slurm/backend.ts');
  return new BackendRuntime(ssh, new SlurmRuntime(new SshSlurmTransport(pool), ssh));
}
