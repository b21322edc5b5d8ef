/**
 * PURE decisions of the git source: which entries of the branch's jobs path are job files, what
 * to write into jobs/ and what to prune (with the mass-deletion guard), and each job's sync state.
 * No git, no fs: the source (source.ts) gathers the facts and carries out the plan.
 *
 * Everything read from git is hostile: an entry is a job file only if its name is a job name
 * (a DNS-1123 label, `.yaml` or `.yml`), it is a regular file (mode 100644/100755: never a symlink,
 * a submodule or a directory) of at most 1 MiB, directly under the path. Nothing else is written,
 * and no path is ever built from content.
 */

import type { CommitInfo, JobSourceInfo, SourceReadyReason, SyncReason } from '../api/job-source.ts';
import { MAX_FILE_BYTES } from '../store/files.ts';
import { isJobName } from '../store/store.ts';

/** A job file at a revision of the branch. */
export interface TreeJob {
  name: string;
  /** Base name in the repository and in jobs/ (`name.yaml` or `name.yml`). */
  file: string;
  /** Path in the repository (`jobs/name.yaml`). */
  repoFile: string;
  oid: string;
  size: number;
}

/** The jobs path at one revision, as UGRO sees it. */
export interface JobTree {
  jobs: Map<string, TreeJob>;
  /** Entries with a job's name that UGRO refuses to apply (symlink, too big, …): name -> why. */
  refused: Map<string, { repoFile: string; why: string }>;
  /** Other entries that look like job files but are not (`Bad_Name.yaml`): file -> why. */
  ignored: { file: string; why: string }[];
  /** The path does not exist at this revision (or is not a directory). */
  pathMissing: boolean;
}

/** What git last wrote into jobs/ for a job (the manifest, kept in the state dir). */
export interface AppliedJob {
  file: string;
  repoFile: string;
  oid: string;
  commit: CommitInfo;
  /** The applied head at which the file was found removed from the branch (prune decisions). */
  removedAt?: string;
  /** The verified principal who signed the head that wrote this file (--require-signed); unsigned: absent. */
  signer?: string;
}

/** A job file in jobs/ as it is now: its base name and blob id (what git would call its content). */
export interface LocalFile {
  file: string;
  oid: string;
}

const JOB_FILE = /^(.+)\.(yaml|yml)$/;

/**
 * Parse `git ls-tree -z -l` of the jobs path. `dir` is the path ('' for the root), to name
 * entries by their repository path.
 */
export function parseTree(raw: Buffer | string, dir: string, pathMissing = false): JobTree {
  const tree: JobTree = { jobs: new Map(), refused: new Map(), ignored: [], pathMissing };
  const text = typeof raw === 'string' ? raw : raw.toString('utf8');
  const prefix = dir ? `${dir}/` : '';
  for (const rec of text.split('\0')) {
    if (!rec) continue;
    const tab = rec.indexOf('\t');
    if (tab < 0) continue;
    const [mode, type, oid, sizeText] = rec.slice(0, tab).trim().split(/\s+/);
    const file = rec.slice(tab + 1);
    const m = JOB_FILE.exec(file);
    if (!m) continue; // README.md, a directory of other things: not a job file, not our business
    const name = m[1];
    const repoFile = `${prefix}${file}`;
    if (!isJobName(name)) {
      tree.ignored.push({
        file: repoFile,
        why: 'the name is not a job name (a DNS-1123 label: lowercase letters, digits and "-", at most 63)',
      });
      continue;
    }
    const why =
      mode === '120000'
        ? 'is a symbolic link; only regular files are applied'
        : mode === '160000'
          ? 'is a submodule; only regular files are applied'
          : type === 'tree'
            ? 'is a directory; only regular files are applied'
            : mode !== '100644' && mode !== '100755'
              ? `has mode ${mode}; only regular files are applied`
              : Number(sizeText) > MAX_FILE_BYTES
                ? `is ${sizeText} bytes; the limit is 1 MiB`
                : undefined;
    const other = tree.jobs.get(name) ?? undefined;
    if (why) {
      if (!other) tree.refused.set(name, { repoFile, why });
      continue;
    }
    // name.yaml wins over name.yml (as the store reads jobs/).
    if (other) {
      const keep = other.file.endsWith('.yaml') ? other : undefined;
      const dropped = keep ? repoFile : other.repoFile;
      tree.ignored.push({ file: dropped, why: `${name}.yaml and ${name}.yml both exist: ${name}.yaml is applied` });
      if (keep) continue;
    }
    tree.refused.delete(name);
    tree.jobs.set(name, { name, file, repoFile, oid, size: Number(sizeText) });
  }
  return tree;
}

