/**
 * The controller end to end on the lab: real `ugro controller` processes, real sshd, real
 * torchrun across three network-namespace hosts.
 */
import { realpathSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import {
  labCluster,
  markedProcesses,
  newJobsDir,
  readStatus,
  runDirs,
  startController,
  stopController,
  ugro,
  ugroStream,
  waitFor,
  waitPhase,
  writeJob,
} from './controller-harness.ts';

const cluster = labCluster();
const pool = new SshPool(cluster.hosts);
const hosts = cluster.hosts.map((h) => h.name);
let ctl: ReturnType<typeof startController> | undefined;
let jobsDir: string;

beforeAll(async () => {
  // Stop leftovers of earlier runs, then clean run dirs so launch counting below is exact.
  await Promise.all(
    cluster.hosts.map((h) =>
      pool.exec(h.name, ['pkill', '-KILL', '-f', 'torch.distributed.run']).catch(() => undefined),
    ),
  );
  await Promise.all(cluster.hosts.map((h) => pool.exec(h.name, ['rm', '-rf', '--', h.paths.runs])));
});
afterEach(async () => {
  if (ctl) await stopController(ctl);
  ctl = undefined;
});
afterAll(() => pool.close());

const train = (args: string[] = [], nodes = 3) => ({ script: 'train.py', args, nodes });

describe('controller on the lab', () => {
  it('trains a job across 3 hosts to Succeeded; logs --rank 2 shows rank 2', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'e2e', train(['--epochs', '2']));
    const st = await waitPhase(jobsDir, 'e2e', ['Succeeded', 'Failed']);
    expect(st.phase, ctl.logText()).toBe('Succeeded');
    expect(st.nodes.map((n) => n.host).sort()).toEqual([...hosts].sort());
    expect(st.nodes.flatMap((n) => n.globalRanks).sort()).toEqual([0, 1, 2]);
    expect(st.conditions.find((c) => c.type === 'Complete')?.status).toBe('True');
    expect((st.progress as { epoch: number }).epoch).toBe(1);
    const logs = ugro(jobsDir, 'logs', 'e2e', '--rank', '2');
    expect(logs.code, logs.err).toBe(0);
    expect(logs.out).toMatch(/^rank 2\/3 on gpu\S* backend=gloo/m);
    expect(logs.out).not.toMatch(/^rank [01]\//m);
    const get = ugro(jobsDir, 'get', 'jobs');
    expect(get.out).toMatch(/e2e\s+Succeeded/);
  });

  it('a rank that exits 3: Failed with exit code 3 and its last log lines; a NaN loss shows as NaN', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'fails', train(['--fail-rank', '1', '--exit-code', '3']));
    const st = await waitPhase(jobsDir, 'fails', ['Succeeded', 'Failed']);
    expect(st.phase).toBe('Failed');
    expect(st.exitCode).toBe(3);
    expect(st.failedRank).toBe(1);
    expect(st.logTail?.join('\n')).toContain('rank 1: failing on purpose with exit code 3');
    expect(st.message).toContain('rank 1');
    // A loss that went NaN (train.py at lr 5 writes a bare NaN, as Python's json does) is shown as
    // NaN, not dropped for the last finite one.
    writeJob(
      jobsDir,
      'nan',
      train(['--lr', '5', '--epochs', '1', '--steps-per-epoch', '8', '--metrics-every', '1'], 1),
    );
    const nan = await waitPhase(jobsDir, 'nan', ['Succeeded', 'Failed']);
    expect(nan.phase).toBe('Succeeded');
    expect(nan.progress).toMatchObject({ step: 8, loss: 'NaN' });
    expect(ugro(jobsDir, 'get', 'jobs').out).toMatch(/nan +Succeeded .*100% loss NaN/);
  });

  it('deleting the job file mid-run leaves no process of the run on any host within grace + 5 s', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'longrun', train(['--epochs', '1000', '--sleep', '0.05']));
    const st = await waitPhase(jobsDir, 'longrun', ['Running']);
    const runId = st.runId!;
    expect((await Promise.all(hosts.map((h) => markedProcesses(pool, h, runId)))).flat().length).toBeGreaterThan(0);
    const t0 = Date.now();
    unlinkSync(join(jobsDir, 'longrun.yaml'));
    const end = t0 + (5 + 5) * 1000;
    let left: string[] = [];
    while (Date.now() < end) {
      left = (await Promise.all(hosts.map((h) => markedProcesses(pool, h, runId)))).flat();
      if (!left.length) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(left, `still running after ${Date.now() - t0} ms`).toEqual([]);
    console.log(`delete -> no process of the run left: ${Date.now() - t0} ms`);
    await waitFor('status file removed', () => !readStatus(jobsDir, 'longrun'), 20_000);
  });

  it('logs -f streams a rank while it runs and ends with the run; --tail N -f starts N lines back', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'follow', train(['--epochs', '4', '--steps-per-epoch', '10', '--sleep', '0.15']));
    await waitPhase(jobsDir, 'follow', ['Running']);
    const f = ugroStream(jobsDir, 'logs', 'follow', '--rank', '1', '-f');
    const res = await Promise.race([
      f.done,
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('logs -f did not end with the run')), 120_000)),
    ]);
    expect(res.code, res.err).toBe(0);
    // logs -f ends when the run's runner exits; the controller records it a moment later.
    const st = await waitPhase(jobsDir, 'follow', ['Succeeded', 'Failed'], 30_000);
    expect(st.phase).toBe('Succeeded');
    // Output arrived while training was still going, not all at the end.
    expect(f.chunks[0].at).toBeLessThan(Date.parse(st.completionTime!));
    expect(res.out).toMatch(/^rank 1\/3 /m);
    expect(res.out).toContain('rank 1: done');
    // Exactly the file: nothing repeated, nothing lost.
    const whole = ugro(jobsDir, 'logs', 'follow', '--rank', '1');
    expect(res.out.trimEnd()).toBe(whole.out.trimEnd());
    const last2 = ugroStream(jobsDir, 'logs', 'follow', '--rank', '1', '--tail', '2', '-f');
    const r2 = await last2.done;
    expect(r2.code, r2.err).toBe(0);
    expect(r2.out.trimEnd()).toBe(whole.out.trimEnd().split('\n').slice(-2).join('\n'));
  });

  it('ugro cancel --wait: the run stops on every host, the status stays as Cancelled', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'stopme', train(['--epochs', '1000', '--sleep', '0.05']));
    const st = await waitPhase(jobsDir, 'stopme', ['Running']);
    const t0 = Date.now();
    const r = ugro(jobsDir, 'cancel', 'stopme', '--grace', '3', '--wait');
    expect(r.code, r.err).toBe(0);
    console.log(`cancel --wait returned after ${Date.now() - t0} ms`);
    expect((await Promise.all(hosts.map((h) => markedProcesses(pool, h, st.runId!)))).flat()).toEqual([]);
    const after = readStatus(jobsDir, 'stopme')!;
    expect(after.phase).toBe('Cancelled');
    expect(after.nodes.every((n) => n.state !== 'Running')).toBe(true);
    // The spec file is the person's: still there, untouched.
    expect(ugro(jobsDir, 'get', 'jobs').out).toMatch(/stopme\s+Cancelled/);
  });

  it('delete, then apply the same spec again: it trains afresh (old runs moved to runs/.deleted)', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'again', train(['--epochs', '1', '--steps-per-epoch', '3']));
    const first = await waitPhase(jobsDir, 'again', ['Succeeded', 'Failed']);
    expect(first.phase).toBe('Succeeded');
    unlinkSync(join(jobsDir, 'again.yaml'));
    await waitFor('status removed', () => !readStatus(jobsDir, 'again'), 30_000);
    const h = cluster.hosts[1];
    expect(await runDirs(pool, h.name, h.paths.runs, 'again')).toEqual([]);
    const archived = await pool.exec(h.name, [
      'sh',
      '-c',
      'ls "$1/.deleted" | grep -c "^again\\." || true',
      'x',
      h.paths.runs,
    ]);
    expect(Number(archived.stdout.trim())).toBeGreaterThanOrEqual(1);
    writeJob(jobsDir, 'again', train(['--epochs', '1', '--steps-per-epoch', '3']));
    const second = await waitPhase(jobsDir, 'again', ['Succeeded', 'Failed']);
    expect(second.phase).toBe('Succeeded');
    expect(second.attempt).toBe(1);
    expect(Date.parse(second.startTime!)).toBeGreaterThan(Date.parse(first.completionTime!));
  });

  it('suspend stops the run and keeps the status; unsuspend starts a new attempt that is not a failure', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    const spec = train(['--epochs', '1000', '--sleep', '0.05']);
    writeJob(jobsDir, 'pausable', spec);
    const running = await waitPhase(jobsDir, 'pausable', ['Running']);
    writeJob(jobsDir, 'pausable', { ...spec, suspend: true });
    const suspended = await waitFor(
      'suspended with nothing left',
      () => {
        const s = readStatus(jobsDir, 'pausable');
        return s?.phase === 'Suspended' && !s.nodes.some((n) => n.state === 'Running') ? s : undefined;
      },
      60_000,
    );
    expect(suspended.runId).toBe(running.runId);
    expect((await Promise.all(hosts.map((h) => markedProcesses(pool, h, running.runId!)))).flat()).toEqual([]);
    // maxRestarts is 0: if the suspended attempt counted as a failure, this would end Failed.
    writeJob(jobsDir, 'pausable', spec);
    const resumed = await waitFor(
      'attempt 2 running',
      () => {
        const s = readStatus(jobsDir, 'pausable');
        return s && (s.phase === 'Failed' || (s.phase === 'Running' && s.attempt === 2)) ? s : undefined;
      },
      90_000,
    );
    expect(resumed.phase, resumed.message).toBe('Running');
    unlinkSync(join(jobsDir, 'pausable.yaml'));
    await waitFor('status removed', () => !readStatus(jobsDir, 'pausable'), 60_000);
  });

  it('kill -9 of the controller mid-run: restart re-adopts, the run finishes, one launch per host', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'adopt', train(['--epochs', '30', '--sleep', '0.05']));
    const st = await waitPhase(jobsDir, 'adopt', ['Running']);
    await stopController(ctl, 'SIGKILL');
    // Training must not notice.
    await new Promise((r) => setTimeout(r, 1000));
    expect((await Promise.all(hosts.map((h) => markedProcesses(pool, h, st.runId!)))).flat().length).toBeGreaterThan(0);
    ctl = startController(jobsDir);
    const done = await waitPhase(jobsDir, 'adopt', ['Succeeded', 'Failed'], 120_000);
    expect(done.phase, ctl.logText()).toBe('Succeeded');
    expect(done.runId).toBe(st.runId);
    expect(done.attempt).toBe(1);
    for (const h of cluster.hosts) expect(await runDirs(pool, h.name, h.paths.runs, 'adopt')).toHaveLength(1);
    expect(ctl.logText()).not.toContain('launched run part');
  });

  // CI: `kill -TERM -- -PGID PID` (the demo's stop) delivered SIGTERM twice; the second met no handler and
  // ended node mid-stop, leaving its host leases behind.
  it('SIGTERM twice in a row: one clean stop, exit 0, every host lease handed back', async () => {
    jobsDir = newJobsDir();
    const c = startController(jobsDir);
    ctl = c;
    await waitFor('controller started', () => c.logText().includes('controller started'));
    const owner = `owner=${hostname()}:${realpathSync(jobsDir)}`;
    const leased = async () =>
      (
        await Promise.all(
          cluster.hosts.map(async (h) => {
            const r = await pool.exec(h.name, ['cat', '--', join(h.paths.runs, '.ugro-lease')]).catch(() => undefined);
            return r?.stdout.split('\n').includes(owner) ? [h.name] : [];
          }),
        )
      ).flat();
    expect(await leased()).toEqual(hosts);
    const exited = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
    c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 5));
    c.kill('SIGTERM');
    expect(await exited, c.logText()).toBe(0);
    expect(c.logText()).toContain('controller stopped');
    expect(await leased()).toEqual([]);
  });

  // Issue 15: 6 KB of nested YAML made the controller abort (exit 134) and crash-loop; nested aliases threw on each
  // reconcile ("will retry") and out of `get jobs -o json`. Beside a typo and a good job, in the same controller.
  it(
    'invalid files beside a valid one (a typo, 3000-deep YAML, nested aliases): Invalid with path and line, ' +
      'the same controller throughout; the other Succeeds; get jobs in every format says so',
    async () => {
      jobsDir = newJobsDir();
      ctl = startController(jobsDir);
      const pid = ctl.pid;
      writeFileSync(
        join(jobsDir, 'broken.yaml'),
        'apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: broken\n' +
          'spec:\n  script: train.py\n  nodes: 3\n  nprocPerNod: 2\n',
      );
      // Several of each: the abort needs a deep parse after a regexp got hot (8 files aborted 5 times in 6).
      for (const i of [1, 2, 3, 4]) {
        writeFileSync(join(jobsDir, `deep-flow-${i}.yaml`), `${'['.repeat(3000)}${']'.repeat(3000)}`);
        writeFileSync(join(jobsDir, `deep-seq-${i}.yaml`), `${'- '.repeat(3000)}x`);
      }
      const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
      for (const [p, c] of ['ab', 'bc', 'cd', 'de']) laughs.push(`${c}: &${c} [${Array(10).fill(`*${p}`).join(', ')}]`);
      writeFileSync(
        join(jobsDir, 'laughs.yaml'),
        `apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: laughs\n  annotations:\n${laughs
          .map((l) => `    ${l}\n`)
          .join('')}spec:\n  script: train.py\n`,
      );
      writeJob(jobsDir, 'good', train([], 3));
      const bad = await waitPhase(jobsDir, 'broken', ['Invalid']);
      expect(bad.message).toContain('broken.yaml:8');
      expect(bad.message).toContain('spec.nprocPerNod');
      const where: Record<string, string> = {
        laughs: 'laughs.yaml:7:12: YAML limit: aliases (*name) expand to more than 100 nodes',
      };
      for (const i of [1, 2, 3, 4]) {
        where[`deep-flow-${i}`] = `deep-flow-${i}.yaml:1:65: YAML limit: nested deeper than 64`;
        where[`deep-seq-${i}`] = `deep-seq-${i}.yaml:1:129: YAML limit: nested deeper than 64`;
      }
      for (const [name, text] of Object.entries(where))
        expect((await waitPhase(jobsDir, name, ['Invalid'])).message).toContain(text);
      const good = await waitPhase(jobsDir, 'good', ['Succeeded', 'Failed']);
      expect(good.phase).toBe('Succeeded');
      // The same process all along: never exited, and nothing retried (a throw is "reconcile failed; will retry").
      expect([ctl.pid, ctl.exitCode, ctl.signalCode]).toEqual([pid, null, null]);
      expect(ctl.logText()).not.toContain('reconcile failed');
      const phases = {
        good: 'Succeeded',
        broken: 'Invalid',
        ...Object.fromEntries(Object.keys(where).map((n) => [n, 'Invalid'])),
      };
      for (const format of ['table', 'wide']) {
        const r = ugro(jobsDir, 'get', 'jobs', '-o', format);
        expect(r.code, r.err).toBe(0);
        for (const [name, phase] of Object.entries(phases))
          expect(r.out).toMatch(new RegExp(`^${name}\\s+${phase}\\b`, 'm'));
      }
      for (const format of ['json', 'yaml']) {
        const r = ugro(jobsDir, 'get', 'jobs', '-o', format);
        expect(r.code, r.err).toBe(0);
        const rows = (format === 'json' ? JSON.parse(r.out) : parse(r.out)) as { name: string; status?: JobStatus }[];
        expect(Object.fromEntries(rows.map((j) => [j.name, j.status?.phase]))).toEqual(phases);
      }
    },
  );

  it('arguments with spaces, quotes, $(…), ;, newlines arrive in sys.argv byte-exact', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    const nasty = [
      'two words',
      "it's",
      'say "hi"',
      '$(touch /tmp/ugro-pwned)',
      '`id`',
      'a;b && c',
      'line1\nline2',
      '-x',
      '--flag=v',
      'ünïcødé ✓',
      '*',
      '~',
      '',
    ];
    writeJob(jobsDir, 'argv', train(['--echo-args', ...nasty], 1));
    const st = await waitPhase(jobsDir, 'argv', ['Succeeded', 'Failed']);
    expect(st.phase).toBe('Succeeded');
    const out = ugro(jobsDir, 'logs', 'argv', '--rank', '0').out;
    const m = /^ARGV (.*)$/m.exec(out);
    expect(m, out).toBeTruthy();
    expect(JSON.parse(m![1])).toEqual(['--echo-args', ...nasty]);
  });

  it('two jobs wanting all three hosts: the second is Queued with a reason, then runs', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    writeJob(jobsDir, 'first', train(['--epochs', '20', '--sleep', '0.05']));
    await waitPhase(jobsDir, 'first', ['Starting', 'Running']);
    writeJob(jobsDir, 'second', train());
    const q = await waitPhase(jobsDir, 'second', ['Queued']);
    expect(q.message).toMatch(/busy with job first/);
    const first = await waitPhase(jobsDir, 'first', ['Succeeded', 'Failed'], 120_000);
    expect(first.phase).toBe('Succeeded');
    const second = await waitPhase(jobsDir, 'second', ['Succeeded', 'Failed'], 120_000);
    expect(second.phase).toBe('Succeeded');
    expect(Date.parse(second.startTime!)).toBeGreaterThanOrEqual(Date.parse(first.completionTime!) - 1000);
  });

  it('spec.after: train starts after prep Succeeded, reading its checkpoint; DependencyFailed; a cycle', async () => {
    jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    const prep = { script: 'train.py', args: ['--epochs', '1', '--steps-per-epoch', '10', '--sleep', '0.1'] };
    // train prints the variable and fails unless prep's checkpoint is there, on its own host.
    const show = ['sh', '-c', 'echo "AFTER=$UGRO_AFTER_PREP_CHECKPOINT"; test -s "$UGRO_AFTER_PREP_CHECKPOINT"'];
    writeJob(jobsDir, 'train', { command: show, nodes: 1, hosts: ['gpu2'], after: [{ job: 'prep' }] });
    writeJob(jobsDir, 'prep', { ...prep, nodes: 1, hosts: ['gpu1'] });
    writeJob(jobsDir, 'bad', { script: 'train.py', args: ['--exit-code', '3', '--fail-rank', '0'], hosts: ['gpu1'] });
    writeJob(jobsDir, 'after-bad', { command: ['true'], after: [{ job: 'bad' }] });
    writeJob(jobsDir, 'loop-a', { command: ['true'], after: [{ job: 'loop-b' }] });
    writeJob(jobsDir, 'loop-b', { command: ['true'], after: [{ job: 'loop-a' }] });
    const waiting = await waitPhase(jobsDir, 'train', ['Queued']);
    expect(waiting.reason).toBe('WaitingForDependency');
    const p = await waitPhase(jobsDir, 'prep', ['Succeeded', 'Failed'], 120_000);
    expect(p.phase, ctl.logText()).toBe('Succeeded');
    const t = await waitPhase(jobsDir, 'train', ['Succeeded', 'Failed'], 60_000);
    expect(t.phase, ctl.logText()).toBe('Succeeded');
    expect(Date.parse(t.startTime!)).toBeGreaterThanOrEqual(Date.parse(p.completionTime!) - 1000);
    const gpu2 = cluster.hosts.find((h) => h.name === 'gpu2')!;
    const out = ugro(jobsDir, 'logs', 'train', '--rank', '0').out;
    expect(out).toContain(`AFTER=${gpu2.paths.checkpoints}/prep/step-`);
    const failed = await waitPhase(jobsDir, 'after-bad', ['Failed', 'Succeeded'], 60_000);
    expect(failed).toMatchObject({ phase: 'Failed', reason: 'DependencyFailed' });
    expect(failed.message).toMatch(/^cannot start: job bad Failed/);
    const cyc = await waitPhase(jobsDir, 'loop-a', ['Invalid']);
    expect(cyc.message).toBe('spec.after: cycle loop-a -> loop-b -> loop-a');
  });
});
