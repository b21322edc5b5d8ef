/**
 * The git source against a real repository (a local bare repo over file://, real git): what it
 * writes into jobs/, what it leaves alone, what it prunes and when it refuses. The controller
 * around it is tested in gitops-controller.test.ts; SSH, signatures over the wire and the whole
 * loop on real hosts in tests/lab/gitops.test.ts.
 */
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { JobSourceInfo } from '../../controller/api/job-source.ts';
import { GitSource, type GitSourceOptions } from '../../controller/gitops/git-source.ts';
import { readGitState } from '../../controller/gitops/state.ts';
import { JobStore } from '../../controller/store/store.ts';
import { jobText, localRemote, quietSourceOptions, signingKey, type WorkRepo } from '../support/git-repo.ts';
import { memoryLogger } from '../support/memory-logger.ts';

const SPEC = { command: ['python3', '/opt/t.py'], args: ['--epochs', '1'] };
const sources: GitSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

interface Rig {
  src: GitSource;
  jobs: string;
  work: WorkRepo;
  url: string;
  log: ReturnType<typeof memoryLogger>;
  notified: string[][];
  info(name: string): Promise<JobSourceInfo | undefined>;
  read(name: string): string | undefined;
}

async function rig(o: Partial<GitSourceOptions> & { work?: WorkRepo; url?: string; jobs?: string } = {}): Promise<Rig> {
  const remote = o.work && o.url ? { work: o.work, url: o.url } : localRemote();
  const jobs = o.jobs ?? mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
  const log = memoryLogger();
  const notified: string[][] = [];
  const src = new GitSource({
    jobsDir: jobs,
    url: remote.url,
    ...quietSourceOptions(),
    log,
    ...o,
  });
  sources.push(src);
  return {
    src,
    jobs,
    work: remote.work,
    url: remote.url,
    log,
    notified,
    info: (n) => src.infoFor(n),
    read: (n) => {
      try {
        return readFileSync(join(jobs, `${n}.yaml`), 'utf8');
      } catch {
        return undefined;
      }
    },
    // start is separate: some tests push first.
  } satisfies Rig;
}

async function started(r: Rig): Promise<Rig> {
  await r.src.start((names) => r.notified.push(names));
  return r;
}

