/**
 * Real output captured on an NVIDIA H100 machine (tests/device/check.sh, 2026-11-25, with this stop's
 * launch.sh and train.py: driver 580.159.04, torch 2.11.0+cu130, NCCL 2.28.9), put through the same
 * parsers the controller uses.
 * It pins what the lab's stand-in nvidia-smi cannot: a real driver's CSV, a real CUDA build of
 * torch read by the probe, a real NCCL run observed by observe.sh.
 *
 * The capture predates the records format (observe.sh then printed `exit=` and no closing
 * @@observe block) and its run used the spec hash `dev00001`, which is not hex. The test converts
 * the observe section to today's format (`legacyObserve` below, used only here) and parses it
 * with the controller's own observeResultOf: as captured it is rejected (its meta fails
 * parseRunMeta, as it should), and with the hash renamed to hex everything else must read back.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseCluster } from '../../config/cluster.ts';
import { judge, parseNvidiaSmiCsv, parseProbe } from '../../controller/backends/health.ts';
import { observeResultOf } from '../../controller/backends/records.ts';
import { sectionsOf } from '../device/report.ts';

const dir = new URL('../fixtures/device/', import.meta.url);
const s = sectionsOf(readFileSync(new URL('h100-2026-11-25.txt', dir), 'utf8'));
const body = (k: string) => s.get(k)?.body ?? '';

/** The 2026-11-25 observe.sh output in today's records: `exit=` became `exit_code=`, and @@observe closes it. */
function legacyObserve(text: string): string {
  const runs = text.match(/^@@run /gm)?.length ?? 0;
  return `${text.replace(/^exit=/gm, 'exit_code=').replace(/^@@none$/m, '')}@@observe\nruns=${runs}\n@@end\n`;
}

describe('captured on a real H100', () => {
  it('every step of the check ran and recorded its exit code', () => {
    expect([...s.keys()]).toEqual(
      expect.arrayContaining([
        'nvidia-smi-query',
        'probe',
        'driver',
        'driver-too-old',
        'torch',
        'torch-wrong-cuda',
        'launch',
        'wait',
        'observe',
        'rank-0.log',
      ]),
    );
  });

  it('nvidia-smi CSV: name with spaces, memory in MiB, driver', () => {
    expect(parseNvidiaSmiCsv(body('nvidia-smi-query'))).toEqual([
      {
        index: 0,
        name: 'NVIDIA H100 80GB HBM3',
        memoryTotalMiB: 81559,
        memoryUsedMiB: 0,
        utilizationPct: 0,
        driver: '580.159.04',
      },
    ]);
  });

  it('the health probe reads torch 2.11 CUDA 13.0 from version.py, and the node is Ready', () => {
    const facts = parseProbe(body('probe'));
    expect(facts.torch).toEqual({ version: '2.11.0+cu130', cuda: '13.0' });
    expect(facts.python?.version).toBe('3.12.3');
    expect(facts.gpu).toMatchObject({ state: 'ok', gpus: [{ name: 'NVIDIA H100 80GB HBM3', driver: '580.159.04' }] });
    const cl = parseCluster(readFileSync(new URL('cluster.yaml', dir), 'utf8'), 'device', {
      env: {},
      home: '/root',
      user: 'root',
    });
    if (!cl.ok) throw new Error('cluster');
    const h = judge(cl.value.master, cl.value, facts, { rttMs: 1, clockOffsetMs: 0 }, '2026-11-25T23:03:00Z');
    expect(h.status, h.reasons.join('; ')).toBe('Ready');
  });

  it("infra's driver check passes at >= 550 and refuses a higher minimum with the fix", () => {
    expect(s.get('driver')?.rc).toBe('0');
    expect(body('driver')).toContain('ugro-fact driver=580.159.04');
    expect(s.get('driver-too-old')?.rc).toBe('1');
    expect(body('driver-too-old')).toContain('NVIDIA driver 580.159.04 < required 9999: upgrade the driver');
  });

  it("infra's torch check: CUDA 13 build with a working GPU passes; a CUDA 11 requirement fails clearly", () => {
    expect(s.get('torch')?.rc).toBe('0');
    expect(body('torch')).toContain('ugro-fact cuda_available=true');
    expect(s.get('torch-wrong-cuda')?.rc).toBe('1');
    expect(body('torch-wrong-cuda')).toContain('is built for CUDA 13.0, CUDA 11 required');
  });

  it('a run launched by launch.sh trained on NCCL and cuda:0, exited 0, and observe.sh saw it end', () => {
    expect(body('wait').trim()).toBe('0');
    expect(body('rank-0.log')).toMatch(/^rank 0\/1 on \S+ backend=nccl device=cuda:0$/m);
    expect(body('rank-0.log')).toMatch(/^rank 0: done$/m);
    expect(body('rank-0.log')).not.toContain('Warning'); // NCCL's barrier is given its device

    const captured = observeResultOf('gpu-device', legacyObserve(body('observe')));
    expect(captured.parts).toEqual([]);
    expect(captured.rejected).toEqual([
      { dir: 'gpu-check.dev00001.1', why: 'run dir name "gpu-check.dev00001.1" is not JOB.HASH.ATTEMPT' },
    ]);

    const { parts, rejected } = observeResultOf(
      'gpu-device',
      legacyObserve(body('observe')).replaceAll('dev00001', 'dec00001'),
    );
    expect(rejected).toEqual([]);
    expect(parts).toHaveLength(1);
    expect(parts[0]).toMatchObject({
      dir: 'gpu-check.dec00001.1',
      pid: 561,
      alive: false,
      exitCode: 0,
      launchedAtMs: 1795649895863,
      finishedAtMs: 1795649906322,
      meta: { job: 'gpu-check', runId: 'gpu-check-dec00001-a1', host: 'gpu-device', rdzvEndpoint: '127.0.0.1:29517' },
      ranks: [{ rank: 0, localRank: 0, pid: 595, exitCode: 0, exitedAt: 1795649905917 }],
      agentLogTail: [],
      metrics: { epoch: 2, step: 60, loss: 1.373065, world: 1, time: 1795649905.6973028 },
    });
  });
});
