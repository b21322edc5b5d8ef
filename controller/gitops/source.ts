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
 *   applied.json   what git wrote into jobs/ (file, blob id, commit per job) and the applied head
 *   state.json     the source's state for the CLI (`ugro get jobs`, `ugro sync`, apply's refusal)
 *   sync-request   written by `ugro sync` (an id); answered in state.json
 *   ssh, askpass   git's fixed helper scripts (git.ts)
 */
import { type FSWatcher, watch } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { parseGitUrl } from '../../config/gitops.ts';
import { findHostKeys, fingerprint, readKnownHosts } from '../../config/known-hosts.ts';
import type { JobSource, JobSourceInfo } from '../api/source.ts';
import type { Logger } from '../base/log.ts';
import { ensureOwnDir, MAX_FILE_BYTES, writeFileAtomic } from '../store/files.ts';
import { checkStateDir } from '../store/private.ts';
import { isJobName, type JobEvent, JobStore } from '../store/store.ts';
import { Fetcher } from './fetcher.ts';
import { blobId, type Git, type GitAuth, GitError } from './git.ts';
import { presentedKey } from './git-errors.ts';
import { DEFAULT_MAX_CLONE_BYTES } from './housekeeping.ts';
import { type Manifest, parseManifest, readRawFile } from './manifest.ts';
import { type JobTree, jobInfo, type LocalFile, parseTree, planSync, readyOf, type SourceState } from './plan.ts';
import { type GitStateFile, SOURCE_EVENTS_JOB, STATE_VERSION } from './state.ts';

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

export interface SyncOutcome {
  ok: boolean;
  /** The head now applied (ok) or refused. */
  revision?: string;
  subject?: string;
  /** A new head was applied (files may or may not have changed). */
  changed: boolean;
  written: number;
  pruned: number;
  message: string;
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
  private manifest: Manifest = { jobs: new Map(), rewrittenJobs: [] };
  private tree?: JobTree;
  private refused?: { revision: string; why: string; tree?: JobTree };
  private fetchError?: string;
  private failures = 0;
  private fetched?: string;
  private neverFetched = true;
  /** Apply the head even if it is the applied one (start: pending prunes, files changed while down). */
  private dirty = true;
  private readonly pruned = new Map<string, string>();
  private keptWhy = new Map<string, string>();
  private guard?: string;
  private ignored: { file: string; why: string }[] = [];
  private readonly localCache = new Map<string, { key: string; local: LocalFile }>();
  private readonly lastInfo = new Map<string, string>();
  private onJobs: (names: string[]) => void = () => undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private queued?: Promise<SyncOutcome>;
  private cancelTimer?: () => void;
  private watcher?: FSWatcher;
  private stopped = false;
  private lastRequest?: { id: string; ok: boolean; message: string; revision?: string; at: string };
  private handledRequest?: string;
  private lastFetchAt?: string;
  private lastSuccessAt?: string;
  private nextFetchAt?: string;
  private lastStateText?: string;
  private lastSyncKey?: string;
  /** How long the last fetch took (for the applied log line: where a sync's time goes). */
  private fetchMs = 0;
  /** Counters for tests and benchmarks. */
  readonly stats = { fetches: 0, applies: 0, writes: 0, prunes: 0 };

