/**
 * Real git (Debian's `git`), run as a program with argv: never a shell line, never a value pasted
 * into program text. What git may run and where it may connect is fixed by hardening.ts on every
 * command (environment from scratch, `-c` for each program-choosing key, the clone's config
 * checked before each fetch): no user, system or repository config chooses a program, no hooks,
 * no credential helper, only the ssh/https/http/file transports. ssh goes through UGRO's fixed
 * wrapper (pinned known_hosts and key), an https token through a fixed askpass.
 * The clone is bare: nothing from the repository is ever checked out onto the file system; files
 * are read from the object database by id.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UgroError } from '../../config/errors.ts';
import { describeFetchError, firstLine, firstMatch, lastLines } from './git-errors.ts';
import { configArgs, secureRepo } from './hardening.ts';
import { incomingBytes, mib } from './housekeeping.ts';
import { signerOf } from './signer.ts';

export { type GitAuth, gitEnv, writeGitHelpers } from './hardening.ts';

export interface GitResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

export type GitSpawn = typeof spawn;

interface RunOptions {
  input?: Buffer | string;
  timeoutMs?: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  watch?: { everyMs: number; check: () => Promise<string | undefined> };
}

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

/** One repository (bare, in the controller's state dir) and the commands UGRO runs on it. */
export class Git {
  private readonly live = new Set<ChildProcess>();
  private readonly config: string[];

  constructor(
    readonly dir: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly spawnFn: GitSpawn = spawn,
  ) {
    this.config = configArgs(env);
  }

