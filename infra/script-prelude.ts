/**
 * What every provisioning script starts with (infra/scripts.ts, infra/deploy-scripts.ts): strict
 * mode, the host and step names, the report helpers, and the sha256 check of a copied file.
 */

import { shQuote as q } from '../config/quote.ts';

/** Lines every script starts with: strict mode, the host/step names, and the report helpers. */
export function prelude(host: string, step: string): string {
  return [
    'set -eu',
    `host=${q(host)}`,
    `step=${q(step)}`,
    `fail() { printf '%s: %s\\n' "$host" "$*" >&2; exit 1; }`,
    `say() { printf 'ugro: %s: %s: %s\\n' "$host" "$step" "$*"; }`,
    `fact() { printf 'ugro-fact %s=%s\\n' "$1" "$2"; }`,
  ].join('\n');
}

/** Checks `sha256sum FILE` against the hash the program computed locally. */
export const CHECK_SHA = `check_sha() {
  [ -f "$1" ] || fail "$1 is missing: the copy step did not run; run pulumi up again"
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || \
fail "$1 has sha256 $got, expected $2: it was edited on the host or the copy failed; run pulumi up again"
}`;
