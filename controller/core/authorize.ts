/**
 * PURE: whose job this is and whether what changed was theirs to change (issue 17). Runs before the
 * reconcile steps, on what the store read:
 *  - the actor of a spec file is the account that wrote it (the file's owner, as the OS reports it);
 *    for a file applied from git, the principal whose key signed the head (verified against the
 *    allowed signers), else the configured owner of unsigned commits (the author is only shown);
 *  - the owner is set once, from the first accepted spec: the actor, or whom an admin names in the
 *    `ugro.dev/owner` annotation (anyone else's annotation is ignored, with an event);
 *  - a spec changed by someone who is neither the owner nor an admin has no effect: the job goes on
 *    with the spec its owner last applied (`accepted`), and an event names who tried;
 *  - a control file (cancel) written by such an account is ignored the same way.
 * Without `access` (no account database: unit tests of other steps) nothing here applies and the
 * owner is what core/source.ts reads from the annotation, as before.
 */
import { OWNER_ANNOTATION } from '../api/annotations.ts';
import type { JobSourceInfo } from '../api/job-source.ts';
import type { SpecState } from '../api/job-state.ts';
import type { JobStatus } from '../api/status.ts';
import type { AuthContext } from './authorize-types.ts';
import { type Access, permit } from './permissions.ts';
import type { EventDraft, ReconcileInput } from './types.ts';

/** What authorize reads of a reconcile's input. */
export type AuthView = Pick<ReconcileInput, 'name' | 'spec' | 'status' | 'control' | 'source'>;

export interface Authorized<T extends AuthView = ReconcileInput> {
  /** The input the steps run on: the accepted spec in place of a forbidden one, a forbidden control dropped. */
  input: T;
  /** The authenticated owner and how it was established; undefined: not authenticated (no access). */
  owner?: { owner: string; by: string };
  events: EventDraft[];
  /** Why something was refused this pass (the Authorized condition's message). */
  denied?: string;
  /** A forbidden change with no accepted spec to go on with: keep the status, do nothing. */
  hold?: boolean;
  /** The account whose accepted change (a new or changed spec) this pass acts on: its events name them. */
  changedBy?: string;
}

/** Who wrote this spec, and how we know. */
export function actorOf(
  spec: SpecState,
  src: JobSourceInfo | undefined,
  unsignedOwner: string,
): { actor?: string; by: string } {
  if (spec.kind === 'deleted') return { by: '' };
  if (src?.fromGit) {
    const rev = src.commit ? ` ${src.commit.revision.slice(0, 12)}` : '';
    if (src.signer) return { actor: src.signer, by: `signed commit${rev}` };
    const author = src.commit?.author;
    return { actor: unsignedOwner, by: `unsigned commit${rev}${author ? ` by ${author} (unverified)` : ''}` };
  }
  return spec.writer ? { actor: spec.writer, by: 'file owner' } : { by: '' };
}

/** The owner a first accepted spec gives the job, and an event when its annotation was not honoured. */
function ownerFrom(
  access: Access,
  name: string,
  spec: Extract<SpecState, { kind: 'valid' }>,
  actor: string,
  by: string,
): { owner: string; by: string; event?: EventDraft } {
  const wanted = spec.job.metadata.annotations?.[OWNER_ANNOTATION];
  if (!wanted || wanted === actor) return { owner: actor, by };
  if (permit(access, actor, 'set-owner', { name }, wanted).ok) return { owner: wanted, by: `set by admin ${actor}` };
  const p = permit(access, actor, 'set-owner', { name }, wanted);
  const why = p.ok ? '' : p.why;
  return {
    owner: actor,
    by,
    event: {
      reason: 'OwnerAnnotationIgnored',
      message: `the ${OWNER_ANNOTATION} annotation names ${wanted}, but the job is ${actor}'s: ${why}`,
      type: 'Warning',
      actor,
    },
  };
}

/** Has this message been said already (the Authorized condition carries the last one)? */
function said(prev: JobStatus | undefined, message: string): boolean {
  return prev?.conditions.find((c) => c.type === 'Authorized')?.message === message;
}

export function authorize<T extends AuthView>(input: T, auth: AuthContext | undefined): Authorized<T> {
  if (!auth) return { input, events: [] };
  const { access } = auth;
  const { spec, status: prev, name } = input;
  const events: EventDraft[] = [];
  const established = prev?.owner && prev.ownerBy ? { owner: prev.owner, by: prev.ownerBy } : undefined;
  const { actor, by } = actorOf(spec, input.source, auth.unsignedOwner);
  let owner = established;
  let out = input;
  const denials: string[] = [];
  let changedBy: string | undefined;

  if (spec.kind !== 'deleted' && actor) {
    const changed = spec.kind === 'invalid' || prev?.specHash !== spec.hash;
    const p =
      established && changed ? permit(access, actor, 'change-spec', { name, owner: established.owner }) : undefined;
    if (p && !p.ok) {
      const accepted = auth.accepted && auth.accepted.hash === prev?.specHash ? auth.accepted : undefined;
      const goesOn = accepted
        ? `ignored: the job goes on with the spec ${established?.owner} applied`
        : 'ignored: the job is held as it is';
      denials.push(`${p.why} (${goesOn})`);
      if (!said(prev, denials.join('; ')))
        events.push({ reason: 'Forbidden', message: `${p.why}; ${goesOn}`, type: 'Warning', actor });
      if (!accepted) return { input, owner, events, denied: denials.join('; '), hold: true };
      out = { ...out, spec: accepted };
    } else if (spec.kind === 'valid') {
      if (changed) changedBy = actor;
      // The first accepted spec names the owner; later an admin may move the job to someone else.
      const isAdmin = access.admins.includes(actor);
      if (!established || (isAdmin && changed)) {
        const o = ownerFrom(access, name, spec, actor, by);
        if (!established || o.owner !== established.owner || o.by.startsWith('set by admin')) {
          owner = { owner: o.owner, by: o.by };
          if (o.event && !said(prev, o.event.message)) events.push(o.event);
          if (o.event) denials.push(o.event.message);
        }
      }
    }
  }

  const c = out.control;
  const writer = c && c.kind !== 'none' ? c.writer : undefined;
  if (c && c.kind !== 'none' && writer && owner) {
    const p = permit(access, writer, 'cancel', { name, owner: owner.owner });
    if (!p.ok) {
      const msg = `${p.why} (ignored: the job goes on)`;
      denials.push(msg);
      if (!said(prev, denials.join('; ')))
        events.push({ reason: 'Forbidden', message: msg, type: 'Warning', actor: writer });
      out = { ...out, control: { kind: 'none' } };
    }
  }
  return {
    input: out,
    ...(owner ? { owner } : {}),
    events,
    ...(denials.length ? { denied: denials.join('; ') } : {}),
    ...(changedBy ? { changedBy } : {}),
  };
}
