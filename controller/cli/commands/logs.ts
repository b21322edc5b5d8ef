/**
 * `ugro logs NAME [--rank N] [--tail N] [-f]`: a rank's own log, read from the host that ran it.
 * With -f it streams until the run's runner exits, resuming at the byte already shown when the
 * connection drops (nothing repeated, nothing lost).
 */
import type { Command } from 'commander';
import { NotFoundError } from '../../../config/errors.ts';
import { intFlag, optionalIntFlag, requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

interface LogsOptions {
  rank: string;
  tail?: string;
  follow?: boolean;
}

/** Consecutive failed reconnects before `logs -f` gives up, and the longest pause between them. */
const MAX_RECONNECTS = 30;
const MAX_BACKOFF_MS = 10_000;
/** Failures worth a reconnect: the connection, not the log (a missing run dir fails at once). */
const TRANSIENT = new Set(['unreachable', 'refused', 'timeout', 'channel']);

export function register(program: Command, ctx: CliContext): void {
  program
    .command('logs')
    .description("a rank's log, read from the host that ran it")
    .argument('<name>')
    .option('--rank <n>', 'global rank (0..65535)', '0')
    .option('--tail <n>', 'only the last N lines (0..1000000; default: all)')
    .option('-f, --follow', 'keep streaming (reconnects if the connection drops) until the run ends')
    .action((raw: string, o: LogsOptions) => logs(ctx, raw, o));
}

async function logs(ctx: CliContext, raw: string, o: LogsOptions): Promise<void> {
  const name = requireJobName(raw);
  const rank = intFlag('--rank', o.rank, 0, 65_535);
  const tail = optionalIntFlag('--tail', o.tail, 0, 1_000_000);
  const [{ openStore, requireJob }, { runDirName }, { HostError }] = await Promise.all([
    import('../jobs.ts'),
    import('../../api/run.ts'),
    import('../../backends/errors.ts'),
  ]);
  const { status: st, specFile } = await requireJob(openStore(ctx), name);
  // Open by default (a lab works in the open); users.logs: private makes them the owner's and admins'.
  await (await import('../authz.ts')).mayI(ctx, 'read-logs', { name, status: st, specFile });
  if (!st?.runId || !st.specHash) throw new NotFoundError(`job ${name} has no run yet`);
  const node = st.nodes.find((n) => n.globalRanks.includes(rank));
  if (!node) {
    const ranks = st.nodes.flatMap((n) => n.globalRanks).sort((a, b) => a - b);
    throw new NotFoundError(`rank ${rank} of job ${name} not found (ranks: ${ranks.join(', ') || 'none started yet'})`);
  }
  const [cluster, { allHosts }] = await Promise.all([ctx.loadCluster(), import('../../../config/cluster.ts')]);
  // A Slurm run's ranks are under its cluster's name: their logs are read through the login host.
  const host = allHosts(cluster).find((h) => h.name === node.host);
  if (!host) throw new NotFoundError(`host ${node.host} (rank ${rank}) is not in ${cluster.file}`);
  const dir = runDirName(name, st.specHash, st.attempt);
  const runtime = await ctx.runtime();

  if (!o.follow) {
    const { text } = await runtime.readLog(host, dir, rank, tail);
    ctx.io.out(text.replace(/\n$/, ''));
    return;
  }
  let offset = 0;
  if (tail !== undefined) {
    // The last N lines as the file is now, and its size: following resumes at that byte.
    const r = await runtime.readLog(host, dir, rank, tail);
    ctx.raw(r.text);
    offset = r.offset;
  }
  for (let failures = 0; ; ) {
    const from = offset;
    try {
      await runtime.followLog(host, dir, rank, offset, (b) => {
        offset += b.length;
        ctx.raw(b);
      });
      return;
    } catch (e) {
      if (offset > from) failures = 0; // it streamed before it broke: a fresh series of retries
      if (!(e instanceof HostError && TRANSIENT.has(e.kind)) || ++failures > MAX_RECONNECTS) throw e;
      if (failures === 1) ctx.io.err(`${host.name}: ${e.message.replace(/^[^:]+: /, '')}; reconnecting…`);
      await new Promise((r) => setTimeout(r, Math.min(MAX_BACKOFF_MS, 500 * 2 ** failures)));
    }
  }
}
