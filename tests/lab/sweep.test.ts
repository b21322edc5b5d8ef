/**
 * A sweep on the lab (issue 18): a 2x3 grid over learning rate and batch size of scripts/train.py
 * with ASHA (one rung at step 10, eta 3) and maxParallel 2, run by one real controller over SSH.
 * It proves: every trial ends; at least one is stopped at the first rung; the best trial runs to
 * the end and `get sweeps -o json` names it with its objective; `get jobs -l ugro.dev/sweep=…`
 * lists the six trials; a paused trial is promoted and its next attempt resumes from its
 * checkpoint, past step 0 (its rank log says so). The two trials started first always reach the
 * rung with fewer than eta trials there (floor(n/3) = 0), so they are always paused; train.py is
 * deterministic (seeded init and batches), and the grid's first set (batch 32, lr 0.05) has the
 * lowest loss of the six at step 10 (21.3; the others 34-43, lr 0.05 at batch 8 diverges), so
 * trial 0 is among the best two of six and is promoted: the promotion is certain, not a race.
 * A job with `after: [{sweep: …}]`, written with the sweep, starts only once the whole sweep ended
 * and reads the best trial's newest checkpoint through UGRO_AFTER_LAB_SWEEP_CHECKPOINT.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import {
  labCluster,
  newJobsDir,
  readStatus,
  runDirOf,
  startController,
  stopController,
  ugro,
  waitFor,
  waitPhase,
  writeJob,
} from './controller-harness.ts';

const cluster = labCluster();
const pool = new SshPool(cluster.hosts);
const NAME = 'lab-sweep';
const STEPS = 40;
const EVAL = `${NAME}-eval`;
let ctl: ReturnType<typeof startController> | undefined;

async function sh(h: string, script: string, ...args: string[]): Promise<string> {
  return (await pool.exec(h, ['sh', '-c', script, 'sh', ...args])).stdout;
}

/** This sweep's trials' run dirs and checkpoints on every host. */
const clean = () =>
  Promise.all(
    cluster.hosts.map((h) =>
      sh(h.name, 'rm -rf -- "$1"/"$3"-* "$2"/"$3"-*', h.paths.runs, h.paths.checkpoints, NAME).catch(() => ''),
    ),
  );

beforeAll(clean);
afterEach(async () => {
  if (ctl) await stopController(ctl);
  ctl = undefined;
});
afterAll(async () => {
  await clean();
  pool.close();
});

interface Trial {
  name: string;
  state: string;
  step?: number;
  why?: string;
}

