/**
 * The git source: one more writer of jobs/, with a revision. It keeps a bare clone in the
 * controller's state dir (jobs/.ugro/git/repo.git), fetches the branch every interval (or when
 * `ugro sync` asks), and mirrors the job files under the path at the head into jobs/ (atomic
 * writes), pruning removed ones only when told to and never en masse without --prune-all. The
 * reconcile loop does the rest, exactly as for a file a person wrote. What it knows about each job
 * (revision, sync state, source readiness) is handed to reconcile through `infoFor`.
 *
 * A fetch that fails, or a head whose signature does not verify, changes no file: jobs keep
 * following the last applied revision, SourceReady says why, and fetches back off.
 *
 * Files in the state dir (jobs/.ugro/git/):
 *   repo.git/      the bare clone (refs/ugro/fetched: the branch head; refs/ugro/applied)
 *   applied.json   what git wrote into jobs/ (file, blob id, commit, signer per job) and the applied head
 *   state.json     the source's state for the CLI (`ugro get jobs`, `ugro sync`, apply's refusal)
 *   sync-request   written by `ugro sync` (an id); answered in state.json
 *   ssh, askpass   git's fixed helper scripts (git.ts)
 *
 * This file is the sync cycle (when to fetch, the fetch, the signature check, backoff, events); its
 * parts: apply.ts (a head into jobs/, applied.json), report.ts (infoFor, state.json),
 * sync-requests.ts (`ugro sync`).
 */
import { join } from 'node:path';
import { parseGitUrl } from '../../config/gitops.ts';
import { findHostKeys, fingerprint, readKnownHosts } from '../../config/known-hosts.ts';
import type { JobSource, JobSourceInfo } from '../api/job-source.ts';
import type { Logger } from '../base/log.ts';
import { ensureOwnDir } from '../store/files.ts';
import { checkStateDir } from '../store/private.ts';
import { type JobEvent, JobStore } from '../store/store.ts';
import { Applier, type SyncOutcome } from './apply.ts';
import { Fetcher } from './fetcher.ts';
import { type Git, type GitAuth, GitError } from './git.ts';
import { presentedKey } from './git-errors.ts';
import { DEFAULT_MAX_CLONE_BYTES } from './housekeeping.ts';
import { type FetchState, SourceReport } from './report.ts';
import { SOURCE_EVENTS_JOB } from './state.ts';
import { SyncRequests } from './sync-requests.ts';

export interface GitSourceOptions {
  /** The jobs directory (absolute). */
  jobsDir: string;
  url: string;
  branch: string;
  /** The jobs path in the repository, normalized ('' for the root). */
  path: string;
  intervalMs: number;
  prune: boolean;
  pruneAll: boolean;
  requireSigned: boolean;
  allowedSigners?: string;
  auth: GitAuth;
  log: Logger;
  now?: () => Date;
  /** Watch for `ugro sync` requests (default true; tests call syncNow). */
  watchRequests?: boolean;
  /** Timers (default: setTimeout); tests drive syncs by hand. */
  setTimer?: (fn: () => void, ms: number) => () => void;
  fetchTimeoutMs?: number;
  /** The most the clone may hold (default 1 GiB): a fetch past it is stopped (housekeeping.ts). */
  maxCloneBytes?: number;
  /** The environment git's is built from (PATH, SSH_AUTH_SOCK). */
  baseEnv?: NodeJS.ProcessEnv;
}

/** Retries after failures: the interval doubled per failure, at most 5 minutes (or the interval, if longer). */
export function backoffMs(intervalMs: number, failures: number): number {
  if (failures <= 0) return intervalMs;
  return Math.min(intervalMs * 2 ** Math.min(failures, 16), Math.max(intervalMs, 300_000));
}

const HEX = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

export class GitSource implements JobSource {
  readonly stateDir: string;
  private fetcher?: Fetcher;
  private readonly store: JobStore;
  private readonly now: () => Date;
  private readonly applier: Applier;
  private readonly requests: SyncRequests;
  private readonly report: SourceReport;
  private readonly fetch: FetchState = { failures: 0, neverFetched: true };
  private onJobs: (names: string[]) => void = () => undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private queued?: Promise<SyncOutcome>;
  private cancelTimer?: () => void;
  private stopped = false;
  /** How long the last fetch took (for the applied log line: where a sync's time goes). */
  private fetchMs = 0;
  /** Counters for tests and benchmarks. */
  readonly stats = { fetches: 0, applies: 0, writes: 0, prunes: 0 };

