/**
 * known_hosts: parsing (plain, [host]:port, hashed, markers), the pinning decision, and
 * fingerprints, checked against OpenSSH's own ssh-keygen on real generated keys.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  appendKnownHost,
  fingerprint,
  keyTypeOf,
  knownHostsName,
  parseKnownHosts,
  pinnedHostKey,
  readKnownHosts,
  verifyHostKey,
} from '../../config/known-hosts.ts';

const dir = mkdtempSync(join(tmpdir(), 'ugro-kh-'));

/** A real key made by ssh-keygen: its .pub line, blob, and what `ssh-keygen -lf` says. */
function genKey(type: 'ed25519' | 'ecdsa' | 'rsa', name: string) {
  const f = join(dir, name);
  execFileSync('ssh-keygen', [
    '-q',
    '-t',
    type,
    ...(type === 'rsa' ? ['-b', '2048'] : []),
    '-N',
    '',
    '-C',
    name,
    '-f',
    f,
  ]);
  const pub = readFileSync(`${f}.pub`, 'utf8').trim();
  const [keyType, b64] = pub.split(' ');
  const lf = execFileSync('ssh-keygen', ['-lf', `${f}.pub`], { encoding: 'utf8' });
  return {
    pubFile: `${f}.pub`,
    keyType,
    b64,
    blob: Buffer.from(b64, 'base64'),
    sshKeygenFp: /SHA256:\S+/.exec(lf)![0],
  };
}

const k1 = genKey('ed25519', 'host1');
const k2 = genKey('ed25519', 'host2');
const kEcdsa = genKey('ecdsa', 'host3');
const kRsa = genKey('rsa', 'host4');

describe('fingerprint', () => {
  it('equals `ssh-keygen -lf` for ed25519, ecdsa and rsa keys', () => {
    for (const k of [k1, k2, kEcdsa, kRsa]) expect(fingerprint(k.blob)).toBe(k.sshKeygenFp);
    expect(fingerprint(k1.blob)).not.toBe(fingerprint(k2.blob));
  });

  it('keyTypeOf reads the type from the blob itself', () => {
    expect(keyTypeOf(k1.blob)).toBe('ssh-ed25519');
    expect(keyTypeOf(kEcdsa.blob)).toBe('ecdsa-sha2-nistp256');
    expect(keyTypeOf(kRsa.blob)).toBe('ssh-rsa');
    expect(keyTypeOf(Buffer.alloc(2))).toBe('unknown');
  });
});

describe('parseKnownHosts', () => {
  const text = [
    '# comment',
    '',
    `gpu1,10.0.0.11 ${k1.keyType} ${k1.b64} ob@gpu1`,
    `   [gpu2]:2222,[10.0.0.12]:2222 ${k2.keyType} ${k2.b64}`,
    `@revoked old-host ${kEcdsa.keyType} ${kEcdsa.b64}`,
    `@cert-authority *.lab ${kRsa.keyType} ${kRsa.b64}`,
    'garbage-line-without-key',
  ].join('\n');
  const entries = parseKnownHosts(text);

  it('reads plain, [host]:port and marker lines with their line numbers; skips comments and junk', () => {
    expect(entries.map((e) => ({ line: e.line, marker: e.marker, patterns: e.patterns, keyType: e.keyType }))).toEqual([
      { line: 3, marker: undefined, patterns: ['gpu1', '10.0.0.11'], keyType: 'ssh-ed25519' },
      { line: 4, marker: undefined, patterns: ['[gpu2]:2222', '[10.0.0.12]:2222'], keyType: 'ssh-ed25519' },
      { line: 5, marker: '@revoked', patterns: ['old-host'], keyType: 'ecdsa-sha2-nistp256' },
      { line: 6, marker: '@cert-authority', patterns: ['*.lab'], keyType: 'ssh-rsa' },
    ]);
    expect(entries[0].key.equals(k1.blob)).toBe(true);
    expect(entries[0].keyBase64).toBe(k1.b64);
  });

  it('knownHostsName: bare on port 22, [host]:port otherwise', () => {
    expect(knownHostsName('gpu1', 22)).toBe('gpu1');
    expect(knownHostsName('gpu1', 2222)).toBe('[gpu1]:2222');
  });

  it('[host]:port entries match only that port', () => {
    expect(verifyHostKey(entries, ['gpu2'], 2222, k2.blob)).toMatchObject({ ok: true, entry: { line: 4 } });
    expect(verifyHostKey(entries, ['10.0.0.12'], 2222, k2.blob)).toMatchObject({ ok: true });
    expect(verifyHostKey(entries, ['gpu2'], 22, k2.blob)).toEqual({ ok: false, reason: 'unknown' });
    expect(verifyHostKey(entries, ['gpu1'], 2222, k1.blob)).toEqual({ ok: false, reason: 'unknown' });
  });

  it('a @cert-authority line pins nothing', () => {
    expect(verifyHostKey(entries, ['x.lab'], 22, kRsa.blob)).toEqual({ ok: false, reason: 'unknown' });
    expect(pinnedHostKey(entries, ['x.lab'], 22)).toBeUndefined();
  });
});

