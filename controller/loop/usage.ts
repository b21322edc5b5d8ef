/**
 * GPU time per owner, decaying with a half-life (24 h by default): what fair share orders jobs of
 * one priority by. Accounted from the live runs the controller sees, persisted in
 * jobs/.ugro/usage.json (atomically; read back as hostile input) so a restart keeps the history.
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
});

interface Entry {
  /** Decayed GPU-seconds as of `at`. */
  gpuSeconds: number;
  at: number;
}

export class Usage {
  private readonly entries = new Map<string, Entry>();
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
    this.dirty = true;
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
  }

  async save(): Promise<void> {
    if (!this.dirty) return;
    this.dirty = false;
    const owners = Object.fromEntries(this.entries);
    await writeFileAtomic(this.file, `${JSON.stringify({ halfLifeHours: this.halfLifeMs / 3_600_000, owners })}\n`);
  }
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
