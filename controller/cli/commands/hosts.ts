/** `ugro hosts trust HOST… [--fingerprint SHA256…]` and `ugro hosts list`: pinned host keys. */
import type { Command } from 'commander';
import { isSystemError, NotFoundError, UgroError } from '../../../config/errors.ts';
import type { CliContext } from '../context.ts';

export function register(program: Command, ctx: CliContext): void {
  const hosts = program.command('hosts').description('host keys: pin them (trust) and list them');
  hosts
    .command('trust')
    .description("fetch a host's SSH keys, show their fingerprints, and pin them in known_hosts")
    .argument('<host...>', 'host names from the cluster file')
    .option(
      '--fingerprint <sha256>',
      'pin only the key with this fingerprint (compare with ' +
        '`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host); repeat it for several',
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(async (names: string[], o: { fingerprint: string[] }) => {
      const cluster = await ctx.loadCluster();
      const unknown = names.filter((n) => !cluster.hosts.some((h) => h.name === n));
      if (unknown.length) throw new NotFoundError(`host ${unknown.join(', ')} not in ${cluster.file}`);
      const { trustHost } = await import('../trust.ts');
      for (const name of names) {
        const h = cluster.hosts.find((x) => x.name === name)!;
        try {
          if (!(await trustHost(h, o.fingerprint, ctx.io))) ctx.fail();
        } catch (e) {
          // One host that cannot be reached does not stop the others.
          if (!(e instanceof UgroError || isSystemError(e))) throw e;
          ctx.io.err(`${name}: ${e.message.replace(new RegExp(`^${name}: `), '')}`);
          ctx.fail();
        }
      }
    });
  hosts
    .command('list')
    .description('hosts, addresses and pinned host-key fingerprints')
    .action(async () => {
      const cluster = await ctx.loadCluster();
      const [{ hostKeyRows }, { hostKeysTable }] = await Promise.all([
        import('../trust.ts'),
        import('../render/nodes.ts'),
      ]);
      ctx.io.out(hostKeysTable(hostKeyRows(cluster.hosts)));
    });
}
