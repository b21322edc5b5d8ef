/**
 * Whom a job written from this terminal is said to belong to: --owner, else $UGRO_OWNER. Without
 * either, nothing is written: the job is the account's that writes the file (issue 17; the
 * controller reads the file's owner). Naming another account is an admin's to do (cli/authz.ts).
 * A value that is not a plain user name is refused rather than written into a job file.
 */
import { UsageError } from '../../config/errors.ts';
import type { Env } from './context.ts';

const OWNER = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export function ownerFrom(flag: string | undefined, env: Env): string | undefined {
  if (flag !== undefined) {
    if (!OWNER.test(flag)) {
      throw new UsageError(
        `--owner must be a user name (letters, digits, . _ @ -; at most 64), got ${JSON.stringify(flag)}`,
      );
    }
    return flag;
  }
  const v = env.UGRO_OWNER;
  return v !== undefined && OWNER.test(v) ? v : undefined;
}
