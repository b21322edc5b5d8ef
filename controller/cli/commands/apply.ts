/**
 * `ugro apply -f FILE`: validate a TrainingJob file, then place it in the jobs directory as NAME.yaml.
 * `-f -` reads it from stdin, with the same limit (1 MiB) and messages: a remote ugro sends the local
 * file this way (remote/select.ts), and `--stdin-name` names it in messages as the person named it.
 */
import { type Command, Option } from 'commander';
import { OWNER_ANNOTATION } from '../../api/annotations.ts';
import { requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';
import { ownerFrom } from '../owner.ts';

/** The file with metadata.annotations["ugro.dev/owner"] set; its comments and layout kept. */
async function withOwner(text: string, owner: string): Promise<string> {
  const { parseDocument } = await import('../yaml.ts');
  const doc = parseDocument(text);
  doc.setIn(['metadata', 'annotations', OWNER_ANNOTATION], owner);
  return doc.toString();
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('apply')
    .description('validate a TrainingJob file, then place it in jobs/ as <name>.yaml')
    .requiredOption('-f, --file <file>', 'the TrainingJob (a regular file of at most 1 MiB; - for stdin)')
    .addOption(new Option('--stdin-name <name>', 'with -f -: the name messages give the input').hideHelp())
    .option('--owner <user>', "an admin: make it this user's job (default: $UGRO_OWNER; else the account writing it)")
    .option('--force', 'write it although the jobs dir follows git (an emergency: OutOfSync until git agrees)')
    .action(async (o: { file: string; force?: boolean; owner?: string; stdinName?: string }) => {
      const owner = ownerFrom(o.owner, ctx.env);
      const [{ mkdir }, { join }, { formatIssue, UgroError }, { parseTrainingJob }, jobs] = await Promise.all([
        import('node:fs/promises'),
        import('node:path'),
        import('../../../config/errors.ts'),
        import('../../api/trainingjob.ts'),
        import('../jobs.ts'),
      ]);
      const file = o.file === '-' ? (o.stdinName ?? '<stdin>') : o.file;
      const input = o.file === '-' ? await jobs.readStdin(ctx) : await jobs.readInputFile(o.file);
      if (!input.ok) throw new UgroError(`${file}: ${input.message}`);
      const res = parseTrainingJob(input.text);
      if (!res.ok) {
        for (const i of res.issues) ctx.io.err(formatIssue(file, i));
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
      const specFile = await store.specFile(name);
      const existed = specFile !== undefined;
      // Someone else's job is theirs to change (exit 4); naming another owner is an admin's to do.
      const authz = await import('../authz.ts');
      if (existed) await authz.mayI(ctx, 'change-spec', { name, status: await store.readStatus(name), specFile });
      const named = res.value.metadata.annotations?.[OWNER_ANNOTATION] ?? owner;
      if (named && named !== authz.actor()) await authz.mayI(ctx, 'set-owner', { name }, named);
      const text =
        owner && !res.value.metadata.annotations?.[OWNER_ANNOTATION] ? await withOwner(input.text, owner) : input.text;
      await jobs.writeJobFile(join(store.dir, `${name}.yaml`), text);
      ctx.io.out(`trainingjob/${name} ${existed ? 'configured' : 'created'}`);
      if (gitWarning) ctx.io.err(gitWarning);
    });
}
