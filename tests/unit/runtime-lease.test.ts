/**
 * lease.sh, the real script on this machine (LocalTransport): one controller at a time holds a
 * host; the lease expires by the host's clock; only its owner releases it; the owner string is
 * data (spaces, quotes, $, backticks), never run; concurrent acquires leave exactly one holder.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HostError } from '../../controller/backends/errors.ts';
import { LEASE_FILE, SshBackend } from '../../controller/backends/ssh/backend.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';

function setup() {
  const root = mkdtempSync(join(tmpdir(), 'ugro-lease-'));
  const host = localHost(join(root, 'host'));
  const tr = new LocalTransport();
  return { root, host, tr, rt: new SshBackend(tr), file: join(host.paths.runs, LEASE_FILE) };
}

describe.skipIf(process.platform !== 'linux')('lease.sh', () => {
  it('acquire, renew, taken by another, release only by the owner, then the other gets it', async () => {
    const { host, rt, file } = setup();
    expect(await rt.lease(host, 'ctl-a', 60)).toEqual({ held: true, owner: 'ctl-a', expiresInSeconds: 60 });
    expect(readFileSync(file, 'utf8')).toMatch(/^owner=ctl-a\nexpires=\d+\n$/);
    expect(await rt.lease(host, 'ctl-a', 120)).toEqual({ held: true, owner: 'ctl-a', expiresInSeconds: 120 });
    const taken = await rt.lease(host, 'ctl-b', 60);
    expect(taken).toMatchObject({ held: false, owner: 'ctl-a' });
    expect(taken.expiresInSeconds).toBeGreaterThanOrEqual(119);
    expect(await rt.lease(host, 'ctl-b', 60, true)).toMatchObject({ held: false, owner: 'ctl-a' });
    expect(existsSync(file)).toBe(true);
    expect(await rt.lease(host, 'ctl-a', 60, true)).toEqual({ held: false });
    expect(existsSync(file)).toBe(false);
    expect(await rt.lease(host, 'ctl-a', 60, true)).toEqual({ held: false });
    expect(await rt.lease(host, 'ctl-b', 60)).toEqual({ held: true, owner: 'ctl-b', expiresInSeconds: 60 });
  });

  it("an expired lease (the host's clock) or a torn lease file is free to take", async () => {
    const { host, rt, file } = setup();
    mkdirSync(host.paths.runs, { recursive: true });
    writeFileSync(file, `owner=old-controller\nexpires=${Math.floor(Date.now() / 1000) - 1}\n`);
    expect(await rt.lease(host, 'new', 30)).toEqual({ held: true, owner: 'new', expiresInSeconds: 30 });
    writeFileSync(file, 'owner=someone\nexpires=soon\n');
    expect(await rt.lease(host, 'third', 30)).toMatchObject({ held: true, owner: 'third' });
    writeFileSync(file, 'garbage without a newline');
    expect(await rt.lease(host, 'fourth', 30)).toMatchObject({ held: true, owner: 'fourth' });
  });

  it('the owner is data: quotes, $, backticks and ; are stored and compared as they are, never run', async () => {
    const { root, host, rt, file } = setup();
    const pwned = join(root, 'pwned');
    const owner = `ctl "a" 'b' $HOME $(touch ${pwned}) \`touch ${pwned}\`; touch ${pwned} \\n %s`;
    expect(await rt.lease(host, owner, 60)).toEqual({ held: true, owner, expiresInSeconds: 60 });
    expect(await rt.lease(host, 'other', 60)).toMatchObject({ held: false, owner });
    expect(readFileSync(file, 'utf8').split('\n')[0]).toBe(`owner=${owner}`);
    expect(await rt.lease(host, owner, 60, true)).toEqual({ held: false });
    expect(existsSync(pwned)).toBe(false);
  });

  it('bad arguments: exit 2, nothing written (a multi-line owner could forge the expiry line)', async () => {
    const { host, tr, rt, file } = setup();
    for (const args of [
      [file, 'a\nexpires=99999999999', '60', 'acquire'],
      [file, '', '60', 'acquire'],
      [file, 'x'.repeat(301), '60', 'acquire'],
      [file, 'ok', '0', 'acquire'],
      [file, 'ok', '1e3', 'acquire'],
      [file, 'ok', '$(id)', 'acquire'],
      [file, 'ok', '60', 'steal'],
      [file, 'ok', '60'],
    ]) {
      const res = await tr.sh(host, 'lease', args);
      expect(res.code, JSON.stringify(args)).toBe(2);
      expect(existsSync(file)).toBe(false);
    }
    await expect(rt.lease(host, 'two\nlines', 60)).rejects.toBeInstanceOf(HostError);
  });

  it('eight controllers acquiring at once: exactly one holds it, the others see that one', async () => {
    const { host, rt } = setup();
    const owners = Array.from({ length: 8 }, (_, i) => `ctl-${i}`);
    const res = await Promise.all(owners.map((o) => rt.lease(host, o, 60)));
    const held = res.filter((r) => r.held);
    expect(held).toHaveLength(1);
    for (const r of res) expect(r.owner).toBe(held[0].owner);
  });

  it('the lease file lives in the runs dir, where observe does not take it for a run', async () => {
    const { host, rt } = setup();
    await rt.lease(host, 'ctl', 60);
    expect(await rt.observe(host)).toEqual({ parts: [], rejected: [] });
  });
});
