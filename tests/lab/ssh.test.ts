/**
 * The SSH layer against the lab's real sshd hosts: argv survives the remote shell byte-exact,
 * uploads arrive intact, host keys are enforced before anything runs, dead and cut hosts fail
 * fast with the right kind, one pooled connection carries many execs, output streams, and
 * exit codes and signals come back. Every fault is undone in `finally`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import { readKnownHosts } from '../../config/known-hosts.ts';
import { HostError } from '../../controller/backends/errors.ts';
import type { SshTarget } from '../../controller/backends/ssh/connect.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import {
  hostPubKeyFile,
  LAB_KNOWN_HOSTS,
  lab,
  labCluster,
  labNominal,
  newEd25519Key,
  sshKeygenFingerprint,
} from './helpers.ts';

const cluster = labCluster();
const hostByName = (n: string): Host => cluster.hosts.find((h) => h.name === n)!;
const gpu1 = hostByName('gpu1');
const gpu2 = hostByName('gpu2');
const RUN = `${process.pid}-${randomBytes(3).toString('hex')}`;

/** The same host, but checking its key against another known_hosts file. */
function withKnownHosts(h: Host, text: string): SshTarget {
  const dir = mkdtempSync(join(tmpdir(), 'ugro-ssh-kh-'));
  const file = join(dir, 'known_hosts');
  writeFileSync(file, text);
  return { ...h, ssh: { ...h.ssh, knownHosts: file } };
}

async function rejection(p: Promise<unknown>): Promise<HostError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(HostError);
    return e as HostError;
  }
  throw new Error('expected the call to be refused, but it succeeded');
}

let pool: SshPool;
beforeAll(() => {
  // Every host up before we start (a previous run may have been killed mid-fault).
  labNominal();
  pool = new SshPool(cluster.hosts);
});
afterAll(async () => {
  pool?.close();
});

const NASTY = [
  'two  words ',
  "it's",
  "'",
  'say "hi"',
  '$(id)',
  '`id`',
  '$HOME',
  '${PATH}',
  'a;b',
  'true && echo pwned',
  'a|b > c',
  'line1\nline2',
  'x\n',
  '-n',
  '--',
  '*',
  '~',
  'a\\b',
  '!!',
  '{a,b}',
  '#c',
  'Trøndelag ø',
  '🚀 gpu 🔥',
  '',
  'A=b',
];

