/**
 * The pure parts of GitOps: the branch's tree read as job files (hostile entries refused), the
 * plan of writes and prunes (with the mass-deletion guard), each job's sync state, the URL,
 * branch and path rules, and what core records in the status (revision, conditions, owner,
 * events, an invalid file named by its commit).
 */
import { describe, expect, it } from 'vitest';
import { checkBranch, normalizeRepoPath, parseGitUrl } from '../../config/gitops.ts';
import type { JobSourceInfo } from '../../controller/api/job-source.ts';
import type { SpecState } from '../../controller/api/job-state.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import { parseTrainingJob, specHash } from '../../controller/api/trainingjob.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import { refreshSource, withSource } from '../../controller/core/source.ts';
import { describeFetchError, presentedKey } from '../../controller/gitops/git-errors.ts';
import { backoffMs } from '../../controller/gitops/git-source.ts';
import { parseManifest } from '../../controller/gitops/manifest.ts';
import { gitNote, parseGitState, refuseIfGitManaged } from '../../controller/gitops/state.ts';
import {
  type AppliedJob,
  type JobTree,
  jobInfo,
  massDeletion,
  parseTree,
  planSync,
  type SourceState,
} from '../../controller/gitops/sync-plan.ts';
import { CLUSTER } from './job-fixtures.ts';

const OID = (c: string) => c.repeat(40);
const REV = (c: string) => c.repeat(40);
const commit = (c: string) => ({ revision: REV(c), subject: `commit ${c}`, author: 'Ada <ada@x>', authorTime: 'T' });

function lsTree(entries: [mode: string, type: string, oid: string, size: string | number, name: string][]): string {
  return entries.map(([m, t, o, s, n]) => `${m} ${t} ${o} ${String(s).padStart(7)}\t${n}\0`).join('');
}

describe('parseTree: only job files, only regular ones', () => {
  const raw = lsTree([
    ['100644', 'blob', OID('a'), 10, 'good.yaml'],
    ['100755', 'blob', OID('b'), 10, 'exec.yml'],
    ['120000', 'blob', OID('c'), 11, 'link.yaml'],
    ['160000', 'commit', OID('d'), '-', 'sub.yaml'],
    ['040000', 'tree', OID('e'), '-', 'dir.yaml'],
    ['100644', 'blob', OID('f'), 1024 * 1024 + 1, 'big.yaml'],
    ['100644', 'blob', OID('1'), 10, 'Bad_Name.yaml'],
    ['100644', 'blob', OID('2'), 10, 'a.b.yaml'],
    ['100644', 'blob', OID('3'), 10, 'README.md'],
    ['100644', 'blob', OID('4'), 10, 'both.yaml'],
    ['100644', 'blob', OID('5'), 10, 'both.yml'],
    ['100644', 'blob', OID('6'), 10, `${'x'.repeat(64)}.yaml`],
    ['100644', 'blob', OID('7'), 10, '-rf.yaml'],
  ]);
  const t = parseTree(raw, 'jobs');

  it('keeps regular files with job names, named by their path in the repository', () => {
    expect([...t.jobs.keys()].sort()).toEqual(['both', 'exec', 'good']);
    expect(t.jobs.get('good')).toMatchObject({ file: 'good.yaml', repoFile: 'jobs/good.yaml', oid: OID('a') });
    expect(t.jobs.get('both')?.file).toBe('both.yaml');
  });

  it('refuses symlinks, submodules, directories and files over 1 MiB by name, and says why', () => {
    expect(Object.fromEntries([...t.refused].map(([n, r]) => [n, r.why]))).toEqual({
      link: expect.stringMatching(/symbolic link/),
      sub: expect.stringMatching(/submodule/),
      dir: expect.stringMatching(/directory/),
      big: expect.stringMatching(/1 MiB/),
    });
  });

  it('ignores names that are not job names (and says so), and other files silently', () => {
    expect(t.ignored.map((i) => i.file).sort()).toEqual(
      ['jobs/-rf.yaml', 'jobs/Bad_Name.yaml', 'jobs/a.b.yaml', 'jobs/both.yml', `jobs/${'x'.repeat(64)}.yaml`].sort(),
    );
    expect(t.ignored.some((i) => i.file.includes('README'))).toBe(false);
  });

  it('a path missing at the revision is an empty tree that says so', () => {
    expect(parseTree('', 'jobs', true)).toMatchObject({ pathMissing: true, jobs: new Map() });
  });
});

