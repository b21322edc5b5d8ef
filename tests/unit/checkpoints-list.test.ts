/**
 * Listing a job's checkpoints: the REAL checkpoints.sh (run with sh on this machine through
 * LocalTransport and SshBackend, as over SSH) lists only complete checkpoints (no tmp, dot file,
 * symlink or directory), hashes each once and keeps the sum beside it keyed by size and mtime,
 * finds the metrics line at (or nearest before) each step in the job's run dirs, and deletes only
 * what it is asked to, never what `latest` names. The parser refuses a cut-off answer and drops
 * hostile values; core/checkpoints.ts merges hosts into rows with the attempt that wrote each.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { checkpointListingOf, deletedCheckpointsOf } from '../../controller/backends/ssh/checkpoint-records.ts';
import { checkpointRows } from '../../controller/core/checkpoints.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

function setup() {
  const root = mkdtempSync(join(tmpdir(), 'ugro-ckpt-'));
  const host = localHost(join(root, 'host'), 'gpu1');
  const dir = join(host.paths.checkpoints, 'train');
  mkdirSync(dir, { recursive: true });
  for (const n of [10, 20, 30]) writeFileSync(join(dir, `step-${n}.pt`), `weights ${n}`);
  writeFileSync(join(dir, 'latest'), 'step-30\n');
  writeFileSync(join(dir, '.step-40.pt.tmp'), 'half');
  writeFileSync(join(dir, 'final.pt'), 'final');
  symlinkSync('/etc/passwd', join(dir, 'evil.pt'));
  mkdirSync(join(dir, 'rank-1.pt'));
  const run = join(host.paths.runs, 'train.0123abcd.1');
  mkdirSync(run, { recursive: true });
  writeFileSync(join(run, 'meta.json'), '{}');
  writeFileSync(join(run, 'launched_at'), '1000000000000000000\n');
  writeFileSync(
    join(run, 'metrics.jsonl'),
    [
      { step: 5, loss: 2 },
      { step: 10, loss: 1.5 },
      { step: 18, loss: 1.2 },
      { step: 20, loss: 1.1, epoch_end: true },
      'not json',
      { step: 25, loss: 0.9 },
    ]
      .map((l) => (typeof l === 'string' ? l : JSON.stringify(l)))
      .join('\n'),
  );
  return { host, dir, rt: new SshBackend(new LocalTransport()) };
}

describe.skipIf(process.platform !== 'linux')('checkpoints.sh through SshBackend', () => {
  it('lists complete checkpoints with size, mtime, sha256 and the metrics at each step', async () => {
    const { host, dir, rt } = setup();
    const l = await rt.listCheckpoints(host, dir, { sha256: true, runsOf: 'train' });
    expect(l.present).toBe(true);
    expect(l.latest).toBe('step-30');
    expect(l.files.map((f) => f.name).sort()).toEqual(['final', 'step-10', 'step-20', 'step-30']);
    const s20 = l.files.find((f) => f.name === 'step-20')!;
    expect(s20).toMatchObject({ step: 20, sizeBytes: 'weights 20'.length, sha256: sha('weights 20') });
    expect(l.runs).toHaveLength(1);
    expect(l.runs[0].dir).toBe('train.0123abcd.1');
    const at = Object.fromEntries(l.runs[0].metrics.map((m) => [m.step, m.metrics.loss]));
    // step-10: its own line; step-20: the epoch line (the last with that step); step-30: nearest before (25).
    expect(at).toEqual({ 10: 1.5, 20: 1.1, 30: 0.9 });
  });

  it('hashes a file once: the sum is kept beside it, and a changed file is hashed again', async () => {
    const { host, dir, rt } = setup();
    await rt.listCheckpoints(host, dir, { sha256: true });
    const side = join(dir, 'step-10.pt.sha256');
    const [sum, size, mtime] = readFileSync(side, 'utf8').trim().split(' ');
    expect(sum).toBe(sha('weights 10'));
    // A planted sum under the same key is believed: proof the file is not read again.
    writeFileSync(side, `${'a'.repeat(64)} ${size} ${mtime}\n`);
    let l = await rt.listCheckpoints(host, dir, { sha256: true });
    expect(l.files.find((f) => f.name === 'step-10')?.sha256).toBe('a'.repeat(64));
    // A new mtime (the file was replaced): hashed again.
    utimesSync(join(dir, 'step-10.pt'), new Date(), new Date(Date.now() - 60_000));
    l = await rt.listCheckpoints(host, dir, { sha256: true });
    expect(l.files.find((f) => f.name === 'step-10')?.sha256).toBe(sha('weights 10'));
    // Without sha256 nothing is hashed or written.
    l = await rt.listCheckpoints(host, dir);
    expect(l.files.every((f) => f.sha256 === undefined)).toBe(true);
    expect(existsSync(join(dir, 'step-20.pt.sha256'))).toBe(true);
  });

  it('a missing dir is absent, not an error', async () => {
    const { host, rt } = setup();
    const l = await rt.listCheckpoints(host, join(host.paths.checkpoints, 'nothing'));
    expect(l).toEqual({ present: false, files: [], runs: [] });
  });

  it('deletes what it is asked to, never what latest names; a bad name is refused before anything goes', async () => {
    const { host, dir, rt } = setup();
    await expect(rt.deleteCheckpoints(host, dir, ['step-10', '../x'])).rejects.toThrow(/not a checkpoint name/);
    expect(existsSync(join(dir, 'step-10.pt'))).toBe(true);
    const gone = await rt.deleteCheckpoints(host, dir, ['step-10', 'step-30', 'step-99', 'evil']);
    expect(gone).toEqual([{ name: 'step-10', sizeBytes: 'weights 10'.length }]);
    expect(existsSync(join(dir, 'step-10.pt'))).toBe(false);
    expect(existsSync(join(dir, 'step-30.pt'))).toBe(true);
    expect(existsSync('/etc/passwd')).toBe(true);
  });
});

describe('checkpoint listing parser', () => {
  it('refuses an answer cut short, and drops hostile values', () => {
    expect(() => checkpointListingOf('gpu1', '@@checkpoint step-1\nsize=1\nmtime_ns=1\n@@end\n')).toThrow(/incomplete/);
    const l = checkpointListingOf(
      'gpu1',
      [
        '@@latest\nname=../etc\n@@end',
        '@@checkpoint ../x\nsize=1\nmtime_ns=1\n@@end',
        '@@checkpoint step-2\nsize=-1\nmtime_ns=1\n@@end',
        '@@checkpoint step-3\nsize=3\nmtime_ns=3000000\nsha256=zz\n@@end',
        '@@run ../../x\n@@end',
        '@@run train.0123abcd.2\nmetric=7 {"step":7,"loss":1}\nmetric=x {}\nmetric=8 [1]\n@@end',
        '@@checkpoints\ndir=present\ncount=3\n@@end',
      ].join('\n'),
    );
    expect(l.latest).toBeUndefined();
    expect(l.files).toEqual([{ name: 'step-3', step: 3, sizeBytes: 3, mtimeMs: 3 }]);
    expect(l.runs).toEqual([{ dir: 'train.0123abcd.2', metrics: [{ step: 7, metrics: { step: 7, loss: 1 } }] }]);
    expect(() => deletedCheckpointsOf('gpu1', '@@error\nwhy=nope\n@@end\n')).toThrow(/nope/);
  });
});

describe('checkpointRows', () => {
  const run = (dir: string, from: number, to: number | undefined, metrics: [number, number][] = []) => ({
    dir,
    launchedAtMs: from,
    ...(to !== undefined ? { finishedAtMs: to } : {}),
    metrics: metrics.map(([step, loss]) => ({ step, metrics: { step, loss } })),
  });
  it('one row per checkpoint across hosts, with the attempt that wrote it and its metrics (copies take it)', () => {
    const rows = checkpointRows(
      [
        {
          host: 'gpu1',
          dir: '/c/train',
          latest: 'step-20',
          files: [
            { name: 'step-10', step: 10, sizeBytes: 5, mtimeMs: 1500, sha256: 'a' },
            { name: 'step-20', step: 20, sizeBytes: 5, mtimeMs: 2500, sha256: 'b' },
          ],
          runs: [
            run('train.0123abcd.1', 1000, 2000, [[10, 0.5]]),
            run('train.0123abcd.2', 2100, undefined, [[20, 0.3]]),
          ],
        },
        {
          host: 'gpu2',
          dir: '/c/train',
          files: [{ name: 'step-20', step: 20, sizeBytes: 5, mtimeMs: 9000, sha256: 'b' }],
          runs: [],
        },
      ],
      { specHash: '0123abcd', revision: 'deadbeef' },
    );
    expect(rows.map((r) => r.name)).toEqual(['step-20', 'step-10']);
    expect(rows[0].copies).toEqual([
      { host: 'gpu1', dir: '/c/train', latest: true },
      { host: 'gpu2', dir: '/c/train', latest: false },
    ]);
    expect(rows[0].writer).toEqual({ dir: 'train.0123abcd.2', host: 'gpu1', specHash: '0123abcd', attempt: 2 });
    expect(rows[0].metrics).toEqual({ step: 20, loss: 0.3 });
    expect(rows[0].revision).toBe('deadbeef');
    expect(rows[1].writer?.attempt).toBe(1);
    expect(rows[1].metrics?.loss).toBe(0.5);
  });
});
