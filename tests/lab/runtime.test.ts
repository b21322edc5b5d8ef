/**
 * The host runtime scripts on a real host: the lock handoff between launch.sh and its runner.
 * A waiter (the controller's wait.sh, `ugro logs -f`) that starts the moment launch.sh returns
 * must block until the run ends, never find the lock free and call the run over.
 */
import { posix } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HostRuntime, type RunMeta } from '../../controller/hosts/runs.ts';
import { SshPool } from '../../controller/hosts/ssh.ts';
import { labCluster } from './controller-harness.ts';

const cluster = labCluster();
const pool = new SshPool(cluster.hosts);
const rt = new HostRuntime(pool);
const host = cluster.hosts[1];
afterAll(() => pool.close());

function meta(dir: string): RunMeta {
  return {
    job: 'rt',
    runId: dir,
    specHash: '00000000',
    attempt: 1,
    host: host.name,
    nodeRank: 0,
    nnodes: 1,
    nprocPerNode: 1,
    hosts: [host.name],
    rdzvEndpoint: `${host.address}:1`,
    masterPort: 1,
    createdAt: new Date().toISOString(),
  };
}

describe('launch.sh hands its lock to the runner', () => {
  it('wait.sh called right after launch blocks until the run ends (5 launches)', async () => {
    for (let i = 0; i < 5; i++) {
      const dir = `rt.lock${Date.now().toString(36)}.${i}`;
      const t0 = Date.now();
      await rt.launch(host, {
        dir,
        rdzvAddr: host.address,
        meta: meta(dir),
        argv: ['sh', '-c', 'sleep 1.5; exit 7'],
        env: {},
      });
      const r = await rt.wait(host, dir, new AbortController().signal);
      const ms = Date.now() - t0;
      expect(r.stdout.trim(), `launch ${i}: wait returned after ${ms} ms`).toBe('7');
      expect(ms).toBeGreaterThanOrEqual(1400);
    }
  });

  it('a run dir whose lock is held by a runner that never wrote its pid is refused, not launched twice', async () => {
    const dir = `rt.held${Date.now().toString(36)}.1`;
    const runDir = posix.join(host.paths.runs, dir);
    // A stand-in for a runner left by a launch cut short: holds the lock, no pid file.
    await pool.exec(host.name, [
      'sh',
      '-c',
      'mkdir -p "$1" && cd "$1" && setsid flock lock sleep 4 </dev/null >/dev/null 2>&1 & sleep 0.3',
      'x',
      runDir,
    ]);
    await expect(
      rt.launch(host, { dir, rdzvAddr: host.address, meta: meta(dir), argv: ['true'], env: {} }),
    ).rejects.toThrow(/holds its lock but wrote no pid/);
    // Refused before writing anything: the live runner's files are untouched.
    const ls = await pool.exec(host.name, ['ls', runDir]);
    expect(ls.stdout.split('\n').filter(Boolean)).toEqual(['lock']);
  });
});

describe('archive', () => {
  it('moves a run dir under .deleted/ and prunes only entries archived more than keepDays ago', async () => {
    const runs = host.paths.runs;
    const old = `old.00000001.1.${Date.now() - 8 * 86_400_000}`;
    const recent = `recent.00000001.1.${Date.now() - 86_400_000}`;
    const odd = 'not-ours';
    await pool.exec(host.name, [
      'sh',
      '-c',
      'mkdir -p "$1/.deleted/$2/x" "$1/.deleted/$3" "$1/.deleted/$4" "$1/$5" && echo hi > "$1/$5/rank-0.log"',
      'x',
      runs,
      old,
      recent,
      odd,
      'arch.00000001.1',
    ]);
    await rt.archive(host, 'arch.00000001.1', 7);
    const ls = (await pool.exec(host.name, ['ls', '-1', `${runs}/.deleted`])).stdout.split('\n').filter(Boolean);
    expect(ls).not.toContain(old);
    expect(ls).toContain(recent);
    expect(ls).toContain(odd);
    const moved = ls.find((n) => n.startsWith('arch.00000001.1.'));
    expect(moved).toBeTruthy();
    expect((await pool.exec(host.name, ['cat', `${runs}/.deleted/${moved}/rank-0.log`])).stdout).toBe('hi\n');
    expect((await pool.exec(host.name, ['test', '-e', `${runs}/arch.00000001.1`])).code).toBe(1);
  });
});
