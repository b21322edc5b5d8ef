/**
 * The model registry (store/models.ts): versions count up per model, two promotes at once get two
 * versions (exclusive create, never a replaced file), nothing half-written or temporary is left,
 * and every file is read back as hostile input: a symlink, a file that claims another version or
 * model, bad JSON, a bad field, a model dir that is not a name are each rejected with why.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModelVersion } from '../../controller/api/model.ts';
import { ModelRegistry } from '../../controller/store/models.ts';

const base: Omit<ModelVersion, 'version'> = {
  model: 'mlp',
  createdAt: '2025-01-01T00:00:00.000Z',
  by: 'ob',
  job: 'train',
  checkpoint: 'step-40',
  step: 40,
  attempt: 1,
  specHash: '0123abcd',
  metrics: { loss: 0.25 },
  sha256: 'a'.repeat(64),
  sizeBytes: 1234,
  copies: [{ host: 'gpu1', path: '/c/train/step-40.pt' }],
};

function jobsDir(): string {
  const d = join(mkdtempSync(join(tmpdir(), 'ugro-models-')), 'jobs');
  mkdirSync(d);
  return d;
}

describe('ModelRegistry', () => {
  it('numbers versions per model, v1 first; concurrent adds get distinct versions', async () => {
    const reg = ModelRegistry.of(jobsDir());
    expect((await reg.add(base)).version).toBe(1);
    expect((await reg.add({ ...base, checkpoint: 'step-50' })).version).toBe(2);
    expect((await reg.add({ ...base, model: 'other' })).version).toBe(1);
    const many = await Promise.all([1, 2, 3, 4].map(() => reg.add(base)));
    expect(many.map((v) => v.version).sort()).toEqual([3, 4, 5, 6]);
    const { versions, rejected } = await reg.list('mlp');
    expect(versions.map((v) => v.version)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(versions[1].checkpoint).toBe('step-50');
    expect(rejected).toEqual([]);
    // No temp file left behind, only vN.json.
    expect(readdirSync(join(reg.dir, 'mlp')).sort()).toEqual([1, 2, 3, 4, 5, 6].map((n) => `v${n}.json`).sort());
    expect((await reg.list()).versions.map((v) => `${v.model}:v${v.version}`)).toHaveLength(7);
  });

  it('rejects hostile files with why, and keeps the good ones', async () => {
    const reg = ModelRegistry.of(jobsDir());
    await reg.add(base);
    const dir = join(reg.dir, 'mlp');
    writeFileSync(join(dir, 'v2.json'), JSON.stringify({ ...base, version: 3 }));
    writeFileSync(join(dir, 'v4.json'), '{not json');
    writeFileSync(join(dir, 'v5.json'), JSON.stringify({ ...base, version: 5, sha256: 'x' }));
    writeFileSync(join(dir, 'v6.json'), JSON.stringify({ ...base, version: 6, copies: [] }));
    symlinkSync('/etc/passwd', join(dir, 'v7.json'));
    execFileSync('mkfifo', [join(dir, 'v8.json')]);
    writeFileSync(join(dir, 'notes.txt'), 'hi');
    mkdirSync(join(reg.dir, 'Bad_Name'));
    symlinkSync('/tmp', join(reg.dir, 'linked'));
    const { versions, rejected } = await reg.list();
    expect(versions.map((v) => v.version)).toEqual([1]);
    const why = Object.fromEntries(rejected.map((r) => [r.file.slice(reg.dir.length + 1), r.why]));
    expect(why['mlp/v2.json']).toMatch(/says mlp:v3, not mlp:v2/);
    expect(why['mlp/v4.json']).toBe('not JSON');
    expect(why['mlp/v5.json']).toMatch(/^sha256: /);
    expect(why['mlp/v6.json']).toMatch(/^copies: /);
    expect(why['mlp/v7.json']).toMatch(/symbolic link/);
    expect(why['mlp/v8.json']).toMatch(/FIFO/);
    expect(why['mlp/notes.txt']).toMatch(/not a version file/);
    expect(why.Bad_Name).toMatch(/not a model name/);
    expect(why.linked).toMatch(/symbolic link/);
    // The next version is past every number taken, good or not.
    expect((await reg.add(base)).version).toBeGreaterThan(1);
  });

  it('refuses a model name that is not a DNS label; a models/ that is a symlink is not followed', async () => {
    const jobs = jobsDir();
    const reg = ModelRegistry.of(jobs);
    await expect(reg.add({ ...base, model: 'Bad/../x' })).rejects.toThrow(/not a model name/);
    symlinkSync('/tmp', join(jobs, 'models'));
    await expect(reg.add(base)).rejects.toThrow(/symbolic link/);
    expect((await reg.list()).rejected[0].why).toMatch(/symbolic link/);
  });

  it('in a shared (sticky, group-writable) jobs dir, models/ is sticky and writable like it', async () => {
    const jobs = jobsDir();
    execFileSync('chmod', ['1775', jobs]);
    await ModelRegistry.of(jobs).add(base);
    expect(statSync(join(jobs, 'models')).mode & 0o7777).toBe(0o1775);
  });
});
