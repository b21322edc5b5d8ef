/**
 * JobStore over a real temp directory: specs in, atomic status out, control files, events.
 * node:fs is wrapped (pass-through) so a test can look at the disk at the instant before the
 * rename that publishes a status, and can make a write fail as a full disk would.
 */
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import { specHash } from '../../controller/api/trainingjob.ts';
import { type JobEvent, JobStore } from '../../controller/store/store.ts';
import { job, jobYaml } from './job-fixtures.ts';

const hooks = vi.hoisted(() => ({
  beforeRename: undefined as undefined | ((from: string, to: string) => void),
  /** Return true to make this write fail after writing a few bytes (ENOSPC). */
  failWrite: undefined as undefined | ((path: string) => boolean),
  renames: 0,
}));

vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return {
    ...real,
    writeFileSync: ((file: string, data: string, opts?: unknown) => {
      if (hooks.failWrite?.(String(file))) {
        real.writeFileSync(file, String(data).slice(0, 10));
        throw Object.assign(new Error(`ENOSPC: no space left on device, write '${String(file)}'`), { code: 'ENOSPC' });
      }
      return real.writeFileSync(file, data, opts as never);
    }) as typeof real.writeFileSync,
    renameSync: ((from: string, to: string) => {
      hooks.renames++;
      hooks.beforeRename?.(String(from), String(to));
      return real.renameSync(from, to);
    }) as typeof real.renameSync,
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
  it('round-trip through YAML with a do-not-edit header; undefined fields are left out', () => {
    expect(store.writeStatus('train', status({ completionTime: undefined, exitCode: undefined }))).toBe(true);
    const text = readFileSync(join(dir, 'train.status.yaml'), 'utf8');
    expect(text.split('\n')[0]).toBe('# Written by the UGRO controller; do not edit (your spec is train.yaml).');
    expect(text).not.toMatch(/completionTime|exitCode|undefined/);
    expect(store.readStatus('train')).toEqual(status());
  });

  it('an identical write is skipped (no rename, same mtime); a changed one is written', () => {
    store.writeStatus('train', status());
    const mtime = statSync(store.statusFile('train')).mtimeMs;
    const renames = hooks.renames;
    expect(store.writeStatus('train', status())).toBe(false);
    expect(hooks.renames).toBe(renames);
    expect(statSync(store.statusFile('train')).mtimeMs).toBe(mtime);
    expect(store.writeStatus('train', status({ phase: 'Succeeded' }))).toBe(true);
    expect(store.readStatus('train')!.phase).toBe('Succeeded');
  });

  it('is atomic: until the rename, readers see the old complete file; the new one is a temp file beside it', () => {
    store.writeStatus('train', status());
    const seen: { target: unknown; tmp: unknown; sameDir: boolean; tmpName: string }[] = [];
    hooks.beforeRename = (from, to) => {
      seen.push({
        target: parse(readFileSync(to, 'utf8')),
        tmp: parse(readFileSync(from, 'utf8')),
        sameDir: join(from, '..') === join(to, '..'),
        tmpName: from.slice(dir.length + 1),
      });
    };
    store.writeStatus('train', status({ phase: 'Failed', exitCode: 3 }));
    expect(seen).toHaveLength(1);
    expect(seen[0].target).toMatchObject({ phase: 'Running' });
    expect(seen[0].tmp).toMatchObject({ phase: 'Failed', exitCode: 3 });
    expect(seen[0].sameDir).toBe(true);
    // The watcher ignores "*.tmp-*" and the store never lists it as a spec or a status.
    expect(seen[0].tmpName).toMatch(/^train\.status\.yaml\.tmp-/);
    expect(tmpFiles()).toEqual([]);
    expect(store.readStatus('train')).toMatchObject({ phase: 'Failed', exitCode: 3 });
  });

  // Regression (was a bug, fixed): writeFileAtomic does not remove its temp file when the write or the rename fails
  // (disk full, EACCES, EISDIR). Each retry uses a new random name, so a controller retrying
  // with backoff on a full disk litters jobs/ with *.status.yaml.tmp-* files. Fix: try/catch
  // in writeFileAtomic, unlinkSync(tmp) on any error, then rethrow.
  it('a failed write leaves no temp file behind (and the old status intact)', () => {
    store.writeStatus('train', status());
    hooks.failWrite = (p) => p.includes('.tmp-');
    expect(() => store.writeStatus('train', status({ phase: 'Failed' }))).toThrow(/ENOSPC/);
    expect(store.readStatus('train')).toEqual(status());
    expect(tmpFiles()).toEqual([]);
  });

  it('a failed write keeps the old status intact (readers never see a torn file)', () => {
    store.writeStatus('train', status());
    hooks.failWrite = (p) => p.includes('.tmp-');
    expect(() => store.writeStatus('train', status({ phase: 'Failed' }))).toThrow(/ENOSPC/);
    expect(store.readStatus('train')).toEqual(status());
  });

  it('readStatus of a missing or unparsable file is undefined', () => {
    expect(store.readStatus('nope')).toBeUndefined();
  });
});

