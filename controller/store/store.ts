/**
 * The jobs directory: specs in (person-owned, never rewritten), status out (controller-owned,
 * atomic writes), control requests (cancel) from the CLI, and an events log.
 *   jobs/<name>.yaml            TrainingJob spec, or a Sweep (by its `kind`: readSweep)
 *   jobs/<name>.sweep.status.yaml   a sweep's status (store/sweeps.ts)
 *   jobs/<name>.status.yaml     status, written by the controller only
 *   jobs/<name>.control.yaml    requests from `ugro cancel`
 *   jobs/.ugro/events.jsonl     events, newest last
 *   jobs/.ugro/accepted/<name>.yaml   the spec its owner (or an admin) last applied
 * Everything read here is validated; names are DNS-1123 labels before any path is built.
 */
import { readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { assert, UgroError } from '../../config/errors.ts';
import { DNS1123_LABEL } from '../../config/names.ts';
import { parseYamlValue } from '../../config/yaml-guard.ts';
import { type Control, type ControlState, parseControl } from '../api/control.ts';
import type { SpecState } from '../api/job-state.ts';
import { type JobStatus, parseJobStatus, salvageJobStatus, statusIssues } from '../api/status.ts';
import { kindOf, parseSweep, SWEEP_KIND, type SweepState, sweepHash } from '../api/sweep.ts';
import { isJobFileName, jobNameFromFile, parseTrainingJob, specHash, type TrainingJob } from '../api/trainingjob.ts';
import type { Accounts } from './accounts.ts';
import { appendRegularFile, ensureOwnDir, lstatOrUndefined, readRegularFile, writeFileAtomic } from './files.ts';

export interface JobEvent {
  time: string;
  job: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
  /** The account whose request this event answers (`Cancelled by ollie`), when one did. */
  actor?: string;
}

export function isJobName(name: string): boolean {
  return name.length <= 63 && DNS1123_LABEL.test(name);
}

function assertJobName(name: string): void {
  // Callers validate user input with a proper message; reaching here with a bad name is a bug.
  assert(isJobName(name), () => `not a job name: ${JSON.stringify(name)}`);
}

export class JobStore {
  /**
   * Parsed files by path, valid while inode, size and mtime (ns) are unchanged: a resync reads
   * every job, and re-parsing 1000 unchanged YAML files a minute is most of an idle controller's CPU.
   */
  private readonly parsed = new Map<string, { key: string; value: unknown }>();

  /** events.jsonl is rotated to events.1.jsonl past this size: two files at most, never unbounded. */
  constructor(
    readonly dir: string,
    private readonly eventsMaxBytes = 4 * 1024 * 1024,
    /** Names the writer of each spec and control file; without it no file carries a writer. */
    private readonly accounts?: Accounts,
  ) {}

  private async writerOf(uid: number): Promise<{ writer?: string }> {
    return this.accounts ? { writer: await this.accounts.nameOf(uid) } : {};
  }

  private get own(): string {
    return join(this.dir, '.ugro');
  }

  /** Read a file in jobs/ safely and parse it, reusing the last parse while the file is unchanged. */
  private async cachedParse<T>(
    path: string,
    parseText: (text: string) => T,
  ): Promise<{ ok: true; value: T; uid: number } | { ok: false; missing: boolean; message: string; uid?: number }> {
    const hit = this.parsed.get(path);
    const r = await readRegularFile(path, undefined, hit?.key);
    if (!r.ok) {
      this.parsed.delete(path);
      return { ok: false, missing: r.missing, message: r.missing ? 'missing' : r.message };
    }
    if (hit && hit.key === r.key) return { ok: true, value: hit.value as T, uid: r.uid };
    const value = parseText(r.text);
    this.parsed.set(path, { key: r.key, value });
    return { ok: true, value, uid: r.uid };
  }

  async ensure(): Promise<void> {
    await ensureOwnDir(this.own);
  }

  /** The spec file of a job, or undefined. A `.yaml` wins over a `.yml`. */
  async specFile(name: string): Promise<string | undefined> {
    assertJobName(name);
    for (const ext of ['.yaml', '.yml']) {
      const p = join(this.dir, name + ext);
      if (await lstatOrUndefined(p)) return p;
    }
    return undefined;
  }

  statusFile(name: string): string {
    assertJobName(name);
    return join(this.dir, `${name}.status.yaml`);
  }
  controlFile(name: string): string {
    assertJobName(name);
    return join(this.dir, `${name}.control.yaml`);
  }

  /**
   * Every job name with a spec, a status or a control file. Entries whose name is not a job name
   * (`Bad_Name.yaml`) are listed in `invalidFiles` so the controller can say so, never reconciled.
   */
  async listNames(): Promise<{ specs: string[]; statuses: string[]; controls: string[]; invalidFiles: string[] }> {
    let entries: string[];
    try {
      entries = await readdir(this.dir);
    } catch {
      return { specs: [], statuses: [], controls: [], invalidFiles: [] };
    }
    const specs: string[] = [];
    const statuses: string[] = [];
    const controls: string[] = [];
    const invalidFiles: string[] = [];
    for (const e of entries) {
      const isStatus = e.endsWith('.status.yaml');
      const isControl = e.endsWith('.control.yaml');
      if (!isStatus && !isControl && !isJobFileName(e)) continue;
      const name = isStatus ? e.slice(0, -12) : isControl ? e.slice(0, -13) : jobNameFromFile(e);
      if (!isJobName(name)) {
        if (!isStatus && !isControl) invalidFiles.push(e);
        continue;
      }
      (isStatus ? statuses : isControl ? controls : specs).push(name);
    }
    return { specs, statuses, controls, invalidFiles };
  }

  /**
   * A TrainingJob's spec. A file whose `kind` is Sweep is no job (readSweep reads it): for the
   * jobs it is as if there were no file.
   */
  async readSpec(name: string): Promise<SpecState> {
    const r = await this.readJobFile(name);
    return r.kind === 'sweep' ? { kind: 'deleted' } : r;
  }

  /** A Sweep's spec; `deleted` when there is no file or it is a TrainingJob's. */
  async readSweep(name: string): Promise<SweepState> {
    const r = await this.readJobFile(name);
    return r.kind === 'sweep' ? r.sweep : { kind: 'deleted' };
  }

  /** A file in jobs/ by its `kind`: a TrainingJob (valid or not), or a Sweep. */
  private async readJobFile(name: string): Promise<SpecState | { kind: 'sweep'; sweep: SweepState }> {
    const file = await this.specFile(name);
    if (!file) return { kind: 'deleted' };
    const r = await this.cachedParse<SpecState | { kind: 'sweep'; sweep: SweepState }>(file, (text) => {
      const res = parseTrainingJob(text, file);
      if (res.ok) return { kind: 'valid', job: res.value, hash: specHash(res.value.spec), file };
      // Only a file that is no valid TrainingJob pays for a second look at its kind.
      if (!res.issues.some((i) => i.path === 'kind')) return { kind: 'invalid', file, issues: res.issues };
      let raw: unknown;
      try {
        raw = parseYamlValue(text);
      } catch {
        return { kind: 'invalid', file, issues: res.issues };
      }
      if (kindOf(raw) !== SWEEP_KIND) return { kind: 'invalid', file, issues: res.issues };
      const sw = parseSweep(text, file);
      return {
        kind: 'sweep',
        sweep: sw.ok
          ? { kind: 'valid', sweep: sw.value, hash: sweepHash(sw.value.spec), file }
          : { kind: 'invalid', file, issues: sw.issues },
      };
    });
    if (!r.ok) {
      if (r.missing) return { kind: 'deleted' };
      return { kind: 'invalid', file, issues: [{ path: '', message: r.message }] };
    }
    const v = r.value;
    if (v.kind === 'deleted') return v;
    const w = await this.writerOf(r.uid);
    return v.kind === 'sweep'
      ? v.sweep.kind === 'deleted'
        ? v
        : { kind: 'sweep', sweep: { ...v.sweep, ...w } }
      : { ...v, ...w };
  }

  private acceptedFile(name: string): string {
    assertJobName(name);
    return join(this.own, 'accepted', `${name}.yaml`);
  }

  /**
   * The spec its owner (or an admin) last applied: what the job goes on with when someone else
   * changes its file (core/authorize.ts). Undefined when none was kept or it no longer reads.
   */
  async readAccepted(name: string): Promise<Extract<SpecState, { kind: 'valid' }> | undefined> {
    const file = this.acceptedFile(name);
    const r = await this.cachedParse(file, (text) => {
      const res = parseTrainingJob(text, file);
      return res.ok && res.value.metadata.name === name ? res.value : undefined;
    });
    if (!r.ok || !r.value) return undefined;
    return { kind: 'valid', job: r.value, hash: specHash(r.value.spec), file };
  }

  /** Keep the spec a job was accepted with (private to the controller, like everything in .ugro/). */
  async writeAccepted(name: string, job: TrainingJob): Promise<void> {
    await ensureOwnDir(join(this.own, 'accepted'));
    await writeFileAtomic(this.acceptedFile(name), stringify(job), 0o600);
  }

  async deleteAccepted(name: string): Promise<void> {
    await unlink(this.acceptedFile(name)).catch(() => undefined);
  }

  async specMtime(name: string): Promise<Date | undefined> {
    const f = await this.specFile(name);
    const st = f ? await lstatOrUndefined(f) : undefined;
    return st?.mtime;
  }

  /**
   * The status; undefined when absent or unreadable (it is then rebuilt from observation). One that
   * parses but fails the schema is salvaged field by field (api/status.ts), so its restart budgets,
   * failures and createdAt survive a bad field.
   */
  async readStatus(name: string): Promise<JobStatus | undefined> {
    const r = await this.cachedParse(this.statusFile(name), (text) => {
      let raw: unknown;
      try {
        raw = parseYamlValue(text);
      } catch {
        return undefined;
      }
      return parseJobStatus(raw) ?? salvageJobStatus(raw, new Date().toISOString(), `${name}.status.yaml`);
    });
    // With accounts (a shared jobs dir), a status another account wrote is a forgery: not read (the
    // controller rebuilds it from what the hosts show, and replaces the file).
    if (r.ok && this.accounts && r.uid !== (process.geteuid?.() ?? r.uid)) return undefined;
    // A copy: callers build the next status from it and must not edit the cached one.
    return r.ok && r.value ? structuredClone(r.value) : undefined;
  }

  /** Returns true if the file changed. Skips identical writes (no churn, no mtime noise). */
  async writeStatus(name: string, status: JobStatus): Promise<boolean> {
    const head = `# Written by the UGRO controller; do not edit (your spec is ${name}.yaml).\n`;
    const text = head + stringify(checkedStatus(name, stripUndefined(status)), { lineWidth: 0 });
    const path = this.statusFile(name);
    const cur = await readRegularFile(path);
    if (cur.ok && cur.text === text) return false;
    await writeFileAtomic(path, text);
    return true;
  }

  async deleteStatus(name: string): Promise<void> {
    for (const f of [this.statusFile(name), this.controlFile(name), this.acceptedFile(name)]) {
      // unlink removes a symlink itself, never its target.
      await unlink(f).catch(() => undefined);
    }
  }

  async readControl(name: string): Promise<ControlState> {
    const file = this.controlFile(name);
    const r = await this.cachedParse(file, (t) => parseControl(t));
    if (!r.ok)
      return r.missing ? { kind: 'none' } : { kind: 'invalid', file, issues: [{ path: '', message: r.message }] };
    const w = await this.writerOf(r.uid);
    return r.value.ok
      ? { kind: 'valid', control: r.value.value, ...w }
      : { kind: 'invalid', file, issues: r.value.issues, ...w };
  }

  async writeControl(name: string, c: Control): Promise<void> {
    await writeFileAtomic(this.controlFile(name), stringify(c));
  }

  async deleteControl(name: string): Promise<void> {
    await unlink(this.controlFile(name)).catch(() => undefined);
  }

  async appendEvents(events: JobEvent[]): Promise<void> {
    if (!events.length) return;
    await this.ensure();
    const file = join(this.own, 'events.jsonl');
    const st = await lstatOrUndefined(file);
    if (st?.isFile() && st.size >= this.eventsMaxBytes) await rename(file, join(this.own, 'events.1.jsonl'));
    await appendRegularFile(file, `${events.map((e) => JSON.stringify(e)).join('\n')}\n`);
  }

  async readEvents(job?: string, limit = 50): Promise<JobEvent[]> {
    const read = async (f: string) => {
      const r = await readRegularFile(join(this.own, f), this.eventsMaxBytes * 2);
      return r.ok ? r.text : '';
    };
    // Current first: if the controller rotates between the two reads, the older file then starts
    // with what was just read as current, and is taken alone (nothing missed, nothing twice).
    const cur = await read('events.jsonl');
    const old = await read('events.1.jsonl');
    const text = cur && old.startsWith(cur) ? old : `${old}\n${cur}`;
    const all: JobEvent[] = [];
    for (const l of text.split('\n')) {
      if (!l) continue;
      const e = parseEvent(l);
      if (e && (!job || e.job === job)) all.push(e);
    }
    return all.slice(-limit);
  }
}

function parseEvent(line: string): JobEvent | undefined {
  try {
    const e = JSON.parse(line) as Partial<JobEvent>;
    const str = (v: unknown, max: number) => (typeof v === 'string' ? v.slice(0, max) : undefined);
    const time = str(e.time, 64);
    const job = str(e.job, 63);
    const reason = str(e.reason, 128);
    const message = str(e.message, 64 * 1024);
    if (!time || !job || !reason || message === undefined) return undefined;
    const actor = str(e.actor, 64);
    return {
      time,
      job,
      type: e.type === 'Warning' ? 'Warning' : 'Normal',
      reason,
      message,
      ...(actor ? { actor } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * Validated before it is written: a status that would not read back (a field over its limit) is
 * written salvaged, with the StatusSalvaged condition naming the field, never as a file that
 * fails its schema and makes every reconcile start the job's status over.
 */
function checkedStatus(name: string, status: JobStatus): JobStatus {
  if (parseJobStatus(status)) return status;
  const s = salvageJobStatus(status, new Date().toISOString(), `the status UGRO built for ${name} (a bug in UGRO)`);
  if (!s)
    throw new UgroError(`refusing to write ${name}.status.yaml: ${statusIssues(status).join('; ')} (a bug in UGRO)`);
  return s;
}

function stripUndefined<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}
