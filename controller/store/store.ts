/**
 * The jobs directory: specs in (person-owned, never rewritten), status out (controller-owned,
 * atomic writes), control requests (cancel) from the CLI, and an events log.
 *   jobs/<name>.yaml            TrainingJob spec
 *   jobs/<name>.status.yaml     status, written by the controller only
 *   jobs/<name>.control.yaml    requests from `ugro cancel`
 *   jobs/.ugro/events.jsonl     events, newest last
 */
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { UgroError } from '../../config/errors.ts';
import type { JobStatus } from '../api/status.ts';
import { isJobFileName, jobNameFromFile, parseTrainingJob, specHash } from '../api/trainingjob.ts';
import type { Control, SpecState } from '../core/reconcile.ts';

export interface JobEvent {
  time: string;
  job: string;
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

/** Write via a temp file + rename so readers never see half a file. */
export function writeFileAtomic(path: string, data: string): void {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    writeFileSync(tmp, data, { mode: 0o644 });
    renameSync(tmp, path);
  } catch (e) {
    // Full disk or a failed rename: leave nothing behind (each retry uses a new name).
    try {
      unlinkSync(tmp);
    } catch {
      /* never created */
    }
    throw e;
  }
}

/** Is pid a live process, and (where /proc tells) still a UGRO controller rather than a reused pid? */
function controllerAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('controller');
  } catch {
    return true; // no /proc (macOS): trust the pid
  }
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
  ) {}

  private cachedParse<T>(path: string, parse: (text: string) => T): T {
    const st = statSync(path, { bigint: true });
    const key = `${st.ino}:${st.size}:${st.mtimeNs}`;
    const hit = this.parsed.get(path);
    if (hit && hit.key === key) return hit.value as T;
    const value = parse(readFileSync(path, 'utf8'));
    this.parsed.set(path, { key, value });
    return value;
  }

  ensure(): void {
    mkdirSync(join(this.dir, '.ugro'), { recursive: true });
  }

  specFile(name: string): string | undefined {
    for (const ext of ['.yaml', '.yml']) {
      const p = join(this.dir, name + ext);
      if (existsSync(p)) return p;
    }
    return undefined;
  }

  statusFile(name: string): string {
    return join(this.dir, `${name}.status.yaml`);
  }
  controlFile(name: string): string {
    return join(this.dir, `${name}.control.yaml`);
  }

  /** Every name that has a spec, a status or a control file. */
  listNames(): { specs: string[]; statuses: string[] } {
    let entries: string[] = [];
    try {
      entries = readdirSync(this.dir);
    } catch {
      return { specs: [], statuses: [] };
    }
    return {
      specs: entries.filter(isJobFileName).map(jobNameFromFile),
      statuses: entries.filter((e) => e.endsWith('.status.yaml')).map((e) => e.slice(0, -'.status.yaml'.length)),
    };
  }

  readSpec(name: string): SpecState {
    const file = this.specFile(name);
    if (!file) return { kind: 'deleted' };
    try {
      return this.cachedParse<SpecState>(file, (text) => {
        const res = parseTrainingJob(text, file);
        if (!res.ok) return { kind: 'invalid', file, issues: res.issues };
        return { kind: 'valid', job: res.value, hash: specHash(res.value.spec), file };
      });
    } catch (e) {
      this.parsed.delete(file);
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'deleted' };
      return { kind: 'invalid', file, issues: [{ path: '', message: `cannot read: ${(e as Error).message}` }] };
    }
  }

  specMtime(name: string): Date | undefined {
    const f = this.specFile(name);
    try {
      return f ? statSync(f).mtime : undefined;
    } catch {
      return undefined;
    }
  }

  readStatus(name: string): JobStatus | undefined {
    const path = this.statusFile(name);
    try {
      // A copy: callers build the next status from it and must not edit the cached one.
      return structuredClone(this.cachedParse(path, (text) => parse(text) as JobStatus));
    } catch {
      this.parsed.delete(path);
      return undefined;
    }
  }

  /** Returns true if the file changed. Skips identical writes (no churn, no mtime noise). */
  writeStatus(name: string, status: JobStatus): boolean {
    const text = `# Written by the UGRO controller; do not edit (your spec is ${name}.yaml).\n${stringify(stripUndefined(status), { lineWidth: 0 })}`;
    const path = this.statusFile(name);
    try {
      if (readFileSync(path, 'utf8') === text) return false;
    } catch {
      /* new */
    }
    writeFileAtomic(path, text);
    return true;
  }

  deleteStatus(name: string): void {
    for (const f of [this.statusFile(name), this.controlFile(name)]) {
      try {
        unlinkSync(f);
      } catch {
        /* already gone */
      }
    }
  }

  readControl(name: string): Control | undefined {
    // Almost always absent: a stat that does not throw is far cheaper on every resync than an
    // ENOENT exception per job.
    const file = this.controlFile(name);
    if (!statSync(file, { throwIfNoEntry: false })) return undefined;
    try {
      return this.cachedParse(file, (t) => parse(t) as Control);
    } catch {
      return undefined;
    }
  }

  writeControl(name: string, c: Control): void {
    writeFileAtomic(this.controlFile(name), stringify(c));
  }

  /**
   * One controller per jobs directory: two would both launch and stop runs. A pid file made with
   * O_EXCL; a file left by a controller that died (kill -9) is taken over once its pid is gone.
   */
  lockController(): () => void {
    const file = join(this.dir, '.ugro', 'controller.pid');
    for (let tries = 0; tries < 2; tries++) {
      try {
        writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
        return () => {
          try {
            if (readFileSync(file, 'utf8').trim() === String(process.pid)) unlinkSync(file);
          } catch {
            /* already gone */
          }
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const held = readFileSync(file, 'utf8').trim();
        const pid = Number(held);
        if (pid && pid !== process.pid && controllerAlive(pid)) {
          throw new UgroError(
            `another controller (pid ${pid}) is already running on ${this.dir}: stop it first (two would launch the same jobs twice)`,
          );
        }
        // Stale. Remove it only if it still names that pid: another starter may have just taken it.
        try {
          if (readFileSync(file, 'utf8').trim() === held) unlinkSync(file);
        } catch {
          /* gone already */
        }
      }
    }
    throw new UgroError(`cannot take ${file}: another controller is starting on ${this.dir}`);
  }

  appendEvents(events: JobEvent[]): void {
    if (!events.length) return;
    this.ensure();
    const file = join(this.dir, '.ugro', 'events.jsonl');
    try {
      if (statSync(file).size >= this.eventsMaxBytes) renameSync(file, join(this.dir, '.ugro', 'events.1.jsonl'));
    } catch {
      /* no file yet */
    }
    appendFileSync(file, `${events.map((e) => JSON.stringify(e)).join('\n')}\n`);
  }

  readEvents(job?: string, limit = 50): JobEvent[] {
    const read = (f: string) => {
      try {
        return readFileSync(join(this.dir, '.ugro', f), 'utf8');
      } catch {
        return '';
      }
    };
    // Current first: if the controller rotates between the two reads, the older file then starts
    // with what was just read as current, and is taken alone (nothing missed, nothing twice).
    const cur = read('events.jsonl');
    const old = read('events.1.jsonl');
    const text = cur && old.startsWith(cur) ? old : `${old}\n${cur}`;
    const all = text
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        try {
          return JSON.parse(l) as JobEvent;
        } catch {
          return undefined;
        }
      })
      .filter((e): e is JobEvent => !!e && (!job || e.job === job));
    return all.slice(-limit);
  }
}

function stripUndefined<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}
