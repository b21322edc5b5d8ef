/**
 * A job's preflight over SSH (spec.preflight): `ugro doctor`'s reachability round (doctor.ts's
 * pairRounds) on exactly the gang's hosts, from the job's rendezvous port up, over the pool's
 * connections: a listener on each host, then from each host a connect to every other. One round and
 * bounded (a connect's limit, the listeners' own deadline, the execs' limits). Nothing is left
 * listening: a listener every peer reached ends by itself before this returns (the rendezvous port is
 * free for the launch that follows), the others end with their SSH channel, closed here.
 */
import type { Host } from '../../../config/cluster.ts';
import { type DoctorDeps, type DoctorRaw, pairRounds } from './doctor.ts';

export interface PreflightRaw extends Pick<DoctorRaw, 'listen' | 'connect' | 'targets'> {
  basePort: number;
  hosts: string[];
  ms: number;
}

export interface PreflightOptions {
  /** The job's rendezvous port: the listeners take the first free port from there. */
  port: number;
  /** One connect's limit (default 2000 ms). */
  connectTimeoutMs?: number;
}

export async function runPreflight(hosts: Host[], deps: DoctorDeps, o: PreflightOptions): Promise<PreflightRaw> {
  const now = deps.now ?? (() => performance.now());
  const t0 = now();
  const connectTimeoutMs = o.connectTimeoutMs ?? 2000;
  const rounds = await pairRounds(hosts, hosts, deps, {
    basePort: o.port,
    span: 16,
    connectTimeoutMs,
    // Long enough for every connect (each host's exec limit is its connect limit + 15 s), no longer.
    deadlineS: Math.ceil(connectTimeoutMs / 1000) + 20,
    listenTimeoutMs: connectTimeoutMs + 25_000,
    expectPeers: true,
  });
  return { ...rounds, basePort: o.port, hosts: hosts.map((h) => h.name), ms: now() - t0 };
}
