/**
 * Test helpers (not a stand-in): the host runtime's core scenarios, written once against a
 * "world" (a SshBackend over some transport plus a way to act as torchrun's ranks would), and
 * run over FakeHosts, over the real scripts on this machine (LocalTransport) and over SSH on the
 * lab. Each step's result goes into a transcript with pids and times reduced to their type, so
 * tests/unit/fake-agrees.test.ts can ask that the fake and the real scripts give the same one,
 * and every step also asserts what must hold in any world (agreeing on a wrong answer fails).
 */
import { expect } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import type { RunPart } from '../../controller/api/run.ts';
import type { ObserveResult } from '../../controller/backends/api.ts';
import { HostError } from '../../controller/backends/errors.ts';
import type { SshBackend } from '../../controller/backends/ssh/backend.ts';
import type { FakeHosts } from './fake-hosts.ts';
import { runOf, standinArgv } from './run-fixtures.ts';

export interface World {
  name: string;
  rt: SshBackend;
  host: Host;
  /** torchrun's argv for a run of `ranks` ranks (the fake ignores it). */
  argv(dir: string, ranks: number, ignoreTerm: boolean): Promise<string[]>;
  /** After a launch: resolves once `ranks` ranks have started (and says how the run takes SIGTERM). */
  ranksStarted(dir: string, ranks: number, ignoreTerm: boolean): Promise<void>;
  /** One rank prints `log` and exits with `code`; resolves once its exit is recorded. */
  endRank(dir: string, rank: number, code: number, log: string[]): Promise<void>;
  /** Every rank still running exits with `code`, then torchrun does; resolves once the runner recorded it. */
  endRun(dir: string, code: number): Promise<void>;
  /** The runner dies (SIGKILL) without recording anything; its ranks live on. */
  vanish(dir: string): Promise<void>;
  writeRunDir(dir: string, files: Record<string, string>): Promise<void>;
  writeMetrics(dir: string, line: string): Promise<void>;
  /** Something listens on a TCP port of the host until close(). */
  listen(): Promise<{ port: number; close: () => Promise<void> }>;
  /** A local directory to deploy as scripts. */
  scriptsDir: string;
}

type Step = [step: string, result: unknown];

const typeOf = (v: unknown) => (v === undefined ? undefined : typeof v);

/** A part with pids and times reduced to their type. */
export function normPart(p: RunPart) {
  return {
    ...p,
    pid: typeOf(p.pid),
    launchedAtMs: typeOf(p.launchedAtMs),
    finishedAtMs: typeOf(p.finishedAtMs),
    ranks: p.ranks.map((r) => ({
      ...r,
      pid: typeOf(r.pid),
      exitedAt: typeOf(r.exitedAt),
      heartbeatAgeS: typeOf(r.heartbeatAgeS),
      // Running or sleeping is the scheduler's choice of the moment; stopped (T) is not.
      procState: r.procState === undefined ? undefined : r.procState === 'T' ? 'T' : 'live',
    })),
  };
}

export function normObserve(r: ObserveResult) {
  return {
    parts: [...r.parts].sort((a, b) => (a.dir < b.dir ? -1 : 1)).map(normPart),
    rejected: [...r.rejected].sort((a, b) => (a.dir < b.dir ? -1 : 1)),
  };
}

