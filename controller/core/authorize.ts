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
 * The spec rules (actor, owner, a change refused) are `authorizeSpec`, which a Sweep's pass uses
 * too (loop/sweeps.ts); `authorize` adds the control file's.
 */
import { OWNER_ANNOTATION } from '../api/annotations.ts';
import type { JobSourceInfo } from '../api/job-source.ts';
import type { JobStatus } from '../api/status.ts';
import type { AuthContext } from './authorize-types.ts';
import { type Access, type JobRef, permit } from './permissions.ts';
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

/** What the spec rules read of a spec file: a TrainingJob's (SpecState) or a Sweep's. */
export type SpecLike =
  | { kind: 'deleted' }
  | { kind: 'invalid'; writer?: string }
  | { kind: 'valid'; hash: string; writer?: string };

/** Who wrote this spec, and how we know. */
export function actorOf(
  spec: SpecLike,
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
  ref: JobRef,
  wanted: string | undefined,
  actor: string,
  by: string,
): { owner: string; by: string; event?: EventDraft } {
  if (!wanted || wanted === actor) return { owner: actor, by };
  const p = permit(access, actor, 'set-owner', ref, wanted);
  const noun = ref.kind ?? 'job';
  if (p.ok) return { owner: wanted, by: `set by admin ${actor}` };
  return {
    owner: actor,
    by,
    event: {
      reason: 'OwnerAnnotationIgnored',
      message: `the ${OWNER_ANNOTATION} annotation names ${wanted}, but the ${noun} is ${actor}'s: ${p.why}`,
      type: 'Warning',
      actor,
    },
  };
}

/** Has this message been said already (the Authorized condition carries the last one)? */
function said(prev: JobStatus | undefined, message: string): boolean {
  return prev?.conditions.find((c) => c.type === 'Authorized')?.message === message;
}

/** What the spec rules remember between passes (a job's status, a sweep's). */
export interface OwnerMemory {
  owner?: string;
  ownerBy?: string;
  /** The hash of the spec last accepted. */
  specHash?: string;
}

export interface SpecVerdict<S extends SpecLike> {
  /** The spec to go on with: the file's, or the accepted one in place of a forbidden change. */
  spec: S;
  owner?: { owner: string; by: string };
  events: EventDraft[];
  /** What was refused this pass, each said once (`said`). */
  denials: string[];
  /** A forbidden change with no accepted spec to go on with. */
  hold?: boolean;
  /** The account whose accepted change this pass acts on. */
  changedBy?: string;
}

/**
 * The spec rules for one spec file (a job's or a sweep's): its owner, set once from the first
 * accepted spec (an admin may name another in the annotation `wanted`), and whether a change is
 * its owner's or an admin's; `said(message)`: was this denial said already (no second event).
 */
export function authorizeSpec<S extends SpecLike>(o: {
  ref: JobRef;
  spec: S;
  prev: OwnerMemory | undefined;
  source: JobSourceInfo | undefined;
  auth: { access: Access; unsignedOwner: string; accepted?: S };
  wanted: string | undefined;
  said: (message: string) => boolean;
}): SpecVerdict<S> {
  const { access } = o.auth;
  const { spec, prev, ref } = o;
  const events: EventDraft[] = [];
  const denials: string[] = [];
  const established = prev?.owner && prev.ownerBy ? { owner: prev.owner, by: prev.ownerBy } : undefined;
  const { actor, by } = actorOf(spec, o.source, o.auth.unsignedOwner);
  let owner = established;
  let changedBy: string | undefined;
  const verdict = (s: S, hold?: boolean): SpecVerdict<S> => ({
    spec: s,
    ...(owner ? { owner } : {}),
    events,
    denials,
    ...(hold ? { hold } : {}),
    ...(changedBy ? { changedBy } : {}),
  });
  if (spec.kind === 'deleted' || !actor) return verdict(spec);
  const changed = spec.kind === 'invalid' || prev?.specHash !== spec.hash;
  const p =
    established && changed ? permit(access, actor, 'change-spec', { ...ref, owner: established.owner }) : undefined;
  if (p && !p.ok) {
    const a = o.auth.accepted;
    const accepted = a && a.kind === 'valid' && a.hash === prev?.specHash ? a : undefined;
    const goesOn = accepted
      ? `ignored: the ${ref.kind ?? 'job'} goes on with the spec ${established?.owner} applied`
      : `ignored: the ${ref.kind ?? 'job'} is held as it is`;
    denials.push(`${p.why} (${goesOn})`);
    if (!o.said(denials.join('; ')))
      events.push({ reason: 'Forbidden', message: `${p.why}; ${goesOn}`, type: 'Warning', actor });
    return accepted ? verdict(accepted) : verdict(spec, true);
  }
  if (spec.kind === 'valid') {
    if (changed) changedBy = actor;
    // The first accepted spec names the owner; later an admin may move the job to someone else.
    const isAdmin = access.admins.includes(actor);
    if (!established || (isAdmin && changed)) {
      const w = ownerFrom(access, ref, o.wanted, actor, by);
      if (!established || w.owner !== established.owner || w.by.startsWith('set by admin')) {
        owner = { owner: w.owner, by: w.by };
        if (w.event && !o.said(w.event.message)) events.push(w.event);
        if (w.event) denials.push(w.event.message);
      }
    }
  }
  return verdict(spec);
}

export function authorize<T extends AuthView>(input: T, auth: AuthContext | undefined): Authorized<T> {
  if (!auth) return { input, events: [] };
  const { access } = auth;
  const { spec, status: prev, name } = input;
  const v = authorizeSpec({
    ref: { name },
    spec,
    prev,
    source: input.source,
    auth: { access, unsignedOwner: auth.unsignedOwner, ...(auth.accepted ? { accepted: auth.accepted } : {}) },
    wanted: spec.kind === 'valid' ? spec.job.metadata.annotations?.[OWNER_ANNOTATION] : undefined,
    said: (m) => said(prev, m),
  });
  const { owner, events, denials, changedBy } = v;
  if (v.hold) return { input, owner, events, denied: denials.join('; '), hold: true };
  let out: T = v.spec === spec ? input : { ...input, spec: v.spec };

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