describe('git source: mirroring the branch into jobs/', () => {
  it('writes the job files of the head, records each one with the commit that made it', async () => {
    const r = await rig();
    const sha = r.work.commit({ 'jobs/train.yaml': jobText('train', SPEC), 'README.md': '# jobs\n' }, 'add train');
    r.work.push();
    await started(r);
    expect(r.read('train')).toBe(jobText('train', SPEC));
    const info = await r.info('train');
    expect(info).toMatchObject({
      synced: true,
      reason: 'Synced',
      ready: true,
      fromGit: true,
      file: 'jobs/train.yaml',
      commit: { revision: sha, subject: 'add train', author: 'Ada Lovelace <ada@example.com>' },
    });
    expect(r.notified.flat()).toContain('train');
    const state = readGitState(r.jobs)!;
    expect(state).toMatchObject({ active: true, applied: sha, ready: true, branch: 'main' });
  });

  it('a commit of other files rewrites nothing, revision kept; a comment-only change is a new revision', async () => {
    const r = await rig();
    const first = r.work.commit({ 'jobs/train.yaml': jobText('train', SPEC) }, 'add train');
    r.work.push();
    await started(r);
    const ino = statSync(join(r.jobs, 'train.yaml')).ino;
    r.work.commit({ 'README.md': 'docs\n', 'other/x.yaml': 'not a job path\n' }, 'docs only');
    r.work.push();
    const out = await r.src.syncNow();
    expect(out).toMatchObject({ ok: true, changed: true, written: 0 });
    expect(statSync(join(r.jobs, 'train.yaml')).ino).toBe(ino);
    expect((await r.info('train'))?.commit?.revision).toBe(first);
    const second = r.work.commit({ 'jobs/train.yaml': jobText('train', SPEC, '# a comment\n') }, 'comment');
    r.work.push();
    expect(await r.src.syncNow()).toMatchObject({ ok: true, written: 1 });
    expect((await r.info('train'))?.commit?.revision).toBe(second);
  });

  it('refuses what is hostile: symlinks, big files, bad names, subdirectories, another path', async () => {
    const r = await rig();
    r.work.commit(
      {
        'jobs/good.yaml': jobText('good', SPEC),
        'jobs/link.yaml': { link: '/etc/passwd' },
        'jobs/big.yaml': `# ${'x'.repeat(1024 * 1024 + 10)}\n`,
        'jobs/Bad_Name.yaml': jobText('bad', SPEC),
        'jobs/a.b.yaml': jobText('a', SPEC),
        'jobs/sub/deep.yaml': jobText('deep', SPEC),
        'elsewhere/outside.yaml': jobText('outside', SPEC),
        'jobs/both.yaml': jobText('both', SPEC),
        'jobs/both.yml': jobText('both', { ...SPEC, args: ['yml'] }),
      },
      'hostile',
    );
    r.work.push();
    await started(r);
    expect(r.read('good')).toBeDefined();
    for (const n of ['link', 'big', 'deep', 'outside', 'a.b'])
      expect(() => lstatSync(join(r.jobs, `${n}.yaml`))).toThrow();
    expect(() => lstatSync(join(r.jobs, 'Bad_Name.yaml'))).toThrow();
    expect(() => lstatSync(join(r.jobs, 'both.yml'))).toThrow();
    expect(r.read('both')).toBe(jobText('both', SPEC));
    const ignored = readGitState(r.jobs)!.ignored!;
    const why = (f: string) => ignored.find((i) => i.file === f)?.why;
    expect(why('jobs/link.yaml')).toMatch(/symbolic link/);
    expect(why('jobs/big.yaml')).toMatch(/1 MiB/);
    expect(why('jobs/Bad_Name.yaml')).toMatch(/not a job name/);
    expect(why('jobs/both.yml')).toMatch(/both.yaml is applied/);
    // A job that was fine and becomes a symlink keeps its last good version, OutOfSync.
    r.work.commit({ 'jobs/good.yaml': { link: '../elsewhere/outside.yaml' } }, 'good becomes a link');
    r.work.push();
    await r.src.syncNow();
    expect(r.read('good')).toBe(jobText('good', SPEC));
    expect(await r.info('good')).toMatchObject({ synced: false, reason: 'NotApplicable' });
  });

  it('a file removed from git is kept running (OutOfSync) with pruning off', async () => {
    const r = await rig();
    r.work.commit({ 'jobs/a.yaml': jobText('a', SPEC), 'jobs/b.yaml': jobText('b', SPEC) }, 'two');
    r.work.push();
    await started(r);
    const gone = r.work.commit({ 'jobs/a.yaml': null }, 'remove a');
    r.work.push();
    await r.src.syncNow();
    expect(r.read('a')).toBeDefined();
    const info = await r.info('a');
    expect(info).toMatchObject({ synced: false, reason: 'RemovedFromGit' });
    expect(info!.message).toContain(`removed from git at ${gone.slice(0, 12)}`);
    expect(info!.message).toMatch(/pruning is off/);
    // Put back: in sync again, nothing rewritten (same bytes).
    r.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'restore a');
    r.work.push();
    expect(await r.src.syncNow()).toMatchObject({ written: 0 });
    expect(await r.info('a')).toMatchObject({ synced: true });
  });

  it('prunes a removed file with --prune, but not a commit removing more than half or the whole path', async () => {
    const r = await rig({ prune: true });
    const files = Object.fromEntries(['a', 'b', 'c', 'd'].map((n) => [`jobs/${n}.yaml`, jobText(n, SPEC)]));
    r.work.commit(files, 'four');
    r.work.push();
    await started(r);
    r.work.commit({ 'jobs/a.yaml': null }, 'remove a');
    r.work.push();
    expect(await r.src.syncNow()).toMatchObject({ pruned: 1 });
    expect(r.read('a')).toBeUndefined();
    expect(await r.info('a')).toMatchObject({ synced: false, reason: 'Pruning' });
    // 2 of 3: more than half.
    r.work.commit({ 'jobs/b.yaml': null, 'jobs/c.yaml': null }, 'remove b and c');
    r.work.push();
    expect(await r.src.syncNow()).toMatchObject({ pruned: 0 });
    expect(r.read('b')).toBeDefined();
    expect((await r.info('b'))!.message).toMatch(/removes 2 of 3 jobs.*--prune-all/);
    expect(readGitState(r.jobs)!.guard).toMatch(/2 of 3/);
    // The whole path.
    r.work.commit({ jobs: null }, 'remove the path');
    r.work.push();
    await r.src.syncNow();
    expect(r.read('d')).toBeDefined();
    expect((await r.info('d'))!.message).toMatch(/whole jobs path/);
    const events = await new JobStore(r.jobs).readEvents('(git)');
    expect(events.map((e) => e.reason)).toContain('PruneHeld');
  });

  it('--prune-all prunes a mass deletion', async () => {
    const r = await rig({ prune: true, pruneAll: true });
    r.work.commit({ 'jobs/a.yaml': jobText('a', SPEC), 'jobs/b.yaml': jobText('b', SPEC) }, 'two');
    r.work.push();
    await started(r);
    r.work.commit({ jobs: null }, 'all gone');
    r.work.push();
    expect(await r.src.syncNow()).toMatchObject({ pruned: 2 });
    expect(r.read('a')).toBeUndefined();
  });

  it('a file changed in jobs/ is OutOfSync and left alone until git changes it; never pruned', async () => {
    const r = await rig({ prune: true });
    r.work.commit(
      { 'jobs/a.yaml': jobText('a', SPEC), 'jobs/b.yaml': jobText('b', SPEC), 'jobs/c.yaml': jobText('c', SPEC) },
      'three',
    );
    r.work.push();
    await started(r);
    writeFileSync(join(r.jobs, 'a.yaml'), jobText('a', { ...SPEC, args: ['forced'] }));
    expect(await r.info('a')).toMatchObject({ synced: false, reason: 'LocalChange', fromGit: false });
    r.work.commit({ 'README.md': 'x\n' }, 'unrelated');
    r.work.push();
    await r.src.syncNow();
    expect(r.read('a')).toContain('forced');
    r.work.commit({ 'jobs/a.yaml': jobText('a', { ...SPEC, args: ['from git'] }) }, 'git agrees, differently');
    r.work.push();
    await r.src.syncNow();
    expect(r.read('a')).toContain('from git');
    expect(await r.info('a')).toMatchObject({ synced: true });
    // Changed locally, then removed from git: not pruned.
    writeFileSync(join(r.jobs, 'b.yaml'), jobText('b', { ...SPEC, args: ['forced'] }));
    r.work.commit({ 'jobs/b.yaml': null }, 'remove b');
    r.work.push();
    expect(await r.src.syncNow()).toMatchObject({ pruned: 0 });
    expect(r.read('b')).toContain('forced');
    // A file written by hand that git never had: NotInGit.
    writeFileSync(join(r.jobs, 'manual.yaml'), jobText('manual', SPEC));
    expect(await r.info('manual')).toMatchObject({ synced: false, reason: 'NotInGit' });
  });

  // What git wrote is recognised by its bytes, read only from a regular file and never through a
  // symlink: a link in jobs/ to a copy of git's bytes is not git's file, and a directory there is
  // reported, not read (it would throw EISDIR).
  it("a job file replaced by a symlink to the same bytes, or by a directory, is not counted as git's", async () => {
    const r = await rig();
    r.work.commit({ 'jobs/a.yaml': jobText('a', SPEC), 'jobs/b.yaml': jobText('b', SPEC) }, 'two');
    r.work.push();
    await started(r);
    expect(await r.info('a')).toMatchObject({ synced: true, fromGit: true });
    const copy = join(mkdtempSync(join(tmpdir(), 'ugro-elsewhere-')), 'a.yaml');
    writeFileSync(copy, readFileSync(join(r.jobs, 'a.yaml')));
    unlinkSync(join(r.jobs, 'a.yaml'));
    symlinkSync(copy, join(r.jobs, 'a.yaml'));
    expect(await r.info('a')).toMatchObject({ synced: false, fromGit: false, reason: 'LocalChange' });
    unlinkSync(join(r.jobs, 'b.yaml'));
    mkdirSync(join(r.jobs, 'b.yaml'));
    expect(await r.info('b')).toMatchObject({ synced: false, fromGit: false, reason: 'LocalChange' });
  });

  it('a force-push to an older history is applied like any other head, with HistoryRewritten', async () => {
    const r = await rig();
    const v1 = r.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'v1');
    r.work.push();
    await started(r);
    const v2 = r.work.commit({ 'jobs/a.yaml': jobText('a', { ...SPEC, args: ['v2'] }) }, 'v2');
    r.work.push();
    await r.src.syncNow();
    expect(r.read('a')).toContain('v2');
    r.work.resetTo(v1);
    r.work.push(true);
    expect(await r.src.syncNow()).toMatchObject({ ok: true, revision: v1, written: 1 });
    expect(r.read('a')).toBe(jobText('a', SPEC));
    expect(await r.info('a')).toMatchObject({ rewrittenFrom: v2, commit: { revision: v1 } });
    const events = await new JobStore(r.jobs).readEvents('(git)');
    expect(events.find((e) => e.reason === 'HistoryRewritten')?.message).toContain(v2.slice(0, 12));
  });

  it('an unreachable remote changes nothing: SourceReady=False, then back', async () => {
    const r = await rig();
    r.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a');
    r.work.push();
    await started(r);
    const before = r.read('a');
    const bare = r.url.replace('file://', '');
    renameSync(bare, `${bare}.away`);
    const out = await r.src.syncNow();
    expect(out.ok).toBe(false);
    expect(r.read('a')).toBe(before);
    const info = await r.info('a');
    expect(info).toMatchObject({ synced: true, ready: false, readyReason: 'FetchFailed' });
    expect(info!.readyMessage).toMatch(/cannot fetch main/);
    expect(readGitState(r.jobs)).toMatchObject({ ready: false, reason: 'FetchFailed', failures: 1 });
    expect(r.log.lines.some((l) => l.msg.includes('fetch failed'))).toBe(true);
    renameSync(`${bare}.away`, bare);
    expect(await r.src.syncNow()).toMatchObject({ ok: true });
    expect(await r.info('a')).toMatchObject({ synced: true, ready: true, readyReason: 'Fetched' });
    const reasons = (await new JobStore(r.jobs).readEvents('(git)')).map((e) => e.reason);
    expect(reasons).toEqual(expect.arrayContaining(['FetchFailed', 'SourceReady']));
  });

  it('a missing branch says so', async () => {
    const r = await rig({ branch: 'nope' });
    await started(r);
    expect((await r.src.syncNow()).message).toMatch(/branch nope not found/);
  });
});

