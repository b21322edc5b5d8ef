/**
 * observe: the controller's reading of scripts/runtime/observe.sh. First the record parser and
 * observeResultOf on blocks written by hand in observe.sh's exact format (hostile ones too), then
 * the real script through SshBackend + LocalTransport over run directories laid out as
 * launch.sh, rank.sh and stop.sh leave them, and over run dirs a hostile job crafted.
 */
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isNonFinite, metricsOfLine, type RunMeta, runDirName, runIdOf } from '../../controller/api/run.ts';
import { HostError } from '../../controller/backends/errors.ts';
import { field, fieldsOf, OBSERVE_LIMITS, observeResultOf, parseRecords } from '../../controller/backends/records.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';
import { metaFor, REJECTED_NAME } from '../support/run-fixtures.ts';

/** Node 1 of a two-node run of `job` (gpu-master is node 0). */
const meta = (attempt: number, host = 'gpu1', job = 'train', hash = 'abcd1234'): RunMeta =>
  metaFor(host, job, hash, attempt, {
    nodeRank: 1,
    nnodes: 2,
    nprocPerNode: 2,
    hosts: ['gpu-master', host],
    rdzvEndpoint: '10.0.0.10:29500',
  });

/** Two runs of one job on gpu1, as observe.sh prints them: attempt 1 failed, attempt 2 alive. */
const OUT = [
  '@@run train.abcd1234.1',
  'pid=4242',
  'starttime=987654',
  'alive=0',
  'exit_code=1',
  'cancelled=',
  'launched_at=1772359200123456789',
  'finished_at=1772359260500000000',
  `meta=${JSON.stringify(meta(1))}`,
  'rank=2 0 1 4250 1772359201000000000',
  'rank=3 1 1 4251 1772359201000000001',
  'rankexit=2 143 1772359260.000000000',
  'ranklog=2 Terminated',
  'rankexit=3 3 1772359255.250000000',
  'ranklog=3 Traceback (most recent call last):',
  'ranklog=3   File "train.py", line 3, in <module>',
  'ranklog=3 RuntimeError: loss=nan at step=40',
  'ranklog=3 ',
  'agentlog=torch.distributed.elastic.multiprocessing.errors.ChildFailedError:',
  'agentlog=train.py FAILED',
  'metrics={"step":40,"loss":1.5}',
  '@@end',
  '@@run train.abcd1234.2',
  'pid=5150',
  'starttime=1000',
  'alive=1',
  'exit_code=',
  'cancelled=',
  'launched_at=1772359300000000000',
  'finished_at=',
  `meta=${JSON.stringify(meta(2))}`,
  'rank=2 0  5160 1772359301000000000',
  'rank=3 1  5161 1772359301000000000',
  '@@end',
  '@@observe',
  'runs_dir=present',
  'runs=2',
  '@@end',
  '',
].join('\n');

describe('parseRecords', () => {
  it('blocks with kind, id and fields in order; repeated keys; "=" inside a value', () => {
    const bs = parseRecords('@@run a.b.1\nx=1\nrank=1 2\nrank=3 4\nlog=a=b\n@@end\n@@ports\nport=22\n@@end\n');
    expect(bs.map((b) => [b.kind, b.id, b.complete])).toEqual([
      ['run', 'a.b.1', true],
      ['ports', undefined, true],
    ]);
    expect(fieldsOf(bs[0], 'rank')).toEqual(['1 2', '3 4']);
    expect(field(bs[0], 'log')).toBe('a=b');
  });

  it('a block cut off (no @@end) is incomplete; lines outside blocks and without a key are ignored', () => {
    const bs = parseRecords('noise\nkey=outside\n@@wait\nstate=done\nnot a field\n=x\n@@launch\nresult=launched');
    expect(bs.map((b) => [b.kind, b.complete, b.fields])).toEqual([
      ['wait', false, [['state', 'done']]],
      ['launch', false, [['result', 'launched']]],
    ]);
  });

  it('a value can never open or close a block: every data line starts with its key', () => {
    const bs = parseRecords('@@log\nline=@@end\nline=@@run evil.abcd1234.1\n@@end\n');
    expect(bs).toHaveLength(1);
    expect(fieldsOf(bs[0], 'line')).toEqual(['@@end', '@@run evil.abcd1234.1']);
  });
});

