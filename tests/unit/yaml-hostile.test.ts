/**
 * Issue 15: YAML that killed UGRO, read where UGRO reads YAML. Deeply nested files made Node abort
 * (exit 134, no catch sees it) and nested aliases threw a bug's stack trace out of `get jobs -o json`
 * and out of every reconcile of that job. Each is now Invalid with its file, line and limit: `ugro
 * validate` (a real process), the store (specs, status and control files), specs that came from a
 * git commit, `get jobs` in every format, `ugro resume`, the cluster file. And two NUL checks of the
 * TrainingJob schema: spec.script (once unchecked) and checkpoint.dir (once untested).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseCluster } from '../../config/cluster.ts';
import { parseTrainingJob } from '../../controller/api/trainingjob.ts';
import { main } from '../../controller/cli/main.ts';
import { GitSource } from '../../controller/gitops/git-source.ts';
import { JobStore } from '../../controller/store/store.ts';
import { jobText, localRemote } from '../support/git-repo.ts';
import { memoryLogger } from '../support/memory-logger.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CLUSTER = new URL('../fixtures/cluster/valid.yaml', import.meta.url).pathname;

/** The two files of the issue (6 KB each), and a job whose labels hold nested aliases. */
const DEEP_FLOW = `${'['.repeat(3000)}${']'.repeat(3000)}`;
const DEEP_SEQ = `${'- '.repeat(3000)}x`;
function laughsJob(name: string): string {
  const levels = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (const [prev, cur] of [...'abcde'].map((c, i) => [c, 'bcdef'[i]]))
    levels.push(`${cur}: &${cur} [${Array(10).fill(`*${prev}`).join(', ')}]`);
  return (
    `apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: ${name}\n  annotations:\n` +
    `${levels.map((l) => `    ${l}\n`).join('')}spec:\n  command: [python3, t.py]\n`
  );
}
const good = (name: string) =>
  `apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: ${name}\nspec:\n  script: train.py\n`;

let root: string;
let jobs: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'ugro-hostile-yaml-'));
  jobs = join(root, 'jobs');
  mkdirSync(jobs);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function writeJobs(): void {
  writeFileSync(join(jobs, 'deep-flow.yaml'), DEEP_FLOW);
  writeFileSync(join(jobs, 'deep-seq.yaml'), DEEP_SEQ);
  writeFileSync(join(jobs, 'laughs.yaml'), laughsJob('laughs'));
  writeFileSync(join(jobs, 'good.yaml'), good('good'));
}

