/**
 * A sweep's owner and who may change it, by the same rules as a job's (core/authorize.ts
 * authorizeSpec): the owner is set once, from the first accepted sweep spec (its file's writer; from
 * git the signer, else the unsigned owner), kept in the sweep's status; an admin may name another in
 * the `ugro.dev/owner` annotation; a change by anyone else is refused with an event naming them,
 * and the sweep goes on with the spec last accepted (jobs/.ugro/accepted/<name>.sweep.yaml).
 * The spec compared is the whole sweep spec (maxParallel too, which is no new generation).
 */
import { createHash } from 'node:crypto';
import { OWNER_ANNOTATION } from '../api/annotations.ts';
import type { JobSource } from '../api/job-source.ts';
import type { Sweep, SweepState } from '../api/sweep.ts';
import type { SweepStatus } from '../api/sweep-status.ts';
import { authorizeSpec } from '../core/authorize.ts';
import type { EventDraft } from '../core/types.ts';
import type { SweepFiles } from '../store/sweeps.ts';
import type { LoopContext } from './context.ts';

export interface SweepAuth {
  /** The spec to run the pass on: the file's, or the accepted one in place of a refused change. */
  spec: SweepState;
  owner?: { owner: string; by: string };
  /** The whole spec's hash the pass accepts (status.acceptedHash). */
  acceptedHash?: string;
  events: EventDraft[];
  denied?: string;
  /** A refused change with no accepted spec to go on with: the pass changes nothing. */
  hold?: boolean;
}

/** The whole sweep spec's hash: any change, maxParallel included. */
export function acceptedHashOf(sweep: Sweep): string {
  return createHash('sha256').update(JSON.stringify(sweep.spec)).digest('hex').slice(0, 16);
}

type Wrapped =
  | { kind: 'valid'; hash: string; writer?: string; state: SweepState }
  | { kind: 'invalid'; writer?: string; state: SweepState }
  | { kind: 'deleted'; state: SweepState };

function wrap(s: SweepState): Wrapped {
  if (s.kind === 'valid') return { kind: 'valid', hash: acceptedHashOf(s.sweep), writer: s.writer, state: s };
  if (s.kind === 'invalid') return { kind: 'invalid', writer: s.writer, state: s };
  return { kind: 'deleted', state: s };
}

export async function authorizeSweep(
  ctx: LoopContext,
  files: SweepFiles,
  source: JobSource | undefined,
  name: string,
  file: SweepState,
  prev: SweepStatus | undefined,
): Promise<SweepAuth> {
  const a = ctx.auth;
  if (!a) {
    // No account database (unit rigs of other parts): the annotation, else the writer, as jobs do.
    const o = file.kind === 'valid' ? (file.sweep.metadata.annotations?.[OWNER_ANNOTATION] ?? file.writer) : undefined;
    return { spec: file, ...(o ? { owner: { owner: o, by: 'annotation' } } : {}), events: [] };
  }
  const w = wrap(file);
  const changed = w.kind === 'invalid' || (w.kind === 'valid' && prev?.acceptedHash !== w.hash);
  const kept = changed && prev?.ownerBy ? await files.readAccepted(name) : undefined;
  const v = authorizeSpec<Wrapped>({
    ref: { name, kind: 'sweep' },
    spec: w,
    prev: prev && { owner: prev.owner, ownerBy: prev.ownerBy, specHash: prev.acceptedHash },
    source: await source?.infoFor(name),
    auth: { access: a.access, unsignedOwner: a.unsignedOwner, ...(kept ? { accepted: wrap(kept) } : {}) },
    wanted: file.kind === 'valid' ? file.sweep.metadata.annotations?.[OWNER_ANNOTATION] : undefined,
    said: (m) => prev?.denied === m,
  });
  const acceptedHash = v.spec.kind === 'valid' && !v.hold ? v.spec.hash : prev?.acceptedHash;
  return {
    spec: v.spec.state,
    ...(v.owner ? { owner: v.owner } : {}),
    ...(acceptedHash ? { acceptedHash } : {}),
    events: v.events,
    ...(v.denials.length ? { denied: v.denials.join('; ') } : {}),
    ...(v.hold ? { hold: true } : {}),
  };
}
