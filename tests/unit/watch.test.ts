/** The jobs/ watcher (loop/watch.ts) on a real directory: which files name a job, and when. */
import { mkdtempSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fsWatch, type Watcher } from '../../controller/loop/watch.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Wait until `ok` (a loaded machine may deliver late, never early), at most 2 s. */
async function until(ok: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !ok(); i++) await sleep(10);
}
let w: Watcher | undefined;
afterEach(async () => {
  await w?.close();
  w = undefined;
});

async function watching(): Promise<{ dir: string; seen: { name: string; at: number }[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'ugro-watch-'));
  const seen: { name: string; at: number }[] = [];
  w = await fsWatch(dir, (name) => seen.push({ name, at: performance.now() }));
  return { dir, seen };
}

describe('fsWatch', () => {
  it('a job or control file names its job; status, temp and dot files name none', async () => {
    const { dir, seen } = await watching();
    writeFileSync(join(dir, 'a.yaml'), 'x: 1\n');
    writeFileSync(join(dir, 'b.control.yaml'), 'x: 1\n');
    writeFileSync(join(dir, 'c.status.yaml'), 'x: 1\n');
    writeFileSync(join(dir, '.d.yaml'), 'x: 1\n');
    writeFileSync(join(dir, 'e.yaml.tmp-123'), 'x: 1\n');
    writeFileSync(join(dir, 'Not_A_Name.yaml'), 'x: 1\n');
    await until(() => new Set(seen.map((s) => s.name)).size >= 2);
    await sleep(150);
    expect([...new Set(seen.map((s) => s.name))].sort()).toEqual(['a', 'b']);
  });

  it('a deleted job file is reported only after 100 ms; a save by rename is reported', async () => {
    const { dir, seen } = await watching();
    writeFileSync(join(dir, 'gone.yaml'), 'x: 1\n');
    await sleep(50);
    seen.length = 0;
    const t0 = performance.now();
    unlinkSync(join(dir, 'gone.yaml'));
    await sleep(40);
    expect(seen).toEqual([]);
    await until(() => seen.length > 0);
    expect(seen.map((s) => s.name)).toEqual(['gone']);
    expect(seen[0].at - t0).toBeGreaterThanOrEqual(95);
    // An editor's save: write a temp file, rename it over the job file.
    seen.length = 0;
    writeFileSync(join(dir, 'kept.yaml'), 'x: 1\n');
    await sleep(50);
    seen.length = 0;
    writeFileSync(join(dir, '.kept.yaml.swp'), 'x: 2\n');
    renameSync(join(dir, '.kept.yaml.swp'), join(dir, 'kept.yaml'));
    await until(() => seen.length > 0);
    expect(seen.map((s) => s.name)).toContain('kept');
  });
});
