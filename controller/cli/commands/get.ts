/** `ugro get nodes` (same probes as health), `ugro get jobs [NAME…] [-o …] [-w] [--mine] [-l …]`, `ugro get sweeps`. */
import { lstatSync } from 'node:fs';
import { userInfo } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { NotFoundError, UsageError } from '../../../config/errors.ts';
import { requireJobName } from '../args.ts';
import type { CliContext } from '../context.ts';
import { type OutputFormat, parseFormat, serialize } from '../output.ts';
import type { JobRowInput } from '../render/jobs.ts';
import { HEALTH_FORMATS } from './health.ts';

const JOB_FORMATS = ['table', 'wide', 'json', 'yaml'] as const;

export function register(program: Command, ctx: CliContext): void {
  const get = program.command('get').description('list resources: nodes, jobs');
  get
    .command('nodes')
    .description('the hosts and their health (same probes as `ugro health`)')
    .argument('[hosts...]', 'only these hosts')
    .option('-o, --output <format>', HEALTH_FORMATS.join('|'), 'table')
    .action(async (hosts: string[], o: { output: string }) => {
      const format = parseFormat(o.output, HEALTH_FORMATS);
      const { health } = await import('../probe-hosts.ts');
      await health(ctx, hosts, format);
    });
  get
    .command('jobs')
    .description('jobs: phase, attempt, nodes, progress, age')
    .argument('[names...]', 'only these jobs')
    .option('-o, --output <format>', JOB_FORMATS.join('|'), 'table')
    .option('-w, --watch', 'keep printing the rows whenever what they show changes (Ctrl-C stops)')
    .option('--mine', 'only your jobs (their owner is the account this command runs as)')
    .option('-l, --selector <labels>', 'only jobs with these labels: KEY=VALUE, KEY!=VALUE or KEY, comma-separated')
    .action(async (names: string[], o: { output: string; watch?: boolean; mine?: boolean; selector?: string }) => {
      const format = parseFormat(o.output, JOB_FORMATS);
      for (const n of names) requireJobName(n);
      if (o.watch && (format === 'json' || format === 'yaml')) throw new UsageError('-w works with -o table or wide');
      let only = o.mine ? mineFilter(ctx.jobsDir) : undefined;
      if (o.selector !== undefined) {
        const [{ jobsWithLabels }, { openStore }] = await Promise.all([import('../sweeps.ts'), import('../jobs.ts')]);
        const match = new Set(await jobsWithLabels(openStore(ctx), o.selector));
        const mine = only;
        only = (n, st) => match.has(n) && (!mine || mine(n, st));
      }
      if (format === 'json' || format === 'yaml') await structured(ctx, names, format, only);
      else await tabled(ctx, names, format === 'wide', !!o.watch, only);
    });
  get
    .command('sweeps')
    .description('sweeps: phase, trials done/running/paused/stopped, the best trial and its objective')
    .argument('[names...]', 'only these sweeps')
    .option('-o, --output <format>', SWEEP_FORMATS.join('|'), 'table')
    .action(async (names: string[], o: { output: string }) => {
      const format = parseFormat(o.output, SWEEP_FORMATS);
      for (const n of names) requireJobName(n);
      const [{ openStore }, { readSweeps }, { sweepJson, sweepsTable }] = await Promise.all([
        import('../jobs.ts'),
        import('../sweeps.ts'),
        import('../render/sweeps.ts'),
      ]);
      const rows = await readSweeps(openStore(ctx), names);
      if (format === 'table') ctx.io.out(sweepsTable(rows, new Date()));
      else ctx.io.out(await serialize(rows.map(sweepJson), format));
    });
}

const SWEEP_FORMATS = ['table', 'json', 'yaml'] as const;

/** Which jobs a row or status says are someone's, by name and parsed status. */
type Only = (name: string, status: unknown) => boolean;

