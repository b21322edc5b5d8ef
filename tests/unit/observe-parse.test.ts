/**
 * parseObserve: the controller's reading of scripts/runtime/observe.sh. First on blocks written
 * by hand in observe.sh's exact format, then on the real script run over a run directory laid
 * out as launch.sh, rank.sh and stop.sh leave it (plain sh, no SSH, no root).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseObserve, type RunMeta, runDirName, runIdOf } from '../../controller/hosts/runs.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

const meta = (attempt: number, host = 'gpu1'): RunMeta => ({
  job: 'train',
  runId: runIdOf('train', 'abcd1234', attempt),
  specHash: 'abcd1234',
  attempt,
  host,
  nodeRank: 1,
  nnodes: 2,
  nprocPerNode: 2,
  hosts: ['gpu-master', 'gpu1'],
  rdzvEndpoint: '10.0.0.10:29500',
  masterPort: 29500,
  createdAt: '2026-03-01T10:00:00.000Z',
});

/** Two runs of one job on gpu1, as observe.sh prints them: attempt 1 failed, attempt 2 alive. */
const OUT = [
  '@@run train.abcd1234.1',
  'pid=4242',
  'starttime=987654',
  'alive=0',
  'exit=1',
  'cancelled=',
  'launched_at=1772359200123456789',
  'finished_at=1772359260500000000',
  `meta=${JSON.stringify(meta(1))}`,
  'rank=2 0 1 4250 1772359201000000000',
  'rank=3 1 1 4251 1772359201000000001',
  'rankexit=2 143 1772359260',
  'ranklog=2 Terminated',
  'rankexit=3 3 1772359255',
  'ranklog=3 Traceback (most recent call last):',
  'ranklog=3   File "train.py", line 3, in <module>',
  'ranklog=3 RuntimeError: loss=nan at step=40',
  'ranklog=3 ',
  'agentlog=torch.distributed.elastic.multiprocessing.errors.ChildFailedError:',
  'agentlog=train.py FAILED',
  'metrics={"step":40,"loss":1.5}',
  '@@run train.abcd1234.2',
  'pid=5150',
  'starttime=1000',
  'alive=1',
  'exit=',
  'cancelled=',
  'launched_at=1772359300000000000',
  'finished_at=',
  `meta=${JSON.stringify(meta(2))}`,
  'rank=2 0  5160 1772359301000000000',
  'rank=3 1  5161 1772359301000000000',
  '@@end',
  '',
].join('\n');