describe('specs', () => {
  it('status, control, hidden and temp files are not specs', () => {
    writeFileSync(join(dir, 'train.yaml'), jobYaml('train', { script: 't.py' }));
    writeFileSync(join(dir, 'bert.yml'), jobYaml('bert', { script: 't.py' }));
    store.writeStatus('train', status());
    store.writeStatus('gone', status());
    store.writeControl('train', { cancel: { requestedAt: '2026-03-01T10:00:00.000Z' } });
    writeFileSync(join(dir, '.draft.yaml'), 'x: 1\n');
    writeFileSync(join(dir, 'train.status.yaml.tmp-1-abcdef'), 'partial');
    writeFileSync(join(dir, 'notes.txt'), 'hi');
    const { specs, statuses } = store.listNames();
    expect(specs.sort()).toEqual(['bert', 'train']);
    expect(statuses.sort()).toEqual(['gone', 'train']);
  });

  it('readSpec: valid -> job and hash; no file -> deleted (a status file alone is not a spec)', () => {
    writeFileSync(join(dir, 'train.yaml'), jobYaml('train', { script: 't.py', nodes: 2 }));
    const s = store.readSpec('train');
    expect(s).toEqual({
      kind: 'valid',
      job: job('train', { script: 't.py', nodes: 2 }),
      hash: specHash(job('train', { script: 't.py', nodes: 2 }).spec),
      file: join(dir, 'train.yaml'),
    });
    store.writeStatus('gone', status());
    expect(store.readSpec('gone')).toEqual({ kind: 'deleted' });
  });

  it('readSpec reads .yml too, and an invalid file is invalid with path and line', () => {
    writeFileSync(join(dir, 'bert.yml'), jobYaml('other', { script: 't.py' }));
    const s = store.readSpec('bert');
    expect(s).toMatchObject({
      kind: 'invalid',
      file: join(dir, 'bert.yml'),
      issues: [{ path: 'metadata.name', line: 4 }],
    });
  });

  it('specMtime is the spec file mtime, undefined when there is none', () => {
    writeFileSync(join(dir, 'train.yaml'), jobYaml('train', { script: 't.py' }));
    expect(store.specMtime('train')).toBeInstanceOf(Date);
    expect(store.specMtime('nope')).toBeUndefined();
  });
});

describe('control files', () => {
  it('write/read round trip; deleteStatus removes status and control, and is idempotent', () => {
    const c = { cancel: { requestedAt: '2026-03-01T10:00:00.000Z', graceSeconds: 5, specHash: 'abcd1234' } };
    store.writeControl('train', c);
    store.writeStatus('train', status());
    expect(store.readControl('train')).toEqual(c);
    expect(readdirSync(dir).sort()).toEqual(['train.control.yaml', 'train.status.yaml']);
    store.deleteStatus('train');
    expect(readdirSync(dir)).toEqual([]);
    expect(store.readControl('train')).toBeUndefined();
    expect(() => store.deleteStatus('train')).not.toThrow();
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

  it('are appended as JSON lines, newest last, under .ugro/', () => {
    store.appendEvents([ev('train', 'Launching', 0), ev('bert', 'Launching', 1)]);
    store.appendEvents([ev('train', 'Running', 2)]);
    const lines = readFileSync(join(dir, '.ugro', 'events.jsonl'), 'utf8').split('\n');
    expect(lines.at(-1)).toBe('');
    expect(lines.slice(0, -1).map((l) => JSON.parse(l))).toEqual([
      ev('train', 'Launching', 0),
      ev('bert', 'Launching', 1),
      ev('train', 'Running', 2),
    ]);
  });

  it('no events: no file, no directory', () => {
    store.appendEvents([]);
    expect(readdirSync(dir)).toEqual([]);
    expect(store.readEvents()).toEqual([]);
  });

  it('readEvents filters by job, keeps the last `limit`, and skips a torn line', () => {
    store.appendEvents([ev('train', 'A', 0), ev('bert', 'B', 1), ev('train', 'C', 2), ev('train', 'D', 3)]);
    writeFileSync(
      join(dir, '.ugro', 'events.jsonl'),
      `${readFileSync(join(dir, '.ugro', 'events.jsonl'), 'utf8')}{"time":"2026`,
    );
    expect(store.readEvents('train').map((e) => e.reason)).toEqual(['A', 'C', 'D']);
    expect(store.readEvents('train', 2).map((e) => e.reason)).toEqual(['C', 'D']);
    expect(store.readEvents(undefined, 10).map((e) => e.reason)).toEqual(['A', 'B', 'C', 'D']);
  });

  it('rotate past the size limit: two files at most, both read, the oldest dropped', () => {
    const small = new JobStore(dir, 400);
    for (let i = 0; i < 12; i++) small.appendEvents([ev('train', `E${i}`, i % 10)]);
    const files = readdirSync(join(dir, '.ugro')).sort();
    expect(files).toEqual(['events.1.jsonl', 'events.jsonl']);
    for (const f of files) expect(statSync(join(dir, '.ugro', f)).size).toBeLessThan(400 + 200);
    const reasons = small.readEvents('train', 100).map((e) => e.reason);
    // Newest last and contiguous: what survives is a tail of the sequence, ending with E11.
    expect(reasons.at(-1)).toBe('E11');
    expect(reasons).toEqual(Array.from({ length: reasons.length }, (_, k) => `E${12 - reasons.length + k}`));
    expect(reasons.length).toBeLessThan(12);
  });
});
