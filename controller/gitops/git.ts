/**
 * Real git (Debian's `git`), run as a program with argv: never a shell line, never a value pasted
 * into program text. Everything git reads from its environment is set here, from scratch:
 *   - no user or system config (GIT_CONFIG_GLOBAL=/dev/null, GIT_CONFIG_NOSYSTEM), no hooks, no
 *     credential helper, no terminal prompt, only the ssh/https/http/file transports;
 *   - ssh through GIT_SSH = a small fixed wrapper (SSH_WRAPPER below, written into the state dir)
 *     that runs OpenSSH with UGRO's pinned known_hosts and key, StrictHostKeyChecking=yes and no
 *     ssh config: the paths reach it as environment variables, not as text;
 *   - https with a token through GIT_ASKPASS = a fixed script printing an environment variable
 *     of git's child (the token lives only in this process's memory and that environment).
 * The clone is bare: nothing from the repository is ever checked out onto the file system; files
 * are read from the object database by id.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UgroError } from '../../config/errors.ts';
import { GIT_PROTOCOLS } from '../../config/gitops.ts';
import { writeFileAtomic } from '../store/files.ts';

/** GIT_SSH: OpenSSH with UGRO's pins. Fixed text: every value comes from the environment. */
const SSH_WRAPPER = `#!/bin/sh
# Written by UGRO: git's ssh (GIT_SSH) for \`ugro controller --git\`. OpenSSH with UGRO's pinned
# known_hosts and key only; no ssh config is read. Paths come from the environment, never from here.
set -eu
if [ -n "\${UGRO_GIT_SSH_IDENTITY:-}" ]; then
  set -- -o IdentitiesOnly=yes -i "$UGRO_GIT_SSH_IDENTITY" "$@"
fi
exec ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UpdateHostKeys=no \\
  -o CheckHostIP=no -o GlobalKnownHostsFile=/dev/null -o "UserKnownHostsFile=$UGRO_GIT_SSH_KNOWN_HOSTS" \\
  -o "ConnectTimeout=\${UGRO_GIT_SSH_CONNECT_TIMEOUT:-5}" -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \\
  -o LogLevel=ERROR "$@"
`;

/** GIT_ASKPASS: the user name, then the token, from git's environment. */
const ASKPASS = `#!/bin/sh
# Written by UGRO: git's askpass for https with a token. The token is in git's environment only.
case "\${1:-}" in
  Username*) printf '%s\\n' "\${UGRO_GIT_USERNAME:-x-access-token}" ;;
  *) printf '%s\\n' "\${UGRO_GIT_PASSWORD:-}" ;;
esac
`;

export interface GitAuth {
  /** known_hosts with the git server's pinned key (ssh). */
  knownHosts: string;
  identityFile?: string;
  /** Let ssh use the agent (SSH_AUTH_SOCK is passed through). */
  useAgent: boolean;
  connectTimeoutSeconds: number;
  /** https: the token and the user name sent with it. */
  token?: string;
  username?: string;
}

export interface GitResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

export type GitSpawn = typeof spawn;

export class GitError extends UgroError {
  constructor(
    message: string,
    readonly stderr = '',
    readonly code = 1,
  ) {
    super(message);
  }
}

/** Largest output kept from one git command (a batch of job files, at most 1 MiB each). */
const MAX_STDOUT = 256 * 1024 * 1024;

/** The id git gives a blob of these bytes (SHA-1 or SHA-256, like the repository's). */
export function blobId(bytes: Buffer, algo: 'sha1' | 'sha256' = 'sha1'): string {
  return createHash(algo).update(`blob ${bytes.length}\0`).update(bytes).digest('hex');
}

/** Write the wrapper scripts into `dir` (0700) unless they are already there, byte for byte. */
export async function writeGitHelpers(dir: string): Promise<{ ssh: string; askpass: string }> {
  const out = { ssh: join(dir, 'ssh'), askpass: join(dir, 'askpass') };
  for (const [path, text] of [
    [out.ssh, SSH_WRAPPER],
    [out.askpass, ASKPASS],
  ] as const) {
    const cur = await readFile(path, 'utf8').catch(() => undefined);
    const st = await lstat(path).catch(() => undefined);
    if (cur === text && st?.isFile() && (st.mode & 0o777) === 0o700) continue;
    await writeFileAtomic(path, text, 0o700);
    await chmod(path, 0o700);
  }
  return out;
}

/**
 * git's environment, built from nothing but PATH: this process's own GIT_* variables (GIT_DIR,
 * GIT_SSH_COMMAND, …) never reach it.
 */
