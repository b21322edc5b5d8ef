/**
 * The model registry (`ugro promote`, `ugro models`): `jobs/models/NAME/vN.json`, one file per
 * version. It lives in jobs/ (not jobs/.ugro, which only the controller's account may write: the
 * CLI promotes as the person who runs it) and is read back through api/model.ts's schema like any
 * file there: regular files only, size-capped, never through a symlink, a file that is not what its
 * name says (model, version) rejected with why. A version is created exclusively: written whole to
 * a temp name, then hard-linked to vN.json, which fails if vN.json exists (two promotes at once get
 * v1 and v2, never one replacing the other; a rename would replace it, so writeFileAtomic is not
 * enough here). The controller only reads it, to keep promoted checkpoints out of retention.
 */
import { constants } from 'node:fs';
import { chmod, link, lstat, mkdir, open, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { NotFoundError, UgroError } from '../../config/errors.ts';
import { isModelName, type ModelVersion, modelVersionSchema } from '../api/model.ts';
import { readRegularFile } from './files.ts';

/** A version file is small: lineage and a few copies. */
const MAX_VERSION_BYTES = 64 * 1024;
/** Read at most this many models, and versions per model (a flood of files cannot stall a reader). */
const MAX_ENTRIES = 10_000;
const VERSION_FILE = /^v([1-9]\d{0,6})\.json$/;

export interface ModelListing {
  versions: ModelVersion[];
  /** Files that fail validation: shown, never used. */
  rejected: { file: string; why: string }[];
}

export class ModelRegistry {
  constructor(readonly dir: string) {}

  /** The registry of a jobs directory. */
  static of(jobsDir: string): ModelRegistry {
    return new ModelRegistry(join(jobsDir, 'models'));
  }

  /** Every version (of `model`, or of all), oldest first per model. */
  async list(model?: string): Promise<ModelListing> {
    const out: ModelListing = { versions: [], rejected: [] };
    if (!(await this.isDir(this.dir, out))) return out;
    const names = model !== undefined ? [model] : (await readdir(this.dir)).sort().slice(0, MAX_ENTRIES);
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const dir = join(this.dir, name);
      if (!isModelName(name)) {
        out.rejected.push({ file: dir, why: 'not a model name (a DNS-1123 label)' });
        continue;
      }
      if (!(await this.isDir(dir, out))) continue;
      const files = (await readdir(dir)).filter((f) => !f.startsWith('.')).slice(0, MAX_ENTRIES);
      const found: ModelVersion[] = [];
      for (const f of files) {
        const v = await this.readVersion(name, dir, f);
        if ('why' in v) out.rejected.push({ file: join(dir, f), why: v.why });
        else found.push(v.version);
      }
      out.versions.push(...found.sort((a, b) => a.version - b.version));
    }
    return out;
  }

  /** Register the next version of `v.model` (v1 if none); returns it with its number. */
  async add(v: Omit<ModelVersion, 'version'>): Promise<ModelVersion> {
    if (!isModelName(v.model)) throw new UgroError(`${JSON.stringify(v.model)} is not a model name`);
    await this.ensureDir(this.dir, await this.sharedMode());
    const dir = join(this.dir, v.model);
    await this.ensureDir(dir, 0o755);
    const existing = (await this.list(v.model)).versions;
    let next = Math.max(0, ...existing.map((x) => x.version)) + 1;
    const tmp = join(dir, `.new-${process.pid}-${Math.random().toString(36).slice(2, 10)}.json`);
    try {
      for (let tries = 0; tries < 100; tries++, next++) {
        const version: ModelVersion = modelVersionSchema.parse({ ...v, version: next });
        const fh = await open(
          tmp,
          constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
          0o644,
        );
        try {
          await fh.writeFile(`${JSON.stringify(version, null, 2)}\n`);
          await fh.sync();
        } finally {
          await fh.close();
        }
        try {
          await link(tmp, join(dir, `v${next}.json`));
          return version;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        } finally {
          await unlink(tmp).catch(() => undefined);
        }
      }
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    throw new UgroError(`cannot register a version of ${v.model} in ${dir}: 100 version numbers were taken meanwhile`);
  }

  /** One version, or NotFoundError. */
  async get(model: string, version: number): Promise<ModelVersion> {
    const v = (await this.list(model)).versions.find((x) => x.version === version);
    if (!v) throw new NotFoundError(`no model version ${model}:v${version} in ${this.dir}`);
    return v;
  }

  private async readVersion(
    model: string,
    dir: string,
    file: string,
  ): Promise<{ version: ModelVersion } | { why: string }> {
    const m = VERSION_FILE.exec(file);
    if (!m) return { why: 'not a version file (vN.json)' };
    const r = await readRegularFile(join(dir, file), MAX_VERSION_BYTES);
    if (!r.ok) return { why: r.missing ? 'gone while read' : r.message };
    let raw: unknown;
    try {
      raw = JSON.parse(r.text);
    } catch {
      return { why: 'not JSON' };
    }
    const p = modelVersionSchema.safeParse(raw);
    if (!p.success) {
      const i = p.error.issues[0];
      return { why: `${i.path.join('.') || '(document)'}: ${i.message}` };
    }
    if (p.data.model !== model || p.data.version !== Number(m[1]))
      return { why: `it says ${p.data.model}:v${p.data.version}, not ${model}:v${m[1]}` };
    return { version: p.data };
  }

  /** A directory (never through a symlink); a missing one is empty, anything else is rejected. */
  private async isDir(path: string, out: ModelListing): Promise<boolean> {
    const st = await lstat(path).catch(() => undefined);
    if (!st) return false;
    if (st.isDirectory()) return true;
    out.rejected.push({ file: path, why: st.isSymbolicLink() ? 'a symbolic link' : 'not a directory' });
    return false;
  }

  private async ensureDir(path: string, mode: number): Promise<void> {
    const st = await lstat(path).catch(() => undefined);
    if (st && !st.isDirectory())
      throw new UgroError(
        `${path} is not a directory (${st.isSymbolicLink() ? 'a symbolic link' : 'a file'}): remove it`,
      );
    if (st) return;
    await mkdir(path, { mode });
    await chmod(path, mode);
  }

  /** jobs/models/ is writable by whoever may write jobs/: sticky like it when jobs/ is shared. */
  private async sharedMode(): Promise<number> {
    const st = await lstat(join(this.dir, '..')).catch(() => undefined);
    return st && (st.mode & 0o022) !== 0 ? 0o1755 | (st.mode & 0o022) : 0o755;
  }
}