export interface PlanInput {
  head: string;
  tree: JobTree;
  /** What git wrote before, by job name. */
  applied: Map<string, AppliedJob>;
  /** The job files in jobs/ now (for every name in the tree or the manifest that has one). */
  local: Map<string, LocalFile>;
  prune: boolean;
  pruneAll: boolean;
}

export interface Plan {
  /** Files to write from git (the blob `oid` of `job.file`); `replaces`: a file of the same job to remove. */
  write: { job: TreeJob; replaces?: string }[];
  /** In jobs/ already, byte for byte: only recorded as git's. */
  adopt: TreeJob[];
  /** Removed from the branch and pruned now: the file is deleted from jobs/ (its run stops with its grace). */
  prune: { name: string; file: string }[];
  /** Removed from the branch but kept (pruning off, the guard, changed locally): name -> why. */
  kept: Map<string, string>;
  /** Removed from the branch and already gone from jobs/: forgotten. */
  forget: string[];
  /** Set when the mass-deletion guard held the prunes back. */
  guard?: string;
}

/**
 * What to do to bring jobs/ to the branch head. Git moves a file only when git changed it: a file
 * in jobs/ that differs from what git wrote while git did not change it (an emergency `ugro apply
 * --force`) is left alone, out of sync, until the next commit that changes it.
 */
export function planSync(p: PlanInput): Plan {
  const plan: Plan = { write: [], adopt: [], prune: [], kept: new Map(), forget: [] };
  for (const job of p.tree.jobs.values()) {
    const before = p.applied.get(job.name);
    const local = p.local.get(job.name);
    if (local && local.oid === job.oid && local.file === job.file) {
      if (!before || before.oid !== job.oid || before.file !== job.file || before.removedAt) plan.adopt.push(job);
      continue;
    }
    if (!before || before.oid !== job.oid || before.file !== job.file) {
      const replaces =
        local && local.file !== job.file && (!before || local.oid === before.oid) ? local.file : undefined;
      plan.write.push({ job, ...(replaces ? { replaces } : {}) });
    }
    // else: git did not change it and jobs/ differs (or lost it): left alone, OutOfSync.
  }
  const candidates: { name: string; file: string }[] = [];
  for (const [name, a] of p.applied) {
    if (p.tree.jobs.has(name) || p.tree.refused.has(name)) continue;
    const local = p.local.get(name);
    if (!local) {
      plan.forget.push(name);
      continue;
    }
    if (local.oid !== a.oid || local.file !== a.file) {
      plan.kept.set(name, 'the file in jobs/ was changed there, so it is not pruned');
      continue;
    }
    candidates.push({ name, file: local.file });
  }
  if (!candidates.length) return plan;
  if (!p.prune) {
    for (const c of candidates) plan.kept.set(c.name, 'pruning is off (--prune): it keeps running');
    return plan;
  }
  const managed = [...p.applied.keys()].filter((n) => p.local.has(n)).length;
  const guard = massDeletion(candidates.length, managed, p.tree);
  if (guard && !p.pruneAll) {
    plan.guard = guard;
    for (const c of candidates) plan.kept.set(c.name, `not pruned: ${guard} (--prune-all allows it)`);
    return plan;
  }
  plan.prune = candidates;
  return plan;
}

/**
 * The mass-deletion guard: a commit that removes the whole path, or more than half of the jobs
 * git manages, is held back (a mis-merge must not kill a week of training). Why, or undefined.
 */
export function massDeletion(removed: number, managed: number, tree: JobTree): string | undefined {
  if (!removed) return undefined;
  if (tree.pathMissing) return 'the commit removes the whole jobs path';
  if (!tree.jobs.size && !tree.refused.size) return `the commit removes every job (${removed})`;
  if (removed * 2 > managed) return `the commit removes ${removed} of ${managed} jobs (more than half)`;
  return undefined;
}

/** The source as a whole, for the SourceReady condition. */
export interface SourceState {
  url: string;
  branch: string;
  /** The head applied last (jobs/ reflects it), if any. */
  applied?: string;
  /** The last fetch failed: why. */
  fetchError?: string;
  /** The fetched head is not applied: which and why (signature). */
  refused?: { revision: string; why: string };
  /** Nothing was ever fetched. */
  neverFetched: boolean;
}

