/**
 * The CLI asks first what the controller enforces anyway (core/permissions.ts, core/authorize.ts):
 * a change to someone else's job is refused here with exit 4 (ForbiddenError) before anything is
 * written. The actor is the account this process runs as (the real uid, never $USER: over SSH, the
 * account SSH authenticated); the job's owner is its authenticated status.owner, else the account
 * that wrote its spec file; the admins are the cluster file's users.admins and the controller's
 * own account (the owner of jobs/.ugro).
 */
import { stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { usersSettings } from '../../config/users.ts';
import type { JobStatus } from '../api/status.ts';
import { type Access, accessOf, assertPermitted, type JobAction } from '../core/permissions.ts';
import { PasswdAccounts } from '../store/accounts.ts';
import type { CliContext } from './context.ts';

/** Who runs this command: the real uid's account. */
export function actor(): string {
  return userInfo().username;
}

const accounts = new PasswdAccounts();

/** The access rules: the cluster file's users: section (none if it cannot be read) and the controller's account. */
export async function accessFor(ctx: CliContext): Promise<Access> {
  const users = await ctx
    .loadCluster()
    .then((c) => usersSettings(c.raw.users))
    .catch(() => undefined);
  const own = await stat(join(ctx.jobsDir, '.ugro')).catch(() => stat(ctx.jobsDir).catch(() => undefined));
  return accessOf(users, own ? await accounts.nameOf(own.uid) : undefined);
}

/** A job's owner as the CLI can tell: the authenticated status owner, else its spec file's writer. */
export async function ownerOfJob(
  status: JobStatus | undefined,
  specFile: string | undefined,
): Promise<string | undefined> {
  if (status?.owner && status.ownerBy) return status.owner;
  const st = specFile ? await stat(specFile).catch(() => undefined) : undefined;
  return st ? accounts.nameOf(st.uid) : status?.owner;
}

/** Refuse (ForbiddenError, exit 4) unless this account may do `action` to the job. */
export async function mayI(
  ctx: CliContext,
  action: JobAction,
  job: { name: string; status?: JobStatus; specFile?: string },
  newOwner?: string,
): Promise<void> {
  const owner = await ownerOfJob(job.status, job.specFile);
  assertPermitted(await accessFor(ctx), actor(), action, { name: job.name, ...(owner ? { owner } : {}) }, newOwner);
}
