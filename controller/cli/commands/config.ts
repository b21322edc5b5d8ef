/** `ugro config show|validate|test`: the cluster inventory as UGRO reads it. */
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';
import { parseFormat } from '../output.ts';
import { HEALTH_FORMATS } from './health.ts';

const SHOW_FORMATS = ['yaml', 'json', 'table'] as const;

export function register(program: Command, ctx: CliContext): void {
  const config = program.command('config').description('the cluster inventory');
  config
    .command('show')
    .description('print the cluster file as UGRO reads it (variables expanded, defaults filled, secrets redacted)')
    .option('-o, --output <format>', SHOW_FORMATS.join('|'), 'yaml')
    .action(async (o: { output: string }) => {
      const format = parseFormat(o.output, SHOW_FORMATS);
      const cluster = await ctx.loadCluster();
      if (format === 'table') {
        const { inventoryTable } = await import('../render/nodes.ts');
        ctx.io.out(inventoryTable(cluster));
        return;
      }
      const [{ redactedClusterFile }, { serialize }] = await Promise.all([
        import('../../../config/cluster.ts'),
        import('../output.ts'),
      ]);
      ctx.io.out(await serialize(redactedClusterFile(cluster), format));
    });
  config
    .command('validate')
    .description('check a cluster file; lists every problem with file:line and field; exit 1 if invalid')
    .argument('[file]', 'cluster file (default: --cluster / UGRO_CLUSTER / config/cluster.yaml)')
    .action(async (file?: string) => {
      if (!(await validate(ctx, file))) ctx.fail();
    });
  config
    .command('test')
    .description('validate the cluster file, then probe every host (like `ugro health`)')
    .option('-o, --output <format>', HEALTH_FORMATS.join('|'), 'table')
    .action(async (o: { output: string }) => {
      const format = parseFormat(o.output, HEALTH_FORMATS);
      if (!(await validate(ctx, undefined))) return ctx.fail();
      const { health } = await import('../probe-hosts.ts');
      await health(ctx, [], format);
    });
}

/** Read and check a cluster file: a summary on stdout, or every problem on stderr (false). */
async function validate(ctx: CliContext, file: string | undefined): Promise<boolean> {
  const [{ defaultExpandEnv, parseCluster }, { formatIssue, ValidationError }, { readInputFile }, { resolve }] =
    await Promise.all([
      import('../../../config/cluster.ts'),
      import('../../../config/errors.ts'),
      import('../jobs.ts'),
      import('node:path'),
    ]);
  const path = resolve(file ?? (await ctx.clusterFile()));
  const input = await readInputFile(path);
  if (!input.ok) throw new ValidationError(path, [{ path: '', message: input.message }]);
  const res = parseCluster(input.text, path, defaultExpandEnv(ctx.env));
  if (!res.ok) {
    ctx.io.err(`${path}: invalid (${res.issues.length} problem${res.issues.length === 1 ? '' : 's'})`);
    for (const i of res.issues) ctx.io.err(`  ${formatIssue(path, i)}`);
    return false;
  }
  const hosts = res.value.hosts.map((h) => h.name);
  ctx.io.out(`${path}: valid: cluster "${res.value.name}", ${hosts.length} hosts (${hosts.join(', ')})`);
  return true;
}
