/**
 * `ugro export job NAME --to sbatch|pytorchjob|trainjob [--image IMG] [-o FILE]`: the job as the
 * batch script the Slurm backend submits, a Kubeflow PyTorchJob, or a Kubeflow Trainer TrainJob
 * (controller/export/). What has no equivalent there is listed at the top of the output.
 */
import type { Command } from 'commander';
import { NotFoundError, UsageError } from '../../../config/errors.ts';
import { choiceFlag, requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

interface ExportOptions {
  to: string;
  image?: string;
  output?: string;
}

export function register(program: Command, ctx: CliContext): void {
  const ex = program.command('export').description("write a resource in another system's format");
  ex.command('job')
    .description(
      'a job as an sbatch script (what the Slurm backend submits), a Kubeflow PyTorchJob or a Trainer TrainJob',
    )
    .argument('<name>')
    .requiredOption('--to <target>', 'sbatch | pytorchjob | trainjob')
    .option('--image <image>', 'container image (pytorchjob, trainjob)')
    .option('-o, --output <file>', 'write to FILE instead of stdout')
    .action(async (raw: string, o: ExportOptions) => {
      const name = requireJobName(raw);
      const [{ EXPORT_TARGETS }, { openStore }, { formatIssue }] = await Promise.all([
        import('../../export/common.ts'),
        import('../jobs.ts'),
        import('../../../config/errors.ts'),
      ]);
      const to = choiceFlag('--to', o.to, EXPORT_TARGETS);
      if (o.image !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/.test(o.image))
        throw new UsageError(
          `--image must be an image reference like ghcr.io/me/train:1.0 (got ${JSON.stringify(o.image)})`,
        );
      if (o.image !== undefined && to === 'sbatch') throw new UsageError('--image applies to pytorchjob and trainjob');
      const store = openStore(ctx);
      const spec = await store.readSpec(name);
      if (spec.kind === 'deleted') throw new NotFoundError(`job ${name} not found in ${store.dir}`);
      if (spec.kind === 'invalid')
        throw new UsageError(
          `job ${name} is invalid; fix it first:\n${spec.issues.map((i) => formatIssue(spec.file, i)).join('\n')}`,
        );
      const [{ exportJob }, cluster] = await Promise.all([import('../../export/export.ts'), ctx.loadCluster()]);
      const text = exportJob(spec.job, cluster, to, o.image ? { image: o.image } : {});
      if (!o.output) {
        ctx.raw(text.endsWith('\n') ? text : `${text}\n`);
        return;
      }
      const { writeFile } = await import('node:fs/promises');
      await writeFile(o.output, text, { mode: to === 'sbatch' ? 0o755 : 0o644 });
      ctx.io.err(`wrote ${o.output}`);
    });
}
