/**
 * `ugro doctor -o json` on the lab, the real command (bin/ugro.mjs, dist/ rebuilt first): an all-reduce
 * figure for every host pair and every ordered pair reachable when all is well; a stand-in GPU with an
 * XID 79 in its kernel log and one with a degraded PCIe link make their hosts NotReady, naming why; a
 * host whose link is cut fails every pair with it, by name, while its peers keep their figure. Then
 * spec.preflight under a real controller: with gpu2 cut off its peers (the controller still reaches it)
 * a job waits PreflightFailed naming gpu2's pairs, leaves no listener behind, and starts once healed.
 * Every fault is undone in finally and afterAll.
 */
import { execFile, execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DoctorReport } from '../../controller/backends/doctor.ts';
import {
  newJobsDir,
  readStatus,
  startController,
  stopController,
  ugro,
  waitFor,
  waitPhase,
  writeJob,
} from './controller-harness.ts';
import { LAB_CLUSTER_FILE, lab, labAvailable, labNominal, ROOT } from './helpers.ts';

labAvailable();
const HOSTS = ['gpu-master', 'gpu1', 'gpu2'];

function doctor(): Promise<{ code: number; report: DoctorReport; err: string }> {
  return new Promise((done, fail) => {
    execFile(
      'node',
      ['bin/ugro.mjs', '--cluster', LAB_CLUSTER_FILE, 'doctor', '-o', 'json'],
      { cwd: ROOT, timeout: 60_000 },
      (e, out, err) => {
        const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
        try {
          done({ code, report: JSON.parse(String(out)) as DoctorReport, err: String(err) });
        } catch (x) {
          fail(new Error(`ugro doctor exit ${code}: ${out}\n${err}`, { cause: x }));
        }
      },
    );
  });
}
const host = (r: DoctorReport, name: string) => r.hosts.find((h) => h.name === name)!;

beforeAll(() => {
  labNominal();
  for (const h of HOSTS) lab('gpu', h, 'ok');
});
afterAll(() => {
  lab('heal', 'gpu2');
  for (const h of HOSTS) lab('gpu', h, 'ok');
});

describe('ugro doctor on the lab', () => {
  it('all well: exit 0, every ordered pair reachable, an all-reduce figure for every pair', async () => {
    const { code, report: r, err } = await doctor();
    expect(r.checks.filter((c) => c.level === 'fail')).toEqual([]);
    expect([code, r.ok], err).toEqual([0, true]);
    expect(r.pairs).toHaveLength(6);
    expect(r.pairs.every((p) => p.result === 'ok')).toBe(true);
    expect(r.allreduce.backend).toBe('gloo');
    expect(r.allreduce.pairs.map((p) => `${p.a}-${p.b}`)).toEqual(['gpu-master-gpu1', 'gpu-master-gpu2', 'gpu1-gpu2']);
    for (const p of r.allreduce.pairs) {
      expect(p.error).toBeUndefined();
      expect(p.latencyUs).toBeGreaterThan(0);
      expect(p.busbwGBps).toBeGreaterThan(0);
    }
    for (const h of r.hosts) {
      expect(h.iface).toBe('eth0');
      expect(h.versions).toMatchObject({ driver: '570.133.07', cuda: '12.8', nccl: 'none', python: '3.11.2' });
      expect(h.gpus[0].link).toMatchObject({ width: 16, widthMax: 16 });
      expect(h.checkpointDisk?.freeGiB).toBeGreaterThan(0);
    }
    expect(r.skew).toEqual([]);
  });

  it('an XID 79 on gpu1 and a degraded PCIe link on gpu2: both NotReady with the reason, exit 1', async () => {
    try {
      lab('gpu', 'gpu1', 'xid');
      lab('gpu', 'gpu2', 'pcie-degraded');
      const { code, report: r } = await doctor();
      expect([code, r.ok]).toEqual([1, false]);
      expect(HOSTS.map((h) => host(r, h).status)).toEqual(['Ready', 'NotReady', 'NotReady']);
      expect(host(r, 'gpu1').reasons.join('\n')).toMatch(
        /^XID 79 on the GPU at PCI 0000:01:00 at .*fallen off the bus/m,
      );
      expect(host(r, 'gpu1').xids.map((x) => x.code)).toEqual([79]);
      expect(host(r, 'gpu2').reasons).toContain(
        'GPU 0 PCIe link x4 of x16 (degraded): reseat the card, check its riser and slot',
      );
      // The network is fine: every pair still has its figure.
      expect(r.allreduce.pairs.every((p) => p.busbwGBps! > 0)).toBe(true);
    } finally {
      lab('gpu', 'gpu1', 'ok');
      lab('gpu', 'gpu2', 'ok');
    }
  });

  it("gpu2's link cut: the pairs with gpu2 fail by name, gpu2 NotReady, the others keep their figure", async () => {
    try {
      lab('cut', 'gpu2');
      const { code, report: r } = await doctor();
      expect([code, r.ok]).toEqual([1, false]);
      expect(HOSTS.map((h) => host(r, h).status)).toEqual(['Ready', 'Ready', 'NotReady']);
      const failed = r.pairs.filter((p) => p.result !== 'ok').map((p) => `${p.from} -> ${p.to}`);
      expect(failed.sort()).toEqual(['gpu-master -> gpu2', 'gpu1 -> gpu2', 'gpu2 -> gpu-master', 'gpu2 -> gpu1']);
      const net = r.checks.filter((c) => c.check === 'network').map((c) => c.message);
      expect(net.some((m) => m.startsWith('gpu-master -> gpu2:29500: timeout'))).toBe(true);
      expect(net.some((m) => m.startsWith('gpu1 -> gpu2:29500: timeout'))).toBe(true);
      const ar = Object.fromEntries(r.allreduce.pairs.map((p) => [`${p.a}-${p.b}`, p]));
      expect(ar['gpu-master-gpu1'].busbwGBps).toBeGreaterThan(0);
      expect(ar['gpu1-gpu2'].error).toMatch(/not run/);
    } finally {
      lab('heal', 'gpu2');
    }
  });
});

