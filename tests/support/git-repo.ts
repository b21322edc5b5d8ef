/**
 * A real git repository for the GitOps tests: a bare "server" repository and a working clone to
 * commit and push from, driven with the real `git` (argv only). The URL is file:// for unit tests;
 * the lab test points the same helper at a bare repository on a lab host over ssh.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** A hermetic environment for the test's own git: no user config, a fixed identity and clock. */
export function testGitEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: tmpdir(),
    LANG: 'C',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'Ada Lovelace',
    GIT_AUTHOR_EMAIL: 'ada@example.com',
    GIT_COMMITTER_NAME: 'Ada Lovelace',
    GIT_COMMITTER_EMAIL: 'ada@example.com',
    ...extra,
  };
}

export interface CommitOptions {
  author?: { name: string; email: string };
  /** Sign with this SSH private key (gpg.format=ssh). */
  signingKey?: string;
}

export class WorkRepo {
  constructor(
    readonly dir: string,
    readonly url: string,
    readonly env: NodeJS.ProcessEnv,
    readonly branch = 'main',
  ) {}

  git(...args: string[]): string {
    return execFileSync('git', args, { cwd: this.dir, env: this.env, encoding: 'utf8' }).trim();
  }

  /** Write (string), symlink ({ link }) or remove (null) files, then commit all of it; returns the SHA. */
  commit(files: Record<string, string | null | { link: string }>, message: string, o: CommitOptions = {}): string {
    for (const [rel, content] of Object.entries(files)) {
      const p = join(this.dir, rel);
      if (content === null) {
        rmSync(p, { force: true, recursive: true });
        continue;
      }
      mkdirSync(dirname(p), { recursive: true });
      rmSync(p, { force: true });
      if (typeof content === 'string') writeFileSync(p, content);
      else symlinkSync(content.link, p);
    }
    this.git('add', '-A');
    const args = ['commit', '--quiet', '--allow-empty', '-m', message];
    const cfg: string[] = [];
    if (o.author) args.push('--author', `${o.author.name} <${o.author.email}>`);
    if (o.signingKey) {
      cfg.push('-c', 'gpg.format=ssh', '-c', `user.signingkey=${o.signingKey}`);
      args.push('-S');
    }
    this.git(...cfg, ...args);
    return this.git('rev-parse', 'HEAD');
  }

  push(force = false): void {
    this.git('push', '--quiet', ...(force ? ['--force'] : []), 'origin', `HEAD:refs/heads/${this.branch}`);
  }

  head(): string {
    return this.git('rev-parse', 'HEAD');
  }

  /** Move the branch back to an older commit (for a force-push). */
  resetTo(sha: string): void {
    this.git('reset', '--quiet', '--hard', sha);
  }
}

/** A bare repository in a temp dir with a working clone; the URL is file://. */
export function localRemote(branch = 'main'): { bare: string; url: string; work: WorkRepo } {
  const root = mkdtempSync(join(tmpdir(), 'ugro-git-'));
  const bare = join(root, 'server.git');
  const env = testGitEnv();
  execFileSync('git', ['init', '--quiet', '--bare', '-b', branch, bare], { env });
  const url = `file://${bare}`;
  const work = cloneWork(url, join(root, 'work'), env, branch);
  return { bare, url, work };
}

/** A working clone of `url` (an empty repository is fine) on `branch`. */
export function cloneWork(url: string, dir: string, env: NodeJS.ProcessEnv, branch = 'main'): WorkRepo {
  mkdirSync(dir, { recursive: true });
  execFileSync('git', ['init', '--quiet', '-b', branch, dir], { env });
  execFileSync('git', ['remote', 'add', 'origin', url], { cwd: dir, env });
  return new WorkRepo(dir, url, env, branch);
}

/** A TrainingJob file's text. */
export function jobText(name: string, spec: Record<string, unknown>, extra = ''): string {
  const lines = [
    'apiVersion: ugro.dev/v1alpha1',
    'kind: TrainingJob',
    'metadata:',
    `  name: ${name}`,
    'spec:',
    ...Object.entries(spec).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
  ];
  return `${extra}${lines.join('\n')}\n`;
}

/**
 * A fresh SSH signing key and an allowed_signers file naming it for `principal` (the identity git
 * reports for a good signature: a login name like `ob`, or an e-mail).
 */
export function signingKey(dir: string, principal = 'ada@example.com'): { key: string; allowedSigners: string } {
  const key = join(dir, `sign-${Math.random().toString(36).slice(2, 8)}`);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'ugro-test', '-f', key]);
  const pub = readFileSync(`${key}.pub`, 'utf8').trim();
  const allowedSigners = `${key}.allowed`;
  writeFileSync(allowedSigners, `${principal} ${pub}\n`);
  return { key, allowedSigners };
}

/**
 * A GitSource's options for unit tests: branch main, path jobs, no timers of its own (fetches only
 * when a test asks), no watch for sync requests, no pins (file:// remotes).
 */
export function quietSourceOptions() {
  return {
    branch: 'main',
    path: 'jobs',
    intervalMs: 3_600_000,
    prune: false,
    pruneAll: false,
    requireSigned: false,
    auth: { knownHosts: '/dev/null', useAgent: false, connectTimeoutSeconds: 5 },
    watchRequests: false,
    setTimer: () => () => undefined,
  };
}
