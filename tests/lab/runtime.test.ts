/**
 * The host runtime on a real host over SSH (SshTransport, the lab's gpu1): the core scenarios of
 * tests/support/runtime-scenarios.ts (the ones fake-agrees.test.ts runs over FakeHosts and over
 * the scripts on this machine) give the fake's transcript here too; the lock handoff between
 * launch.sh and its runner (a waiter that starts the moment launch returns never finds the lock
 * free); a pid-less runner's lock refuses a relaunch; archive prunes; a hostile grace runs nothing.
 * Everything lives in a directory of its own under the lab user's home.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import { SshTransport } from '../../controller/backends/ssh/transport.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { runOf } from '../support/run-fixtures.ts';
import { coreScenario, fakeWorld, shellWorld } from '../support/runtime-scenarios.ts';
import { labCluster } from './controller-harness.ts';

const cluster = labCluster();
const pool = new SshPool(cluster.hosts);
const lab = cluster.hosts[1];
const base = posix.join(lab.paths.home, `ugro-rt-${Date.now().toString(36)}`);
/** gpu1 with its runs and scripts in this test's own directory. */
const host: Host = {
  ...lab,
  paths: { ...lab.paths, runs: posix.join(base, 'runs'), scripts: posix.join(base, 'scripts') },
};
const rt = new SshBackend(new SshTransport(pool, cluster));
afterAll(async () => {
  await pool.exec(host.name, ['rm', '-rf', '--', base]);
  pool.close();
});

const exec = (argv: string[]) => pool.exec(host.name, argv);
const launchReq = (job: string, attempt: number, argv: string[]) => {
  const r = runOf(host.name, job, 'abcd1234', attempt);
  return { dir: r.dir, rdzvAddr: host.address, meta: r.meta, argv, ugroEnv: { UGRO_RUN_ID: r.runId }, jobEnv: {} };
};

describe('the core scenarios over SSH agree with FakeHosts', () => {
  it('same transcript as the fake', { timeout: 120_000 }, async () => {
    const local = mkdtempSync(join(tmpdir(), 'ugro-lab-rt-'));
    const scriptsDir = join(local, 'deploy');
    mkdirSync(scriptsDir);
    writeFileSync(join(scriptsDir, 'train.py'), 'print("hi")\n');
    const world = shellWorld({
      name: 'SshTransport',
      rt,
      host,
      exec,
      ctlRoot: posix.join(base, 'ctl'),
      scriptsDir,
      listen: async () => {
        const port = 40_000 + Math.floor(Math.random() * 10_000);
        const py =
          'import socket,sys,time; s=socket.socket(); ' +
          's.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(); time.sleep(60)';
        const r = await exec([
          'sh',
          '-c',
          'setsid python3 -c "$1" "$2" </dev/null >/dev/null 2>&1 & echo $!',
          'listen',
          py,
          String(port),
        ]);
        const pid = r.stdout.trim();
        for (let i = 0; i < 100 && !(await rt.listeningPorts(host)).has(port); i++) {
          await new Promise((res) => setTimeout(res, 50));
        }
        return { port, close: async () => void (await exec(['kill', pid])) };
      },
    });
    const real = await coreScenario(world);
    const fake = new FakeHosts([host]);
    const modelled = await coreScenario(fakeWorld(fake, new SshBackend(fake), host, scriptsDir));
    expect(modelled.map(([s]) => s)).toEqual(real.map(([s]) => s));
    for (const [i, [name, result]] of real.entries()) expect(modelled[i][1], name).toEqual(result);
  });
});

describe('launch.sh hands its lock to the runner', () => {
  it('wait.sh called right after launch blocks until the run ends (5 launches)', async () => {
    for (let i = 1; i <= 5; i++) {
      const req = launchReq('lock', i, ['sh', '-c', 'sleep 1.5; exit 7']);
      const t0 = Date.now();
      await rt.launch(host, req);
      await rt.wait(host, req.dir, new AbortController().signal);
      const ms = Date.now() - t0;
      expect(ms, `launch ${i}: wait returned after ${ms} ms`).toBeGreaterThanOrEqual(1400);
      const part = (await rt.observe(host, 'lock')).parts.find((p) => p.dir === req.dir);
      expect(part).toMatchObject({ alive: false, exitCode: 7 });
    }
  });

  it('a run dir whose lock is held by a runner that never wrote its pid is refused, not launched twice', async () => {
    const req = launchReq('held', 1, ['true']);
    const runDir = posix.join(host.paths.runs, req.dir);
    // A stand-in for a runner left by a launch cut short: holds the lock, no pid file.
    await exec([
      'sh',
      '-c',
      'mkdir -p "$1" && cd "$1" && setsid flock lock sleep 4 </dev/null >/dev/null 2>&1 & sleep 0.3',
      'x',
      runDir,
    ]);
    await expect(rt.launch(host, req)).rejects.toThrow(/holds its lock but wrote no pid/);
    // Refused before writing anything: the live runner's files are untouched.
    expect((await exec(['ls', runDir])).stdout.split('\n').filter(Boolean)).toEqual(['lock']);
  });
});

describe('archive', () => {
  it('moves a run dir under .deleted/ and prunes only entries archived more than keepDays ago', async () => {
    const runs = host.paths.runs;
    const now = Date.now();
    const old = `old.00000001.1.${now - 8 * 86_400_000}`;
    const recent = `recent.00000001.1.${now - 86_400_000}`;
    await exec([
      'sh',
      '-c',
      'mkdir -p "$1/.deleted/$2/x" "$1/.deleted/$3" "$1/.deleted/$4" "$1/$5" && echo hi > "$1/$5/rank-0.log"',
      'x',
      runs,
      old,
      recent,
      'not-ours',
      'arch.00000001.1',
    ]);
    await rt.archive(host, 'arch.00000001.1', now, 7);
    const ls = (await exec(['ls', '-1', `${runs}/.deleted`])).stdout.split('\n').filter(Boolean);
    expect(ls).not.toContain(old);
    expect(ls).toEqual(expect.arrayContaining([`arch.00000001.1.${now}`, 'not-ours', recent]));
    expect((await exec(['cat', `${runs}/.deleted/arch.00000001.1.${now}/rank-0.log`])).stdout).toBe('hi\n');
    expect((await exec(['test', '-e', `${runs}/arch.00000001.1`])).code).toBe(1);
  });
});

describe('stop.sh over SSH', () => {
  it('a grace that is awk or shell code is refused (exit 2) and runs nothing', async () => {
    const req = launchReq('grace', 1, ['sleep', '30']);
    await rt.launch(host, req);
    const pwned = posix.join(base, 'pwned');
    const runDir = posix.join(host.paths.runs, req.dir);
    for (const grace of [`0); system("touch ${pwned}"); print (0`, `$(touch ${pwned})`, `1; touch ${pwned}`]) {
      const res = await new SshTransport(pool, cluster).run(host, 'stop', [runDir, req.meta.runId, grace, 'cancelled']);
      expect(res.code).toBe(2);
      expect((await exec(['test', '-e', pwned])).code).toBe(1);
      expect((await exec(['test', '-e', `${runDir}/cancelled`])).code).toBe(1);
    }
    expect(await rt.stop(host, { dir: req.dir, runId: req.meta.runId, graceSeconds: 5, reason: 'cancelled' })).toEqual({
      remaining: 0,
      killed: false,
    });
  });
});