/** The preflight's listeners still alive on the lab hosts (they share this machine's process table). */
const listeners = () =>
  execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes('stdin_closed'));

describe('spec.preflight under a controller on the lab', () => {
  it('gpu2 cut off its peers: waits PreflightFailed naming its pairs, no listener left; healed: it runs', async () => {
    const jobsDir = newJobsDir();
    const name = `pf-${Date.now().toString(36)}`; // run dirs of earlier runs stay on the hosts
    const ctl = startController(jobsDir);
    try {
      lab('cut', 'gpu2', '--peers');
      const spec = { script: 'train.py', args: ['--epochs', '1', '--steps-per-epoch', '3'], nodes: 3 };
      writeJob(jobsDir, name, { ...spec, preflight: true, restartPolicy: { maxInfraRestarts: 50 } });
      const st = await waitFor('a PreflightFailed record', () => {
        const s = readStatus(jobsDir, name);
        return s?.failures?.some((f) => f.reason === 'PreflightFailed') && s;
      });
      const f = st.failures!.find((x) => x.reason === 'PreflightFailed')!;
      expect(f).toMatchObject({ class: 'infra', host: 'gpu2' });
      expect(f.message).toMatch(/^preflight failed: /);
      expect(f.message).toMatch(/gpu-master -> gpu2:\d+: timeout/);
      expect(f.message).toMatch(/gpu1 -> gpu2:\d+: timeout/);
      expect(f.message).toMatch(/gpu2 -> gpu1:\d+: unreachable/);
      expect(st.phase).toBe('Queued');
      expect(ugro(jobsDir, 'events', name).out).toMatch(/PreflightFailed/);
      // The preflight's listeners end with their SSH channel (or their own deadline): none is left.
      await waitFor('no preflight listener left on the hosts', () => listeners().length === 0, 10_000, 100);
      lab('heal', 'gpu2');
      const done = await waitPhase(jobsDir, name, ['Succeeded', 'Failed'], 120_000);
      expect(done.phase, ctl.logText()).toBe('Succeeded');
      const passed = /preflight: gpu-master, gpu1, gpu2 reach each other from port \d+ \(6 pairs/;
      expect(ugro(jobsDir, 'events', name).out).toMatch(passed);
      expect(listeners()).toEqual([]);
    } finally {
      lab('heal', 'gpu2');
      await stopController(ctl);
    }
  });
});
