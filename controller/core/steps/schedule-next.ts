/** Step 6: nothing runs for this spec: place a new attempt, or say why it waits. */
import { runDirName, runIdOf } from '../../api/run.ts';
import type { TrainingJob } from '../../api/trainingjob.ts';
import type { Draft } from '../draft.ts';
import { checkpointDir } from '../launch.ts';
import { freePort, schedule } from '../schedule.ts';
import type { ReconcileResult } from '../types.ts';
import type { ScheduleNext } from './observe-run.ts';

export function scheduleNext(d: Draft, job: TrainingJob, hash: string, next: ScheduleNext): ReconcileResult {
  const { name, cluster } = d.input;
  const s = schedule(job, cluster);
  if ('waiting' in s) {
    d.cond('Scheduled', 'False', 'Unschedulable', s.waiting);
    return d.finish('Queued', 'Unschedulable', s.waiting, 5000);
  }
  // An absolute checkpoint.dir must be under a checkpoint root of every chosen host (it is loaded
  // with torch.load): refuse the job rather than let it read or write elsewhere.
  for (const p of s.parts) {
    const h = cluster.hosts.find((x) => x.name === p.host)!;
    const c = checkpointDir(job, h);
    if (!c.ok) {
      d.cond('Valid', 'False', 'CheckpointDirNotAllowed', c.why);
      return d.finish('Invalid', 'CheckpointDirNotAllowed', c.why);
    }
  }
  const { attempt } = next;
  const port = freePort(cluster);
  const dir = runDirName(name, hash, attempt);
  const runId = runIdOf(name, hash, attempt);
  const hosts = s.parts.map((p) => p.host);
  d.actions.push({
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
    createdAt: d.now,
  });
  const st = d.status;
  st.attempt = attempt;
  st.runId = runId;
  st.startTime = d.now;
  st.completionTime = undefined;
  st.nextRetryAt = undefined;
  st.nodes = s.parts.map((p) => ({ host: p.host, nodeRank: p.nodeRank, globalRanks: [], state: 'Pending' }));
  d.cond('Scheduled', 'True', 'Scheduled', `assigned ${hosts.join(', ')}`);
  if (next.resuming) {
    const why = next.resuming.parts.find((p) => p.stopReason)?.stopReason;
    d.event('Resuming', `attempt ${next.resuming.attempt} was ${why}; starting attempt ${attempt}`);
  }
  d.event('Scheduled', `attempt ${attempt} (${runId}) on ${hosts.join(', ')}`);
  return d.finish('Starting', 'Launching', `launching attempt ${attempt} on ${hosts.join(', ')}`, 2000);
}
