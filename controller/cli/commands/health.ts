/** `ugro health [HOST…]`: probe the hosts; exit 1 if any is NotReady. */
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';
import { parseFormat } from '../output.ts';

export const HEALTH_FORMATS = ['table', 'json', 'yaml'] as const;

export function register(program: Command, ctx: CliContext): void {
  program
    .command('health')
    .description('probe every host (ssh, OS, python, torch, GPUs, disk, clock); exit 1 if any is NotReady')
    .argument('[hosts...]', 'only these hosts')
    .option('-o, --output <format>', HEALTH_FORMATS.join('|'), 'table')
    .action(async (hosts: string[], o: { output: string }) => {
      const format = parseFormat(o.output, HEALTH_FORMATS);
      const { health } = await import('../probe-hosts.ts');
      await health(ctx, hosts, format);
    });
}
