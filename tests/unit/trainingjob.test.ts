/**
 * The TrainingJob API: what parses, the defaults a parsed job carries, every rejection with
 * its exact field path and line, and specHash (what makes "the same spec").
 */
import { describe, expect, it } from 'vitest';
import {
  isJobFileName,
  jobNameFromFile,
  nodeRange,
  parseTrainingJob,
  priorityValue,
  specHash,
} from '../../controller/api/trainingjob.ts';
import { job, jobYaml } from './job-fixtures.ts';

const HEAD = 'apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: train\nspec:\n';
/** A job file named train.yaml: header (lines 1-5) then `spec` lines starting on line 6. */
const withSpec = (spec: string) => HEAD + spec;

function issues(text: string, file: string | undefined = '/jobs/train.yaml') {
  const r = parseTrainingJob(text, file);
  if (r.ok) throw new Error('expected the job to be rejected');
  return r.issues;
}

describe('parseTrainingJob: a valid job', () => {
  it('parses a full job and keeps every field', () => {
    const text = `${HEAD}  script: bert/train.py
  args: ["--epochs", "3"]
  env: { NCCL_DEBUG: INFO }
  nodes: { min: 2, max: 3 }
  nprocPerNode: gpu
  hosts: [gpu1, gpu2, gpu-master]
  resources: { minGpuMemoryGiB: 8 }
  priority: high
  restartPolicy: { maxRestarts: 2, backoffSeconds: 5 }
  checkpoint: { dir: /data/ckpt/train, resumeFrom: step-400 }
  activeDeadlineSeconds: 3600
`;
    const r = parseTrainingJob(text, '/jobs/train.yaml');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value).toEqual({
      apiVersion: 'ugro.dev/v1alpha1',
      kind: 'TrainingJob',
      metadata: { name: 'train' },
      spec: {
        script: 'bert/train.py',
        args: ['--epochs', '3'],
        env: { NCCL_DEBUG: 'INFO' },
        nodes: { min: 2, max: 3 },
        nprocPerNode: 'gpu',
        hosts: ['gpu1', 'gpu2', 'gpu-master'],
        resources: { minGpuMemoryGiB: 8 },
        priority: 'high',
        restartPolicy: { maxRestarts: 2, maxInfraRestarts: 10, backoffSeconds: 5, exitCodes: { fatal: [], retry: [] } },
        failurePolicy: { nodeLostSeconds: 5 },
        preemptible: true,
        preemption: { graceSeconds: 60, minRuntimeSeconds: 300 },
        scaleUp: false,
        checkpoint: { dir: '/data/ckpt/train', resumeFrom: 'step-400' },
        suspend: false,
        activeDeadlineSeconds: 3600,
      },
    });
  });

  it('a minimal job gets the documented defaults', () => {
    const r = parseTrainingJob(withSpec('  command: [python3, -c, "print(1)"]\n'), '/jobs/train.yml');
    expect(r.ok && r.value.spec).toEqual({
      command: ['python3', '-c', 'print(1)'],
      args: [],
      env: {},
      nodes: 1,
      nprocPerNode: 1,
      priority: 'normal',
      restartPolicy: { maxRestarts: 0, maxInfraRestarts: 10, backoffSeconds: 10, exitCodes: { fatal: [], retry: [] } },
      failurePolicy: { nodeLostSeconds: 5 },
      preemptible: true,
      preemption: { graceSeconds: 60, minRuntimeSeconds: 300 },
      scaleUp: false,
      suspend: false,
    });
  });

  it('a partial restartPolicy keeps the other default', () => {
    expect(job('train', { script: 't.py', restartPolicy: { maxRestarts: 3 } }).spec.restartPolicy).toEqual({
      maxRestarts: 3,
      maxInfraRestarts: 10,
      backoffSeconds: 10,
      exitCodes: { fatal: [], retry: [] },
    });
  });

  it('without a file name, any valid name is accepted (ugro apply -f)', () => {
    expect(parseTrainingJob(withSpec('  script: t.py\n')).ok).toBe(true);
  });
});