  /**
   * Run `git ARGS` in the repository; resolves with any exit code (callers decide). `watch` is asked
   * every `everyMs` while it runs; a reason it returns kills git (the size cap of a fetch).
   */
  run(args: string[], o: RunOptions = {}): Promise<GitResult> {
    return new Promise((resolve, reject) => {
      const child = this.spawnFn('git', [...this.config, ...args], {
        cwd: o.cwd ?? this.dir,
        env: { ...this.env, ...o.env, ...(o.cwd ? {} : { GIT_DIR: this.dir }) },
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
      let watching = false;
      const watcher =
        o.watch &&
        setInterval(() => {
          if (watching || killedWhy) return;
          watching = true;
          void o.watch!.check().then(
            (why) => {
              watching = false;
              if (why && child.exitCode === null && !killedWhy) {
                killedWhy = why;
                child.kill('SIGKILL');
              }
            },
            () => {
              watching = false;
            },
          );
        }, o.watch.everyMs);
      const stopTimers = () => {
        clearTimeout(timer);
        if (watcher) clearInterval(watcher);
      };
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
        stopTimers();
        reject(new GitError(`cannot run git: ${e.message} (is git installed? apt-get install git)`));
      });
      child.on('close', (code, signal) => {
        stopTimers();
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
  async ok(args: string[], o: RunOptions = {}): Promise<Buffer> {
    const r = await this.run(args, o);
    if (r.code !== 0) throw new GitError(`git ${args[0]} failed: ${lastLines(r.stderr)}`, r.stderr, r.code);
    return r.stdout;
  }

  /**
   * Create the bare repository if it is not there (and check it is a directory, not a link); its
   * config is UGRO's fixed text either way. Returns what secureRepo had to repair in an existing one.
   */
  async init(): Promise<string[]> {
    const st = await lstat(this.dir).catch(() => undefined);
    if (st && !st.isDirectory()) throw new GitError(`${this.dir} is not a directory: remove it`);
    if (st && (await lstat(join(this.dir, 'HEAD')).catch(() => undefined))?.isFile()) return this.secure();
    const r = await this.run(['init', '--bare', '--quiet', this.dir], { cwd: '/' });
    if (r.code !== 0) throw new GitError(`git init failed: ${lastLines(r.stderr)}`, r.stderr);
    await this.secure();
    return [];
  }

  /** The clone's config back to UGRO's text, foreign pointers removed (hardening.ts): what was repaired. */
  secure(): Promise<string[]> {
    return secureRepo(this.dir);
  }

  /**
   * Fetch the branch's head into refs/ugro/fetched (forced: a force-push is a head like any other).
   * `maxBytes`: the most the incoming pack may grow to; git is killed past it. `env`: more of git's
   * environment for this fetch (ssh's control socket).
   */
  async fetch(
    url: string,
    branch: string,
    timeoutMs = 120_000,
    o: { maxBytes?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<void> {
    const max = o.maxBytes;
    const r = await this.run(
      [
        'fetch',
        '--quiet',
        '--no-tags',
        '--no-write-fetch-head',
        '--no-recurse-submodules',
        '--no-auto-maintenance',
        // A repository's remote.<url>.uploadpack must not choose the program (file:// runs it here).
        '--upload-pack=git-upload-pack',
        '--',
        url,
        `+refs/heads/${branch}:refs/ugro/fetched`,
      ],
      {
        timeoutMs,
        ...(o.env ? { env: o.env } : {}),
        ...(max !== undefined
          ? {
              watch: {
                everyMs: 50,
                check: async () =>
                  (await incomingBytes(this.dir)) > max
                    ? `brought more than ${mib(max)}: stopped (the clone is capped; see the GitOps docs)`
                    : undefined,
              },
            }
          : {}),
      },
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
      const commit = commitFields(revision, subject, name, email, authorTime);
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
    return commitFields(revision, subject, name, email, authorTime);
  }

  /** true: `a` is an ancestor of `b`; false: it is not; undefined: cannot tell (an object is missing). */
  async isAncestor(a: string, b: string): Promise<boolean | undefined> {
    const r = await this.run(['merge-base', '--is-ancestor', a, b]);
    return r.code === 0 ? true : r.code === 1 ? false : undefined;
  }

  /**
   * Verify the commit's SSH signature against an allowed signers file (git's SSH signing format).
   * ok with the signer's line and its principal (signer.ts), or why not.
   */
  async verifyCommit(
    rev: string,
    allowedSigners: string,
  ): Promise<{ ok: true; message: string; principal: string } | { ok: false; message: string }> {
    const r = await this.run([
      '-c',
      'gpg.format=ssh',
      '-c',
      `gpg.ssh.allowedSignersFile=${allowedSigners}`,
      'verify-commit',
      rev,
    ]);
    const text = r.stderr.trim();
    if (r.code === 0) {
      const who = signerOf(text);
      if (!who.ok) return { ok: false, message: who.why };
      return { ok: true, message: firstMatch(text, /^Good "git" signature.*$/m) ?? '', principal: who.principal };
    }
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

/** Longest commit subject, author name and e-mail UGRO keeps (status.source allows 1024 and 512). */
const COMMIT_LIMITS = { subject: 1000, name: 200, email: 200, time: 64 };

/**
 * A commit's fields as they enter UGRO, bounded here at their source: whatever a committer wrote
 * (a 600-character author, control characters) must fit the status schema downstream, or the
 * job's status would fail it on every read.
 */
function commitFields(
  revision: string,
  subject: string,
  name: string,
  email: string,
  authorTime: string,
): { revision: string; subject: string; author: string; authorTime: string } {
  return {
    revision,
    subject: clip(subject ?? '', COMMIT_LIMITS.subject),
    author: `${clip(name ?? '', COMMIT_LIMITS.name)} <${clip(email ?? '', COMMIT_LIMITS.email)}>`,
    authorTime: clip(authorTime ?? '', COMMIT_LIMITS.time),
  };
}

/** At most `max` characters (whole code points, an ellipsis when cut), control characters as spaces. */
function clip(text: string, max: number): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: replacing control characters is the point.
  const clean = text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
  const cps = [...clean];
  return cps.length <= max ? clean : `${cps.slice(0, max - 1).join('')}…`;
}
