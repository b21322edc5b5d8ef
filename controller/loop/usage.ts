/**
 * GPU time per owner, decaying with a half-life (24 h by default): what fair share orders jobs of
 * one priority by. Beside it, the same GPU time in hourly buckets over the last 7 days: what the
 * `gpu_hours_per_week` quota is measured against (rolling, not decayed). Accounted from the live
 * runs the controller sees, persisted in jobs/.ugro/usage.json (atomically; read back as hostile
 * input) so a restart keeps the history.
 */
import { join } from 'node:path';
import { z } from 'zod';
import { readRegularFile, writeFileAtomic } from '../store/files.ts';

const DEFAULT_HALF_LIFE_HOURS = 24;

/** The longest owner name kept (as status.owner): a longer one is cut, never a reason to drop the file. */
const MAX_OWNER = 512;
const MAX_OWNERS = 10_000;

const entrySchema = z.object({ gpuSeconds: z.number().nonnegative().finite(), at: z.number().finite() });

/**
 * usage.json as read back: hostile input like every file under jobs/. Checked entry by entry: one
 * bad owner (a name over the limit, a negative count) is dropped, never the whole history.
 */
const usageFileSchema = z.object({
  halfLifeHours: z.number().positive().max(100_000),
  owners: z.record(z.string(), z.unknown()),
  /** owner -> [hour index (ms / 3600000), GPU-seconds] of the last 7 days (absent in older files). */
  week: z.record(z.string(), z.unknown()).optional(),
});

const HOUR_MS = 3_600_000;
const WEEK_HOURS = 7 * 24;
const bucketsSchema = z
  .array(z.tuple([z.number().int().nonnegative(), z.number().nonnegative().finite()]))
  .max(WEEK_HOURS + 1);

interface Entry {
  /** Decayed GPU-seconds as of `at`. */
  gpuSeconds: number;
  at: number;
}

export class Usage {
  private readonly entries = new Map<string, Entry>();
  /** owner -> hour index -> GPU-seconds, the last 7 days. */
  private readonly week = new Map<string, Map<number, number>>();
  private dirty = false;

  constructor(
    private readonly file: string,
    private halfLifeMs = DEFAULT_HALF_LIFE_HOURS * 3_600_000,
  ) {}

  static inDir(jobsDir: string, halfLifeHours = DEFAULT_HALF_LIFE_HOURS): Usage {
    return new Usage(join(jobsDir, '.ugro', 'usage.json'), halfLifeHours * 3_600_000);
  }

  get halfLifeHours(): number {
    return this.halfLifeMs / 3_600_000;
  }

  private decayed(e: Entry, now: number): number {
    return e.gpuSeconds * 2 ** (-(now - e.at) / this.halfLifeMs);
  }

  /** Add GPU-seconds for an owner. */
  add(owner: string, gpuSeconds: number, now: number): void {
    if (!(gpuSeconds > 0)) return;
    owner = owner.slice(0, MAX_OWNER);
    const e = this.entries.get(owner);
    this.entries.set(owner, { gpuSeconds: (e ? this.decayed(e, now) : 0) + gpuSeconds, at: now });
    const hour = Math.floor(now / HOUR_MS);
    const b = this.week.get(owner) ?? new Map<number, number>();
    b.set(hour, (b.get(hour) ?? 0) + gpuSeconds);
    this.week.set(owner, b);
    this.prune(now);
    this.dirty = true;
  }

  /** Forget the hours that left the 7-day window. */
  private prune(now: number): void {
    const first = Math.floor(now / HOUR_MS) - WEEK_HOURS + 1;
    for (const [owner, b] of this.week) {
      for (const h of b.keys()) if (h < first) b.delete(h);
      if (!b.size) this.week.delete(owner);
    }
  }

  /** Every owner's GPU-hours over the last 7 days (the hour now included). */
  weekHours(now: number): Map<string, number> {
    const first = Math.floor(now / HOUR_MS) - WEEK_HOURS + 1;
    const out = new Map<string, number>();
    for (const [owner, b] of this.week) {
      let s = 0;
      for (const [h, v] of b) if (h >= first) s += v;
      if (s > 0) out.set(owner, s / 3600);
    }
    return out;
  }

  /** Every owner's decayed GPU-seconds now. */
  snapshot(now: number): Map<string, number> {
    return new Map([...this.entries].map(([o, e]) => [o, this.decayed(e, now)]));
  }

  /** Load the file; with `itsHalfLife`, also the half-life it was written with (readers). */
  async load(itsHalfLife = false): Promise<void> {
    const r = await readRegularFile(this.file);
    if (!r.ok) return;
    let json: unknown;
    try {
      json = JSON.parse(r.text);
    } catch {
      return; // a foreign file: start over (the next save replaces it)
    }
    const parsed = usageFileSchema.safeParse(json);
    if (!parsed.success) return;
    if (itsHalfLife) this.halfLifeMs = parsed.data.halfLifeHours * 3_600_000;
    for (const [owner, raw] of Object.entries(parsed.data.owners)) {
      const e = entrySchema.safeParse(raw);
      if (!owner || owner.length > MAX_OWNER || !e.success) continue;
      this.entries.set(owner, e.data);
      if (this.entries.size >= MAX_OWNERS) break;
    }
    for (const [owner, raw] of Object.entries(parsed.data.week ?? {})) {
      const b = bucketsSchema.safeParse(raw);
      if (!owner || owner.length > MAX_OWNER || !b.success) continue;
      this.week.set(owner, new Map(b.data));
      if (this.week.size >= MAX_OWNERS) break;
    }
  }

  async save(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const owners = Object.fromEntries(this.entries);
    const week = Object.fromEntries([...this.week].map(([o, b]) => [o, [...b]]));
    const text = JSON.stringify({ halfLifeHours: this.halfLifeMs / 3_600_000, owners, week });
    await writeFileAtomic(this.file, `${text}\n`);
  }
}

/** One owner's GPU-hours over the last 7 days (what gpu_hours_per_week is measured against). */
export async function readWeekHours(jobsDir: string, owner: string, now: number): Promise<number> {
  const u = Usage.inDir(jobsDir);
  await u.load(true);
  return u.weekHours(now).get(owner) ?? 0;
}

/** Read usage.json for `ugro usage`: owners with their GPU-hours now, most first. */
export async function readUsage(
  jobsDir: string,
  now: number,
): Promise<{ halfLifeHours: number; owners: { owner: string; gpuHours: number }[] }> {
  const u = Usage.inDir(jobsDir);
  await u.load(true);
  const owners = [...u.snapshot(now)]
    .map(([owner, s]) => ({ owner, gpuHours: s / 3600 }))
    .sort((a, b) => b.gpuHours - a.gpuHours || a.owner.localeCompare(b.owner));
  return { halfLifeHours: u.halfLifeHours, owners };
}