describe('parseTrainingJob: rejections carry path and line', () => {
  it('an unknown field in spec, with its line', () => {
    expect(issues(withSpec('  script: t.py\n  scirpt: u.py\n'))).toEqual([
      { path: 'spec.scirpt', message: expect.stringMatching(/^unknown field/), line: 7, column: 3 },
    ]);
  });

  it('unknown fields at the top, in metadata and in nested objects', () => {
    const text = `apiVersion: ugro.dev/v1alpha1
kind: TrainingJob
metadata:
  name: train
  namespace: default
spec:
  script: t.py
  restartPolicy: { maxRestarts: 1, backoff: 5 }
status: {}
`;
    const got = issues(text).map((i) => [i.path, i.line]);
    expect(got).toEqual(
      expect.arrayContaining([
        ['metadata.namespace', 5],
        ['spec.restartPolicy.backoff', 8],
        ['status', 9],
      ]),
    );
    expect(got).toHaveLength(3);
  });

  it('wrong apiVersion and kind are named', () => {
    const text = 'apiVersion: ugro.dev/v1\nkind: Job\nmetadata:\n  name: train\nspec:\n  script: t.py\n';
    expect(issues(text)).toEqual([
      { path: 'apiVersion', message: 'must be "ugro.dev/v1alpha1"', line: 1, column: 13 },
      { path: 'kind', message: 'must be "TrainingJob"', line: 2, column: 7 },
    ]);
  });

  it('YAML syntax errors carry a line', () => {
    const [i] = issues(withSpec('  script: t.py\n  args: [a, b\n'));
    expect(i.path).toBe('');
    expect(i.message).toMatch(/^YAML syntax/);
    expect(i.line).toBeGreaterThanOrEqual(7);
  });

  it.each([
    ['Train', /DNS-1123/],
    ['train_1', /DNS-1123/],
    ['-train', /DNS-1123/],
    ['train-', /DNS-1123/],
    ['a.b', /DNS-1123/],
    ['a'.repeat(64), /at most 63/],
  ])('metadata.name %j is rejected', (name, msg) => {
    const text = `${HEAD.replace('name: train', `name: "${name}"`)}  script: t.py\n`;
    const [i] = issues(text, undefined);
    expect(i).toMatchObject({ path: 'metadata.name', line: 4 });
    expect(i.message).toMatch(msg);
  });

  it('a 63-character name is accepted', () => {
    const name = 'a'.repeat(63);
    expect(
      parseTrainingJob(`${HEAD.replace('name: train', `name: ${name}`)}  script: t.py\n`, `/jobs/${name}.yaml`).ok,
    ).toBe(true);
  });

  it('metadata.name must match the file name, pointing at the name line', () => {
    expect(issues(withSpec('  script: t.py\n'), '/jobs/other.yaml')).toEqual([
      {
        path: 'metadata.name',
        message: expect.stringContaining('"train" must match the file name (other.yaml)'),
        line: 4,
        column: 9,
      },
    ]);
  });

  it('script XOR command: both is an error on command, neither is an error on script', () => {
    expect(issues(withSpec('  script: t.py\n  command: [python3]\n'))).toEqual([
      { path: 'spec.command', message: expect.stringContaining('set exactly one of `script`'), line: 7, column: 12 },
    ]);
    expect(issues(withSpec('  args: [x]\n'))).toEqual([
      { path: 'spec.script', message: expect.stringContaining('set exactly one of'), line: 6, column: 3 },
    ]);
  });

  it('script must stay inside scripts/; command must not be empty', () => {
    expect(issues(withSpec('  script: ../t.py\n'))[0]).toMatchObject({
      path: 'spec.script',
      message: expect.stringContaining('no "..'),
      line: 6,
    });
    expect(issues(withSpec('  script: /abs/t.py\n'))[0]).toMatchObject({ path: 'spec.script', line: 6 });
    expect(issues(withSpec('  command: []\n'))[0]).toMatchObject({
      path: 'spec.command',
      message: 'must have at least the program to run',
      line: 6,
    });
  });

  it('nodes: a positive integer or {min,max} with min <= max', () => {
    expect(job('train', { script: 't.py', nodes: 3 }).spec.nodes).toBe(3);
    expect(job('train', { script: 't.py', nodes: { min: 2, max: 2 } }).spec.nodes).toEqual({ min: 2, max: 2 });
    expect(issues(withSpec('  script: t.py\n  nodes: 0\n'))).toEqual([
      { path: 'spec.nodes', message: 'must be >= 1', line: 7, column: 10 },
    ]);
    expect(issues(withSpec('  script: t.py\n  nodes: { min: 2, max: 1 }\n'))).toEqual([
      { path: 'spec.nodes.max', message: 'max must be >= min', line: 7, column: 25 },
    ]);
    expect(issues(withSpec('  script: t.py\n  nodes: 1.5\n'))[0]).toMatchObject({ path: 'spec.nodes', line: 7 });
  });

  it('nprocPerNode: an integer 1..64 or "gpu"', () => {
    expect(job('train', { script: 't.py', nprocPerNode: 'gpu' }).spec.nprocPerNode).toBe('gpu');
    expect(job('train', { script: 't.py', nprocPerNode: 64 }).spec.nprocPerNode).toBe(64);
    for (const bad of ['0', '65', 'all', '2.5'])
      expect(issues(withSpec(`  script: t.py\n  nprocPerNode: ${bad}\n`))[0]).toMatchObject({
        path: 'spec.nprocPerNode',
        line: 7,
      });
  });

  // Regression (was a bug, fixed): a union field that fails every branch reports zod's bare "Invalid input", which
  // tells a person neither what is allowed nor what is wrong (every other field names the rule).
  it('nprocPerNode and priority errors say what is allowed, not just "Invalid input"', () => {
    expect(issues(withSpec('  script: t.py\n  nprocPerNode: all\n'))[0].message).toMatch(/gpu/);
    expect(issues(withSpec('  script: t.py\n  priority: urgent\n'))[0].message).toMatch(/high.*normal.*low/);
  });

  it('priority: high/normal/low or an integer in -1000..1000', () => {
    expect(job('train', { script: 't.py', priority: 'low' }).spec.priority).toBe('low');
    expect(job('train', { script: 't.py', priority: -1000 }).spec.priority).toBe(-1000);
    for (const bad of ['urgent', '1001', '2.5'])
      expect(issues(withSpec(`  script: t.py\n  priority: ${bad}\n`))[0]).toMatchObject({
        path: 'spec.priority',
        line: 7,
      });
    expect([priorityValue('high'), priorityValue('normal'), priorityValue('low'), priorityValue(42)]).toEqual([
      100, 0, -100, 42,
    ]);
  });

  it('hosts must be DNS labels and at least as many as nodes', () => {
    expect(issues(withSpec('  script: t.py\n  nodes: 2\n  hosts: [gpu1]\n'))).toEqual([
      { path: 'spec.hosts', message: 'lists 1 host(s) but nodes is 2', line: 8, column: 10 },
    ]);
    expect(issues(withSpec('  script: t.py\n  hosts: [GPU1]\n'))[0]).toMatchObject({ path: 'spec.hosts[0]', line: 7 });
  });

  it('env: names must be valid, values strings, and UGRO_*/torch variables are reserved', () => {
    expect(issues(withSpec('  script: t.py\n  env: { RANK: "1" }\n'))[0]).toMatchObject({
      path: 'spec.env',
      message: expect.stringContaining('UGRO sets those'),
      line: 7,
    });
    expect(issues(withSpec('  script: t.py\n  env: { UGRO_JOB: x }\n'))[0]).toMatchObject({ path: 'spec.env' });
    expect(issues(withSpec('  script: t.py\n  env: { OMP_NUM_THREADS: 4 }\n'))[0]).toMatchObject({
      path: 'spec.env.OMP_NUM_THREADS',
      message: expect.stringContaining('quote numbers'),
    });
    expect(issues(withSpec('  script: t.py\n  args: [3]\n'))).toEqual([
      { path: 'spec.args[0]', message: 'must be a string (quote numbers: "3")', line: 7, column: 10 },
    ]);
  });

  it('several problems are all reported at once', () => {
    const got = issues(withSpec('  script: t.py\n  nodes: 0\n  priority: urgent\n  suspend: "yes"\n')).map(
      (i) => i.path,
    );
    expect(got.sort()).toEqual(['spec.nodes', 'spec.priority', 'spec.suspend']);
  });
});