describe('git source: signed commits', () => {
  it('an unsigned or unknown-signer head is not applied; the previous revision stays; a signed one is', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-sign-'));
    const good = signingKey(dir);
    const stranger = signingKey(dir, 'mallory@example.com');
    const remote = localRemote();
    const first = remote.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'signed a', { signingKey: good.key });
    remote.work.push();
    const r = await rig({ ...remote, requireSigned: true, allowedSigners: good.allowedSigners });
    await started(r);
    expect(r.read('a')).toBeDefined();
    remote.work.commit({ 'jobs/a.yaml': jobText('a', { ...SPEC, args: ['unsigned'] }) }, 'unsigned');
    remote.work.push();
    const out = await r.src.syncNow();
    expect(out).toMatchObject({ ok: false });
    expect(out.message).toMatch(/not signed/);
    expect(r.read('a')).toBe(jobText('a', SPEC));
    expect(await r.info('a')).toMatchObject({
      synced: false,
      reason: 'NotApplied',
      ready: false,
      readyReason: 'SignatureRefused',
      commit: { revision: first },
    });
    expect(readGitState(r.jobs)!.refused?.why).toMatch(/not signed/);
    remote.work.commit({ 'jobs/a.yaml': jobText('a', { ...SPEC, args: ['mallory'] }) }, 'by mallory', {
      signingKey: stranger.key,
    });
    remote.work.push();
    expect((await r.src.syncNow()).message).toMatch(/not in the allowed signers/);
    expect(r.read('a')).toBe(jobText('a', SPEC));
    const signed = remote.work.commit({ 'jobs/a.yaml': jobText('a', { ...SPEC, args: ['ok'] }) }, 'signed', {
      signingKey: good.key,
    });
    remote.work.push();
    expect(await r.src.syncNow()).toMatchObject({ ok: true, revision: signed });
    expect(r.read('a')).toContain('ok');
    expect(await r.info('a')).toMatchObject({ synced: true, ready: true });
  });
});

describe('git source: ugro sync requests', () => {
  it('answers a request file in state.json once the head is applied', async () => {
    const r = await rig({ watchRequests: true });
    r.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a');
    r.work.push();
    await started(r);
    const sha = r.work.commit({ 'jobs/b.yaml': jobText('b', SPEC) }, 'b');
    r.work.push();
    const { requestSync } = await import('../../controller/gitops/request.ts');
    const answer = await requestSync(r.jobs, 20_000, { running: () => true });
    expect(answer.request).toMatchObject({ ok: true, revision: sha });
    expect(r.read('b')).toBeDefined();
  });

  it('refuses without a git source or a running controller', async () => {
    const { requestSync } = await import('../../controller/gitops/request.ts');
    const jobs = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    await expect(requestSync(jobs, 1000)).rejects.toThrow(/does not follow git/);
    const r = await rig({ jobs });
    r.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a');
    r.work.push();
    await started(r);
    await expect(requestSync(jobs, 1000, { running: () => false })).rejects.toThrow(/no controller is running/);
    unlinkSync(join(jobs, '.ugro', 'git', 'state.json'));
  });
});