describe('exec: argv reaches the remote program byte-exact', () => {
  for (const name of ['gpu-master', 'gpu1', 'gpu2']) {
    it(`${name}: printf '%s\\0' of nasty words echoes them back unchanged`, async () => {
      const r = await pool.exec(name, ['printf', '%s\\0', ...NASTY]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const expected = Buffer.concat(NASTY.map((a) => Buffer.from(`${a}\0`, 'utf8')));
      expect(Buffer.from(r.stdout, 'utf8').equals(expected)).toBe(true);
      expect(r.stdout.split('\0').slice(0, -1)).toEqual(NASTY);
    });
  }

  it('env values and a cwd arrive byte-exact; the command runs as the host user', async () => {
    const dir = `${gpu1.paths.home}/ugro-test-cwd ${RUN} 'q' $(x)`;
    await pool.exec('gpu1', ['mkdir', '-p', '--', dir]);
    try {
      const val = NASTY.join('|');
      const r = await pool.exec('gpu1', ['sh', '-c', 'printf "%s\\0" "$PWD" "$UGRO_X" "$(id -un)" "$(hostname)"'], {
        env: { UGRO_X: val },
        cwd: dir,
      });
      expect(r.code).toBe(0);
      expect(r.stdout.split('\0').slice(0, -1)).toEqual([dir, val, 'ob', 'gpu1']);
    } finally {
      await pool.exec('gpu1', ['rm', '-rf', '--', dir]);
    }
  });

  it('stdin is passed through (sha256sum of 1 MiB of random bytes)', async () => {
    const data = randomBytes(1024 * 1024);
    const r = await pool.exec('gpu1', ['sha256sum'], { stdin: data });
    expect(r.stdout.split(' ')[0]).toBe(createHash('sha256').update(data).digest('hex'));
  });
});

describe('exit status, signals, streaming', () => {
  it('exit code and separate stderr', async () => {
    const r = await pool.exec('gpu1', ['sh', '-c', 'echo out; echo err >&2; exit 7']);
    expect(r).toMatchObject({ code: 7, signal: null, stdout: 'out\n', stderr: 'err\n' });
    expect((await pool.exec('gpu1', ['false'])).code).toBe(1);
    expect((await pool.exec('gpu1', ['no-such-command-ugro'])).code).toBe(127);
  });

  it('a process killed by a signal: code null and the signal name (ssh2 reports it as "SIGTERM")', async () => {
    const r = await pool.exec('gpu1', ['sh', '-c', 'kill -TERM $$']);
    expect(r.code).toBeNull();
    expect(r.signal).toMatch(/^(SIG)?TERM$/);
    const k = await pool.exec('gpu1', ['sh', '-c', 'kill -KILL $$']);
    expect(k.code).toBeNull();
    expect(k.signal).toMatch(/^(SIG)?KILL$/);
  });

  it('onStdout streams output while the command is still running', async () => {
    const chunks: { at: number; text: string }[] = [];
    const t0 = performance.now();
    const r = await pool.exec('gpu1', ['sh', '-c', 'echo one; sleep 1; echo two'], {
      onStdout: (b) => chunks.push({ at: performance.now() - t0, text: b.toString() }),
    });
    const done = performance.now() - t0;
    expect(r.stdout).toBe('one\ntwo\n');
    expect(chunks.map((c) => c.text).join('')).toBe('one\ntwo\n');
    expect(chunks[0].text).toBe('one\n');
    // "one" arrived well before the command finished, not all at the end.
    expect(done - chunks[0].at).toBeGreaterThan(700);
  });

  it('regression: timeoutMs ends the call on time, not when the remote command exits', async () => {
    const t0 = performance.now();
    const e = await rejection(pool.exec('gpu1', ['sleep', '8'], { timeoutMs: 500 }));
    expect(e.kind).toBe('timeout');
    expect(performance.now() - t0).toBeLessThan(3000);
    // The pooled connection is still usable afterwards.
    expect((await pool.exec('gpu1', ['echo', 'still here'])).stdout).toBe('still here\n');
  });
});

describe('one pooled connection', () => {
  it('50 sequential execs reuse one connection (connectCount 1); 20 concurrent ones too', async () => {
    const p = new SshPool(cluster.hosts);
    try {
      const conn = p.host('gpu1');
      await conn.exec(['true']);
      expect(conn.connectCount).toBe(1);
      const coldConnectMs = conn.lastConnectMs!;
      const times: number[] = [];
      for (let i = 0; i < 50; i++) {
        const t0 = performance.now();
        const r = await conn.exec(['echo', String(i)]);
        times.push(performance.now() - t0);
        expect(r.stdout).toBe(`${i}\n`);
      }
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => conn.exec(['sh', '-c', 'sleep 0.2; echo $1', 'x', String(i)])),
      );
      expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 20 }, (_, i) => `${i}\n`));
      expect(conn.connectCount).toBe(1);
      const sorted = [...times].sort((a, b) => a - b);
      const mean = times.reduce((a, b) => a + b, 0) / times.length;
      console.log(
        `[ssh latency] gpu1: connect (TCP+SSH handshake+auth) ${coldConnectMs.toFixed(1)} ms; ` +
          `exec on a warm connection, 50 runs: mean ${mean.toFixed(2)} ms, median ${sorted[25].toFixed(2)} ms, ` +
          `p90 ${sorted[45].toFixed(2)} ms, max ${sorted[49].toFixed(2)} ms`,
      );
      expect(mean).toBeLessThan(coldConnectMs + 50);
    } finally {
      p.close();
    }
  });

  it(
    'regression: exec on a warm connection takes a few ms, ' + 'not the 40 ms of Nagle + delayed ACK (TCP_NODELAY)',
    async () => {
      const p = new SshPool(cluster.hosts);
      try {
        const conn = p.host('gpu1');
        await conn.exec(['true']);
        const times: number[] = [];
        for (let i = 0; i < 20; i++) {
          const t0 = performance.now();
          expect((await conn.exec(['echo', String(i)])).stdout).toBe(`${i}\n`);
          times.push(performance.now() - t0);
        }
        const median = [...times].sort((a, b) => a - b)[10];
        // The lab is one machine: the same exec over a raw ssh2 client with setNoDelay(true) takes ~3 ms.
        // Nagle + delayed ACK costs ~40 ms per exchange; 30 leaves room for a loaded CI machine.
        expect(median).toBeLessThan(30);
      } finally {
        p.close();
      }
    },
  );
});