/** The core scenario; returns the transcript. */
export async function coreScenario(w: World, job = 'rt'): Promise<Step[]> {
  const { rt, host } = w;
  const steps: Step[] = [];
  const step = (name: string, result: unknown) => steps.push([name, result]);
  const observe = async (j = job) => normObserve(await rt.observe(host, j));
  const launch = async (
    dir: string,
    meta: ReturnType<typeof runOf>['meta'],
    ranks: number,
    o: { ignoreTerm?: boolean; checkPort?: number } = {},
  ) =>
    rt.launch(host, {
      dir,
      rdzvAddr: '127.0.0.1',
      meta,
      argv: await w.argv(dir, ranks, o.ignoreTerm ?? false),
      ugroEnv: { UGRO_RUN_ID: meta.runId, UGRO_JOB: meta.job },
      jobEnv: { TRAIN_FLAVOUR: 'plain vanilla' },
      ...(o.checkPort !== undefined ? { checkPort: o.checkPort } : {}),
    });

  // A: two ranks; one fails; stopped as a gang.
  const a = runOf(host.name, job, 'aaaa0001');
  const la = await launch(a.dir, a.meta, 2);
  expect(la.existed).toBe(false);
  step('launch A', { ...la, pid: typeof la.pid });
  await w.ranksStarted(a.dir, 2, false);
  let o = await observe();
  expect(o.parts).toHaveLength(1);
  expect(o.parts[0]).toMatchObject({ dir: a.dir, alive: true, meta: a.meta });
  expect(o.parts[0].ranks.map((r) => r.rank)).toEqual([0, 1]);
  step('observe A alive', o);

  await w.endRank(a.dir, 1, 3, ['boom at step 7']);
  o = await observe();
  expect(o.parts[0].alive).toBe(true);
  expect(o.parts[0].ranks[1]).toMatchObject({ rank: 1, exitCode: 3, logTail: ['boom at step 7'] });
  step('observe A rank 1 exited 3', o);

  await w.writeMetrics(a.dir, '{"step":7,"loss":0.25,"nested":{"x":1}}');
  o = await observe();
  expect(o.parts[0].metrics).toEqual({ step: 7, loss: 0.25 });
  step('observe A metrics', o);

  const again = await launch(a.dir, a.meta, 2);
  expect(again).toEqual({ pid: la.pid, existed: true });
  step('relaunch A', { ...again, pid: typeof again.pid });

  const sa = await rt.stop(host, { dir: a.dir, runId: a.runId, graceSeconds: 5, reason: 'gang-failed' });
  expect(sa).toEqual({ remaining: 0, killed: false });
  step('stop A', sa);
  o = await observe();
  expect(o.parts[0]).toMatchObject({ alive: false, exitCode: 143, stopReason: 'gang-failed' });
  expect(o.parts[0].ranks.map((r) => r.exitCode)).toEqual([143, 3]);
  step('observe A stopped', o);
  await rt.wait(host, a.dir, new AbortController().signal);

  const log = await rt.readLog(host, a.dir, 1);
  expect(log).toEqual({ text: 'boom at step 7\n', offset: 15 });
  step('read log A rank 1', log);
  step('read log A rank 1, last line', await rt.readLog(host, a.dir, 1, 1));
  const got: Buffer[] = [];
  const end = await rt.followLog(host, a.dir, 1, 5, (b) => got.push(b));
  expect([end, Buffer.concat(got).toString()]).toEqual([15, 'at step 7\n']);
  step('follow log A rank 1 from byte 5', [end, Buffer.concat(got).toString()]);

  // B: ignores SIGTERM: killed after its grace; nothing recorded an exit code, so stop says 137.
  const b = runOf(host.name, job, 'bbbb0002');
  await launch(b.dir, b.meta, 1, { ignoreTerm: true });
  await w.ranksStarted(b.dir, 1, true);
  const sb = await rt.stop(host, { dir: b.dir, runId: b.runId, graceSeconds: 0.4, reason: 'cancelled' });
  expect(sb).toEqual({ remaining: 0, killed: true });
  step('stop B (ignores TERM)', sb);
  o = await observe();
  const pb = o.parts.find((p) => p.dir === b.dir);
  expect(pb).toMatchObject({ alive: false, exitCode: 137, stopReason: 'cancelled', finishedAtMs: 'number' });
  expect(pb?.ranks[0].exitCode).toBeUndefined();
  step('observe B killed', o);

  // C: ends by itself; a waiter started before returns when it does.
  const c = runOf(host.name, job, 'cccc0003');
  await launch(c.dir, c.meta, 1);
  await w.ranksStarted(c.dir, 1, false);
  let waited = false;
  const waiter = rt.wait(host, c.dir, new AbortController().signal).then(() => {
    waited = true;
  });
  await new Promise((r) => setTimeout(r, 300));
  expect(waited).toBe(false);
  await w.endRun(c.dir, 0);
  await waiter;
  o = await observe();
  const pc = o.parts.find((p) => p.dir === c.dir);
  expect(pc).toMatchObject({ alive: false, exitCode: 0, ranks: [{ rank: 0, exitCode: 0 }] });
  expect(pc?.stopReason).toBeUndefined();
  step('observe C done', o);

  // E: the runner vanishes (no exit code); its orphaned rank is still stopped by the marker.
  const e = runOf(host.name, job, 'eeee0005');
  await launch(e.dir, e.meta, 1);
  await w.ranksStarted(e.dir, 1, false);
  await w.vanish(e.dir);
  await rt.wait(host, e.dir, new AbortController().signal);
  o = await observe();
  const pe = o.parts.find((p) => p.dir === e.dir);
  expect(pe?.alive).toBe(false);
  expect(pe?.exitCode).toBeUndefined();
  step('observe E vanished', o);
  const se = await rt.stop(host, { dir: e.dir, runId: e.runId, graceSeconds: 5, reason: 'runner-vanished' });
  expect(se).toEqual({ remaining: 0, killed: false });
  o = await observe();
  expect(o.parts.find((p) => p.dir === e.dir)).toMatchObject({ exitCode: 137, ranks: [{ rank: 0, exitCode: 143 }] });
  step('observe E stopped', o);

  // Archive A: gone from observe, the others stay.
  await rt.archive(host, a.dir, Date.now());
  o = await observe();
  expect(o.parts.map((p) => p.dir)).toEqual([b.dir, c.dir, e.dir]);
  step('observe after archiving A', o);
  step(
    'stop of an archived dir',
    await rt.stop(host, { dir: a.dir, runId: a.runId, graceSeconds: 1, reason: 'deleted' }),
  );

  // A hostile run dir: a job forging a run of job "../../x".
  await w.writeRunDir(`${job}.dddd0004.1`, {
    'meta.json': JSON.stringify({ ...runOf(host.name, job, 'dddd0004').meta, job: '../../x' }),
    pid: '1\n',
  });
  o = await observe();
  expect(o.parts.map((p) => p.dir)).toEqual([b.dir, c.dir, e.dir]);
  expect(o.rejected).toEqual([{ dir: `${job}.dddd0004.1`, why: expect.stringMatching(/^meta\.json: job: /) }]);
  step('observe with a forged run dir', o);

  // A busy rendezvous port refuses the launch before anything exists.
  const l = await w.listen();
  try {
    expect((await rt.listeningPorts(host)).has(l.port)).toBe(true);
    const f = runOf(host.name, job, 'ffff0006');
    const err = await launch(f.dir, f.meta, 1, { checkPort: l.port }).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(err).toBeInstanceOf(HostError);
    expect((err as HostError).kind).toBe('port-busy');
    step('launch on a busy port', (err as HostError).kind);
  } finally {
    await l.close();
  }
  step('observe after the refused launch', await observe());

  // Leases: one owner at a time; release only by the owner.
  const lease = async (owner: string, release = false) => {
    const r = await rt.lease(host, owner, 60, release);
    return { ...r, expiresInSeconds: typeOf(r.expiresInSeconds) };
  };
  const o1 = `ctl-1 "quoted" $HOME 'x'`;
  step('lease: first acquire', await lease(o1));
  step('lease: renew', await lease(o1));
  step('lease: another controller', await lease('ctl-2'));
  step('lease: another controller releases', await lease('ctl-2', true));
  step('lease: owner releases', await lease(o1, true));
  step('lease: now the other one', await lease('ctl-2'));
  expect(steps.slice(-6).map(([, r]) => r)).toEqual([
    { held: true, owner: o1, expiresInSeconds: 'number' },
    { held: true, owner: o1, expiresInSeconds: 'number' },
    { held: false, owner: o1, expiresInSeconds: 'number' },
    { held: false, owner: o1, expiresInSeconds: 'number' },
    { held: false, expiresInSeconds: undefined },
    { held: true, owner: 'ctl-2', expiresInSeconds: 'number' },
  ]);
  step('observe with a lease file', await observe(''));

  // Scripts: uploaded when the marker differs, then not again.
  const hash = 'a1b2c3d4e5f6';
  step('sync scripts', [
    await rt.syncScripts(host, w.scriptsDir, hash),
    await rt.syncScripts(host, w.scriptsDir, hash),
  ]);
  expect(steps.at(-1)?.[1]).toEqual([true, false]);
  return steps;
}

