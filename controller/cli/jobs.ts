/** Job commands: controller, apply, launch, validate, get jobs, describe, logs, delete, cancel, status, events, results, resume. */
import { existsSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join, posix, resolve } from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import { formatIssue, UgroError } from '../../config/errors.ts';
import { dnsLabel } from '../../config/schema.ts';
import type { JobStatus } from '../api/status.ts';
import { API_VERSION, KIND, parseTrainingJob, type TrainingJob } from '../api/trainingjob.ts';
import { probeCluster } from '../hosts/health.ts';
import { Controller, jsonLogger } from '../runtime/controller.ts';
import { JobStore, writeFileAtomic } from '../store/store.ts';
import type { CliContext } from './context.ts';
import { renderNodes } from './nodes.ts';
import { age, parseFormat, serialize, table } from './output.ts';

class NotFound extends UgroError {}

function jobsDir(program: Command, ctx: CliContext): string {
  return resolve((program.opts().jobs as string | undefined) ?? ctx.env.UGRO_JOBS ?? 'jobs');
}

function jobRows(store: JobStore, names?: string[]): { name: string; spec?: TrainingJob; status?: JobStatus }[] {
  const { specs, statuses } = store.listNames();
  const all = [...new Set([...specs, ...statuses])].filter((n) => !names?.length || names.includes(n)).sort();
  return all.map((name) => {
    const s = store.readSpec(name);
    return { name, spec: s.kind === 'valid' ? s.job : undefined, status: store.readStatus(name) };
  });
}

function renderJobs(rows: ReturnType<typeof jobRows>, wide: boolean, now: Date): string {
  const header = ['NAME', 'PHASE', 'ATTEMPT', 'NODES', 'PROGRESS', 'AGE', ...(wide ? ['HOSTS', 'RUN', 'REASON'] : [])];
  return table(
    header,
    rows.map(({ name, spec, status }) => {
      const nodes = status?.nodes?.length
        ? `${status.nodes.filter((n) => n.state === 'Running' || n.state === 'Succeeded').length}/${status.nodes.length}`
        : spec
          ? String(
              typeof spec.spec.nodes === 'number' ? spec.spec.nodes : `${spec.spec.nodes.min}-${spec.spec.nodes.max}`,
            )
          : '-';
      const p = status?.progress as { epoch?: number; loss?: number } | undefined;
      return [
        name,
        status?.phase ?? 'Pending',
        String(status?.attempt ?? 0),
        nodes,
        p ? `epoch ${p.epoch ?? '?'} loss ${p.loss ?? '?'}` : '-',
        age(status?.createdAt, now),
        ...(wide
          ? [
              status?.nodes?.map((n) => n.host).join(',') || '-',
              status?.runId ?? '-',
              (status?.message ?? '-').split('\n')[0],
            ]
          : []),
      ];
    }),
  );
}