describe('verifyHostKey', () => {
  const entries = parseKnownHosts(`gpu1,10.0.0.11 ${k1.keyType} ${k1.b64}\n`);

  it('ok when the presented key is pinned under any of the names', () => {
    expect(verifyHostKey(entries, ['10.0.0.11', 'gpu1'], 22, k1.blob)).toMatchObject({ ok: true, entry: { line: 1 } });
    expect(verifyHostKey(entries, ['nope', 'gpu1'], 22, k1.blob)).toMatchObject({ ok: true });
  });

  it('unknown when no line names the host', () => {
    expect(verifyHostKey(entries, ['gpu9', '10.0.0.19'], 22, k1.blob)).toEqual({ ok: false, reason: 'unknown' });
    expect(verifyHostKey([], ['gpu1'], 22, k1.blob)).toEqual({ ok: false, reason: 'unknown' });
  });

  it('changed when the host is pinned to another key: both fingerprints and the line', () => {
    const v = verifyHostKey(entries, ['gpu1'], 22, k2.blob);
    expect(v).toEqual({
      ok: false,
      reason: 'changed',
      expected: [`ssh-ed25519 ${k1.sshKeygenFp} (line 1)`],
      presented: k2.sshKeygenFp,
    });
  });

  it('revoked wins over a pin of the same key; a revoked line alone pins nothing', () => {
    const both = parseKnownHosts(`gpu1 ${k1.keyType} ${k1.b64}\n@revoked gpu1 ${k1.keyType} ${k1.b64}\n`);
    expect(verifyHostKey(both, ['gpu1'], 22, k1.blob)).toEqual({
      ok: false,
      reason: 'revoked',
      presented: k1.sshKeygenFp,
    });
    const onlyRevoked = parseKnownHosts(`@revoked gpu1 ${k1.keyType} ${k1.b64}\n`);
    expect(verifyHostKey(onlyRevoked, ['gpu1'], 22, k2.blob)).toEqual({ ok: false, reason: 'unknown' });
    // A revoked key is refused even for a host with no other pin.
    expect(verifyHostKey(onlyRevoked, ['gpu1'], 22, k1.blob)).toMatchObject({ ok: false, reason: 'revoked' });
  });

  it('globs and negation as OpenSSH: `gpu*,!gpu9` matches gpu1, not gpu9', () => {
    const g = parseKnownHosts(`gpu*,!gpu9 ${k1.keyType} ${k1.b64}\n10.0.0.? ${k2.keyType} ${k2.b64}\n`);
    expect(verifyHostKey(g, ['gpu1'], 22, k1.blob)).toMatchObject({ ok: true });
    expect(verifyHostKey(g, ['gpu9'], 22, k1.blob)).toEqual({ ok: false, reason: 'unknown' });
    expect(verifyHostKey(g, ['10.0.0.5'], 22, k2.blob)).toMatchObject({ ok: true });
    expect(verifyHostKey(g, ['10.0.0.55'], 22, k2.blob)).toEqual({ ok: false, reason: 'unknown' });
    // Host names are case-insensitive, as in OpenSSH.
    expect(verifyHostKey(g, ['GPU1'], 22, k1.blob)).toMatchObject({ ok: true });
  });
});