/**
 * `--mine`: status.owner (what the controller recorded: the authenticated owner) is this account;
 * a job it has not recorded yet is mine when I own its spec file (the rule the controller applies).
 * The account is the process's own (os.userInfo), never $USER, which anyone can set.
 */
function mineFilter(dir: string): Only {
  const me = userInfo();
  return (name, status) => {
    const owner = typeof status === 'object' && status !== null ? (status as { owner?: unknown }).owner : undefined;
    if (typeof owner === 'string') return owner === me.username;
    for (const ext of ['.yaml', '.yml']) {
      const st = lstatSync(`${dir}/${name}${ext}`, { throwIfNoEntry: false });
      if (st) return st.isFile() && st.uid === me.uid;
    }
    return false;
  };
}

function notFound(dir: string, missing: string[]): NotFoundError {
  return new NotFoundError(`job${missing.length > 1 ? 's' : ''} ${missing.join(', ')} not found in ${dir}`);
}

async function tabled(ctx: CliContext, names: string[], wide: boolean, watch: boolean, only?: Only): Promise<void> {
  const [{ cacheFileFor, readJobRows }, { jobRow, jobsTable }] = await Promise.all([
    import('../job-list.ts'),
    import('../render/jobs.ts'),
  ]);
  const dir = ctx.jobsDir;
  const cache = cacheFileFor(ctx.env, dir);
  const read = async () => {
    const r = await readJobRows(dir, names, cache);
    return only ? { ...r, rows: r.rows.filter((x) => only(x.name, x.status)) } : r;
  };
  const { rows, missing } = await read();
  // With -w, a progress bar per job.
  const opts = { bars: watch };
  if (rows.length || !missing.length) ctx.io.out(rows.length ? jobsTable(rows, wide, new Date(), opts) : 'No jobs.');
  // GitOps: a source that cannot fetch, or a head not applied, is said here (stderr: the table stays the table).
  const git = await import('../../gitops/state.ts');
  const note = git.gitNote(git.readGitState(dir));
  if (note) ctx.io.err(note);
  if (missing.length) throw notFound(dir, missing);
  if (!watch) return;
  // Print the rows again (without the header) whenever what they show changes, ages aside.
  const shown = (r: JobRowInput[]) => JSON.stringify(r.map((x) => jobRow(x, wide, new Date(0))));
  let last = shown(rows);
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  for (;;) {
    try {
      await sleep(1000, undefined, { signal: stop.signal });
    } catch {
      return; // Ctrl-C: a normal end
    }
    const next = (await read()).rows;
    if (shown(next) === last) continue;
    last = shown(next);
    ctx.io.out(jobsTable(next, wide, new Date(), opts).split('\n').slice(1).join('\n'));
  }
}

async function structured(
  ctx: CliContext,
  names: string[],
  format: Extract<OutputFormat, 'json' | 'yaml'>,
  only?: Only,
) {
  const { openStore } = await import('../jobs.ts');
  const store = openStore(ctx);
  let wanted = names;
  if (!wanted.length) {
    const { specs, statuses } = await store.listNames();
    wanted = [...new Set([...specs, ...statuses])].sort();
  }
  const read = await Promise.all(
    wanted.map(async (name) => {
      const [spec, status] = await Promise.all([store.readSpec(name), store.readStatus(name)]);
      return { name, spec, status };
    }),
  );
  const found = read.filter((r) => r.spec.kind !== 'deleted' || r.status);
  ctx.io.out(
    await serialize(
      found
        .filter((r) => !only || only(r.name, r.status))
        .map((r) => ({
          name: r.name,
          spec: r.spec.kind === 'valid' ? r.spec.job.spec : undefined,
          status: r.status,
        })),
      format,
    ),
  );
  // Only names asked for can be missing (a listing also meets sweep files: no jobs, not missing ones).
  const missing = names.length ? read.filter((r) => !found.includes(r)).map((r) => r.name) : [];
  if (missing.length) throw notFound(store.dir, missing);
}
