/** `ugro models [NAME] [-o table|json]`: the model registry (jobs/models/), every version or one model's. */
import type { Command } from 'commander';
import { UsageError } from '../../../config/errors.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('models')
    .description('model versions promoted from checkpoints (ugro promote): lineage and where the copies are')
    .argument('[name]', 'only this model')
    .option('-o, --output <format>', 'table or json', 'table')
    .action(async (name: string | undefined, o: { output: string }) => {
      const [{ parseFormat, serialize }, { ModelRegistry }, { isModelName }, { modelsTable }] = await Promise.all([
        import('../output.ts'),
        import('../../store/models.ts'),
        import('../../api/model.ts'),
        import('../render/checkpoints.ts'),
      ]);
      const format = parseFormat(o.output, ['table', 'json'] as const);
      if (name !== undefined && !isModelName(name))
        throw new UsageError(`${JSON.stringify(name)} is not a model name (a DNS-1123 label, e.g. "mnist-mlp")`);
      const { versions, rejected } = await ModelRegistry.of(ctx.jobsDir).list(name);
      for (const r of rejected) ctx.io.err(`warning: ignoring ${r.file}: ${r.why}`);
      if (format === 'json') ctx.io.out(await serialize({ models: versions, rejected }, 'json'));
      else ctx.io.out(modelsTable(versions, new Date()));
    });
}
