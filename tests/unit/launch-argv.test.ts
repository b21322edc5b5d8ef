/**
 * torchrunArgv / ugroEnv / checkpointDir: the exact argv and environment of each node's torchrun, and that a
 * launch action from reconcile() turns into a consistent set of per-node command lines.
 */
import { posix } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import { runIdOf } from '../../controller/api/run.ts';
import { checkpointDir, type NodeLaunch, torchrunArgv, ugroEnv } from '../../controller/core/launch.ts';
import { reconcile } from '../../controller/core/reconcile.ts';
import { host, job, validSpec, view } from './job-fixtures.ts';

const SCRIPT_JOB = job('train', {
  script: 'bert/train.py',
  args: ['--epochs', '3'],
  nodes: 2,
  nprocPerNode: 2,
  env: { NCCL_DEBUG: 'INFO' },
});
const RUN_ID = runIdOf('train', 'abcd1234', 1);

function node(over: Partial<NodeLaunch> = {}): NodeLaunch {
  const h = over.host ?? host('gpu1');
  return {
    host: h,
    nodeRank: 1,
    nnodes: 2,
    nproc: 2,
    rdzvAddr: '10.0.0.10',
    port: 29500,
    runId: RUN_ID,
    runDir: posix.join(h.paths.runs, 'train.abcd1234.1'),
    attempt: 1,
    rdzvTimeoutSeconds: 300,
    ...over,
  };
}

describe('torchrunArgv', () => {
  it('the exact argv of a worker node of a script job', () => {
    expect(torchrunArgv(SCRIPT_JOB, node())).toEqual([
      'python3',
      '-c',
      expect.stringContaining('from torch.distributed.run import main'),
      '--nnodes=2',
      '--nproc_per_node=2',
      '--node_rank=1',
      '--rdzv_backend=c10d',
      '--rdzv_endpoint=10.0.0.10:29500',
      `--rdzv_id=${RUN_ID}`,
      '--rdzv_conf=is_host=0,join_timeout=300',
      '--max_restarts=0',
      '--monitor_interval=0.5',
      '--no_python',
      '/home/ob/ugro/runs/train.abcd1234.1/rank.sh',
      'python3',
      '-u',
      '/home/ob/ugro/scripts/bert/train.py',
      '--epochs',
      '3',
    ]);
  });

  it('every torchrun flag uses the underscore spelling (torch 1.13 knows only those)', () => {
    const argv = torchrunArgv(SCRIPT_JOB, node());
    const flags = argv.slice(3, argv.indexOf('--no_python') + 1);
    expect(flags.length).toBeGreaterThan(8);
    for (const f of flags) expect(f).toMatch(/^--[a-z_]+(=|$)/);
    expect(argv.some((a) => /^--(nproc-per-node|node-rank|rdzv-|max-restarts|no-python)/.test(a))).toBe(false);
  });

  it('is_host=1 on node rank 0 only; join_timeout follows rdzvTimeoutSeconds', () => {
    expect(
      torchrunArgv(SCRIPT_JOB, node({ host: host('gpu-master'), nodeRank: 0, rdzvTimeoutSeconds: 120 })),
    ).toContain('--rdzv_conf=is_host=1,join_timeout=120');
    expect(torchrunArgv(SCRIPT_JOB, node({ nodeRank: 1 }))).toContain('--rdzv_conf=is_host=0,join_timeout=300');
  });

  it('the rdzv_id is the run id: unique per attempt', () => {
    const a1 = torchrunArgv(SCRIPT_JOB, node({ runId: runIdOf('train', 'abcd1234', 1) })).find((a) =>
      a.startsWith('--rdzv_id='),
    );
    const a2 = torchrunArgv(SCRIPT_JOB, node({ runId: runIdOf('train', 'abcd1234', 2), attempt: 2 })).find((a) =>
      a.startsWith('--rdzv_id='),
    );
    expect(a1).toBe('--rdzv_id=train-abcd1234-a1');
    expect(a2).toBe('--rdzv_id=train-abcd1234-a2');
  });

  it('a command job runs the command (no python -u) after the rank wrapper', () => {
    const j = job('train', { command: ['/opt/venv/bin/python', '-m', 'mypkg.train'], args: ['--fast'] });
    const argv = torchrunArgv(j, node({ nnodes: 1, nodeRank: 0, nproc: 1 }));
    expect(argv.slice(argv.indexOf('--no_python'))).toEqual([
      '--no_python',
      '/home/ob/ugro/runs/train.abcd1234.1/rank.sh',
      '/opt/venv/bin/python',
      '-m',
      'mypkg.train',
      '--fast',
    ]);
  });

  it("uses the host's python and scripts directory", () => {
    const h = { ...host('gpu2'), python: '/home/ollie/.pixi/bin/python' };
    const argv = torchrunArgv(SCRIPT_JOB, node({ host: h }));
    expect(argv[0]).toBe('/home/ollie/.pixi/bin/python');
    expect(argv).toContain('/home/ollie/ugro/scripts/bert/train.py');
    expect(argv.filter((a) => a === '/home/ollie/.pixi/bin/python')).toHaveLength(2);
  });
});

