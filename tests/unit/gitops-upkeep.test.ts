/**
 * The clone does not grow without bound (issue 15, item 5): what a killed fetch leaves (half a
 * pack in objects/pack/tmp_pack_*, a ref lock that would fail every later fetch) is removed after
 * a failed fetch and at start; a fetch that would take the clone past its cap is stopped and
 * cleaned up; packs are consolidated now and then. Real git over file://.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GitSource, type GitSourceOptions } from '../../controller/gitops/git-source.ts';
import { GC_PACKS } from '../../controller/gitops/housekeeping.ts';
import { jobText, localRemote, quietSourceOptions } from '../support/git-repo.ts';
import { memoryLogger } from '../support/memory-logger.ts';

const SPEC = { command: ['python3', '/opt/t.py'] };
const sources: GitSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

function source(o: Partial<GitSourceOptions> & { url: string; jobsDir: string }) {
  const log = memoryLogger();
  const src = new GitSource({
    ...quietSourceOptions(),
    log,
    ...o,
  });
  sources.push(src);
  return { src, log };
}

/** What a fetch killed at its timeout leaves in the clone: half a pack (MBs) and the ref's lock. */
function plantLeftovers(repo: string): string[] {
  const files = [
    join(repo, 'objects', 'pack', 'tmp_pack_Xk3j9a'),
    join(repo, 'objects', 'pack', 'tmp_idx_Xk3j9a'),
    join(repo, 'refs', 'ugro', 'fetched.lock'),
  ];
  writeFileSync(files[0], randomBytes(2 * 1024 * 1024));
  writeFileSync(files[1], '');
  writeFileSync(files[2], '');
  return files;
}

const packs = (repo: string) => readdirSync(join(repo, 'objects', 'pack')).filter((f) => f.endsWith('.pack'));
const tmps = (repo: string) => readdirSync(join(repo, 'objects', 'pack')).filter((f) => f.startsWith('tmp_'));

describe('the clone is kept clean and bounded', () => {
  it('a failed fetch removes what a killed one left (tmp packs, the ref lock); the next fetch works', async () => {
    const remote = localRemote();
    remote.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a');
    remote.work.push();
    const jobsDir = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    const { src } = source({ url: remote.url, jobsDir });
    await src.start(() => undefined);
    const repo = join(jobsDir, '.ugro', 'git', 'repo.git');
    const left = plantLeftovers(repo);
    // The server is away: this fetch fails too.
    renameSync(remote.bare, `${remote.bare}.away`);
    expect((await src.syncNow()).ok).toBe(false);
    for (const f of left) expect(existsSync(f), f).toBe(false);
    renameSync(`${remote.bare}.away`, remote.bare);
    const sha = remote.work.commit({ 'jobs/b.yaml': jobText('b', SPEC) }, 'b');
    remote.work.push();
    expect(await src.syncNow()).toMatchObject({ ok: true, revision: sha });
  });

  it('and a start removes them (a controller killed mid-fetch)', async () => {
    const remote = localRemote();
    remote.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a');
    remote.work.push();
    const jobsDir = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    const first = source({ url: remote.url, jobsDir });
    await first.src.start(() => undefined);
    await first.src.stop();
    const repo = join(jobsDir, '.ugro', 'git', 'repo.git');
    const left = plantLeftovers(repo);
    const sha = remote.work.commit({ 'jobs/b.yaml': jobText('b', SPEC) }, 'b');
    remote.work.push();
    const { src } = source({ url: remote.url, jobsDir });
    await src.start(() => undefined);
    for (const f of left) expect(existsSync(f), f).toBe(false);
    expect(await src.syncNow()).toMatchObject({ ok: true, revision: sha });
  });

  it('a fetch that would take the clone past its cap is stopped and cleaned up; jobs keep their revision', async () => {
    const remote = localRemote();
    const first = remote.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a');
    remote.work.push();
    const jobsDir = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    const { src } = source({ url: remote.url, jobsDir, maxCloneBytes: 4 * 1024 * 1024 });
    await src.start(() => undefined);
    // 16 MB that does not compress, beside the job files: far over the cap.
    remote.work.commit({ 'data/blob.bin': randomBytes(16 * 1024 * 1024).toString('latin1') }, 'a dataset');
    remote.work.push();
    const out = await src.syncNow();
    expect(out.ok).toBe(false);
    expect(out.message).toMatch(/brought more than 4(\.\d)? MiB: stopped/);
    const repo = join(jobsDir, '.ugro', 'git', 'repo.git');
    expect(tmps(repo)).toEqual([]);
    expect(existsSync(join(jobsDir, 'a.yaml'))).toBe(true);
    expect((await src.infoFor('a'))?.commit?.revision).toBe(first);
  }, 60_000);

  it(`packs are consolidated once ${GC_PACKS} pile up (git gc), and the clone still reads`, async () => {
    const remote = localRemote();
    remote.work.commit({ 'jobs/a.yaml': jobText('a', SPEC) }, 'a');
    remote.work.push();
    const jobsDir = mkdtempSync(join(tmpdir(), 'ugro-gitjobs-'));
    const { src, log } = source({ url: remote.url, jobsDir });
    await src.start(() => undefined);
    const repo = join(jobsDir, '.ugro', 'git', 'repo.git');
    let last = '';
    for (let i = 0; i < GC_PACKS + 2; i++) {
      last = remote.work.commit({ 'jobs/a.yaml': jobText('a', { ...SPEC, args: [String(i)] }) }, `a ${i}`);
      remote.work.push();
      expect((await src.syncNow()).ok).toBe(true);
    }
    expect(await src.syncNow()).toMatchObject({ ok: true, revision: last });
    expect(log.lines.some((l) => l.msg.includes('consolidated the clone'))).toBe(true);
    expect(packs(repo).length).toBeLessThan(GC_PACKS / 2);
    expect((await src.infoFor('a'))?.commit?.revision).toBe(last);
  });
});
