/**
 * PURE reconcile decisions: (spec, previous status, what the hosts show, cluster view, now)
 * -> (status, actions, requeueAfter). No fs, no ssh, no timers: the runtime executes actions.
 * Level-triggered: there is no "added/changed/deleted" branch, only "what is, what should be".
 */
import type { Host } from '../../config/cluster.ts';
import type { FieldIssue } from '../../config/errors.ts';
import { formatIssue } from '../../config/errors.ts';
import { type Condition, type JobStatus, type NodeStatus, type Phase, setCondition } from '../api/status.ts';
import { nodeRange, priorityValue, type TrainingJob } from '../api/trainingjob.ts';
import { type RunMeta, type RunPart, runDirName, runIdOf } from '../hosts/runs.ts';

export type SpecState =
  | { kind: 'valid'; job: TrainingJob; hash: string; file: string }
  | { kind: 'invalid'; file: string; issues: FieldIssue[] }
  | { kind: 'deleted' };

export interface Control {
  cancel?: { specHash?: string; requestedAt: string; graceSeconds?: number };
}

export interface ClusterView {
  hosts: Host[];
  /** Hosts that passed health (Ready). */
  ready: Set<string>;
  notReady: Map<string, string>;
  /** Host -> job currently holding it (a live run of another job). */
  busy: Map<string, string>;
  usedPorts: Set<number>;
  basePort: number;
  /** GPUs per host as observed (for nprocPerNode: gpu and minGpuMemoryGiB). */
  gpus: Map<string, { memoryTotalMiB: number }[]>;
  /** Pending jobs that come before this one (priority, then age). */
  ahead: string[];
  rdzvTimeoutSeconds: number;
  defaultGraceSeconds: number;
}

export interface LaunchPart {
  host: string;
  nodeRank: number;
  nproc: number;
}

export type Action =
  | {
      type: 'launch';
      job: string;
      runId: string;
      dir: string;
      attempt: number;
      specHash: string;
      parts: LaunchPart[];
      allParts: LaunchPart[];
      rdzvHost: string;
      port: number;
      createdAt: string;
    }
  | { type: 'stop'; runId: string; dir: string; hosts: string[]; graceSeconds: number; reason: string }
  /** Move a deleted job's finished run directories aside (runs/.deleted/), so the same spec applied again starts afresh. */
  | { type: 'archive'; parts: { host: string; dir: string }[] };

export interface ReconcileInput {
  name: string;
  now: Date;
  spec: SpecState;
  status?: JobStatus;
  control?: Control;
  /** Every run part of this job found on reachable hosts. */
  parts: RunPart[];
  unreachable: Map<string, string>;
  cluster: ClusterView;
}

export interface ReconcileResult {
  /** null: remove the status file (job deleted and fully stopped). */
  status: JobStatus | null;
  actions: Action[];
  requeueAfterMs?: number;
  events: { reason: string; message: string; type?: 'Normal' | 'Warning' }[];
}

interface RunView {
  runId: string;
  dir: string;
  specHash: string;
  attempt: number;
  meta: RunMeta;
  parts: RunPart[];
}