  constructor(private readonly o: GitSourceOptions) {
    this.stateDir = join(o.jobsDir, '.ugro', 'git');
    this.now = o.now ?? (() => new Date());
    this.store = new JobStore(o.jobsDir);
    this.applier = new Applier(
      o,
      this.stateDir,
      () => this.repoGit,
      (reason, message, warning) => this.event(reason, message, warning),
      this.stats,
    );
    this.requests = new SyncRequests({
      stateDir: this.stateDir,
      log: o.log,
      now: this.now,
      syncNow: () => this.syncNow(),
      writeState: (force) => this.report.writeState(force),
    });
    this.report = new SourceReport(o, this.stateDir, this.applier, this.fetch, this.requests);
  }

  private get repoGit(): Git {
    if (!this.fetcher) throw new GitError('the git source is not started');
    return this.fetcher.git;
  }

  async start(onJobs: (names: string[]) => void): Promise<void> {
    this.onJobs = onJobs;
    // git runs in there: it must be private to this user before anything of it is used.
    await checkStateDir(this.o.jobsDir);
    await ensureOwnDir(this.stateDir);
    this.fetcher = await Fetcher.open({
      stateDir: this.stateDir,
      url: this.o.url,
      branch: this.o.branch,
      auth: this.o.auth,
      intervalMs: this.o.intervalMs,
      log: this.o.log,
      maxCloneBytes: this.o.maxCloneBytes ?? DEFAULT_MAX_CLONE_BYTES,
      ...(this.o.fetchTimeoutMs ? { fetchTimeoutMs: this.o.fetchTimeoutMs } : {}),
      ...(this.o.baseEnv ? { baseEnv: this.o.baseEnv } : {}),
      now: () => this.now().getTime(),
      warn: (reason, message) => this.event(reason, message, true),
    });
    await this.applier.load();
    this.o.log.info('git source started', {
      url: this.o.url,
      branch: this.o.branch,
      path: this.o.path || '.',
      intervalSeconds: this.o.intervalMs / 1000,
      prune: this.o.prune,
      requireSigned: this.o.requireSigned,
      applied: this.applier.manifest.head,
    });
    if (this.o.watchRequests !== false) this.requests.watch();
    await this.report.writeState(true);
    // The first sync is awaited: jobs/ reflects the branch before the first reconciles (a remote
    // that does not answer costs the ssh connect timeout, and jobs keep the last applied revision).
    await this.syncNow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelTimer?.();
    this.requests.close();
    this.fetcher?.git.killAll();
    await this.chain.catch(() => undefined);
    await this.fetcher?.stop();
  }

  /** Fetch and apply now; resolves with the outcome of a sync that began after this call. */
  syncNow(): Promise<SyncOutcome> {
    if (this.queued) return this.queued;
    const p = this.chain.then(() => {
      this.queued = undefined;
      return this.syncOnce();
    });
    this.queued = p;
    // Upkeep (a gc now and then) after the outcome is out: a `ugro sync` is answered first.
    this.chain = p.then(() => this.fetcher?.maintain()).catch(() => undefined);
    return p;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.cancelTimer?.();
    const ms = backoffMs(this.o.intervalMs, this.fetch.failures);
    this.fetch.nextFetchAt = new Date(this.now().getTime() + ms).toISOString();
    const set =
      this.o.setTimer ??
      ((fn: () => void, delay: number) => {
        const t = setTimeout(fn, delay);
        t.unref();
        return () => clearTimeout(t);
      });
    this.cancelTimer = set(() => {
      this.cancelTimer = undefined;
      void this.requests.check();
      void this.syncNow();
    }, ms);
  }

  private async syncOnce(): Promise<SyncOutcome> {
    try {
      return await this.syncSteps();
    } catch (e) {
      // A failure after the fetch (a write into jobs/, a git command): retried like a failed fetch.
      const why = (e as Error).message;
      this.o.log.error('git source: sync failed', { error: why });
      this.fetch.failures++;
      return { ok: false, changed: false, written: 0, pruned: 0, message: why };
    } finally {
      await this.report.afterSync((names) => {
        if (!this.stopped) this.onJobs(names);
      });
      this.schedule();
    }
  }

