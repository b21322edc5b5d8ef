/**
 * The SSH layer's pool: one ssh2 connection per host (opened by ssh-connect.ts), reused across
 * calls, with reconnect and capped backoff, a cap on open channels, argv-only exec (every word
 * quoted), streaming output, and sftp (streams, atomic writes, upload).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { Client, ClientChannel, SFTPWrapper } from 'ssh2';
import { buildCommand } from '../../../config/quote.ts';
import { HostError } from '../errors.ts';
import { openClient, type SshTarget } from './connect.ts';

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
    return openClient(this.target, this.opts, {
      ready: (client, ms) => {
        this.lastConnectMs = ms;
        this.connectCount++;
        this.client = client;
      },
      lost: (client) => {
        if (this.client === client) {
          this.client = undefined;
          this.sftpP = undefined;
        }
      },
      heard: () => {
        this.lastHeardAt = Date.now();
      },
    });
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
