/**
 * `ugro promote JOB --checkpoint step-N --as NAME [--replicas R]`: register a job's checkpoint as
 * the next version of model NAME (NAME:v1, v2, …) with its lineage: the job, the attempt that wrote
 * it, its step, spec hash, revision, the metrics at its step, its sha256 and where its copies are.
 * With --replicas R it is first copied to other hosts until R hold it (the backend's verified copy:
 * sha256 on both ends, into the job's checkpoint dir there). Only the job's owner or an admin may
 * (exit 4). A promoted checkpoint is kept out of retention (spec.checkpoint.keep) on every host.
 */
import type { Command } from 'commander';
import { NotFoundError, UgroError, UsageError } from '../../../config/errors.ts';
import { intFlag, requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('promote')
    .description("register a job's checkpoint as a model version (NAME:vN) with its lineage")
    .argument('<job>')
    .requiredOption('--checkpoint <name>', 'the checkpoint, e.g. step-400 (see ugro checkpoints JOB)')
    .requiredOption('--as <model>', 'the model name (a DNS-1123 label)')
    .option('--replicas <n>', 'copy it until this many hosts hold it (verified by sha256)', '1')
    .action(async (raw: string, o: { checkpoint: string; as: string; replicas: string }) => {
      const name = requireJobName(raw);
      const replicas = intFlag('--replicas', o.replicas, 1, 64);
      const [jobs, { mayI, actor }, { listJobCheckpoints, checkpointHosts }, { ModelRegistry }, model, { posix }] =
        await Promise.all([
          import('../jobs.ts'),
          import('../authz.ts'),
          import('../checkpoint-list.ts'),
          import('../../store/models.ts'),
          import('../../api/model.ts'),
          import('node:path'),
        ]);
      if (!model.isModelName(o.as))
        throw new UsageError(`--as ${JSON.stringify(o.as)} is not a model name (a DNS-1123 label, e.g. "mnist-mlp")`);
      if (!/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(o.checkpoint))
        throw new UsageError(`--checkpoint ${JSON.stringify(o.checkpoint)} is not a checkpoint name like step-400`);
      const store = jobs.openStore(ctx);
      const { status, specFile } = await jobs.requireJob(store, name);
      await mayI(ctx, 'promote', { name, status, specFile });
      const [cluster, runtime] = await Promise.all([ctx.loadCluster(), ctx.runtime()]);
      const list = await listJobCheckpoints(runtime, cluster, store, name, status);
      // The newest file of that name (rows are newest first) that has a sum to register.
      const row = list.rows.find((r) => r.name === o.checkpoint && r.sha256);
      if (!row) {
        const down = list.unreachable.length ? ` (not listed: ${list.unreachable.map((u) => u.host).join(', ')})` : '';
        throw new NotFoundError(
          `no checkpoint ${o.checkpoint} of ${name} on any host${down}: see ugro checkpoints ${name}`,
        );
      }
      const copies = row.copies.map((c) => ({ host: c.host, path: posix.join(c.dir, `${row.name}.pt`) }));
      const hostOf = (n: string) => cluster.hosts.find((h) => h.name === n);
      const from = hostOf(row.copies[0].host)!;
      const listed = new Set(list.dirs.keys());
      const spare = checkpointHosts(cluster).filter(
        (h) => listed.has(h.name) && !copies.some((c) => c.host === h.name),
      );
      for (const to of spare) {
        if (copies.length >= replicas) break;
        const toDir = list.dirs.get(to.name)!;
        try {
          const r = await runtime.copyCheckpoint(from, row.copies[0].dir, to, toDir, row.name);
          if (r.sha256 !== row.sha256)
            throw new UgroError(`the copy on ${to.name} has sha256 ${r.sha256}, not ${row.sha256}`);
          copies.push({ host: to.name, path: posix.join(toDir, `${row.name}.pt`) });
          ctx.io.out(`copied ${row.name} from ${from.name} to ${to.name} (sha256 ${r.sha256.slice(0, 12)} on both)`);
        } catch (e) {
          ctx.io.err(`warning: cannot copy ${row.name} to ${to.name}: ${(e as Error).message}`);
        }
      }
      if (copies.length < replicas)
        throw new UgroError(
          `${row.name} is on ${copies.length} host(s) (${copies.map((c) => c.host).join(', ')}), ` +
            `not ${replicas}: not registered; free a host (ugro hosts) or ask for fewer --replicas`,
        );
      const w = row.writer;
      const v = await ModelRegistry.of(ctx.jobsDir).add({
        model: o.as,
        createdAt: new Date().toISOString(),
        by: actor(),
        job: name,
        checkpoint: row.name,
        ...(row.step !== undefined ? { step: row.step } : {}),
        ...(w ? { attempt: w.attempt, specHash: w.specHash, runDir: w.dir } : {}),
        ...(row.revision ? { revision: row.revision } : {}),
        ...(row.metrics ? { metrics: row.metrics } : {}),
        sha256: row.sha256!,
        sizeBytes: row.sizeBytes,
        copies: copies.sort((a, b) => a.host.localeCompare(b.host)),
      });
      ctx.io.out(
        `model/${model.modelRef(v)} registered: ${name} ${row.name}` +
          `${w ? ` (attempt ${w.attempt}, spec ${w.specHash})` : ''}, sha256 ${row.sha256}, ` +
          `on ${v.copies.map((c) => c.host).join(', ')}`,
      );
    });
}
