/**
 * `ugro logs` end to end without SSH: the real host scripts (read-log.sh, follow-log.sh) run here
 * through LocalTransport, on a run directory laid out as a host has it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { main } from '../../controller/cli/main.ts';
import { JobStore } from '../../controller/store/store.ts';
import { LocalTransport } from '../support/local-transport.ts';

const LOG = 'rank 1/2 starting\nepoch 1 loss 0.5\nepoch 2 loss 0.25\nrank 1: done\n';

let root: string;
let transport: LocalTransport;

beforeEach(async () => {
  root = mkdtempSync(join(tmpdir(), 'ugro-cli-logs-'));
  const runs = join(root, 'runs');
  writeFileSync(
    join(root, 'cluster.yaml'),
    'cluster:\n  name: t\n  master: { hostname: m, ip: 10.0.0.10, user: u }\n' +
      `workers:\n  - { name: gpu1, hostname: gpu1, ip: 10.0.0.11, user: u, rank: 1, paths: { runs: ${runs} } }\n`,
  );
  mkdirSync(join(runs, 'x.abcd1234.2'), { recursive: true });
  writeFileSync(join(runs, 'x.abcd1234.2', 'rank-1.log'), LOG);
  const store = new JobStore(join(root, 'jobs'));
  mkdirSync(store.dir);
  await store.writeStatus('x', {
    phase: 'Succeeded',
    observedGeneration: 1,
    specHash: 'abcd1234',
    attempt: 2,
    runId: 'x.abcd1234.2',
    nodes: [
      { host: 'gpu-master', nodeRank: 0, globalRanks: [0], state: 'Succeeded' },
      { host: 'gpu1', nodeRank: 1, globalRanks: [1], state: 'Succeeded' },
    ],
    createdAt: '2025-03-01T10:00:00Z',
    conditions: [],
  });
  await store.writeStatus('queued', {
    phase: 'Queued',
    observedGeneration: 1,
    attempt: 0,
    nodes: [],
    createdAt: '2025-03-01T10:00:00Z',
    conditions: [],
  });
  transport = new LocalTransport();
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

async function ugro(...args: string[]) {
  const out: string[] = [];
  const raw: string[] = [];
  const err: string[] = [];
  const code = await main(
    ['node', 'ugro', '--cluster', join(root, 'cluster.yaml'), '--jobs', join(root, 'jobs'), ...args],
    { out: (s) => out.push(s), err: (s) => err.push(s), write: (b) => raw.push(Buffer.from(b).toString()) },
    { USER: 'alice', HOME: root },
    { runtime: () => new SshBackend(transport) },
  );
  return { code, out: out.join('\n'), raw: raw.join(''), err: err.join('\n') };
}

describe('ugro logs', () => {
  it("the whole log of a rank, from the host that ran it and the run's dir", async () => {
    const r = await ugro('logs', 'x', '--rank', '1');
    expect([r.code, r.err]).toEqual([0, '']);
    expect(r.out).toBe(LOG.trimEnd());
    expect(transport.calls).toEqual([
      { host: 'gpu1', script: 'read-log', args: [join(root, 'runs', 'x.abcd1234.2'), '1'] },
    ]);
  });

  it('--tail N: the last N lines', async () => {
    expect((await ugro('logs', 'x', '--rank', '1', '--tail', '2')).out).toBe('epoch 2 loss 0.25\nrank 1: done');
  });

  it('-f: the bytes as they are, from the start (the run has ended: it stops at the end)', async () => {
    const r = await ugro('logs', 'x', '--rank', '1', '-f');
    expect([r.code, r.err]).toEqual([0, '']);
    expect(r.raw).toBe(LOG);
  });

  it('-f --tail 1: the last line, then follows from the byte after it (nothing twice)', async () => {
    const r = await ugro('logs', 'x', '--rank', '1', '-f', '--tail', '1');
    expect(r.raw).toBe('rank 1: done\n');
    expect(transport.calls.map((c) => [c.script, c.args.at(-1)])).toEqual([
      ['read-log', '1'],
      ['follow-log', String(Buffer.byteLength(LOG))],
    ]);
  });

  it('not found (exit 3): a rank the run does not have, a job without a run, a job that does not exist', async () => {
    const rank = await ugro('logs', 'x', '--rank', '5');
    expect([rank.code, rank.err]).toEqual([3, 'error: rank 5 of job x not found (ranks: 0, 1)']);
    const queued = await ugro('logs', 'queued');
    expect([queued.code, queued.err]).toEqual([3, 'error: job queued has no run yet']);
    const none = await ugro('logs', 'nosuch');
    expect([none.code, none.err]).toEqual([3, `error: job nosuch not found in ${join(root, 'jobs')}`]);
    expect(transport.calls).toEqual([]);
  });

  it('a log that is not there: one try, exit 1, the host says why (no reconnect loop)', async () => {
    rmSync(join(root, 'runs', 'x.abcd1234.2'), { recursive: true });
    const r = await ugro('logs', 'x', '--rank', '1', '-f');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: gpu1: following the log of rank 1 of x\.abcd1234\.2 stopped \(exit 3\)/);
    expect(transport.calls).toHaveLength(1);
  });
});