export function registerJobCommands(program: Command, ctx: () => CliContext, get: Command): void {
  program.option('--jobs <dir>', 'jobs directory (default: $UGRO_JOBS or ./jobs)');
  const store = () => new JobStore(jobsDir(program, ctx()));

  program
    .command('controller')
    .description(
      'run the controller: reconcile jobs/ into torchrun ranks on the hosts (SIGTERM stops it; training keeps running)',
    )
    .option('--grace <seconds>', 'grace period before SIGKILL when stopping a run', '30')
    .option('--resync <seconds>', 'full resync period', '60')
    .action(async (opts: { grace: string; resync: string }) => {
      const c = ctx();
      const ctl = new Controller({
        cluster: c.loadCluster(),
        jobsDir: jobsDir(program, c),
        pool: c.ssh(),
        log: jsonLogger(),
        graceSeconds: Number(opts.grace),
        resyncMs: Number(opts.resync) * 1000,
      });
      await ctl.start();
      await new Promise<void>((r) => {
        const bye = () => r();
        process.once('SIGTERM', bye);
        process.once('SIGINT', bye);
      });
      await ctl.stop();
    });

  program
    .command('validate')
    .description('check TrainingJob files; every problem with file:line and field; exit 1 if any is invalid')
    .argument('<files...>')
    .action((files: string[]) => {
      const c = ctx();
      let rc = 0;
      for (const f of files) {
        const path = resolve(f);
        const res = parseTrainingJob(readFileSync(path, 'utf8'));
        if (res.ok) c.io.out(`${f}: valid (${res.value.metadata.name})`);
        else {
          rc = 1;
          c.io.err(`${f}: invalid`);
          for (const i of res.issues) c.io.err(`  ${formatIssue(f, i)}`);
        }
      }
      program.exitCodeValue = rc;
    });

  program
    .command('apply')
    .description('validate a TrainingJob file, then place it in jobs/ as <name>.yaml')
    .requiredOption('-f, --file <file>')
    .action((opts: { file: string }) => {
      const c = ctx();
      const text = readFileSync(resolve(opts.file), 'utf8');
      const res = parseTrainingJob(text);
      if (!res.ok) {
        for (const i of res.issues) c.io.err(formatIssue(opts.file, i));
        program.exitCodeValue = 1;
        return;
      }
      const s = store();
      mkdirSync(s.dir, { recursive: true });
      const dest = join(s.dir, `${res.value.metadata.name}.yaml`);
      const existed = existsSync(dest);
      writeFileAtomic(dest, text);
      c.io.out(`trainingjob/${res.value.metadata.name} ${existed ? 'configured' : 'created'}`);
    });

  program
    .command('launch')
    .description("write a TrainingJob for the reference script (the seed's launch command)")
    .requiredOption('--name <name>')
    .option('--model <model>', 'model', 'tiny-mlp')
    .option('--dataset <dataset>', 'dataset', 'synthetic')
    .option('--epochs <n>', 'epochs', '1')
    .option('--lr <x>', 'learning rate')
    .option('--batch-size <n>', 'batch size per rank')
    .option('--priority <p>', 'high|normal|low or an integer', 'normal')
    .option('--nodes <k>', 'number of hosts (default: all hosts)')
    .option('--nproc-per-node <n>', 'processes per host (a number, or gpu)', '1')
    .action((o: Record<string, string | undefined>) => {
      const c = ctx();
      const name = dnsLabel.safeParse(o.name);
      if (!name.success) throw new UgroError(`--name: ${name.error.issues[0].message}`);
      const args = ['--model', o.model!, '--dataset', o.dataset!, '--epochs', o.epochs!];
      if (o.lr) args.push('--lr', o.lr);
      if (o.batchSize) args.push('--batch-size', o.batchSize);
      const pr = /^-?\d+$/.test(o.priority!) ? Number(o.priority) : o.priority;
      const job = {
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: { name: o.name!, labels: { 'ugro.dev/launched-by': 'ugro-launch' } },
        spec: {
          script: 'train.py',
          args,
          nodes: o.nodes ? Number(o.nodes) : c.loadCluster().hosts.length,
          nprocPerNode: o.nprocPerNode === 'gpu' ? 'gpu' : Number(o.nprocPerNode),
          priority: pr,
          checkpoint: {},
        },
      };
      const text = stringify(job);
      const res = parseTrainingJob(text);
      if (!res.ok) throw new UgroError(res.issues.map((i) => formatIssue('launch', i)).join('\n'));
      const s = store();
      mkdirSync(s.dir, { recursive: true });
      writeFileAtomic(join(s.dir, `${o.name}.yaml`), text);
      c.io.out(`trainingjob/${o.name} created in ${s.dir} (the controller starts it; watch with \`ugro get jobs -w\`)`);
    });

  get
    .command('jobs')
    .description('jobs and their status')
    .argument('[names...]')
    .option('-o, --output <format>', 'table|wide|json|yaml', 'table')
    .option('-w, --watch', 'keep printing as status changes')
    .action(async (names: string[], opts: { output?: string; watch?: boolean }) => {
      const c = ctx();
      const f = parseFormat(opts.output, ['table', 'wide', 'json', 'yaml']);
      const print = () => {
        const rows = jobRows(store(), names);
        if (f === 'table' || f === 'wide')
          c.io.out(rows.length ? renderJobs(rows, f === 'wide', new Date()) : 'No jobs.');
        else
          c.io.out(
            serialize(
              rows.map((r) => ({ name: r.name, spec: r.spec?.spec, status: r.status })),
              f,
            ),
          );
      };
      print();
      if (!opts.watch) return;
      let last = '';
      await new Promise<void>((r) => {
        const t = setInterval(() => {
          const rows = jobRows(store(), names);
          const now = JSON.stringify(rows.map((x) => [x.name, x.status?.phase, x.status?.attempt, x.status?.progress]));
          if (now !== last) {
            last = now;
            c.io.out(renderJobs(rows, false, new Date()).split('\n').slice(1).join('\n'));
          }
        }, 1000);
        process.once('SIGINT', () => {
          clearInterval(t);
          r();
        });
      });
    });

  const describe = program.command('describe').description('details of a resource');
  describe
    .command('job')
    .argument('<name>')
    .action((name: string) => {
      const c = ctx();
      const s = store();
      const spec = s.readSpec(name);
      const st = s.readStatus(name);
      if (spec.kind === 'deleted' && !st) throw new NotFound(`job ${name} not found in ${s.dir}`);
      const lines: string[] = [
        `Name:         ${name}`,
        `File:         ${spec.kind === 'deleted' ? '(deleted)' : spec.file}`,
      ];
      if (st) {
        lines.push(
          `Phase:        ${st.phase}${st.reason ? ` (${st.reason})` : ''}`,
          `Message:      ${st.message ?? '-'}`,
          `Attempt:      ${st.attempt}`,
          `Run:          ${st.runId ?? '-'}`,
          `Rendezvous:   ${st.rdzvEndpoint ?? '-'}`,
          `Started:      ${st.startTime ?? '-'}`,
          `Completed:    ${st.completionTime ?? '-'}`,
        );
        if (st.exitCode !== undefined)
          lines.push(`Exit code:    ${st.exitCode} (rank ${st.failedRank ?? '?'} on ${st.failedHost ?? '?'})`);
        if (st.progress) lines.push(`Progress:     ${JSON.stringify(st.progress)}`);
        lines.push(
          'Nodes:',
          table(
            ['  HOST', 'NODE RANK', 'GLOBAL RANKS', 'PID', 'STATE', 'EXIT'],
            st.nodes.map((n) => [
              `  ${n.host}`,
              String(n.nodeRank),
              n.globalRanks.join(',') || '-',
              String(n.pid ?? '-'),
              n.state,
              String(n.exitCode ?? '-'),
            ]),
          ),
        );
        lines.push(
          'Conditions:',
          table(
            ['  TYPE', 'STATUS', 'REASON', 'SINCE', 'MESSAGE'],
            st.conditions.map((x) => [
              `  ${x.type}`,
              x.status,
              x.reason,
              x.lastTransitionTime,
              x.message.split('\n')[0],
            ]),
          ),
        );
        if (st.logTail?.length) lines.push('Last log lines of the failing rank:', ...st.logTail.map((l) => `  ${l}`));
      }
      if (spec.kind === 'valid')
        lines.push(
          'Spec:',
          ...stringify(spec.job.spec)
            .trimEnd()
            .split('\n')
            .map((l) => `  ${l}`),
        );
      if (spec.kind === 'invalid')
        lines.push('Spec: INVALID', ...spec.issues.map((i) => `  ${formatIssue(spec.file, i)}`));
      const evs = s.readEvents(name, 15);
      lines.push(
        'Events:',
        evs.length
          ? table(
              ['  TIME', 'TYPE', 'REASON', 'MESSAGE'],
              evs.map((e) => [`  ${e.time}`, e.type, e.reason, e.message.split('\n')[0]]),
            )
          : '  <none>',
      );
      c.io.out(lines.join('\n'));
    });

  program
    .command('logs')
    .description("a rank's log, read from the host that ran it")
    .argument('<name>')
    .option('--rank <n>', 'global rank', '0')
    .option('--tail <n>', 'last N lines (default: all)')
    .option('-f, --follow', 'keep streaming (reconnects if the connection drops) until the run ends')
    .action(async (name: string, opts: { rank: string; tail?: string; follow?: boolean }) => {
      program.exitCodeValue = await logsAction(ctx(), store(), name, Number(opts.rank), opts);
    });

  const stopJob = async (name: string, how: 'delete' | 'cancel', graceS: string | undefined, wait: boolean) => {
    const c = ctx();
    const s = store();
    const file = s.specFile(name);
    if (!file && !s.readStatus(name)) throw new NotFound(`job ${name} not found in ${s.dir}`);
    if (how === 'delete') {
      if (file) unlinkSync(file);
      c.io.out(`trainingjob/${name} deleted (the controller stops its run)`);
    } else {
      const cur = s.readStatus(name);
      if (cur && (cur.phase === 'Succeeded' || cur.phase === 'Failed' || cur.phase === 'Cancelled')) {
        c.io.out(`trainingjob/${name} is already ${cur.phase}: nothing to cancel`);
        return;
      }
      const spec = s.readSpec(name);
      s.writeControl(name, {
        cancel: {
          specHash: spec.kind === 'valid' ? (await import('../api/trainingjob.ts')).specHash(spec.job.spec) : undefined,
          requestedAt: new Date().toISOString(),
          ...(graceS ? { graceSeconds: Number(graceS) } : {}),
        },
      });
      c.io.out(`trainingjob/${name} cancel requested`);
    }
    if (!wait) return;
    const deadline = Date.now() + (Number(graceS ?? 30) + 60) * 1000;
    while (Date.now() < deadline) {
      const st = s.readStatus(name);
      if (how === 'delete' ? !st : st?.phase === 'Cancelled' && !st.nodes.some((n) => n.state === 'Running')) return;
      await new Promise((r) => setTimeout(r, 300));
    }
    c.io.err(`timed out waiting for the controller (is \`ugro controller\` running?)`);
    program.exitCodeValue = 1;
  };
  const del = program.command('delete').description('delete a resource');
  del
    .command('job')
    .argument('<name>')
    .option('--wait', 'wait until the run is stopped')
    .action((name: string, o: { wait?: boolean }) => stopJob(name, 'delete', undefined, !!o.wait));
  program
    .command('cancel')
    .description("stop a job's run and keep its status (phase Cancelled)")
    .argument('<name>')
    .option('--grace <seconds>', 'seconds between SIGTERM and SIGKILL')
    .option('--wait', 'wait until the run is stopped')
    .action((name: string, o: { grace?: string; wait?: boolean }) => stopJob(name, 'cancel', o.grace, !!o.wait));

  program
    .command('status')
    .description('nodes and jobs at a glance')
    .action(async () => {
      const c = ctx();
      const cluster = c.loadCluster();
      const pool = c.ssh();
      const nodes = await probeCluster(cluster, { connection: (h) => pool.host(h) });
      c.io.out(
        `Cluster ${cluster.name}: ${nodes.filter((n) => n.status === 'Ready').length}/${nodes.length} nodes Ready\n`,
      );
      c.io.out(renderNodes(nodes));
      const rows = jobRows(store());
      c.io.out(`\nJobs (${rows.length}):`);
      c.io.out(rows.length ? renderJobs(rows, false, new Date()) : 'No jobs.');
    });

  program
    .command('events')
    .description('recent events, all jobs or one')
    .argument('[name]')
    .option('--limit <n>', 'how many', '50')
    .action((name: string | undefined, o: { limit: string }) => {
      const evs = store().readEvents(name, Number(o.limit));
      ctx().io.out(
        evs.length
          ? table(
              ['TIME', 'JOB', 'TYPE', 'REASON', 'MESSAGE'],
              evs.map((e) => [e.time, e.job, e.type, e.reason, e.message.split('\n')[0]]),
            )
          : 'No events.',
      );
    });

  program
    .command('results')
    .description('outcome of a job: phase, final metrics, where checkpoints and logs are')
    .argument('<name>')
    .action((name: string) => {
      const c = ctx();
      const s = store();
      const st = s.readStatus(name);
      if (!st) throw new NotFound(`no status for job ${name} in ${s.dir}`);
      const cluster = c.loadCluster();
      const rank0 = st.nodes.find((n) => n.globalRanks.includes(0)) ?? st.nodes[0];
      const h = cluster.hosts.find((x) => x.name === rank0?.host);
      const spec = s.readSpec(name);
      const ckpt =
        spec.kind === 'valid' && spec.job.spec.checkpoint?.dir
          ? spec.job.spec.checkpoint.dir
          : h
            ? posix.join(h.paths.checkpoints, name)
            : '-';
      c.io.out(
        [
          `Job:          ${name}`,
          `Phase:        ${st.phase}${st.message ? ` (${st.message.split('\n')[0]})` : ''}`,
          `Attempts:     ${st.attempt}`,
          `Duration:     ${st.startTime && st.completionTime ? `${((Date.parse(st.completionTime) - Date.parse(st.startTime)) / 1000).toFixed(1)} s` : '-'}`,
          `Final metrics: ${st.progress ? JSON.stringify(st.progress) : '(none reported)'}`,
          `Checkpoints:  ${rank0?.host ?? '?'}:${ckpt}`,
          `Logs:         ugro logs ${name} --rank N`,
        ].join('\n'),
      );
    });

  program
    .command('resume')
    .description('start a job again from a checkpoint (sets spec.checkpoint.resumeFrom in its file)')
    .argument('<name>')
    .requiredOption('--checkpoint <name>', 'checkpoint name, e.g. step-400')
    .action(async (name: string, o: { checkpoint: string }) => {
      const c = ctx();
      const s = store();
      const file = s.specFile(name);
      if (!file) throw new NotFound(`job ${name} has no spec file in ${s.dir}`);
      const { parseDocument } = await import('yaml');
      const doc = parseDocument(readFileSync(file, 'utf8'));
      doc.setIn(['spec', 'checkpoint', 'resumeFrom'], o.checkpoint);
      const res = parseTrainingJob(doc.toString(), file);
      if (!res.ok) throw new UgroError(res.issues.map((i) => formatIssue(file, i)).join('\n'));
      writeFileAtomic(file, doc.toString());
      try {
        unlinkSync(s.controlFile(name));
      } catch {
        /* no cancel pending */
      }
      c.io.out(`trainingjob/${name} will resume from ${o.checkpoint} (a new run; the spec changed)`);
    });
}

