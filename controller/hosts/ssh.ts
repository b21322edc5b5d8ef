/**
 * The SSH layer: one pooled ssh2 connection per host, reused across calls, with connect
 * timeout, keepalive, reconnect with capped backoff, host-key pinning against known_hosts,
 * argv-only exec (every word quoted), streaming output, and sftp upload.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { Socket } from 'node:net';
import { join, posix } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import ssh2, { type Client, type ClientChannel, type ConnectConfig, type SFTPWrapper } from 'ssh2';
import type { Host } from '../../config/cluster.ts';
import {
  findHostKeys,
  type HostKeyVerdict,
  hostNames,
  type KnownHostEntry,
  readKnownHosts,
  verifyHostKey,
} from '../../config/known-hosts.ts';
import { buildCommand } from '../../config/quote.ts';
import { HostError } from './errors.ts';

export type SshTarget = Pick<Host, 'name' | 'address' | 'port' | 'user' | 'hostname' | 'ssh'>;

export interface ExecOptions {
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string | Buffer;
  /** Keep stdin open (for commands that end when their stdin closes); ignored if stdin is given. */
  keepStdinOpen?: boolean;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
  /** Abort: closes the channel. The promise then resolves with what was gathered. */
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Bytes of stdout/stderr kept in the result (default 16 MiB each). */
  maxBuffer?: number;
}

interface ExitInfo {
  code: number | null;
  signal: string | null;
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** What the rest of the controller needs from hosts; tests can pass a recording fake. */
export interface RemoteExecutor {
  exec(host: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
}

export interface SshPoolOptions {
  env?: Record<string, string | undefined>;
  readFile?: (path: string) => Buffer;
  now?: () => number;
  /** Most channels open at once on one connection (OpenSSH's MaxSessions defaults to 10). */
  maxChannels?: number;
  /** Longest wait between reconnect attempts. */
  maxBackoffMs?: number;
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

/** One host's pooled connection. */
export class HostConnection {
  private client?: Client;
  private connecting?: Promise<Client>;
  private sftpP?: Promise<SFTPWrapper>;
  private failures = 0;
  private retryAt = 0;
  private lastError?: HostError;
  private active = 0;
  private queue: (() => void)[] = [];
  private closed = false;
  /** Milliseconds the last successful connect took. */
  lastConnectMs?: number;
  /** How many TCP+SSH connections this host has opened (for tests and benchmarks). */
  connectCount = 0;
  /** When the host last sent anything (keepalive replies included), ms since the epoch. */
  lastHeardAt?: number;

  constructor(
    readonly target: SshTarget,
    private readonly opts: Required<Pick<SshPoolOptions, 'env' | 'readFile' | 'now' | 'maxChannels' | 'maxBackoffMs'>>,
  ) {}

  get connected(): boolean {
    return !!this.client;
  }

  /** Forget backoff so the next call tries at once (e.g. after `lab start-host`). */
  resetBackoff(): void {
    this.failures = 0;
    this.retryAt = 0;
  }

