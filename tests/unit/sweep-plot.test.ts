/**
 * `ugro results sweep NAME --plot FILE` (cli/sweeps.ts writeSweepPlot, issue 18) against in-memory
 * hosts: a sweep's trials run under a real controller loop and write metrics lines on their hosts;
 * the plot reads every trial's series over the backend and writes one SVG with every trial's curve
 * (all its points) and the rungs marked, read back from the file's text.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { readSweeps, writeSweepPlot } from '../../controller/cli/sweeps.ts';
import { loopRig, stopLoopRigs } from '../support/loop-rig.ts';
import { CLUSTER } from './job-fixtures.ts';

afterEach(stopLoopRigs);

describe('results sweep --plot', () => {
  it("writes every trial's curve through all its points and marks the rungs", async () => {
    const { ctl, fake, jobs } = await loopRig({ prefix: 'sweep-plot' });
    const sweep = {
      apiVersion: 'ugro.dev/v1alpha1',
      kind: 'Sweep',
      metadata: { name: 'lr' },
      spec: {
        template: { command: ['python3', '/opt/t.py', '--lr={lr}'] },
        parameters: { grid: { lr: [0.1, 0.01] } },
        maxParallel: 2,
        objective: { metric: 'loss', goal: 'minimize' },
        earlyStopping: { type: 'asha', rungs: [10, 20], eta: 2 },
      },
    };
    writeFileSync(join(jobs, 'lr.yaml'), stringify(sweep));
    await ctl.sweeps.touched('lr');
    for (let i = 0; i < 3; i++) {
      await ctl.sweeps.kick();
      await ctl.idle();
    }
    // lr-t0 writes 4 metrics lines, lr-t1 6 (one without the objective: not a point).
    const lines: Record<string, object[]> = {
      'lr-t0': [5, 10, 15, 20].map((step) => ({ step, loss: 1 / step })),
      'lr-t1': [...[5, 10, 15, 20, 25].map((step) => ({ step, loss: 2 / step })), { step: 30, acc: 0.5 }],
    };
    for (const [name, ms] of Object.entries(lines)) {
      const st = parse(readFileSync(join(jobs, `${name}.status.yaml`), 'utf8')) as JobStatus;
      const host = st.nodes[0].host;
      const dir = `${st.runId?.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')}`;
      fake.startRanks(host, dir, 1);
      for (const m of ms) fake.writeMetrics(host, dir, m);
    }
    const [row] = await readSweeps(ctl.store, ['lr']);
    const out = mkdtempSync(join(tmpdir(), 'ugro-plot-out-'));
    const file = join(out, 'curves.svg');
    const r = await writeSweepPlot(new SshBackend(fake), CLUSTER, ctl.store, row, file);
    expect(r).toEqual({ trials: 2, points: 9, unreachable: [] });
    // Written whole (a temp file renamed): nothing else is left beside it.
    expect(readdirSync(out)).toEqual(['curves.svg']);
    const svg = readFileSync(file, 'utf8');
    const curves = [
      ...svg.matchAll(/<polyline class="trial" data-trial="([^"]+)" data-points="(\d+)"[^>]*\spoints="([^"]*)"/g),
    ];
    expect(curves.map((m) => [m[1], Number(m[2]), m[3].split(' ').length])).toEqual([
      ['lr-t0', 4, 4],
      ['lr-t1', 5, 5],
    ]);
    const rungs = [...svg.matchAll(/<g class="rung" data-step="(\d+)">.*?>(rung \d)<\/text><\/g>/g)];
    expect(rungs.map((m) => [Number(m[1]), m[2]])).toEqual([
      [10, 'rung 1'],
      [20, 'rung 2'],
    ]);
    expect(svg).toContain('lr: loss by step');
    // A sweep with no status yet: a clear error, no file.
    await expect(
      writeSweepPlot(new SshBackend(fake), CLUSTER, ctl.store, { name: 'x', spec: { kind: 'deleted' } }, `${file}2`),
    ).rejects.toThrow('sweep x has no status yet');
    expect(existsSync(`${file}2`)).toBe(false);
  });
});