/** The world over FakeHosts. */
export function fakeWorld(fake: FakeHosts, rt: SshBackend, host: Host, scriptsDir: string): World {
  let port = 45_000;
  return {
    name: 'FakeHosts',
    rt,
    host,
    scriptsDir,
    argv: async (_dir, ranks) => ['torchrun-standin', String(ranks)],
    ranksStarted: async (dir, ranks, ignoreTerm) => {
      fake.startRanks(host.name, dir, ranks);
      if (ignoreTerm) fake.onTerm(host.name, dir, { ignore: true });
    },
    endRank: async (dir, rank, code, log) => fake.endRank(host.name, dir, rank, code, log),
    endRun: async (dir, code) => fake.endRun(host.name, dir, code),
    vanish: async (dir) => fake.vanish(host.name, dir),
    writeRunDir: async (dir, files) => fake.writeRunDir(host.name, dir, files),
    writeMetrics: async (dir, line) => fake.writeMetrics(host.name, dir, line),
    listen: async () => {
      const p = port++;
      fake.listen(host.name, p);
      return { port: p, close: async () => fake.unlisten(host.name, p) };
    },
  };
}

export type ShellExec = (argv: string[]) => Promise<{ code: number | null; stdout: string; stderr: string }>;

/**
 * A world where the real scripts run (this machine, or a lab host over SSH): `exec` runs an
 * argv there; the stand-in torchrun's control files live under `ctlRoot` there.
 */
