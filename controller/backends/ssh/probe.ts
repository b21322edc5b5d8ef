/**
 * Node health over SSH: one probe exec per host (in parallel; scripts/runtime/probe.sh, sent like the
 * runtime's scripts), its clock offset and round trip from a tiny exec of their own, judged by ../health.ts.
 * Nothing here ever reports a node healthy that was not actually probed.
 */
import type { Cluster, Host } from '../../../config/cluster.ts';
import { HostError } from '../errors.ts';
import { type GpuInfo, judge, type NodeHealth, parseProbe } from '../health.ts';
import type { HostConnection } from './pool.ts';
import { type RuntimeScripts, runtimeScripts } from './scripts.ts';

export interface HealthDeps {
  connection: (host: string) => HostConnection;
  /** Where probe.sh comes from (default: the scripts shipped with this code). */
  scripts?: RuntimeScripts;
  now?: () => number;
  wallClockNs?: () => bigint;
  clock?: () => Date;
}

/** Probe one host; never throws: an unreachable host is NotReady with the reason. */
export async function probeHost(
  cluster: Pick<Cluster, 'environment' | 'health'>,
  host: Host,
  deps: HealthDeps,
): Promise<NodeHealth> {
  const now = deps.now ?? (() => performance.now());
  const wall = deps.wallClockNs ?? (() => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6)));
  const checkedAt = (deps.clock?.() ?? new Date()).toISOString();
  const conn = deps.connection(host.name);
  const wasConnected = conn.connected;
  const base = {
    name: host.name,
    address: `${host.address}:${host.port}`,
    user: host.user,
    role: host.role,
    gpus: [] as GpuInfo[],
    warnings: [] as string[],
    checkedAt,
  };
  try {
    // Connect first so round-trip time and clock offset are not skewed by the handshake.
    if (!conn.connected) await conn.exec(['true'], { timeoutMs: host.ssh.connectTimeoutMs + 2000 });
    // Clock and round trip from a tiny exec of its own: timing the big probe's first byte would
    // add the remote shell's start-up to one side of the midpoint and bias the offset.
    const t0 = now();
    const w0 = wall();
    const clk = await conn.exec(['date', '+%s%N'], { timeoutMs: host.ssh.connectTimeoutMs + 2000 });
    const w1 = wall();
    const rttMs = now() - t0;
    const remoteNs = /^\d+$/.test(clk.stdout.trim()) ? BigInt(clk.stdout.trim()) : undefined;
    const clockOffsetMs = remoteNs !== undefined ? Number(remoteNs - (w0 + w1) / 2n) / 1e6 : undefined;
    const probe = (deps.scripts ?? runtimeScripts()).text('probe');
    const res = await conn.exec(['sh', '-c', probe, 'ugro-probe', host.paths.project, host.python], {
      timeoutMs: 15_000,
    });
    const facts = parseProbe(res.stdout);
    if (res.code !== 0 && !res.stdout.includes('@@end')) {
      return {
        ...base,
        status: 'NotReady',
        reasons: [`probe failed (exit ${res.code}): ${res.stderr.trim().split('\n').slice(-1)[0] ?? ''}`],
      };
    }
    return judge(
      host,
      cluster,
      facts,
      { connectMs: wasConnected ? undefined : conn.lastConnectMs, rttMs, clockOffsetMs },
      checkedAt,
    );
  } catch (e) {
    const msg =
      e instanceof HostError
        ? e.message.replace(new RegExp(`^${host.name}: `), '')
        : `probe failed: ${(e as Error).message}`;
    return { ...base, status: 'NotReady', reasons: [msg] };
  }
}

/** All hosts in parallel. */
export function probeCluster(cluster: Cluster, deps: HealthDeps, only?: string[]): Promise<NodeHealth[]> {
  const hosts = only?.length ? cluster.hosts.filter((h) => only.includes(h.name)) : cluster.hosts;
  return Promise.all(hosts.map((h) => probeHost(cluster, h, deps)));
}