describe('upload (sftp)', () => {
  const remoteBase = `${gpu1.paths.home}/ugro-test-upload-${RUN}`;
  afterAll(async () => {
    await pool.exec('gpu1', ['rm', '-rf', '--', remoteBase]);
  });

  function localTree(): { root: string; files: Map<string, string> } {
    const root = mkdtempSync(join(tmpdir(), 'ugro-upload-'));
    const put = (rel: string, data: Buffer | string) => {
      mkdirSync(join(root, rel, '..'), { recursive: true });
      writeFileSync(join(root, rel), data);
    };
    put('train.py', 'print("hello")\n');
    put('run.sh', '#!/bin/sh\necho run\n');
    chmodSync(join(root, 'run.sh'), 0o755);
    put('empty.txt', '');
    put('data/big.bin', randomBytes(3 * 1024 * 1024 + 17));
    put('data/nested/deeper/x.json', '{"a":1}');
    put('with space/ø unicode 🚀.txt', 'unicode name\n');
    put("quote's/$(id).txt", 'nasty name\n');
    const files = new Map<string, string>();
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else files.set(relative(root, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
      }
    };
    walk(root);
    return { root, files };
  }

  it(
    'a directory tree: every file arrives with the same sha256 ' + '(checked by sha256sum on the host), modes kept',
    async () => {
      const { root, files } = localTree();
      expect(files.size).toBe(7);
      const dest = `${remoteBase}/tree`;
      const res = await pool.host('gpu1').upload(root, dest);
      expect(res.files).toBe(7);
      expect(res.bytes).toBe([...files.keys()].reduce((n, f) => n + statSync(join(root, f)).size, 0));
      for (const [rel, hash] of files) {
        const r = await pool.exec('gpu1', ['sha256sum', '--', posix.join(dest, rel)]);
        expect(r.code, `${rel}: ${JSON.stringify(r)}`).toBe(0);
        expect(r.stdout.slice(0, 64), rel).toBe(hash);
      }
      // Nothing else: no extra files, no leftover temp files from the atomic rename.
      const list = await pool.exec('gpu1', ['find', dest, '-type', 'f']);
      expect(list.stdout.trim().split('\n').sort()).toEqual([...files.keys()].map((f) => posix.join(dest, f)).sort());
      const mode = await pool.exec('gpu1', ['stat', '-c', '%a', posix.join(dest, 'run.sh')]);
      expect(mode.stdout.trim()).toBe('755');
      expect((await pool.exec('gpu1', [posix.join(dest, 'run.sh')])).stdout).toBe('run\n');
    },
  );

  it('a single file into a directory that does not exist yet; re-upload replaces it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-upload-1-'));
    const f = join(dir, 'blob.bin');
    const dest = `${remoteBase}/single/a/b/blob.bin`;
    for (const size of [200_000, 10]) {
      const data = randomBytes(size);
      writeFileSync(f, data);
      await pool.host('gpu1').upload(f, dest);
      const r = await pool.exec('gpu1', ['sha256sum', '--', dest]);
      expect(r.stdout.slice(0, 64)).toBe(createHash('sha256').update(data).digest('hex'));
    }
  });
});

