/**
 * JobStore over a real temp directory: specs in, atomic status out, control files, events.
 * The jobs dir is hostile input: FIFOs, symlinks, huge files and bad names are refused, not read.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parse, stringify } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import { specHash } from '../../controller/api/trainingjob.ts';
import { Usage } from '../../controller/loop/usage.ts';
import { type JobEvent, JobStore } from '../../controller/store/store.ts';
import { job, jobYaml } from './job-fixtures.ts';

const hooks = vi.hoisted(() => ({
  beforeRename: undefined as undefined | ((from: string, to: string) => void),
  /** Return true to make this write fail as a full disk would (ENOSPC). */
  failWrite: undefined as undefined | ((path: string) => boolean),
  renames: 0,
}));

// node:fs/promises wrapped (pass-through): a test can look at the disk at the instant before the
// rename that publishes a status, and make a temp file's write fail.
vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...real,
    open: (async (path: string, flags: number, mode?: number) => {
      const fh = await real.open(path, flags as never, mode);
      if (hooks.failWrite?.(String(path))) {
        const writeFile = fh.writeFile.bind(fh);
        fh.writeFile = (async (data: string) => {
          await writeFile(String(data).slice(0, 10));
          throw Object.assign(new Error(`ENOSPC: no space left on device, write '${String(path)}'`), {
            code: 'ENOSPC',
          });
        }) as typeof fh.writeFile;
      }
      return fh;
    }) as typeof real.open,
    rename: (async (from: string, to: string) => {
      hooks.renames++;
      hooks.beforeRename?.(String(from), String(to));
      return real.rename(from, to);
    }) as typeof real.rename,
  };
});

let dir: string;
let store: JobStore;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ugro-store-'));
  store = new JobStore(dir);
  hooks.beforeRename = undefined;
  hooks.failWrite = undefined;
  hooks.renames = 0;
});
afterEach(() => {
  hooks.beforeRename = undefined;
  hooks.failWrite = undefined;
});

const status = (over: Partial<JobStatus> = {}): JobStatus => ({
  phase: 'Running',
  reason: 'Running',
  message: 'attempt 1: 2 ranks on gpu1, gpu2',
  observedGeneration: 1,
  specHash: 'abcd1234',
  attempt: 1,
  runId: 'train-abcd1234-a1',
  nodes: [{ host: 'gpu1', nodeRank: 0, globalRanks: [0], pid: 42, state: 'Running' }],
  createdAt: '2026-03-01T10:00:00.000Z',
  startTime: '2026-03-01T10:00:01.000Z',
  conditions: [
    {
      type: 'Valid',
      status: 'True',
      reason: 'SpecValid',
      message: 'spec is valid',
      lastTransitionTime: '2026-03-01T10:00:00.000Z',
    },
  ],
  ...over,
});
const tmpFiles = () => readdirSync(dir).filter((f) => f.includes('.tmp'));