function groupRuns(parts: RunPart[]): RunView[] {
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
/** Stopped by a person (cancel, suspend), not failed: it never counts against maxRestarts. */
const stoppedOnPurpose = (r: RunView) =>
  !r.parts.some((p) => p.alive) &&
  r.parts.some((p) => p.cancelled === 'cancelled' || p.cancelled === 'suspended' || p.cancelled === 'deleted');
const partFailed = (p: RunPart) => partDone(p) && p.exitCode !== 0;

/** The first failing rank (earliest non-zero exit), for the status message and log tail. */
function firstFailure(run: RunView): { host: string; rank?: number; exitCode: number; logTail: string[] } | undefined {
  let best: { host: string; rank?: number; exitCode: number; logTail: string[]; at: number } | undefined;
  for (const p of run.parts) {
    for (const r of p.ranks) {
      if (r.exitCode !== undefined && r.exitCode !== 0) {
        // Prefer a real exit over "killed by signal" (>= 128): the killed ones are the gang being torn down.
        const at = (r.exitedAt ?? Infinity) + (r.exitCode >= 128 ? 1e12 : 0);
        if (!best || at < best.at)
          best = { host: p.host, rank: r.rank, exitCode: r.exitCode, logTail: r.logTail ?? [], at };
      }
    }
  }
  if (best) return best;
  const p = run.parts.find(partFailed);
  return p ? { host: p.host, exitCode: p.exitCode!, logTail: p.agentLogTail } : undefined;
}

function nodeStatuses(run: RunView, unreachable: Map<string, string>): NodeStatus[] {
  const hosts = run.meta.hosts;
  return hosts.map((h, i) => {
    const p = run.parts.find((x) => x.host === h);
    if (!p) return { host: h, nodeRank: i, globalRanks: [], state: unreachable.has(h) ? 'Unknown' : 'Missing' };
    const state: NodeStatus['state'] = p.alive
      ? 'Running'
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
      pid: p.pid,
      state,
      ...(p.exitCode !== undefined ? { exitCode: p.exitCode } : {}),
    };
  });
}