describe('host keys are checked before anything runs', () => {
  const realFp = sshKeygenFingerprint(hostPubKeyFile('gpu1'));
  const marker = `${gpu1.paths.home}/ugro-hostkey-marker-${RUN}`;

  async function markerExists(): Promise<boolean> {
    const r = await pool.exec('gpu1', ['test', '-e', marker]);
    return r.code === 0;
  }

  it('the marker check can see a command that did run (control)', async () => {
    await pool.exec('gpu1', ['touch', marker]);
    expect(await markerExists()).toBe(true);
    await pool.exec('gpu1', ['rm', '-f', marker]);
    expect(await markerExists()).toBe(false);
  });

  it("a changed key is refused ('hostkey-changed', both fingerprints) and the command never runs", async () => {
    const wrong = newEd25519Key();
    const wrongFp = sshKeygenFingerprint(wrong.pubFile);
    const [type, b64] = wrong.pubLine.split(' ');
    const target = withKnownHosts(gpu1, `gpu1,${gpu1.address} ${type} ${b64}\n`);
    const p = new SshPool([target]);
    try {
      const e = await rejection(p.exec('gpu1', ['touch', marker]));
      expect(e.kind).toBe('hostkey-changed');
      expect(e.host).toBe('gpu1');
      expect(e.message).toContain(wrongFp);
      expect(e.message).toContain(realFp);
      expect(e.message).toContain(target.ssh.knownHosts);
      expect(p.host('gpu1').connectCount).toBe(0);
    } finally {
      p.close();
    }
    expect(await markerExists()).toBe(false);
  });

  it("an unknown host is refused ('hostkey-unknown') and told to run `ugro hosts trust`", async () => {
    const p = new SshPool([withKnownHosts(gpu1, '# empty\n')]);
    try {
      const e = await rejection(p.exec('gpu1', ['touch', marker]));
      expect(e.kind).toBe('hostkey-unknown');
      expect(e.message).toContain('ugro hosts trust gpu1');
    } finally {
      p.close();
    }
    expect(await markerExists()).toBe(false);
  });

  it("a key marked @revoked is refused ('hostkey-revoked') even if also pinned", async () => {
    const pinned = readKnownHosts(LAB_KNOWN_HOSTS).find((e) => e.patterns.includes('gpu1'))!;
    const p = new SshPool([
      withKnownHosts(
        gpu1,
        `gpu1 ${pinned.keyType} ${pinned.keyBase64}\n@revoked gpu1 ${pinned.keyType} ${pinned.keyBase64}\n`,
      ),
    ]);
    try {
      const e = await rejection(p.exec('gpu1', ['touch', marker]));
      expect(e.kind).toBe('hostkey-revoked');
      expect(e.message).toContain(realFp);
    } finally {
      p.close();
    }
    expect(await markerExists()).toBe(false);
  });
});

describe('dead hosts fail fast, with the right kind', () => {
  it(
    'a cut link (packets dropped): ' + 'rejects with a timeout within connectTimeout + 1.5 s; works again after heal',
    async () => {
      const p = new SshPool(cluster.hosts);
      const limit = gpu2.ssh.connectTimeoutMs;
      try {
        lab('cut', 'gpu2');
        const t0 = performance.now();
        const e = await rejection(p.exec('gpu2', ['true']));
        const ms = performance.now() - t0;
        console.log(`[ssh] cut gpu2: refused after ${ms.toFixed(0)} ms (connect timeout ${limit} ms): ${e.message}`);
        expect(e.kind).toBe('timeout');
        expect(e.message).toMatch(/no answer from 10\.250\.77\.12:22/);
        expect(ms).toBeLessThan(limit + 1500);
        // It really waited for the network (a cut is not an instant refusal).
        expect(ms).toBeGreaterThan(limit - 500);
      } finally {
        lab('heal', 'gpu2');
      }
      try {
        p.host('gpu2').resetBackoff();
        expect((await p.exec('gpu2', ['hostname'])).stdout).toBe('gpu2\n');
      } finally {
        p.close();
      }
    },
  );

  it("sshd stopped (connection refused): kind 'refused' at once; reconnects after start-host", async () => {
    const p = new SshPool(cluster.hosts);
    try {
      expect((await p.exec('gpu2', ['true'])).code).toBe(0);
      expect(p.host('gpu2').connectCount).toBe(1);
      lab('stop-host', 'gpu2');
      // stop-host kills the session too: the pooled connection is gone; a new one is refused.
      const t0 = performance.now();
      const e = await rejection(p.exec('gpu2', ['true']));
      const ms = performance.now() - t0;
      console.log(`[ssh] stop-host gpu2: refused after ${ms.toFixed(0)} ms: ${e.message}`);
      expect(e.kind).toBe('refused');
      expect(e.message).toContain('connection refused by 10.250.77.12:22');
      expect(ms).toBeLessThan(1000);
    } finally {
      lab('start-host', 'gpu2');
    }
    try {
      p.host('gpu2').resetBackoff();
      expect((await p.exec('gpu2', ['hostname'])).stdout).toBe('gpu2\n');
      expect(p.host('gpu2').connectCount).toBe(2);
    } finally {
      p.close();
    }
  });
});
