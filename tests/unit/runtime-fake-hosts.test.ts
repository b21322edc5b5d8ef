/**
 * FakeHosts' test controls, through SshBackend (so through the real parser): what a controller
 * test can make a host do. The scripts' behaviour itself is pinned against the real scripts in
 * fake-agrees.test.ts; here: unreachable hosts, health, failing launches, ranks and exits, a
 * vanished runner, hostile run dirs, waits and follows, the injected clock and the call record.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import { HostError } from '../../controller/backends/errors.ts';
import { LEASE_FILE, SshBackend } from '../../controller/backends/ssh/backend.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { localHost } from '../support/local-transport.ts';
import { REJECTED_NAME, runOf } from '../support/run-fixtures.ts';

function setup() {
  const root = mkdtempSync(join(tmpdir(), 'ugro-fake-'));
  const gpu1: Host = { ...localHost(join(root, 'a'), 'gpu1'), gpus: [{ model: 'RTX 4070', vramGb: 12 }] };
  const gpu2 = localHost(join(root, 'b'), 'gpu2');
  let now = 1_800_000_000_000;
  const clock = { now: () => now, advance: (ms: number) => (now += ms) };
  const fake = new FakeHosts([gpu1, gpu2], { now: clock.now });
  const rt = new SshBackend(fake);
  const launch = (host: Host, job: string, over: { checkPort?: number } = {}) => {
    const r = runOf(host.name, job);
    return rt
      .launch(host, {
        dir: r.dir,
        rdzvAddr: '10.0.0.1',
        meta: r.meta,
        argv: ['python3', '-m', 'torch.distributed.run', 'train.py'],
        ugroEnv: { UGRO_RUN_ID: r.runId },
        jobEnv: { LR: '0.1' },
        ...over,
      })
      .then((res) => ({ ...r, ...res }));
  };
  return { root, gpu1, gpu2, clock, fake, rt, launch };
}

describe('FakeHosts', () => {
  it('launch records argv and env; ranks start and exit; the run ends with its code and times', async () => {
    const { gpu1, fake, rt, launch, clock } = setup();
    const a = await launch(gpu1, 'train');
    expect(a.existed).toBe(false);
    expect(fake.launchOf('gpu1', a.dir)).toMatchObject({
      argv: ['python3', '-m', 'torch.distributed.run', 'train.py'],
      ugroEnv: { UGRO_RUN_ID: a.runId },
      jobEnv: { LR: '0.1' },
      rdzvAddr: '10.0.0.1',
    });
    fake.startRanks('gpu1', a.dir, [
      { rank: 2, localRank: 0 },
      { rank: 3, localRank: 1 },
    ]);
    clock.advance(5000);
    fake.endRank('gpu1', a.dir, 3, 1, ['Traceback', 'ValueError: nan']);
    fake.writeMetrics('gpu1', a.dir, { step: 10, loss: 2.5 });
    let [p] = (await rt.observe(gpu1)).parts;
    expect(p).toMatchObject({
      alive: true,
      launchedAtMs: 1_800_000_000_000,
      metrics: { step: 10, loss: 2.5 },
      ranks: [
        { rank: 2, localRank: 0 },
        { rank: 3, localRank: 1, exitCode: 1, exitedAt: 1_800_000_005_000, logTail: ['Traceback', 'ValueError: nan'] },
      ],
    });
    clock.advance(1000);
    fake.endRun('gpu1', a.dir, 1, { 2: 143 });
    [p] = (await rt.observe(gpu1)).parts;
    expect(p).toMatchObject({ alive: false, exitCode: 1, finishedAtMs: 1_800_000_006_000 });
    expect(p.ranks.map((r) => r.exitCode)).toEqual([143, 1]);
    expect(fake.isAlive('gpu1', a.dir)).toBe(false);
  });

  it('unreachable: run and upload reject with HostError timeout, pending waits too, probe is NotReady', async () => {
    const { gpu1, gpu2, fake, rt, launch } = setup();
    const a = await launch(gpu1, 'train');
    const waiting = rt.wait(gpu1, a.dir, new AbortController().signal);
    fake.setReachable('gpu1', false);
    await expect(waiting).rejects.toMatchObject({ kind: 'timeout' });
    const err = await rt.observe(gpu1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostError);
    expect(err).toMatchObject({ kind: 'timeout', host: 'gpu1' });
    await expect(rt.syncScripts(gpu1, '/nonexistent', 'abcd1234')).rejects.toMatchObject({ kind: 'timeout' });
    const h = await rt.probe(gpu1);
    expect(h).toMatchObject({ status: 'NotReady', reasons: [expect.stringMatching(/^ssh: no answer from/)] });
    expect((await rt.observe(gpu2)).parts).toEqual([]);
    fake.setReachable('gpu1', true);
    expect((await rt.observe(gpu1)).parts.map((p) => p.alive)).toEqual([true]);
  });

  it("probe: Ready with the inventory's GPUs; setHealth gives what health's judge makes of it", async () => {
    const { gpu1, fake, rt } = setup();
    expect(await rt.probe(gpu1)).toMatchObject({ status: 'Ready', gpus: [{ name: 'NVIDIA RTX 4070' }] });
    fake.setHealth('gpu1', { gpus: 'absent' });
    expect(await rt.probe(gpu1)).toMatchObject({
      status: 'NotReady',
      reasons: ['nvidia-smi not found: no NVIDIA driver'],
    });
    fake.setHealth('gpu1', { gpus: { failing: "couldn't communicate with the NVIDIA driver" } });
    expect((await rt.probe(gpu1)).reasons[0]).toMatch(/nvidia-smi failed/);
    fake.setHealth('gpu1', { torch: null, diskFreeGiB: 1 });
    expect((await rt.probe(gpu1)).reasons).toEqual([
      expect.stringMatching(/torch not installed/),
      expect.stringMatching(/only 1.0 GiB free/),
    ]);
  });

  it('failNextLaunches fails that many launches with its message; a listening port refuses a launch', async () => {
    const { gpu1, fake, launch, rt } = setup();
    fake.failNextLaunches('gpu1', 1, 'setsid: command not found');
    await expect(launch(gpu1, 'train')).rejects.toThrow(/setsid: command not found/);
    fake.listen('gpu1', 29500);
    expect(await rt.listeningPorts(gpu1)).toEqual(new Set([29500]));
    await expect(launch(gpu1, 'train', { checkPort: 29500 })).rejects.toMatchObject({ kind: 'port-busy' });
    fake.unlisten('gpu1', 29500);
    expect(await launch(gpu1, 'train', { checkPort: 29500 })).toMatchObject({ existed: false });
  });

  it('a vanished runner: not alive, no exit code; waits end; stop records 137', async () => {
    const { gpu1, fake, rt, launch } = setup();
    const a = await launch(gpu1, 'train');
    fake.startRanks('gpu1', a.dir, 1);
    const waiting = rt.wait(gpu1, a.dir, new AbortController().signal);
    fake.vanish('gpu1', a.dir);
    await waiting;
    const [p] = (await rt.observe(gpu1)).parts;
    expect(p.alive).toBe(false);
    expect(p.exitCode).toBeUndefined();
    await rt.stop(gpu1, { dir: a.dir, runId: a.runId, graceSeconds: 5, reason: 'runner-vanished' });
    expect((await rt.observe(gpu1)).parts[0]).toMatchObject({ exitCode: 137, stopReason: 'runner-vanished' });
  });

  it('onTerm: a run that ignores TERM is killed (killed, 137); by default it exits 143', async () => {
    const { gpu1, fake, rt, launch } = setup();
    const a = await launch(gpu1, 'a');
    fake.onTerm('gpu1', a.dir, { ignore: true });
    expect(await rt.stop(gpu1, { dir: a.dir, runId: a.runId, graceSeconds: 1, reason: 'cancelled' })).toEqual({
      remaining: 0,
      killed: true,
    });
    const b = await launch(gpu1, 'b');
    expect(await rt.stop(gpu1, { dir: b.dir, runId: b.runId, graceSeconds: 1, reason: 'suspended' })).toEqual({
      remaining: 0,
      killed: false,
    });
    const parts = (await rt.observe(gpu1)).parts;
    expect(parts.map((p) => [p.dir, p.exitCode, p.stopReason])).toEqual([
      [a.dir, 137, 'cancelled'],
      [b.dir, 143, 'suspended'],
    ]);
  });

  it('writeRunDir: hostile run dirs are rejected by the real parser', async () => {
    const { gpu1, fake, rt } = setup();
    fake.writeRunDir('gpu1', 'evil.abcd1234.1', {
      'meta.json': JSON.stringify({ ...runOf('gpu1', 'evil').meta, job: '../../x' }),
    });
    fake.writeRunDir('gpu1', 'x y', { 'meta.json': '{}' });
    fake.writeRunDir('gpu1', 'half.abcd1234.1', { 'meta.json': '{"job":' });
    expect((await rt.observe(gpu1)).rejected).toEqual([
      { dir: 'evil.abcd1234.1', why: expect.stringMatching(/^meta\.json: job:/) },
      { dir: 'half.abcd1234.1', why: 'meta.json is not JSON (half written?)' },
      { dir: 'x?y', why: REJECTED_NAME },
    ]);
  });

  it('wait ends when the run does, or at once on abort; follow streams appends until the run ends', async () => {
    const { gpu1, fake, rt, launch } = setup();
    const a = await launch(gpu1, 'train');
    fake.startRanks('gpu1', a.dir, 1);
    const ac = new AbortController();
    const aborted = rt.wait(gpu1, a.dir, ac.signal);
    ac.abort();
    await aborted;
    fake.appendLog('gpu1', a.dir, 0, 'epoch 1\n');
    const got: string[] = [];
    const following = rt.followLog(gpu1, a.dir, 0, 0, (b) => got.push(b.toString()));
    fake.appendLog('gpu1', a.dir, 0, 'epoch 2\n');
    fake.endRun('gpu1', a.dir, 0);
    expect(await following).toBe(16);
    expect(got.join('')).toBe('epoch 1\nepoch 2\n');
    expect(await rt.readLog(gpu1, a.dir, 0, 1)).toEqual({ text: 'epoch 2\n', offset: 16 });
    await rt.wait(gpu1, a.dir, new AbortController().signal);
  });

  it('leases by the injected clock; scripts sync uploads the tree once; every call is recorded', async () => {
    const { root, gpu1, fake, rt, clock } = setup();
    expect(await rt.lease(gpu1, 'a', 30)).toEqual({ held: true, owner: 'a', expiresInSeconds: 30 });
    clock.advance(10_000);
    expect(await rt.lease(gpu1, 'b', 30)).toEqual({ held: false, owner: 'a', expiresInSeconds: 20 });
    clock.advance(21_000);
    expect(await rt.lease(gpu1, 'b', 30)).toEqual({ held: true, owner: 'b', expiresInSeconds: 30 });
    expect(fake.readFile('gpu1', join(gpu1.paths.runs, LEASE_FILE))).toMatch(/^owner=b\nexpires=\d+\n$/);

    const src = join(root, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'train.py'), 'print(1)\n');
    expect(await rt.syncScripts(gpu1, src, 'feed0001')).toBe(true);
    expect(await rt.syncScripts(gpu1, src, 'feed0001')).toBe(false);
    expect(fake.readFile('gpu1', join(gpu1.paths.scripts, 'train.py'))).toBe('print(1)\n');
    expect(fake.calls.filter((c) => c.op === 'upload')).toHaveLength(1);
    expect(fake.calls.map((c) => c.script ?? c.op)).toEqual([
      'lease',
      'lease',
      'lease',
      'scripts-hash',
      'upload',
      'scripts-hash',
      'scripts-hash',
    ]);
  });
});