describe('a sweep on the lab', () => {
  it('2x3 grid, ASHA, maxParallel 2: stops early, promotes a paused trial, names the best', async () => {
    const jobsDir = newJobsDir();
    ctl = startController(jobsDir);
    const sweep = {
      apiVersion: 'ugro.dev/v1alpha1',
      kind: 'Sweep',
      metadata: { name: NAME },
      spec: {
        template: {
          script: 'train.py',
          args: [
            ...['--epochs', '1', '--steps-per-epoch', String(STEPS), '--sleep', '0.1'],
            ...['--checkpoint-every', '5', '--metrics-every', '5', '--lr', '{lr}', '--batch-size', '{bs}'],
          ],
          preemption: { graceSeconds: 10 },
        },
        parameters: { grid: { bs: [32, 16, 8], lr: [0.05, 0.0005] } },
        maxParallel: 2,
        objective: { metric: 'loss', goal: 'minimize' },
        earlyStopping: { type: 'asha', rungs: [10], eta: 3 },
      },
    };
    writeFileSync(join(jobsDir, `${NAME}.yaml`), stringify(sweep));
    // The eval prints the variable and fails unless the checkpoint is there, on its own host.
    const show = [
      'sh',
      '-c',
      'echo "AFTER=$UGRO_AFTER_LAB_SWEEP_CHECKPOINT"; test -s "$UGRO_AFTER_LAB_SWEEP_CHECKPOINT"',
    ];
    writeJob(jobsDir, EVAL, { command: show, nodes: 1, after: [{ sweep: NAME }] });
    const status = () => {
      try {
        return parse(readFileSync(join(jobsDir, `${NAME}.sweep.status.yaml`), 'utf8'));
      } catch {
        return undefined;
      }
    };
    const done = await waitFor(
      'the sweep to end',
      () => {
        const s = status();
        return s && s.phase !== 'Running' ? s : undefined;
      },
      150_000,
      500,
    );
    expect(done.phase).toBe('Succeeded');
    const trials = done.trials as Trial[];
    expect(trials.map((t) => t.name).sort()).toEqual([0, 1, 2, 3, 4, 5].map((i) => `${NAME}-t${i}`));
    // Every trial ended: ran to the end, or stopped at the rung (Suspended, never Failed).
    for (const t of trials) {
      expect(['succeeded', 'stopped'], `${t.name}: ${t.state} ${t.why ?? ''}`).toContain(t.state);
      expect(['Succeeded', 'Suspended']).toContain(readStatus(jobsDir, t.name)?.phase);
    }
    const stopped = trials.filter((t) => t.state === 'stopped');
    expect(stopped.length).toBeGreaterThanOrEqual(1);
    for (const t of stopped) {
      expect(t.why).toMatch(/^paused at rung 1 \(step 10\): loss /);
      expect(t.step).toBeLessThan(STEPS);
    }
    // The best trial ran to the end; get sweeps -o json names it with its objective.
    const best = trials.find((t) => t.name === done.best?.trial);
    expect(best).toMatchObject({ state: 'succeeded', step: STEPS });
    const listed = ugro(jobsDir, 'get', 'sweeps', '-o', 'json');
    expect(listed.code, listed.err).toBe(0);
    const row = (JSON.parse(listed.out) as { name: string; best: { trial: string; objective: number } }[])[0];
    expect(row).toMatchObject({ name: NAME, phase: 'Succeeded', best: { trial: best?.name } });
    expect(row.best.objective).toBe(done.best.objective);
    // The trials are the jobs labelled with the sweep.
    const labelled = ugro(jobsDir, 'get', 'jobs', '-l', `ugro.dev/sweep=${NAME}`, '-o', 'json');
    expect(labelled.code, labelled.err).toBe(0);
    expect((JSON.parse(labelled.out) as unknown[]).length).toBe(6);
    // A paused trial promoted: its second attempt resumed from its checkpoint and ran to the end.
    const events = ugro(jobsDir, 'events', NAME);
    const promoted = [...events.out.matchAll(new RegExp(`TrialPromoted\\s+(${NAME}-t\\d+):`, 'g'))].map((m) => m[1]);
    expect(promoted.length, events.out).toBeGreaterThanOrEqual(1);
    const p = readStatus(jobsDir, promoted[0]);
    expect(p).toMatchObject({ phase: 'Succeeded', attempt: 2 });
    const node = p?.nodes.find((n) => n.globalRanks.includes(0));
    const h = cluster.hosts.find((x) => x.name === node?.host);
    const log = await sh(h!.name, 'cat -- "$1"/rank-0.log', `${h!.paths.runs}/${runDirOf(p!)}`);
    const from = /resumed from step-(\d+)/.exec(log);
    expect(from, log).not.toBeNull();
    expect(Number(from?.[1])).toBeGreaterThanOrEqual(10);
    // describe sweep lists the trials best first, with their parameters and why each stopped.
    const described = ugro(jobsDir, 'describe', 'sweep', NAME);
    expect(described.out).toMatch(new RegExp(`TRIAL[\\s\\S]*\\n${best?.name}\\s+succeeded`));
    expect(described.out).toMatch(/bs=32 lr=0\.05/);
    // The eval waited for the whole sweep, then read the best trial's newest checkpoint.
    const ev = await waitPhase(jobsDir, EVAL, ['Succeeded', 'Failed'], 60_000);
    expect(ev.phase, ctl.logText()).toBe('Succeeded');
    expect(Date.parse(ev.startTime!)).toBeGreaterThanOrEqual(Date.parse(done.completionTime) - 1000);
    const evHost = cluster.hosts.find((x) => x.name === ev.nodes[0]?.host);
    const evLog = ugro(jobsDir, 'logs', EVAL, '--rank', '0').out;
    expect(evLog).toContain(`AFTER=${evHost?.paths.checkpoints}/${best?.name}/step-${STEPS}.pt`);
  });
});
