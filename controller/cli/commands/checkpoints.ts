/**
 * `ugro checkpoints NAME [-o table|wide|json]`: every checkpoint of every attempt of a job, on every
 * host: step, the hosts holding a copy, size, sha256, the metrics at that step, the attempt that
 * wrote it with its spec hash and (GitOps) revision, and the model versions promoted from it.
 */
import type { Command } from 'commander';
import { requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('checkpoints')
    .description("a job's checkpoints on every host: step, hosts, size, sha256, metrics, attempt, revision")
    .argument('<name>')
    .option('-o, --output <format>', 'table, wide (full sha256, every metric) or json', 'table')
    .action(async (raw: string, o: { output: string }) => {
      const name = requireJobName(raw);
      const [{ parseFormat, serialize }, jobs, { listJobCheckpoints }, { ModelRegistry }, { checkpointsTable }] =
        await Promise.all([
          import('../output.ts'),
          import('../jobs.ts'),
          import('../checkpoint-list.ts'),
          import('../../store/models.ts'),
          import('../render/checkpoints.ts'),
        ]);
      const format = parseFormat(o.output, ['table', 'wide', 'json'] as const);
      const store = jobs.openStore(ctx);
      const { status } = await jobs.requireJob(store, name);
      const [cluster, runtime] = await Promise.all([ctx.loadCluster(), ctx.runtime()]);
      const [list, models] = await Promise.all([
        listJobCheckpoints(runtime, cluster, store, name, status),
        ModelRegistry.of(ctx.jobsDir).list(),
      ]);
      const promoted = models.versions.filter((v) => v.job === name);
      for (const u of list.unreachable) ctx.io.err(`warning: ${u.host}: not listed: ${u.why}`);
      if (format === 'json') {
        const rows = list.rows.map((r) => ({
          ...r,
          models: promoted
            .filter((v) => v.checkpoint === r.name && v.sha256 === r.sha256)
            .map((v) => `${v.model}:v${v.version}`),
        }));
        ctx.io.out(await serialize({ job: name, checkpoints: rows, unreachable: list.unreachable }, 'json'));
        return;
      }
      if (!list.rows.length) {
        ctx.io.out(`no checkpoints of ${name} on ${[...list.dirs].map(([h, d]) => `${h}:${d}`).join(', ')}`);
        return;
      }
      ctx.io.out(checkpointsTable(list.rows, promoted, { wide: format === 'wide', now: new Date() }));
    });
}
