/**
 * The progress watcher (controller/loop/progress-watcher.ts) on in-memory hosts (FakeHosts,
 * answering progress.sh in the real script's format, with SshBackend's real parsing) and a
 * hand-driven clock: one exec per host per tick whatever the number of runs, nothing asked when
 * nothing runs, never two reads of one host at once, a host that does not answer backed off,
 * a run's progress from its lowest node rank, a half-written line waited out, a clean stop.
 */
import { describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import type { RunPart } from '../../controller/api/run.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import type { ExecResult } from '../../controller/backends/ssh/pool.ts';
import type { RuntimeScript } from '../../controller/backends/ssh/transport.ts';
import { progressTargets } from '../../controller/core/live-progress.ts';
import { type ProgressUpdate, ProgressWatcher } from '../../controller/loop/progress-watcher.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { metaFor, runOf } from '../support/run-fixtures.ts';
import { CLUSTER, HOSTS } from './job-fixtures.ts';

const T0 = Date.parse('2026-03-01T10:00:00.000Z');

async function rig() {
  const clock = { ms: T0 };
  const fake = new FakeHosts(HOSTS, { now: () => clock.ms, cluster: CLUSTER });
  const rt = new SshBackend(fake);
  const parts: RunPart[] = [];
  const down = new Set<string>();
  const failed: string[] = [];
  const updates: ProgressUpdate[] = [];
  const log = memoryLogger();
  const hostOf = (n: string) => HOSTS.find((h) => h.name === n);
  const w = new ProgressWatcher({
    runtime: rt,
    host: hostOf,
    targets: () =>
      progressTargets(
        parts,
        (job) => ({ phase: 'Running', runId: `${job}-abcd1234-a1` }),
        () => false,
      ),
    unreachable: (h) => down.has(h.name),
    failed: (h) => void failed.push(h.name),
    onProgress: (u) => void updates.push(u),
    log,
    now: () => clock.ms,
  });
  /** A run of `job` on `hosts` (node rank = index), launched and observed as the controller would. */
  const launch = async (job: string, hosts: string[]) => {
    const { dir } = runOf(hosts[0], job);
    for (const [i, hn] of hosts.entries()) {
      const meta = metaFor(hn, job, 'abcd1234', 1, { nodeRank: i, nnodes: hosts.length, hosts });
      await rt.launch(hostOf(hn)!, { dir, rdzvAddr: '10.0.0.10', meta, argv: ['torchrun'], ugroEnv: {}, jobEnv: {} });
    }
    parts.length = 0;
    for (const h of HOSTS) parts.push(...(await rt.observe(h)).parts);
    return dir;
  };
  const reads = () => fake.calls.filter((c) => c.op === 'run' && c.script === 'progress');
  return { clock, fake, rt, parts, down, failed, updates, log, w, launch, reads };
}

describe('the progress watcher on in-memory hosts', () => {
  it('one exec per host per tick however many runs; then only the runs whose line changed', async () => {
    const r = await rig();
    const dirs: Record<string, string> = {};
    for (let i = 0; i < 30; i++) {
      const hn = HOSTS[i % 3].name;
      dirs[`j${i}`] = await r.launch(`j${i}`, [hn]);
    }
    for (let i = 0; i < 30; i++) r.fake.writeMetrics(HOSTS[i % 3].name, dirs[`j${i}`], { step: i, loss: 1 });
    await r.w.tick();
    expect(r.reads().map((c) => c.host)).toEqual(HOSTS.map((h) => h.name));
    expect(r.updates).toHaveLength(30);
    expect(r.updates.find((u) => u.job === 'j7')).toMatchObject({ runId: 'j7-abcd1234-a1', metrics: { step: 7 } });
    // Nothing changed: three execs again, no update.
    r.updates.length = 0;
    await r.w.tick();
    expect(r.reads()).toHaveLength(6);
    expect(r.updates).toEqual([]);
    r.fake.writeMetrics(HOSTS[1].name, dirs.j4, { step: 40, loss: 0.5 });
    await r.w.tick();
    expect(r.reads()).toHaveLength(9);
    expect(r.updates.map((u) => [u.job, u.metrics])).toEqual([['j4', { step: 40, loss: 0.5 }]]);
    expect(r.w.stats).toMatchObject({ ticks: 3, reads: 9, updates: 31 });
  });

  it('nothing runs: a tick asks no host', async () => {
    const r = await rig();
    for (let i = 0; i < 5; i++) await r.w.tick();
    expect(r.fake.calls.filter((c) => c.op === 'run')).toEqual([]);
    // A run that ended is not read either.
    const dir = await r.launch('done', ['gpu1']);
    r.fake.endRun('gpu1', dir, 0);
    r.parts.length = 0;
    for (const h of HOSTS) r.parts.push(...(await r.rt.observe(h)).parts);
    await r.w.tick();
    expect(r.reads()).toEqual([]);
  });

  it('never two reads of one host at once: a slow host is skipped until its read answers', async () => {
    const r = await rig();
    const dir = await r.launch('slow', ['gpu1']);
    await r.launch('fast', ['gpu2']);
    let release!: () => void;
    const held = new Promise<void>((ok) => {
      release = ok;
    });
    const run = r.fake.run.bind(r.fake);
    r.fake.run = async (host: Host, script: RuntimeScript, args, opts): Promise<ExecResult> => {
      const res = run(host, script, args, opts);
      if (script === 'progress' && host.name === 'gpu1') await held;
      return res;
    };
    r.fake.writeMetrics('gpu1', dir, { step: 1 });
    const first = r.w.tick();
    // (gpu2's read of this tick answers; gpu1's is held.)
    await new Promise((ok) => setImmediate(ok));
    await r.w.tick();
    await r.w.tick();
    expect(r.reads().filter((c) => c.host === 'gpu1')).toHaveLength(1);
    expect(r.reads().filter((c) => c.host === 'gpu2')).toHaveLength(3);
    release();
    await first;
    expect(r.updates.map((u) => u.job)).toEqual(['slow']);
    await r.w.tick();
    expect(r.reads().filter((c) => c.host === 'gpu1')).toHaveLength(2);
  });

  it('a host liveness has down is not asked; a failed read backs off 2 s, doubling, and is reported', async () => {
    const r = await rig();
    await r.launch('a', ['gpu1']);
    r.down.add('gpu1');
    await r.w.tick();
    expect(r.reads()).toEqual([]);
    r.down.delete('gpu1');
    r.fake.setReachable('gpu1', false);
    await r.w.tick();
    expect(r.failed).toEqual(['gpu1']);
    expect(r.log.lines.filter((l) => l.level === 'warn').map((l) => l.fields?.host)).toEqual(['gpu1']);
    const askedAt: number[] = [];
    for (let s = 1; s <= 8; s++) {
      r.clock.ms = T0 + s * 1000;
      const before = r.reads().length;
      await r.w.tick();
      if (r.reads().length > before) askedAt.push(s);
    }
    // Failed at 0: again at 2 s (failed), at 2 + 4 = 6 s (failed); next at 6 + 8.
    expect(askedAt).toEqual([2, 6]);
    expect(r.failed).toEqual(['gpu1', 'gpu1', 'gpu1']);
    r.fake.setReachable('gpu1', true);
    r.clock.ms = T0 + 14_000;
    await r.w.tick();
    expect(r.log.lines.at(-1)).toMatchObject({ msg: 'progress read on host again', fields: { host: 'gpu1' } });
    // Asked at 0, 2, 6 and 14 s; answering again, it is asked every tick.
    r.clock.ms += 1000;
    await r.w.tick();
    expect(r.reads()).toHaveLength(5);
  });

  it("a run's progress is its lowest node rank's line; another node's only while rank 0 has none", async () => {
    const r = await rig();
    const dir = await r.launch('two', ['gpu1', 'gpu2']);
    r.fake.writeMetrics('gpu2', dir, { step: 3 });
    await r.w.tick();
    expect(r.updates.map((u) => [u.host, u.metrics.step])).toEqual([['gpu2', 3]]);
    r.fake.writeMetrics('gpu1', dir, { step: 5 });
    r.fake.writeMetrics('gpu2', dir, { step: 6 });
    await r.w.tick();
    r.fake.writeMetrics('gpu2', dir, { step: 7 });
    await r.w.tick();
    expect(r.updates.map((u) => [u.host, u.metrics.step])).toEqual([
      ['gpu2', 3],
      ['gpu1', 5],
    ]);
  });

  it('a half-written line gives no update; the rest of it, once written, does', async () => {
    const r = await rig();
    const dir = await r.launch('half', ['gpu1']);
    r.fake.writeMetrics('gpu1', dir, { step: 1 });
    await r.w.tick();
    r.fake.writeRunDir('gpu1', dir, { 'metrics.jsonl': '{"step":1}\n{"step":2,"lo' });
    await r.w.tick();
    expect(r.updates.map((u) => u.metrics)).toEqual([{ step: 1 }]);
    r.fake.writeRunDir('gpu1', dir, { 'metrics.jsonl': '{"step":1}\n{"step":2,"loss":0.1}\n' });
    await r.w.tick();
    expect(r.updates.map((u) => u.metrics)).toEqual([{ step: 1 }, { step: 2, loss: 0.1 }]);
  });

  it('stop: a read in flight is cut off and gives nothing; later ticks read nothing', async () => {
    const r = await rig();
    const dir = await r.launch('a', ['gpu1']);
    r.fake.writeMetrics('gpu1', dir, { step: 1 });
    let aborted = false;
    r.fake.run = (_h, _s, _a, opts) =>
      new Promise<ExecResult>((ok) =>
        opts?.signal?.addEventListener('abort', () => {
          aborted = true;
          ok({ code: null, signal: null, stdout: '', stderr: '', durationMs: 0 });
        }),
      );
    const inFlight = r.w.tick();
    await r.w.stop();
    await inFlight;
    expect(aborted).toBe(true);
    expect(r.updates).toEqual([]);
    await r.w.tick();
    expect(r.w.stats.ticks).toBe(1);
  });
});