  private async syncSteps(): Promise<SyncOutcome> {
    const t0 = Date.now();
    this.stats.fetches++;
    this.fetch.lastFetchAt = this.now().toISOString();
    let fetchError: string | undefined;
    try {
      await this.fetcher!.fetch();
      this.fetchMs = Date.now() - t0;
    } catch (e) {
      fetchError = this.explainFetchError(e);
    }
    if (fetchError) {
      this.fetch.failures++;
      if (this.fetch.fetchError !== fetchError) {
        this.o.log.warn('git source: fetch failed; jobs keep the last applied revision', {
          url: this.o.url,
          branch: this.o.branch,
          error: fetchError,
          applied: this.applier.manifest.head,
          retryInMs: backoffMs(this.o.intervalMs, this.fetch.failures),
        });
        if (!this.fetch.fetchError)
          await this.event('FetchFailed', `cannot fetch ${this.o.branch}: ${fetchError}`, true);
      }
      this.fetch.fetchError = fetchError;
      return { ok: false, changed: false, written: 0, pruned: 0, message: fetchError };
    }
    if (this.fetch.fetchError) {
      this.o.log.info('git source: fetching works again', { url: this.o.url, branch: this.o.branch });
      await this.event('SourceReady', `${this.o.branch} fetched again from ${this.o.url}`);
    }
    this.fetch.fetchError = undefined;
    this.fetch.failures = 0;
    this.fetch.neverFetched = false;
    this.fetch.lastSuccessAt = this.now().toISOString();
    const head =
      (await this.repoGit.readLooseRef('refs/ugro/fetched')) ??
      (await this.repoGit.revParse('refs/ugro/fetched^{commit}'));
    if (!head || !HEX.test(head)) throw new GitError(`the fetched head is not a commit (${head ?? 'none'})`);
    this.fetch.fetched = head;
    if (head === this.applier.manifest.head && !this.applier.dirty) {
      if (this.fetch.refused) {
        this.o.log.info('git source: the branch is back at the applied revision', { revision: head });
        this.fetch.refused = undefined;
      }
      return this.outcome(true, head, false, 0, 0, 'already applied');
    }
    if (this.fetch.refused?.revision === head) return this.outcome(false, head, false, 0, 0, this.fetch.refused.why);
    // The verified signer owns what this head writes (unsigned: no signer, the unsigned owner's).
    let signer: string | undefined;
    if (this.o.requireSigned) {
      const v = await this.repoGit.verifyCommit(head, this.o.allowedSigners ?? '/dev/null');
      if (!v.ok) {
        const tree = await this.applier.readTree(head).catch(() => undefined);
        this.fetch.refused = { revision: head, why: v.message, tree };
        this.o.log.warn('git source: head not applied: its signature does not verify', {
          revision: head,
          why: v.message,
          applied: this.applier.manifest.head,
        });
        await this.event(
          'SignatureRefused',
          `head ${head.slice(0, 12)} of ${this.o.branch} is not applied: ${v.message}`,
          true,
        );
        return this.outcome(false, head, false, 0, 0, `head ${head.slice(0, 12)} is not applied: ${v.message}`);
      }
      signer = v.principal;
    }
    this.fetch.refused = undefined;
    const r = await this.applier.apply(head, signer);
    this.o.log.info('git source: applied', {
      revision: head,
      written: r.written,
      pruned: r.pruned,
      kept: this.applier.keptWhy.size,
      ms: Date.now() - t0,
      fetchMs: this.fetchMs,
    });
    return r;
  }

  private async outcome(
    ok: boolean,
    revision: string,
    changed: boolean,
    written: number,
    pruned: number,
    message: string,
  ): Promise<SyncOutcome> {
    const subject = revision === this.applier.manifest.head ? this.applier.manifest.headSubject : undefined;
    return { ok, revision, ...(subject !== undefined ? { subject } : {}), changed, written, pruned, message };
  }

  /** The job's source info for reconcile (report.ts). */
  infoFor(name: string): Promise<JobSourceInfo | undefined> {
    return this.report.infoFor(name);
  }

  private explainFetchError(e: unknown): string {
    const err = e as GitError;
    const stderr = err.stderr ?? '';
    const msg = err.message ?? String(e);
    if (!/host key/i.test(msg)) return msg;
    const url = parseGitUrl(this.o.url);
    const host = url.ok ? url.value.host : '?';
    const port = url.ok ? (url.value.port ?? 22) : 22;
    const p = presentedKey(stderr);
    let pinned: string[] = [];
    try {
      pinned = findHostKeys(readKnownHosts(this.o.auth.knownHosts), [host], port)
        .filter((k) => !k.marker)
        .map((k) => `${k.keyType} ${fingerprint(k.key)}`);
    } catch {
      /* unreadable known_hosts: said below */
    }
    if (/changed/.test(msg))
      return (
        `host key of ${host} changed: the server presented ${p.keyType ?? ''} ${p.fingerprint ?? '(unknown)'}, ` +
        `but ${pinned.join(', ') || 'another key'} is pinned in ${this.o.auth.knownHosts}; refused ` +
        '(if the server really has a new key, pin the new one there)'
      ).replace(/ {2}/g, ' ');
    return (
      `host key of ${host} is not pinned in ${this.o.auth.knownHosts}: refused ` +
      '(check the fingerprint the server presents and add it there first, as for any other host)'
    );
  }

  private async event(reason: string, message: string, warning = false): Promise<void> {
    const ev: JobEvent = {
      time: this.now().toISOString(),
      job: SOURCE_EVENTS_JOB,
      type: warning ? 'Warning' : 'Normal',
      reason,
      message,
    };
    try {
      await this.store.appendEvents([ev]);
    } catch (e) {
      this.o.log.warn('git source: cannot write an event', { error: (e as Error).message });
    }
  }
}