/** UGRO's variables for a node, with the checkpoint dir resolved as the controller does. */
function launchEnv(j: ReturnType<typeof job>, n: NodeLaunch): Record<string, string> {
  const c = checkpointDir(j, n.host);
  if (!c.ok) throw new Error(c.why);
  return ugroEnv(j, n, c.path);
}

describe('ugroEnv', () => {
  it(
    'the UGRO_* contract and unbuffered python; ' + 'the job env is not in it (it goes to the training process only)',
    () => {
      expect(
        launchEnv(
          SCRIPT_JOB,
          node({ attempt: 2, runId: runIdOf('train', 'abcd1234', 2), runDir: '/home/ob/ugro/runs/train.abcd1234.2' }),
        ),
      ).toEqual({
        PYTHONUNBUFFERED: '1',
        TORCH_NCCL_ASYNC_ERROR_HANDLING: '1',
        NCCL_ASYNC_ERROR_HANDLING: '1',
        UGRO_JOB: 'train',
        UGRO_RUN_ID: 'train-abcd1234-a2',
        UGRO_ATTEMPT: '2',
        UGRO_RESTART_COUNT: '1',
        UGRO_CHECKPOINT_DIR: '/home/ob/ugro/checkpoints/train',
        UGRO_METRICS_FILE: '/home/ob/ugro/runs/train.abcd1234.2/metrics.jsonl',
      });
    },
  );

  it('the checkpoint dir is the same for every attempt (so attempt 2 can resume)', () => {
    const e1 = launchEnv(SCRIPT_JOB, node({ attempt: 1 }));
    const e2 = launchEnv(SCRIPT_JOB, node({ attempt: 2, runDir: '/home/ob/ugro/runs/train.abcd1234.2' }));
    expect(e2.UGRO_CHECKPOINT_DIR).toBe(e1.UGRO_CHECKPOINT_DIR);
    expect(e2.UGRO_METRICS_FILE).not.toBe(e1.UGRO_METRICS_FILE);
  });

  it('checkpoint.dir overrides the default; resumeFrom becomes UGRO_RESUME_FROM', () => {
    const j = job('train', { script: 't.py', checkpoint: { dir: '/data/ckpt/train', resumeFrom: 'step-400' } });
    const h: Host = { ...host('gpu1'), paths: { ...host('gpu1').paths, checkpointRoots: ['/data/ckpt'] } };
    expect(launchEnv(j, node({ host: h }))).toMatchObject({
      UGRO_CHECKPOINT_DIR: '/data/ckpt/train',
      UGRO_RESUME_FROM: 'step-400',
    });
    expect(launchEnv(SCRIPT_JOB, node())).not.toHaveProperty('UGRO_RESUME_FROM');
  });

  // Regression (was a bug, fixed): a relative checkpoint.dir is passed through as is, and torchrun's cwd is the
  // per-attempt run directory (launch.sh cd's there), so each attempt writes its checkpoints
  // into its own run dir and a restart never finds the previous attempt's. Resolve it against
  // the host's checkpoints (or project) directory, or reject it in the schema.
  it('a relative checkpoint.dir is made absolute, not left relative to the per-attempt run dir', () => {
    const j = job('train', { script: 't.py', checkpoint: { dir: 'ckpt/train' } });
    expect(posix.isAbsolute(launchEnv(j, node()).UGRO_CHECKPOINT_DIR)).toBe(true);
  });
});

