/**
 * Requests to the controller about one job, written by the CLI to `jobs/<name>.control.yaml`
 * (`ugro cancel`). Read back as hostile input: validated before use, and scoped to the spec
 * version (hash) it was written for, so a cancel never reaches a later edit of the job.
 */
import { z } from 'zod';
import type { FieldIssue } from '../../config/errors.ts';
import { type ParseResult, parseYamlWith } from '../../config/parse.ts';

/** Longest grace a cancel may ask for (an hour): stop.sh waits this long at most. */
export const MAX_GRACE_SECONDS = 3600;

const graceSeconds = z
  .number({ error: `must be a number of seconds, 0..${MAX_GRACE_SECONDS}` })
  .min(0, `must be 0..${MAX_GRACE_SECONDS} seconds`)
  .max(MAX_GRACE_SECONDS, `must be 0..${MAX_GRACE_SECONDS} seconds`);

export const controlSchema = z.strictObject({
  cancel: z
    .strictObject({
      /** The spec hash of the version this cancel is for (`ugro cancel` records it). */
      specHash: z
        .string({ error: 'is required: the spec version this cancel is for' })
        .regex(/^[0-9a-f]{8}$/, 'must be 8 hex digits'),
      requestedAt: z.iso.datetime({ error: 'must be an ISO 8601 time' }),
      graceSeconds: graceSeconds.optional(),
    })
    .optional(),
});
export type Control = z.output<typeof controlSchema>;

export type ControlState =
  | { kind: 'none' }
  /** `writer`: the account that wrote the control file (its owner, as the OS reports it). */
  | { kind: 'valid'; control: Control; writer?: string }
  | { kind: 'invalid'; file: string; issues: FieldIssue[]; writer?: string };

export function parseControl(text: string): ParseResult<Control> {
  return parseYamlWith(text, controlSchema);
}

/** The cancel that applies to spec version `hash`, if any. */
export function cancelFor(state: ControlState | undefined, hash: string): Control['cancel'] | undefined {
  if (state?.kind !== 'valid') return undefined;
  const c = state.control.cancel;
  return c && c.specHash === hash ? c : undefined;
}
