/** git's and ssh's stderr as a person can act on it: the lines that matter, and what a failed fetch means. */

export function firstMatch(text: string, re: RegExp): string | undefined {
  return re.exec(text)?.[0];
}

export function firstLine(text: string): string {
  return (
    text
      .split('\n')
      .find((l) => l.trim())
      ?.trim() ?? ''
  );
}

/** Lines of ssh's and git's stderr that say nothing a person can act on. */
const NOISE = new RegExp(
  [
    '^(@+|WARNING: |IT IS POSSIBLE|Someone could|It is also possible|Please contact',
    '|fatal: Could not read from remote repository|Please make sure you have the correct access rights',
    '|and the repository exists)',
  ].join(''),
);

/** git's last meaningful stderr lines, on one line (for a status message or a log field). */
export function lastLines(stderr: string, n = 2): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !NOISE.test(l));
  return lines.slice(-n).join('; ').slice(0, 2000) || 'no message';
}

/**
 * A failed fetch as a person can act on it. A host key that ssh refused is named as such; the
 * fingerprints are added by the source (it knows the pins).
 */
export function describeFetchError(stderr: string, branch: string): string {
  if (/couldn't find remote ref/i.test(stderr)) return `branch ${branch} not found in the repository`;
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED/.test(stderr)) return 'host key changed: refused';
  if (/Host key verification failed/.test(stderr)) return 'host key not pinned (unknown host): refused';
  return lastLines(stderr);
}

/** From OpenSSH's "host key changed" warning: the fingerprint the server sent, and the host as ssh named it. */
export function presentedKey(stderr: string): { fingerprint?: string; keyType?: string; host?: string } {
  const fp = /The fingerprint for the (\S+) key sent by the remote host is\s+(SHA256:[A-Za-z0-9+/=]+)/.exec(stderr);
  const host = /Host key for (\S+) has changed/.exec(stderr) ?? /No \S+ host key is known for (\S+) and/.exec(stderr);
  return { fingerprint: fp?.[2], keyType: fp?.[1], host: host?.[1] };
}
