/**
 * Opening one ssh2 connection to a host: its login (a key or the agent), host-key pinning against
 * known_hosts (only the pinned key types are offered), the connect timeout, and what a failed
 * connect means (a HostError of the right kind, with the fix). Pooling, channels and sftp: ssh.ts.
 */
import { Socket } from 'node:net';
import ssh2, { type Client, type ConnectConfig } from 'ssh2';
import type { Host } from '../../../config/cluster.ts';
import {
  findHostKeys,
  type HostKeyVerdict,
  hostNames,
  type KnownHostEntry,
  readKnownHosts,
  verifyHostKey,
} from '../../../config/known-hosts.ts';
import { HostError } from '../errors.ts';

export type SshTarget = Pick<Host, 'name' | 'address' | 'port' | 'user' | 'hostname' | 'ssh'>;

/** What a connect needs of the pool's options (SshPoolOptions, ssh.ts). */
export interface ConnectOptions {
  env: Record<string, string | undefined>;
  readFile: (path: string) => Buffer;
  now: () => number;
}

/** What the host's pooled connection (HostConnection, ssh.ts) hears of the client it asked for. */
export interface ConnectHooks {
  /** The client is ready and is the host's connection now (called before the promise resolves). */
  ready(client: Client, connectMs: number): void;
  /** A ready client failed or closed. */
  lost(client: Client): void;
  /** The host sent bytes (keepalive replies included). */
  heard(): void;
}

// ssh2 is CommonJS; Node's ESM loader cannot see all of its named exports.
const { Client: SshClient, utils: sshUtils } = ssh2;

/** known_hosts key type -> the host-key algorithms that prove it (RSA keys sign with SHA-2). */
export const HOSTKEY_ALGOS: Record<string, string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
};

/** Ask only for the algorithms of the pinned key types, so a host with several keys shows the pinned one. */
export function hostKeyAlgorithms(keyTypes: readonly string[]): string[] {
  return [...new Set(keyTypes.flatMap((k) => HOSTKEY_ALGOS[k] ?? [k]))];
}

/** The login: the identity file (decrypted with its passphrase variable) and/or the agent. */
function authConfig(target: SshTarget, opts: ConnectOptions): Partial<ConnectConfig> {
  const { ssh, name } = target;
  const cfg: Partial<ConnectConfig> = {};
  if (ssh.identityFile) {
    let key: Buffer;
    try {
      key = opts.readFile(ssh.identityFile);
    } catch (e) {
      if (!(ssh.useAgent && opts.env.SSH_AUTH_SOCK)) {
        throw new HostError(
          name,
          'config',
          `ssh: cannot read key ${ssh.identityFile}: ${(e as Error).message} ` +
            '(set ssh.identity_file or ssh_key in the cluster file)',
        );
      }
      key = Buffer.alloc(0);
    }
    if (key.length) {
      const passphrase = ssh.passphraseEnv ? opts.env[ssh.passphraseEnv] : undefined;
      const parsed = sshUtils.parseKey(key, passphrase);
      if (parsed instanceof Error) {
        throw new HostError(
          name,
          'config',
          `ssh: cannot use key ${ssh.identityFile}: ${parsed.message}` +
            (ssh.passphraseEnv
              ? ''
              : ' (encrypted? set ssh.passphrase_env to the name of a variable holding its passphrase, ' +
                'or use ssh-agent)'),
        );
      }
      cfg.privateKey = key;
      if (passphrase) cfg.passphrase = passphrase;
    }
  }
  if (ssh.useAgent && opts.env.SSH_AUTH_SOCK) cfg.agent = opts.env.SSH_AUTH_SOCK;
  if (!cfg.privateKey && !cfg.agent) {
    throw new HostError(
      name,
      'config',
      'ssh: no key to log in with: set ssh.identity_file (or ssh_key on the host), ' +
        'or run ssh-agent with use_agent: true',
    );
  }
  return cfg;
}