describe('nodeRange', () => {
  it('an integer is min = max; an object is itself', () => {
    expect(nodeRange(job('train', { script: 't.py', nodes: 2 }).spec)).toEqual({ min: 2, max: 2 });
    expect(nodeRange(job('train', { script: 't.py', nodes: { min: 1, max: 3 } }).spec)).toEqual({ min: 1, max: 3 });
  });
});

describe('specHash', () => {
  const spec = {
    script: 't.py',
    args: ['--lr', '0.1'],
    env: { A: '1', B: '2' },
    nodes: 2,
    restartPolicy: { maxRestarts: 1, backoffSeconds: 5 },
  };

  it('is 8 hex characters and stable across key order at every level', () => {
    const a = specHash(job('train', spec).spec);
    const b = specHash(
      job('train', {
        restartPolicy: { backoffSeconds: 5, maxRestarts: 1 },
        nodes: 2,
        env: { B: '2', A: '1' },
        args: ['--lr', '0.1'],
        script: 't.py',
      }).spec,
    );
    expect(a).toMatch(/^[0-9a-f]{8}$/);
    expect(b).toBe(a);
  });

  it('a default written out explicitly is the same spec', () => {
    expect(specHash(job('train', { script: 't.py' }).spec)).toBe(
      specHash(job('train', { script: 't.py', args: [], nodes: 1, priority: 'normal', restartPolicy: {} }).spec),
    );
  });

  it('changes when anything that affects a run changes (including argument order)', () => {
    const h = specHash(job('train', spec).spec);
    const variants = [
      { ...spec, args: ['0.1', '--lr'] },
      { ...spec, env: { A: '1', B: '3' } },
      { ...spec, nodes: 3 },
      { ...spec, script: 'u.py' },
      { ...spec, restartPolicy: { maxRestarts: 2, backoffSeconds: 5 } },
      { ...spec, priority: 'high' },
    ];
    const hashes = variants.map((v) => specHash(job('train', v).spec));
    for (const x of hashes) expect(x).not.toBe(h);
    expect(new Set(hashes).size).toBe(variants.length);
  });

  it('ignores suspend (suspending and resuming is the same run) and metadata', () => {
    const h = specHash(job('train', spec).spec);
    expect(specHash(job('train', { ...spec, suspend: true }).spec)).toBe(h);
    expect(specHash(job('other', spec).spec)).toBe(h);
  });
});

