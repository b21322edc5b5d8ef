/** `ugro apply -f FILE`: validate a TrainingJob file, then place it in the jobs directory as NAME.yaml. */
import type { Command } from 'commander';
import { requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('apply')
    .description('validate a TrainingJob file, then place it in jobs/ as <name>.yaml')
    .requiredOption('-f, --file <file>', 'the TrainingJob (a regular file of at most 1 MiB)')
    .option('--force', 'write it although the jobs dir follows git (an emergency: OutOfSync until git agrees)')
    .action(async (o: { file: string; force?: boolean }) => {
      const [{ mkdir }, { join }, { formatIssue, UgroError }, { parseTrainingJob }, jobs] = await Promise.all([
        import('node:fs/promises'),
        import('node:path'),
        import('../../../config/errors.ts'),
        import('../../api/trainingjob.ts'),
        import('../jobs.ts'),
      ]);
      const input = await jobs.readInputFile(o.file);
      if (!input.ok) throw new UgroError(`${o.file}: ${input.message}`);
      const res = parseTrainingJob(input.text);
      if (!res.ok) {
        for (const i of res.issues) ctx.io.err(formatIssue(o.file, i));
        return ctx.fail();
      }
      const name = requireJobName(res.value.metadata.name);
      const store = jobs.openStore(ctx);
      const gitWarning = (await import('../../gitops/state.ts')).refuseIfGitManaged(store.dir, o.force);
      try {
        await mkdir(store.dir, { recursive: true });
      } catch (e) {
        throw new UgroError(`cannot create ${store.dir}: ${(e as Error).message}`);
      }
      const existed = (await store.specFile(name)) !== undefined;
      await jobs.writeJobFile(join(store.dir, `${name}.yaml`), input.text);
      ctx.io.out(`trainingjob/${name} ${existed ? 'configured' : 'created'}`);
      if (gitWarning) ctx.io.err(gitWarning);
    });
}