async function ugro(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    ['node', 'ugro', '--cluster', CLUSTER, '--jobs', jobs, ...args],
    { out: (s) => out.push(s), err: (s) => err.push(s) },
    { USER: 'alice', HOME: '/home/alice', XDG_CACHE_HOME: join(root, 'cache') },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('ugro validate, a real process', () => {
  it('the two files of the issue: exit 1 (it was 134, an abort), each Invalid with line, column and limit', () => {
    writeJobs();
    const files = ['deep-flow', 'deep-seq', 'laughs'].map((n) => join(jobs, `${n}.yaml`));
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/ugro.mjs'), 'validate', ...files], {
      encoding: 'utf8',
      env: { ...process.env, UGRO_FROM_SOURCE: '1' },
    });
    expect(r.stderr).not.toContain('FATAL ERROR');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${files[0]}:1:65: YAML limit: nested deeper than 64 levels of lists and maps`);
    expect(r.stderr).toContain(`${files[1]}:1:129: YAML limit: nested deeper than 64 levels`);
    expect(r.stderr).toContain(`${files[2]}:7:12: YAML limit: aliases (*name) expand to more than 100 nodes`);
    expect(r.stderr).not.toMatch(/bug in ugro|at parse/i);
  });
});

describe('the store', () => {
  it('specs: each hostile file is Invalid with the limit it crossed; the good one beside them is valid', async () => {
    writeJobs();
    const store = new JobStore(jobs);
    for (const [name, message] of [
      ['deep-flow', /^YAML limit: nested deeper than 64/],
      ['deep-seq', /^YAML limit: nested deeper than 64/],
      ['laughs', /^YAML limit: aliases \(\*name\) expand to more than 100 nodes/],
    ] as const) {
      const spec = await store.readSpec(name);
      expect(spec, name).toMatchObject({ kind: 'invalid', issues: [{ message: expect.stringMatching(message) }] });
    }
    expect((await store.readSpec('good')).kind).toBe('valid');
  });

  it('status files past a limit are unreadable (rebuilt), control files Invalid, never a throw', async () => {
    const store = new JobStore(jobs);
    writeFileSync(join(jobs, 'a.status.yaml'), `phase: Running\nnodes: ${DEEP_FLOW}\n`);
    writeFileSync(join(jobs, 'b.status.yaml'), `phase: Running\n${laughsJob('b').split('\n').slice(5, 11).join('\n')}`);
    expect(await store.readStatus('a')).toBeUndefined();
    expect(await store.readStatus('b')).toBeUndefined();
    writeFileSync(join(jobs, 'a.control.yaml'), `cancel: ${DEEP_FLOW}\n`);
    expect(await store.readControl('a')).toMatchObject({
      kind: 'invalid',
      issues: [{ line: 1, message: expect.stringMatching(/nested deeper than 64/) }],
    });
  });

  it('specs from a git commit go through the same guard: Invalid, the good one applied and valid', async () => {
    const remote = localRemote();
    remote.work.commit(
      {
        'jobs/deep-flow.yaml': DEEP_FLOW,
        'jobs/laughs.yaml': laughsJob('laughs'),
        'jobs/good.yaml': jobText('good', { command: ['python3', 't.py'] }),
      },
      'hostile yaml',
    );
    remote.work.push();
    const src = new GitSource({
      jobsDir: jobs,
      url: remote.url,
      branch: 'main',
      path: 'jobs',
      intervalMs: 3_600_000,
      prune: false,
      pruneAll: false,
      requireSigned: false,
      auth: { knownHosts: '/dev/null', useAgent: false, connectTimeoutSeconds: 5 },
      log: memoryLogger(),
      watchRequests: false,
      setTimer: () => () => undefined,
    });
    try {
      await src.start(() => undefined);
      const store = new JobStore(jobs);
      expect(readFileSync(join(jobs, 'deep-flow.yaml'), 'utf8')).toBe(DEEP_FLOW);
      expect(await store.readSpec('deep-flow')).toMatchObject({ kind: 'invalid' });
      expect(await store.readSpec('laughs')).toMatchObject({ kind: 'invalid' });
      expect((await store.readSpec('good')).kind).toBe('valid');
    } finally {
      await src.stop();
    }
  });
});

describe('the CLI', () => {
  it('get jobs in every format lists all four jobs, exit 0 (-o json was exit 1 with a stack trace)', async () => {
    writeJobs();
    for (const format of ['table', 'wide', 'json', 'yaml']) {
      const r = await ugro('get', 'jobs', '-o', format);
      expect(r.err, format).toBe('');
      expect(r.code, format).toBe(0);
      for (const n of ['deep-flow', 'deep-seq', 'laughs', 'good']) expect(r.out, `${format} ${n}`).toContain(n);
    }
    const json = JSON.parse((await ugro('get', 'jobs', '-o', 'json')).out) as { name: string; spec?: unknown }[];
    expect(json.filter((j) => j.spec).map((j) => j.name)).toEqual(['good']);
  });

  it('resume of a deep spec: exit 1 naming the file and the limit, the file left as it was', async () => {
    writeFileSync(join(jobs, 'deep.yaml'), DEEP_SEQ);
    const r = await ugro('resume', 'deep', '--checkpoint', 'step-1');
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${join(jobs, 'deep.yaml')}:1:129: YAML limit: nested deeper than 64`);
    expect(readFileSync(join(jobs, 'deep.yaml'), 'utf8')).toBe(DEEP_SEQ);
  });

  it('apply -f of a deep file: exit 1 with the file, line and limit; nothing is written to jobs/', async () => {
    const file = join(root, 'deep.yaml');
    writeFileSync(file, DEEP_FLOW);
    const r = await ugro('apply', '-f', file);
    expect(r.code).toBe(1);
    expect(r.err.split('\n')).toEqual([expect.stringMatching(/:1:65: YAML limit: nested deeper than 64 levels/)]);
    expect(r.err.startsWith(`${file}:1:65: `)).toBe(true);
    expect(readdirSync(jobs)).toEqual([]);
  });

  it('a cluster file past a limit is an issue with its line, not a crash', () => {
    const r = parseCluster(`cluster: ${DEEP_FLOW}\n`, '/x/cluster.yaml', { env: {}, home: '/h', user: 'u' });
    expect(r).toMatchObject({ ok: false, issues: [{ line: 1, column: 73, message: expect.stringMatching(/deeper/) }] });
  });
});

describe('NUL bytes in the TrainingJob', () => {
  const job = (spec: string) => `${good('train').replace('  script: train.py\n', '')}${spec}`;
  const issues = (text: string) => {
    const r = parseTrainingJob(text, '/jobs/train.yaml');
    return r.ok ? [] : r.issues.map((i) => `${i.line}: ${i.path}: ${i.message}`);
  };

  it('spec.script with a NUL is refused at validation, with the field (it failed ten launches instead)', () => {
    expect(issues(job('  script: "train\\0.py"\n'))).toEqual([
      '6: spec.script: must not contain a NUL byte (\\0): it cannot be passed to a program',
    ]);
  });

  it('checkpoint.dir with a NUL is refused, with the field', () => {
    expect(issues(job('  script: train.py\n  checkpoint: { dir: "ckpt\\0x" }\n'))).toEqual([
      '7: spec.checkpoint.dir: must not contain a NUL byte (\\0): it cannot be passed to a program',
    ]);
    expect(issues(job('  script: train.py\n  checkpoint: { dir: ckpt/x }\n'))).toEqual([]);
  });
});