describe('job file names', () => {
  it('spec files are *.yaml / *.yml, not status, control, hidden or temp files', () => {
    expect(['a.yaml', 'a.yml'].map(isJobFileName)).toEqual([true, true]);
    expect(
      ['a.status.yaml', 'a.control.yaml', 'a.status.yml', '.a.yaml', 'a.txt', 'a.status.yaml.tmp-1-abc', 'a.yaml~'].map(
        isJobFileName,
      ),
    ).toEqual([false, false, false, false, false, false, false]);
    expect(jobNameFromFile('/jobs/bert-base.yml')).toBe('bert-base');
  });
});

// Issue 7, defect 5: a NUL in args/env made sshd drop the pooled connection (every job on that
// host lost its channel); args+env beyond Linux's 128 KiB per-word limit failed the launch obscurely.
describe('what cannot travel in an exec', () => {
  const parse = (spec: Record<string, unknown>) => parseTrainingJob(jobYaml('train', { script: 't.py', ...spec }));
  const issuesOf = (spec: Record<string, unknown>) => {
    const r = parse(spec);
    return r.ok ? [] : r.issues.map((i) => `${i.path}: ${i.message}`);
  };

  it('a NUL byte in args, command or env is refused with the field', () => {
    expect(issuesOf({ args: ['ok', 'a\0b'] })).toEqual([
      'spec.args[1]: must not contain a NUL byte (\\0): it cannot be passed to a program',
    ]);
    expect(issuesOf({ script: undefined, command: ['python3', '-c\0x'] })[0]).toMatch(
      /^spec\.command\[1\]: must not contain a NUL/,
    );
    expect(issuesOf({ env: { A: 'x\0y' } })[0]).toMatch(/^spec\.env\.A: must not contain a NUL/);
  });

  it('args + command + env over 96 KiB (quoted) are refused with the size and the limit', () => {
    expect(issuesOf({ args: ['x'.repeat(50_000), 'y'.repeat(50_000)] })).toEqual([
      'spec.args: args, command and env take 100002 bytes quoted for the shell; the limit is 96 KiB ' +
        '(sshd passes the remote command as one argument, which Linux caps at 128 KiB): pass big inputs in a file',
    ]);
    // Quoting counts: 30 000 single quotes become 120 002 bytes.
    expect(issuesOf({ env: { Q: "'".repeat(30_000) } })[0]).toMatch(
      /^spec\.env: args, command and env take 1200\d\d bytes/,
    );
    expect(parse({ args: ['x'.repeat(90_000)] }).ok).toBe(true);
  });
});
