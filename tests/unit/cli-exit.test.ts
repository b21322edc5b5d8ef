/**
 * The CLI's exit-code contract (0 ok, 1 failure, 2 usage or bad input, 3 not found), its error
 * messages (one line, never a stack on a user path), and the flag validators behind them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InternalError } from '../../config/errors.ts';
import { HostOutputError } from '../../controller/backends/errors.ts';
import { intFlag, isJobName, positiveNumberFlag, secondsFlag } from '../../controller/cli/args.ts';
import { EXIT, main } from '../../controller/cli/main.ts';
import { isJobName as storeIsJobName } from '../../controller/store/store.ts';

const FIXTURES = new URL('../fixtures/cluster/', import.meta.url).pathname;

async function ugro(args: string[], io: { out?: (s: string) => void; files?: Record<string, string> } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const jobs = mkdtempSync(join(tmpdir(), 'ugro-cli-exit-'));
  for (const [name, text] of Object.entries(io.files ?? {})) writeFileSync(join(jobs, name), text);
  const code = await main(
    ['node', 'ugro', '--jobs', jobs, ...args],
    { out: io.out ?? ((s) => out.push(s)), err: (s) => err.push(s) },
    { USER: 'alice', HOME: '/home/alice', XDG_CACHE_HOME: join(jobs, '.cache') },
  ).finally(() => rmSync(jobs, { recursive: true, force: true }));
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('exit codes', () => {
  it('the contract: ok 0, failure 1, usage 2, not found 3, forbidden 4', () => {
    expect(EXIT).toEqual({ ok: 0, failure: 1, usage: 2, notFound: 3, forbidden: 4 });
  });

  it('regression: `get jobs -o xml` is a usage error (exit 2, one line), not a stack trace with exit 1', async () => {
    const r = await ugro(['get', 'jobs', '-o', 'xml']);
    expect(r.code).toBe(2);
    expect(r.err).toBe('error: -o must be one of table, wide, json, yaml (got "xml")');
  });

  it('--help: exit 0, every verb listed', async () => {
    const r = await ugro(['--help']);
    expect(r.code).toBe(0);
    for (const verb of ['health', 'get', 'config', 'hosts', 'controller', 'apply', 'launch', 'validate'])
      expect(r.out).toMatch(new RegExp(`^  ${verb}\\b`, 'm'));
    for (const verb of ['describe', 'logs', 'delete', 'cancel', 'resume', 'status', 'events', 'results'])
      expect(r.out).toMatch(new RegExp(`^  ${verb}\\b`, 'm'));
  });

  it.each([
    [['bogus'], "error: unknown command 'bogus'"],
    [['get', 'jobs', '--bogus'], "error: unknown option '--bogus'"],
    [['describe', 'job'], "error: missing required argument 'name'"],
    [['get', 'jobs', 'a', '-w', '-o', 'json'], 'error: -w works with -o table or wide'],
    [['health', '-o', 'wide'], 'error: -o must be one of table, json, yaml (got "wide")'],
    [['config', 'show', '-o', 'xml'], 'error: -o must be one of yaml, json, table (got "xml")'],
  ])('usage errors exit 2: %j', async (args, message) => {
    const r = await ugro(args);
    expect(r.code).toBe(2);
    expect(r.err.split('\n')[0]).toBe(message);
    expect(r.err).not.toMatch(/^\s+at /m);
  });

  it('a group without its subcommand shows its help and exits 2', async () => {
    const r = await ugro(['get']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('Usage: ugro get');
  });

  it('not found exits 3: a job, a host', async () => {
    const job = await ugro(['describe', 'job', 'nosuch']);
    expect(job.code).toBe(3);
    expect(job.err).toMatch(/^error: job nosuch not found in \/.*ugro-cli-exit-/);
    const host = await ugro(['--cluster', `${FIXTURES}valid.yaml`, 'health', 'gpu9']);
    expect(host.code).toBe(3);
    expect(host.err).toMatch(/^error: host gpu9 not in .*valid\.yaml \(hosts: gpu-master, gpu1, gpu2\)$/);
  });

  it('a failure exits 1 with the message only (an invalid cluster file)', async () => {
    const r = await ugro(['--cluster', `${FIXTURES}broken-duplicate-name.yaml`, 'hosts', 'list']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: .*broken-duplicate-name\.yaml: 1 problem/);
    expect(r.err).not.toMatch(/^\s+at /m);
  });

  it('a bug (not a UgroError) prints its stack and says it is a bug, exit 1', async () => {
    const r = await ugro(['events'], {
      out: () => {
        throw new TypeError('boom');
      },
    });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: TypeError: boom\n\s+at /);
    expect(r.err).toContain('This is a bug in ugro');
  });

  it('an InternalError (a broken invariant) is a bug too: its stack and the bug line, exit 1', async () => {
    const r = await ugro(['events'], {
      out: () => {
        throw new InternalError('ring capacity 1 must be an integer >= 2');
      },
    });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: InternalError: ring capacity 1 must be an integer >= 2\n\s+at /);
    expect(r.err).toContain('This is a bug in ugro');
  });

  it('a condition of the machine (a typed UgroError) is its message alone: no stack, no bug line, exit 1', async () => {
    const r = await ugro(['events'], {
      out: () => {
        throw new HostOutputError('unexpected nvidia-smi line: "garbage"');
      },
    });
    expect(r).toMatchObject({ code: 1, err: 'error: unexpected nvidia-smi line: "garbage"' });
  });

  it('regression: a job Slurm cannot take (nodes past its range) is an error about the job, not "a bug"', async () => {
    const big = 'apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: big\nspec:\n  script: t.py\n';
    const r = await ugro(['--cluster', `${FIXTURES}valid.yaml`, 'export', 'job', 'big', '--to', 'sbatch'], {
      files: { 'big.yaml': `${big}  nodes: 200000\n` },
    });
    expect(r.err).toBe('error: slurm batch: nodes 200000 is out of range (Slurm takes 1..100000)');
    expect(r.code).toBe(1);
  });
});

describe('flag validators', () => {
  it('intFlag: decimal integers in range only; the message names the flag, the range and the value', () => {
    expect(intFlag('--tail', '10', 0, 100)).toBe(10);
    expect(intFlag('--rank', '0', 0, 7)).toBe(0);
    for (const bad of ['abc', '', '1.5', '1e3', '0x10', ' 5', '101', '-1', '99999999999999999'])
      expect(() => intFlag('--tail', bad, 0, 100)).toThrow(
        `--tail must be an integer 0..100 (got ${JSON.stringify(bad)})`,
      );
  });

  it('secondsFlag: plain decimal seconds in 0..max (NaN never gets through)', () => {
    expect(secondsFlag('--grace', '0', 3600)).toBe(0);
    expect(secondsFlag('--grace', '2.5', 3600)).toBe(2.5);
    expect(secondsFlag('--grace', '3600', 3600)).toBe(3600);
    for (const bad of ['abc', 'NaN', '', '-1', '3600.5', '1e3', 'Infinity'])
      expect(() => secondsFlag('--grace', bad, 3600)).toThrow(
        `--grace must be a number of seconds 0..3600 (got ${JSON.stringify(bad)})`,
      );
  });

  it('positiveNumberFlag', () => {
    expect(positiveNumberFlag('--lr', '0.01')).toBe(0.01);
    expect(positiveNumberFlag('--lr', '3e-4')).toBe(3e-4);
    for (const bad of ['0', '-1', 'abc', '', 'Infinity', '1e999'])
      expect(() => positiveNumberFlag('--lr', bad)).toThrow('--lr must be a number > 0');
  });

  it("isJobName is the store's rule (kept in args.ts so `get jobs` need not load the store)", () => {
    const samples = ['a', 'job-1', '1job', 'a'.repeat(63), 'a'.repeat(64), '-a', 'a-', 'A', 'a_b', 'a.b', '', '../x'];
    for (const s of [...samples, 'x/y', 'é', 'a\n', ' a', 'a--b', '0'])
      expect([s, isJobName(s)]).toEqual([s, storeIsJobName(s)]);
  });
});