describe('hashed known_hosts (HashKnownHosts yes)', () => {
  it('entries hashed by real `ssh-keygen -H` match their hosts, on 22 and on another port', () => {
    const f = join(dir, 'hashed_known_hosts');
    writeFileSync(
      f,
      `gpu1 ${k1.keyType} ${k1.b64}\n[gpu2]:2222 ${k2.keyType} ${k2.b64}\n10.0.0.13 ${kEcdsa.keyType} ${kEcdsa.b64}\n`,
    );
    execFileSync('ssh-keygen', ['-H', '-f', f], { stdio: 'pipe' });
    const text = readFileSync(f, 'utf8');
    expect(text).not.toMatch(/gpu1|gpu2|10\.0\.0\.13/); // really hashed
    const entries = readKnownHosts(f);
    expect(entries).toHaveLength(3);
    expect(entries.every((e) => e.patterns.length === 1 && e.patterns[0].startsWith('|1|'))).toBe(true);
    expect(verifyHostKey(entries, ['gpu1'], 22, k1.blob)).toMatchObject({ ok: true });
    expect(verifyHostKey(entries, ['gpu2'], 2222, k2.blob)).toMatchObject({ ok: true });
    expect(verifyHostKey(entries, ['10.0.0.13'], 22, kEcdsa.blob)).toMatchObject({ ok: true });
    expect(verifyHostKey(entries, ['gpu2'], 22, k2.blob)).toEqual({ ok: false, reason: 'unknown' });
    expect(verifyHostKey(entries, ['gpu1'], 22, k2.blob)).toMatchObject({ ok: false, reason: 'changed' });
    expect(verifyHostKey(entries, ['gpu3'], 22, k1.blob)).toEqual({ ok: false, reason: 'unknown' });
  });

  it('a hash computed by hand (HMAC-SHA1 of the name, keyed by the salt) matches', () => {
    const salt = randomBytes(20);
    const hash = createHmac('sha1', salt).update('[gpu7]:2200').digest('base64');
    const entries = parseKnownHosts(`|1|${salt.toString('base64')}|${hash} ${k1.keyType} ${k1.b64}\n`);
    expect(verifyHostKey(entries, ['gpu7'], 2200, k1.blob)).toMatchObject({ ok: true });
    expect(verifyHostKey(entries, ['gpu7'], 22, k1.blob)).toEqual({ ok: false, reason: 'unknown' });
  });
});

describe('appendKnownHost', () => {
  it(
    'writes a line OpenSSH itself finds (`ssh-keygen -F`), ' +
      'also for a non-22 port, after a file without final newline',
    () => {
      const f = join(dir, 'append', 'known_hosts');
      appendKnownHost(f, ['gpu1', '10.0.0.11'], 22, k1.blob);
      writeFileSync(f, readFileSync(f, 'utf8').trimEnd()); // drop the final newline
      const line = appendKnownHost(f, ['gpu2'], 2222, k2.blob);
      expect(line).toBe(`[gpu2]:2222 ssh-ed25519 ${k2.b64}`);
      expect(readFileSync(f, 'utf8').split('\n')).toEqual([`gpu1,10.0.0.11 ssh-ed25519 ${k1.b64}`, line, '']);
      for (const name of ['gpu1', '10.0.0.11', '[gpu2]:2222']) {
        const r = spawnSync('ssh-keygen', ['-F', name, '-f', f], { encoding: 'utf8' });
        expect(r.status, `ssh-keygen -F ${name}`).toBe(0);
      }
      expect(spawnSync('ssh-keygen', ['-F', 'gpu2', '-f', f]).status).not.toBe(0);
      expect(pinnedHostKey(readKnownHosts(f), ['gpu2'], 2222)).toBe(`ssh-ed25519 ${k2.b64}`);
    },
  );

  it('readKnownHosts of a missing file is empty (unknown, not an error)', () => {
    expect(readKnownHosts(join(dir, 'nope'))).toEqual([]);
  });
});
