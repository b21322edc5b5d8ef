/**
 * Step 6: nothing runs for this spec: place a new attempt, or say why it waits. A later attempt
 * (a restart, a resume after suspend or preemption) resumes from the newest complete checkpoint
 * of this spec, wherever it is: its holder is preferred as the new rank 0, and when another host
 * becomes rank 0 the checkpoint is copied there first (unless checkpoint.shared).
 */
import type { CheckpointInfo } from '../../api/run.ts';
import { runDirName, runIdOf } from '../../api/run.ts';
import type { TrainingJob } from '../../api/trainingjob.ts';
import { batchSplit, DEFAULT_BALANCE } from '../batch.ts';
import type { Draft } from '../draft.ts';
import { checkpointDir } from '../launch.ts';
import type { Holding } from '../placement.ts';
import { freePort, partsOf, runsOnSlurm, schedule } from '../schedule.ts';
import type { Action, LaunchAction, ReconcileResult, ScheduleNext } from '../types.ts';

/** Host clocks may be this far behind the controller's (health warns past 2 s). */
const CLOCK_SLACK_MS = 5000;

/** The newest complete checkpoint written since `since` (ms), by step, then by time. */
export function newestCheckpoint(
  list: readonly CheckpointInfo[],
  since: number | undefined,
): CheckpointInfo | undefined {
  let best: CheckpointInfo | undefined;
  for (const c of list) {
    if (since !== undefined && c.mtimeMs < since - CLOCK_SLACK_MS) continue;
    const step = c.step ?? -1;
    const bestStep = best?.step ?? -1;
    if (!best || step > bestStep || (step === bestStep && c.mtimeMs > best.mtimeMs)) best = c;
  }
  return best;
}