  private authConfig(): Partial<ConnectConfig> {
    const { ssh, name } = this.target;
    const cfg: Partial<ConnectConfig> = {};
    if (ssh.identityFile) {
      let key: Buffer;
      try {
        key = this.opts.readFile(ssh.identityFile);
      } catch (e) {
        if (!(ssh.useAgent && this.opts.env.SSH_AUTH_SOCK)) {
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
        const passphrase = ssh.passphraseEnv ? this.opts.env[ssh.passphraseEnv] : undefined;
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
    if (ssh.useAgent && this.opts.env.SSH_AUTH_SOCK) cfg.agent = this.opts.env.SSH_AUTH_SOCK;
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

  private connect(): Promise<Client> {
    if (this.client) return Promise.resolve(this.client);
    if (this.connecting) return this.connecting;
    if (this.closed) return Promise.reject(new HostError(this.target.name, 'other', 'ssh: connection pool is closed'));
    const now = this.opts.now();
    if (this.lastError && now < this.retryAt) return Promise.reject(this.lastError);
    this.connecting = this.doConnect().then(
      (c) => {
        this.connecting = undefined;
        this.failures = 0;
        this.lastError = undefined;
        return c;
      },
      (e: HostError) => {
        this.connecting = undefined;
        this.failures++;
        this.lastError = e;
        // Capped exponential backoff so a dead host is not hammered; config and host-key
        // errors are not transient, but retrying them later is harmless.
        this.retryAt = this.opts.now() + Math.min(this.opts.maxBackoffMs, 250 * 2 ** (this.failures - 1));
        throw e;
      },
    );
    return this.connecting;
  }

  private doConnect(): Promise<Client> {
    const t = this.target;
    return new Promise<Client>((resolve, reject) => {
      let entries: KnownHostEntry[];
      let auth: Partial<ConnectConfig>;
      try {
        entries = readKnownHosts(t.ssh.knownHosts);
        auth = this.authConfig();
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
      const started = this.opts.now();
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
        this.lastConnectMs = this.opts.now() - started;
        this.connectCount++;
        // Small request/reply exchanges dominate (probes, launches): Nagle would add ~40 ms to each.
        client.setNoDelay(true);
        this.client = client;
        client.on('close', () => {
          if (this.client === client) {
            this.client = undefined;
            this.sftpP = undefined;
          }
        });
        resolve(client);
      });
      client.on('error', (err: Error & { level?: string; code?: string }) => {
        if (!settled) fail(this.classify(err, verdict));
        else if (this.client === client) {
          this.client = undefined;
          this.sftpP = undefined;
        }
      });
      client.on('close', () => {
        if (!settled)
          fail(
            new HostError(t.name, 'unreachable', `ssh: connection to ${t.address}:${t.port} closed during handshake`),
          );
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
        sock.on('data', () => {
          this.lastHeardAt = Date.now();
        });
      } catch (e) {
        fail(new HostError(t.name, 'other', `ssh: ${(e as Error).message}`));
      }
    });
  }

  private classify(err: Error & { level?: string; code?: string }, verdict?: HostKeyVerdict): HostError {
    const t = this.target;
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

  private async acquire(): Promise<void> {
    if (this.active < this.opts.maxChannels) {
      this.active++;
      return;
    }
    await new Promise<void>((r) => this.queue.push(r));
    this.active++;
  }

  private release(): void {
    this.active--;
    this.queue.shift()?.();
  }

  /** Open an exec channel; a stale pooled connection is replaced once. */
  private async openChannel(command: string): Promise<{ ch: ClientChannel; exit: ExitInfo }> {
    for (let attempt = 0; ; attempt++) {
      const client = await this.connect();
      try {
        return await new Promise<{ ch: ClientChannel; exit: ExitInfo }>((resolve, reject) => {
          client.exec(command, {}, (err, ch) => {
            if (err) return reject(err);
            // The exit status can arrive in the same packet burst as the channel opening; an
            // 'exit' listener attached after an await would miss it, so attach it here.
            const exit: ExitInfo = { code: null, signal: null };
            ch.on('exit', (c: number | null, s?: string) => {
              exit.code = c;
              exit.signal = s ?? null;
            });
            resolve({ ch, exit });
          });
        });
      } catch (e) {
        // The channel never opened, so the command never ran: safe to reconnect and retry once.
        if (this.client === client) {
          this.client = undefined;
          this.sftpP = undefined;
          client.end();
        }
        if (attempt >= 1)
          throw new HostError(this.target.name, 'channel', `ssh: cannot open a channel: ${(e as Error).message}`, {
            cause: e,
          });
      }
    }
  }

  /** Run argv on the host. Every word is quoted; nothing is pasted into the shell line. */
  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const command = buildCommand(argv, { env: opts.env, cwd: opts.cwd });
    await this.acquire();
    const started = this.opts.now();
    try {
      const { ch, exit } = await this.openChannel(command);
      return await new Promise<ExecResult>((resolve, reject) => {
        const max = opts.maxBuffer ?? 16 * 1024 * 1024;
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        let outLen = 0;
        let errLen = 0;
        let timer: NodeJS.Timeout | undefined;
        let settled = false;
        const result = (): ExecResult => ({
          code: exit.code,
          signal: exit.signal,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
          durationMs: this.opts.now() - started,
        });
        const finish = (fn: () => void) => {
          if (settled) return;
          settled = true;
          if (timer) clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
          fn();
        };
        // Timeout and abort settle at once, then kill the remote command: a wedged host must not
        // hold the caller until the channel happens to close.
        const kill = () => {
          try {
            ch.signal('KILL');
          } catch {
            /* the channel may already be gone */
          }
          ch.close();
        };
        const onAbort = () => {
          finish(() => resolve(result()));
          kill();
        };
        ch.on('data', (b: Buffer) => {
          opts.onStdout?.(b);
          if (outLen < max) {
            out.push(b);
            outLen += b.length;
          }
        });
        ch.stderr.on('data', (b: Buffer) => {
          opts.onStderr?.(b);
          if (errLen < max) {
            err.push(b);
            errLen += b.length;
          }
        });
        ch.on('close', () => finish(() => resolve(result())));
        if (opts.timeoutMs) {
          timer = setTimeout(() => {
            finish(() =>
              reject(
                new HostError(
                  this.target.name,
                  'timeout',
                  `command did not finish within ${opts.timeoutMs} ms: ${argv[0]}`,
                ),
              ),
            );
            kill();
          }, opts.timeoutMs);
        }
        if (opts.signal) {
          if (opts.signal.aborted) onAbort();
          else opts.signal.addEventListener('abort', onAbort, { once: true });
        }
        if (opts.stdin !== undefined) ch.end(opts.stdin);
        else if (!opts.keepStdinOpen) ch.end();
      });
    } finally {
      this.release();
    }
  }

  private sftp(): Promise<SFTPWrapper> {
    if (this.sftpP) return this.sftpP;
    const p = this.connect().then(
      (c) =>
        new Promise<SFTPWrapper>((resolve, reject) => {
          c.sftp((err, s) => {
            if (err) return reject(new HostError(this.target.name, 'channel', `sftp: ${err.message}`));
            s.on('close', () => {
              if (this.sftpP === p) this.sftpP = undefined;
            });
            resolve(s);
          });
        }),
    );
    this.sftpP = p;
    p.catch(() => {
      if (this.sftpP === p) this.sftpP = undefined;
    });
    return p;
  }

  /** Connect now if not connected (nothing is run on the host). */
  async ensureConnected(): Promise<void> {
    await this.connect();
  }

  /** A remote file as a stream (sftp). */
  async readStream(remotePath: string): Promise<Readable> {
    const s = await this.sftp();
    return s.createReadStream(remotePath);
  }

  /** A stream into a new remote file (sftp); the parent directory must exist. */
  async writeStream(remotePath: string, mode = 0o644): Promise<Writable> {
    const s = await this.sftp();
    return s.createWriteStream(remotePath, { mode });
  }

  /** Rename a remote file over another (POSIX rename: the target is replaced atomically). */
  async rename(from: string, to: string): Promise<void> {
    const s = await this.sftp();
    await new Promise<void>((resolve, reject) =>
      s.ext_openssh_rename(from, to, (e) =>
        e ? reject(new HostError(this.target.name, 'other', `sftp rename ${to}: ${e.message}`)) : resolve(),
      ),
    );
  }

  /** Write bytes to a remote file (parent directory must exist), atomically via a temp name. */
  async writeFile(remotePath: string, data: Buffer | string, mode = 0o644): Promise<void> {
    const s = await this.sftp();
    const tmp = `${remotePath}.ugro-tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    await new Promise<void>((resolve, reject) => s.writeFile(tmp, data, { mode }, (e) => (e ? reject(e) : resolve())));
    await new Promise<void>((resolve, reject) =>
      s.ext_openssh_rename(tmp, remotePath, (e) =>
        e ? reject(new HostError(this.target.name, 'other', `sftp rename ${remotePath}: ${e.message}`)) : resolve(),
      ),
    );
  }

  /** Upload a local file or directory tree to `remotePath`, creating directories. */
  async upload(localPath: string, remotePath: string): Promise<{ files: number; bytes: number }> {
    const st = statSync(localPath);
    const files: { local: string; remote: string; mode: number }[] = [];
    const dirs: string[] = [];
    if (st.isDirectory()) {
      const walk = (l: string, r: string) => {
        dirs.push(r);
        for (const ent of readdirSync(l, { withFileTypes: true })) {
          const lp = join(l, ent.name);
          const rp = posix.join(r, ent.name);
          if (ent.isDirectory()) walk(lp, rp);
          else if (ent.isFile()) files.push({ local: lp, remote: rp, mode: statSync(lp).mode & 0o777 });
        }
      };
      walk(localPath, remotePath);
    } else {
      dirs.push(posix.dirname(remotePath));
      files.push({ local: localPath, remote: remotePath, mode: st.mode & 0o777 });
    }
    const mk = await this.exec(['mkdir', '-p', '--', ...dirs]);
    if (mk.code !== 0) throw new HostError(this.target.name, 'other', `mkdir failed: ${mk.stderr.trim()}`);
    let bytes = 0;
    // A few files at a time: sftp pipelines well, but unbounded fan-out only queues.
    const pending = [...files];
    const worker = async () => {
      for (let f = pending.shift(); f; f = pending.shift()) {
        const data = readFileSync(f.local);
        bytes += data.length;
        await this.writeFile(f.remote, data, f.mode);
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, files.length) }, worker));
    return { files: files.length, bytes };
  }

  close(): void {
    this.closed = true;
    this.client?.end();
    this.client = undefined;
    this.sftpP = undefined;
  }
}

/** One connection per host, created on first use. */
export class SshPool implements RemoteExecutor {
  private readonly conns = new Map<string, HostConnection>();
  private readonly opts: Required<Pick<SshPoolOptions, 'env' | 'readFile' | 'now' | 'maxChannels' | 'maxBackoffMs'>>;

  constructor(
    private readonly targets: SshTarget[],
    options: SshPoolOptions = {},
  ) {
    this.opts = {
      env: options.env ?? process.env,
      readFile: options.readFile ?? ((p) => readFileSync(p)),
      now: options.now ?? (() => performance.now()),
      maxChannels: options.maxChannels ?? 8,
      maxBackoffMs: options.maxBackoffMs ?? 10_000,
    };
  }

  host(name: string): HostConnection {
    let c = this.conns.get(name);
    if (!c) {
      const t = this.targets.find((x) => x.name === name);
      if (!t) throw new HostError(name, 'config', `unknown host "${name}" (not in the cluster file)`);
      c = new HostConnection(t, this.opts);
      this.conns.set(name, c);
    }
    return c;
  }

  exec(host: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.host(host).exec(argv, opts);
  }

  close(): void {
    for (const c of this.conns.values()) c.close();
    this.conns.clear();
  }
}
