/**
 * The host scripts as a whole: the loader (found by walking up, as a bundled CLI in dist/ needs;
 * lib.sh in front of each), every script valid sh, no shell text left in controller/backends, and the
 * smaller scripts through SshBackend + LocalTransport: wait, read-log and follow-log, archive,
 * ports and the scripts sync.
 */
import { execFileSync } from 'node:child_process';
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { loadRuntimeScripts, runtimeScripts, SENT_SCRIPTS } from '../../controller/backends/ssh/scripts.ts';
import { InstallError, installRoot, runtimeDir } from '../../controller/base/install.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';
import { runOf } from '../support/run-fixtures.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const RUNTIME = join(ROOT, 'scripts/runtime');
const tmp = () => mkdtempSync(join(tmpdir(), 'ugro-scripts-'));

describe('the loader', () => {
  it('walks up from the module to scripts/runtime/lib.sh, from the sources and from a bundle in dist/', () => {
    expect(runtimeDir()).toBe(RUNTIME.replace(/\/$/, ''));
    const root = tmp();
    cpSync(RUNTIME, join(root, 'scripts/runtime'), { recursive: true });
    mkdirSync(join(root, 'dist/cli'), { recursive: true });
    expect(installRoot(pathToFileURL(join(root, 'dist/cli/ugro.mjs')))).toBe(root);
    expect(runtimeDir(installRoot(join(root, 'dist/cli/ugro.mjs')))).toBe(join(root, 'scripts/runtime'));
    // A broken install is the machine's problem, not a bug: a typed error (no stack from the CLI).
    const broken = () => installRoot(join(tmp(), 'a/b/c.mjs'));
    expect(broken).toThrow(InstallError);
    expect(broken).toThrow(/scripts\/runtime\/lib\.sh not found/);
  });

  it('each script is lib.sh + "\\n" + NAME.sh; rank.sh is sent as it is', () => {
    const s = loadRuntimeScripts(RUNTIME);
    const lib = readFileSync(join(RUNTIME, 'lib.sh'), 'utf8');
    for (const name of SENT_SCRIPTS) {
      expect(s.text(name)).toBe(`${lib}\n${readFileSync(join(RUNTIME, `${name}.sh`), 'utf8')}`);
    }
    expect(s.rank).toBe(readFileSync(join(RUNTIME, 'rank.sh'), 'utf8'));
    expect(s.rank.startsWith('#!/bin/sh\n')).toBe(true);
    expect(() => s.text('nope' as never)).toThrow(/no host script/);
    expect(runtimeScripts().text('observe')).toBe(s.text('observe'));
  });

  it('a script missing from the directory fails at load, not at its first use on a host', () => {
    const root = tmp();
    cpSync(RUNTIME, root, { recursive: true });
    execFileSync('rm', [join(root, 'lease.sh')]);
    expect(() => loadRuntimeScripts(root)).toThrow(/lease\.sh/);
  });

  it('every script parses as POSIX sh (dash -n)', () => {
    const s = runtimeScripts();
    for (const name of SENT_SCRIPTS) execFileSync('sh', ['-n', '-c', s.text(name)]);
    execFileSync('sh', ['-n', '-c', s.rank]);
  });

  it('every script in scripts/runtime is sent, or is lib.sh or rank.sh', () => {
    // (scripts/runtime/slurm/ is the Slurm backend's: tests/unit/slurm-batch.test.ts and slurm-runtime.test.ts.)
    const names = readdirSync(RUNTIME)
      .filter((f) => f.endsWith('.sh'))
      .map((f) => f.replace(/\.sh$/, ''));
    expect(names.sort()).toEqual([...SENT_SCRIPTS, 'lib', 'rank'].sort());
  });

  it('no shell text in controller/backends: `sh -c` only ever gets a loaded script', () => {
    const dir = join(ROOT, 'controller/backends');
    const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((n) => n.endsWith('.ts'));
    expect(files).toContain('ssh/transport.ts');
    for (const f of files) {
      const text = readFileSync(join(dir, f), 'utf8');
      for (const m of text.matchAll(/'sh',\s*'-c',\s*(\S)/g)) expect(m[1], f).toMatch(/[A-Za-z_]/);
      expect(text, f).not.toMatch(/"\$[@1-9]"|; then\b|\bfi\b;|2>\/dev\/null|\| (?:tail|sed|awk|head)\b/);
    }
  });
});

