/**
 * `ugro controller --git URL [--branch B] [--path P] [--interval S] [--prune] [--prune-all]
 * [--require-signed --allowed-signers FILE]`, or the cluster file's `gitops:` section: the git
 * source's settings, flags over the file. Checked here (usage errors name the flag); the source
 * itself (source.ts) gets values it can trust.
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Cluster } from '../../config/cluster.ts';
import { UsageError } from '../../config/errors.ts';
import { checkBranch, normalizeRepoPath, parseGitUrl } from '../../config/gitops.ts';
import type { JobSource } from '../api/job-source.ts';
import type { Logger } from '../base/log.ts';
import { ensureOwnDir, writeFileAtomic } from '../store/files.ts';
import type { GitAuth } from './git.ts';
import { GitSource, type GitSourceOptions } from './git-source.ts';
import { readGitState, stateDir } from './state.ts';

/** The GitOps flags of `ugro controller`, as commander parses them (registered in cli/gitops-flags.ts). */
export interface GitFlags {
  git?: string;
  branch?: string;
  path?: string;
  interval?: string;
  prune?: boolean;
  pruneAll?: boolean;
  requireSigned?: boolean;
  allowedSigners?: string;
  tokenEnv?: string;
}

/** The default name of the variable holding an https token. */
const DEFAULT_TOKEN_ENV = 'UGRO_GIT_TOKEN';

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|::1)$/;

/**
 * The git source's options from the flags and the cluster file, or undefined when neither names a
 * repository. Throws a UsageError naming the flag (or `gitops.<field>`) that is wrong.
 */
export function gitSourceOptions(
  flags: GitFlags,
  cluster: Cluster,
  jobsDir: string,
  log: Logger,
  env: Record<string, string | undefined> = process.env,
): GitSourceOptions | undefined {
  const file = cluster.raw.gitops;
  const url = flags.git ?? file?.url;
  if (!url) {
    for (const f of ['branch', 'path', 'interval', 'prune', 'pruneAll', 'requireSigned', 'allowedSigners'] as const)
      if (flags[f] !== undefined)
        throw new UsageError(`--${kebab(f)} needs --git URL (or gitops.url in the cluster file)`);
    return undefined;
  }
  const u = parseGitUrl(url);
  if (!u.ok)
    throw new UsageError(
      `${flags.git !== undefined ? '--git' : 'gitops.url'}: ${u.message} (got ${JSON.stringify(url)})`,
    );
  const branch = flags.branch ?? file?.branch ?? 'main';
  const bw = checkBranch(branch);
  if (bw) throw new UsageError(`--branch: ${bw} (got ${JSON.stringify(branch)})`);
  const p = normalizeRepoPath(flags.path ?? file?.path ?? 'jobs');
  if (!p.ok) throw new UsageError(`--path: ${p.message}`);
  let intervalSeconds = file?.interval_seconds ?? 30;
  if (flags.interval !== undefined) {
    const n = /^\d{1,6}$/.test(flags.interval) ? Number(flags.interval) : Number.NaN;
    if (!(n >= 1 && n <= 86_400))
      throw new UsageError(`--interval must be an integer 1..86400 seconds (got ${JSON.stringify(flags.interval)})`);
    intervalSeconds = n;
  }
  const baseDir = cluster.file === '<inline>' ? process.cwd() : dirname(cluster.file);
  const local = (f: string | undefined) => (f ? (isAbsolute(f) ? f : resolve(baseDir, f)) : undefined);
  const requireSigned = flags.requireSigned ?? file?.require_signed ?? false;
  const allowedSigners = flags.allowedSigners ? resolve(flags.allowedSigners) : local(file?.allowed_signers);
  if (requireSigned && !allowedSigners)
    throw new UsageError('--require-signed needs --allowed-signers FILE (git\'s SSH "allowed signers" format)');
  if (allowedSigners && !existsSync(allowedSigners))
    throw new UsageError(`--allowed-signers: ${allowedSigners} does not exist`);
  const ssh = cluster.master.ssh;
  const knownHosts = local(file?.known_hosts) ?? ssh.knownHosts;
  const identityFile = local(file?.identity_file) ?? ssh.identityFile;
  // ssh reads UserKnownHostsFile as a list separated by spaces: a path with one would be split.
  if (/[\s"'\\]/.test(knownHosts))
    throw new UsageError(`the known_hosts path for git must not contain spaces or quotes: ${knownHosts}`);
  const tokenEnv = flags.tokenEnv ?? file?.token_env ?? DEFAULT_TOKEN_ENV;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(tokenEnv)) throw new UsageError(`--token-env: not a variable name: ${tokenEnv}`);
  const token = u.value.kind === 'https' || u.value.kind === 'http' ? env[tokenEnv] || undefined : undefined;
  if (token && u.value.kind === 'http' && !LOOPBACK.test(u.value.host))
    throw new UsageError(`refusing to send the token in ${tokenEnv} over plain http to ${u.value.host}: use https`);
  const auth: GitAuth = {
    knownHosts,
    ...(identityFile ? { identityFile } : {}),
    useAgent: ssh.useAgent,
    connectTimeoutSeconds: Math.max(1, Math.round(ssh.connectTimeoutMs / 1000)),
    ...(token ? { token, username: u.value.user ?? file?.username ?? 'x-access-token' } : {}),
  };
  return {
    jobsDir: resolve(jobsDir),
    url,
    branch,
    path: p.value,
    intervalMs: intervalSeconds * 1000,
    prune: flags.prune ?? file?.prune ?? false,
    pruneAll: flags.pruneAll ?? file?.prune_all ?? false,
    requireSigned,
    ...(allowedSigners ? { allowedSigners } : {}),
    auth,
    log,
  };
}

function kebab(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** The controller's job source: the git source, or (without git) one that retires a former one. */
export function jobSource(opts: GitSourceOptions | undefined, jobsDir: string): JobSource | undefined {
  if (opts) return new GitSource(opts);
  return new DetachedSource(resolve(jobsDir));
}

/**
 * A controller started without git on a dir that followed git: the dir is a plain jobs dir again
 * (`ugro apply` is no longer refused). Marked after the controller holds the dir's lock, so a
 * second controller failing on the lock cannot retire a running one's source.
 */
class DetachedSource implements JobSource {
  constructor(private readonly jobsDir: string) {}

  async start(): Promise<void> {
    const s = readGitState(this.jobsDir);
    if (!s?.active) return;
    await ensureOwnDir(stateDir(this.jobsDir));
    await writeFileAtomic(
      `${stateDir(this.jobsDir)}/state.json`,
      `${JSON.stringify({ ...s, active: false }, null, 1)}\n`,
    );
  }

  async stop(): Promise<void> {}

  async infoFor(): Promise<undefined> {
    return undefined;
  }
}
