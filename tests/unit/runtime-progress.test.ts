/**
 * progress.sh, the host side of the progress watcher: the REAL script through SshBackend and
 * LocalTransport (as SshTransport sends it), and FakeHosts' model of it doing the same. What it
 * proves: one exec answers for many run dirs; a file unchanged since the signature passed is not
 * answered; the last line is whatever the file ends with, a half-written or hostile one gives no
 * metrics; symlinks and missing files are left out; names that are not run dirs never reach sh.
 */
import { appendFileSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import type { ProgressRead } from '../../controller/backends/api.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { runtimeScripts } from '../../controller/backends/ssh/scripts.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';
import { runOf } from '../support/run-fixtures.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'ugro-progress-'));
const dirs = (n: number) => Array.from({ length: n }, (_, i) => runOf('local', `p${i}`).dir);
const bySig = (got: ProgressRead[]) => new Map(got.map((g) => [g.dir, g.sig]));

describe.skipIf(process.platform !== 'linux')('progress.sh, the real script', () => {
  const setup = () => {
    const host = localHost(tmp());
    const local = new LocalTransport();
    return { host, local, rt: new SshBackend(local) };
  };
  const metricsFile = (host: Host, dir: string) => join(host.paths.runs, dir, 'metrics.jsonl');
  const write = (host: Host, dir: string, text: string) => {
    mkdirSync(join(host.paths.runs, dir), { recursive: true });
    appendFileSync(metricsFile(host, dir), text);
  };

  it('one exec for many run dirs; then only the files that changed since their signature', async () => {
    const { host, local, rt } = setup();
    const ds = dirs(12);
    for (const [i, d] of ds.entries()) write(host, d, `{"step":${i},"loss":0.5}\n{"step":${i + 100}}\n`);
    const first = await rt.readProgress(
      host,
      ds.map((dir) => ({ dir })),
    );
    expect(local.calls.filter((c) => c.script === 'progress')).toHaveLength(1);
    expect(first.map((g) => [g.dir, g.metrics])).toEqual(ds.map((d, i) => [d, { step: i + 100 }]));
    for (const g of first) expect(g.sig).toMatch(/^\d+\.\d+\.\d+$/);
    const sigs = bySig(first);
    expect(
      await rt.readProgress(
        host,
        ds.map((dir) => ({ dir, sig: sigs.get(dir) })),
      ),
    ).toEqual([]);
    write(host, ds[4], '{"step":777,"loss":0.25}\n');
    const again = await rt.readProgress(
      host,
      ds.map((dir) => ({ dir, sig: sigs.get(dir) })),
    );
    expect(again.map((g) => [g.dir, g.metrics])).toEqual([[ds[4], { step: 777, loss: 0.25 }]]);
    expect(again[0].sig).not.toBe(sigs.get(ds[4]));
    expect(local.calls.filter((c) => c.script === 'progress')).toHaveLength(3);
  });

  it('a half-written last line has no metrics until it is whole; hostile lines give none', async () => {
    const { host, rt } = setup();
    const [a, b, c] = dirs(3);
    write(host, a, '{"step":1}\n{"step":2,"lo');
    write(host, b, '["not", "an object"]\n');
    write(host, c, `{"step":3,"note":"${'x'.repeat(70_000)}"}\n`);
    const got = await rt.readProgress(host, [{ dir: a }, { dir: b }, { dir: c }]);
    expect(got.map((g) => g.dir)).toEqual([a, b, c]);
    expect(got.map((g) => g.metrics)).toEqual([undefined, undefined, undefined]);
    write(host, a, 'ss":0.1}\n');
    const whole = await rt.readProgress(host, [{ dir: a, sig: got[0].sig }]);
    expect(whole.map((g) => g.metrics)).toEqual([{ step: 2, loss: 0.1 }]);
  });

  it('no metrics file, a missing run dir or runs dir, symlinks: nothing answered for them', async () => {
    const { host, rt } = setup();
    const [a, b, c, d] = dirs(4);
    mkdirSync(join(host.paths.runs, a), { recursive: true });
    const secret = join(tmp(), 'secret.jsonl');
    writeFileSync(secret, '{"step":42}\n');
    mkdirSync(join(host.paths.runs, b), { recursive: true });
    symlinkSync(secret, metricsFile(host, b));
    const elsewhere = join(tmp(), 'elsewhere');
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, 'metrics.jsonl'), '{"step":43}\n');
    symlinkSync(elsewhere, join(host.paths.runs, c));
    expect(await rt.readProgress(host, [{ dir: a }, { dir: b }, { dir: c }, { dir: d }])).toEqual([]);
    const nowhere = { ...host, paths: { ...host.paths, runs: join(tmp(), 'no-such-dir') } };
    expect(await rt.readProgress(nowhere, [{ dir: a }])).toEqual([]);
    expect(await rt.readProgress(host, [])).toEqual([]);
  });

  it('names that are not run dirs and bad signatures are refused before the host, and by the script', async () => {
    const { host, local, rt } = setup();
    await expect(rt.readProgress(host, [{ dir: '../x' }])).rejects.toThrow(/not a run dir name/);
    await expect(rt.readProgress(host, [{ dir: dirs(1)[0], sig: '1;rm -rf /' }])).rejects.toThrow(/signature/);
    expect(local.calls).toHaveLength(0);
    for (const args of [
      [host.paths.runs, '-rf', ''],
      [host.paths.runs, 'a b', ''],
      [host.paths.runs, 'a.12345678.1', '$(id)'],
      [host.paths.runs, 'a.12345678.1'],
    ]) {
      const r = await local.sh(host, 'progress', args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toMatch(/^@@error\nwhy=/);
    }
    expect(runtimeScripts().text('progress')).toContain('progress.sh');
  });
});

