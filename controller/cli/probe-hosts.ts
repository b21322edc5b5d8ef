/** `ugro health`, `ugro get nodes` and the probe half of `ugro config test`. */
import { NotFoundError } from '../../config/errors.ts';
import { probeCluster } from '../backends/ssh/probe.ts';
import type { CliContext } from './context.ts';
import { serialize } from './output.ts';
import { nodesTable } from './render/nodes.ts';

export const HEALTH_FORMATS = ['table', 'json', 'yaml'] as const;

/** Probe the hosts (all, or those named); the command fails (exit 1) if any is NotReady. */
export async function health(ctx: CliContext, hosts: string[], format: (typeof HEALTH_FORMATS)[number]): Promise<void> {
  const cluster = await ctx.loadCluster();
  const unknown = hosts.filter((h) => !cluster.hosts.some((x) => x.name === h));
  if (unknown.length)
    throw new NotFoundError(
      `host ${unknown.join(', ')} not in ${cluster.file} (hosts: ${cluster.hosts.map((h) => h.name).join(', ')})`,
    );
  const pool = await ctx.ssh();
  const nodes = await probeCluster(cluster, { connection: (h) => pool.host(h) }, hosts);
  ctx.io.out(format === 'table' ? nodesTable(nodes) : await serialize(nodes, format));
  if (!nodes.every((n) => n.status === 'Ready')) ctx.fail();
}
