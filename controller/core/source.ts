/**
 * PURE: what the git source knows about a job, written into its status. The git source decides
 * (controller/gitops/sync-plan.ts); this only records: `status.revision`, `status.source`, the owner,
 * the `Synced` and `SourceReady` conditions, and the events a person wants to read in `describe`
 * (a new revision applied, the file out of sync, history rewritten under it). Kept apart from the
 * phase: a job can be Running and OutOfSync (its file was removed from git with pruning off).
 */

import { OWNER_ANNOTATION } from '../api/annotations.ts';
import type { JobSourceInfo, JobSourceStatus } from '../api/job-source.ts';
import type { SpecState } from '../api/job-state.ts';
import { type JobStatus, setCondition } from '../api/status.ts';
import type { EventDraft, ReconcileInput, ReconcileResult } from './types.ts';

const SOURCE_CONDITIONS = ['Synced', 'SourceReady'];

/** `abc123def456` for messages (the status keeps the full SHA). */
function shortRev(rev: string): string {
  return rev.slice(0, 12);
}

/**
 * An invalid spec from git is reported against the commit and the file in the repository
 * (`<sha12>:jobs/x.yaml:5: spec.nodes: …`, git's rev:path naming) instead of the copy in jobs/,
 * when the copy is exactly what git wrote.
 */
export function specForSource(spec: SpecState, src: JobSourceInfo | undefined): SpecState {
  if (spec.kind !== 'invalid' || !src?.fromGit || !src.commit || !src.file) return spec;
  return { ...spec, file: `${shortRev(src.commit.revision)}:${src.file}` };
}

/** The job's owner: its annotation, else the author of the commit its file came from. */
function ownerOf(spec: SpecState, src: JobSourceInfo | undefined, prev?: string): string | undefined {
  if (spec.kind === 'valid') {
    const a = spec.job.metadata.annotations?.[OWNER_ANNOTATION];
    if (a) return a.slice(0, 512);
  }
  // An invalid spec has no readable annotations: keep who owned it.
  if (spec.kind === 'invalid' && prev) return prev;
  return src?.commit?.author;
}

/** Status with the source's view of the job recorded, and the events that go with the change. */
export function withSource(
  st: JobStatus,
  spec: SpecState,
  src: JobSourceInfo | undefined,
  prev: JobStatus | undefined,
  now: string,
): { status: JobStatus; events: EventDraft[] } {
  const s: JobStatus = { ...st };
  const events: EventDraft[] = [];
  if (prev?.ownerBy && prev.owner) {
    // Authenticated (core/authorize.ts): the annotation or a commit's author no longer moves it.
    s.owner = prev.owner;
    s.ownerBy = prev.ownerBy;
  } else {
    const owner = ownerOf(spec, src, prev?.owner);
    if (owner) s.owner = owner;
    else delete s.owner;
  }
  if (!src) {
    // Not (or no longer) following git: nothing of it stays in the status.
    delete s.revision;
    delete s.source;
    s.conditions = s.conditions.filter((c) => !SOURCE_CONDITIONS.includes(c.type));
    return { status: s, events };
  }
  const c = src.commit;
  const source: JobSourceStatus = {
    url: src.url,
    branch: src.branch,
    ...(src.file ? { file: src.file } : {}),
    ...(c ? { revision: c.revision, subject: c.subject, author: c.author, authorTime: c.authorTime } : {}),
    sync: src.synced ? 'Synced' : 'OutOfSync',
    reason: src.reason,
  };
  s.source = source;
  if (c) s.revision = c.revision;
  else delete s.revision;
  let conds = setCondition(
    s.conditions,
    { type: 'Synced', status: src.synced ? 'True' : 'False', reason: src.reason, message: src.message },
    now,
  );
  conds = setCondition(
    conds,
    { type: 'SourceReady', status: src.ready ? 'True' : 'False', reason: src.readyReason, message: src.readyMessage },
    now,
  );
  s.conditions = conds;

  if (c && prev?.revision !== c.revision) {
    events.push({
      reason: 'RevisionApplied',
      message: `${src.file ?? 'the file'} from commit ${shortRev(c.revision)} "${c.subject}" by ${c.author}`,
    });
    if (src.rewrittenFrom && prev?.revision)
      events.push({
        reason: 'HistoryRewritten',
        message:
          `${src.branch} was rewritten (force-pushed): it no longer contains ${shortRev(src.rewrittenFrom)}; ` +
          `applied ${shortRev(c.revision)} like any other head`,
        type: 'Warning',
      });
  }
  const before = prev?.conditions.find((x) => x.type === 'Synced');
  if (!src.synced && (before?.status !== 'False' || before.reason !== src.reason))
    events.push({ reason: 'OutOfSync', message: src.message, type: 'Warning' });
  else if (src.synced && before?.status === 'False') events.push({ reason: 'Synced', message: src.message });
  return { status: s, events };
}

/** reconcile()'s result with the source recorded (a removed status stays removed). */
export function applySource(input: ReconcileInput, res: ReconcileResult): ReconcileResult {
  if (!res.status) return res;
  const r = withSource(res.status, input.spec, input.source, input.status, input.now.toISOString());
  return { ...res, status: r.status, events: [...res.events, ...r.events] };
}

/**
 * For a job the controller skips (settled: nothing to do on the hosts): the status with the
 * source's view brought up to date, or undefined when nothing would change. A finished job's file
 * rewritten with comments only, or removed from git, still shows its new revision or OutOfSync.
 */
export function refreshSource(
  status: JobStatus,
  spec: SpecState,
  src: JobSourceInfo | undefined,
  now: Date,
): { status: JobStatus; events: EventDraft[] } | undefined {
  const r = withSource(status, spec, src, status, now.toISOString());
  return JSON.stringify(r.status) === JSON.stringify(status) ? undefined : r;
}