describe('status files', () => {
  it('round-trip through YAML with a do-not-edit header; undefined fields are left out', async () => {
    expect(await store.writeStatus('train', status({ completionTime: undefined, exitCode: undefined }))).toBe(true);
    const text = readFileSync(join(dir, 'train.status.yaml'), 'utf8');
    expect(text.split('\n')[0]).toBe('# Written by the UGRO controller; do not edit (your spec is train.yaml).');
    expect(text).not.toMatch(/completionTime|exitCode|undefined/);
    expect(await store.readStatus('train')).toEqual(status());
  });

  it('an identical write is skipped (no rename, same mtime); a changed one is written', async () => {
    await store.writeStatus('train', status());
    const mtime = statSync(store.statusFile('train')).mtimeMs;
    const renames = hooks.renames;
    expect(await store.writeStatus('train', status())).toBe(false);
    expect(hooks.renames).toBe(renames);
    expect(statSync(store.statusFile('train')).mtimeMs).toBe(mtime);
    expect(await store.writeStatus('train', status({ phase: 'Succeeded' }))).toBe(true);
    expect((await store.readStatus('train'))!.phase).toBe('Succeeded');
  });

  it(
    'is atomic: until the rename, readers see the old complete file; ' + 'the new one is a temp file beside it',
    async () => {
      await store.writeStatus('train', status());
      const seen: { target: unknown; tmp: unknown; sameDir: boolean; tmpName: string }[] = [];
      hooks.beforeRename = (from, to) => {
        seen.push({
          target: parse(readFileSync(to, 'utf8')),
          tmp: parse(readFileSync(from, 'utf8')),
          sameDir: join(from, '..') === join(to, '..'),
          tmpName: from.slice(dir.length + 1),
        });
      };
      await store.writeStatus('train', status({ phase: 'Failed', exitCode: 3 }));
      expect(seen).toHaveLength(1);
      expect(seen[0].target).toMatchObject({ phase: 'Running' });
      expect(seen[0].tmp).toMatchObject({ phase: 'Failed', exitCode: 3 });
      expect(seen[0].sameDir).toBe(true);
      // The watcher ignores "*.tmp-*" and the store never lists it as a spec or a status.
      expect(seen[0].tmpName).toMatch(/^train\.status\.yaml\.tmp-/);
      expect(tmpFiles()).toEqual([]);
      expect(await store.readStatus('train')).toMatchObject({ phase: 'Failed', exitCode: 3 });
    },
  );

  // Regression (was a bug, fixed): writeFileAtomic does not remove its temp file when the write or the rename fails
  // (disk full, EACCES, EISDIR). Each retry uses a new random name, so a controller retrying
  // with backoff on a full disk litters jobs/ with *.status.yaml.tmp-* files. Fix: try/catch
  // in writeFileAtomic, unlinkSync(tmp) on any error, then rethrow.
  it('a failed write leaves no temp file behind (and the old status intact)', async () => {
    await store.writeStatus('train', status());
    hooks.failWrite = (p) => p.includes('.tmp-');
    await expect(store.writeStatus('train', status({ phase: 'Failed' }))).rejects.toThrow(/ENOSPC/);
    expect(await store.readStatus('train')).toEqual(status());
    expect(tmpFiles()).toEqual([]);
  });

  it('a failed write keeps the old status intact (readers never see a torn file)', async () => {
    await store.writeStatus('train', status());
    hooks.failWrite = (p) => p.includes('.tmp-');
    await expect(store.writeStatus('train', status({ phase: 'Failed' }))).rejects.toThrow(/ENOSPC/);
    expect(await store.readStatus('train')).toEqual(status());
  });

  it('readStatus of a missing or unparsable file is undefined', async () => {
    expect(await store.readStatus('nope')).toBeUndefined();
  });
});

// Issue 15, item 4: a 600-character commit author made the status fail its schema, so every
// reconcile started it over (createdAt reset, restart budgets and failure history lost, events).
describe('a status with one bad field keeps the rest', () => {
  const budgets = {
    restarts: { infra: 1, training: 2 },
    failures: [
      { attempt: 1, class: 'training' as const, reason: 'RankFailed', message: 'rank 0 exited 3', time: 't1' },
      { attempt: 2, class: 'infra' as const, reason: 'NodeLost', message: 'gpu2 lost', time: 't2' },
    ],
  };
  const longAuthor = `${'A'.repeat(600)} <a@example.com>`;

  it('read back: salvaged field by field; budgets, failures, createdAt kept (StatusSalvaged)', async () => {
    const bad = status({
      ...budgets,
      owner: longAuthor,
      source: { url: 'file:///r', branch: 'main', author: longAuthor, sync: 'Synced', reason: 'Synced' },
    });
    writeFileSync(join(dir, 'train.status.yaml'), stringify(bad));
    const got = await store.readStatus('train');
    expect(got).toMatchObject({ ...budgets, createdAt: bad.createdAt, attempt: 1, observedGeneration: 1 });
    expect(got?.source).toBeUndefined();
    expect(got?.owner).toBeUndefined();
    const c = got?.conditions.find((x) => x.type === 'StatusSalvaged');
    expect(c).toMatchObject({ status: 'True', reason: 'Salvaged' });
    expect(c?.message).toMatch(/train\.status\.yaml did not fit its schema \(.*source\.author.*\).*dropped: .*source/);
    expect(got?.conditions.find((x) => x.type === 'Valid')).toBeDefined();
  });

  it('a bad item of a list goes, the others stay', async () => {
    const bad = status({
      failures: [budgets.failures[0], { ...budgets.failures[1], message: 'x'.repeat(5000) }],
    });
    writeFileSync(join(dir, 'train.status.yaml'), stringify(bad));
    expect((await store.readStatus('train'))?.failures).toEqual([budgets.failures[0]]);
  });

  it('validated before it is written: one that would not read back is written salvaged', async () => {
    expect(await store.writeStatus('train', status({ ...budgets, owner: longAuthor }))).toBe(true);
    const back = await store.readStatus('train');
    expect(back).toMatchObject({ ...budgets, createdAt: status().createdAt });
    expect(back?.owner).toBeUndefined();
    expect(back?.conditions.find((x) => x.type === 'StatusSalvaged')?.message).toMatch(/owner/);
    // The next reconcile builds the same status from it: nothing changes on disk (no churn, no flood).
    expect(await store.writeStatus('train', { ...back!, owner: longAuthor })).toBe(false);
  });

  it('usage.json: an owner over the limit is cut when added and dropped when read, never the whole file', async () => {
    const file = join(dir, '.ugro', 'usage.json');
    mkdirSync(join(dir, '.ugro'));
    const u = new Usage(file);
    u.add('alice', 3600, 1000);
    u.add(longAuthor, 7200, 1000);
    await u.save();
    const back = new Usage(file);
    await back.load();
    expect([...back.snapshot(1000).keys()].sort()).toEqual([longAuthor.slice(0, 512), 'alice'].sort());
    writeFileSync(
      file,
      JSON.stringify({
        halfLifeHours: 24,
        owners: { alice: { gpuSeconds: 5, at: 1000 }, [longAuthor]: { gpuSeconds: 9, at: 1000 } },
      }),
    );
    const foreign = new Usage(file);
    await foreign.load();
    expect([...foreign.snapshot(1000)]).toEqual([['alice', 5]]);
  });
});

