/** `ugro delete job NAME [--wait]`: remove the job's spec file; the controller stops its run. */
import type { Command } from 'commander';
import { requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  const del = program.command('delete').description('delete a resource');
  del
    .command('job')
    .description("delete a job's spec file; the controller stops its run and removes its status")
    .argument('<name>')
    .option('--wait', 'wait until the run is stopped and the status removed')
    .option('--force', 'delete it although the jobs dir follows git (an emergency: OutOfSync until git agrees)')
    .action(async (raw: string, o: { wait?: boolean; force?: boolean }) => {
      const name = requireJobName(raw);
      const [{ unlink }, { ForbiddenError, UgroError }, jobs] = await Promise.all([
        import('node:fs/promises'),
        import('../../../config/errors.ts'),
        import('../jobs.ts'),
      ]);
      const store = jobs.openStore(ctx);
      const gitWarning = (await import('../../gitops/state.ts')).refuseIfGitManaged(store.dir, o.force);
      const { specFile, status } = await jobs.requireJob(store, name);
      await (await import('../authz.ts')).mayI(ctx, 'delete', { name, status, specFile });
      if (specFile) {
        try {
          await unlink(specFile); // a symlink itself, never its target
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          // A sticky jobs dir: the OS lets only the file's owner (or the dir's) delete it.
          if (code === 'EPERM' || code === 'EACCES')
            throw new ForbiddenError(`cannot delete ${specFile}: it is not yours (${code}); ask its owner or an admin`);
          if (code !== 'ENOENT') throw new UgroError(`cannot delete ${specFile}: ${(e as Error).message}`);
        }
      }
      ctx.io.out(`trainingjob/${name} deleted (the controller stops its run)`);
      if (gitWarning) ctx.io.err(gitWarning);
      if (o.wait) await jobs.waitForStatus(store, name, (st) => !st, { timeoutMs: 90_000 });
    });
}
