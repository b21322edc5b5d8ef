/**
 * A command run on the controller host with the system's OpenSSH client, as Docker does for
 * `DOCKER_HOST=ssh://…`. The remote side is plain `ugro`, run as the user SSH authenticated: no
 * daemon listens for this, only sshd.
 *
 * - `-F /dev/null`: no ssh config is read. A user's or the system's config could add a
 *   ProxyCommand, LocalCommand, RemoteCommand, a HostName alias or `StrictHostKeyChecking no`
 *   for the host; the context file is the whole configuration, so what UGRO trusts is decided here
 *   (the same rule as the GitOps ssh wrapper, controller/gitops/hardening.ts).
 * - Pinned keys only: StrictHostKeyChecking=yes against the context's knownHosts, the global
 *   file off, no key learnt or updated: an unknown or changed host key is refused.
 * - One connection shared by the commands that follow (ControlMaster=auto, ControlPersist), its
 *   socket in a private directory (0700, this user's) and named by everything that decides whom
 *   the connection trusts (as controller/gitops/mux.ts does), so a changed pin never rides on a
 *   connection made under the old one.
 * - The remote command is one string (ssh sends one to the remote shell): `exec` and every word
 *   quoted with shQuote, so each value is an argument, never program text. The local environment
 *   is not sent (ssh gets PATH, HOME and the agent's socket only; no SendEnv is configured).
 * - Ctrl-C, or this process dying, ends the remote command: ssh's stdin is a pipe held open for
 *   the command's life, and the remote ugro (`--exit-with-stdin`) exits when it closes. sshd
 *   itself does not stop a command without a terminal when the connection goes.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatSshHost, type SshTarget } from '../../../config/contexts.ts';
import { UgroError } from '../../../config/errors.ts';
import { buildCommand } from '../../../config/quote.ts';
import { readRegularFile } from '../../store/files.ts';
import type { Env } from '../context.ts';

/** Everything one remote command needs: where, with which pins and key, and what to run there. */
export interface Remote {
  /** For messages: `context lab` or `UGRO_HOST`. */
  label: string;
  target: SshTarget;
  knownHosts: string;
  identityFile?: string;
  /** The remote command's first words (`ugro`, or `node /opt/ugro/bin/ugro.mjs`). */
  ugro: string[];
  /** Idle seconds a shared connection stays; 0: none shared. */
  persistSeconds: number;
}

/** ssh's exit status for its own failures (a remote command's status is passed through). */
export const SSH_FAILED = 255;

/** The ssh arguments before the destination: everything decided here, nothing from a config file. */
export function sshOptions(r: Remote, controlPath: string | undefined): string[] {
  const o = (kv: string) => ['-o', kv];
  return [
    '-F',
    '/dev/null',
    ...o('BatchMode=yes'),
    ...o('StrictHostKeyChecking=yes'),
    ...o(`UserKnownHostsFile=${r.knownHosts}`),
    ...o('GlobalKnownHostsFile=/dev/null'),
    ...o('UpdateHostKeys=no'),
    ...o('CheckHostIP=no'),
    ...o('HashKnownHosts=no'),
    ...o('ConnectTimeout=10'),
    ...o('ServerAliveInterval=15'),
    ...o('ServerAliveCountMax=3'),
    ...o('ForwardAgent=no'),
    ...o('ForwardX11=no'),
    ...o('ClearAllForwardings=yes'),
    ...o('PermitLocalCommand=no'),
    ...o('RequestTTY=no'),
    ...o('LogLevel=ERROR'),
    ...(r.identityFile ? [...o('IdentitiesOnly=yes'), '-i', r.identityFile] : []),
    ...(controlPath
      ? [...o('ControlMaster=auto'), ...o(`ControlPath=${controlPath}`), ...o(`ControlPersist=${r.persistSeconds}`)]
      : o('ControlPath=none')),
    '-p',
    String(r.target.port),
    ...(r.target.user ? ['-l', r.target.user] : []),
  ];
}

/** The one string ssh hands the remote shell: `exec` and each word quoted. */
export function remoteCommand(words: readonly string[]): string {
  return buildCommand(words);
}

/** The full ssh argv for `args` (ugro's arguments on the remote side). */
export function sshArgv(r: Remote, controlPath: string | undefined, args: readonly string[]): string[] {
  return [...sshOptions(r, controlPath), r.target.host, remoteCommand([...r.ugro, ...args])];
}

/** This user's directory for control sockets: made 0700, refused if someone else owns it. */
export async function controlDir(env: Env): Promise<string> {
  const uid = process.getuid?.() ?? 0;
  const dir = env.XDG_RUNTIME_DIR?.startsWith('/') ? join(env.XDG_RUNTIME_DIR, 'ugro-ssh') : `/tmp/ugro-ssh-${uid}`;
  await mkdir(dir, { mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw new UgroError(`cannot create ${dir} (ssh control sockets): ${e.message}`);
  });
  const st = await lstat(dir);
  if (!st.isDirectory() || st.uid !== uid)
    throw new UgroError(
      `${dir} (where ugro keeps its ssh control sockets) is ` +
        `${st.isDirectory() ? `owned by uid ${st.uid}` : 'not a directory'}: ` +
        'someone else could hijack the connection. Remove it, or set XDG_RUNTIME_DIR to a private directory',
    );
  if (st.mode & 0o077) await chmod(dir, 0o700);
  return dir;
}

