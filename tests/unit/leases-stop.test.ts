/**
 * Leases at a controller's stop: a renewal still in flight when the stop releases the leases must
 * not land afterwards and take a host back (the real lease.sh on this machine, LocalTransport).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Host } from '../../config/cluster.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { Leases } from '../../controller/loop/leases.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';
import { memoryLogger } from '../support/memory-logger.ts';

describe.skipIf(process.platform !== 'linux')('Leases.releaseAll', () => {
  it('waits for a renewal in flight: the host is free afterwards, not leased again', async () => {
    const host = localHost(join(mkdtempSync(join(tmpdir(), 'ugro-leases-')), 'host'));
    const rt = new SshBackend(new LocalTransport());
    let gate: (() => void) | undefined;
    const slow = Object.create(rt) as SshBackend;
    // A renewal that starts its lease.sh only when the test says (a slow host, a busy channel).
    slow.lease = async (h: Host, owner: string, ttl: number, release?: boolean) => {
      if (!release && gate === undefined) await new Promise<void>((r) => (gate = r));
      return rt.lease(h, owner, ttl, release);
    };
    const leases = new Leases(slow, [host], 'ctl-a', 60, memoryLogger());
    gate = () => undefined; // the first renewal goes through at once
    await leases.renewAll();
    expect(leases.held(host.name)).toBe(true);
    gate = undefined;
    const renewal = leases.renewAll();
    await new Promise((r) => setTimeout(r, 10)); // the renewal is waiting at its gate
    const release = leases.releaseAll();
    await new Promise((r) => setTimeout(r, 10));
    (gate as (() => void) | undefined)?.();
    await Promise.all([renewal, release]);
    expect(await rt.lease(host, 'ctl-b', 60)).toMatchObject({ held: true, owner: 'ctl-b' });
  });
});
