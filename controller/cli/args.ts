/**
 * Command-line values checked before anything uses them. Each failure is a UsageError (exit 2)
 * that names the flag, the allowed range and what was given. Pure and light (no schema library):
 * every command's startup imports it.
 */
import { UsageError } from '../../config/errors.ts';

function quoted(raw: string | undefined): string {
  return JSON.stringify(raw ?? '');
}

/** A whole number in min..max, written in decimal digits ("1e3", "0x10", "1.0" and "" are refused). */
export function intFlag(flag: string, raw: string, min: number, max: number): number {
  const n = /^-?\d{1,16}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`${flag} must be an integer ${min}..${max} (got ${quoted(raw)})`);
  return n;
}

/** Like intFlag, for an optional flag: undefined stays undefined. */
export function optionalIntFlag(flag: string, raw: string | undefined, min: number, max: number): number | undefined {
  return raw === undefined ? undefined : intFlag(flag, raw, min, max);
}

/** Seconds as a plain decimal number ("2", "0.5") in 0..max. */
export function secondsFlag(flag: string, raw: string, max: number): number {
  const n = /^\d{1,9}(\.\d{1,9})?$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(n >= 0 && n <= max)) throw new UsageError(`${flag} must be a number of seconds 0..${max} (got ${quoted(raw)})`);
  return n;
}

/** A finite number > 0 in plain or exponent notation ("0.01", "3e-4"). */
export function positiveNumberFlag(flag: string, raw: string): number {
  const n = /^\d*\.?\d+([eE][-+]?\d+)?$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(Number.isFinite(n) && n > 0)) throw new UsageError(`${flag} must be a number > 0 (got ${quoted(raw)})`);
  return n;
}

/** One of a fixed set of words. */
export function choiceFlag<T extends string>(flag: string, raw: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(raw))
    throw new UsageError(`${flag} must be one of ${allowed.join(', ')} (got ${quoted(raw)})`);
  return raw as T;
}

/**
 * A job name as the jobs directory spells it: a DNS-1123 label of at most 63 characters. Checked
 * before any path is built from it ("../victim" must never become jobs/../victim.yaml). The same
 * rule as isJobName in controller/store/store.ts (tests/unit/cli-exit.test.ts holds them equal);
 * repeated here so `ugro get jobs` can check names without loading the store's schemas.
 */
export function isJobName(name: string): boolean {
  return name.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name);
}

export function requireJobName(name: string, flag?: string): string {
  if (isJobName(name)) return name;
  const why = name.length > 63 ? 'at most 63 characters' : 'a DNS-1123 label: lowercase letters, digits and "-"';
  throw new UsageError(`${flag ? `${flag}: ` : ''}not a job name: ${JSON.stringify(name)} (${why})`);
}