describe.skipIf(process.platform !== 'linux')('wait, logs, archive, ports, scripts', () => {
  const rt = () => new SshBackend(new LocalTransport());

  it('wait: resolves at once for a missing or finished run; an abort ends it while the run lives', async () => {
    const host = localHost(tmp());
    const r = rt();
    const { dir, runId, meta } = runOf(host.name, 'w');
    await r.wait(host, dir, new AbortController().signal);
    await r.launch(host, { dir, rdzvAddr: '127.0.0.1', meta, argv: ['sleep', '30'], ugroEnv: {}, jobEnv: {} });
    const ac = new AbortController();
    const t0 = Date.now();
    setTimeout(() => ac.abort(), 300);
    await r.wait(host, dir, ac.signal);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect((await r.observe(host)).parts[0].alive).toBe(true);
    await r.stop(host, { dir, runId, graceSeconds: 5, reason: 'cancelled' });
    await r.wait(host, dir, new AbortController().signal);
  });

  it('read-log: the whole log or its last lines, with the byte size read; no such log is an error', async () => {
    const host = localHost(tmp());
    const r = rt();
    const { dir } = runOf(host.name, 'logs');
    mkdirSync(join(host.paths.runs, dir), { recursive: true });
    const text = 'one\ntwo = 2\n@@end\n\nlast without newline';
    writeFileSync(join(host.paths.runs, dir, 'rank-3.log'), text);
    const size = Buffer.byteLength(text);
    expect(await r.readLog(host, dir, 3)).toEqual({ text: `${text}\n`, offset: size });
    expect(await r.readLog(host, dir, 3, 2)).toEqual({ text: '\nlast without newline\n', offset: size });
    expect(await r.readLog(host, dir, 3, 0)).toEqual({ text: '', offset: size });
    await expect(r.readLog(host, dir, 4)).rejects.toThrow(/no log for rank 4/);
    await expect(r.readLog(host, dir, -1)).rejects.toThrow(/not a rank/);
  });

  it('follow-log: every byte from the offset until the run ends, nothing twice', async () => {
    const host = localHost(tmp());
    const r = rt();
    const { dir, meta } = runOf(host.name, 'follow');
    // A "rank" writing its log for a while (the runner keeps the lock until it is done).
    const argv = ['sh', '-c', 'i=0; while [ $i -lt 12 ]; do echo "line $i"; i=$((i+1)); sleep 0.05; done'];
    const log = join(host.paths.runs, dir, 'rank-0.log');
    await r.launch(host, {
      dir,
      rdzvAddr: '127.0.0.1',
      meta,
      argv: ['sh', '-c', `${argv[2]} >>'${log}'`],
      ugroEnv: {},
      jobEnv: {},
    });
    await new Promise((res) => setTimeout(res, 150));
    const first = await r.readLog(host, dir, 0, 1);
    const got: Buffer[] = [];
    const end = await r.followLog(host, dir, 0, first.offset, (b) => got.push(b));
    const whole = readFileSync(log);
    expect(whole.toString()).toBe(Array.from({ length: 12 }, (_, i) => `line ${i}\n`).join(''));
    expect(end).toBe(whole.length);
    expect(Buffer.concat(got).equals(whole.subarray(first.offset))).toBe(true);
    // After the end: the rest at once, from any offset.
    appendFileSync(log, 'late\n');
    const more: Buffer[] = [];
    expect(await r.followLog(host, dir, 0, end, (b) => more.push(b))).toBe(end + 5);
    expect(Buffer.concat(more).toString()).toBe('late\n');
    await expect(r.followLog(host, 'gone.abcd1234.1', 0, 0, () => undefined)).rejects.toThrow(/exit 3/);
  });

  it('archive: moves the run dir under .deleted/ and prunes only entries older than keepDays', async () => {
    const host = localHost(tmp());
    const r = rt();
    const runs = host.paths.runs;
    const now = Date.now();
    const old = `old.00000001.1.${now - 8 * 86_400_000}`;
    const recent = `recent.00000001.1.${now - 86_400_000}`;
    for (const d of [`.deleted/${old}/x`, `.deleted/${recent}`, '.deleted/not-ours', 'arch.00000001.1'])
      mkdirSync(join(runs, d), { recursive: true });
    writeFileSync(join(runs, 'arch.00000001.1/rank-0.log'), 'hi\n');
    await r.archive(host, 'arch.00000001.1', now, 7);
    expect(readdirSync(join(runs, '.deleted')).sort()).toEqual([`arch.00000001.1.${now}`, 'not-ours', recent].sort());
    expect(readFileSync(join(runs, `.deleted/arch.00000001.1.${now}/rank-0.log`), 'utf8')).toBe('hi\n');
    expect(existsSync(join(runs, 'arch.00000001.1'))).toBe(false);
    await r.archive(host, 'arch.00000001.1', now + 1, 7); // nothing left to move: fine
    await expect(r.archive(host, '../etc', now)).rejects.toThrow(/not a run dir name/);
  });

  it('syncScripts: uploads when the host marker differs, then not again; a new hash uploads again', async () => {
    const root = tmp();
    const host = localHost(join(root, 'host'));
    const r = rt();
    const src = join(root, 'src');
    mkdirSync(join(src, 'sub'), { recursive: true });
    writeFileSync(join(src, 'train.py'), 'print(1)\n');
    writeFileSync(join(src, 'sub/util.py'), 'X = 1\n');
    expect(await r.syncScripts(host, src, 'aaaa1111')).toBe(true);
    expect(readFileSync(join(host.paths.scripts, 'sub/util.py'), 'utf8')).toBe('X = 1\n');
    expect(readFileSync(join(host.paths.scripts, '.ugro-scripts-hash'), 'utf8')).toBe('aaaa1111\n');
    expect(await r.syncScripts(host, src, 'aaaa1111')).toBe(false);
    writeFileSync(join(src, 'train.py'), 'print(2)\n');
    expect(await r.syncScripts(host, src, 'bbbb2222')).toBe(true);
    expect(readFileSync(join(host.paths.scripts, 'train.py'), 'utf8')).toBe('print(2)\n');
    await expect(r.syncScripts(host, src, 'not hex')).rejects.toThrow(/not hex/);
  });

  it('ports: what ss lists', async () => {
    const host = localHost(tmp());
    const ss = execFileSync('ss', ['-Hltn'], { encoding: 'utf8' });
    const expected = new Set([...ss.matchAll(/:(\d+)\s/g)].map((m) => Number(m[1])));
    expect(await rt().listeningPorts(host)).toEqual(expected);
  });
});
