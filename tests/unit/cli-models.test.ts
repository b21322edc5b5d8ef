/**
 * `ugro promote` and `ugro models` in the CLI (issue 18): only the job's owner or an admin may
 * promote (exit 4, before any host is asked); a model name that is not a DNS-1123 label is a usage
 * error (exit 2); `ugro models -o json` lists versions and names a hostile registry file as rejected.
 */
import { chownSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../controller/cli/main.ts';
import { ModelRegistry } from '../../controller/store/models.ts';
import { jobYaml } from './job-fixtures.ts';

async function ugro(jobs: string, args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const argv = ['node', 'ugro', '--jobs', jobs, '--cluster', join(jobs, 'none.yaml'), ...args];
  const code = await main(argv, { out: (s) => out.push(s), err: (s) => err.push(s) }, { ...process.env });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function jobsDir(): string {
  const jobs = join(mkdtempSync(join(tmpdir(), 'ugro-cli-models-')), 'jobs');
  mkdirSync(jobs);
  writeFileSync(join(jobs, 'train.yaml'), jobYaml('train', { script: 't.py' }));
  return jobs;
}

describe('ugro promote', () => {
  it.skipIf(process.getuid?.() !== 0)(
    "someone else's job (and not an admin): exit 4 before any host is asked",
    async () => {
      const jobs = jobsDir();
      // The job is nobody's file and the controller's account (jobs/.ugro's owner) is nobody too.
      mkdirSync(join(jobs, '.ugro'));
      chownSync(join(jobs, '.ugro'), 65534, 65534);
      chownSync(join(jobs, 'train.yaml'), 65534, 65534);
      const r = await ugro(jobs, ['promote', 'train', '--checkpoint', 'step-10', '--as', 'mlp']);
      expect(r.code, r.err).toBe(4);
      expect(r.err).toMatch(/may not promote a checkpoint of .*job train/);
    },
  );

  it('a model name that is not a DNS-1123 label, or a bad checkpoint name: exit 2', async () => {
    const jobs = jobsDir();
    expect((await ugro(jobs, ['promote', 'train', '--checkpoint', 'step-10', '--as', 'My_Model'])).code).toBe(2);
    expect((await ugro(jobs, ['promote', 'train', '--checkpoint', '../x', '--as', 'mlp'])).code).toBe(2);
    expect((await ugro(jobs, ['models', 'Bad/Name'])).code).toBe(2);
  });
});

describe('ugro models', () => {
  it('lists versions (json and table) and names a hostile file as rejected', async () => {
    const jobs = jobsDir();
    const reg = ModelRegistry.of(jobs);
    await reg.add({
      model: 'mlp',
      createdAt: new Date().toISOString(),
      by: 'ob',
      job: 'train',
      checkpoint: 'step-10',
      step: 10,
      sha256: 'b'.repeat(64),
      sizeBytes: 10,
      copies: [{ host: 'gpu1', path: '/c/train/step-10.pt' }],
    });
    writeFileSync(join(reg.dir, 'mlp', 'v9.json'), '{"model": "mlp"}');
    const r = await ugro(jobs, ['models', '-o', 'json']);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.models.map((v: { model: string; version: number }) => `${v.model}:v${v.version}`)).toEqual(['mlp:v1']);
    expect(j.rejected[0].file).toMatch(/mlp\/v9\.json$/);
    const t = await ugro(jobs, ['models', 'mlp']);
    expect(t.out).toMatch(/^mlp:v1\s+train\s+step-10\s+-\s+-\s+-\s+bbbbbbbbbbbb\s+gpu1\s+ob\s/m);
    expect(t.err).toMatch(/warning: ignoring .*v9\.json/);
  });
});
