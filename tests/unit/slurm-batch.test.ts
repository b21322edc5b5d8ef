/**
 * The batch script the Slurm backend submits (controller/backends/slurm/batch.ts + scripts/runtime/slurm/):
 * its #SBATCH header comes from checked values only, and the real script, run by sh on this
 * machine with stand-ins for srun and scontrol and a Python that records how it was called,
 * starts torchrun once per node with the right rendezvous and hands the training command and
 * the job's env to it byte for byte, whatever they hold.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InternalError, UgroError } from '../../config/errors.ts';
import { slurmSettings } from '../../config/slurm.ts';
import { batchScript, sbatchHeader } from '../../controller/backends/slurm/batch.ts';
import { niceOf, slurmPlan } from '../../controller/backends/slurm/sbatch-plan.ts';
import { slurmScripts } from '../../controller/backends/slurm/scripts.ts';
import { job } from './job-fixtures.ts';
import { fakeSlurm, slurmCluster } from './slurm-fixtures.ts';

const cluster = slurmCluster();
const settings = cluster.slurm!.slurm;

/** Words no shell, no sbatch header and no env may mangle. */
const HOSTILE = [
  "it's",
  'two words',
  '$(touch /tmp/ugro-pwned)',
  '`id`',
  'a\nb',
  '\n#SBATCH --partition=stolen',
  '"double"',
  '*',
  '--',
  'x=y',
  '\\',
  '',
  'ünïcödé ✓',
];

function plan(spec: Record<string, unknown>) {
  return slurmPlan(job('train-a', { script: 'train.py', ...spec }), settings, { rdzvTimeoutSeconds: 120 });
}

describe('the #SBATCH header', () => {
  it('says what the job asks for, from the spec and the slurm: section', () => {
    const p = plan({ nodes: 3, priority: 'high', activeDeadlineSeconds: 3601, restartPolicy: { maxRestarts: 2 } });
    expect(sbatchHeader('train-a-0123abcd-a1', p)).toEqual([
      '#SBATCH --job-name=train-a-0123abcd-a1',
      '#SBATCH --nodes=3',
      '#SBATCH --ntasks-per-node=1',
      '#SBATCH --output=slurm-%j.out',
      '#SBATCH --requeue',
      '#SBATCH --signal=TERM@60',
      '#SBATCH --partition=gpu',
      '#SBATCH --account=ml-team',
      '#SBATCH --qos=urgent',
      '#SBATCH --nice=0',
      '#SBATCH --time=61',
      '#SBATCH --mem=0',
      '#SBATCH --constraint=a100',
    ]);
  });

  it('a node range, no restarts (no requeue), and priority as --nice', () => {
    const p = plan({ nodes: { min: 2, max: 4 }, priority: 'low', restartPolicy: { maxInfraRestarts: 0 } });
    const h = sbatchHeader('r', p);
    expect(h).toContain('#SBATCH --nodes=2-4');
    expect(h).toContain('#SBATCH --no-requeue');
    expect(h).toContain('#SBATCH --nice=200');
    expect(h.some((l) => l.startsWith('#SBATCH --qos'))).toBe(false);
    expect([niceOf(100), niceOf(0), niceOf(-100), niceOf(1000), niceOf(37)]).toEqual([0, 100, 200, 0, 63]);
  });

  it('refuses a value that is not plainly safe, even one that got past the config schema', () => {
    const p = plan({});
    expect(() => sbatchHeader('r', { ...p, partition: 'gpu debug' })).toThrow(/partition/);
    expect(() => sbatchHeader('r', { ...p, extra: ['--mem=1G\n#SBATCH --x'] })).toThrow(/extra line/);
    expect(() => sbatchHeader('r', { ...p, extra: ['--job-name=other'] })).toThrow(/which UGRO sets itself/);
    expect(() => sbatchHeader("r'x", p)).toThrow(/run id/);
    expect(() => sbatchHeader('r', { ...p, nice: -5 })).toThrow(/nice/);
  });

  it("a number past what Slurm takes is the input's error (UgroError); a name past its schema is a bug", () => {
    const p = plan({});
    // The job's schema bounds neither nodes nor activeDeadlineSeconds.
    for (const bad of [{ nodes: { min: 200_000, max: 200_000 } }, { timeMinutes: 1e12 }]) {
      const e = (() => {
        try {
          sbatchHeader('r', { ...p, ...bad });
        } catch (x) {
          return x;
        }
      })();
      expect(e).toBeInstanceOf(UgroError);
      expect((e as Error).message).toMatch(/is out of range \(Slurm takes 1\.\.\d+\)$/);
    }
    expect(() => sbatchHeader('r', { ...p, partition: 'gpu debug' })).toThrow(InternalError);
    // The cluster file's python may hold a NUL (a YAML "\\0"): its input, not a bug.
    const nul = { runId: 'r', plan: p, python: 'py\0thon', ugroEnv: {}, jobEnv: {}, target: ['x'] };
    expect(() => batchScript(nul, slurmScripts().batch)).toThrow(UgroError);
    expect(() => batchScript(nul, slurmScripts().batch)).toThrow(
      'slurm batch: a NUL byte cannot be passed to a program',
    );
  });

  it('the cluster file refuses the same at load time, with the field', () => {
    const bad = (extra: string) => () =>
      slurmCluster(`\nslurm:\n  login: { hostname: l, ip: 10.0.0.5, user: a }\n${extra}`);
    expect(bad('  sbatch: ["--mem=1G --x"]')).toThrow(/slurm\.sbatch\[0\]/);
    expect(bad('  sbatch: ["--output=/tmp/x"]')).toThrow(/UGRO sets itself/);
    expect(bad('  partition: "a b"')).toThrow(/slurm\.partition/);
    expect(bad('  name: gpu1')).toThrow(/slurm\.name.*already a host/);
    expect(slurmSettings).toBeTypeOf('function');
  });
});

