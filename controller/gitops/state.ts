/**
 * The git source's state as the CLI reads it (jobs/.ugro/git/state.json, written by the
 * controller): is this jobs dir following a branch, is the source healthy, what answered the last
 * `ugro sync`. Light on purpose (node:fs only, no schema library): `ugro get jobs` and `ugro apply`
 * load it on every run. Every field is checked here; a damaged file reads as "not following git".
 */
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UgroError } from '../../config/errors.ts';

export const STATE_VERSION = 1;

/** The pseudo job name of the source's own events in events.jsonl (`ugro events` shows them). */
export const SOURCE_EVENTS_JOB = '(git)';

export interface GitStateFile {
  v: number;
  /** false: the last controller on this dir ran without --git (the dir is a plain jobs dir again). */
  active: boolean;
  pid?: number;
  url: string;
  branch: string;
  path: string;
  intervalSeconds?: number;
  prune?: boolean;
  pruneAll?: boolean;
  requireSigned?: boolean;
  /** The head applied last (jobs/ reflects it). */
  applied?: string;
  appliedSubject?: string;
  /** The head fetched last (applied, or refused). */
  fetched?: string;
  ready: boolean;
  reason: string;
  message: string;
  failures?: number;
  refused?: { revision: string; why: string };
  guard?: string;
  outOfSync?: string[];
  ignored?: { file: string; why: string }[];
  lastFetchAt?: string;
  lastSuccessAt?: string;
  nextFetchAt?: string;
  /** The answer to the last `ugro sync`. */
  request?: { id: string; ok: boolean; message: string; revision?: string; at: string };
}

export function stateDir(jobsDir: string): string {
  return join(jobsDir, '.ugro', 'git');
}

/** state.json, checked; undefined when absent, unreadable or not a state file. */
export function readGitState(jobsDir: string): GitStateFile | undefined {
  let text: string;
  try {
    // A small file UGRO writes itself; readFileSync of a FIFO would block, so refuse anything odd first.
    const st = lstatSync(join(stateDir(jobsDir), 'state.json'), { throwIfNoEntry: false });
    if (!st?.isFile() || st.size > 1024 * 1024) return undefined;
    text = readFileSync(join(stateDir(jobsDir), 'state.json'), 'utf8');
  } catch {
    return undefined;
  }
  return parseGitState(text);
}

/** Pure: state.json's text to a checked GitStateFile. */
export function parseGitState(text: string): GitStateFile | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  const str = (v: unknown, max = 4096) => (typeof v === 'string' ? v.slice(0, max) : undefined);
  const bool = (v: unknown) => (typeof v === 'boolean' ? v : undefined);
  const url = str(r.url, 1024);
  const branch = str(r.branch, 256);
  if (r.v !== STATE_VERSION || !url || branch === undefined || typeof r.active !== 'boolean') return undefined;
  const req = typeof r.request === 'object' && r.request !== null ? (r.request as Record<string, unknown>) : undefined;
  const refused =
    typeof r.refused === 'object' && r.refused !== null ? (r.refused as Record<string, unknown>) : undefined;
  return {
    v: STATE_VERSION,
    active: r.active,
    ...(Number.isSafeInteger(r.pid) ? { pid: r.pid as number } : {}),
    url,
    branch,
    path: str(r.path, 512) ?? '',
    ...(bool(r.prune) !== undefined ? { prune: bool(r.prune) } : {}),
    ...(bool(r.requireSigned) !== undefined ? { requireSigned: bool(r.requireSigned) } : {}),
    ...(str(r.applied, 64) ? { applied: str(r.applied, 64) } : {}),
    ...(str(r.appliedSubject, 1000) ? { appliedSubject: str(r.appliedSubject, 1000) } : {}),
    ...(str(r.fetched, 64) ? { fetched: str(r.fetched, 64) } : {}),
    ready: r.ready === true,
    reason: str(r.reason, 64) ?? '',
    message: str(r.message) ?? '',
    ...(Number.isSafeInteger(r.failures) ? { failures: r.failures as number } : {}),
    ...(refused && str(refused.revision, 64) && str(refused.why)
      ? { refused: { revision: str(refused.revision, 64)!, why: str(refused.why)! } }
      : {}),
    ...(str(r.guard) ? { guard: str(r.guard) } : {}),
    ...(Array.isArray(r.outOfSync)
      ? { outOfSync: r.outOfSync.filter((x) => typeof x === 'string').slice(0, 100) }
      : {}),
    ...(Array.isArray(r.ignored)
      ? {
          ignored: r.ignored
            .filter(
              (i): i is { file: string; why: string } => typeof i?.file === 'string' && typeof i?.why === 'string',
            )
            .slice(0, 100)
            .map((i) => ({ file: i.file.slice(0, 1024), why: i.why.slice(0, 1024) })),
        }
      : {}),
    ...(str(r.lastSuccessAt, 64) ? { lastSuccessAt: str(r.lastSuccessAt, 64) } : {}),
    ...(str(r.nextFetchAt, 64) ? { nextFetchAt: str(r.nextFetchAt, 64) } : {}),
    ...(req && str(req.id, 64) && typeof req.ok === 'boolean'
      ? {
          request: {
            id: str(req.id, 64)!,
            ok: req.ok,
            message: str(req.message) ?? '',
            ...(str(req.revision, 64) ? { revision: str(req.revision, 64) } : {}),
            at: str(req.at, 64) ?? '',
          },
        }
      : {}),
  };
}

/** `url@branch` as people say it. */
export function sourceName(s: Pick<GitStateFile, 'url' | 'branch'>): string {
  return `${s.url}@${s.branch}`;
}

/**
 * `ugro apply`/`delete`/`launch`/`resume` on a jobs dir that follows git: refused (commit the
 * change instead), unless --force (an emergency: the job is then OutOfSync until git agrees).
 * Returns a warning to print when forced.
 */
export function refuseIfGitManaged(jobsDir: string, force: boolean | undefined): string | undefined {
  const s = readGitState(jobsDir);
  if (!s?.active) return undefined;
  if (!force)
    throw new UgroError(
      `this jobs dir follows ${sourceName(s)}: commit the change instead ` +
        '(--force overrides it in an emergency; the job is then OutOfSync until git agrees)',
    );
  return (
    `warning: this jobs dir follows ${sourceName(s)}: the job is OutOfSync until git agrees ` +
    "(git's next change of the file wins)"
  );
}

/**
 * One line about the source for `ugro get jobs` (stderr), or undefined when all is well: a source
 * that cannot fetch, a head refused for its signature, prunes held back by the guard.
 */
export function gitNote(s: GitStateFile | undefined): string | undefined {
  if (!s?.active) return undefined;
  const name = sourceName(s);
  const at = s.applied ? `; jobs follow ${s.applied.slice(0, 8)}` : '';
  if (s.refused) {
    const head = s.refused.revision.slice(0, 8);
    return `git: ${name}: head ${head} not applied: ${s.refused.why}${at} (SourceReady=False)`;
  }
  if (!s.ready) return `git: ${name}: ${s.message || s.reason} (SourceReady=False)`;
  if (s.guard) return `git: ${name}: ${s.guard}: not pruned (--prune-all allows it)${at}`;
  return undefined;
}
