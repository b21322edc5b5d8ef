/**
 * The jobs directory as `ugro get jobs` and `ugro status` read it: the job names, and each job's
 * status (its spec only when it has no status yet) parsed from YAML but not schema-checked. The
 * table shows a few fields and render/jobs.ts type-checks each of them; loading the schema
 * library (zod) would cost more than listing a hundred jobs. `-o json|yaml` goes through the
 * store and its schemas instead.
 *
 * Parsing YAML is most of the cost (about 1-3 ms per status file with the `yaml` package), so
 * what the table needs of each file is cached per user, keyed by the file's inode, size, mtime
 * and ctime (as the store's own cache keys by inode, size and mtime): a listing re-reads only
 * the files that changed, and loads no YAML parser when none did. The cache holds the fields the
 * table shows, which go through the same type checks as freshly parsed ones, so a damaged or
 * edited cache file can show wrong values but never break the command.
 *
 * File naming follows controller/store/store.ts (listNames, specFile, statusFile);
 * tests/unit/cli-jobs.test.ts checks that both list the same names for the same directory.
 */
import { lstatSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readRegularFile, writeFileAtomic } from '../store/files.ts';
import { isJobName } from './args.ts';
import type { Env } from './context.ts';
import { type JobRowInput, projectSpec, projectStatus } from './render/jobs.ts';

/** Every job with a spec or a status file, sorted. Files whose stem is not a job name are skipped. */
export function listJobNames(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  const names = new Set<string>();
  for (const e of entries) {
    if (e.startsWith('.') || /\.control\.ya?ml$/.test(e)) continue;
    const m = /^(.*?)(\.status)?\.(yaml|yml)$/.exec(e);
    if (!m || (m[2] && m[3] !== 'yaml')) continue;
    if (isJobName(m[1])) names.add(m[1]);
  }
  return [...names].sort();
}

const isRec = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const hasPhase = (v: unknown) =>
  typeof v === 'object' && v !== null && typeof (v as { phase?: unknown }).phase === 'string';

/** Where this user's cache for `dir` lives ($XDG_CACHE_HOME or ~/.cache), or undefined for none. */
export function cacheFileFor(env: Env, dir: string): string | undefined {
  const base = env.XDG_CACHE_HOME || (env.HOME ? join(env.HOME, '.cache') : undefined);
  if (!base) return undefined;
  // FNV-1a over the path (not crypto: loading node:crypto costs more than this whole lookup).
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193;
  for (let i = 0; i < dir.length; i++) {
    h1 = Math.imul(h1 ^ dir.charCodeAt(i), 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ dir.charCodeAt(i), 0x811c9dc5) >>> 0;
  }
  return join(base, 'ugro', `get-jobs-${h1.toString(16).padStart(8, '0')}${h2.toString(16).padStart(8, '0')}.json`);
}

interface Entry {
  key: string;
  value: unknown;
}

const CACHE_VERSION = 6;
const CACHE_MAX_BYTES = 64 * 1024 * 1024;