describe('the batch script, run', () => {
  const fake = fakeSlurm();
  /** A Python stand-in: records its argv (NUL-separated) and environment per node, exits 0. */
  const py = join(fake.bin, 'py-recorder');
  writeFileSync(
    py,
    [
      '#!/bin/sh',
      'printf "%s\\0" "$@" >"$UGRO_RUN_DIR/argv-$SLURM_NODEID"',
      'env -0 >"$UGRO_RUN_DIR/env-$SLURM_NODEID"',
      'exit "${PY_EXIT:-0}"',
    ].join('\n'),
  );
  chmodSync(py, 0o755);

  function runScript(o: { target: string[]; jobEnv?: Record<string, string>; restart?: number; env?: object }) {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-batch-'));
    const p = plan({ nodes: 2 });
    const text = batchScript(
      {
        runId: 'train-a-0123abcd-a1',
        plan: p,
        python: py,
        ugroEnv: { UGRO_JOB: 'train-a', UGRO_RUN_ID: 'train-a-0123abcd-a1', UGRO_CHECKPOINT_DIR: join(dir, 'ckpt') },
        jobEnv: o.jobEnv ?? {},
        target: o.target,
      },
      slurmScripts().batch,
    );
    writeFileSync(join(dir, 'job.sbatch'), text);
    const r = spawnSync('sh', [join(dir, 'job.sbatch')], {
      cwd: dir,
      encoding: 'utf8',
      timeout: 20_000,
      env: {
        PATH: `${fake.bin}:${process.env.PATH}`,
        SLURM_SUBMIT_DIR: dir,
        SLURM_JOB_ID: '42',
        SLURM_JOB_NODELIST: 'localhost',
        SLURM_JOB_NUM_NODES: '2',
        ...(o.restart ? { SLURM_RESTART_COUNT: String(o.restart) } : {}),
        ...o.env,
      },
    });
    const argv = (n: number) =>
      readFileSync(join(dir, `argv-${n}`), 'utf8')
        .split('\0')
        .slice(0, -1);
    const env = (n: number) =>
      Object.fromEntries(
        readFileSync(join(dir, `env-${n}`), 'utf8')
          .split('\0')
          .filter(Boolean)
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
    return { r, dir, text, argv, env };
  }

  it('runs torchrun once per node: c10d on the first node (is_host=1 there only), then the command as given', () => {
    const target = ['/usr/bin/python3', '-u', '/shared/scripts/train.py', ...HOSTILE];
    const { r, dir, text, argv } = runScript({ target });
    expect(r.status, r.stderr).toBe(0);
    for (const n of [0, 1]) {
      const a = argv(n);
      const rankSh = a.indexOf(join(dir, 'rank.sh'));
      expect(a.slice(0, rankSh)).toEqual([
        '-m',
        'torch.distributed.run',
        '--nnodes=2',
        '--nproc_per_node=1',
        `--node_rank=${n}`,
        '--rdzv_backend=c10d',
        expect.stringMatching(/^--rdzv_endpoint=127\.0\.0\.1:\d+$/),
        '--rdzv_id=train-a-0123abcd-a1',
        `--rdzv_conf=is_host=${n === 0 ? 1 : 0},join_timeout=120`,
        '--max_restarts=0',
        '--monitor_interval=0.5',
        '--no_python',
      ]);
      expect(a.slice(rankSh + 1)).toEqual(target);
    }
    // Every line of the script is UGRO's: no argument even looks like a directive; nothing ran.
    const lines = text.split('\n');
    expect(lines.filter((l) => l.startsWith('#SBATCH'))).toEqual(
      sbatchHeader('train-a-0123abcd-a1', plan({ nodes: 2 })),
    );
    expect(lines.filter((l) => l.includes('#SBATCH --partition=stolen'))).toEqual([
      expect.stringMatching(/^ {2}''"\$ugro_nl"'#SBATCH --partition=stolen' \\$/),
    ]);
    expect(existsSync('/tmp/ugro-pwned')).toBe(false);
    expect(readFileSync(join(dir, 'exit_code'), 'utf8')).toBe('0\n');
    expect(readFileSync(join(dir, 'rdzv_endpoint'), 'utf8')).toMatch(/^127\.0\.0\.1:\d+\n$/);
    expect(existsSync(join(dir, 'rank.sh')) && existsSync(join(dir, 'slurm-node.sh'))).toBe(true);
    expect(fake.calls().some((c) => c.startsWith('srun | --kill-on-bad-exit=1 | --nodes=2 | --ntasks=2'))).toBe(true);
  });

  it("gives the job's env to the training processes byte for byte, UGRO's variables beside it", () => {
    const jobEnv = Object.fromEntries(HOSTILE.map((v, i) => [`V${i}`, v]));
    const { r, dir, env } = runScript({ target: ['/bin/true'], jobEnv });
    expect(r.status, r.stderr).toBe(0);
    const e = env(1);
    for (const [k, v] of Object.entries(jobEnv)) expect(e[k]).toBe(v);
    expect(e).toMatchObject({
      UGRO_JOB: 'train-a',
      UGRO_RUN_ID: 'train-a-0123abcd-a1',
      UGRO_RUN_DIR: dir,
      UGRO_METRICS_FILE: join(dir, 'metrics.jsonl'),
      UGRO_CHECKPOINT_DIR: join(dir, 'ckpt'),
    });
  });

  it('a failing node fails the job: its exit code is recorded', () => {
    const { r, dir } = runScript({ target: ['/bin/true'], env: { PY_EXIT: '3' } });
    expect(r.status).toBe(3);
    expect(readFileSync(join(dir, 'exit_code'), 'utf8')).toBe('3\n');
  });

  it('requeued by Slurm: the last try moves aside and training resumes from the newest checkpoint', () => {
    const first = runScript({ target: ['/bin/true'] });
    const ckpt = join(first.dir, 'ckpt');
    mkdirSync(ckpt, { recursive: true });
    writeFileSync(join(ckpt, 'step-40.pt'), 'x');
    writeFileSync(join(ckpt, 'latest'), 'step-40\n');
    writeFileSync(join(first.dir, 'rank-0.exit'), '137\n');
    // The same directory, as Slurm starts the script again (SLURM_RESTART_COUNT=1).
    const text = readFileSync(join(first.dir, 'job.sbatch'), 'utf8');
    const r = spawnSync('sh', ['-c', text], {
      cwd: first.dir,
      encoding: 'utf8',
      env: {
        PATH: `${fake.bin}:${process.env.PATH}`,
        SLURM_SUBMIT_DIR: first.dir,
        SLURM_JOB_ID: '42',
        SLURM_JOB_NODELIST: 'localhost',
        SLURM_JOB_NUM_NODES: '1',
        SLURM_RESTART_COUNT: '1',
      },
    });
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(join(first.dir, 'requeue-1', 'rank-0.exit'))).toBe(true);
    expect(existsSync(join(first.dir, 'rank-0.exit'))).toBe(false);
    expect(first.env(0)).toMatchObject({ UGRO_RESUME_FROM: 'step-40', UGRO_RESTART_COUNT: '1' });
  });

  it('every script of scripts/runtime/slurm parses as POSIX sh', () => {
    const s = slurmScripts();
    for (const n of ['prepare', 'submit', 'cancel', 'squeue', 'observe', 'probe'] as const)
      expect(spawnSync('sh', ['-n', '-c', s.text(n)]).status, n).toBe(0);
    const text = batchScript(
      { runId: 'r', plan: plan({}), python: 'python3', ugroEnv: {}, jobEnv: {}, target: ['x'] },
      s.batch,
    );
    expect(spawnSync('sh', ['-n', '-c', text]).status).toBe(0);
  });
});
