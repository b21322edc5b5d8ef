/**
 * Keeping the clone from growing without bound. A fetch killed at its timeout (or by the size cap)
 * leaves its half-received pack (objects/pack/tmp_pack_*, megabytes each) and maybe a ref lock
 * that would fail every later fetch; nothing else removes them, so every failed fetch is cleaned
 * up after (and every start, after a controller killed mid-fetch). Every fetch arrives as one pack
 * (fetch.unpackLimit=1), so the cap can watch the incoming pack grow and stop a fetch that would
 * take the clone over it; and the packs are consolidated, with what no ref reaches (history a
 * force-push dropped) pruned, now and then.
 * All of it runs between git commands of the one source (its chain): never beside a running git.
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** The most a clone may hold (a jobs repository is YAML; this leaves room for a busy monorepo). */
export const DEFAULT_MAX_CLONE_BYTES = 1024 * 1024 * 1024;

/** Consolidate when this many packs piled up (one per fetch that brought something), or once a day. */
export const GC_PACKS = 20;
const GC_EVERY_MS = 24 * 3_600_000;

/** What a killed git leaves behind in a bare repository: temp packs and objects, and lock files. */
export async function cleanAfterFailure(dir: string): Promise<string[]> {
  const removed: string[] = [];
  const pack = join(dir, 'objects', 'pack');
  for (const f of await readdir(pack).catch(() => [] as string[]))
    if (f.startsWith('tmp_') || f.endsWith('.lock')) removed.push(join(pack, f));
  for (const f of await readdir(join(dir, 'objects')).catch(() => [] as string[]))
    if (f.startsWith('incoming-') || f.startsWith('tmp_')) removed.push(join(dir, 'objects', f));
  for (const f of ['packed-refs.lock', 'shallow.lock', 'HEAD.lock', 'config.lock'])
    if (await lstat(join(dir, f)).catch(() => undefined)) removed.push(join(dir, f));
  removed.push(...(await locksUnder(join(dir, 'refs'))));
  for (const p of removed) await rm(p, { recursive: true, force: true });
  return removed;
}

async function locksUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await locksUnder(p)));
    else if (e.name.endsWith('.lock')) out.push(p);
  }
  return out;
}

/** Bytes of the object database: packs (and what arrives as one), and loose objects, if any. */
async function cloneBytes(dir: string): Promise<{ bytes: number; packs: number }> {
  let bytes = 0;
  let packs = 0;
  const objects = join(dir, 'objects');
  for (const e of await readdir(objects, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory() || e.name === 'info') continue;
    for (const f of await readdir(join(objects, e.name)).catch(() => [] as string[])) {
      const st = await lstat(join(objects, e.name, f)).catch(() => undefined);
      if (st?.isFile()) bytes += st.size;
      if (e.name === 'pack' && f.endsWith('.pack')) packs++;
    }
  }
  return { bytes, packs };
}

/** Bytes of the packs arriving now (objects/pack/tmp_pack_*): what the cap watches during a fetch. */
export async function incomingBytes(dir: string): Promise<number> {
  const pack = join(dir, 'objects', 'pack');
  let bytes = 0;
  for (const f of await readdir(pack).catch(() => [] as string[])) {
    if (!f.startsWith('tmp_')) continue;
    const st = await lstat(join(pack, f)).catch(() => undefined);
    if (st?.isFile()) bytes += st.size;
  }
  return bytes;
}

/** Is it time to consolidate? Many packs, or a day since the last time. */
function gcDue(packs: number, lastGcAt: number | undefined, now: number): boolean {
  return packs >= GC_PACKS || (packs > 1 && lastGcAt !== undefined && now - lastGcAt >= GC_EVERY_MS);
}

export function mib(bytes: number): string {
  return `${Math.round((bytes / 1024 / 1024) * 10) / 10} MiB`;
}

/** The clone's size as last measured, the room the next fetch has, and when to consolidate. */
export class Upkeep {
  bytes = 0;
  packs = 0;
  private lastGcAt: number;

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    private readonly now: () => number,
  ) {
    this.lastGcAt = now();
  }

  /** Measure the clone (at start, and after a fetch that brought objects or a gc). */
  async measure(): Promise<void> {
    const c = await cloneBytes(this.dir);
    this.bytes = c.bytes;
    this.packs = c.packs;
  }

  /** Bytes the next fetch may bring before it is stopped. */
  room(): number {
    return Math.max(0, this.maxBytes - this.bytes);
  }

  full(): boolean {
    return this.room() === 0;
  }

  gcDue(): boolean {
    return gcDue(this.packs, this.lastGcAt, this.now());
  }

  gcDone(): void {
    this.lastGcAt = this.now();
  }
}