describe('observeResultOf on observe.sh output', () => {
  const { parts, rejected } = observeResultOf('gpu1', OUT);

  it('one part per run block, with the host and directory; nothing rejected', () => {
    expect(parts.map((p) => [p.host, p.dir])).toEqual([
      ['gpu1', 'train.abcd1234.1'],
      ['gpu1', 'train.abcd1234.2'],
    ]);
    expect(rejected).toEqual([]);
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
    expect(p.stopReason).toBeUndefined();
    expect(p.agentLogTail).toEqual([
      'torch.distributed.elastic.multiprocessing.errors.ChildFailedError:',
      'train.py FAILED',
    ]);
    expect(p.metrics).toEqual({ step: 40, loss: 1.5 });
  });

  it('per-rank exits (ms) and log tails (a "=" inside a log line and an empty line survive)', () => {
    expect(parts[0].ranks).toEqual([
      { rank: 2, localRank: 0, pid: 4250, exitCode: 143, exitedAt: 1772359260000, logTail: ['Terminated'] },
      {
        rank: 3,
        localRank: 1,
        pid: 4251,
        exitCode: 3,
        exitedAt: 1772359255250,
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

  it('cancelled is a typed stop reason: UGRO words, the old free-text ones mapped, anything else dropped', () => {
    const withCancelled = (text: string) =>
      observeResultOf(
        'gpu1',
        OUT.replace('alive=1\nexit_code=\ncancelled=', `alive=0\nexit_code=137\ncancelled=${text}`),
      ).parts[1];
    expect(withCancelled('suspended')).toMatchObject({ alive: false, exitCode: 137, stopReason: 'suspended' });
    expect(withCancelled('spec changed').stopReason).toBe('spec-changed');
    expect(withCancelled('gang member failed').stopReason).toBe('gang-failed');
    expect(withCancelled('rm -rf / # because').stopReason).toBeUndefined();
  });

  it('ranks sort numerically (rank-10 after rank-2) whatever the glob order', () => {
    const out = [
      '@@run train.abcd1234.1',
      'alive=0',
      'exit_code=1',
      `meta=${JSON.stringify(meta(1))}`,
      'rankexit=10 1 100',
      'rankexit=2 0 100',
      'rank=2 0 0 1 0',
      'rank=10 8 1 2 0',
      '@@end',
      '@@observe',
      '@@end',
    ].join('\n');
    expect(observeResultOf('gpu1', out).parts[0].ranks.map((r) => [r.rank, r.localRank, r.exitCode])).toEqual([
      [2, 0, 0],
      [10, 8, 1],
    ]);
  });

  it('a rank that exited before its "rank=" line was read is still recorded', () => {
    const out = [
      '@@run train.abcd1234.1',
      'alive=1',
      'pid=77',
      `meta=${JSON.stringify(meta(1))}`,
      'rankexit=4 7 100',
      'ranklog=4 boom',
      '@@end',
      '@@observe',
      '@@end',
    ].join('\n');
    expect(observeResultOf('gpu1', out).parts[0].ranks).toEqual([
      { rank: 4, localRank: -1, pid: 0, exitCode: 7, exitedAt: 100_000, logTail: ['boom'] },
    ]);
  });

  it('no runs directory, or no runs, give no parts', () => {
    expect(observeResultOf('gpu1', '@@observe\nruns_dir=absent\nruns=0\n@@end\n')).toEqual({ parts: [], rejected: [] });
    expect(observeResultOf('gpu1', '@@observe\nruns_dir=present\nruns=0\n@@end\n')).toEqual({
      parts: [],
      rejected: [],
    });
  });

  it('output cut short (no @@observe at the end) is an error, not "no runs"', () => {
    expect(() => observeResultOf('gpu1', '')).toThrow(/incomplete/);
    expect(() => observeResultOf('gpu1', OUT.slice(0, OUT.indexOf('@@observe')))).toThrow(/incomplete/);
    expect(() => observeResultOf('gpu1', '@@error\nwhy=JOB must be a DNS label\n@@end\n')).toThrow(/DNS label/);
    // About the host, not a bug: a HostError that names it (the CLI prints no stack for it).
    expect(() => observeResultOf('gpu1', '')).toThrow(HostError);
    expect(() => observeResultOf('gpu1', '')).toThrow(/^gpu1: observe output is incomplete/);
    expect(() => observeResultOf('gpu1', '@@error\nwhy=x\n@@end\n')).toThrow(HostError);
  });

  it('a half-written meta.json rejects that run only; a partial metrics line is ignored', () => {
    const out = OUT.replace(`meta=${JSON.stringify(meta(1))}`, 'meta={"job":"train","runId":').replace(
      'metrics={"step":40,"loss":1.5}',
      'metrics={"step":4',
    );
    const r = observeResultOf('gpu1', out);
    expect(r.parts.map((p) => p.dir)).toEqual(['train.abcd1234.2']);
    expect(r.rejected).toEqual([{ dir: 'train.abcd1234.1', why: expect.stringMatching(/not JSON/) }]);
    const only = observeResultOf('gpu1', OUT.replace('metrics={"step":40,"loss":1.5}', 'metrics={"step":4'));
    expect(only.parts[0].metrics).toBeUndefined();
  });

  it('a launched_at that is not a number is ignored, not NaN', () => {
    const p = observeResultOf('gpu1', OUT.replace('launched_at=1772359200123456789', 'launched_at=garbage')).parts[0];
    expect(p.launchedAtMs).toBeUndefined();
  });
});

describe('observeResultOf on hostile output (any job can write its run dir)', () => {
  const block = (dir: string, lines: string[]) => `@@run ${dir}\n${lines.join('\n')}\n@@end\n`;
  const done = '@@observe\nruns_dir=present\nruns=1\n@@end\n';
  const one = (dir: string, lines: string[]) => observeResultOf('gpu1', block(dir, lines) + done);

  it('a meta.json naming another job, path, host or run id is rejected with the reason, never a part', () => {
    const cases: [string, RunMeta, RegExp][] = [
      ['train.abcd1234.1', { ...meta(1), job: '../../x' }, /job/],
      ['train.abcd1234.1', { ...meta(1), job: 'other' }, /not its directory/],
      ['train.abcd1234.1', { ...meta(1), host: 'gpu2', hosts: ['gpu-master', 'gpu2'] }, /host gpu2, found on gpu1/],
      ['train.abcd1234.1', { ...meta(1), runId: 'train-abcd1234-a9' }, /runId/],
      ['train.abcd1234.1', { ...meta(1), nodeRank: 0 }, /nodeRank/],
      ['../../x.abcd1234.1', meta(1), /not JOB.HASH.ATTEMPT/],
    ];
    for (const [dir, m, why] of cases) {
      const r = one(dir, ['pid=1', 'alive=1', `meta=${JSON.stringify(m)}`]);
      expect(r.parts, dir).toEqual([]);
      expect(r.rejected).toEqual([{ dir, why: expect.stringMatching(why) }]);
    }
    const extra = one('train.abcd1234.1', [`meta=${JSON.stringify({ ...meta(1), evil: true })}`]);
    expect(extra.rejected[0].why).toMatch(/evil|unrecognized/i);
  });

  it('pids, exit codes and ranks must be integers in range; alive needs a valid pid', () => {
    const m = `meta=${JSON.stringify(meta(1))}`;
    for (const pid of ['abc', '-1', '0', '1e3', '99999999999', ' 42', '4242 1']) {
      const p = one('train.abcd1234.1', [`pid=${pid}`, 'alive=1', m]).parts[0];
      expect(p.pid, pid).toBeUndefined();
      expect(p.alive, pid).toBe(false);
    }
    for (const code of ['256', '-1', '1.5', 'x', '0x10']) {
      expect(one('train.abcd1234.1', [`exit_code=${code}`, m]).parts[0].exitCode, code).toBeUndefined();
    }
    const p = one('train.abcd1234.1', [
      m,
      'rank=x 0 0 1 1',
      'rank=1 -1 0 5 1',
      'rank=2 0 0 nope 1',
      'rank=99999999 0 0 5 1',
      'rank=3 1 0 7 1',
      'rankexit=3 999 1',
      'rankexit=4 2 then',
      'ranklog=notarank hello',
    ]).parts[0];
    expect(p.ranks).toEqual([
      { rank: 3, localRank: 1, pid: 7 },
      { rank: 4, localRank: -1, pid: 0, exitCode: 2 },
    ]);
  });

  it("rankoom= (rank.sh's out-of-memory record): a failed rank's, checked word by word", () => {
    const m = `meta=${JSON.stringify(meta(1))}`;
    const p = one('train.abcd1234.1', [
      m,
      'rank=2 0 1 7 1',
      'rank=3 1 1 8 1',
      'rank=4 0 1 9 1',
      'rank=5 0 1 10 1',
      'rankexit=2 137 1',
      'rankexit=3 1 1',
      'rankexit=4 0 1',
      'rankexit=5 1 1',
      "rankoom=2 kernel 28 28 1 the kernel's OOM killer: SIGKILL while oom_kill went 0 -> 1 in /sys/x",
      'rankoom=3 cuda - - - torch.cuda.OutOfMemoryError: CUDA out of memory.',
      'rankoom=4 cuda 8 8 1 a rank that exited 0 ran out of nothing',
      'rankoom=5 evil 8 8 1 not a kind',
      'rankoom=9 cuda 8 8 1 no such rank',
    ]).parts[0];
    expect(p.ranks.map((r) => r.oom)).toEqual([
      {
        kind: 'kernel',
        batch: 28,
        micro: 28,
        accum: 1,
        evidence: "the kernel's OOM killer: SIGKILL while oom_kill went 0 -> 1 in /sys/x",
      },
      { kind: 'cuda', evidence: 'torch.cuda.OutOfMemoryError: CUDA out of memory.' },
      undefined,
      undefined,
    ]);
    // Sizes out of range, or only some of them: none (the evidence stays); evidence capped at 500.
    const q = one('train.abcd1234.1', [
      m,
      'rank=2 0 1 7 1',
      'rankexit=2 137 1',
      `rankoom=2 kernel 0 28 - ${'x'.repeat(900)}`,
    ]).parts[0];
    expect(q.ranks[0].oom).toEqual({ kind: 'kernel', evidence: 'x'.repeat(500) });
  });

  it('log tails are capped: the last 20 lines of each, 2000 characters a line', () => {
    const lines = Array.from({ length: 50 }, (_, i) => `ranklog=0 ${i}:${'x'.repeat(5000)}`);
    const agent = Array.from({ length: 30 }, (_, i) => `agentlog=${i}`);
    const p = one('train.abcd1234.1', [`meta=${JSON.stringify(meta(1))}`, 'rankexit=0 1 1', ...lines, ...agent])
      .parts[0];
    const tail = p.ranks[0].logTail!;
    expect(tail).toHaveLength(OBSERVE_LIMITS.logLines);
    expect(tail[0].startsWith('30:')).toBe(true);
    expect(Math.max(...tail.map((l) => l.length))).toBe(OBSERVE_LIMITS.logLineChars);
    expect(p.agentLogTail).toEqual(Array.from({ length: 20 }, (_, i) => String(i + 10)));
  });

  it('metrics are sanitized: flat small values only; not an object, or too big: none', () => {
    const m = `meta=${JSON.stringify(meta(1))}`;
    const metrics = (text: string) => one('train.abcd1234.1', [m, `metrics=${text}`]).parts[0].metrics;
    expect(
      metrics(JSON.stringify({ step: 3, loss: 0.5, nested: { a: 1 }, 'bad key!': 1, s: 'y'.repeat(500) })),
    ).toEqual({ step: 3, loss: 0.5, s: 'y'.repeat(200) });
    expect(metrics('[1,2]')).toBeUndefined();
    expect(metrics('"text"')).toBeUndefined();
    expect(metrics(JSON.stringify({ a: 'z'.repeat(70_000) }))).toBeUndefined();
  });

  // Python's json.dumps writes a diverged loss as a bare NaN: not JSON, so the line was dropped and
  // a sweep judged the trial on its last finite loss.
  it("Python's bare NaN, Infinity and -Infinity are kept as those words; inside a string nothing changes", () => {
    const line = '{"step": 7, "loss": NaN, "gn": Infinity, "lo": -Infinity, "note": "NaN, \\"Infinity\\"", "ok": 1e-3}';
    expect(metricsOfLine(line)).toEqual({
      step: 7,
      loss: 'NaN',
      gn: 'Infinity',
      lo: '-Infinity',
      note: 'NaN, "Infinity"',
      ok: 0.001,
    });
    const m = `meta=${JSON.stringify(meta(1))}`;
    expect(one('train.abcd1234.1', [m, `metrics=${line}`]).parts[0].metrics?.loss).toBe('NaN');
    expect(isNonFinite('NaN') && isNonFinite('-Infinity') && !isNonFinite('nan') && !isNonFinite(1)).toBe(true);
    expect(metricsOfLine('{"loss": NaNx}')).toBeUndefined();
    expect(metricsOfLine('{"loss": 0.5')).toBeUndefined();
  });

  it('a run dir observe.sh itself rejected (unsafe name) is reported as such', () => {
    const r = observeResultOf('gpu1', `@@rejected a?b\nwhy=${REJECTED_NAME}\n@@end\n${done}`);
    expect(r).toEqual({ parts: [], rejected: [{ dir: 'a?b', why: REJECTED_NAME }] });
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
  const rt = new SshBackend(new LocalTransport());
  /** A host whose runs directory is laid out as the runtime scripts leave it. */
  function layout() {
    const host = localHost(mkdtempSync(join(tmpdir(), 'ugro-observe-')), 'gpu1');
    const runs = host.paths.runs;
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
      'rank-3.oom': 'cuda 12 6 2 torch.cuda.OutOfMemoryError: CUDA out of memory.\nsecond line ignored\n',
      'rank-2.oom': 'cuda 12 6 2 a rank that exited 0: never reported\n',
      'metrics.jsonl': '{"step":1}\n{"step":2,"loss":0.5}\n',
    });
    utimesSync(join(runs, 'train.abcd1234.2', 'rank-3.exit'), 1772359350, 1772359350);
    // A finished, stopped attempt: dead pid, exit code, stop reason, torchrun's own log.
    put('train.abcd1234.1', {
      'meta.json': `${JSON.stringify(meta(1))}\n`,
      pid: '4194301\n',
      starttime: '1\n',
      exit_code: '137\n',
      cancelled: 'suspended\n',
      launched_at: '1772359200000000000\n',
      finished_at: '1772359260000000000\n',
      'torchrun.log': 'W0301 agent started\nSIGTERM received\n',
    });
    put('train.abcd1234.3', { pid: '1\n' }); // no meta.json yet: not a run
    put('other.ffff0000.1', {
      'meta.json': `${JSON.stringify(meta(1, 'gpu1', 'other', 'ffff0000'))}\n`,
    });
    put('.deleted/train.abcd1234.9.1772359000000', { 'meta.json': `${JSON.stringify(meta(9))}\n` });
    return host;
  }

  it('reports this job’s runs only, alive/exit/cancelled/ranks/logs/metrics as the parser expects', async () => {
    const { parts, rejected } = await rt.observe(layout(), 'train');
    expect(rejected).toEqual([]);
    expect(parts.map((p) => p.dir)).toEqual(['train.abcd1234.1', 'train.abcd1234.2']);
    const [done, live] = parts;
    expect(done).toMatchObject({
      alive: false,
      exitCode: 137,
      stopReason: 'suspended',
      pid: 4194301,
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
    expect(live.stopReason).toBeUndefined();
    expect(live.ranks).toEqual([
      { rank: 2, localRank: 0, pid: 7001, exitCode: 0, exitedAt: expect.any(Number) },
      {
        rank: 3,
        localRank: 1,
        pid: 7002,
        exitCode: 3,
        exitedAt: 1772359350000,
        logTail: Array.from({ length: 20 }, (_, i) => `log ${i + 10}`),
        oom: {
          kind: 'cuda',
          batch: 12,
          micro: 6,
          accum: 2,
          evidence: 'torch.cuda.OutOfMemoryError: CUDA out of memory.',
        },
      },
    ]);
  });

  it('without a job, every run directory with a meta.json; a missing runs directory is no runs', async () => {
    const host = layout();
    expect((await rt.observe(host)).parts.map((p) => p.dir)).toEqual([
      'other.ffff0000.1',
      'train.abcd1234.1',
      'train.abcd1234.2',
    ]);
    const gone = { ...host, paths: { ...host.paths, runs: join(host.paths.runs, 'nope') } };
    expect(await rt.observe(gone)).toEqual({ parts: [], rejected: [] });
  });

  it('a job name that is a prefix of another job does not pick up its runs', async () => {
    const host = layout();
    const dir = join(host.paths.runs, 'train-big.abcd1234.1');
    mkdirSync(dir);
    const m = metaFor('gpu1', 'train-big', 'abcd1234', 1);
    writeFileSync(join(dir, 'meta.json'), JSON.stringify(m));
    expect((await rt.observe(host, 'train')).parts.map((p) => p.meta.job)).toEqual(['train', 'train']);
    expect((await rt.observe(host, 'train-big')).parts.map((p) => p.meta.job)).toEqual(['train-big']);
  });

  it('a job argument that is not a DNS label is refused by the script', async () => {
    await expect(rt.observe(layout(), 'x*')).rejects.toThrow(/DNS label/);
  });

  it('crafted run dirs: forged meta, multi-line files, @@ lines in logs, unsafe names, symlinks', async () => {
    const host = localHost(mkdtempSync(join(tmpdir(), 'ugro-observe-hostile-')), 'gpu1');
    const runs = host.paths.runs;
    const put = (dir: string, files: Record<string, string>) => {
      mkdirSync(join(runs, dir), { recursive: true });
      for (const [f, text] of Object.entries(files)) writeFileSync(join(runs, dir, f), text);
    };
    // A job forging a run of a job named ../../x.
    put('evil.abcd1234.1', { 'meta.json': JSON.stringify({ ...metaFor('gpu1', 'evil'), job: '../../x' }) });
    // Files that try to smuggle records into observe's output.
    put('train.abcd1234.1', {
      'meta.json': JSON.stringify(metaFor('gpu1')),
      pid: '1\n@@end\n@@run forged.abcd1234.1\nalive=1\n',
      exit_code: '3\nexit_code=0\n',
      cancelled: 'cancelled\n@@end\n',
      ranks: `0 0 0 4000 1\n${'9'.repeat(500)}\n`,
      'rank-0.exit': '3\n',
      'rank-0.log': `@@end\n@@observe\n${'L'.repeat(10_000)}\nlast`,
      'rank-x.exit': '1\n',
      'torchrun.log': '@@run forged.abcd1234.2\n',
      'metrics.jsonl': '{"step":1}\n{"step":2,"__proto__":{"polluted":1},"x":{"y":1}}',
    });
    // A name with a newline and a space, one that reads as an option; a symlink to another run dir.
    put('bad\n@@run x.abcd1234.1 name', { 'meta.json': '{}' });
    put('-n.abcd1234.1', { 'meta.json': '{}', 'rank-0.exit': '1\n' });
    symlinkSync(join(runs, 'train.abcd1234.1'), join(runs, 'link.abcd1234.1'));

    const { parts, rejected } = await rt.observe(host);
    expect(parts.map((p) => p.dir)).toEqual(['train.abcd1234.1']);
    const p = parts[0];
    expect(p).toMatchObject({ pid: 1, exitCode: 3, stopReason: 'cancelled', metrics: { step: 2 } });
    expect(p.ranks).toEqual([
      {
        rank: 0,
        localRank: 0,
        pid: 4000,
        exitCode: 3,
        exitedAt: expect.any(Number),
        logTail: ['@@end', '@@observe', 'L'.repeat(2000), 'last'],
      },
    ]);
    expect(p.agentLogTail).toEqual(['@@run forged.abcd1234.2']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect([...rejected].sort((a, b) => (a.dir < b.dir ? -1 : 1))).toEqual([
      { dir: '-n.abcd1234.1', why: REJECTED_NAME },
      { dir: 'bad???run?x.abcd1234.1?name', why: REJECTED_NAME },
      { dir: 'evil.abcd1234.1', why: expect.stringMatching(/^meta\.json: job: /) },
    ]);
  });
});
