/**
 * Who signed a job's file (issue 17): under --require-signed, the principal whose SSH key signed
 * the head that wrote the file (git verify-commit against the allowed signers, real git and real
 * ssh-keygen signatures), recorded per job in applied.json and handed to reconcile in
 * JobSourceInfo.signer, which core/authorize.ts makes the job's owner. What git prints, and what
 * applied.json holds, are hostile: only a login-name-like principal is taken.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GitSource, type GitSourceOptions } from '../../controller/gitops/git-source.ts';
import { parseManifest } from '../../controller/gitops/manifest.ts';
import { isPrincipal, signerOf } from '../../controller/gitops/signer.ts';
import { type AppliedJob, jobInfo, parseTree, type SourceState } from '../../controller/gitops/sync-plan.ts';
import { jobText, localRemote, quietSourceOptions, signingKey } from '../support/git-repo.ts';
import { memoryLogger } from '../support/memory-logger.ts';

const SPEC = { command: ['python3', '/opt/t.py'], args: ['--epochs', '1'] };
const FP = 'SHA256:N7ntt9/b8oWofnbjv15NuLN+4+HXUhg4Rc6Nq1X6nk4';
const good = (p: string) => `Good "git" signature for ${p} with ED25519 key ${FP}\n`;

const sources: GitSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

function source(o: Partial<GitSourceOptions> & { url: string; jobsDir: string }): GitSource {
  const src = new GitSource({ ...quietSourceOptions(), log: memoryLogger(), ...o });
  sources.push(src);
  return src;
}

const applied = (jobs: string) =>
  JSON.parse(readFileSync(join(jobs, '.ugro', 'git', 'applied.json'), 'utf8')).jobs as Record<string, AppliedJob>;

describe('the principal git names for a good signature', () => {
  it('a login name or an e-mail-style principal is taken', () => {
    expect(signerOf(good('ob'))).toEqual({ ok: true, principal: 'ob' });
    expect(signerOf(`noise\n${good('ada@example.com')}`)).toEqual({ ok: true, principal: 'ada@example.com' });
  });

  it('anything else is refused, saying why: a wildcard, shell text, a space, a forged key part, too long', () => {
    for (const p of ['*', '$(id)', 'ada lovelace', `x with RSA key ${FP}`, 'a'.repeat(65), '-rf', 'ob\u0007']) {
      const r = signerOf(good(p));
      expect(r.ok, p).toBe(false);
      if (!r.ok) expect(r.why).toMatch(/is not a login name|did not name its signer/);
    }
    expect(signerOf('')).toMatchObject({ ok: false, why: expect.stringMatching(/did not name its signer/) });
    expect(isPrincipal('a'.repeat(64))).toBe(true);
    expect(isPrincipal(42)).toBe(false);
  });
});

describe('applied.json: the signer per job, checked like every other field', () => {
  const o = { url: 'u', branch: 'main', path: 'jobs' };
  const commit = { revision: 'c'.repeat(40), subject: 's', author: 'Ada <a@x>', authorTime: 'T' };
  const entry = (signer: unknown) => ({ file: 'a.yaml', repoFile: 'jobs/a.yaml', oid: 'a'.repeat(40), commit, signer });

  it('a principal is kept; a hostile one is dropped and the job reads as unsigned, never as someone else', () => {
    expect(parseManifest({ ...o, jobs: { a: entry('ob') } }, o).jobs.get('a')?.signer).toBe('ob');
    for (const bad of ['$(id)', '*', 'ob root', 'x'.repeat(65), 7, { name: 'ob' }, ['ob']]) {
      const m = parseManifest({ ...o, jobs: { a: entry(bad) } }, o);
      expect(m.jobs.get('a'), JSON.stringify(bad)).toBeDefined();
      expect(m.jobs.get('a')?.signer, JSON.stringify(bad)).toBeUndefined();
    }
  });
});

describe('jobInfo: the signer only for the bytes git wrote', () => {
  const source: SourceState = { url: 'u', branch: 'main', applied: '9'.repeat(40), neverFetched: false };
  const tree = parseTree(`100644 blob ${'a'.repeat(40)}      10\ta.yaml\0`, 'jobs');
  const a: AppliedJob = {
    file: 'a.yaml',
    repoFile: 'jobs/a.yaml',
    oid: 'a'.repeat(40),
    commit: { revision: '1'.repeat(40), subject: 's', author: 'Ada <a@x>', authorTime: 'T' },
    signer: 'ob',
  };

  it("fromGit: the signer; the file changed in jobs/ since: none (the file is its writer's)", () => {
    const info = (oid: string) => jobInfo({ name: 'a', source, tree, applied: a, local: { file: 'a.yaml', oid } });
    expect(info('a'.repeat(40))).toMatchObject({ fromGit: true, signer: 'ob' });
    const changed = info('f'.repeat(40))!;
    expect(changed.fromGit).toBe(false);
    expect(changed).not.toHaveProperty('signer');
    const unsigned = jobInfo({
      name: 'a',
      source,
      tree,
      applied: { ...a, signer: undefined },
      local: { file: 'a.yaml', oid: 'a'.repeat(40) },
    })!;
    expect(unsigned.fromGit).toBe(true);
    expect(unsigned.signer).toBeUndefined();
  });
});

describe('git source with --require-signed: each job carries the signer of the head that wrote it', () => {
  it('records the principal per written job; a later head keeps it for files it does not change', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-sign-'));
    const ob = signingKey(dir, 'ob');
    const ollie = signingKey(dir, 'ollie');
    const allowed = join(dir, 'allowed');
    writeFileSync(allowed, readFileSync(ob.allowedSigners, 'utf8') + readFileSync(ollie.allowedSigners, 'utf8'));
    const remote = localRemote();
    remote.work.commit({ 'jobs/a.yaml': jobText('a', SPEC), 'jobs/b.yaml': jobText('b', SPEC) }, 'a and b', {
      signingKey: ob.key,
    });
    remote.work.push();
    const jobsDir = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    const opts = { url: remote.url, jobsDir, requireSigned: true, allowedSigners: allowed };
    const src = source(opts);
    await src.start(() => undefined);
    expect(await src.infoFor('a')).toMatchObject({ fromGit: true, signer: 'ob' });
    expect(await src.infoFor('b')).toMatchObject({ fromGit: true, signer: 'ob' });

    // ollie signs a head that changes b only: b is ollie's, a is still what ob signed.
    remote.work.commit({ 'jobs/b.yaml': jobText('b', { ...SPEC, args: ['ollie'] }) }, 'b by ollie', {
      signingKey: ollie.key,
    });
    remote.work.push();
    expect(await src.syncNow()).toMatchObject({ ok: true, written: 1 });
    expect(await src.infoFor('a')).toMatchObject({ fromGit: true, signer: 'ob' });
    expect(await src.infoFor('b')).toMatchObject({ fromGit: true, signer: 'ollie' });
    expect(applied(jobsDir)).toMatchObject({ a: { signer: 'ob' }, b: { signer: 'ollie' } });

    // A restart reads them back from applied.json (the head, signed by ollie, writes nothing).
    await src.stop();
    const again = source(opts);
    await again.start(() => undefined);
    expect(await again.infoFor('a')).toMatchObject({ signer: 'ob' });
    expect(await again.infoFor('b')).toMatchObject({ signer: 'ollie' });

    // A file changed in jobs/ is no longer what the signer signed.
    writeFileSync(join(jobsDir, 'a.yaml'), jobText('a', { ...SPEC, args: ['by hand'] }));
    const local = (await again.infoFor('a'))!;
    expect(local).toMatchObject({ fromGit: false, reason: 'LocalChange' });
    expect(local.signer).toBeUndefined();
  });

  it('a principal that is not a login name ("*") is not applied: the jobs keep their revision', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-sign-'));
    const ob = signingKey(dir, 'ob');
    const remote = localRemote();
    remote.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a', { signingKey: ob.key });
    remote.work.push();
    const jobsDir = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    const pub = readFileSync(`${ob.key}.pub`, 'utf8').trim();
    const wild = join(dir, 'wild');
    writeFileSync(wild, `* ${pub}\n`);
    const src = source({ url: remote.url, jobsDir, requireSigned: true, allowedSigners: wild });
    await src.start(() => undefined);
    const out = await src.syncNow();
    expect(out.ok).toBe(false);
    expect(out.message).toMatch(/principal in the allowed signers file, "\*", is not a login name/);
    expect(await src.infoFor('a')).toBeUndefined();
  });

  it('without --require-signed nothing is verified, so even a signed head records no signer', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-sign-'));
    const ob = signingKey(dir, 'ob');
    const remote = localRemote();
    remote.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a', { signingKey: ob.key });
    remote.work.push();
    const jobsDir = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    const src = source({ url: remote.url, jobsDir });
    await src.start(() => undefined);
    const info = (await src.infoFor('a'))!;
    expect(info.fromGit).toBe(true);
    expect(info.signer).toBeUndefined();
    expect(applied(jobsDir).a).not.toHaveProperty('signer');
  });
});
