/**
 * What the recovery section reads from the lab: rank 0's metrics lines, where an attempt runs,
 * lab.sh verbs run alongside the measurement, and a status's failure records.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { JobStatus } from '../../controller/api/status.ts';
import { ROOT, runDirOf } from '../lab/controller-harness.ts';
import type { Lab } from './context.ts';
import { nsTextToMs, readText } from './lib.ts';

interface Metric {
  step: number;
  /** ms since the epoch (train.py writes time.time()). */
  at: number;
}

export function metrics(path: string): Metric[] {
  const out: Metric[] = [];
  for (const line of (readText(path) ?? '').split('\n')) {
    if (!line.trim()) continue;
    try {
      const m = JSON.parse(line) as { step?: number; time?: number };
      if (typeof m.step === 'number' && typeof m.time === 'number') out.push({ step: m.step, at: m.time * 1000 });
    } catch {
      /* a line being written */
    }
  }
  return out;
}

/** Where a status's attempt runs: rank 0's run dir, and every host's launched_at. */
export function attemptDirs(lab: Lab, s: JobStatus) {
  const dir = runDirOf(s);
  const at = (host: string) => join(lab.hosts.find((h) => h.name === host)!.paths.runs, dir);
  const rank0 = s.nodes.find((n) => n.nodeRank === 0)!.host;
  return {
    runId: s.runId!,
    attempt: s.attempt,
    hosts: s.nodes.map((n) => n.host),
    rank0Host: rank0,
    rank0Dir: at(rank0),
    lastLaunchedAt: () => {
      const xs = s.nodes.map((n) => nsTextToMs(readText(join(at(n.host), 'launched_at')) ?? ''));
      return xs.some((x) => x === undefined) ? undefined : Math.max(...(xs as number[]));
    },
    dirOn: at,
  };
}

/** `bash tests/lab/lab.sh ARGS…` without blocking this process (the bench watches while it runs). */
export function labVerb(...args: string[]): Promise<{ startedAt: number; endedAt: number }> {
  const startedAt = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(ROOT, 'tests/lab/lab.sh'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    child.once('exit', (code) =>
      code === 0
        ? resolve({ startedAt, endedAt: Date.now() })
        : reject(new Error(`lab ${args.join(' ')} failed (exit ${code}): ${out.trim()}`)),
    );
  });
}

/** The failure record of `attempt` with `reason`, if the status has it. */
export const failureOf = (s: JobStatus | undefined, attempt: number, reason?: string) =>
  s?.failures?.find((f) => f.attempt === attempt && (!reason || f.reason === reason));

export function lastStep(rank0Dir: string): number {
  const m = metrics(join(rank0Dir, 'metrics.jsonl'));
  return m.length ? m[m.length - 1].step : 0;
}
