/**
 * rank.sh, the real script, under a stand-in torchrun (a shell whose command line names
 * torch.distributed.run, as torchrun's does: UGRO's `python -c …torch.distributed.run…` and Slurm's
 * `python -m torch.distributed.run`): a rank that fails on its own ends its torchrun at once
 * (SIGTERM, and a line in torchrun's log saying so), so that torchrun neither waits for its next
 * monitor look nor sits in its exit barrier waiting for peers (npm run bench, recovery:
 * crash-stuck-peer); a rank that succeeds, a rank stopped by torchrun or a stop, and a parent that
 * is not torchrun are left alone. The rank's exit code is recorded either way.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runtimeDir } from '../../controller/base/install.ts';

/** The stand-in torchrun: starts rank.sh with the command, notes a SIGTERM, forwards it, waits. */
const PARENT = `
trap 'echo TERM >> "$UGRO_RUN_DIR/parent"; kill -TERM "$kid" 2>/dev/null; wait "$kid"; exit 1' TERM
"$UGRO_RUN_DIR/rank.sh" "$@" &
kid=$!
wait "$kid"
echo "rank.sh exited $?" >> "$UGRO_RUN_DIR/parent"
`;

function runDir() {
  const dir = mkdtempSync(join(tmpdir(), 'ugro-rank-'));
  copyFileSync(join(runtimeDir(), 'rank.sh'), join(dir, 'rank.sh'));
  return dir;
}
const env = (dir: string) => ({ ...process.env, UGRO_RUN_DIR: dir, RANK: '0', LOCAL_RANK: '0', GROUP_RANK: '0' });
const read = (p: string) => (existsSync(p) ? readFileSync(p, 'utf8') : '');

function underParent(name: string, child: string[]) {
  const dir = runDir();
  const r = spawnSync('sh', ['-c', PARENT, name, ...child], { encoding: 'utf8', env: env(dir), timeout: 20_000 });
  return {
    dir,
    code: r.status,
    err: r.stderr,
    parent: read(join(dir, 'parent')),
    exit: read(join(dir, 'rank-0.exit')),
  };
}

describe('rank.sh and its torchrun', () => {
  it('a rank that fails on its own ends its torchrun at once, and says so in its log', () => {
    const r = underParent('torch.distributed.run', ['sh', '-c', 'exit 3']);
    expect(r.exit).toBe('3\n');
    expect(r.parent).toBe('TERM\n');
    expect(r.err).toMatch(/^ugro: rank 0 exited with code 3: ending torchrun \(pid \d+\) now; UGRO stops the gang\n$/);
  });

  it('a rank killed (kill -9, the OOM killer) counts as failing on its own', () => {
    const r = underParent('torch.distributed.run', ['sh', '-c', 'kill -KILL $$']);
    expect(r.exit).toBe('137\n');
    expect(r.parent).toBe('TERM\n');
  });

  it('a rank that succeeds leaves torchrun alone', () => {
    const r = underParent('torch.distributed.run', ['true']);
    expect(r.exit).toBe('0\n');
    expect(r.parent).toBe('rank.sh exited 0\n');
    expect(r.err).toBe('');
  });

  it('a parent that is not torchrun is never signalled', () => {
    const r = underParent('some-other-launcher', ['sh', '-c', 'exit 3']);
    expect(r.exit).toBe('3\n');
    expect(r.parent).toBe('rank.sh exited 3\n');
  });

  it('a rank asked to stop (SIGTERM to rank.sh, as torchrun or a stop does) leaves torchrun alone', async () => {
    const dir = runDir();
    const p = spawn('sh', ['-c', PARENT, 'torch.distributed.run', 'sleep', '30'], { env: env(dir), stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => p.once('exit', (c) => res(c)));
    // rank.sh's own pid: the 4th word of the line it appends to RUN_DIR/ranks first thing.
    let pid: number | undefined;
    for (let i = 0; i < 400 && !pid; i++) {
      const w = read(join(dir, 'ranks')).trim().split(' ');
      if (w.length >= 5 && existsSync(join(dir, 'rank-0.pid'))) pid = Number(w[3]);
      else await new Promise((r) => setTimeout(r, 25));
    }
    expect(pid).toBeGreaterThan(1);
    process.kill(pid!, 'SIGTERM');
    expect(await exited).toBe(0);
    expect(read(join(dir, 'rank-0.exit'))).toBe('143\n');
    expect(read(join(dir, 'parent'))).toBe('rank.sh exited 143\n');
  });
});

/**
 * rank.sh's out-of-memory record (rank-N.oom, read by observe.sh): CUDA's error at the end of a failed
 * rank's log, with the batch UGRO gave it. The kernel's OOM kill (SIGKILL while the memory cgroup's
 * oom_kill count rises) needs a real memory limit: tests/lab/oom.test.ts. Here, a SIGKILL that is not
 * the OOM killer's (the count did not move) leaves no record.
 */
describe("rank.sh's out-of-memory record", () => {
  const batchEnv = {
    UGRO_RANK_BATCHES: '28,8',
    UGRO_RANK_OFFSETS: '0,28',
    UGRO_MICRO_BATCHES: '28,8',
    UGRO_GRAD_ACCUMS: '1,1',
  };
  function rankWith(child: string[], extra: Record<string, string> = {}) {
    const dir = runDir();
    const r = spawnSync('sh', [join(dir, 'rank.sh'), ...child], {
      encoding: 'utf8',
      env: { ...env(dir), ...extra },
      timeout: 20_000,
    });
    return { code: r.status, exit: read(join(dir, 'rank-0.exit')), oom: read(join(dir, 'rank-0.oom')) };
  }
  const CUDA_OOM =
    'echo "Traceback (most recent call last):"; echo "  File \\"train.py\\", line 1"; ' +
    'echo "torch.cuda.OutOfMemoryError: CUDA out of memory. ' +
    'Tried to allocate 20.00 MiB (GPU 0; 7.79 GiB total)" >&2; ' +
    'exit 1';

  it("CUDA's out-of-memory error in the rank's log: `cuda BATCH MICRO ACCUM LINE`, before the exit code", () => {
    const r = rankWith(['sh', '-c', CUDA_OOM], batchEnv);
    expect(r.exit).toBe('1\n');
    expect(r.oom).toBe(
      'cuda 28 28 1 torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB ' +
        '(GPU 0; 7.79 GiB total)\n',
    );
  });

  it('without spec.batch the sizes are `-`', () => {
    expect(rankWith(['sh', '-c', CUDA_OOM]).oom).toMatch(/^cuda - - - torch\.cuda\.OutOfMemoryError: /);
  });

  it('a failure without the error, a success, and a SIGKILL the OOM killer did not count: no record', () => {
    const fail = rankWith(['sh', '-c', 'echo "RuntimeError: something else"; exit 1'], batchEnv);
    expect([fail.exit, fail.oom]).toEqual(['1\n', '']);
    const ok = rankWith(['sh', '-c', `echo "CUDA out of memory (caught, retried)"; exit 0`], batchEnv);
    expect([ok.exit, ok.oom]).toEqual(['0\n', '']);
    const killed = rankWith(['sh', '-c', 'kill -KILL $$'], batchEnv);
    expect([killed.exit, killed.oom]).toEqual(['137\n', '']);
  });

  it('only the end of the log counts: an error 40+ lines before the failure is not the cause', () => {
    const early =
      'echo "CUDA out of memory (handled)"; i=0; while [ $i -lt 45 ]; do echo "step $i"; i=$((i+1)); done; exit 1';
    expect(rankWith(['sh', '-c', early], batchEnv).oom).toBe('');
  });
});