describe('specs', () => {
  it('status, control, hidden and temp files are not specs', async () => {
    writeFileSync(join(dir, 'train.yaml'), jobYaml('train', { script: 't.py' }));
    writeFileSync(join(dir, 'bert.yml'), jobYaml('bert', { script: 't.py' }));
    await store.writeStatus('train', status());
    await store.writeStatus('gone', status());
    await store.writeControl('train', { cancel: { specHash: 'abcd1234', requestedAt: '2026-03-01T10:00:00.000Z' } });
    writeFileSync(join(dir, '.draft.yaml'), 'x: 1\n');
    writeFileSync(join(dir, 'train.status.yaml.tmp-1-abcdef'), 'partial');
    writeFileSync(join(dir, 'notes.txt'), 'hi');
    const { specs, statuses } = await store.listNames();
    expect(specs.sort()).toEqual(['bert', 'train']);
    expect(statuses.sort()).toEqual(['gone', 'train']);
  });

  it('readSpec: valid -> job and hash; no file -> deleted (a status file alone is not a spec)', async () => {
    writeFileSync(join(dir, 'train.yaml'), jobYaml('train', { script: 't.py', nodes: 2 }));
    const s = await store.readSpec('train');
    expect(s).toEqual({
      kind: 'valid',
      job: job('train', { script: 't.py', nodes: 2 }),
      hash: specHash(job('train', { script: 't.py', nodes: 2 }).spec),
      file: join(dir, 'train.yaml'),
    });
    await store.writeStatus('gone', status());
    expect(await store.readSpec('gone')).toEqual({ kind: 'deleted' });
  });

  it('readSpec reads .yml too, and an invalid file is invalid with path and line', async () => {
    writeFileSync(join(dir, 'bert.yml'), jobYaml('other', { script: 't.py' }));
    const s = await store.readSpec('bert');
    expect(s).toMatchObject({
      kind: 'invalid',
      file: join(dir, 'bert.yml'),
      issues: [{ path: 'metadata.name', line: 4 }],
    });
  });

  it('specMtime is the spec file mtime, undefined when there is none', async () => {
    writeFileSync(join(dir, 'train.yaml'), jobYaml('train', { script: 't.py' }));
    expect(await store.specMtime('train')).toBeInstanceOf(Date);
    expect(await store.specMtime('nope')).toBeUndefined();
  });
});

