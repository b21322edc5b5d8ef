/**
 * Where a job's file came from, when the jobs directory follows a git branch (GitOps). The git
 * source (controller/gitops/) works out a JobSourceInfo per job; the controller passes it into the
 * pure reconcile, and core/source.ts writes it into the status: `status.revision`, `status.source`,
 * and two conditions kept apart from the phase (as Argo CD keeps sync status apart from health):
 * `Synced` (the job's file equals the branch head) and `SourceReady` (the last fetch worked and
 * its head was applied).
 */
import { z } from 'zod';

/** Why a job is in or out of sync with its branch (the Synced condition's reason). */
export const SYNC_REASONS = [
  /** The file in jobs/ is the one at the branch head. */
  'Synced',
  /** The file was removed from the branch; not pruned (pruning off, or held back by the guard). */
  'RemovedFromGit',
  /** The file was removed from the branch and is being pruned (its run stops with its grace). */
  'Pruning',
  /** The file in jobs/ differs from the one git wrote (edited by hand, `ugro apply --force`). */
  'LocalChange',
  /** The file in jobs/ was never written from git (`ugro apply --force`, or there before). */
  'NotInGit',
  /** The branch head changes this file but is not applied (its signature did not verify). */
  'NotApplied',
  /** The branch has this file in a form UGRO refuses (a symlink, over 1 MiB, a directory). */
  'NotApplicable',
] as const;
export type SyncReason = (typeof SYNC_REASONS)[number];

/** Why the source is (not) ready: the SourceReady condition's reason. */
export const SOURCE_READY_REASONS = ['Fetched', 'FetchFailed', 'SignatureRefused', 'NotFetched'] as const;
export type SourceReadyReason = (typeof SOURCE_READY_REASONS)[number];

/** A commit as the job's status names it. */
export interface CommitInfo {
  /** Full SHA (40 hex for SHA-1 repositories, 64 for SHA-256). */
  revision: string;
  subject: string;
  /** `Name <email>` of the commit's author. */
  author: string;
  /** Author date, ISO 8601. */
  authorTime: string;
}

/** What the git source knows about one job, at the moment it is reconciled. */
export interface JobSourceInfo {
  /** The repository (never with credentials), branch and jobs path followed. */
  url: string;
  branch: string;
  /** The file's path in the repository (`jobs/train.yaml`), when git has or had it. */
  file?: string;
  /**
   * The commit the job's file was applied from: the last commit at or before the applied head
   * that changed the file. Unchanged by commits that touch other files only.
   */
  commit?: CommitInfo;
  /** The file in jobs/ is byte for byte what git wrote at `commit` (so its issues are the commit's). */
  fromGit: boolean;
  /**
   * The principal (allowed signers) whose SSH key signed the head this file was written from,
   * verified; absent for an unsigned head (its jobs belong to users.unsigned_owner).
   */
  signer?: string;
  synced: boolean;
  reason: SyncReason;
  message: string;
  ready: boolean;
  readyReason: SourceReadyReason;
  readyMessage: string;
  /**
   * The head this file was applied from rewrote the branch's history (a force-push): the revision
   * the branch no longer contains. Set until the next head is applied.
   */
  rewrittenFrom?: string;
}

/**
 * A source of job files beside people: the controller starts it after listing the hosts, asks it
 * about each job it reconciles, and stops it first. `onJobs` names jobs whose source info changed
 * (their files may not have).
 */
export interface JobSource {
  start(onJobs: (names: string[]) => void): Promise<void>;
  stop(): Promise<void>;
  infoFor(name: string): Promise<JobSourceInfo | undefined>;
}

/** `status.source`: the commit the job came from and its sync state, as written to the status file. */
export const jobSourceStatusSchema = z.object({
  url: z.string().max(1024),
  branch: z.string().max(256),
  file: z.string().max(1024).optional(),
  revision: z.string().max(64).optional(),
  subject: z.string().max(1024).optional(),
  author: z.string().max(512).optional(),
  authorTime: z.string().max(64).optional(),
  sync: z.enum(['Synced', 'OutOfSync']),
  reason: z.string().max(64),
});
export type JobSourceStatus = z.output<typeof jobSourceStatusSchema>;
