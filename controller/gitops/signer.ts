/**
 * Who signed a head: the principal git names after verifying a commit's SSH signature against the
 * allowed signers file (`Good "git" signature for PRINCIPAL with ED25519 key SHA256:…`).
 *
 * The principal IS the identity (issue 17): the allowed signers file, which the controller's
 * operator keeps, maps each key to a principal, and the jobs of a head signed with that key belong
 * to that principal. It is not looked up in the account database: a principal should be the lab's
 * login name of the key's owner (then the same person owns a job from git and from jobs/), but it
 * need not be an account on the controller's host. What git prints is hostile all the same (the
 * file may name `*`, `$(id)` or `x with RSA key …`): only a login-name-like principal is accepted.
 */

/** Longest principal kept (login names are at most 32; an e-mail-style principal a little more). */
export const MAX_PRINCIPAL = 64;

/** Login-name characters, plus `@` for the e-mail-style principals git's documentation shows. */
const PRINCIPAL = /^[a-z_][a-z0-9_.@-]*$/i;

export function isPrincipal(s: unknown): s is string {
  return typeof s === 'string' && s.length <= MAX_PRINCIPAL && PRINCIPAL.test(s);
}

/** git verify-commit's line for a good signature; the principal is checked after (isPrincipal). */
const GOOD = /^Good "git" signature for (.+) with [A-Za-z0-9-]+ key SHA256:[A-Za-z0-9+/=]+$/;

/**
 * The principal of a verified signature, from git's stderr, or why there is none that UGRO can
 * name an owner by (the head is then not applied: under --require-signed every job has a signer).
 */
export function signerOf(stderr: string): { ok: true; principal: string } | { ok: false; why: string } {
  const line = stderr.split('\n').find((l) => l.startsWith('Good "git" signature for '));
  const m = line ? GOOD.exec(line.trim()) : null;
  if (m && isPrincipal(m[1])) return { ok: true, principal: m[1] };
  // biome-ignore lint/suspicious/noControlCharactersInRegex: shown in a message: control characters go.
  const shown = (m?.[1] ?? line ?? '').replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').slice(0, MAX_PRINCIPAL);
  return {
    ok: false,
    why: m
      ? `the signature verifies, but its principal in the allowed signers file, "${shown}", is not a login name ` +
        `(letters, digits, "_", "-", ".", "@"; at most ${MAX_PRINCIPAL}): name each key by its owner's login name`
      : 'the signature verifies, but git did not name its signer ' +
        `(${shown ? `"${shown}"` : 'no "Good signature" line'})`,
  };
}