function tree(jobs: Record<string, string>, o: Partial<JobTree> = {}): JobTree {
  const t: JobTree = { jobs: new Map(), refused: new Map(), ignored: [], pathMissing: false, ...o };
  for (const [n, oid] of Object.entries(jobs))
    t.jobs.set(n, { name: n, file: `${n}.yaml`, repoFile: `jobs/${n}.yaml`, oid, size: 10 });
  return t;
}
function applied(jobs: Record<string, string>): Map<string, AppliedJob> {
  return new Map(
    Object.entries(jobs).map(([n, oid]) => [
      n,
      { file: `${n}.yaml`, repoFile: `jobs/${n}.yaml`, oid, commit: commit('1') },
    ]),
  );
}
const local = (jobs: Record<string, string>) =>
  new Map(Object.entries(jobs).map(([n, oid]) => [n, { file: `${n}.yaml`, oid }]));

describe('planSync', () => {
  const base = { head: REV('9'), prune: false, pruneAll: false };

  it('writes new and changed files, adopts identical ones, leaves unchanged ones alone', () => {
    const p = planSync({
      ...base,
      tree: tree({ a: OID('a'), b: OID('2'), c: OID('c'), d: OID('d') }),
      applied: applied({ a: OID('a'), b: OID('b') }),
      local: local({ a: OID('a'), b: OID('b'), c: OID('c') }),
    });
    expect(p.write.map((w) => w.job.name).sort()).toEqual(['b', 'd']);
    expect(p.adopt.map((j) => j.name)).toEqual(['c']);
    expect(p.prune).toEqual([]);
  });

  it('leaves a locally changed (or deleted) file alone while git does not change it; git wins when it does', () => {
    const same = planSync({
      ...base,
      tree: tree({ a: OID('a'), b: OID('b') }),
      applied: applied({ a: OID('a'), b: OID('b') }),
      local: local({ a: OID('f') }),
    });
    expect(same.write).toEqual([]);
    const moved = planSync({
      ...base,
      tree: tree({ a: OID('2') }),
      applied: applied({ a: OID('a') }),
      local: local({ a: OID('f') }),
    });
    expect(moved.write.map((w) => w.job.name)).toEqual(['a']);
  });

  it('keeps removed files with pruning off; prunes with it on; never a locally changed one', () => {
    const input = {
      ...base,
      tree: tree({ a: OID('a'), b: OID('b'), c: OID('c') }),
      applied: applied({ a: OID('a'), b: OID('b'), c: OID('c'), d: OID('d'), e: OID('e') }),
      local: local({ a: OID('a'), b: OID('b'), c: OID('c'), d: OID('d'), e: OID('0') }),
    };
    const off = planSync(input);
    expect(off.prune).toEqual([]);
    expect(off.kept.get('d')).toMatch(/pruning is off/);
    expect(off.kept.get('e')).toMatch(/changed there/);
    const on = planSync({ ...input, prune: true });
    expect(on.prune).toEqual([{ name: 'd', file: 'd.yaml' }]);
    expect(on.kept.has('e')).toBe(true);
  });

  it('forgets a removed file that is already gone from jobs/', () => {
    const p = planSync({
      ...base,
      prune: true,
      tree: tree({ a: OID('a') }),
      applied: applied({ a: OID('a'), b: OID('b') }),
      local: local({ a: OID('a') }),
    });
    expect(p.forget).toEqual(['b']);
  });

  it('the mass-deletion guard: more than half, every job, or the whole path; --prune-all overrides', () => {
    const five = { a: OID('a'), b: OID('b'), c: OID('c'), d: OID('d'), e: OID('e') };
    const three = planSync({
      ...base,
      prune: true,
      tree: tree({ a: OID('a'), b: OID('b') }),
      applied: applied(five),
      local: local(five),
    });
    expect(three.prune).toEqual([]);
    expect(three.guard).toBe('the commit removes 3 of 5 jobs (more than half)');
    expect(three.kept.get('c')).toMatch(/--prune-all/);
    const two = planSync({
      ...base,
      prune: true,
      tree: tree({ a: OID('a'), b: OID('b'), c: OID('c') }),
      applied: applied(five),
      local: local(five),
    });
    expect(two.prune.map((p) => p.name)).toEqual(['d', 'e']);
    const path = planSync({
      ...base,
      prune: true,
      tree: tree({}, { pathMissing: true }),
      applied: applied(five),
      local: local(five),
    });
    expect(path.guard).toBe('the commit removes the whole jobs path');
    const all = planSync({
      ...base,
      prune: true,
      pruneAll: true,
      tree: tree({}, { pathMissing: true }),
      applied: applied(five),
      local: local(five),
    });
    expect(all.prune).toHaveLength(5);
    expect(massDeletion(1, 2, tree({ a: OID('a') }))).toBeUndefined();
    expect(massDeletion(1, 1, tree({}))).toMatch(/every job/);
  });
});