export function gitEnv(
  helpers: { ssh: string; askpass: string },
  home: string,
  auth: GitAuth,
  base: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: base.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    LANG: 'C',
    LC_ALL: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_ALLOW_PROTOCOL: GIT_PROTOCOLS.join(':'),
    GIT_LITERAL_PATHSPECS: '1',
    GIT_SSH: helpers.ssh,
    GIT_SSH_VARIANT: 'ssh',
    GIT_ASKPASS: helpers.askpass,
    UGRO_GIT_SSH_KNOWN_HOSTS: auth.knownHosts,
    UGRO_GIT_SSH_CONNECT_TIMEOUT: String(Math.max(1, Math.round(auth.connectTimeoutSeconds))),
  };
  if (auth.identityFile) env.UGRO_GIT_SSH_IDENTITY = auth.identityFile;
  if (auth.useAgent && base.SSH_AUTH_SOCK) env.SSH_AUTH_SOCK = base.SSH_AUTH_SOCK;
  if (auth.token) {
    env.UGRO_GIT_PASSWORD = auth.token;
    env.UGRO_GIT_USERNAME = auth.username ?? 'x-access-token';
  }
  return env;
}

/** Options every git command gets: no hooks, no credential helper, no background maintenance. */
const BASE_CONFIG = [
  '-c',
  'core.hooksPath=/dev/null',
  '-c',
  'credential.helper=',
  '-c',
  'maintenance.auto=false',
  '-c',
  'gc.autoDetach=false',
  '-c',
  'core.fsmonitor=false',
  '-c',
  'protocol.version=2',
];

/** One repository (bare, in the controller's state dir) and the commands UGRO runs on it. */
export class Git {
  private readonly live = new Set<ChildProcess>();

  constructor(
    readonly dir: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly spawnFn: GitSpawn = spawn,
  ) {}