  constructor(private readonly o: GitSourceOptions) {
    this.stateDir = join(o.jobsDir, '.ugro', 'git');
    this.now = o.now ?? (() => new Date());
    this.store = new JobStore(o.jobsDir);
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
    await this.loadManifest();
    if (this.manifest.head) {
      try {
        this.tree = await this.readTree(this.manifest.head);
      } catch {
        this.tree = undefined; // the clone lost it: the next apply rebuilds it
      }
    }
    this.o.log.info('git source started', {
      url: this.o.url,
      branch: this.o.branch,
      path: this.o.path || '.',
      intervalSeconds: this.o.intervalMs / 1000,
      prune: this.o.prune,
      requireSigned: this.o.requireSigned,
      applied: this.manifest.head,
    });
    if (this.o.watchRequests !== false) this.watchRequests();
    await this.writeState(true);
    // The first sync is awaited: jobs/ reflects the branch before the first reconciles (a remote
    // that does not answer costs the ssh connect timeout, and jobs keep the last applied revision).
    await this.syncNow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelTimer?.();
    this.watcher?.close();
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
    const ms = backoffMs(this.o.intervalMs, this.failures);
    this.nextFetchAt = new Date(this.now().getTime() + ms).toISOString();
    const set =
      this.o.setTimer ??
      ((fn: () => void, delay: number) => {
        const t = setTimeout(fn, delay);
        t.unref();
        return () => clearTimeout(t);
      });
    this.cancelTimer = set(() => {
      this.cancelTimer = undefined;
      void this.checkRequest();
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
      this.failures++;
      return { ok: false, changed: false, written: 0, pruned: 0, message: why };
    } finally {
      await this.afterSync();
      this.schedule();
    }
  }

  private async syncSteps(): Promise<SyncOutcome> {
    const t0 = Date.now();
    this.stats.fetches++;
    this.lastFetchAt = this.now().toISOString();
    let fetchError: string | undefined;
    try {
      await this.fetcher!.fetch();
      this.fetchMs = Date.now() - t0;
    } catch (e) {
      fetchError = this.explainFetchError(e);
    }
    if (fetchError) {
      this.failures++;
      if (this.fetchError !== fetchError) {
        this.o.log.warn('git source: fetch failed; jobs keep the last applied revision', {
          url: this.o.url,
          branch: this.o.branch,
          error: fetchError,
          applied: this.manifest.head,
          retryInMs: backoffMs(this.o.intervalMs, this.failures),
        });
        if (!this.fetchError) await this.event('FetchFailed', `cannot fetch ${this.o.branch}: ${fetchError}`, true);
      }
      this.fetchError = fetchError;
      return { ok: false, changed: false, written: 0, pruned: 0, message: fetchError };
    }
    if (this.fetchError) {
      this.o.log.info('git source: fetching works again', { url: this.o.url, branch: this.o.branch });
      await this.event('SourceReady', `${this.o.branch} fetched again from ${this.o.url}`);
    }
    this.fetchError = undefined;
    this.failures = 0;
    this.neverFetched = false;
    this.lastSuccessAt = this.now().toISOString();
    const head =
      (await this.repoGit.readLooseRef('refs/ugro/fetched')) ??
      (await this.repoGit.revParse('refs/ugro/fetched^{commit}'));
    if (!head || !HEX.test(head)) throw new GitError(`the fetched head is not a commit (${head ?? 'none'})`);
    this.fetched = head;
    if (head === this.manifest.head && !this.dirty) {
      if (this.refused) {
        this.o.log.info('git source: the branch is back at the applied revision', { revision: head });
        this.refused = undefined;
      }
      return this.outcome(true, head, false, 0, 0, 'already applied');
    }
    if (this.refused?.revision === head) return this.outcome(false, head, false, 0, 0, this.refused.why);
    if (this.o.requireSigned) {
      const v = await this.repoGit.verifyCommit(head, this.o.allowedSigners ?? '/dev/null');
      if (!v.ok) {
        const tree = await this.readTree(head).catch(() => undefined);
        this.refused = { revision: head, why: v.message, tree };
        this.o.log.warn('git source: head not applied: its signature does not verify', {
          revision: head,
          why: v.message,
          applied: this.manifest.head,
        });
        await this.event(
          'SignatureRefused',
          `head ${head.slice(0, 12)} of ${this.o.branch} is not applied: ${v.message}`,
          true,
        );
        return this.outcome(false, head, false, 0, 0, `head ${head.slice(0, 12)} is not applied: ${v.message}`);
      }
    }
    this.refused = undefined;
    const r = await this.apply(head);
    this.o.log.info('git source: applied', {
      revision: head,
      written: r.written,
      pruned: r.pruned,
      kept: this.keptWhy.size,
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
    const subject = revision === this.manifest.head ? this.manifest.headSubject : undefined;
    return { ok, revision, ...(subject !== undefined ? { subject } : {}), changed, written, pruned, message };
  }

  /** Bring jobs/ to `head` (planSync decides), then record it as applied. */
  private async apply(head: string): Promise<SyncOutcome> {
    this.stats.applies++;
    const previous = this.manifest.head;
    const tree = await this.readTree(head);
    const names = new Set([...tree.jobs.keys(), ...tree.refused.keys(), ...this.manifest.jobs.keys()]);
    const local = new Map<string, LocalFile>();
    for (const n of names) {
      const l = await this.localOf(n);
      if (l) local.set(n, l);
    }
    const plan = planSync({
      head,
      tree,
      applied: this.manifest.jobs,
      local,
      prune: this.o.prune,
      pruneAll: this.o.pruneAll,
    });
    const files = [...plan.write.map((w) => w.job), ...plan.adopt].map((j) => j.repoFile);
    // Four reads of the clone at once: they are independent, and each is mostly git's start-up.
    const [blobs, commits, headInfo, anc] = await Promise.all([
      this.repoGit.blobs(plan.write.map((w) => w.job.oid)),
      this.repoGit.lastCommits(head, files),
      this.repoGit.commitInfo(head),
      previous && previous !== head ? this.repoGit.isAncestor(previous, head) : undefined,
    ]);
    const rewrittenFrom = anc === false ? previous : undefined;
    const jobs = new Map(this.manifest.jobs);
    const touched: string[] = [];
    for (const w of plan.write) {
      const bytes = blobs.get(w.job.oid);
      // Checked again on the bytes themselves: a blob must be what its id says, and within the limit.
      if (
        !bytes ||
        bytes.length > MAX_FILE_BYTES ||
        blobId(bytes, w.job.oid.length === 64 ? 'sha256' : 'sha1') !== w.job.oid
      )
        throw new GitError(`cannot read ${w.job.repoFile} (${w.job.oid}) from the clone`);
      // The name is a job name plus .yaml/.yml (plan.ts), never a path from content.
      await writeFileAtomic(join(this.o.jobsDir, w.job.file), bytes);
      if (w.replaces) await unlink(join(this.o.jobsDir, w.replaces)).catch(() => undefined);
      this.stats.writes++;
      jobs.set(w.job.name, {
        file: w.job.file,
        repoFile: w.job.repoFile,
        oid: w.job.oid,
        commit: commits.get(w.job.repoFile) ?? headInfo,
      });
      this.pruned.delete(w.job.name);
      touched.push(w.job.name);
    }
    for (const a of plan.adopt) {
      const before = jobs.get(a.name);
      const commit = before && before.oid === a.oid ? before.commit : (commits.get(a.repoFile) ?? headInfo);
      jobs.set(a.name, { file: a.file, repoFile: a.repoFile, oid: a.oid, commit });
      this.pruned.delete(a.name);
    }
    for (const p of plan.prune) {
      // Deleting the file is the prune: reconcile stops the run with its grace (the script checkpoints).
      await unlink(join(this.o.jobsDir, p.file)).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
      this.stats.prunes++;
      jobs.delete(p.name);
      this.pruned.set(p.name, head);
      this.o.log.info('git source: pruned a job removed from git', { job: p.name, file: p.file, revision: head });
    }
    for (const n of plan.forget) jobs.delete(n);
    for (const n of plan.kept.keys()) {
      const a = jobs.get(n);
      if (a && !a.removedAt) jobs.set(n, { ...a, removedAt: head });
    }
    if (plan.guard && plan.guard !== this.guard) {
      this.o.log.warn('git source: not pruning: the mass-deletion guard holds', {
        revision: head,
        why: plan.guard,
        jobs: [...plan.kept.keys()],
      });
      await this.event('PruneHeld', `${head.slice(0, 12)}: ${plan.guard}; not pruned (--prune-all allows it)`, true);
    }
    this.guard = plan.guard;
    this.keptWhy = plan.kept;
    this.logIgnored(tree);
    this.ignored = tree.ignored.concat([...tree.refused.values()].map((r) => ({ file: r.repoFile, why: r.why })));
    this.manifest = {
      head,
      headSubject: headInfo.subject,
      ...(rewrittenFrom ? { rewrittenFrom } : {}),
      rewrittenJobs: rewrittenFrom ? touched : [],
      jobs,
    };
    await this.saveManifest();
    await this.repoGit.updateRef('refs/ugro/applied', head);
    this.tree = tree;
    this.dirty = false;
    if (previous !== head) {
      await this.event(
        'RevisionApplied',
        `${this.o.branch} at ${head.slice(0, 12)} "${headInfo.subject}" by ${headInfo.author}: ` +
          `${plan.write.length} file(s) written, ${plan.prune.length} pruned`,
      );
      if (rewrittenFrom) {
        this.o.log.warn('git source: the branch history was rewritten (force-push); applied like any other head', {
          from: rewrittenFrom,
          to: head,
        });
        await this.event(
          'HistoryRewritten',
          `${this.o.branch} was force-pushed: ${head.slice(0, 12)} does not contain ${rewrittenFrom.slice(0, 12)}; ` +
            'applied like any other head',
          true,
        );
      }
    }
    return {
      ok: true,
      revision: head,
      subject: headInfo.subject,
      changed: previous !== head,
      written: plan.write.length,
      pruned: plan.prune.length,
      message:
        previous === head
          ? 'already applied'
          : `applied: ${plan.write.length} file(s) written, ${plan.prune.length} pruned`,
    };
  }

  private logIgnored(tree: JobTree): void {
    const seen = new Set(this.ignored.map((i) => `${i.file}\0${i.why}`));
    for (const i of [...tree.ignored, ...[...tree.refused.values()].map((r) => ({ file: r.repoFile, why: r.why }))])
      if (!seen.has(`${i.file}\0${i.why}`))
        this.o.log.warn('git source: file not applied', { file: i.file, why: i.why });
  }

  /** After each sync: tell the controller which jobs' source info changed; update state.json. */
  private async afterSync(): Promise<void> {
    // An idle fetch (nothing moved, nothing failed anew) changes no job's info: skip the walk.
    const key = JSON.stringify([
      this.manifest.head,
      this.fetchError,
      this.refused?.revision,
      this.guard,
      this.pruned.size,
    ]);
    if (key === this.lastSyncKey) {
      await this.writeState();
      return;
    }
    this.lastSyncKey = key;
    const names = new Set([...this.manifest.jobs.keys(), ...this.pruned.keys(), ...this.lastInfo.keys()]);
    for (const n of this.tree?.jobs.keys() ?? []) names.add(n);
    const changed: string[] = [];
    for (const n of names) {
      const info = await this.infoFor(n);
      const text = info ? JSON.stringify(info) : '';
      if ((this.lastInfo.get(n) ?? '') !== text) changed.push(n);
      if (text) this.lastInfo.set(n, text);
      else this.lastInfo.delete(n);
    }
    if (changed.length && !this.stopped) this.onJobs(changed);
    await this.writeState();
  }

  private sourceState(): SourceState {
    return {
      url: this.o.url,
      branch: this.o.branch,
      ...(this.manifest.head ? { applied: this.manifest.head } : {}),
      ...(this.fetchError ? { fetchError: this.fetchError } : {}),
      ...(this.refused ? { refused: { revision: this.refused.revision, why: this.refused.why } } : {}),
      neverFetched: this.neverFetched && !this.manifest.head,
    };
  }

  async infoFor(name: string): Promise<JobSourceInfo | undefined> {
    if (!isJobName(name)) return undefined;
    const local = await this.localOf(name);
    const applied = this.manifest.jobs.get(name);
    return jobInfo({
      name,
      source: this.sourceState(),
      tree: this.tree,
      ...(this.refused?.tree ? { refusedTree: this.refused.tree } : {}),
      ...(applied ? { applied } : {}),
      ...(local ? { local } : {}),
      ...(this.pruned.has(name) ? { prunedAt: this.pruned.get(name) } : {}),
      ...(this.keptWhy.has(name) ? { keptWhy: this.keptWhy.get(name) } : {}),
      ...(this.manifest.rewrittenFrom && this.manifest.rewrittenJobs.includes(name)
        ? { rewrittenFrom: this.manifest.rewrittenFrom }
        : {}),
    });
  }

  /** The job's file in jobs/ now (`.yaml` before `.yml`, as the store reads it), with its blob id. */
  private async localOf(name: string): Promise<LocalFile | undefined> {
    for (const ext of ['.yaml', '.yml']) {
      const file = name + ext;
      const r = await readRawFile(join(this.o.jobsDir, file), this.localCache.get(file)?.key);
      if (r === 'missing') continue;
      if (r === 'unchanged') return this.localCache.get(file)!.local;
      // Not a readable regular file: an id nothing in git has, so it never counts as git's.
      const local = { file, oid: 'error' in r ? `unreadable:${r.error}` : blobId(r.bytes) };
      if ('key' in r) this.localCache.set(file, { key: r.key, local });
      return local;
    }
    return undefined;
  }

  private async readTree(head: string): Promise<JobTree> {
    const treeish = this.o.path ? `${head}:${this.o.path}` : `${head}^{tree}`;
    // ls-tree first (one git process); only when it fails, ask what the path is: no path there (or
    // not a directory) is an empty tree, anything else (a damaged clone) an error, never "empty".
    const r = await this.repoGit.run(['ls-tree', '-z', '-l', treeish]);
    if (r.code === 0) return parseTree(r.stdout, this.o.path);
    const type = await this.repoGit.typeOf(treeish);
    if (type !== 'tree') return parseTree('', this.o.path, true);
    return parseTree(await this.repoGit.lsTree(treeish), this.o.path);
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

  // ---------------------------------------------------------------- requests (`ugro sync`)

  private watchRequests(): void {
    try {
      this.watcher = watch(this.stateDir, { persistent: false }, (_ev, file) => {
        if (!file || file.toString() === 'sync-request') void this.checkRequest();
      });
      this.watcher.on('error', () => undefined);
    } catch (e) {
      this.o.log.warn('git source: cannot watch for sync requests; they are answered at the next fetch', {
        error: (e as Error).message,
      });
    }
  }

  private async checkRequest(): Promise<void> {
    const r = await readRawFile(join(this.stateDir, 'sync-request'), undefined, 256);
    if (r === 'missing' || r === 'unchanged' || 'error' in r) return;
    const id = r.bytes.toString('utf8').trim();
    if (!/^[A-Za-z0-9-]{1,64}$/.test(id) || id === this.handledRequest) return;
    this.handledRequest = id;
    const t0 = Date.now();
    const out = await this.syncNow();
    this.lastRequest = {
      id,
      ok: out.ok,
      message: out.message,
      ...(out.revision ? { revision: out.revision } : {}),
      at: this.now().toISOString(),
    };
    await this.writeState(true);
    this.o.log.info('git source: answered a sync request', { id, ok: out.ok, ms: Date.now() - t0 });
  }

  // ---------------------------------------------------------------- persistence

  private async loadManifest(): Promise<void> {
    const r = await readRawFile(join(this.stateDir, 'applied.json'), undefined, 64 * 1024 * 1024);
    if (r === 'missing' || r === 'unchanged' || 'error' in r) return;
    try {
      this.manifest = parseManifest(JSON.parse(r.bytes.toString('utf8')), this.o);
    } catch (e) {
      this.o.log.warn('git source: ignoring an unreadable applied.json (rebuilt at the next sync)', {
        error: (e as Error).message,
      });
    }
  }

  private async saveManifest(): Promise<void> {
    const m = this.manifest;
    const doc = {
      v: 1,
      url: this.o.url,
      branch: this.o.branch,
      path: this.o.path,
      head: m.head,
      headSubject: m.headSubject,
      rewrittenFrom: m.rewrittenFrom,
      rewrittenJobs: m.rewrittenJobs,
      jobs: Object.fromEntries([...m.jobs].sort(([a], [b]) => a.localeCompare(b))),
    };
    await writeFileAtomic(join(this.stateDir, 'applied.json'), `${JSON.stringify(doc, null, 1)}\n`);
  }

  /** state.json for the CLI; written when anything but the fetch times changed (or `force`). */
  private async writeState(force = false): Promise<void> {
    const headCommit = this.manifest.head;
    const subject = this.manifest.headSubject;
    const s = this.sourceState();
    const ready = readyOf(s);
    const doc: GitStateFile = {
      v: STATE_VERSION,
      active: true,
      pid: process.pid,
      url: this.o.url,
      branch: this.o.branch,
      path: this.o.path,
      intervalSeconds: this.o.intervalMs / 1000,
      prune: this.o.prune,
      pruneAll: this.o.pruneAll,
      requireSigned: this.o.requireSigned,
      ...(headCommit ? { applied: headCommit } : {}),
      ...(subject ? { appliedSubject: subject } : {}),
      ...(this.fetched ? { fetched: this.fetched } : {}),
      ready: ready.ready,
      reason: ready.readyReason,
      message: ready.readyMessage,
      failures: this.failures,
      ...(this.refused ? { refused: { revision: this.refused.revision, why: this.refused.why } } : {}),
      ...(this.guard ? { guard: this.guard } : {}),
      outOfSync: [...this.lastInfo.entries()]
        .filter(([, t]) => (JSON.parse(t) as JobSourceInfo).synced === false)
        .map(([n]) => n)
        .slice(0, 100),
      ignored: this.ignored.slice(0, 100),
      ...(this.lastRequest ? { request: this.lastRequest } : {}),
    };
    const key = JSON.stringify(doc);
    if (!force && key === this.lastStateText) return;
    this.lastStateText = key;
    const full: GitStateFile = {
      ...doc,
      ...(this.lastFetchAt ? { lastFetchAt: this.lastFetchAt } : {}),
      ...(this.lastSuccessAt ? { lastSuccessAt: this.lastSuccessAt } : {}),
      ...(this.nextFetchAt ? { nextFetchAt: this.nextFetchAt } : {}),
    };
    await writeFileAtomic(join(this.stateDir, 'state.json'), `${JSON.stringify(full, null, 1)}\n`);
  }
}