describe('jobInfo: each job in or out of sync', () => {
  const source: SourceState = { url: 'ssh://git@h/r.git', branch: 'main', applied: REV('9'), neverFetched: false };
  const t = tree({ a: OID('a') });
  const a = applied({ a: OID('a') }).get('a')!;

  it('Synced when jobs/ has what git wrote at the head', () => {
    expect(jobInfo({ name: 'a', source, tree: t, applied: a, local: { file: 'a.yaml', oid: OID('a') } })).toMatchObject(
      {
        synced: true,
        reason: 'Synced',
        fromGit: true,
        ready: true,
        commit: commit('1'),
        file: 'jobs/a.yaml',
      },
    );
  });

  it('OutOfSync with the reason: changed locally, removed from git, not in git, not applied', () => {
    expect(jobInfo({ name: 'a', source, tree: t, applied: a, local: { file: 'a.yaml', oid: OID('f') } })).toMatchObject(
      {
        synced: false,
        reason: 'LocalChange',
        fromGit: false,
      },
    );
    const removed = jobInfo({
      name: 'a',
      source,
      tree: tree({}),
      applied: { ...a, removedAt: REV('8') },
      local: { file: 'a.yaml', oid: OID('a') },
      keptWhy: 'pruning is off (--prune): it keeps running',
    })!;
    expect(removed).toMatchObject({ synced: false, reason: 'RemovedFromGit' });
    expect(removed.message).toBe(
      `removed from git at ${REV('8').slice(0, 12)}; pruning is off (--prune): it keeps running`,
    );
    expect(jobInfo({ name: 'm', source, tree: t, local: { file: 'm.yaml', oid: OID('m') } })).toMatchObject({
      reason: 'NotInGit',
    });
    expect(jobInfo({ name: 'nothing', source, tree: t })).toBeUndefined();
    const refused = { ...source, refused: { revision: REV('7'), why: 'the commit is not signed' } };
    const pending = jobInfo({
      name: 'a',
      source: refused,
      tree: t,
      refusedTree: tree({ a: OID('2') }),
      applied: a,
      local: { file: 'a.yaml', oid: OID('a') },
    })!;
    expect(pending).toMatchObject({
      synced: false,
      reason: 'NotApplied',
      ready: false,
      readyReason: 'SignatureRefused',
    });
    expect(pending.message).toMatch(/not signed/);
  });

  it('SourceReady=False when the fetch fails, naming the revision jobs follow', () => {
    const down = jobInfo({
      name: 'a',
      source: { ...source, fetchError: 'ssh: connect to host h port 22: Connection refused' },
      tree: t,
      applied: a,
      local: { file: 'a.yaml', oid: OID('a') },
    })!;
    expect(down).toMatchObject({ synced: true, ready: false, readyReason: 'FetchFailed' });
    expect(down.readyMessage).toContain('Connection refused');
    expect(down.readyMessage).toContain(REV('9').slice(0, 12));
  });
});