describe('parseObserve on observe.sh output', () => {
  const parts = parseObserve('gpu1', OUT);

  it('one part per run block, with the host and directory', () => {
    expect(parts.map((p) => [p.host, p.dir])).toEqual([
      ['gpu1', 'train.abcd1234.1'],
      ['gpu1', 'train.abcd1234.2'],
    ]);
  });

  it('a finished part: pid, not alive, exit code, times in ms, meta, agent log tail, metrics', () => {
    const p = parts[0];
    expect(p).toMatchObject({
      pid: 4242,
      alive: false,
      exitCode: 1,
      launchedAtMs: 1772359200123,
      finishedAtMs: 1772359260500,
      meta: meta(1),
    });
    expect(p.cancelled).toBeUndefined();
    expect(p.agentLogTail).toEqual([
      'torch.distributed.elastic.multiprocessing.errors.ChildFailedError:',
      'train.py FAILED',
    ]);
    expect(p.metrics).toEqual({ step: 40, loss: 1.5 });
  });

  it('per-rank exits and log tails (a "=" inside a log line and an empty line survive)', () => {
    expect(parts[0].ranks).toEqual([
      { rank: 2, localRank: 0, pid: 4250, exitCode: 143, exitedAt: 1772359260000, logTail: ['Terminated'] },
      {
        rank: 3,
        localRank: 1,
        pid: 4251,
        exitCode: 3,
        exitedAt: 1772359255000,
        logTail: [
          'Traceback (most recent call last):',
          '  File "train.py", line 3, in <module>',
          'RuntimeError: loss=nan at step=40',
          '',
        ],
      },
    ]);
  });

  it('a live part: alive, no exit code, no finish time; an empty GROUP_RANK does not shift the pid', () => {
    const p = parts[1];
    expect(p).toMatchObject({ pid: 5150, alive: true, launchedAtMs: 1772359300000, meta: meta(2) });
    expect(p.exitCode).toBeUndefined();
    expect(p.finishedAtMs).toBeUndefined();
    expect(p.metrics).toBeUndefined();
    expect(p.ranks).toEqual([
      { rank: 2, localRank: 0, pid: 5160 },
      { rank: 3, localRank: 1, pid: 5161 },
    ]);
  });

  it('cancelled carries the stop reason', () => {
    const out = OUT.replace(
      '@@run train.abcd1234.2\npid=5150\nstarttime=1000\nalive=1\nexit=\ncancelled=',
      '@@run train.abcd1234.2\npid=5150\nstarttime=1000\nalive=0\nexit=137\ncancelled=suspended',
    );
    const p = parseObserve('gpu1', out)[1];
    expect(p).toMatchObject({ alive: false, exitCode: 137, cancelled: 'suspended' });
  });

  it('ranks sort numerically (rank-10 after rank-2) whatever the glob order', () => {
    const out = [
      '@@run train.abcd1234.1',
      'alive=0',
      'exit=1',
      `meta=${JSON.stringify(meta(1))}`,
      'rankexit=10 1 100',
      'rankexit=2 0 100',
      'rank=2 0 0 1 0',
      'rank=10 8 1 2 0',
      '@@end',
    ].join('\n');
    expect(parseObserve('gpu1', out)[0].ranks.map((r) => [r.rank, r.localRank, r.exitCode])).toEqual([
      [2, 0, 0],
      [10, 8, 1],
    ]);
  });

  it('a rank that exited before its "rank=" line was read is still recorded', () => {
    const out = [
      '@@run train.abcd1234.1',
      'alive=1',
      'exit=',
      `meta=${JSON.stringify(meta(1))}`,
      'rankexit=4 7 100',
      'ranklog=4 boom',
      '@@end',
    ].join('\n');
    expect(parseObserve('gpu1', out)[0].ranks).toEqual([
      { rank: 4, localRank: -1, pid: 0, exitCode: 7, exitedAt: 100_000, logTail: ['boom'] },
    ]);
  });

  it('@@none (no runs directory) and empty output give no parts', () => {
    expect(parseObserve('gpu1', '@@none\n')).toEqual([]);
    expect(parseObserve('gpu1', '')).toEqual([]);
    expect(parseObserve('gpu1', '@@end\n')).toEqual([]);
  });

  it('a half-written meta.json drops that run only; a partial metrics line is ignored', () => {
    const out = OUT.replace(`meta=${JSON.stringify(meta(1))}`, 'meta={"job":"train","runId":').replace(
      'metrics={"step":40,"loss":1.5}',
      'metrics={"step":4',
    );
    const ps = parseObserve('gpu1', out);
    expect(ps.map((p) => p.dir)).toEqual(['train.abcd1234.2']);
    const only = parseObserve('gpu1', OUT.replace('metrics={"step":40,"loss":1.5}', 'metrics={"step":4'));
    expect(only[0].metrics).toBeUndefined();
  });

  it('a launched_at that is not a number is ignored, not NaN', () => {
    const p = parseObserve('gpu1', OUT.replace('launched_at=1772359200123456789', 'launched_at=garbage'))[0];
    expect(p.launchedAtMs).toBeUndefined();
  });
});

describe('runDirName / runIdOf', () => {
  it('<job>.<hash>.<attempt> and <job>-<hash>-a<attempt>', () => {
    expect(runDirName('bert-base', 'abcd1234', 3)).toBe('bert-base.abcd1234.3');
    expect(runIdOf('bert-base', 'abcd1234', 3)).toBe('bert-base-abcd1234-a3');
    expect(runIdOf('train', 'abcd1234', 1)).not.toBe(runIdOf('train', 'abcd1234', 2));
  });
});

