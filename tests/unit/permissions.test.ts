/**
 * Who may do what to a job (issue 17), pure: the owner or an admin may change, cancel, suspend,
 * resume or delete it; nobody else; only an admin may make a job someone else's; logs are open
 * unless users.logs is private; the refusal names who tried what and who may, and is exit 4.
 */
import { describe, expect, it } from 'vitest';
import { ForbiddenError, UgroError } from '../../config/errors.ts';
import type { UsersSettings } from '../../config/users.ts';
import { accessOf, assertPermitted, type JobAction, permit } from '../../controller/core/permissions.ts';

const USERS: UsersSettings = { admins: ['master'], logs: 'open', defaults: {}, quotas: {} };
const access = accessOf(USERS, 'ugro');
const OB_JOB = { name: 'ob-train', owner: 'ob' };
const CHANGES: JobAction[] = ['change-spec', 'cancel', 'suspend', 'resume', 'delete'];

describe('permit', () => {
  it('the owner may change, cancel, suspend, resume and delete their own job', () => {
    for (const a of CHANGES) expect(permit(access, 'ob', a, OB_JOB), a).toEqual({ ok: true });
  });

  it("an admin may act on anyone's job; so may the controller's own account", () => {
    for (const a of CHANGES) {
      expect(permit(access, 'master', a, OB_JOB), a).toEqual({ ok: true });
      expect(permit(access, 'ugro', a, OB_JOB), a).toEqual({ ok: true });
    }
  });

  it('anyone else is refused, with a reason naming who tried what and who may', () => {
    expect(permit(access, 'ollie', 'cancel', OB_JOB)).toEqual({
      ok: false,
      why: "ollie may not cancel ob's job ob-train: only ob or an admin (master, ugro) may",
    });
    expect(permit(access, 'ollie', 'change-spec', OB_JOB)).toMatchObject({
      ok: false,
      why: "ollie may not change the spec of ob's job ob-train: only ob or an admin (master, ugro) may",
    });
    for (const a of CHANGES) expect(permit(access, 'ollie', a, OB_JOB).ok, a).toBe(false);
  });

  it("a job with no known owner is an admin's to act on", () => {
    expect(permit(access, 'ob', 'delete', { name: 'old' })).toEqual({
      ok: false,
      why: 'ob may not delete job old: it has no known owner: only an admin (master, ugro) may',
    });
    expect(permit(access, 'master', 'delete', { name: 'old' }).ok).toBe(true);
  });

  it('an unauthenticated (empty) actor may do nothing, even to a job whose owner is empty', () => {
    expect(permit(access, '', 'cancel', { name: 'x', owner: '' }).ok).toBe(false);
    expect(permit(accessOf(undefined), '', 'cancel', { name: 'x', owner: '' }).ok).toBe(false);
  });

  it('set-owner: anyone may own what they make; only an admin may name someone else', () => {
    expect(permit(access, 'ollie', 'set-owner', { name: 'new' }, 'ollie').ok).toBe(true);
    expect(permit(access, 'ollie', 'set-owner', { name: 'new' }, 'ob')).toEqual({
      ok: false,
      why: "ollie may not make job new ob's: only an admin (master, ugro) may set an owner other than themself",
    });
    expect(permit(access, 'ollie', 'set-owner', OB_JOB, 'ollie').ok).toBe(false);
    expect(permit(access, 'master', 'set-owner', { name: 'new' }, 'ob').ok).toBe(true);
  });

  it('logs: open to everyone by default; owner and admins only when users.logs is private', () => {
    expect(permit(access, 'ollie', 'read-logs', OB_JOB).ok).toBe(true);
    const priv = accessOf({ ...USERS, logs: 'private' }, 'ugro');
    expect(permit(priv, 'ollie', 'read-logs', OB_JOB)).toEqual({
      ok: false,
      why:
        "ollie may not read the logs of ob's job ob-train: " +
        'only ob or an admin (master, ugro) may (users.logs is private)',
    });
    expect(permit(priv, 'ob', 'read-logs', OB_JOB).ok).toBe(true);
    expect(permit(priv, 'master', 'read-logs', OB_JOB).ok).toBe(true);
  });

  it("no users: section: only the owner and the controller's account", () => {
    const a = accessOf(undefined, 'ugro');
    expect(a).toEqual({ admins: ['ugro'], logs: 'open' });
    expect(permit(a, 'ollie', 'cancel', OB_JOB).ok).toBe(false);
    expect(permit(accessOf(undefined), 'ollie', 'cancel', OB_JOB)).toMatchObject({
      why:
        "ollie may not cancel ob's job ob-train: " +
        'only ob or an admin (none is named: add users.admins to the cluster file) may',
    });
  });
});

describe('assertPermitted', () => {
  it('throws ForbiddenError, exit code 4, with the reason', () => {
    let err: unknown;
    try {
      assertPermitted(access, 'ollie', 'cancel', OB_JOB);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ForbiddenError);
    expect(err).toBeInstanceOf(UgroError);
    expect((err as ForbiddenError).exitCode).toBe(4);
    expect((err as Error).message).toBe(
      "ollie may not cancel ob's job ob-train: only ob or an admin (master, ugro) may",
    );
    expect(() => assertPermitted(access, 'ob', 'cancel', OB_JOB)).not.toThrow();
  });
});