describe('control files', () => {
  it('write/read round trip; deleteStatus removes status and control, and is idempotent', async () => {
    const c = { cancel: { requestedAt: '2026-03-01T10:00:00.000Z', graceSeconds: 5, specHash: 'abcd1234' } };
    await store.writeControl('train', c);
    await store.writeStatus('train', status());
    expect(await store.readControl('train')).toEqual({ kind: 'valid', control: c });
    expect(readdirSync(dir).sort()).toEqual(['train.control.yaml', 'train.status.yaml']);
    await store.deleteStatus('train');
    expect(readdirSync(dir)).toEqual([]);
    expect(await store.readControl('train')).toEqual({ kind: 'none' });
    await expect(store.deleteStatus('train')).resolves.toBeUndefined();
  });
});

describe('events', () => {
  const ev = (job: string, reason: string, i = 0): JobEvent => ({
    time: `2026-03-01T10:00:0${i}.000Z`,
    job,
    type: 'Normal',
    reason,
    message: `${reason} ${i}`,
  });

  it('are appended as JSON lines, newest last, under .ugro/', async () => {
    await store.appendEvents([ev('train', 'Launching', 0), ev('bert', 'Launching', 1)]);
    await store.appendEvents([ev('train', 'Running', 2)]);
    const lines = readFileSync(join(dir, '.ugro', 'events.jsonl'), 'utf8').split('\n');
    expect(lines.at(-1)).toBe('');
    expect(lines.slice(0, -1).map((l) => JSON.parse(l))).toEqual([
      ev('train', 'Launching', 0),
      ev('bert', 'Launching', 1),
      ev('train', 'Running', 2),
    ]);
  });

  it('no events: no file, no directory', async () => {
    await store.appendEvents([]);
    expect(readdirSync(dir)).toEqual([]);
    expect(await store.readEvents()).toEqual([]);
  });

  it('readEvents filters by job, keeps the last `limit`, and skips a torn line', async () => {
    await store.appendEvents([ev('train', 'A', 0), ev('bert', 'B', 1), ev('train', 'C', 2), ev('train', 'D', 3)]);
    writeFileSync(
      join(dir, '.ugro', 'events.jsonl'),
      `${readFileSync(join(dir, '.ugro', 'events.jsonl'), 'utf8')}{"time":"2026`,
    );
    expect((await store.readEvents('train')).map((e) => e.reason)).toEqual(['A', 'C', 'D']);
    expect((await store.readEvents('train', 2)).map((e) => e.reason)).toEqual(['C', 'D']);
    expect((await store.readEvents(undefined, 10)).map((e) => e.reason)).toEqual(['A', 'B', 'C', 'D']);
  });

  it('rotate past the size limit: two files at most, both read, the oldest dropped', async () => {
    const small = new JobStore(dir, 400);
    for (let i = 0; i < 12; i++) await small.appendEvents([ev('train', `E${i}`, i % 10)]);
    const files = readdirSync(join(dir, '.ugro')).sort();
    expect(files).toEqual(['events.1.jsonl', 'events.jsonl']);
    for (const f of files) expect(statSync(join(dir, '.ugro', f)).size).toBeLessThan(400 + 200);
    const reasons = (await small.readEvents('train', 100)).map((e) => e.reason);
    // Newest last and contiguous: what survives is a tail of the sequence, ending with E11.
    expect(reasons.at(-1)).toBe('E11');
    expect(reasons).toEqual(Array.from({ length: reasons.length }, (_, k) => `E${12 - reasons.length + k}`));
    expect(reasons.length).toBeLessThan(12);
  });
});

