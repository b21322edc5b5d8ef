/**
 * GitOps through the whole controller loop, on in-memory hosts (FakeHosts) and a real git
 * repository (file://): a commit becomes a launch with its revision in the status, a commit that
 * does not change the spec never restarts, a changed spec is a new generation, a revert trains
 * again (SpecReverted), a removed file keeps running OutOfSync unless pruning, which stops it with
 * the grace period. The lab test does the same over ssh with real training.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type JobStatus, parseJobStatus } from '../../controller/api/status.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { main } from '../../controller/cli/main.ts';
import { GitSource } from '../../controller/gitops/git-source.ts';
import { Controller } from '../../controller/loop/controller.ts';
import { JobStore } from '../../controller/store/store.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { jobText, localRemote, type WorkRepo } from '../support/git-repo.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { CLUSTER, HOSTS } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const SPEC = { command: ['python3', '/opt/t.py'], nodes: 1, hosts: ['gpu1'] };

interface Rig {
  ctl: Controller;
  src: GitSource;
  fake: FakeHosts;
  jobs: string;
  work: WorkRepo;
  url: string;
  /** Fetch, apply, reconcile what changed; wait until the queue is idle. */
  sync(): Promise<void>;
  pass(...names: string[]): Promise<void>;
  status(name: string): JobStatus | undefined;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.ctl.stop();
});

async function rig(
  o: { prune?: boolean; jobs?: string; fake?: FakeHosts; remote?: { work: WorkRepo; url: string } } = {},
): Promise<Rig> {
  const clock = { ms: T0 };
  const fake = o.fake ?? new FakeHosts(HOSTS, { now: () => clock.ms, cluster: CLUSTER });
  const jobs = o.jobs ?? mkdtempSync(join(tmpdir(), 'ugro-gitctl-'));
  const remote = o.remote ?? localRemote();
  const log = memoryLogger();
  const src = new GitSource({
    jobsDir: jobs,
    url: remote.url,
    branch: 'main',
    path: 'jobs',
    intervalMs: 3_600_000,
    prune: o.prune ?? false,
    pruneAll: false,
    requireSigned: false,
    auth: { knownHosts: '/dev/null', useAgent: false, connectTimeoutSeconds: 5 },
    log,
    watchRequests: false,
    setTimer: () => () => undefined,
  });
  const ctl = new Controller({
    cluster: CLUSTER,
    jobsDir: jobs,
    runtime: new SshBackend(fake),
    log,
    // Time moves 10 ms per look: generations begin at distinct instants.
    now: () => {
      clock.ms += 10;
      return new Date(clock.ms);
    },
    owner: 'test-controller',
    source: src,
    graceSeconds: 7,
    watch: async () => ({ close: async () => {} }),
    lock: async () => ({ release: async () => {} }),
    every: () => () => undefined,
    queueTimers: { setTimeout: () => ({ unref() {} }) as unknown as NodeJS.Timeout, clearTimeout: () => {} },
  });
  await ctl.start();
  await ctl.idle();
  const r: Rig = {
    ctl,
    src,
    fake,
    jobs,
    work: remote.work,
    url: remote.url,
    async sync() {
      await src.syncNow();
      // The watch is off here: reconcile every job file, as the watcher would on the writes.
      for (const n of (await new JobStore(jobs).listNames()).specs) ctl.enqueue(n);
      await ctl.idle();
    },
    async pass(...names) {
      for (const n of names) ctl.enqueue(n);
      await ctl.idle();
    },
    status(name) {
      const f = join(jobs, `${name}.status.yaml`);
      return existsSync(f) ? (parse(readFileSync(f, 'utf8')) as JobStatus) : undefined;
    },
  };
  rigs.push(r);
  return r;
}

const launches = (f: FakeHosts) => f.calls.filter((c) => c.op === 'run' && c.script === 'launch');
const stops = (f: FakeHosts) => f.calls.filter((c) => c.op === 'run' && c.script === 'stop');
const dirOf = (s: JobStatus | undefined) => `${s?.runId?.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')}`;
const cond = (s: JobStatus | undefined, t: string) => s?.conditions.find((c) => c.type === t);