function iso(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

/** Choose hosts for a new run, or say why not. Pure. */
export function schedule(job: TrainingJob, view: ClusterView): { parts: LaunchPart[] } | { waiting: string } {
  const spec = job.spec;
  const { min, max } = nodeRange(spec);
  const reasons: string[] = [];
  const eligible: LaunchPart[] = [];
  const candidates = spec.hosts ? view.hosts.filter((h) => spec.hosts!.includes(h.name)) : view.hosts;
  const unknown = (spec.hosts ?? []).filter((n) => !view.hosts.some((h) => h.name === n));
  if (unknown.length)
    reasons.push(
      `spec.hosts names ${unknown.join(', ')}, not in the cluster file (hosts: ${view.hosts.map((h) => h.name).join(', ')})`,
    );
  for (const h of candidates) {
    if (!view.ready.has(h.name)) {
      reasons.push(`${h.name} NotReady (${view.notReady.get(h.name) ?? 'not checked yet'})`);
      continue;
    }
    const holder = view.busy.get(h.name);
    if (holder && holder !== job.metadata.name) {
      reasons.push(`${h.name} busy with job ${holder}`);
      continue;
    }
    const gpus = view.gpus.get(h.name) ?? [];
    const minMiB = (spec.resources?.minGpuMemoryGiB ?? 0) * 1024;
    if (minMiB && !gpus.some((g) => g.memoryTotalMiB >= minMiB * 0.97)) {
      reasons.push(`${h.name} has no GPU with ${spec.resources!.minGpuMemoryGiB} GiB`);
      continue;
    }
    const nproc =
      spec.nprocPerNode === 'gpu' ? gpus.filter((g) => g.memoryTotalMiB >= minMiB * 0.97).length : spec.nprocPerNode;
    if (nproc < 1) {
      reasons.push(`${h.name} has no GPU (nprocPerNode: gpu)`);
      continue;
    }
    eligible.push({ host: h.name, nodeRank: 0, nproc });
  }
  if (view.ahead.length)
    return {
      waiting: `waiting behind ${view.ahead.length} job(s) queued ahead (${view.ahead.slice(0, 3).join(', ')})`,
    };
  if (eligible.length < min) {
    return {
      waiting: `needs ${min} free Ready host${min === 1 ? '' : 's'}, ${eligible.length} available${reasons.length ? `: ${reasons.join('; ')}` : ''}`,
    };
  }
  return { parts: eligible.slice(0, max).map((p, i) => ({ ...p, nodeRank: i })) };
}

export function freePort(view: ClusterView): number {
  let p = view.basePort;
  while (view.usedPorts.has(p)) p++;
  return p;
}

export function reconcile(input: ReconcileInput): ReconcileResult {
  const { name, spec, cluster } = input;
  const now = input.now.toISOString();
  const prev = input.status;
  const events: ReconcileResult['events'] = [];
  const actions: Action[] = [];
  const runs = groupRuns(input.parts);
  const liveRuns = runs.filter((r) => r.parts.some((p) => p.alive));
  let conditions: Condition[] = prev?.conditions ?? [];
  const cond = (type: string, status: Condition['status'], reason: string, message: string) =>
    (conditions = setCondition(conditions, { type, status, reason, message }, now));
  const stopRun = (r: RunView, reason: string, grace = cluster.defaultGraceSeconds) => {
    const hosts = r.parts.filter((p) => p.alive).map((p) => p.host);
    if (hosts.length) actions.push({ type: 'stop', runId: r.runId, dir: r.dir, hosts, graceSeconds: grace, reason });
  };

  // 1. Deleted: stop everything, then forget the status.
  if (spec.kind === 'deleted') {
    for (const r of liveRuns) stopRun(r, 'deleted');
    if (liveRuns.length || input.unreachable.size) {
      return {
        status: prev ? { ...prev, message: 'deleting: stopping the run' } : null,
        actions,
        requeueAfterMs: 1000,
        events: actions.length ? [{ reason: 'Stopping', message: 'job file deleted: stopping its run' }] : [],
      };
    }
    // Nothing alive: move the run directories aside (logs kept under runs/.deleted/), so the same
    // spec applied again is a new job, not the old result re-adopted.
    const leftover = runs.flatMap((r) => r.parts.map((p) => ({ host: p.host, dir: p.dir })));
    // Only for a job this jobs dir knew (it had a status): a controller started on another or an
    // empty jobs dir must not sweep away runs it never owned.
    if (prev && leftover.length) actions.push({ type: 'archive', parts: leftover });
    return {
      status: null,
      actions,
      events: prev ? [{ reason: 'Deleted', message: 'job file deleted; run stopped' }] : [],
    };
  }

  const base: JobStatus = {
    phase: prev?.phase ?? 'Queued',
    observedGeneration: prev?.observedGeneration ?? 0,
    specHash: prev?.specHash,
    attempt: prev?.attempt ?? 0,
    nodes: [],
    createdAt: prev?.createdAt ?? now,
    conditions,
    // Kept while the spec is unchanged, so a Suspended/Cancelled job's time does not creep forward.
    ...(prev?.completionTime ? { completionTime: prev.completionTime } : {}),
  };

  // 2. Invalid: say exactly what is wrong; leave any running run alone (a typo must not kill training).
  if (spec.kind === 'invalid') {
    const msg = spec.issues.map((i) => formatIssue(spec.file, i)).join('\n');
    cond('Valid', 'False', 'InvalidSpec', msg);
    if (prev?.phase !== 'Invalid') events.push({ reason: 'InvalidSpec', message: msg, type: 'Warning' });
    return {
      status: { ...base, phase: 'Invalid', reason: 'InvalidSpec', message: msg, conditions, nodes: prev?.nodes ?? [] },
      actions,
      events,
    };
  }

  const job = spec.job;
  const hash = spec.hash;
  cond('Valid', 'True', 'SpecValid', 'spec is valid');
  const generation = prev?.specHash === hash ? base.observedGeneration : base.observedGeneration + 1;
  const status: JobStatus = { ...base, observedGeneration: generation, specHash: hash, conditions };
  if (prev?.specHash !== hash) {
    Object.assign(status, {
      attempt: 0,
      runId: undefined,
      startTime: undefined,
      completionTime: undefined,
      exitCode: undefined,
      failedRank: undefined,
      failedHost: undefined,
      logTail: undefined,
      progress: undefined,
      reason: undefined,
      message: undefined,
      rdzvEndpoint: undefined,
    });
  }
  const finish = (phase: Phase, reason: string, message: string, requeueAfterMs?: number): ReconcileResult => {
    status.phase = phase;
    status.reason = reason;
    status.message = message;
    status.conditions = conditions;
    if (prev?.phase !== phase || prev?.reason !== reason)
      events.push({ reason, message, type: phase === 'Failed' ? 'Warning' : 'Normal' });
    return { status, actions, requeueAfterMs, events };
  };

  // 3. Runs of an older spec are stopped: the spec changed, so it is a new generation.
  for (const r of liveRuns.filter((x) => x.specHash !== hash)) stopRun(r, 'spec changed');

  const mine = runs.filter((r) => r.specHash === hash);
  const current = mine[mine.length - 1];
  const cancelled = input.control?.cancel && (!input.control.cancel.specHash || input.control.cancel.specHash === hash);
  // A finished job stays finished: cancel or suspend after the fact changes nothing (as a
  // Kubernetes Job), rather than relabel a Succeeded run as Cancelled.
  const finishedAlready =
    prev?.specHash === hash &&
    (prev.phase === 'Succeeded' || prev.phase === 'Failed') &&
    !current?.parts.some((p) => p.alive);

  // 4. Cancel / suspend: stop the current run, keep the status.
  if ((cancelled || job.spec.suspend) && !finishedAlready) {
    const why = cancelled ? 'cancelled' : 'suspended';
    if (current) {
      stopRun(current, why, input.control?.cancel?.graceSeconds ?? cluster.defaultGraceSeconds);
      status.nodes = nodeStatuses(current, input.unreachable);
      status.runId = current.runId;
      status.attempt = current.attempt;
    }
    if (!current?.parts.some((p) => p.alive)) status.completionTime ??= now;
    cond('Running', 'False', cancelled ? 'Cancelled' : 'Suspended', `run ${why}`);
    return cancelled
      ? finish(
          'Cancelled',
          'Cancelled',
          `cancelled at ${input.control!.cancel!.requestedAt}`,
          current?.parts.some((p) => p.alive) ? 1000 : undefined,
        )
      : finish(
          'Suspended',
          'Suspended',
          'spec.suspend is true: run stopped, status kept',
          current?.parts.some((p) => p.alive) ? 1000 : undefined,
        );
  }

  // 5. A current run exists: observe it. One stopped on purpose (suspend now off, or a cancel
  // withdrawn) is not a failure: a new attempt starts below.
  const resuming = current && stoppedOnPurpose(current);
  if (current && !resuming) {
    status.attempt = current.attempt;
    status.runId = current.runId;
    status.rdzvEndpoint = current.meta.rdzvEndpoint;
    status.nodes = nodeStatuses(current, input.unreachable);
    const launched = current.parts.map((p) => p.launchedAtMs).filter((x): x is number => x !== undefined);
    status.startTime = iso(launched.length ? Math.min(...launched) : undefined) ?? status.startTime ?? now;
    const prog = current.parts.find((p) => p.metrics)?.metrics;
    if (prog) status.progress = prog;
    const hosts = current.meta.hosts;
    const missing = hosts.filter((h) => !current.parts.some((p) => p.host === h) && !input.unreachable.has(h));
    const unknown = hosts.filter((h) => input.unreachable.has(h));
    const anyFailed =
      current.parts.some(partFailed) ||
      current.parts.some((p) => p.ranks.some((r) => r.exitCode !== undefined && r.exitCode !== 0 && r.exitCode < 128));
    const allDone = hosts.every((h) => current.parts.some((p) => p.host === h && partDone(p)));
    const ageS = (input.now.getTime() - Date.parse(current.meta.createdAt)) / 1000;

    if (unknown.length)
      cond(
        'HostsReachable',
        'False',
        'HostUnreachable',
        unknown.map((h) => `${h}: ${input.unreachable.get(h)}`).join('; '),
      );
    else cond('HostsReachable', 'True', 'AllReachable', 'every host of the run answered');

    // Half-done launch (controller died mid-way): finish it while the rendezvous still waits.
    if (missing.length && !anyFailed && ageS < cluster.rdzvTimeoutSeconds) {
      const all = hosts.map((h, i) => ({ host: h, nodeRank: i, nproc: current.meta.nprocPerNode }));
      actions.push({
        type: 'launch',
        job: name,
        runId: current.runId,
        dir: current.dir,
        attempt: current.attempt,
        specHash: hash,
        parts: all.filter((p) => missing.includes(p.host)),
        allParts: all,
        rdzvHost: hosts[0],
        port: current.meta.masterPort,
        createdAt: current.meta.createdAt,
      });
      events.push({
        reason: 'LaunchResumed',
        message: `finishing a half-done launch of ${current.runId} on ${missing.join(', ')}`,
      });
      return finish('Starting', 'Launching', `launching on ${missing.join(', ')}`, 1000);
    }

    // Gang semantics: one node failing fails the run; stop the rest now rather than let them hang.
    if ((anyFailed || (missing.length && ageS >= cluster.rdzvTimeoutSeconds)) && current.parts.some((p) => p.alive)) {
      stopRun(current, 'gang member failed', 5);
      return finish('Running', 'Failing', 'a node failed: stopping the others', 1000);
    }

    if (!allDone && !(missing.length && ageS >= cluster.rdzvTimeoutSeconds)) {
      if (
        job.spec.activeDeadlineSeconds &&
        status.startTime &&
        (input.now.getTime() - Date.parse(status.startTime)) / 1000 > job.spec.activeDeadlineSeconds
      ) {
        stopRun(current, 'deadline exceeded');
        status.completionTime = now;
        cond(
          'Running',
          'False',
          'DeadlineExceeded',
          `ran longer than activeDeadlineSeconds (${job.spec.activeDeadlineSeconds} s)`,
        );
        return finish(
          'Failed',
          'DeadlineExceeded',
          `ran longer than activeDeadlineSeconds (${job.spec.activeDeadlineSeconds} s)`,
        );
      }
      const nRanks = status.nodes.reduce((n, x) => n + x.globalRanks.length, 0);
      // A host that stops answering mid-run does not send the job back to Starting: its ranks
      // were up (the HostsReachable condition says what is wrong).
      const wasRunning = prev?.phase === 'Running' && prev.runId === current.runId;
      const started =
        (current.parts.length === hosts.length ||
          (wasRunning && current.parts.length + unknown.length === hosts.length)) &&
        current.parts.every((p) => p.ranks.length > 0);
      cond(
        'Running',
        'True',
        started ? 'RanksRunning' : 'Rendezvous',
        started ? `${nRanks} ranks running on ${hosts.length} hosts` : 'torchrun started; waiting for all ranks',
      );
      // The runtime also holds a waiter per part that wakes us on exit; this is only a safety net.
      // Nothing wakes us when ranks come up (waiters fire on exit), so look again soon while
      // starting; once running, the waiters report exits and 30 s is only a safety net.
      return finish(
        started ? 'Running' : 'Starting',
        started ? 'Running' : 'Rendezvous',
        `attempt ${current.attempt}: ${started ? `${nRanks} ranks on ${hosts.join(', ')}` : 'waiting for rendezvous'}`,
        unknown.length ? 5000 : started ? 30_000 : 1000,
      );
    }

    // Every part is done (or some never came up in time).
    const finished = current.parts.map((p) => p.finishedAtMs).filter((x): x is number => x !== undefined);
    const doneAt = finished.length ? Math.max(...finished) : input.now.getTime();
    // Stopped for its deadline: final, never a restartable failure (even if the status write
    // after the stop was lost).
    if (current.parts.some((p) => p.cancelled === 'deadline exceeded')) {
      status.completionTime ??= iso(doneAt);
      const msg = `ran longer than activeDeadlineSeconds (${job.spec.activeDeadlineSeconds ?? '?'} s)`;
      cond('Running', 'False', 'DeadlineExceeded', msg);
      return finish('Failed', 'DeadlineExceeded', msg);
    }
    if (!anyFailed && !missing.length && current.parts.every((p) => p.exitCode === 0)) {
      status.completionTime = iso(doneAt);
      cond('Running', 'False', 'Completed', 'all ranks exited 0');
      cond('Complete', 'True', 'Succeeded', `attempt ${current.attempt} finished`);
      return finish('Succeeded', 'Succeeded', `all ranks exited 0 (attempt ${current.attempt})`);
    }
    const f = firstFailure(current);
    status.exitCode = f?.exitCode ?? 1;
    status.failedRank = f?.rank;
    status.failedHost = f?.host;
    status.logTail = f?.logTail.slice(-20);
    // Hosts that never came up are the cause when the only other exits are the parts UGRO itself
    // stopped after the rendezvous timed out.
    const onlyOurStops = current.parts.every((p) => p.exitCode === 0 || p.cancelled);
    const what =
      missing.length && (!f || onlyOurStops)
        ? `hosts ${missing.join(', ')} never started (rendezvous timed out after ${cluster.rdzvTimeoutSeconds} s)`
        : `rank ${f?.rank ?? '?'} on ${f?.host ?? '?'} exited with code ${status.exitCode}`;
    const max = job.spec.restartPolicy.maxRestarts;
    // Failed attempts of this spec, read from the hosts' run directories every time (so a
    // restarted controller counts the same); attempts stopped on purpose do not count.
    const failures = mine.filter((r) => !stoppedOnPurpose(r)).length;
    if (failures <= max) {
      const wait = Math.min(job.spec.restartPolicy.backoffSeconds * 2 ** (failures - 1), 600) * 1000;
      const due = doneAt + wait;
      if (input.now.getTime() < due) {
        cond(
          'Running',
          'False',
          'BackoffRestart',
          `${what}; restarting in ${Math.ceil((due - input.now.getTime()) / 1000)} s`,
        );
        return finish(
          'Queued',
          'BackoffRestart',
          `attempt ${current.attempt} failed: ${what}; restart ${failures} of ${max} after backoff`,
          due - input.now.getTime(),
        );
      }
      // Backoff over: fall through to schedule the next attempt.
      events.push({
        reason: 'Restarting',
        message: `attempt ${current.attempt} failed (${what}); starting attempt ${current.attempt + 1}`,
        type: 'Warning',
      });
    } else {
      status.completionTime = iso(doneAt);
      cond('Running', 'False', 'Failed', what);
      cond('Complete', 'False', 'Failed', what);
      return finish('Failed', 'RankFailed', `${what}${max ? ` (after ${max} restart${max === 1 ? '' : 's'})` : ''}`);
    }
  }

  // 6. Nothing running for this spec: schedule a new attempt.
  const attempt = (current?.attempt ?? 0) + 1;
  const s = schedule(job, cluster);
  if ('waiting' in s) {
    cond('Scheduled', 'False', 'Unschedulable', s.waiting);
    return finish('Queued', 'Unschedulable', s.waiting, 5000);
  }
  const port = freePort(cluster);
  const dir = runDirName(name, hash, attempt);
  const runId = runIdOf(name, hash, attempt);
  actions.push({
    type: 'launch',
    job: name,
    runId,
    dir,
    attempt,
    specHash: hash,
    parts: s.parts,
    allParts: s.parts,
    rdzvHost: s.parts[0].host,
    port,
    createdAt: now,
  });
  status.attempt = attempt;
  status.runId = runId;
  status.startTime = now;
  status.completionTime = undefined;
  status.nodes = s.parts.map((p) => ({ host: p.host, nodeRank: p.nodeRank, globalRanks: [], state: 'Pending' }));
  cond('Scheduled', 'True', 'Scheduled', `assigned ${s.parts.map((p) => p.host).join(', ')}`);
  if (resuming)
    events.push({
      reason: 'Resuming',
      message: `attempt ${current.attempt} was ${current.parts.find((p) => p.cancelled)?.cancelled}; starting attempt ${attempt}`,
    });
  events.push({
    reason: 'Scheduled',
    message: `attempt ${attempt} (${runId}) on ${s.parts.map((p) => p.host).join(', ')}`,
  });
  return finish(
    'Starting',
    'Launching',
    `launching attempt ${attempt} on ${s.parts.map((p) => p.host).join(', ')}`,
    2000,
  );
}

/** Queue order: higher priority first, then older. */
export function queueOrder(
  a: { priority: TrainingJob['spec']['priority']; createdAt: string; name: string },
  b: typeof a,
): number {
  return (
    priorityValue(b.priority) - priorityValue(a.priority) ||
    a.createdAt.localeCompare(b.createdAt) ||
    a.name.localeCompare(b.name)
  );
}
