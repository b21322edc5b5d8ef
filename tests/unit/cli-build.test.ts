/**
 * The compiled CLI (scripts/build.mjs) and its launcher (bin/ugro.mjs), run as a person runs them:
 * a separate node process, from another working directory. The build goes to a scratch root
 * (bin/ and dist/ of its own; controller/, config/ and node_modules/ linked to this checkout), so
 * the checkout's dist/ is never touched and bin/ugro.mjs can be shown a stale build.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;
let scratch: string;
let jobs: string;

function ugro(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [join(scratch, 'bin/ugro.mjs'), ...args], {
    cwd: tmpdir(),
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', HOME: scratch, XDG_CACHE_HOME: join(scratch, 'cache'), ...env },
  });
  return { code: r.status, out: r.stdout.trimEnd(), err: r.stderr.trimEnd() };
}

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'ugro-cli-build-'));
  for (const d of ['controller', 'config', 'node_modules', 'scripts', 'package-lock.json'])
    symlinkSync(join(ROOT, d), join(scratch, d));
  mkdirSync(join(scratch, 'bin'));
  copyFileSync(join(ROOT, 'bin/ugro.mjs'), join(scratch, 'bin/ugro.mjs'));
  const b = spawnSync(
    process.execPath,
    [join(ROOT, 'scripts/build.mjs'), '--quiet', '--outdir', join(scratch, 'dist')],
    {
      encoding: 'utf8',
    },
  );
  expect(b.stderr).toBe('');
  expect(b.status).toBe(0);
  jobs = join(scratch, 'jobs');
  mkdirSync(jobs);
  writeFileSync(
    join(jobs, 'a.yaml'),
    'apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: a}\nspec: {script: t.py}\n',
  );
  writeFileSync(
    join(jobs, 'a.status.yaml'),
    '# x\nphase: Running\nattempt: 2\nnodes: []\ncreatedAt: x\nconditions: []\n',
  );
}, 60_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('the built CLI', () => {
  it('--help from another directory: dist/ runs, no hint', () => {
    const r = ugro(['--help']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: ugro /);
  });

  it('exit codes and messages are the same as from the sources', () => {
    const r = ugro(['get', 'jobs', '-o', 'xml']);
    expect([r.code, r.err]).toEqual([2, 'error: -o must be one of table, wide, json, yaml (got "xml")']);
    const nf = ugro(['--jobs', jobs, 'describe', 'job', 'nope']);
    expect([nf.code, nf.err]).toEqual([3, `error: job nope not found in ${jobs}`]);
  });

  it('verbs load their chunks: get jobs parses YAML, -o yaml writes it, describe loads the schemas', () => {
    const t = ugro(['--jobs', jobs, 'get', 'jobs']);
    expect(t.err).toBe('');
    expect(t.out.split('\n')[1]).toMatch(/^a\s+Running\s+2\s/);
    const y = ugro(['--jobs', jobs, 'get', 'jobs', '-o', 'yaml']);
    expect(y.code).toBe(0);
    expect(y.out).toMatch(/^- name: a\n {2}spec:\n {4}script: t\.py/);
    const d = ugro(['--jobs', jobs, 'describe', 'job', 'a']);
    expect(d.code).toBe(0);
    expect(d.out).toContain('  script: t.py');
  });

  it('a source changed since the build: the sources run (through tsx), with a one-line hint', () => {
    const file = join(scratch, 'dist/manifest.json');
    const saved = readFileSync(file, 'utf8');
    const m = JSON.parse(saved);
    m.sources['controller/cli/main.ts'] = 1;
    writeFileSync(file, JSON.stringify(m));
    try {
      const r = ugro(['get', 'jobs', '-o', 'xml']);
      expect(r.err.split('\n')).toEqual([
        'ugro: controller/cli/main.ts changed since dist/ was built; running the sources through tsx ' +
          '(run `npm run build`)',
        'error: -o must be one of table, wide, json, yaml (got "xml")',
      ]);
      expect(r.code).toBe(2);
    } finally {
      writeFileSync(file, saved);
    }
  });

  it('no dist/: the sources run, with a hint; UGRO_FROM_SOURCE=1 runs them without one', () => {
    rmSync(join(scratch, 'dist/manifest.json'));
    const r = ugro(['--help']);
    expect(r.code).toBe(0);
    expect(r.err).toBe('ugro: dist/ is not built; running the sources through tsx (run `npm run build`)');
    expect(r.out).toMatch(/^Usage: ugro /);
    const s = ugro(['--help'], { UGRO_FROM_SOURCE: '1' });
    expect([s.code, s.err]).toEqual([0, '']);
  });
});
