/**
 * `ugro whoami [-o json]`: who this command runs as (the real uid's account: what the controller
 * records as a job's owner; over ssh, the user SSH authenticated), the role the cluster file's
 * `users.admins` gives it, its quota (`users:`), and what it uses now as the jobs dir shows it.
 * Only what is recorded is shown: no figure is made up.
 */
import { userInfo } from 'node:os';
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';

/** Phases that hold GPUs, and those that wait for them (controller/api/status.ts). */
const RUNNING = new Set(['Starting', 'Running']);
const WAITING = new Set(['Queued', 'Suspended']);

export function register(program: Command, ctx: CliContext): void {
  program
    .command('whoami')
    .description('your account, role (admin|user), quota and what you use now')
    .option('-o, --output <format>', 'table|json', 'table')
    .action(async (o: { output: string }) => {
      const [{ choiceFlag }, { usersSettings, limitsFor, QUOTA_FIELD_NAMES }, jobs, { readUsage, readWeekHours }] =
        await Promise.all([
          import('../args.ts'),
          import('../../../config/users.ts'),
          import('../jobs.ts'),
          import('../../loop/usage.ts'),
        ]);
      const format = choiceFlag('--output', o.output, ['table', 'json'] as const);
      const me = userInfo();
      const cluster = await ctx.loadCluster();
      const users = usersSettings(cluster.raw.users);
      const role = users?.admins.includes(me.username) ? 'admin' : 'user';
      const eff = limitsFor(users, me.username);
      const quota = Object.entries(eff.limits).map(([k, v]) => ({
        limit: QUOTA_FIELD_NAMES[k as keyof typeof QUOTA_FIELD_NAMES],
        value: v as number | string,
        from: eff.from[k as keyof typeof eff.from] ?? '',
      }));
      // Usage now, from the statuses the controller wrote (status.owner is the authenticated owner).
      const store = jobs.openStore(ctx);
      const { specs, statuses } = await store.listNames();
      const names = [...new Set([...specs, ...statuses])];
      const mine = (await Promise.all(names.map((n) => store.readStatus(n)))).filter((s) => s?.owner === me.username);
      const running = mine.filter((s) => s && RUNNING.has(s.phase));
      const usage = {
        runningJobs: running.length,
        queuedJobs: mine.filter((s) => s && WAITING.has(s.phase)).length,
        gpus: running.reduce((n, s) => n + (s?.nodes ?? []).reduce((m, x) => m + (x.gpus?.length ?? 0), 0), 0),
      };
      const fair = await readUsage(store.dir, Date.now());
      const recent = fair.owners.find((u) => u.owner === me.username)?.gpuHours ?? 0;
      const week = await readWeekHours(store.dir, me.username, Date.now());
      if (format === 'json') {
        const out = {
          user: me.username,
          uid: me.uid,
          role,
          quota: Object.fromEntries(quota.map((q) => [q.limit, { value: q.value, from: q.from }])),
          usage: { ...usage, gpuHoursWeek: week, recentGpuHours: recent, halfLifeHours: fair.halfLifeHours },
        };
        ctx.io.out(JSON.stringify(out, null, 2));
        return;
      }
      const { table } = await import('../output.ts');
      ctx.io.out(`User:   ${me.username} (uid ${me.uid})`);
      ctx.io.out(`Role:   ${role}${users ? '' : ` (no users: section in ${cluster.file})`}`);
      if (!quota.length) ctx.io.out('Quota:  none (no limit applies to you)');
      else {
        ctx.io.out('Quota:');
        ctx.io.out(
          table(
            ['  LIMIT', 'VALUE', 'FROM'],
            quota.map((q) => [`  ${q.limit}`, String(q.value), q.from]),
          ),
        );
      }
      ctx.io.out(
        `Usage:  ${usage.runningJobs} job(s) running with ${usage.gpus} GPU(s), ${usage.queuedJobs} waiting; ` +
          `${week.toFixed(2)} GPU-hours in the last 7 days; fair-share GPU time ${recent.toFixed(2)} GPU-hours ` +
          `(halves every ${fair.halfLifeHours} h)`,
      );
    });
}
