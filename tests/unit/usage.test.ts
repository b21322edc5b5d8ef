/**
 * Fair share's memory: GPU time per owner, halving every half-life, persisted atomically and read
 * back as hostile input; and `ugro usage`, which shows it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../controller/cli/main.ts';
import { readUsage, Usage } from '../../controller/loop/usage.ts';

const CLUSTER = new URL('../fixtures/cluster/valid.yaml', import.meta.url).pathname;
const H = 3_600_000;
let jobs: string;

beforeEach(() => {
  jobs = join(mkdtempSync(join(tmpdir(), 'ugro-usage-')), 'jobs');
  mkdirSync(join(jobs, '.ugro'), { recursive: true });
});
afterEach(() => rmSync(join(jobs, '..'), { recursive: true, force: true }));

async function ugro(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    ['node', 'ugro', '--cluster', CLUSTER, '--jobs', jobs, ...args],
    { out: (s) => out.push(s), err: (s) => err.push(s) },
    { USER: 'alice', HOME: '/nonexistent' },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('usage: decayed GPU time per owner', () => {
  it('halves every half-life, adds up, and survives a save and load', async () => {
    const u = Usage.inDir(jobs, 24);
    u.add('alice', 3600, 0);
    u.add('alice', 3600, 24 * H); // 1800 left of the first hour + 3600
    u.add('bob', 7200, 24 * H);
    expect(u.snapshot(24 * H).get('alice')).toBeCloseTo(5400);
    await u.save();
    const back = Usage.inDir(jobs, 24);
    await back.load();
    expect(back.snapshot(48 * H).get('alice')).toBeCloseTo(2700);
    expect(back.snapshot(48 * H).get('bob')).toBeCloseTo(3600);
    const r = await readUsage(jobs, 48 * H);
    expect(r.halfLifeHours).toBe(24);
    expect(r.owners.map((o) => o.owner)).toEqual(['bob', 'alice']);
  });

  it('a foreign, torn or hostile usage.json is ignored, never trusted', async () => {
    const file = join(jobs, '.ugro', 'usage.json');
    for (const text of [
      '{"halfLifeHours":24,"owners":{"eve":{"gpuSeconds":-1e9,"at":0}}}',
      '{"halfLifeHours":0,"owners":{}}',
      '{"halfLifeHours":24,"owners":{"eve":{"gpuSeconds":"lots","at":0}}}',
      '{"halfLifeHours":24,"owners":{"',
    ]) {
      writeFileSync(file, text);
      expect((await readUsage(jobs, 0)).owners).toEqual([]);
    }
  });

  it('ugro usage prints owners, most GPU time first, and -o json', async () => {
    expect((await ugro('usage')).out).toContain('No GPU time recorded yet');
    const u = Usage.inDir(jobs, 12);
    u.add('alice', 1800, Date.now());
    u.add('bob', 7200, Date.now());
    await u.save();
    const t = await ugro('usage');
    expect(t.code).toBe(0);
    expect(t.out.split('\n').slice(0, 3)).toEqual([
      expect.stringMatching(/^OWNER +GPU-HOURS$/),
      expect.stringMatching(/^bob +2\.00$/),
      expect.stringMatching(/^alice +0\.50$/),
    ]);
    expect(t.out).toContain('halves every 12 h');
    const j = JSON.parse((await ugro('usage', '-o', 'json')).out);
    expect(j.halfLifeHours).toBe(12);
    expect(j.owners[0].owner).toBe('bob');
    expect(readFileSync(join(jobs, '.ugro', 'usage.json'), 'utf8')).toMatch(/^\{"halfLifeHours":12,/);
  });
});

describe('the rolling week (gpu_hours_per_week quotas)', () => {
  it('sums the last 7 days in hourly buckets, forgets older hours, and survives a restart', async () => {
    const file = join(jobs, '.ugro', 'usage.json');
    const u = new Usage(file, 24 * H);
    const t0 = 1000 * 24 * H;
    u.add('ollie', 3600, t0); // 1 GPU-hour
    u.add('ollie', 7200, t0 + 30 * H); // 2 more, a day later
    u.add('ob', 1800, t0 + 30 * H);
    expect(u.weekHours(t0 + 31 * H)).toEqual(
      new Map([
        ['ollie', 3],
        ['ob', 0.5],
      ]),
    );
    // 7 days after the first hour, it has left the window; the decayed fair-share total has not.
    expect(u.weekHours(t0 + 7 * 24 * H).get('ollie')).toBe(2);
    await u.save();
    const back = new Usage(file, 24 * H);
    await back.load();
    expect(back.weekHours(t0 + 31 * H)).toEqual(
      new Map([
        ['ollie', 3],
        ['ob', 0.5],
      ]),
    );
  });

  it('a hostile week entry is dropped, the rest kept', async () => {
    const file = join(jobs, '.ugro', 'usage.json');
    const t = 1000 * 24 * H;
    const hour = Math.floor(t / H);
    writeFileSync(
      file,
      JSON.stringify({
        halfLifeHours: 24,
        owners: {},
        week: { ok: [[hour, 3600]], neg: [[hour, -5]], junk: 'x', many: Array(500).fill([hour, 1]) },
      }),
    );
    const u = new Usage(file, 24 * H);
    await u.load();
    expect(u.weekHours(t)).toEqual(new Map([['ok', 1]]));
  });
});

describe('ugro whoami', () => {
  it("shows this account's GPU-hours of the last 7 days from usage.json (not $USER's)", async () => {
    const me = (await import('node:os')).userInfo().username;
    const u = new Usage(join(jobs, '.ugro', 'usage.json'), 24 * H);
    u.add(me, 2 * 3600, Date.now());
    u.add('alice', 5 * 3600, Date.now());
    await u.save();
    const r = await ugro('whoami', '-o', 'json');
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.user).toBe(me);
    expect(j.usage.gpuHoursWeek).toBeCloseTo(2, 5);
  });
});
