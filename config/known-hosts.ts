/**
 * OpenSSH known_hosts: parse, look up, fingerprint, append. Pure except the two small file
 * helpers at the bottom. Shared by the controller's SSH layer and the Pulumi program
 * (which pins `hostKey` on every connection).
 */
import { createHash, createHmac } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface KnownHostEntry {
  line: number;
  marker?: '@revoked' | '@cert-authority';
  patterns: string[];
  keyType: string;
  keyBase64: string;
  key: Buffer;
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const parts = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (parts[0] === '@revoked' || parts[0] === '@cert-authority') marker = parts.shift() as KnownHostEntry['marker'];
    if (parts.length < 3) return;
    const [hosts, keyType, keyBase64] = parts;
    let key: Buffer;
    try {
      key = Buffer.from(keyBase64, 'base64');
    } catch {
      return;
    }
    if (!key.length) return;
    out.push({ line: i + 1, marker, patterns: hosts.split(','), keyType, keyBase64, key });
  });
  return out;
}

/** How OpenSSH names a host in known_hosts: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globToRegExp(glob: string): RegExp {
  const re = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`, 'i');
}

function patternMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith('|1|')) {
    const [, , salt, hash] = pattern.split('|');
    if (!salt || !hash) return false;
    const h = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return h === hash;
  }
  return globToRegExp(pattern).test(name);
}

/** Does this entry's host list match `name` (negated patterns veto)? */
function entryMatches(e: KnownHostEntry, name: string): boolean {
  let hit = false;
  for (const p of e.patterns) {
    if (p.startsWith('!')) {
      if (patternMatches(p.slice(1), name)) return false;
    } else if (patternMatches(p, name)) hit = true;
  }
  return hit;
}

/** Entries (not cert authorities) that apply to any of the names the host is known by. */
export function findHostKeys(entries: KnownHostEntry[], names: string[], port: number): KnownHostEntry[] {
  const lookups = names.filter(Boolean).map((n) => knownHostsName(n, port));
  return entries.filter((e) => e.marker !== '@cert-authority' && lookups.some((n) => entryMatches(e, n)));
}

/** A host's known_hosts entries split into usable pins (never a key also marked @revoked) and revoked keys. */
export function hostKeysOf(
  entries: KnownHostEntry[],
  names: string[],
  port: number,
): { pinned: KnownHostEntry[]; revoked: KnownHostEntry[] } {
  const keys = findHostKeys(entries, names, port);
  const revoked = keys.filter((e) => e.marker === '@revoked');
  return { pinned: keys.filter((e) => !e.marker && !revoked.some((r) => r.key.equals(e.key))), revoked };
}

/** `SHA256:…` as `ssh-keygen -lf` prints it. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** Key type named inside an SSH public key blob (first length-prefixed string). */
export function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const n = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + n).toString('ascii');
}

export type HostKeyVerdict =
  | { ok: true; entry: KnownHostEntry }
  | { ok: false; reason: 'unknown' }
  | { ok: false; reason: 'changed'; expected: string[]; presented: string }
  | { ok: false; reason: 'revoked'; presented: string };

/** Pure decision: is the presented key pinned for this host? */
export function verifyHostKey(
  entries: KnownHostEntry[],
  names: string[],
  port: number,
  presented: Buffer,
): HostKeyVerdict {
  const matches = findHostKeys(entries, names, port);
  if (matches.some((e) => e.marker === '@revoked' && e.key.equals(presented)))
    return { ok: false, reason: 'revoked', presented: fingerprint(presented) };
  const pinned = matches.filter((e) => e.marker !== '@revoked');
  const hit = pinned.find((e) => e.key.equals(presented));
  if (hit) return { ok: true, entry: hit };
  if (!pinned.length) return { ok: false, reason: 'unknown' };
  return {
    ok: false,
    reason: 'changed',
    expected: pinned.map((e) => `${e.keyType} ${fingerprint(e.key)} (line ${e.line})`),
    presented: fingerprint(presented),
  };
}

/** Names a host may be listed under in known_hosts: its address, hostname and inventory name. */
export function hostNames(h: { address: string; hostname?: string; name: string }): string[] {
  return [...new Set([h.address, h.hostname, h.name].filter((x): x is string => !!x))];
}

// Pulumi's command provider (Go x/crypto/ssh) verifies against exactly one key. Whether it also
// restricts the handshake to that key's type is not documented; if not, Go's client proposes
// ECDSA first, then RSA, and ed25519 last, and the server takes the first it has. Pinning in
// that order is right either way: it is the type Go negotiates when known_hosts has several.
const PREFERENCE = ['ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'ssh-rsa', 'ssh-ed25519'];

/**
 * The pinned key for a host as "type base64" (what Pulumi's connection.hostKey takes): revoked
 * keys and CA lines never count; with several, the preferred type.
 */
export function pinnedHostKey(entries: KnownHostEntry[], names: string[], port: number): string | undefined {
  const { pinned: usable } = hostKeysOf(entries, names, port);
  const rank = (t: string) => PREFERENCE.indexOf(t) + 1 || PREFERENCE.length + 1;
  const best = [...usable].sort((a, b) => rank(a.keyType) - rank(b.keyType))[0];
  return best ? `${best.keyType} ${best.keyBase64}` : undefined;
}

export function readKnownHosts(file: string): KnownHostEntry[] {
  if (!existsSync(file)) return [];
  return parseKnownHosts(readFileSync(file, 'utf8'));
}

export function appendKnownHost(file: string, names: string[], port: number, key: Buffer): string {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const line = `${names.map((n) => knownHostsName(n, port)).join(',')} ${keyTypeOf(key)} ${key.toString('base64')}\n`;
  let prefix = '';
  if (existsSync(file)) {
    const cur = readFileSync(file, 'utf8');
    if (cur.length && !cur.endsWith('\n')) prefix = '\n';
  }
  appendFileSync(file, prefix + line, { mode: 0o600 });
  return line.trim();
}