export function shellWorld(o: {
  name: string;
  rt: SshBackend;
  host: Host;
  exec: ShellExec;
  ctlRoot: string;
  scriptsDir: string;
  listen: World['listen'];
}): World {
  const runDir = (dir: string) => `${o.host.paths.runs}/${dir}`;
  const ctl = (dir: string) => `${o.ctlRoot}/${dir}`;
  const sh = async (script: string, ...args: string[]) => {
    const r = await o.exec(['sh', '-c', script, 'test', ...args]);
    if (r.code !== 0) throw new Error(`${o.name}: ${script} failed (exit ${r.code}): ${r.stderr}`);
    return r.stdout;
  };
  const until = async (what: string, check: () => Promise<boolean>) => {
    const deadline = Date.now() + 20_000;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`${o.name}: timed out waiting until ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  /** Write CTL/NAME atomically. */
  const put = (dir: string, name: string, lines: string[]) =>
    sh(
      'f=$1/$2; shift 2; mkdir -p "${f%/*}"; ' +
        'if [ $# -gt 0 ]; then printf "%s\\n" "$@"; fi >"$f.tmp" && mv "$f.tmp" "$f"',
      ctl(dir),
      name,
      ...lines,
    );
  const exists = async (path: string) => (await o.exec(['test', '-e', path])).code === 0;
  return {
    name: o.name,
    rt: o.rt,
    host: o.host,
    scriptsDir: o.scriptsDir,
    argv: async (dir, ranks, ignoreTerm) => {
      await sh('mkdir -p "$1"', ctl(dir));
      return standinArgv(ctl(dir), ranks, ignoreTerm);
    },
    ranksStarted: (dir, ranks) =>
      until(`${ranks} ranks of ${dir} started`, async () => {
        const out = await sh('cat "$1" 2>/dev/null || true', `${runDir(dir)}/ranks`);
        return out.split('\n').filter(Boolean).length >= ranks;
      }),
    endRank: async (dir, rank, code, log) => {
      await put(dir, `log-${rank}`, log);
      await put(dir, `exit-${rank}`, [String(code)]);
      await until(`rank ${rank} of ${dir} exited`, () => exists(`${runDir(dir)}/rank-${rank}.exit`));
    },
    endRun: async (dir, code) => {
      await put(dir, 'exit-run', [String(code)]);
      const ranks = (await sh('cat "$1"', `${runDir(dir)}/ranks`)).split('\n').filter(Boolean);
      for (const line of ranks) {
        const r = line.split(' ')[0];
        if (!(await exists(`${ctl(dir)}/exit-${r}`))) await put(dir, `exit-${r}`, [String(code)]);
      }
      await until(`${dir} recorded its exit code`, () => exists(`${runDir(dir)}/exit_code`));
    },
    vanish: async (dir) => {
      await sh('kill -KILL "$(cat "$1/pid")"', runDir(dir));
      await until(`the runner of ${dir} is gone`, async () => {
        const r = await o.exec(['sh', '-c', 'kill -0 "$(cat "$1/pid")" 2>/dev/null', 'test', runDir(dir)]);
        return r.code !== 0;
      });
    },
    writeRunDir: async (dir, files) => {
      for (const [name, text] of Object.entries(files)) {
        await sh('mkdir -p "$1" && printf "%s" "$3" >"$1/$2"', runDir(dir), name, text);
      }
    },
    writeMetrics: async (dir, line) => {
      await sh('printf "%s\\n" "$2" >>"$1/metrics.jsonl"', runDir(dir), line);
    },
    listen: o.listen,
  };
}
