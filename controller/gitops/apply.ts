/**
 * What the git source wrote into jobs/, and the one step that writes it: bringing jobs/ to a head
 * (planSync decides what to write, adopt and prune; this does it and records it in applied.json).
 * Also reads a head's job tree from the clone and a job's file in jobs/ as it is now. When to
 * apply, and what to tell the controller and the CLI, is the source's (source.ts, report.ts).
 */
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../base/log.ts';
import { MAX_FILE_BYTES, writeFileAtomic } from '../store/files.ts';
import { blobId, type Git, GitError } from './git.ts';
import { type Manifest, parseManifest, readRawFile } from './manifest.ts';
import { type JobTree, type LocalFile, parseTree, planSync } from './sync-plan.ts';

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

/** What applying needs of the source's options (GitSourceOptions, source.ts). */
export interface ApplierOptions {
  jobsDir: string;
  url: string;
  branch: string;
  /** The jobs path in the repository, normalized ('' for the root). */
  path: string;
  prune: boolean;
  pruneAll: boolean;
  log: Logger;
}

export type SourceEvent = (reason: string, message: string, warning?: boolean) => Promise<void>;

/** The applied state; the source and its report read these fields, only this class writes them. */
export class Applier {
  manifest: Manifest = { jobs: new Map(), rewrittenJobs: [] };
  tree?: JobTree;
  /** Apply the head even if it is the applied one (start: pending prunes, files changed while down). */
  dirty = true;
  readonly pruned = new Map<string, string>();
  keptWhy = new Map<string, string>();
  guard?: string;
  ignored: { file: string; why: string }[] = [];
  private readonly localCache = new Map<string, { key: string; local: LocalFile }>();

  constructor(
    private readonly o: ApplierOptions,
    private readonly stateDir: string,
    private readonly git: () => Git,
    private readonly event: SourceEvent,
    private readonly stats: { applies: number; writes: number; prunes: number },
  ) {}

  private get repoGit(): Git {
    return this.git();
  }

  /** At start: applied.json back, and the applied head's tree (if the clone still has it). */
  async load(): Promise<void> {
    await this.loadManifest();
    if (this.manifest.head) {
      try {
        this.tree = await this.readTree(this.manifest.head);
      } catch {
        this.tree = undefined; // the clone lost it: the next apply rebuilds it
      }
    }
  }

  /**
   * Bring jobs/ to `head` (planSync decides), then record it as applied. `signer`: the principal
   * whose verified signature is on `head` (--require-signed), recorded for each file this head
   * writes; a file it leaves as it was keeps the signer of the head that wrote it.
   */
  async apply(head: string, signer?: string): Promise<SyncOutcome> {
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
        ...(signer ? { signer } : {}),
      });
      this.pruned.delete(w.job.name);
      touched.push(w.job.name);
    }
    for (const a of plan.adopt) {
      const before = jobs.get(a.name);
      const same = before && before.oid === a.oid ? before : undefined;
      const commit = same ? same.commit : (commits.get(a.repoFile) ?? headInfo);
      // The same bytes git wrote before keep their signer; bytes new to git are this head's.
      const by = same ? same.signer : signer;
      jobs.set(a.name, { file: a.file, repoFile: a.repoFile, oid: a.oid, commit, ...(by ? { signer: by } : {}) });
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
        `${this.o.branch} at ${head.slice(0, 12)} "${headInfo.subject}" by ${headInfo.author}` +
          `${signer ? `, signed by ${signer}` : ''}: ` +
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

  /** The job's file in jobs/ now (`.yaml` before `.yml`, as the store reads it), with its blob id. */
  async localOf(name: string): Promise<LocalFile | undefined> {
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

  async readTree(head: string): Promise<JobTree> {
    const treeish = this.o.path ? `${head}:${this.o.path}` : `${head}^{tree}`;
    // ls-tree first (one git process); only when it fails, ask what the path is: no path there (or
    // not a directory) is an empty tree, anything else (a damaged clone) an error, never "empty".
    const r = await this.repoGit.run(['ls-tree', '-z', '-l', treeish]);
    if (r.code === 0) return parseTree(r.stdout, this.o.path);
    const type = await this.repoGit.typeOf(treeish);
    if (type !== 'tree') return parseTree('', this.o.path, true);
    return parseTree(await this.repoGit.lsTree(treeish), this.o.path);
  }

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
}
