/** `ugro hosts trust`: fetch a host's key (no login happens) so the user can pin it. */
import ssh2 from 'ssh2';
import { fingerprint, keyTypeOf } from '../../../config/known-hosts.ts';
import { HostError } from '../errors.ts';
import { HOSTKEY_ALGOS, type SshTarget } from './connect.ts';

export interface PresentedKey {
  key: Buffer;
  type: string;
  fingerprint: string;
}

/** Connect far enough to see the host key, then hang up (the verifier refuses, so no auth). */
export function fetchHostKey(t: SshTarget, algorithms?: readonly string[]): Promise<PresentedKey> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    let got: Buffer | undefined;
    const done = (e?: Error) => {
      clearTimeout(timer);
      c.removeAllListeners();
      c.on('error', () => {});
      c.destroy();
      if (got) resolve({ key: got, type: keyTypeOf(got), fingerprint: fingerprint(got) });
      else reject(e ?? new HostError(t.name, 'other', 'no host key presented'));
    };
    const timer = setTimeout(
      () =>
        done(
          new HostError(
            t.name,
            'timeout',
            `ssh: no answer from ${t.address}:${t.port} within ${t.ssh.connectTimeoutMs / 1000} s`,
          ),
        ),
      t.ssh.connectTimeoutMs + 200,
    );
    c.on('error', (e: Error & { code?: string }) =>
      done(
        got
          ? undefined
          : new HostError(
              t.name,
              e.code === 'ECONNREFUSED' ? 'refused' : 'unreachable',
              `ssh: ${e.code === 'ECONNREFUSED' ? `connection refused by ${t.address}:${t.port}` : e.message}`,
            ),
      ),
    );
    c.on('close', () => done());
    c.connect({
      host: t.address,
      port: t.port,
      username: t.user,
      readyTimeout: t.ssh.connectTimeoutMs,
      ...(algorithms?.length ? { algorithms: { serverHostKey: [...algorithms] as never } } : {}),
      hostVerifier: (key: Buffer) => {
        got = Buffer.from(key);
        return false;
      },
    });
  });
}

/**
 * Every key the host offers, one handshake per key type, in parallel (as ssh-keyscan does).
 * Only "no matching host key format" means the host lacks a type; any other failure (timeout,
 * reset, MaxStartups) is thrown, so a type is never silently left out of what gets pinned.
 */
export async function fetchAllHostKeys(t: SshTarget): Promise<PresentedKey[]> {
  const tries = await Promise.allSettled(Object.values(HOSTKEY_ALGOS).map((algos) => fetchHostKey(t, algos)));
  const keys: PresentedKey[] = [];
  for (const r of tries) {
    if (r.status === 'fulfilled') {
      if (!keys.some((k) => k.key.equals(r.value.key))) keys.push(r.value);
    } else if (!/no matching host key/i.test(String((r.reason as Error)?.message))) throw r.reason;
  }
  if (!keys.length)
    throw new HostError(t.name, 'other', 'the host offers no host key type UGRO knows (ed25519, ecdsa, rsa)');
  return keys;
}