// Issue 7, defect 7: checkpoint.dir was unconfined, and train.py torch.loads from it.
describe('checkpointDir', () => {
  const gpu1 = host('gpu1');
  const withRoots = (roots: string[]): Host => ({ ...gpu1, paths: { ...gpu1.paths, checkpointRoots: roots } });
  const dirJob = (dir: string) => job('train', { script: 't.py', checkpoint: { dir } });

  it("a relative dir is under the host's paths.checkpoints", () => {
    expect(checkpointDir(dirJob('exp/1'), gpu1)).toEqual({ ok: true, path: `${gpu1.paths.checkpoints}/exp/1` });
  });

  it('an absolute dir outside paths.checkpoints and every checkpoint root is refused, naming the fix', () => {
    const r = checkpointDir(dirJob('/etc/ugro'), gpu1);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.why).toContain('spec.checkpoint.dir: /etc/ugro is outside gpu1');
    expect(!r.ok && r.why).toContain('paths.checkpoint_roots');
  });

  it(
    'an absolute dir under a listed checkpoint root (or paths.checkpoints) is allowed; ' + 'a sibling prefix is not',
    () => {
      expect(checkpointDir(dirJob('/mnt/nfs/ckpt/run1'), withRoots(['/mnt/nfs/ckpt']))).toEqual({
        ok: true,
        path: '/mnt/nfs/ckpt/run1',
      });
      expect(checkpointDir(dirJob(`${gpu1.paths.checkpoints}/x`), gpu1).ok).toBe(true);
      expect(checkpointDir(dirJob('/mnt/nfs/ckpt-other'), withRoots(['/mnt/nfs/ckpt'])).ok).toBe(false);
    },
  );

  it('".." is refused by the schema, relative or absolute', () => {
    for (const dir of ['../x', 'a/../../b', '/mnt/nfs/ckpt/../../etc']) {
      expect(() => dirJob(dir), dir).toThrow(/must not contain/);
    }
  });

  it('reconcile refuses to launch a job whose checkpoint dir is not allowed: Invalid, no launch', () => {
    const S = validSpec('train', { script: 't.py', checkpoint: { dir: '/etc/ugro' } });
    const r = reconcile({
      name: 'train',
      now: new Date('2026-03-01T10:00:00Z'),
      spec: S,
      parts: [],
      unreachable: new Map(),
      cluster: view(),
    });
    expect(r.actions).toEqual([]);
    expect(r.status).toMatchObject({ phase: 'Invalid', reason: 'CheckpointDirNotAllowed' });
  });
});

describe('from a launch action to per-node command lines', () => {
  it('exactly one node is the c10d host, and it is the rendezvous host at the endpoint address', () => {
    const S = validSpec('train', { script: 't.py', nodes: 3 });
    const r = reconcile({
      name: 'train',
      now: new Date('2026-03-01T10:00:00Z'),
      spec: S,
      parts: [],
      unreachable: new Map(),
      cluster: view({ usedPorts: new Set([29500]) }),
    });
    const a = r.actions[0];
    if (a?.type !== 'launch') throw new Error('expected a launch');
    const rdzv = host(a.rdzvHost);
    const argvs = a.parts.map((p) =>
      torchrunArgv(S.job, {
        host: host(p.host),
        nodeRank: p.nodeRank,
        nnodes: a.allParts.length,
        nproc: p.nproc,
        rdzvAddr: rdzv.address,
        port: a.port,
        runId: a.runId,
        runDir: posix.join(host(p.host).paths.runs, a.dir),
        attempt: a.attempt,
        rdzvTimeoutSeconds: 300,
      }),
    );
    const hosts = argvs
      .map((v, i) => (v.some((x) => x.startsWith('--rdzv_conf=is_host=1')) ? a.parts[i].host : undefined))
      .filter(Boolean);
    expect(hosts).toEqual([a.rdzvHost]);
    for (const v of argvs) {
      expect(v).toContain(`--rdzv_endpoint=${rdzv.address}:29501`);
      expect(v).toContain(`--rdzv_id=${a.runId}`);
      expect(v).toContain('--nnodes=3');
    }
    expect(argvs.map((v) => v.find((x) => x.startsWith('--node_rank=')))).toEqual([
      '--node_rank=0',
      '--node_rank=1',
      '--node_rank=2',
    ]);
  });
});