// Issue 7, defect 4: files in jobs/ could freeze or exhaust the controller, or send writes elsewhere.
describe('hostile files in jobs/', () => {
  const withTimeout = <T>(p: Promise<T>, ms = 3000) =>
    Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`blocked for ${ms} ms`)), ms))]);

  it('a FIFO named like a job is Invalid at once, not read (a read would block forever)', async () => {
    execFileSync('mkfifo', [join(dir, 'evil.yaml')]);
    const s = await withTimeout(store.readSpec('evil'));
    expect(s).toEqual({
      kind: 'invalid',
      file: join(dir, 'evil.yaml'),
      issues: [{ path: '', message: 'is a FIFO; UGRO reads only regular files' }],
    });
  });

  it('a job file over 1 MiB is Invalid with its size and the limit', async () => {
    writeFileSync(join(dir, 'big.yaml'), `${jobYaml('big', { script: 't.py' })}# ${'x'.repeat(1024 * 1024)}\n`);
    const s = await store.readSpec('big');
    expect(s.kind).toBe('invalid');
    expect(s.kind === 'invalid' && s.issues[0].message).toMatch(/^file is 10\d{5} bytes; the limit is 1 MiB$/);
  });

  it('a symlinked job file is Invalid (never followed)', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'ugro-outside-'));
    writeFileSync(join(outside, 'x.yaml'), jobYaml('link', { script: 't.py' }));
    symlinkSync(join(outside, 'x.yaml'), join(dir, 'link.yaml'));
    expect(await store.readSpec('link')).toMatchObject({
      kind: 'invalid',
      issues: [{ message: 'is a symbolic link; UGRO reads only regular files' }],
    });
  });

  it('a symlinked events file is refused: nothing is appended to its target', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'ugro-outside-'));
    writeFileSync(join(outside, 'victim'), 'precious\n');
    mkdirSync(join(dir, '.ugro'));
    symlinkSync(join(outside, 'victim'), join(dir, '.ugro', 'events.jsonl'));
    await expect(
      store.appendEvents([{ time: 't', job: 'j', type: 'Normal', reason: 'R', message: 'm' }]),
    ).rejects.toThrow();
    expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('precious\n');
  });

  it('events.jsonl as a directory: a clear error naming it and the fix, not a bare EISDIR', async () => {
    mkdirSync(join(dir, '.ugro', 'events.jsonl'), { recursive: true });
    await expect(
      store.appendEvents([{ time: 't', job: 'j', type: 'Normal', reason: 'R', message: 'm' }]),
    ).rejects.toThrow(`${join(dir, '.ugro', 'events.jsonl')} is a directory; UGRO keeps a regular file there`);
  });

  it('a symlinked .ugro directory is refused', async () => {
    const outside = mkdtempSync(join(tmpdir(), 'ugro-outside-'));
    symlinkSync(outside, join(dir, '.ugro'));
    await expect(
      store.appendEvents([{ time: 't', job: 'j', type: 'Normal', reason: 'R', message: 'm' }]),
    ).rejects.toThrow(/symbolic link/);
    expect(readdirSync(outside)).toEqual([]);
  });

  it(
    'a symlinked status file is replaced by a regular file, its target untouched; ' + 'reading one gives undefined',
    async () => {
      const outside = mkdtempSync(join(tmpdir(), 'ugro-outside-'));
      writeFileSync(join(outside, 'victim'), 'precious\n');
      symlinkSync(join(outside, 'victim'), join(dir, 'train.status.yaml'));
      expect(await store.readStatus('train')).toBeUndefined();
      await store.writeStatus('train', status());
      expect(readFileSync(join(outside, 'victim'), 'utf8')).toBe('precious\n');
      expect(await store.readStatus('train')).toEqual(status());
    },
  );

  it('a status file that does not fit the schema is treated as absent (rebuilt)', async () => {
    writeFileSync(join(dir, 'train.status.yaml'), 'phase: Hacked\nnodes: 3\n');
    expect(await store.readStatus('train')).toBeUndefined();
  });

  it('an invalid control file is reported with its field and line, never used', async () => {
    writeFileSync(
      join(dir, 'train.control.yaml'),
      "cancel:\n  specHash: abcd1234\n  requestedAt: '2026-03-01T10:00:00.000Z'\n" +
        '  graceSeconds: \'0); system("id")\'\n',
    );
    expect(await store.readControl('train')).toMatchObject({
      kind: 'invalid',
      issues: [{ path: 'cancel.graceSeconds', line: 4 }],
    });
  });

  it('a cancel without the spec version it is for is invalid (it would cancel every later version)', async () => {
    writeFileSync(join(dir, 'train.control.yaml'), "cancel:\n  requestedAt: '2026-03-01T10:00:00.000Z'\n");
    expect(await store.readControl('train')).toMatchObject({ kind: 'invalid', issues: [{ path: 'cancel.specHash' }] });
  });

  it('files whose names are not job names are listed apart and never read', async () => {
    writeFileSync(join(dir, 'Bad_Name.yaml'), 'x: 1\n');
    writeFileSync(join(dir, 'ok.yaml'), jobYaml('ok', { script: 't.py' }));
    expect(await store.listNames()).toEqual({
      specs: ['ok'],
      statuses: [],
      controls: [],
      invalidFiles: ['Bad_Name.yaml'],
    });
    await expect(store.readSpec('../victim')).rejects.toThrow(/not a job name/);
  });
});