export function readyOf(s: SourceState): { ready: boolean; readyReason: SourceReadyReason; readyMessage: string } {
  const at = s.applied ? `; jobs follow the last applied revision ${s.applied.slice(0, 12)}` : '';
  if (s.fetchError)
    return {
      ready: false,
      readyReason: 'FetchFailed',
      readyMessage: `cannot fetch ${s.branch} from ${s.url}: ${s.fetchError}${at}`,
    };
  if (s.refused)
    return {
      ready: false,
      readyReason: 'SignatureRefused',
      readyMessage: `head ${s.refused.revision.slice(0, 12)} of ${s.branch} is not applied: ${s.refused.why}${at}`,
    };
  if (s.neverFetched)
    return { ready: false, readyReason: 'NotFetched', readyMessage: `${s.branch} has not been fetched yet${at}` };
  return { ready: true, readyReason: 'Fetched', readyMessage: `${s.branch} of ${s.url} fetched and applied` };
}

export interface JobFacts {
  name: string;
  source: SourceState;
  /** The job at the applied head, and what UGRO refused there. */
  tree?: JobTree;
  /** The fetched head's tree when that head is not applied (refused). */
  refusedTree?: JobTree;
  applied?: AppliedJob;
  local?: LocalFile;
  /** Pruned by this controller (the file deleted because git removed it): at which head. */
  prunedAt?: string;
  /** Why a removal was not pruned (from the last plan). */
  keptWhy?: string;
  /** The applied head rewrote history (a force-push): the revision it dropped. */
  rewrittenFrom?: string;
}

/** Each job's JobSourceInfo (undefined: git knows nothing of it and jobs/ has no file). */
export function jobInfo(f: JobFacts): JobSourceInfo | undefined {
  const { source: s, applied: a, local } = f;
  const inTree = f.tree?.jobs.get(f.name);
  const refusedEntry = f.tree?.refused.get(f.name);
  const base = { url: s.url, branch: s.branch, ...readyOf(s) };
  const head = s.applied ? s.applied.slice(0, 12) : '?';
  const fromGit = !!(a && local && local.oid === a.oid && local.file === a.file);
  const out = (synced: boolean, reason: SyncReason, message: string, extra: Partial<JobSourceInfo> = {}) => ({
    ...base,
    ...(a ? { file: a.repoFile, commit: a.commit } : inTree ? { file: inTree.repoFile } : {}),
    fromGit,
    // The signer vouches for the bytes git wrote, not for a file changed in jobs/ since (its writer's).
    ...(fromGit && a?.signer ? { signer: a.signer } : {}),
    synced,
    reason,
    message,
    ...(f.rewrittenFrom ? { rewrittenFrom: f.rewrittenFrom } : {}),
    ...extra,
  });
  if (f.prunedAt && !local)
    return out(
      false,
      'Pruning',
      `removed from git at ${f.prunedAt.slice(0, 12)}: pruned (its run stops with its grace)`,
    );
  if (!a) {
    if (!local) return undefined;
    if (inTree && inTree.oid === local.oid)
      return out(true, 'Synced', `in sync with ${inTree.repoFile} at the branch head`);
    return out(
      false,
      'NotInGit',
      `jobs/${local.file} was not written from ${s.branch} (by hand or \`ugro apply --force\`): ` +
        `commit it to ${s.url} (${inTree ? `${inTree.repoFile} differs` : 'it is not in the branch'})`,
    );
  }
  if (!local)
    return out(
      false,
      'LocalChange',
      `jobs/${a.file} was deleted there while ${a.repoFile} is still in ${s.branch}: ` +
        'delete it in git, or git writes it again when the file changes',
    );
  if (local.oid !== a.oid || local.file !== a.file)
    return out(
      false,
      'LocalChange',
      `jobs/${local.file} differs from ${a.repoFile} at ${a.commit.revision.slice(0, 12)} (changed by hand or ` +
        '`ugro apply --force`): OutOfSync until git agrees; the next commit that changes the file wins',
    );
  if (!inTree) {
    if (refusedEntry)
      return out(
        false,
        'NotApplicable',
        `${refusedEntry.repoFile} at ${head} ${refusedEntry.why}: jobs/ keeps the version of ` +
          `${a.commit.revision.slice(0, 12)}`,
      );
    const at = (a.removedAt ?? s.applied ?? '?').slice(0, 12);
    return out(false, 'RemovedFromGit', `removed from git at ${at}; ${f.keptWhy ?? 'not pruned'}`);
  }
  if (inTree.oid !== a.oid) return out(false, 'NotApplied', `${inTree.repoFile} at ${head} is not applied yet`);
  const pending = f.refusedTree && s.refused ? f.refusedTree : undefined;
  if (pending) {
    const next = pending.jobs.get(f.name);
    if (!next || next.oid !== a.oid)
      return out(
        false,
        'NotApplied',
        `head ${s.refused!.revision.slice(0, 12)} ${next ? 'changes' : 'removes'} ${a.repoFile} but is not applied: ` +
          s.refused!.why,
      );
  }
  return out(true, 'Synced', `in sync with ${a.repoFile} at the branch head`);
}