export function scheduleNext(d: Draft, job: TrainingJob, hash: string, next: ScheduleNext): ReconcileResult {
  const { name, cluster } = d.input;
  // Attempt 1 starts as the spec says (checkpoint.resumeFrom, or from scratch); later ones resume.
  const ckpt = next.attempt > 1 ? newestCheckpoint(d.input.checkpoints ?? [], next.since) : undefined;
  const prefer = [...(ckpt ? [ckpt.host] : []), ...(next.prefer ?? [])];
  // A host that did not answer this round gets no new work, whatever its last health check said.
  const down = new Map(cluster.down);
  for (const [h, why] of d.input.unreachable) if (!down.has(h)) down.set(h, `unreachable (${why})`);
  // The controller decides over the whole queue; a host unreachable this round still gets nothing.
  // (A Slurm job is Slurm's to place: never part of that plan.)
  const planned = runsOnSlurm(job, cluster.hosts) ? undefined : cluster.decision;
  const fromPlan = planned?.kind === 'place' && planned.nodes.some((n) => down.has(n.host)) ? undefined : planned;
  const decision = fromPlan ?? schedule(job, { ...cluster, down }, prefer);
  if (fromPlan) priorityCapped(d, fromPlan.capped);
  if (cluster.preemptedBy) {
    d.cond('Preempted', 'True', 'Preempted', `preempted by ${cluster.preemptedBy.job} at ${cluster.preemptedBy.at}`);
  }
  if (decision.kind === 'never') {
    // Only a verdict when every host's GPUs are known (observed, or declared in the inventory).
    const unknown = cluster.hosts.filter((h) => !cluster.ready.has(h.name) && !h.gpus.length);
    if (!unknown.length) {
      d.status.completionTime ??= d.now;
      d.cond('Scheduled', 'False', 'Unschedulable', decision.why);
      const where = decision.reason === 'QuotaExceeded' ? "within its owner's quota" : 'on this cluster';
      return d.finish('Failed', 'Unschedulable', `can never run ${where}: ${decision.why}`);
    }
  }
  if (decision.kind !== 'place') {
    const why = decision.why;
    if (decision.kind === 'preempt') preempt(d, decision.victims, name);
    const restart = next.afterFailure !== undefined;
    // The condition outlives the controller's memory of who preempted it (a restart).
    const preempted = !!cluster.preemptedBy || d.conditions.some((c) => c.type === 'Preempted' && c.status === 'True');
    const reason =
      decision.kind === 'preempt'
        ? 'Preempting'
        : decision.kind === 'wait' && decision.reason
          ? decision.reason
          : preempted && next.resuming
            ? 'Preempted'
            : restart
              ? 'WaitingForNodes'
              : 'Unschedulable';
    d.cond('Scheduled', 'False', reason, why);
    return d.finish('Queued', reason, why, decision.kind === 'preempt' ? 1000 : 5000);
  }
  // Out-of-memory ranks of earlier attempts keep their smaller micro batch (status.batchOverrides);
  // with balance: speed, the speeds measured by earlier attempts split the batch (core/batch.ts).
  const speeds = d.status.balance?.speeds;
  const split = batchSplit(job, partsOf(job, decision.nodes), d.status.batchOverrides, speeds);
  const parts = split.parts;
  // An absolute checkpoint.dir must be under a checkpoint root of every chosen host (it is loaded
  // with torch.load): refuse the job rather than let it read or write elsewhere.
  for (const p of parts) {
    const h = cluster.hosts.find((x) => x.name === p.host)!;
    const c = checkpointDir(job, h);
    if (!c.ok) {
      d.cond('Valid', 'False', 'CheckpointDirNotAllowed', c.why);
      return d.finish('Invalid', 'CheckpointDirNotAllowed', c.why);
    }
  }
  const attempt = Math.max(next.attempt, (d.input.attemptFloor ?? 0) + 1);
  const port = freePort(cluster);
  const dir = runDirName(name, hash, attempt);
  const runId = runIdOf(name, hash, attempt);
  const hosts = parts.map((p) => p.host);
  const rank0 = hosts[0];
  const has = (h: string) =>
    (d.input.checkpoints ?? []).some((c) => c.host === h && c.name === ckpt?.name && c.sizeBytes === ckpt?.sizeBytes);
  const copy =
    ckpt && !job.spec.checkpoint?.shared && !has(rank0) ? { from: ckpt.host, to: rank0, name: ckpt.name } : undefined;
  const action: LaunchAction = {
    type: 'launch',
    job: name,
    runId,
    dir,
    attempt,
    specHash: hash,
    parts,
    allParts: parts,
    rdzvHost: rank0,
    port,
    createdAt: d.now,
    ...(ckpt ? { resumeFrom: ckpt.name } : {}),
    ...(attempt > 1 ? { restartCount: attempt - 1 } : {}),
    ...(copy ? { copyCheckpoint: copy } : {}),
    ...(decision.backfill ? { backfill: true } : {}),
  };
  d.actions.push(action);
  const st = d.status;
  st.attempt = attempt;
  st.runId = runId;
  st.startTime = d.now;
  st.completionTime = undefined;
  st.nextRetryAt = undefined;
  if (job.spec.batch && split.basis) {
    st.balance = {
      mode: job.spec.batch.balance ?? DEFAULT_BALANCE,
      basis: split.basis,
      ranks: parts.flatMap((p) =>
        (p.batches ?? []).map((b, localRank) => ({
          host: p.host,
          localRank,
          batch: b.batch,
          micro: b.micro,
          accum: b.accum,
        })),
      ),
      ...(speeds?.length ? { speeds } : {}),
      ...(d.status.balance?.resplits?.length ? { resplits: d.status.balance.resplits } : {}),
    };
  }
  st.nodes = parts.map((p) => ({
    host: p.host,
    nodeRank: p.nodeRank,
    globalRanks: [],
    state: 'Pending',
    ...(p.gpus ? { gpus: p.gpus } : {}),
  }));
  d.cond('Scheduled', 'True', 'Scheduled', `assigned ${hosts.join(', ')}`);
  // Placed again after a preemption: the condition stays, saying it is over.
  if (d.conditions.some((c) => c.type === 'Preempted' && c.status === 'True'))
    d.cond('Preempted', 'False', 'Resumed', `placed again on ${hosts.join(', ')}`);
  const from = ckpt ? `resume from ${ckpt.name}${copy ? ` (copied from ${copy.from})` : ''}` : 'from the start';
  if (next.afterFailure) {
    d.event(
      'Restarting',
      `attempt ${attempt}, ${from}, on ${hosts.join(',')} ` +
        `(attempt ${next.afterFailure.attempt} failed: ${next.afterFailure.what})`,
      'Warning',
    );
  } else if (next.resuming) {
    const why = next.resuming.parts.find((p) => p.stopReason)?.stopReason;
    if (why !== 'port-busy')
      d.event('Resuming', `attempt ${next.resuming.attempt} was ${why}; starting attempt ${attempt}, ${from}`);
  }
  d.event('Scheduled', `attempt ${attempt} (${runId}) on ${hosts.join(', ')}`);
  return d.finish('Starting', 'Launching', `launching attempt ${attempt} on ${hosts.join(', ')}`, 2000);
}

/**
 * The PriorityCapped condition: the owner's max_priority lowered this job's priority (an event
 * the first time, or when the message changes); cleared when the plan no longer caps it.
 */
function priorityCapped(d: Draft, note: string | undefined): void {
  const had = d.conditions.find((c) => c.type === 'PriorityCapped');
  if (note) {
    if (had?.status !== 'True' || had.message !== note) d.event('PriorityCapped', note, 'Warning');
    d.cond('PriorityCapped', 'True', 'PriorityCapped', note);
  } else if (had?.status === 'True') {
    d.cond('PriorityCapped', 'False', 'NotCapped', "the priority in the spec is within its owner's max_priority");
  }
}

/** Stop the victims' runs so this job can have their GPUs (they resume later from a checkpoint). */
function preempt(d: Draft, victims: Holding[], by: string): void {
  const runs = new Map<string, Holding[]>();
  for (const v of victims) runs.set(v.runId, [...(runs.get(v.runId) ?? []), v]);
  for (const [runId, hs] of runs) {
    const stop: Action = {
      type: 'stop',
      runId,
      dir: hs[0].dir,
      hosts: [...new Set(hs.map((h) => h.host))],
      graceSeconds: hs[0].graceSeconds ?? d.input.cluster.defaultGraceSeconds,
      reason: 'preempted',
      job: hs[0].job,
      by,
    };
    d.actions.push(stop);
  }
}
