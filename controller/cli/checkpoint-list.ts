/**
 * A job's checkpoints on every SSH host of the cluster, as `ugro checkpoints` and `ugro promote`
 * read them: one checkpoints.sh exec per host, all in parallel over the CLI's pooled connections,
 * with sha256 (computed once per file on its host, then cached beside it) and the metrics at each
 * step, merged into rows by core/checkpoints.ts.
 */
import { posix } from 'node:path';
import type { Cluster, Host } from '../../config/cluster.ts';
import type { JobStatus } from '../api/status.ts';
import type { Backend } from '../backends/api.ts';
import { type CheckpointRow, checkpointRows, type HostListing } from '../core/checkpoints.ts';
import { checkpointDir } from '../core/launch.ts';
import type { JobStore } from '../store/store.ts';

export interface JobCheckpoints {
  rows: CheckpointRow[];
  /** Hosts that could not be listed, and why. */
  unreachable: { host: string; why: string }[];
  /** Where the job's checkpoints live on each host (its spec's checkpoint.dir, else the default). */
  dirs: Map<string, string>;
}

/** The hosts a job's checkpoints can be on: every host but a Slurm login host (its nodes' storage is theirs). */
export function checkpointHosts(cluster: Cluster): Host[] {
  return cluster.hosts.filter((h) => h.slurm === undefined);
}

export async function listJobCheckpoints(
  runtime: Backend,
  cluster: Cluster,
  store: JobStore,
  name: string,
  status: JobStatus | undefined,
): Promise<JobCheckpoints> {
  const spec = await store.readSpec(name);
  const dirs = new Map<string, string>();
  const unreachable: { host: string; why: string }[] = [];
  const listings = await Promise.all(
    checkpointHosts(cluster).map(async (h): Promise<HostListing | undefined> => {
      const d = spec.kind === 'valid' ? checkpointDir(spec.job, h) : undefined;
      if (d && !d.ok) {
        unreachable.push({ host: h.name, why: d.why });
        return undefined;
      }
      const dir = d?.path ?? posix.join(h.paths.checkpoints, name);
      dirs.set(h.name, dir);
      try {
        const l = await runtime.listCheckpoints(h, dir, { sha256: true, runsOf: name });
        return { host: h.name, dir, ...(l.latest ? { latest: l.latest } : {}), files: l.files, runs: l.runs };
      } catch (e) {
        unreachable.push({ host: h.name, why: (e as Error).message });
        return undefined;
      }
    }),
  );
  const rows = checkpointRows(
    listings.filter((l): l is HostListing => !!l),
    status ? { specHash: status.specHash, ...(status.revision ? { revision: status.revision } : {}) } : undefined,
  );
  return { rows, unreachable: unreachable.sort((a, b) => a.host.localeCompare(b.host)), dirs };
}
