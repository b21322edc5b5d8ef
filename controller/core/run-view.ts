/** Pure views over the run parts observed on the hosts: one run = one attempt across its hosts. */
import { type RunMeta, type RunPart, type StopReason, stoppedOnPurpose } from '../api/run.ts';
import type { NodeStatus } from '../api/status.ts';

export interface RunView {
  runId: string;
  dir: string;
  specHash: string;
  attempt: number;
  meta: RunMeta;
  parts: RunPart[];
}

export function groupRuns(parts: RunPart[]): RunView[] {
  const m = new Map<string, RunView>();
  for (const p of parts) {
    const r = m.get(p.dir) ?? {
      runId: p.meta.runId,
      dir: p.dir,
      specHash: p.meta.specHash,
      attempt: p.meta.attempt,
      meta: p.meta,
      parts: [],
    };
    r.parts.push(p);
    m.set(p.dir, r);
  }
  return [...m.values()].sort((a, b) => a.attempt - b.attempt);
}

const partDone = (p: RunPart) => !p.alive && p.exitCode !== undefined;
export const partFailed = (p: RunPart) => partDone(p) && p.exitCode !== 0;
export const runAlive = (r: RunView) => r.parts.some((p) => p.alive);

/**
 * The reason UGRO stopped this run with, if it stopped it. A leftover stopped later as
 * `superseded` (a host that came back) does not hide why the run itself ended.
 */
export function runStopReason(r: RunView): StopReason | undefined {
  return (r.parts.find((p) => p.stopReason && p.stopReason !== 'superseded') ?? r.parts.find((p) => p.stopReason))
    ?.stopReason;
}

/** Parts whose runner is gone without recording an exit code (host reboot, OOM killer, kill -9). */
export function vanishedParts(r: RunView): RunPart[] {
  return r.parts.filter((p) => p.pid !== undefined && !p.alive && p.exitCode === undefined && !p.stopReason);
}

/** Stopped by a person or the scheduler and fully down: not a failure, never counted. */
export function runStoppedOnPurpose(r: RunView): boolean {
  return !runAlive(r) && r.parts.some((p) => stoppedOnPurpose(p.stopReason));
}

export interface FirstFailure {
  host: string;
  rank?: number;
  exitCode: number;
  logTail: string[];
}

/** The first failing rank (earliest non-zero exit), for the status message and log tail. */
export function firstFailure(run: RunView): FirstFailure | undefined {
  let best: (FirstFailure & { at: number }) | undefined;
  for (const p of run.parts) {
    for (const r of p.ranks) {
      if (r.exitCode !== undefined && r.exitCode !== 0) {
        // Prefer a real exit over a death by SIGTERM, SIGHUP or SIGINT: those are the gang being
        // torn down (by torchrun or UGRO). SIGKILL (137: the OOM killer, kill -9) and crashes
        // (SIGSEGV 139, SIGABRT 134) are real failures and keep their place in time.
        const teardown = r.exitCode === 143 || r.exitCode === 129 || r.exitCode === 130;
        const at = (r.exitedAt ?? Number.POSITIVE_INFINITY) + (teardown ? 1e12 : 0);
        if (!best || at < best.at)
          best = { host: p.host, rank: r.rank, exitCode: r.exitCode, logTail: r.logTail ?? [], at };
      }
    }
  }
  if (best) return { host: best.host, rank: best.rank, exitCode: best.exitCode, logTail: best.logTail };
  const p = run.parts.find(partFailed);
  return p ? { host: p.host, exitCode: p.exitCode!, logTail: p.agentLogTail } : undefined;
}

export function nodeStatuses(run: RunView, unreachable: Map<string, string>): NodeStatus[] {
  return run.meta.hosts.map((h, i) => {
    const p = run.parts.find((x) => x.host === h);
    if (!p) return { host: h, nodeRank: i, globalRanks: [], state: unreachable.has(h) ? 'Unknown' : 'Missing' };
    const state: NodeStatus['state'] = p.alive
      ? p.waiting
        ? 'Pending'
        : 'Running'
      : p.exitCode === undefined
        ? p.pid
          ? 'Unknown'
          : 'Pending'
        : p.exitCode === 0
          ? 'Succeeded'
          : 'Failed';
    return {
      host: h,
      nodeRank: p.meta.nodeRank,
      globalRanks: p.ranks.map((r) => r.rank),
      ...(p.pid !== undefined ? { pid: p.pid } : {}),
      state,
      ...(p.exitCode !== undefined ? { exitCode: p.exitCode } : {}),
      ...(p.meta.gpus?.length ? { gpus: p.meta.gpus } : {}),
    };
  });
}

export function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}