describe('GitOps through the controller loop', () => {
  it('commit to train: revision in status; README and comment-only commits never restart; new specs do', async () => {
    const remote = localRemote();
    const add = remote.work.commit({ 'jobs/train.yaml': jobText('train', SPEC) }, 'add train');
    remote.work.push();
    const r = await rig({ remote });
    const st = r.status('train')!;
    expect(st).toMatchObject({ phase: 'Starting', revision: add, owner: 'Ada Lovelace <ada@example.com>' });
    expect(st.source).toMatchObject({ revision: add, subject: 'add train', sync: 'Synced', file: 'jobs/train.yaml' });
    expect(cond(st, 'Synced')?.status).toBe('True');
    expect(cond(st, 'SourceReady')?.status).toBe('True');
    expect(launches(r.fake)).toHaveLength(1);
    r.fake.startRanks('gpu1', dirOf(st), 1);
    await r.pass('train');
    expect(r.status('train')!.phase).toBe('Running');

    // README only: nothing written, nothing restarted, the job's revision unchanged.
    r.work.commit({ 'README.md': 'how to train\n' }, 'docs');
    r.work.push();
    await r.sync();
    expect(r.status('train')).toMatchObject({ phase: 'Running', attempt: 1, revision: add, runId: st.runId });
    // Comments only: the file is rewritten with a new revision; same spec hash, no restart.
    const comment = r.work.commit({ 'jobs/train.yaml': jobText('train', SPEC, '# tuned later\n') }, 'comment');
    r.work.push();
    await r.sync();
    expect(r.status('train')).toMatchObject({ phase: 'Running', attempt: 1, revision: comment, runId: st.runId });
    // Labels and annotations only: no restart either.
    const labels = r.work.commit(
      { 'jobs/train.yaml': jobText('train', SPEC).replace('  name: train\n', '  name: train\n  labels: {team: a}\n') },
      'labels',
    );
    r.work.push();
    await r.sync();
    expect(r.status('train')).toMatchObject({ phase: 'Running', attempt: 1, revision: labels, runId: st.runId });
    expect(launches(r.fake)).toHaveLength(1);
    expect(stops(r.fake)).toHaveLength(0);

    // A changed spec: a new generation, the old run stopped.
    const v2 = r.work.commit({ 'jobs/train.yaml': jobText('train', { ...SPEC, args: ['--lr', '0.1'] }) }, 'lr');
    r.work.push();
    await r.sync();
    await r.pass('train');
    const st2 = r.status('train')!;
    expect(st2.observedGeneration).toBe(st.observedGeneration + 1);
    expect(st2.revision).toBe(v2);
    expect(stops(r.fake).map((c) => c.args?.[3])).toContain('spec-changed');
    expect(launches(r.fake)).toHaveLength(2);

    // A revert to the first spec (a new commit) trains again, and says so.
    r.fake.startRanks('gpu1', dirOf(st2), 1);
    await r.pass('train');
    const back = r.work.commit({ 'jobs/train.yaml': jobText('train', SPEC) }, 'Revert "lr"');
    r.work.push();
    await r.sync();
    await r.pass('train');
    const st3 = r.status('train')!;
    expect(st3).toMatchObject({ revision: back, specHash: st.specHash, observedGeneration: st.observedGeneration + 2 });
    expect(launches(r.fake)).toHaveLength(3);
    const events = await new JobStore(r.jobs).readEvents('train', 100);
    expect(events.map((e) => e.reason)).toContain('SpecReverted');
    expect(events.filter((e) => e.reason === 'RevisionApplied')).toHaveLength(5);
  });

  // Issue 15, item 4 (the reproduction): a 600-character author made the status fail its schema,
  // so every reconcile started it over: createdAt reset, events flooded, budgets lost.
  it('a commit author of 600 characters: the status stays valid and stable over many reconciles', async () => {
    const remote = localRemote();
    const name = `${'Very Long Name '.repeat(40)}`.slice(0, 600);
    remote.work.commit({ 'jobs/train.yaml': jobText('train', SPEC) }, 'add train', {
      author: { name, email: 'long@example.com' },
    });
    remote.work.push();
    const r = await rig({ remote });
    const raw = parse(readFileSync(join(r.jobs, 'train.status.yaml'), 'utf8'));
    expect(parseJobStatus(raw), JSON.stringify(raw).slice(0, 300)).toBeDefined();
    const st = r.status('train')!;
    expect(st.phase).toBe('Starting');
    expect(st.source?.author).toMatch(/^Very Long Name .*… <long@example\.com>$/);
    expect(st.source!.author!.length).toBeLessThanOrEqual(512);
    expect(st.owner).toBe(st.source?.author);
    expect(cond(st, 'StatusSalvaged')).toBeUndefined();
    r.fake.startRanks('gpu1', dirOf(st), 1);
    await r.pass('train');
    const running = r.status('train')!;
    expect(running.phase).toBe('Running');
    const before = (await new JobStore(r.jobs).readEvents('train', 1000)).length;
    for (let i = 0; i < 5; i++) await r.pass('train');
    const after = r.status('train')!;
    expect(after).toMatchObject({ createdAt: st.createdAt, attempt: 1, runId: st.runId, phase: 'Running' });
    expect((await new JobStore(r.jobs).readEvents('train', 1000)).length).toBe(before);
    expect(launches(r.fake)).toHaveLength(1);
  });

  it('removed from git: OutOfSync and running with pruning off; stopped with its grace with --prune', async () => {
    const remote = localRemote();
    remote.work.commit(
      {
        'jobs/keep.yaml': jobText('keep', SPEC),
        'jobs/other.yaml': jobText('other', { ...SPEC, hosts: ['gpu2'] }),
        'jobs/third.yaml': jobText('third', { ...SPEC, hosts: ['gpu-master'] }),
      },
      'three jobs',
    );
    remote.work.push();
    const r = await rig({ remote });
    const st = r.status('keep')!;
    r.fake.startRanks('gpu1', dirOf(st), 1);
    await r.pass('keep');
    const removed = r.work.commit({ 'jobs/keep.yaml': null }, 'remove keep');
    r.work.push();
    await r.sync();
    await r.pass('keep');
    const out = r.status('keep')!;
    expect(out.phase).toBe('Running');
    expect(out.source).toMatchObject({ sync: 'OutOfSync', reason: 'RemovedFromGit' });
    expect(cond(out, 'Synced')?.message).toContain(`removed from git at ${removed.slice(0, 12)}`);
    expect(existsSync(join(r.jobs, 'keep.yaml'))).toBe(true);
    expect(stops(r.fake)).toHaveLength(0);
    const events = await new JobStore(r.jobs).readEvents('keep', 100);
    expect(events.find((e) => e.reason === 'OutOfSync')?.type).toBe('Warning');

    // The controller restarted with --prune: the removal is applied, the run stopped with its grace.
    await r.ctl.stop();
    rigs.splice(rigs.indexOf(r), 1);
    const p = await rig({ prune: true, jobs: r.jobs, fake: r.fake, remote });
    expect(existsSync(join(p.jobs, 'keep.yaml'))).toBe(false);
    await p.pass('keep');
    const stop = stops(p.fake).find((c) => c.args?.[3] === 'deleted');
    expect(stop?.args?.[2]).toBe('7000');
  });

  it('an invalid file beside a valid one: Invalid with the commit, file, line and field; the other runs', async () => {
    const remote = localRemote();
    const bad = jobText('bad', { ...SPEC, nodes: 0 });
    const sha = remote.work.commit({ 'jobs/bad.yaml': bad, 'jobs/good.yaml': jobText('good', SPEC) }, 'two');
    remote.work.push();
    const r = await rig({ remote });
    expect(r.status('good')?.phase).toBe('Starting');
    const st = r.status('bad')!;
    const line = bad.split('\n').findIndex((l) => l.startsWith('  nodes')) + 1;
    expect(st.phase).toBe('Invalid');
    expect(st.message).toBe(`${sha.slice(0, 12)}:jobs/bad.yaml:${line}:10: spec.nodes: must be >= 1`);
    expect(st.revision).toBe(sha);
  });

  it('ugro apply and delete refuse a jobs dir that follows git; --force writes it and it is OutOfSync', async () => {
    const remote = localRemote();
    remote.work.commit({ 'jobs/train.yaml': jobText('train', SPEC) }, 'add');
    remote.work.push();
    const r = await rig({ remote });
    const f = join(mkdtempSync(join(tmpdir(), 'ugro-apply-')), 'train.yaml');
    writeFileSync(f, jobText('train', { ...SPEC, args: ['forced'] }));
    const cli = async (...argv: string[]) => {
      const out: string[] = [];
      const err: string[] = [];
      const code = await main(['node', 'ugro', '--jobs', r.jobs, ...argv], {
        out: (s) => out.push(s),
        err: (s) => err.push(s),
      });
      return { code, out: out.join('\n'), err: err.join('\n') };
    };
    const refused = await cli('apply', '-f', f);
    expect(refused.code).toBe(1);
    expect(refused.err).toBe(
      `error: this jobs dir follows ${r.url}@main: commit the change instead ` +
        '(--force overrides it in an emergency; the job is then OutOfSync until git agrees)',
    );
    expect((await cli('delete', 'job', 'train')).code).toBe(1);
    expect(existsSync(join(r.jobs, 'train.yaml'))).toBe(true);
    const forced = await cli('apply', '-f', f, '--force');
    expect(forced.code).toBe(0);
    expect(forced.err).toMatch(/OutOfSync until git agrees/);
    await r.pass('train');
    expect(r.status('train')?.source).toMatchObject({ sync: 'OutOfSync', reason: 'LocalChange' });
    // get jobs -o wide shows the revision (8 hex) and the sync state.
    const wide = await cli('get', 'jobs', '-o', 'wide');
    expect(wide.out.split('\n')[0]).toMatch(/REVISION\s+SYNC\s+MESSAGE/);
    expect(wide.out).toContain(`${r.status('train')!.revision!.slice(0, 8)}  OutOfSync`);
    const described = await cli('describe', 'job', 'train');
    expect(described.out).toMatch(/Revision: +[0-9a-f]{40} "add"/);
    expect(described.out).toMatch(/Author: +Ada Lovelace <ada@example.com>/);
  });
});