/** A ready client logged in to `t`, its host key checked against the pins; a HostError otherwise. */
export function openClient(t: SshTarget, opts: ConnectOptions, hooks: ConnectHooks): Promise<Client> {
  return new Promise<Client>((resolve, reject) => {
    let entries: KnownHostEntry[];
    let auth: Partial<ConnectConfig>;
    try {
      entries = readKnownHosts(t.ssh.knownHosts);
      auth = authConfig(t, opts);
    } catch (e) {
      reject(e instanceof HostError ? e : new HostError(t.name, 'config', (e as Error).message));
      return;
    }
    const names = hostNames(t);
    // Not hostKeysOf(): a key both pinned and @revoked must still be asked for, so the
    // verifier can refuse it as revoked rather than call the host unknown.
    const pinned = findHostKeys(entries, names, t.port).filter((e) => e.marker !== '@revoked');
    if (!pinned.length) {
      reject(
        new HostError(
          t.name,
          'hostkey-unknown',
          `ssh: host key of ${t.address}:${t.port} is not in ${t.ssh.knownHosts}; ` +
            `check it and run \`ugro hosts trust ${t.name}\``,
        ),
      );
      return;
    }
    // Offer only the algorithms of the pinned keys, as OpenSSH does, so the server does not
    // pick a different (unpinned) key type and look "changed".
    const algos = hostKeyAlgorithms(pinned.map((e) => e.keyType));
    let verdict: HostKeyVerdict | undefined;
    const client = new SshClient();
    const started = opts.now();
    let settled = false;
    const timer = setTimeout(
      () =>
        fail(
          new HostError(
            t.name,
            'timeout',
            `ssh: no answer from ${t.address}:${t.port} within ${t.ssh.connectTimeoutMs / 1000} s ` +
              '(host down, asleep, or network cut?)',
          ),
        ),
      t.ssh.connectTimeoutMs + 200,
    );
    const fail = (e: HostError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.removeAllListeners('ready');
      client.on('error', () => {});
      client.end();
      client.destroy();
      reject(e);
    };
    client.on('ready', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      hooks.ready(client, opts.now() - started);
      // Small request/reply exchanges dominate (probes, launches): Nagle would add ~40 ms to each.
      client.setNoDelay(true);
      client.on('close', () => hooks.lost(client));
      resolve(client);
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (!settled) fail(classify(t, err, verdict));
      else hooks.lost(client);
    });
    client.on('close', () => {
      if (!settled)
        fail(new HostError(t.name, 'unreachable', `ssh: connection to ${t.address}:${t.port} closed during handshake`));
    });
    try {
      // Our own socket, so every byte the host sends (its keepalive replies too) says when it
      // last answered: node-loss detection reads lastHeardAt.
      const sock = new Socket();
      sock.on('error', () => {}); // ssh2 reports socket errors through the client
      sock.connect({ host: t.address, port: t.port });
      client.connect({
        sock,
        host: t.address,
        port: t.port,
        username: t.user,
        readyTimeout: t.ssh.connectTimeoutMs,
        keepaliveInterval: t.ssh.keepaliveMs,
        keepaliveCountMax: 3,
        algorithms: { serverHostKey: algos as never },
        hostVerifier: (key: Buffer) => {
          verdict = verifyHostKey(entries, names, t.port, key);
          return verdict.ok;
        },
        ...auth,
      });
      // After connect(): ssh2 has paused the socket, so listening does not start the flow early.
      sock.on('data', () => hooks.heard());
    } catch (e) {
      fail(new HostError(t.name, 'other', `ssh: ${(e as Error).message}`));
    }
  });
}

/** A failed connect as a HostError whose kind says what happened and whose message says the fix. */
function classify(t: SshTarget, err: Error & { level?: string; code?: string }, verdict?: HostKeyVerdict): HostError {
  const at = `${t.address}:${t.port}`;
  if (verdict && !verdict.ok) {
    if (verdict.reason === 'changed') {
      return new HostError(
        t.name,
        'hostkey-changed',
        `host key changed: REFUSING to connect to ${at}. ` +
          `Pinned: ${verdict.expected.join('; ')} in ${t.ssh.knownHosts}; presented: ${verdict.presented}. ` +
          'Someone may be intercepting the connection, or the host was reinstalled. ' +
          `If you trust the new key, remove the old line and run \`ugro hosts trust ${t.name}\`.`,
      );
    }
    if (verdict.reason === 'revoked')
      return new HostError(
        t.name,
        'hostkey-revoked',
        `host key ${verdict.presented} of ${at} is marked @revoked in ${t.ssh.knownHosts}: refusing to connect`,
      );
    return new HostError(
      t.name,
      'hostkey-unknown',
      `ssh: host key of ${at} is not pinned in ${t.ssh.knownHosts}; run \`ugro hosts trust ${t.name}\``,
    );
  }
  const code = err.code ?? '';
  if (code === 'ECONNREFUSED')
    return new HostError(t.name, 'refused', `ssh: connection refused by ${at} (is sshd running there?)`, {
      cause: err,
    });
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'EHOSTDOWN')
    return new HostError(t.name, 'unreachable', `ssh: ${at} is unreachable (${code}): host down or network cut?`, {
      cause: err,
    });
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return new HostError(
      t.name,
      'unreachable',
      `ssh: cannot resolve ${t.address} (${code}): fix the ip in the cluster file`,
      { cause: err },
    );
  if (code === 'ETIMEDOUT' || err.level === 'client-timeout')
    return new HostError(
      t.name,
      'timeout',
      `ssh: no answer from ${at} within ${t.ssh.connectTimeoutMs / 1000} s (host down, asleep, or network cut?)`,
      { cause: err },
    );
  if (err.level === 'client-authentication')
    return new HostError(
      t.name,
      'auth',
      `ssh: authentication failed for ${t.user}@${at}: is the public key in ~${t.user}/.ssh/authorized_keys?`,
      { cause: err },
    );
  if (code === 'ECONNRESET')
    return new HostError(t.name, 'unreachable', `ssh: connection reset by ${at}`, { cause: err });
  return new HostError(t.name, 'other', `ssh: ${err.message}`, { cause: err });
}
