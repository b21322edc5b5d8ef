/** `ugro hosts trust` and `ugro hosts list`: pinning host keys in known_hosts, and showing the pins. */
import type { Host } from '../../config/cluster.ts';
import { appendKnownHost, fingerprint, hostKeysOf, hostNames, readKnownHosts } from '../../config/known-hosts.ts';
import { hostKeyAlgorithms } from '../backends/ssh/connect.ts';
import { fetchAllHostKeys, fetchHostKey, type PresentedKey } from '../backends/ssh/trust.ts';
import type { Io } from './context.ts';
import type { HostKeysRow } from './render/nodes.ts';

/** What `hosts list` shows for each host: its address and the keys pinned for it. */
export function hostKeyRows(hosts: Host[]): HostKeysRow[] {
  return hosts.map((h) => ({
    name: h.name,
    role: h.role,
    rank: h.rank,
    address: h.address,
    port: h.port,
    user: h.user,
    pinned: hostKeysOf(readKnownHosts(h.ssh.knownHosts), hostNames(h), h.port).pinned.map(
      (x) => `${x.keyType} ${fingerprint(x.key)}`,
    ),
  }));
}

/**
 * `ugro hosts trust` for one host; false when it refused. Nothing pinned yet: every key the host
 * offers (or those named by --fingerprint). Pinned already: only a check of the pinned types, and
 * new types only when --fingerprint names them (a key fetched over an unverified connection must
 * not widen trust by itself). A presented key that differs from a pin of its type is refused, and
 * a key marked @revoked is never pinned.
 */
export async function trustHost(h: Host, want: string[], io: Io): Promise<boolean> {
  const name = h.name;
  const file = h.ssh.knownHosts;
  const { pinned, revoked } = hostKeysOf(readKnownHosts(file), hostNames(h), h.port);
  const changed = (k: PresentedKey) => {
    const same = pinned.filter((e) => e.keyType === k.type);
    return same.length > 0 && !same.some((e) => e.key.equals(k.key));
  };
  const show = (k: PresentedKey) => `${k.type} ${k.fingerprint}`;
  const refuseChanged = (k: PresentedKey) => {
    const pins = pinned.map((e) => `${e.keyType} ${fingerprint(e.key)} line ${e.line}`).join('; ');
    io.err(
      `${name}: REFUSING: ${file} already pins a different key (${pins}); the host now presents ${show(k)}. ` +
        'If the host was reinstalled, delete those lines yourself, then trust again.',
    );
  };
  if (pinned.length && !want.length) {
    // Ask for the pinned types only: a host with ed25519 and ecdsa keys would otherwise show its
    // preferred one and look "changed".
    const k = await fetchHostKey(h, hostKeyAlgorithms(pinned.map((e) => e.keyType)));
    const same = pinned.find((e) => e.key.equals(k.key));
    if (same) {
      io.out(`${name}: ${k.type} ${k.fingerprint} already pinned in ${file} (line ${same.line})`);
      return true;
    }
    refuseChanged(k);
    return false;
  }
  // Every key the host offers (as ssh-keyscan shows them). All of them, because other SSH clients
  // (Pulumi's Go client among them) may negotiate another type than ours, and a pin of the wrong
  // type fails their handshake.
  const keys = await fetchAllHostKeys(h);
  const bad = keys.find(changed);
  if (bad) {
    refuseChanged(bad);
    return false;
  }
  const isPinned = (k: PresentedKey) => pinned.some((e) => e.key.equals(k.key));
  const isRevoked = (k: PresentedKey) => revoked.some((e) => e.key.equals(k.key));
  const named = want.length ? keys.filter((k) => want.includes(k.fingerprint)) : keys;
  if (want.length && !named.length) {
    io.err(
      `${name}: REFUSING: the host presents ${keys.map(show).join(', ')}; ` +
        `none has the fingerprint ${want.join(' or ')}`,
    );
    return false;
  }
  for (const k of named.filter(isRevoked))
    io.err(`${name}: not pinning ${k.type} ${k.fingerprint}: ${file} marks it @revoked`);
  const chosen = named.filter((k) => !isPinned(k) && !isRevoked(k));
  if (!chosen.length) {
    if (named.some(isRevoked) && !named.some(isPinned)) return false;
    io.out(
      `${name}: ${named
        .filter(isPinned)
        .map((k) => `${k.type} ${k.fingerprint}`)
        .join(', ')} already pinned in ${file}`,
    );
    return true;
  }
  const lines = chosen.map((k) =>
    appendKnownHost(
      file,
      [h.name, h.address].filter((v, i, a) => a.indexOf(v) === i),
      h.port,
      k.key,
    ),
  );
  io.out(
    `${name}: pinned in ${file}:\n${chosen.map((k, i) => `  ${show(k)}\n    ${lines[i].slice(0, 80)}…`).join('\n')}`,
  );
  const left = keys.filter((k) => !named.includes(k) && !isPinned(k) && !isRevoked(k));
  if (left.length) io.out(`${name}: not pinned (no --fingerprint given for them): ${left.map(show).join(', ')}`);
  return true;
}