describe.skipIf(process.platform !== 'linux')('the real observe.sh, parsed', () => {
  /** A runs directory laid out as the runtime scripts leave it. */
  function layout() {
    const runs = mkdtempSync(join(tmpdir(), 'ugro-observe-'));
    const put = (dir: string, files: Record<string, string>) => {
      mkdirSync(join(runs, dir), { recursive: true });
      for (const [f, text] of Object.entries(files)) writeFileSync(join(runs, dir, f), text);
    };
    // This very process stands in for a live runner: observe checks pid + start time.
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const starttime = stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[19];
    put('train.abcd1234.2', {
      'meta.json': `${JSON.stringify(meta(2), null, 2)}\n`,
      pid: `${process.pid}\n`,
      starttime: `${starttime}\n`,
      launched_at: '1772359300000000000\n',
      ranks: '2 0 1 7001 1772359301000000000\n3 1 1 7002 1772359301000000000\n',
      'rank-2.exit': '0\n',
      'rank-3.exit': '3\n',
      'rank-3.log': `${Array.from({ length: 30 }, (_, i) => `log ${i}`).join('\n')}\n`,
      'metrics.jsonl': '{"step":1}\n{"step":2,"loss":0.5}\n',
    });
    utimesSync(join(runs, 'train.abcd1234.2', 'rank-3.exit'), 1772359350, 1772359350);
    // A finished, stopped attempt: dead pid, exit code, stop reason, torchrun's own log.
    put('train.abcd1234.1', {
      'meta.json': `${JSON.stringify(meta(1))}\n`,
      pid: '999999999\n',
      starttime: '1\n',
      exit_code: '137\n',
      cancelled: 'suspended\n',
      launched_at: '1772359200000000000\n',
      finished_at: '1772359260000000000\n',
      'torchrun.log': 'W0301 agent started\nSIGTERM received\n',
    });
    put('train.abcd1234.3', { pid: '1\n' }); // no meta.json yet: not a run
    put('other.ffff0000.1', { 'meta.json': `${JSON.stringify({ ...meta(1), job: 'other' })}\n` });
    put('.deleted/train.abcd1234.0.1772359000000', { 'meta.json': `${JSON.stringify(meta(0))}\n` });
    return runs;
  }
  const observe = (...args: string[]) =>
    execFileSync('sh', [`${ROOT}scripts/runtime/observe.sh`, ...args], { encoding: 'utf8' });

  it('reports this job’s runs only, alive/exit/cancelled/ranks/logs/metrics as the parser expects', () => {
    const parts = parseObserve('gpu1', observe(layout(), 'train'));
    expect(parts.map((p) => p.dir)).toEqual(['train.abcd1234.1', 'train.abcd1234.2']);
    const [done, live] = parts;
    expect(done).toMatchObject({
      alive: false,
      exitCode: 137,
      cancelled: 'suspended',
      pid: 999999999,
      launchedAtMs: 1772359200000,
      finishedAtMs: 1772359260000,
      meta: meta(1),
      ranks: [],
    });
    expect(done.agentLogTail).toEqual(['W0301 agent started', 'SIGTERM received']);
    expect(live).toMatchObject({
      alive: true,
      pid: process.pid,
      launchedAtMs: 1772359300000,
      meta: meta(2),
      metrics: { step: 2, loss: 0.5 },
      agentLogTail: [],
    });
    expect(live.exitCode).toBeUndefined();
    expect(live.cancelled).toBeUndefined();
    expect(live.ranks).toEqual([
      { rank: 2, localRank: 0, pid: 7001, exitCode: 0, exitedAt: expect.any(Number) },
      {
        rank: 3,
        localRank: 1,
        pid: 7002,
        exitCode: 3,
        exitedAt: 1772359350000,
        logTail: Array.from({ length: 20 }, (_, i) => `log ${i + 10}`),
      },
    ]);
  });

  it('without a job, every run directory with a meta.json; a missing runs directory is @@none', () => {
    const runs = layout();
    expect(parseObserve('gpu1', observe(runs)).map((p) => p.dir)).toEqual([
      'other.ffff0000.1',
      'train.abcd1234.1',
      'train.abcd1234.2',
    ]);
    expect(observe(join(runs, 'nope'))).toBe('@@none\n');
  });

  it('a job name that is a prefix of another job does not pick up its runs', () => {
    const runs = layout();
    mkdirSync(join(runs, 'train-big.abcd1234.1'));
    writeFileSync(join(runs, 'train-big.abcd1234.1', 'meta.json'), JSON.stringify({ ...meta(1), job: 'train-big' }));
    expect(parseObserve('gpu1', observe(runs, 'train')).map((p) => p.meta.job)).toEqual(['train', 'train']);
  });
});
