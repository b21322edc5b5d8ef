/** `ugro resume NAME --checkpoint step-N`: run the job again from a checkpoint (a new spec version). */
import type { Command } from 'commander';
import { NotFoundError, UgroError, UsageError } from '../../../config/errors.ts';
import { requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  program
    .command('resume')
    .description('start a job again from a checkpoint (sets spec.checkpoint.resumeFrom in its file)')
    .argument('<name>')
    .requiredOption('--checkpoint <name>', 'checkpoint name, e.g. step-400')
    .option('--force', 'write it although the jobs dir follows git (an emergency: OutOfSync until git agrees)')
    .action(async (raw: string, o: { checkpoint: string; force?: boolean }) => {
      const name = requireJobName(raw);
      const [{ parseDocument }, { formatIssue }, tj, { readRegularFile }, jobs] = await Promise.all([
        import('../yaml.ts'),
        import('../../../config/errors.ts'),
        import('../../api/trainingjob.ts'),
        import('../../store/files.ts'),
        import('../jobs.ts'),
      ]);
      // The same rule as spec.checkpoint.resumeFrom, taken from the schema itself.
      const rule = tj.trainingJobSpec.shape.checkpoint.unwrap().shape.resumeFrom;
      const checked = rule.safeParse(o.checkpoint);
      if (!checked.success)
        throw new UsageError(
          `--checkpoint ${checked.error.issues[0]?.message ?? 'is not a checkpoint name'} ` +
            `(got ${JSON.stringify(o.checkpoint)})`,
        );
      const store = jobs.openStore(ctx);
      const gitWarning = (await import('../../gitops/state.ts')).refuseIfGitManaged(store.dir, o.force);
      const file = await store.specFile(name);
      if (!file) throw new NotFoundError(`job ${name} has no spec file in ${store.dir}`);
      const authz = await import('../authz.ts');
      await authz.mayI(ctx, 'resume', { name, status: await store.readStatus(name), specFile: file });
      const read = await readRegularFile(file);
      if (!read.ok) throw new UgroError(`${file}: ${read.missing ? 'vanished while reading it' : read.message}`);
      const doc = parseDocument(read.text, file);
      doc.setIn(['spec', 'checkpoint', 'resumeFrom'], o.checkpoint);
      const text = doc.toString();
      const res = tj.parseTrainingJob(text, file);
      if (!res.ok) throw new UgroError(res.issues.map((i) => formatIssue(file, i)).join('\n'));
      await jobs.writeJobFile(file, text);
      await store.deleteControl(name);
      ctx.io.out(`trainingjob/${name} will resume from ${o.checkpoint} (a new run; the spec changed)`);
      if (gitWarning) ctx.io.err(gitWarning);
    });
}
