/**
 * A sweep's owner follows a job's rules (core/authorize.ts, issue 18): set once from the first
 * accepted sweep spec (its file's writer), kept in the sweep's status; a change by someone else is
 * refused with an event naming them and the sweep goes on with the spec last accepted (kept in
 * jobs/.ugro/accepted/); the owner's own change counts; an admin may name another owner by the
 * annotation, anyone else's annotation is ignored. Real file owners: files chown'ed to other uids
 * in a temp jobs dir, named by a stand-in account database, read back by the real store.
 */
import { chownSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { SweepStatus } from '../../controller/api/sweep-status.ts';
import type { TrainingJob } from '../../controller/api/trainingjob.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { Controller } from '../../controller/loop/controller.ts';
import type { Accounts } from '../../controller/store/accounts.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { inertLoop } from '../support/inert-loop.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { CLUSTER, HOSTS } from './job-fixtures.ts';

const UIDS: Record<number, string> = { 0: 'root', 61001: 'ob', 61002: 'ollie', 61003: 'master' };
const UID = { ob: 61001, ollie: 61002, master: 61003 };
const accounts: Accounts = { nameOf: async (uid) => UIDS[uid] ?? `uid ${uid}` };
const T0 = Date.parse('2026-03-01T10:00:00.000Z');

const ctls: Controller[] = [];
afterEach(async () => {
  for (const c of ctls.splice(0)) await c.stop();
});

async function loop() {
  const fake = new FakeHosts(HOSTS, { now: () => T0, cluster: CLUSTER });
  const jobs = mkdtempSync(join(tmpdir(), 'ugro-sweep-owner-'));
  const users = { admins: ['master'], logs: 'open', defaults: {}, quotas: {} };
  const cluster = { ...CLUSTER, raw: { ...CLUSTER.raw, users } } as typeof CLUSTER;
  const ctl = new Controller({
    cluster,
    jobsDir: jobs,
    runtime: new SshBackend(fake),
    log: memoryLogger(),
    now: () => new Date(T0),
    owner: 'test-controller',
    accounts,
    user: 'root',
    ...inertLoop,
  });
  ctls.push(ctl);
  await ctl.start();
  const read = <T>(f: string) =>
    existsSync(join(jobs, f)) ? (parse(readFileSync(join(jobs, f), 'utf8')) as T) : undefined;
  return {
    ctl,
    jobs,
    /** `who` writes the sweep file: the OS says so (its uid), as for a job file. */
    as(who: keyof typeof UID, name: string, spec: Record<string, unknown>, annotations?: Record<string, string>) {
      const doc = {
        apiVersion: 'ugro.dev/v1alpha1',
        kind: 'Sweep',
        metadata: { name, ...(annotations ? { annotations } : {}) },
        spec,
      };
      writeFileSync(join(jobs, `${name}.yaml`), stringify(doc));
      chownSync(join(jobs, `${name}.yaml`), UID[who], UID[who]);
    },
    sweep: (n: string) => read<SweepStatus>(`${n}.sweep.status.yaml`),
    trial: (n: string) => read<TrainingJob>(`${n}.yaml`),
    async pass(name: string) {
      await ctl.sweeps.touched(name);
      await ctl.sweeps.kick();
      await ctl.idle();
    },
    events: async (name: string) => (await ctl.store.readEvents(name)).filter((e) => e.job === name),
  };
}

const SPEC = (over: Record<string, unknown> = {}) => ({
  template: { command: ['python3', '/opt/t.py', '--lr={lr}'] },
  parameters: { grid: { lr: [0.1, 0.01, 0.001] } },
  maxParallel: 1,
  objective: { metric: 'loss', goal: 'minimize' },
  ...over,
});

describe.skipIf(process.getuid?.() !== 0)("a sweep's owner (real file owners)", () => {
  it("ob's sweep is ob's; ollie's edit is refused, naming him, it goes on as accepted; ob's edit counts", async () => {
    const t = await loop();
    t.as('ob', 'lr', SPEC());
    await t.pass('lr');
    expect(t.sweep('lr')).toMatchObject({ phase: 'Running', owner: 'ob', ownerBy: 'file owner', generation: 1 });
    expect(t.trial('lr-t0')?.metadata.annotations?.['ugro.dev/owner']).toBe('ob');
    expect(existsSync(join(t.jobs, '.ugro', 'accepted', 'lr.sweep.yaml'))).toBe(true);

    // ollie rewrites it: more trials at once, another grid. Refused: no new generation, no new trial.
    t.as('ollie', 'lr', SPEC({ maxParallel: 3, parameters: { grid: { lr: [9, 8, 7] } } }));
    await t.pass('lr');
    await t.pass('lr');
    const s = t.sweep('lr') as SweepStatus;
    expect(s).toMatchObject({ owner: 'ob', ownerBy: 'file owner', generation: 1, counts: { running: 1 } });
    expect(s.denied).toMatch(/^ollie may not change the spec of ob's sweep lr: only ob or an admin/);
    expect(s.denied).toContain('ignored: the sweep goes on with the spec ob applied');
    expect(t.trial('lr-t1')).toBeUndefined();
    expect(t.trial('lr-g2-t0')).toBeUndefined();
    const forbidden = (await t.events('lr')).filter((e) => e.reason === 'Forbidden');
    // Said once, though each pass refuses it again.
    expect(forbidden).toMatchObject([{ type: 'Warning', actor: 'ollie' }]);

    // ob's own edit (maxParallel 2) is accepted: a second trial starts, the refusal is gone.
    t.as('ob', 'lr', SPEC({ maxParallel: 2 }));
    await t.pass('lr');
    expect(t.sweep('lr')).toMatchObject({ owner: 'ob', generation: 1, counts: { running: 2 } });
    expect(t.sweep('lr')?.denied).toBeUndefined();
    expect(t.trial('lr-t1')?.spec.command).toEqual(['python3', '/opt/t.py', '--lr=0.01']);
  });

  it("an admin may make a sweep someone else's; anyone else's annotation is ignored with an event", async () => {
    const t = await loop();
    t.as('master', 'a', SPEC(), { 'ugro.dev/owner': 'ollie' });
    await t.pass('a');
    expect(t.sweep('a')).toMatchObject({ owner: 'ollie', ownerBy: 'set by admin master' });
    expect(t.trial('a-t0')?.metadata.annotations?.['ugro.dev/owner']).toBe('ollie');

    t.as('ollie', 'b', SPEC(), { 'ugro.dev/owner': 'ob' });
    await t.pass('b');
    expect(t.sweep('b')).toMatchObject({ owner: 'ollie', ownerBy: 'file owner' });
    const ev = (await t.events('b')).find((e) => e.reason === 'OwnerAnnotationIgnored');
    expect(ev).toMatchObject({ actor: 'ollie', type: 'Warning' });
    expect(ev?.message).toMatch(/names ob, but the sweep is ollie's: ollie may not make sweep b ob's/);
    expect(t.trial('b-t0')?.metadata.annotations?.['ugro.dev/owner']).toBe('ollie');
  });
});