/** Identity of a regular file as it is now; undefined when missing, 'other' when not a regular file. */
function fileKey(path: string): string | undefined {
  const st = lstatSync(path, { bigint: true, throwIfNoEntry: false });
  if (!st) return undefined;
  return st.isFile() ? `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : 'other';
}

class RowReader {
  private readonly fresh = new Map<string, Entry>();
  private changed = false;
  private parse?: (text: string) => unknown;

  constructor(
    private readonly dir: string,
    private readonly cached: Map<string, Entry>,
  ) {}

  /** What the table needs of `file` (a name in dir): found=false when there is no such file. */
  async read(file: string, project: (raw: unknown) => unknown): Promise<{ found: boolean; value?: unknown }> {
    const path = `${this.dir}/${file}`; // dir is absolute (resolved) and file a plain name: no join (measurably slower)
    const key = fileKey(path);
    if (key === undefined) return { found: false };
    const hit = this.cached.get(file);
    if (key !== 'other' && hit?.key === key) {
      this.fresh.set(file, hit);
      return { found: true, value: hit.value ?? undefined };
    }
    const r = await readRegularFile(path);
    if (!r.ok) return { found: !r.missing };
    let value: unknown;
    try {
      this.parse ??= (await import('./yaml.ts')).parse;
      value = project(this.parse(r.text));
    } catch {
      value = undefined; // not YAML: shown as a job without status, like the store does
    }
    // Cache it only if the file did not change while it was read.
    if (fileKey(path) === key && key !== 'other') {
      this.fresh.set(file, { key, value: value ?? null });
      this.changed = true;
    }
    return { found: true, value };
  }

  /** The entries seen this time; `keepOthers` for a partial listing (get jobs NAME…). */
  entries(keepOthers: boolean): { entries: Map<string, Entry>; changed: boolean } {
    if (!keepOthers) return { entries: this.fresh, changed: this.changed || this.fresh.size !== this.cached.size };
    const all = new Map([...this.cached, ...this.fresh]);
    return { entries: all, changed: this.changed };
  }
}

async function loadCache(file: string | undefined, dir: string): Promise<Map<string, Entry>> {
  if (!file) return new Map();
  const r = await readRegularFile(file, CACHE_MAX_BYTES);
  if (!r.ok) return new Map();
  try {
    const c = JSON.parse(r.text) as { v?: unknown; dir?: unknown; entries?: unknown };
    if (c.v !== CACHE_VERSION || c.dir !== dir || typeof c.entries !== 'object' || c.entries === null) return new Map();
    return new Map(
      Object.entries(c.entries as Record<string, Entry>).filter(
        ([, e]) => typeof e === 'object' && e !== null && typeof e.key === 'string',
      ),
    );
  } catch {
    return new Map();
  }
}

async function saveCache(file: string, dir: string, entries: Map<string, Entry>): Promise<void> {
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    const text = JSON.stringify({ v: CACHE_VERSION, dir, entries: Object.fromEntries(entries) });
    await writeFileAtomic(file, text, 0o600);
  } catch {
    // A cache that cannot be written (read-only home, full disk) only costs speed.
  }
}

/** One job's row input: its status; its spec (a `.yaml` wins over a `.yml`) only without a status. */
async function readRow(reader: RowReader, name: string): Promise<JobRowInput & { exists: boolean }> {
  const status = await reader.read(`${name}.status.yaml`, projectStatus);
  if (hasPhase(status.value)) return { name, status: status.value, exists: true };
  for (const ext of ['.yaml', '.yml']) {
    const spec = await reader.read(name + ext, projectSpec);
    if (spec.found && isRec(spec.value) && spec.value.sweep === true) return { name, exists: false };
    if (spec.found) return { name, spec: spec.value, exists: true };
  }
  return { name, exists: status.found };
}

/**
 * Rows for `names` (every job when empty), in name order, and the names asked for that have no
 * file at all. Names must have been checked with requireJobName. `cacheFile`: see cacheFileFor.
 */
export async function readJobRows(
  dir: string,
  names: string[] = [],
  cacheFile?: string,
): Promise<{ rows: JobRowInput[]; missing: string[] }> {
  const reader = new RowReader(dir, await loadCache(cacheFile, dir));
  const wanted = names.length ? [...new Set(names)].sort() : listJobNames(dir);
  const read = await Promise.all(wanted.map((n) => readRow(reader, n)));
  if (cacheFile) {
    const { entries, changed } = reader.entries(names.length > 0);
    if (changed) await saveCache(cacheFile, dir, entries);
  }
  return {
    rows: read.filter((r) => r.exists).map(({ exists: _, ...row }) => row),
    // A full listing misses nothing (a sweep's file is listed and left out: it is no job).
    missing: names.length ? read.filter((r) => !r.exists).map((r) => r.name) : [],
  };
}