describe('FakeHosts answers progress.sh as the real script does', () => {
  it('the same reads give the same dirs and lines, and nothing for unchanged files', async () => {
    const clock = { ms: Date.parse('2026-03-01T10:00:00Z') };
    const real = { host: localHost(tmp()), rt: new SshBackend(new LocalTransport()) };
    const fakeHost = { ...real.host, name: 'local' };
    const fake = new FakeHosts([fakeHost], { now: () => clock.ms });
    const frt = new SshBackend(fake);
    const ds = dirs(3);
    const both = (d: string, line: string) => {
      mkdirSync(join(real.host.paths.runs, d), { recursive: true });
      appendFileSync(join(real.host.paths.runs, d, 'metrics.jsonl'), line);
      fake.writeRunDir('local', d, {});
      fake.writeMetrics('local', d, line.replace(/\n$/, ''));
    };
    both(ds[0], '{"step":1}\n');
    both(ds[2], '{"step":5,"loss":2}\n');
    const sigs = { real: new Map<string, string>(), fake: new Map<string, string>() };
    const read = async () => {
      const r = await real.rt.readProgress(
        real.host,
        ds.map((dir) => ({ dir, sig: sigs.real.get(dir) })),
      );
      const f = await frt.readProgress(
        fakeHost,
        ds.map((dir) => ({ dir, sig: sigs.fake.get(dir) })),
      );
      for (const g of r) sigs.real.set(g.dir, g.sig);
      for (const g of f) sigs.fake.set(g.dir, g.sig);
      const strip = (x: ProgressRead[]) => x.map(({ dir, metrics }) => ({ dir, metrics }));
      expect(strip(f)).toEqual(strip(r));
      return strip(r);
    };
    expect(await read()).toHaveLength(2);
    expect(await read()).toEqual([]);
    both(ds[1], '{"step":9}\n');
    both(ds[2], '{"step":6}\n');
    expect(await read()).toEqual([
      { dir: ds[1], metrics: { step: 9 } },
      { dir: ds[2], metrics: { step: 6 } },
    ]);
  });
});