  /** Run `git ARGS` in the repository; resolves with any exit code (callers decide). */
  run(args: string[], o: { input?: Buffer | string; timeoutMs?: number; cwd?: string } = {}): Promise<GitResult> {
    return new Promise((resolve, reject) => {
      const child = this.spawnFn('git', [...BASE_CONFIG, ...args], {
        cwd: o.cwd ?? this.dir,
        env: o.cwd ? this.env : { ...this.env, GIT_DIR: this.dir },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      this.live.add(child);
      child.on('exit', () => this.live.delete(child));
      const out: Buffer[] = [];
      let outBytes = 0;
      let err = '';
      let killedWhy: string | undefined;
      const timer = setTimeout(() => {
        killedWhy = `timed out after ${Math.round((o.timeoutMs ?? 60_000) / 1000)} s`;
        child.kill('SIGKILL');
      }, o.timeoutMs ?? 60_000);
      child.stdout!.on('data', (b: Buffer) => {
        outBytes += b.length;
        if (outBytes > MAX_STDOUT) {
          killedWhy = 'printed too much';
          child.kill('SIGKILL');
          return;
        }
        out.push(b);
      });
      child.stderr!.on('data', (b: Buffer) => {
        if (err.length < 64 * 1024) err += b.toString('utf8');
      });
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new GitError(`cannot run git: ${e.message} (is git installed? apt-get install git)`));
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (killedWhy) return reject(new GitError(`git ${args[0]} ${killedWhy}`, err));
        resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out), stderr: err });
      });
      child.stdin!.on('error', () => undefined);
      child.stdin!.end(o.input ?? '');
    });
  }

  /** Kill every git command still running (the controller is stopping: a hung fetch must not hold it). */
  killAll(): void {
    for (const c of this.live) c.kill('SIGKILL');
  }

  /** Run and demand exit 0; the error carries git's last stderr line. */
  async ok(args: string[], o: { input?: Buffer | string; timeoutMs?: number } = {}): Promise<Buffer> {
    const r = await this.run(args, o);
    if (r.code !== 0) throw new GitError(`git ${args[0]} failed: ${lastLines(r.stderr)}`, r.stderr, r.code);
    return r.stdout;
  }

  /** Create the bare repository if it is not there (and check it is a directory, not a link). */
  async init(): Promise<void> {
    const st = await lstat(this.dir).catch(() => undefined);
    if (st && !st.isDirectory()) throw new GitError(`${this.dir} is not a directory: remove it`);
    if (st && (await lstat(join(this.dir, 'HEAD')).catch(() => undefined))?.isFile()) return;
    const r = await this.run(['init', '--bare', '--quiet', this.dir], { cwd: '/' });
    if (r.code !== 0) throw new GitError(`git init failed: ${lastLines(r.stderr)}`, r.stderr);
  }

  /** Fetch the branch's head into refs/ugro/fetched (forced: a force-push is a head like any other). */
  async fetch(url: string, branch: string, timeoutMs = 120_000): Promise<void> {
    const r = await this.run(
      ['fetch', '--quiet', '--no-tags', '--no-write-fetch-head', '--', url, `+refs/heads/${branch}:refs/ugro/fetched`],
      { timeoutMs },
    );
    if (r.code === 0) return;
    throw new GitError(describeFetchError(r.stderr, branch), r.stderr, r.code);
  }

  /**
   * A ref as git wrote it after a fetch (a loose ref file: one line, the id), read without starting
   * git; undefined when it is not a plain loose ref (packed, symbolic), and the caller asks git.
   */
  async readLooseRef(ref: string): Promise<string | undefined> {
    const text = await readFile(join(this.dir, ref), 'utf8').catch(() => undefined);
    const id = text?.trim();
    return id && /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(id) ? id : undefined;
  }

  async revParse(rev: string): Promise<string | undefined> {
    const r = await this.run(['rev-parse', '--verify', '--quiet', '--end-of-options', rev]);
    return r.code === 0 ? r.stdout.toString('utf8').trim() : undefined;
  }

  /** The object type of `rev` ('tree', 'blob', 'commit'), or undefined when there is none. */
  async typeOf(rev: string): Promise<string | undefined> {
    const r = await this.run(['cat-file', '-t', rev]);
    return r.code === 0 ? r.stdout.toString('utf8').trim() : undefined;
  }

  /** `ls-tree -z -l` of a tree-ish, raw (parsed by plan.ts). */
  lsTree(treeish: string): Promise<Buffer> {
    return this.ok(['ls-tree', '-z', '-l', treeish]);
  }

  /** The contents of these blobs, by id (one `cat-file --batch`). */
  async blobs(ids: string[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    if (!ids.length) return out;
    const buf = await this.ok(['cat-file', '--batch'], { input: `${ids.join('\n')}\n` });
    let at = 0;
    while (at < buf.length) {
      const nl = buf.indexOf(10, at);
      if (nl < 0) break;
      const header = buf.subarray(at, nl).toString('utf8').split(' ');
      at = nl + 1;
      if (header[1] === 'missing' || header.length < 3) continue;
      const size = Number(header[2]);
      if (!Number.isSafeInteger(size) || size < 0 || at + size > buf.length) break;
      if (header[1] === 'blob') out.set(header[0], buf.subarray(at, at + size));
      at += size + 1;
    }
    return out;
  }

  /**
   * For each of `files` (paths in the repository), the last commit at or before `head` that
   * changed it: one `git log` walk over all of them.
   */
  async lastCommits(
    head: string,
    files: string[],
  ): Promise<Map<string, { revision: string; subject: string; author: string; authorTime: string }>> {
    const found = new Map<string, { revision: string; subject: string; author: string; authorTime: string }>();
    if (!files.length) return found;
    const want = new Set(files);
    const out = await this.ok([
      'log',
      '--no-renames',
      '--format=%x01%H%x00%s%x00%an%x00%ae%x00%aI',
      '--name-only',
      '-z',
      head,
      '--',
      ...files,
    ]);
    for (const rec of out.toString('utf8').split('\x01')) {
      if (!rec) continue;
      const f = rec.split('\0');
      const [revision, subject, name, email, authorTime] = f;
      const commit = { revision, subject: subject.slice(0, 1000), author: `${name} <${email}>`, authorTime };
      for (const raw of f.slice(5)) {
        const path = raw.replace(/^\n/, '');
        if (want.has(path) && !found.has(path)) found.set(path, commit);
      }
      if (found.size === want.size) break;
    }
    return found;
  }

  async commitInfo(rev: string): Promise<{ revision: string; subject: string; author: string; authorTime: string }> {
    const out = (await this.ok(['show', '-s', '--format=%H%x00%s%x00%an%x00%ae%x00%aI', rev, '--'])).toString('utf8');
    const [revision, subject, name, email, authorTime] = out.replace(/\n$/, '').split('\0');
    return { revision, subject: subject.slice(0, 1000), author: `${name} <${email}>`, authorTime };
  }

  /** true: `a` is an ancestor of `b`; false: it is not; undefined: cannot tell (an object is missing). */
  async isAncestor(a: string, b: string): Promise<boolean | undefined> {
    const r = await this.run(['merge-base', '--is-ancestor', a, b]);
    return r.code === 0 ? true : r.code === 1 ? false : undefined;
  }

  /**
   * Verify the commit's SSH signature against an allowed signers file (git's SSH signing format).
   * ok with the signer's line, or why not.
   */
  async verifyCommit(rev: string, allowedSigners: string): Promise<{ ok: boolean; message: string }> {
    const r = await this.run([
      '-c',
      'gpg.format=ssh',
      '-c',
      `gpg.ssh.allowedSignersFile=${allowedSigners}`,
      'verify-commit',
      rev,
    ]);
    const text = r.stderr.trim();
    if (r.code === 0) return { ok: true, message: firstMatch(text, /^Good "git" signature.*$/m) ?? 'good signature' };
    const raw = (await this.run(['cat-file', 'commit', rev])).stdout.toString('utf8');
    const header = raw.split('\n\n', 1)[0];
    if (!/^gpgsig(-sha256)? /m.test(header)) return { ok: false, message: 'the commit is not signed' };
    if (!header.includes('-----BEGIN SSH SIGNATURE-----'))
      return { ok: false, message: 'the commit is signed, but not with an SSH key (gpg.format=ssh)' };
    if (/No principal matched/i.test(text))
      return {
        ok: false,
        message: `the signing key is not in the allowed signers file (${firstLine(text) || 'no principal matched'})`,
      };
    return { ok: false, message: `the signature does not verify: ${lastLines(text) || `exit ${r.code}`}` };
  }

  async updateRef(ref: string, rev: string): Promise<void> {
    await this.ok(['update-ref', ref, rev]);
  }
}

function firstMatch(text: string, re: RegExp): string | undefined {
  return re.exec(text)?.[0];
}

function firstLine(text: string): string {
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
function lastLines(stderr: string, n = 2): string {
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
