/**
 * PURE: who may do what to a job (issue 17). Only the job's owner or an admin may change its spec,
 * cancel, suspend, resume or delete it; only an admin may make a job someone else's; logs are
 * open to everyone unless the cluster file says `users.logs: private`. The controller enforces
 * this on what it reads from jobs/ (a file can bypass the CLI); the CLI asks first, for exit 4.
 *
 *   const access = accessOf(usersSettings(cluster.raw.users), controllerUser);
 *   const p = permit(access, 'ollie', 'cancel', { name: 'ob-train', owner: 'ob' });
 *   if (!p.ok) ... p.why  // "ollie may not cancel ob's job ob-train: only ob or an admin (master) may"
 *   assertPermitted(...)  // the same, throwing ForbiddenError (exit 4)
 */
import { ForbiddenError } from '../../config/errors.ts';
import type { UsersSettings } from '../../config/users.ts';

export type JobAction =
  | 'change-spec'
  | 'cancel'
  | 'suspend'
  | 'resume'
  | 'delete'
  | 'set-owner'
  | 'read-logs'
  /** Register one of its checkpoints as a model version (ugro promote). */
  | 'promote';

/** What the decisions need of the users: section. */
export interface Access {
  /** users.admins, then the controller's own account (it owns jobs/ and every status anyway). */
  admins: readonly string[];
  logs: 'open' | 'private';
}

/** A job as permissions see it: its name and its authenticated owner (undefined: not known). */
export interface JobRef {
  name: string;
  owner?: string;
  /** What it is, in messages (a Sweep follows the same rules): job when unset. */
  kind?: 'job' | 'sweep';
}

export type Permission = { ok: true } | { ok: false; why: string };

/** The access rules of a cluster file (no users: section: only the controller's account is an admin). */
export function accessOf(users: UsersSettings | undefined, controllerUser?: string): Access {
  const admins = [...(users?.admins ?? [])];
  if (controllerUser && !admins.includes(controllerUser)) admins.push(controllerUser);
  return { admins, logs: users?.logs ?? 'open' };
}

export function isAdmin(access: Access, user: string): boolean {
  return !!user && access.admins.includes(user);
}

const VERB: Record<JobAction, string> = {
  'change-spec': 'change the spec of',
  cancel: 'cancel',
  suspend: 'suspend',
  resume: 'resume',
  delete: 'delete',
  'set-owner': 'set the owner of',
  'read-logs': 'read the logs of',
  promote: 'promote a checkpoint of',
};

function adminsText(access: Access): string {
  const a = access.admins;
  if (!a.length) return 'an admin (none is named: add users.admins to the cluster file)';
  return `an admin (${a.length > 3 ? `${a.slice(0, 3).join(', ')}, …` : a.join(', ')})`;
}

/**
 * May `actor` do `action` to `job`? For 'set-owner', `newOwner` is the owner asked for: anyone may
 * own what they make (a new job, or their own), only an admin may name someone else. A job with no
 * known owner is an admin's to act on. An empty actor (not authenticated) may do nothing but read
 * open logs.
 */
export function permit(access: Access, actor: string, action: JobAction, job: JobRef, newOwner?: string): Permission {
  if (isAdmin(access, actor)) return { ok: true };
  const owner = job.owner || undefined;
  const mine = !!actor && owner === actor;
  if (action === 'read-logs' && (access.logs === 'open' || mine)) return { ok: true };
  if (action === 'set-owner') {
    if (actor && newOwner === actor && (owner === undefined || mine)) return { ok: true };
    if (newOwner !== undefined && newOwner !== actor) {
      return {
        ok: false,
        why:
          `${actor || 'an unknown user'} may not make ${job.kind ?? 'job'} ${job.name} ${newOwner}'s: ` +
          `only ${adminsText(access)} may set an owner other than themself`,
      };
    }
  } else if (mine) return { ok: true };
  const noun = job.kind ?? 'job';
  const whose = owner ? `${owner}'s ${noun}` : noun;
  const who = owner
    ? `only ${owner} or ${adminsText(access)} may`
    : `it has no known owner: only ${adminsText(access)} may`;
  const logs = action === 'read-logs' ? ' (users.logs is private)' : '';
  return {
    ok: false,
    why: `${actor || 'an unknown user'} may not ${VERB[action]} ${whose} ${job.name}: ${who}${logs}`,
  };
}

/** permit(), throwing ForbiddenError (exit 4) with its reason when refused. */
export function assertPermitted(
  access: Access,
  actor: string,
  action: JobAction,
  job: JobRef,
  newOwner?: string,
): void {
  const p = permit(access, actor, action, job, newOwner);
  if (!p.ok) throw new ForbiddenError(p.why);
}
