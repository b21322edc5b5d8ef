/** `ugro validate FILE…`: check TrainingJob files; exit 1 if any is invalid or unreadable. */
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('validate')
    .description('check TrainingJob files; every problem with file:line and field; exit 1 if any is invalid')
    .argument('<files...>')
    .action(async (files: string[]) => {
      const [{ formatIssue }, { parseTrainingJob }, { readInputFile }, { afterNames, cycleMessage, findCycle }] =
        await Promise.all([
          import('../../../config/errors.ts'),
          import('../../api/trainingjob.ts'),
          import('../jobs.ts'),
          import('../../core/steps/dependencies.ts'),
        ]);
      const read = [];
      for (const f of files) {
        const input = await readInputFile(f);
        read.push({ f, input, res: input.ok ? parseTrainingJob(input.text) : undefined });
      }
      const parsed = new Map<string, { file: string; after: string[] }>();
      for (const { f, res } of read)
        if (res?.ok) parsed.set(res.value.metadata.name, { file: f, after: afterNames(res.value) });
      for (const { f, input, res } of read) {
        // spec.after among the files given: a cycle makes each of its jobs Invalid once applied.
        const cycle = res?.ok ? findCycle(res.value.metadata.name, (n) => parsed.get(n)?.after) : undefined;
        if (cycle) {
          ctx.fail();
          ctx.io.err(`${f}: invalid`);
          const others = cycle.slice(1, -1).map((n) => parsed.get(n)?.file);
          ctx.io.err(`  ${f}: ${cycleMessage(cycle)}${others.length ? ` (with ${others.join(', ')})` : ''}`);
          continue;
        }
        if (res?.ok) {
          ctx.io.out(`${f}: valid (${res.value.metadata.name})`);
          continue;
        }
        ctx.fail();
        ctx.io.err(`${f}: invalid`);
        if (!input.ok) ctx.io.err(`  ${f}: ${input.message}`);
        for (const i of res && !res.ok ? res.issues : []) ctx.io.err(`  ${formatIssue(f, i)}`);
      }
    });
}