describe('URL, branch and path rules', () => {
  it('accepts ssh, scp-like, https, http and file URLs', () => {
    expect(parseGitUrl('ssh://master@10.250.77.10/home/master/jobs.git')).toMatchObject({
      ok: true,
      value: { kind: 'ssh', host: '10.250.77.10', user: 'master' },
    });
    expect(parseGitUrl('ssh://git@[::1]:2222/r.git')).toMatchObject({ ok: true, value: { host: '::1', port: 2222 } });
    expect(parseGitUrl('git@github.com:me/jobs.git')).toMatchObject({
      ok: true,
      value: { kind: 'ssh', host: 'github.com' },
    });
    expect(parseGitUrl('https://github.com/me/jobs.git')).toMatchObject({ ok: true, value: { kind: 'https' } });
    expect(parseGitUrl('file:///srv/jobs.git')).toMatchObject({ ok: true, value: { kind: 'file' } });
    expect(parseGitUrl('/srv/jobs.git')).toMatchObject({ ok: true, value: { kind: 'file' } });
  });

  it('refuses options, remote helpers, other transports, credentials in the URL, odd hosts', () => {
    for (const [url, why] of [
      ['-uhack', /start with "-"/],
      ['ext::sh -c touch% /tmp/pwned', /remote helper|spaces/],
      ['ext::sh', /remote helper/],
      ['fd::3', /remote helper/],
      ['ftp://h/r.git', /not allowed/],
      ['git://h/r.git', /not allowed/],
      ['https://user:tok@github.com/r.git', /password or token/],
      ['ssh://-oProxyCommand=x/r', /not a host/],
      ['ssh://h', /repository path/],
      ['h:-r', /must not start with "-"/],
      ['file://relative', /file:\/\/\//],
      ['a b', /spaces/],
      ['', /empty/],
    ] as const)
      expect(parseGitUrl(url), url).toMatchObject({ ok: false, message: expect.stringMatching(why) });
  });

  it('branches and paths', () => {
    expect(checkBranch('main')).toBeUndefined();
    expect(checkBranch('release/2026-03')).toBeUndefined();
    for (const b of ['-x', 'a..b', 'a.lock', 'a b', 'HEAD', 'x/.y', 'a//b', 'a@{1}'])
      expect(checkBranch(b), b).toBeDefined();
    expect(normalizeRepoPath('jobs/')).toEqual({ ok: true, value: 'jobs' });
    expect(normalizeRepoPath('./a/./b')).toEqual({ ok: true, value: 'a/b' });
    expect(normalizeRepoPath('.')).toEqual({ ok: true, value: '' });
    for (const p of ['../x', '/abs', 'a/../b', 'a b', 'a/-x/$y']) expect(normalizeRepoPath(p).ok, p).toBe(false);
  });
});

describe('fetch errors, manifest, state file, backoff', () => {
  it('names a changed host key and the key the server presented', () => {
    const stderr = [
      '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@',
      '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @',
      'The fingerprint for the ED25519 key sent by the remote host is',
      'SHA256:AbCdEf0123456789AbCdEf0123456789AbCdEf01234.',
      'Host key for 10.250.77.10 has changed and you have requested strict checking.',
      'Host key verification failed.',
      'fatal: Could not read from remote repository.',
    ].join('\n');
    expect(describeFetchError(stderr, 'main')).toBe('host key changed: refused');
    expect(presentedKey(stderr)).toEqual({
      fingerprint: 'SHA256:AbCdEf0123456789AbCdEf0123456789AbCdEf01234',
      keyType: 'ED25519',
      host: '10.250.77.10',
    });
    expect(
      describeFetchError(
        'No ED25519 host key is known for h and you have requested strict checking.\nHost key verification failed.\n',
        'main',
      ),
    ).toMatch(/not pinned/);
    expect(describeFetchError("fatal: couldn't find remote ref refs/heads/dev\n", 'dev')).toBe(
      'branch dev not found in the repository',
    );
  });

  it('applied.json is checked field by field; another repository keeps the jobs but not the head', () => {
    const o = { url: 'u', branch: 'main', path: 'jobs' };
    const raw = {
      url: 'u',
      branch: 'main',
      path: 'jobs',
      head: REV('9'),
      jobs: {
        a: { file: 'a.yaml', repoFile: 'jobs/a.yaml', oid: OID('a'), commit: commit('1') },
        '../x': { file: '../x.yaml', oid: OID('b'), commit: commit('1') },
        b: { file: '../../etc/passwd', oid: OID('b'), commit: commit('1') },
        c: { file: 'c.yaml', oid: 'not hex', commit: commit('1') },
      },
    };
    const m = parseManifest(raw, o);
    expect(m.head).toBe(REV('9'));
    expect([...m.jobs.keys()]).toEqual(['a']);
    expect(parseManifest({ ...raw, url: 'other' }, o).head).toBeUndefined();
    expect(parseManifest('junk', o).jobs.size).toBe(0);
  });

  it('state.json: a damaged file reads as not following git; notes for get jobs; refusal for apply', () => {
    expect(parseGitState('{')).toBeUndefined();
    expect(parseGitState(JSON.stringify({ v: 1, active: 'yes', url: 'u', branch: 'b' }))).toBeUndefined();
    const s = parseGitState(
      JSON.stringify({
        v: 1,
        active: true,
        url: 'ssh://h/r',
        branch: 'main',
        path: 'jobs',
        ready: false,
        reason: 'FetchFailed',
        message: 'cannot fetch main from ssh://h/r: refused',
        applied: REV('9'),
      }),
    )!;
    expect(gitNote(s)).toBe('git: ssh://h/r@main: cannot fetch main from ssh://h/r: refused (SourceReady=False)');
    expect(gitNote({ ...s, ready: true })).toBeUndefined();
    expect(gitNote({ ...s, ready: true, refused: { revision: REV('7'), why: 'the commit is not signed' } })).toMatch(
      /head 77777777 not applied: the commit is not signed; jobs follow 99999999/,
    );
    expect(gitNote({ ...s, active: false })).toBeUndefined();
    expect(refuseIfGitManaged('/nonexistent-dir', false)).toBeUndefined();
  });

  it('backs off after failures: the interval doubled, at most 5 minutes (or the interval)', () => {
    expect(backoffMs(30_000, 0)).toBe(30_000);
    expect(backoffMs(30_000, 1)).toBe(60_000);
    expect(backoffMs(30_000, 5)).toBe(300_000);
    expect(backoffMs(1000, 3)).toBe(8000);
    expect(backoffMs(600_000, 3)).toBe(600_000);
  });
});

// ---------------------------------------------------------------- core: the status

const JOB = `apiVersion: ugro.dev/v1alpha1
kind: TrainingJob
metadata:
  name: train
spec:
  command: [python3, /opt/t.py]
`;
function valid(text = JOB): SpecState {
  const r = parseTrainingJob(text, '/jobs/train.yaml');
  if (!r.ok) throw new Error('bad fixture');
  return { kind: 'valid', job: r.value, hash: specHash(r.value.spec), file: '/jobs/train.yaml' };
}
const INFO: JobSourceInfo = {
  url: 'ssh://git@h/r.git',
  branch: 'main',
  file: 'jobs/train.yaml',
  commit: commit('1'),
  fromGit: true,
  synced: true,
  reason: 'Synced',
  message: 'in sync with jobs/train.yaml at the branch head',
  ready: true,
  readyReason: 'Fetched',
  readyMessage: 'main of ssh://git@h/r.git fetched and applied',
};
const NOW = new Date('2026-03-01T10:00:00Z');
const input = (o: Partial<Parameters<typeof reconcile>[0]>) =>
  ({
    name: 'train',
    now: NOW,
    spec: valid(),
    parts: [],
    unreachable: new Map(),
    cluster: {
      hosts: CLUSTER.hosts,
      ready: new Set(CLUSTER.hosts.map((h) => h.name)),
      notReady: new Map(),
      busy: new Map(),
      foreign: new Map(),
      usedPorts: new Set(),
      basePort: 29500,
      gpus: new Map(),
      ahead: [],
      rdzvTimeoutSeconds: 60,
      defaultGraceSeconds: 30,
      lastHeard: new Map(),
      down: new Map(),
    },
    ...o,
  }) as Parameters<typeof reconcile>[0];

describe('core: the source in the status', () => {
  it('reconcile records the revision, the source and the owner (the commit author), with an event', () => {
    const r = reconcile(input({ source: INFO }));
    expect(r.status).toMatchObject({
      revision: REV('1'),
      owner: 'Ada <ada@x>',
      source: { revision: REV('1'), subject: 'commit 1', sync: 'Synced', reason: 'Synced', file: 'jobs/train.yaml' },
    });
    const cond = (t: string) => r.status!.conditions.find((c) => c.type === t);
    expect(cond('Synced')).toMatchObject({ status: 'True', reason: 'Synced' });
    expect(cond('SourceReady')).toMatchObject({ status: 'True', reason: 'Fetched' });
    expect(r.events.find((e) => e.reason === 'RevisionApplied')?.message).toBe(
      `jobs/train.yaml from commit ${REV('1').slice(0, 12)} "commit 1" by Ada <ada@x>`,
    );
  });

  it('the owner annotation wins over the author', () => {
    const spec = valid(JOB.replace('  name: train\n', '  name: train\n  annotations: {"ugro.dev/owner": "team-a"}\n'));
    expect(reconcile(input({ spec, source: INFO })).status?.owner).toBe('team-a');
  });

  it('an invalid file from git is named by commit and repository path; not from git, by the local path', () => {
    const spec: SpecState = {
      kind: 'invalid',
      file: '/jobs/train.yaml',
      issues: [{ path: 'spec.nodes', message: 'must be >= 1', line: 7 }],
    };
    const r = reconcile(input({ spec, source: INFO }));
    expect(r.status).toMatchObject({
      phase: 'Invalid',
      message: `${REV('1').slice(0, 12)}:jobs/train.yaml:7: spec.nodes: must be >= 1`,
    });
    const local = reconcile(input({ spec, source: { ...INFO, fromGit: false } }));
    expect(local.status?.message).toBe('/jobs/train.yaml:7: spec.nodes: must be >= 1');
  });

  it('OutOfSync keeps the phase apart, with a warning event once', () => {
    const prev = reconcile(input({ source: INFO })).status!;
    const out: JobSourceInfo = {
      ...INFO,
      synced: false,
      reason: 'RemovedFromGit',
      message: 'removed from git at 888; pruning is off',
    };
    const r = withSource(prev, valid(), out, prev, NOW.toISOString());
    expect(r.status.phase).toBe(prev.phase);
    expect(r.status.conditions.find((c) => c.type === 'Synced')).toMatchObject({
      status: 'False',
      reason: 'RemovedFromGit',
    });
    expect(r.events).toEqual([{ reason: 'OutOfSync', message: out.message, type: 'Warning' }]);
    expect(withSource(r.status, valid(), out, r.status, NOW.toISOString()).events).toEqual([]);
  });

  it('a new revision from a rewritten history says so', () => {
    const prev = reconcile(input({ source: INFO })).status!;
    const r = withSource(
      prev,
      valid(),
      { ...INFO, commit: commit('2'), rewrittenFrom: REV('3') },
      prev,
      NOW.toISOString(),
    );
    expect(r.events.map((e) => e.reason)).toEqual(['RevisionApplied', 'HistoryRewritten']);
  });

  it('refreshSource: nothing when nothing changed; without a source, the git fields go', () => {
    const st = reconcile(input({ source: INFO })).status as JobStatus;
    expect(refreshSource(st, valid(), INFO, NOW)).toBeUndefined();
    const off = refreshSource(st, valid(), undefined, NOW)!;
    expect(off.status.revision).toBeUndefined();
    expect(off.status.source).toBeUndefined();
    expect(off.status.conditions.some((c) => c.type === 'Synced' || c.type === 'SourceReady')).toBe(false);
  });

  it('without git, reconcile is what it was (no source fields)', () => {
    const r = reconcile(input({}));
    expect(r.status?.source).toBeUndefined();
    expect(r.status?.revision).toBeUndefined();
  });
});
