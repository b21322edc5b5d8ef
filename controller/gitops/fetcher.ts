/**
 * One fetch of the branch, with everything around it: the clone's config checked first
 * (hardening.ts), the shared ssh connection (mux.ts), the size cap, the clean-up after a failure
 * and the consolidation now and then (housekeeping.ts). The source (source.ts) decides what a
 * fetched head means; this only brings it in.
 */
import { join } from 'node:path';
import type { Logger } from '../base/log.ts';
import { Git, type GitAuth, GitError, gitEnv, writeGitHelpers } from './git.ts';
import { originOf } from './hardening.ts';
import { cleanAfterFailure, mib, Upkeep } from './housekeeping.ts';
import { persistSeconds, SshMux } from './mux.ts';

export interface FetcherOptions {
  /** jobs/.ugro/git */
  stateDir: string;
  url: string;
  branch: string;
  auth: GitAuth;
  intervalMs: number;
  log: Logger;
  maxCloneBytes: number;
  fetchTimeoutMs?: number;
  baseEnv?: NodeJS.ProcessEnv;
  now: () => number;
  /** An event for `ugro events` (the clone was tampered with). */
  warn: (reason: string, message: string) => Promise<void>;
}

export class Fetcher {
  readonly git: Git;
  private readonly mux: SshMux;
  readonly upkeep: Upkeep;
  private lastFetched?: string;
  private gcWanted = false;

  private constructor(
    private readonly o: FetcherOptions,
    git: Git,
  ) {
    this.git = git;
    this.mux = new SshMux(join(o.stateDir, 'mux'), o.url, o.auth, persistSeconds(o.intervalMs), o.baseEnv);
    this.upkeep = new Upkeep(git.dir, o.maxCloneBytes, o.now);
  }

  /** Helpers written, the clone made or checked, what a killed fetch left removed, its size measured. */
  static async open(o: FetcherOptions): Promise<Fetcher> {
    const helpers = await writeGitHelpers(o.stateDir);
    const auth = o.auth.token && !o.auth.origin ? { ...o.auth, origin: originOf(o.url) } : o.auth;
    const env = gitEnv(helpers, o.stateDir, auth, o.baseEnv ?? process.env);
    const f = new Fetcher(o, new Git(join(o.stateDir, 'repo.git'), env));
    await f.mux.prepare();
    await f.reportRepairs(await f.git.init());
    const left = await cleanAfterFailure(f.git.dir);
    if (left.length) o.log.info('git source: removed what an interrupted fetch left', { files: left.length });
    await f.upkeep.measure();
    return f;
  }

  /** Fetch the branch into refs/ugro/fetched; throws a GitError saying why not. */
  async fetch(): Promise<void> {
    await this.reportRepairs(await this.git.secure());
    if (this.upkeep.full()) await this.gc('the clone is at its size cap');
    if (this.upkeep.full())
      throw new GitError(
        `the clone holds ${mib(this.upkeep.bytes)}, at its cap of ${mib(this.upkeep.maxBytes)}: ` +
          'the repository is too big for a jobs source (keep job files in a smaller repository)',
      );
    try {
      await this.git.fetch(this.o.url, this.o.branch, this.o.fetchTimeoutMs, {
        maxBytes: this.upkeep.room(),
        env: await this.mux.env(),
      });
    } catch (e) {
      const left = await cleanAfterFailure(this.git.dir);
      if (left.length) this.o.log.info('git source: removed what the failed fetch left', { files: left.length });
      throw e;
    }
    const head = await this.git.readLooseRef('refs/ugro/fetched');
    // Objects come only with a head that moved (or a packed ref, after a gc): measure then.
    if (head === undefined || head !== this.lastFetched) {
      this.lastFetched = head;
      await this.upkeep.measure();
      if (this.upkeep.gcDue()) this.gcWanted = true;
    }
  }

  /** Consolidate if it is due (run after the sync is answered, on the source's chain). */
  async maintain(): Promise<void> {
    if (!this.gcWanted) return;
    this.gcWanted = false;
    await this.gc(`${this.upkeep.packs} packs`);
  }

  private async gc(why: string): Promise<void> {
    const t0 = Date.now();
    const before = this.upkeep.bytes;
    // Everything refs/ugro/* does not reach (history a force-push dropped) goes now: nothing else
    // runs git here meanwhile.
    const r = await this.git.run(['gc', '--quiet', '--prune=now'], { timeoutMs: 600_000 });
    this.upkeep.gcDone();
    await this.upkeep.measure();
    const fields = { why, before: mib(before), after: mib(this.upkeep.bytes), ms: Date.now() - t0 };
    if (r.code === 0) this.o.log.info('git source: consolidated the clone (git gc)', fields);
    else this.o.log.warn('git source: git gc failed', { ...fields, error: r.stderr.trim().slice(-500) });
  }

  async stop(): Promise<void> {
    this.git.killAll();
    await this.mux.stop();
  }

  private async reportRepairs(repaired: string[]): Promise<void> {
    if (!repaired.length) return;
    const files = repaired.map((f) => `repo.git/${f}`).join(', ');
    this.o.log.warn('git source: the clone was changed by someone else; restored', { files });
    await this.o.warn(
      'CloneTampered',
      `${files} in ${this.o.stateDir} differed from what UGRO writes (it could choose a program or a host for git): ` +
        'restored; check who can write there',
    );
  }
}
