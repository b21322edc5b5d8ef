/**
 * `ugro context ls|add|rm|use|show`: the controller hosts this machine's ugro can run commands on,
 * over SSH (like `docker context`). Always runs here, whatever context is set.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { ContextEntry, ContextsFile } from '../../../config/contexts.ts';
import { NotFoundError, UsageError } from '../../../config/errors.ts';
import type { CliContext } from '../context.ts';

interface AddOptions {
  host: string;
  identity?: string;
  knownHosts?: string;
  ugro?: string;
  cluster?: string;
  jobs?: string;
  persist?: string;
}

async function files(ctx: CliContext) {
  const [f, c] = await Promise.all([import('../remote/contexts-file.ts'), import('../../../config/contexts.ts')]);
  const path = f.contextsPath(ctx.env);
  return { ...f, ...c, path, load: () => f.loadContexts(path), save: (v: ContextsFile) => f.saveContexts(path, v) };
}

/** A local path flag made absolute (`~/` kept: it is expanded when used). */
const localPath = (p: string | undefined) => (p === undefined || p.startsWith('~/') ? p : resolve(p));

export function register(program: Command, ctx: CliContext): void {
  const cmd = program
    .command('context')
    .description('controller hosts to run commands on over ssh (ugro --context NAME …, UGRO_HOST=ssh://user@host)');
  cmd
    .command('ls')
    .description('the contexts; * marks the current one')
    .action(async () => {
      const f = await files(ctx);
      const { contexts, current } = await f.load();
      const { table } = await import('../output.ts');
      const rows = Object.entries(contexts).map(([n, e]) => [
        n === current ? `${n} *` : n,
        e.host,
        f.ugroWords(e).join(' '),
        e.jobs ?? '-',
      ]);
      ctx.io.out(table(['NAME', 'HOST', 'UGRO', 'JOBS'], [[current ? 'local' : 'local *', '-', '-', '-'], ...rows]));
    });
  cmd
    .command('add')
    .description(
      'add a context (the host key must already be pinned in --known-hosts); --cluster P and --jobs P name ' +
        'the cluster file and jobs dir on the host (passed there as --cluster and --jobs)',
    )
    .argument('<name>')
    .requiredOption('--host <url>', 'ssh://[user@]host[:port]')
    .option('--identity <file>', "private key (default: ssh's own keys and agent)")
    .option('--known-hosts <file>', "known_hosts with the host's pinned key (default: ~/.ssh/known_hosts)")
    .option('--ugro <command>', 'the command on the host (default: ugro), e.g. "node /opt/ugro/bin/ugro.mjs"')
    .option('--persist <seconds>', 'how long an idle shared connection stays (0..3600, default 60; 0: none)')
    .action(async (name: string, _o: AddOptions, self: Command) => {
      // --cluster and --jobs are the program's own flags (commander takes them anywhere): read them from there.
      const o = self.optsWithGlobals<AddOptions>();
      const f = await files(ctx);
      const bad = f.checkContextName(name);
      if (bad || name === f.LOCAL_CONTEXT)
        throw new UsageError(`context name ${JSON.stringify(name)}: ${bad?.message ?? '"local" is reserved'}`);
      const host = f.parseSshHost(o.host);
      if (!host.ok) throw new UsageError(`--host: ${host.message}`);
      const { intFlag } = await import('../args.ts');
      const entry: ContextEntry = {
        host: f.formatSshHost(host.value),
        ...(o.knownHosts ? { knownHosts: localPath(o.knownHosts) } : {}),
        ...(o.identity ? { identityFile: localPath(o.identity) } : {}),
        ...(o.ugro ? { ugro: o.ugro } : {}),
        ...(o.cluster ? { cluster: o.cluster } : {}),
        ...(o.jobs ? { jobs: o.jobs } : {}),
        ...(o.persist !== undefined ? { controlPersistSeconds: intFlag('--persist', o.persist, 0, 3600) } : {}),
      };
      const checked = f.contextSchema.safeParse(entry);
      if (!checked.success) {
        const i = checked.error.issues[0];
        throw new UsageError(`--${String(i.path[0] ?? 'host')}: ${i.message}`);
      }
      const file = await f.load();
      if (Object.hasOwn(file.contexts, name))
        throw new UsageError(`context ${name} exists in ${f.path}: remove it first (ugro context rm ${name})`);
      await f.save({ ...file, contexts: { ...file.contexts, [name]: checked.data } });
      ctx.io.out(`context ${name} added (${entry.host}); use it: ugro --context ${name} get jobs`);
    });
  cmd
    .command('rm')
    .description('remove a context')
    .argument('<name>')
    .action(async (name: string) => {
      const f = await files(ctx);
      const file = await f.load();
      if (!Object.hasOwn(file.contexts, name)) throw new NotFoundError(`no context named ${name} in ${f.path}`);
      const { [name]: _gone, ...rest } = file.contexts;
      await f.save({ ...(file.current && file.current !== name ? { current: file.current } : {}), contexts: rest });
      ctx.io.out(`context ${name} removed${file.current === name ? ' (commands run here again)' : ''}`);
    });
  cmd
    .command('use')
    .description('run commands on this context from now on ("local": here)')
    .argument('<name>')
    .action(async (name: string) => {
      const f = await files(ctx);
      const file = await f.load();
      if (name !== f.LOCAL_CONTEXT && !Object.hasOwn(file.contexts, name))
        throw new NotFoundError(`no context named ${name} in ${f.path} (ugro context ls)`);
      const { current: _old, ...rest } = file;
      await f.save(name === f.LOCAL_CONTEXT ? rest : { ...rest, current: name });
      ctx.io.out(
        name === f.LOCAL_CONTEXT ? 'commands run here now' : `commands run on ${file.contexts[name].host} now`,
      );
      if (ctx.env.UGRO_HOST || ctx.env.UGRO_CONTEXT)
        ctx.io.err(`note: ${ctx.env.UGRO_HOST ? 'UGRO_HOST' : 'UGRO_CONTEXT'} is set and comes first`);
    });
  cmd
    .command('show')
    .description('where commands run now, and why')
    .action(async () => {
      const [f, { chooseWhere }] = await Promise.all([files(ctx), import('../remote/select.ts')]);
      // As for `ugro get jobs` with no --context (this command itself always runs here).
      const where = await chooseWhere({ words: ['get'], verb: 0 }, ctx.env, async () => (await f.load()).current);
      if (where.kind === 'local') return ctx.io.out('local (commands run here)');
      if (where.kind === 'host') return ctx.io.out(`${where.url} (from ${where.why})`);
      const { contexts } = await f.load();
      const e = contexts[where.name];
      if (!e) throw new NotFoundError(`no context named ${where.name} (from ${where.why}) in ${f.path}`);
      const { stringify } = await import('../yaml.ts');
      ctx.io.out(`${where.name} (from ${where.why}):\n${stringify(e).trimEnd()}`);
    });
}