async function logsAction(
  c: CliContext,
  s: JobStore,
  name: string,
  rank: number,
  opts: { tail?: string; follow?: boolean },
): Promise<number> {
  const st = s.readStatus(name);
  if (!st?.runId) throw new NotFound(`job ${name} has no run yet`);
  const node = st.nodes.find((n) => n.globalRanks.includes(rank));
  if (!node)
    throw new NotFound(
      `rank ${rank} of job ${name} not found (ranks: ${
        st.nodes
          .flatMap((n) => n.globalRanks)
          .sort((a, b) => a - b)
          .join(', ') || 'none started yet'
      })`,
    );
  const cluster = c.loadCluster();
  const h = cluster.hosts.find((x) => x.name === node.host);
  if (!h) throw new NotFound(`host ${node.host} is not in the cluster file`);
  const dir = `${name}.${st.specHash}.${st.attempt}`;
  const file = posix.join(h.paths.runs, dir, `rank-${rank}.log`);
  const conn = c.ssh().host(h.name);
  let offset = 0;
  const write = (b: Buffer) => {
    offset += b.length;
    process.stdout.write(b);
  };
  if (!opts.follow) {
    const r = await conn.exec(opts.tail ? ['tail', '-n', opts.tail, '--', file] : ['cat', '--', file]);
    if (r.code !== 0) throw new UgroError(`${h.name}: cannot read ${file}: ${r.stderr.trim()}`);
    c.io.out(r.stdout.replace(/\n$/, ''));
    return 0;
  }
  const lockFile = posix.join(h.paths.runs, dir, 'lock');
  // The run's runner holds `lock` while it lives; the lock is released the moment it exits, even
  // while its zombie waits to be reaped (`tail --pid` would wait for the reaping, forever under
  // an init that never reaps). After that, one plain read from our offset picks up the rest.
  const FOLLOW =
    'lock=$1; shift; [ -e "$lock" ] || exit 0; tail -F "$@" & t=$!; flock "$lock" true; kill "$t" 2>/dev/null; wait "$t" 2>/dev/null; exit 0';
  if (opts.tail) {
    // The last N lines of the file as it is now, and its size: following resumes at that byte,
    // so a reconnect neither repeats nor skips anything.
    const r = await conn.exec(
      [
        'sh',
        '-c',
        's=$(wc -c < "$1") || exit 1; head -c "$s" -- "$1" | tail -n "$2"; echo "$s" >&2',
        'ugro-logs',
        file,
        opts.tail,
      ],
      { onStdout: (b) => process.stdout.write(b) },
    );
    if (r.code !== 0) throw new UgroError(`${h.name}: cannot read ${file}: ${r.stderr.trim()}`);
    offset = Number(r.stderr.trim().split('\n').pop());
  }
  // Follow across reconnects: resume from the byte offset already shown; stop when the run ends.
  for (let tries = 0; tries < 1000; tries++) {
    try {
      const r = await conn.exec(['sh', '-c', FOLLOW, 'ugro-logs', lockFile, '-c', `+${offset + 1}`, '--', file], {
        onStdout: write,
      });
      if (r.code === 0) {
        const rest = await conn.exec(['tail', '-c', `+${offset + 1}`, '--', file], { onStdout: write });
        return rest.code === 0 ? 0 : 1;
      }
    } catch {
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  return 1;
}