/**
 * The socket for this remote, named by user, host, port, key and the pins' content; undefined
 * (no sharing) when persistSeconds is 0 or the path would not fit a socket address.
 */
export async function controlPath(r: Remote, env: Env): Promise<string | undefined> {
  if (r.persistSeconds === 0) return undefined;
  const pins = await readRegularFile(r.knownHosts, 16 * 1024 * 1024);
  const id = createHash('sha256')
    .update(JSON.stringify([r.target.user ?? '', r.target.host, r.target.port, r.identityFile ?? '', r.knownHosts]))
    .update(pins.ok ? pins.text : '')
    .digest('hex')
    .slice(0, 16);
  const path = join(await controlDir(env), id);
  // sun_path is 108 bytes and ssh binds a longer temporary name first; %, ~ would be expanded by ssh.
  return path.length <= 80 && /^[A-Za-z0-9_./-]+$/.test(path) ? path : undefined;
}

/** What ssh's last words mean, and what to check. */
function hint(line: string, r: Remote): string {
  if (/host key verification failed|remote host identification has changed|no .* host key is known/i.test(line))
    return (
      `the host key of ${r.target.host} is not the one pinned in ${r.knownHosts} (or none is). Compare the ` +
      "host's own key (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub, run there) with " +
      `ssh-keygen -lf ${r.knownHosts}; ` +
      'pin it only when they match'
    );
  if (/permission denied/i.test(line))
    return (
      `the key was refused: is ${r.identityFile ?? 'your key'} in ~/.ssh/authorized_keys of ` +
      `${r.target.user ?? 'that user'} on ${r.target.host}?`
    );
  if (/could not resolve|name or service not known/i.test(line)) return `${r.target.host} does not resolve`;
  if (/refused|timed out|no route|unreachable/i.test(line))
    return `${r.target.host}:${r.target.port} does not answer: is sshd running there, and the address right?`;
  return 'check the host, its sshd and the key';
}

export interface RunOptions {
  /** What the remote command reads: a file's content, this process's stdin, or nothing (held open). */
  stdin: { kind: 'data'; data: string } | { kind: 'inherit' } | { kind: 'lifeline' };
  env: Env;
  /** Raw bytes of ssh's stderr (the remote command's too), passed on as they arrive. */
  stderr?: (chunk: Buffer) => void;
}

/**
 * Run `args` with ugro on the controller host; resolves to its exit code. ssh's own failure
 * (255) and a remote command that cannot be found (127) become a UgroError saying what to check.
 */
export async function runRemote(r: Remote, args: readonly string[], o: RunOptions): Promise<number> {
  const sock = await controlPath(r, o.env);
  const env: NodeJS.ProcessEnv = { PATH: o.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' };
  for (const k of ['HOME', 'USER', 'LOGNAME', 'SSH_AUTH_SOCK'] as const) if (o.env[k]) env[k] = o.env[k];
  const child = spawn('ssh', sshArgv(r, sock, args), {
    stdio: [o.stdin.kind === 'inherit' ? 'inherit' : 'pipe', 'inherit', 'pipe'],
    env,
  });
  let tail = '';
  child.stderr?.on('data', (b: Buffer) => {
    tail = (tail + b.toString('utf8')).slice(-2000);
    (o.stderr ?? ((c: Buffer) => process.stderr.write(c)))(b);
  });
  if (o.stdin.kind === 'data') child.stdin?.end(o.stdin.data);
  child.stdin?.on('error', () => undefined); // the remote side stopped reading: its exit code says why
  // Ctrl-C (or a kill) of this process: end ssh, which closes the remote command's stdin.
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (s: NodeJS.Signals) => {
    signalled = s;
    child.kill('SIGTERM');
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res, rej) => {
      child.once('error', rej);
      child.once('close', (code, signal) => res({ code, signal }));
    }).catch((e: NodeJS.ErrnoException) => {
      throw new UgroError(
        e.code === 'ENOENT'
          ? 'ssh is not installed here: remote use runs the system OpenSSH client (e.g. apt-get install openssh-client)'
          : `cannot run ssh: ${e.message}`,
        { cause: e },
      );
    });
    const s = signalled ?? signal;
    if (s) return 128 + ({ SIGINT: 2, SIGHUP: 1, SIGTERM: 15, SIGKILL: 9 } as Record<string, number>)[s];
    const where = `${formatSshHost(r.target)} (${r.label})`;
    if (code === SSH_FAILED) {
      const last = tail.trim().split('\n').filter(Boolean).pop() ?? '';
      throw new UgroError(`ssh to ${where} failed${last ? `: ${last}` : ''}; ${hint(last, r)}`);
    }
    if (code === 127 || code === 126)
      throw new UgroError(
        `the remote command ${JSON.stringify(r.ugro.join(' '))} was not found on ${where}: ` +
          'set `ugro:` in the context ' +
          '(e.g. `ugro context add NAME --host … --ugro "node /opt/ugro/bin/ugro.mjs"`)',
      );
    return code ?? 1;
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
}
