/**
 * Authenticated owners and who may change a job (issue 17): the pure decision (core/authorize.ts)
 * case by case, and the loop over in-memory hosts with real file ownership: files chown'ed to other
 * uids in a temp jobs dir, named by a stand-in account database, read back by the real store.
 */
import { chownSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { ControlState } from '../../controller/api/control.ts';
import type { JobSourceInfo } from '../../controller/api/job-source.ts';
import type { SpecState } from '../../controller/api/job-state.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import { specHash } from '../../controller/api/trainingjob.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { type AuthView, authorize } from '../../controller/core/authorize.ts';
import type { AuthContext } from '../../controller/core/authorize-types.ts';
import { accessOf } from '../../controller/core/permissions.ts';
import { Controller } from '../../controller/loop/controller.ts';
import type { Accounts } from '../../controller/store/accounts.ts';
import { parsePasswd } from '../../controller/store/accounts.ts';
import { sharedJobsDirAdvice } from '../../controller/store/private.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { inertLoop } from '../support/inert-loop.ts';
import { memoryLogger } from '../support/memory-logger.ts';
import { CLUSTER, HOSTS, job, jobYaml } from './job-fixtures.ts';

const ACCESS = accessOf({ admins: ['master'], logs: 'open', defaults: {}, quotas: {} }, 'root');
const AUTH: AuthContext = { access: ACCESS, unsignedOwner: 'master' };

function valid(spec: Record<string, unknown>, writer: string, annotations?: Record<string, string>): SpecState {
  const j = job('train', spec);
  if (annotations) j.metadata.annotations = annotations;
  return { kind: 'valid', job: j, hash: specHash(j.spec), file: '/jobs/train.yaml', writer };
}

const S1 = { script: 'train.py', nodes: 1 };
const S2 = { script: 'train.py', nodes: 2 };

function status(spec: SpecState, owner?: string): JobStatus {
  return {
    phase: 'Running',
    observedGeneration: 1,
    specHash: spec.kind === 'valid' ? spec.hash : '',
    attempt: 1,
    nodes: [],
    createdAt: '2026-03-01T10:00:00.000Z',
    conditions: [],
    ...(owner ? { owner, ownerBy: 'file owner' } : {}),
  } as JobStatus;
}

const view = (spec: SpecState, st?: JobStatus, control?: ControlState, source?: JobSourceInfo): AuthView => ({
  name: 'train',
  spec,
  ...(st ? { status: st } : {}),
  ...(control ? { control } : {}),
  ...(source ? { source } : {}),
});

const cancelBy = (writer: string): ControlState => ({
  kind: 'valid',
  control: { cancel: { specHash: 'x', requestedAt: '2026-03-01T10:00:00.000Z' } } as never,
  writer,
});

describe('authorize (pure)', () => {
  it('a new job is the writer of its file; without access nothing applies', () => {
    const a = authorize(view(valid(S1, 'ob')), AUTH);
    expect(a.owner).toEqual({ owner: 'ob', by: 'file owner' });
    expect(a.events).toEqual([]);
    expect(authorize(view(valid(S1, 'ob')), undefined).owner).toBeUndefined();
  });

  it('an annotation naming someone else is ignored unless an admin wrote it', () => {
    const byOllie = authorize(view(valid(S1, 'ollie', { 'ugro.dev/owner': 'ob' })), AUTH);
    expect(byOllie.owner?.owner).toBe('ollie');
    expect(byOllie.events[0]).toMatchObject({ reason: 'OwnerAnnotationIgnored', type: 'Warning', actor: 'ollie' });
    expect(byOllie.events[0].message).toMatch(/names ob, but the job is ollie's: .*only an admin/);
    const byAdmin = authorize(view(valid(S1, 'master', { 'ugro.dev/owner': 'ob' })), AUTH);
    expect(byAdmin.owner).toEqual({ owner: 'ob', by: 'set by admin master' });
    expect(byAdmin.events).toEqual([]);
  });

  it('a spec changed by someone else: the accepted spec goes on, an event names who tried, once', () => {
    const accepted = valid(S1, 'ob');
    const st = status(accepted, 'ob');
    const forged = valid(S2, 'ollie');
    const a = authorize(view(forged, st), { ...AUTH, accepted: accepted as never });
    expect(a.input.spec).toBe(accepted);
    expect(a.owner?.owner).toBe('ob');
    expect(a.events).toHaveLength(1);
    expect(a.events[0]).toMatchObject({ reason: 'Forbidden', type: 'Warning', actor: 'ollie' });
    expect(a.events[0].message).toMatch(/ollie may not change the spec of ob's job train: only ob or an admin/);
    // The next pass: the condition already says it, no second event.
    const again = {
      ...st,
      conditions: [{ type: 'Authorized', status: 'False', reason: 'Forbidden', message: a.denied }],
    };
    const b = authorize(view(forged, again as JobStatus), { ...AUTH, accepted: accepted as never });
    expect(b.events).toEqual([]);
    expect(b.input.spec).toBe(accepted);
  });

  it('without the accepted spec a forbidden change holds the job as it is', () => {
    const st = status(valid(S1, 'ob'), 'ob');
    const a = authorize(view(valid(S2, 'ollie'), st), AUTH);
    expect(a.hold).toBe(true);
  });

  it('the owner and an admin may change the spec; an admin may move the job to someone else', () => {
    const st = status(valid(S1, 'ob'), 'ob');
    const own = authorize(view(valid(S2, 'ob'), st), AUTH);
    expect(own.input.spec).toMatchObject({ hash: specHash(job('train', S2).spec) });
    expect(own.denied).toBeUndefined();
    const admin = authorize(view(valid(S2, 'master', { 'ugro.dev/owner': 'ollie' }), st), AUTH);
    expect(admin.owner).toEqual({ owner: 'ollie', by: 'set by admin master' });
  });

  it("a cancel written by someone else is dropped with an event; the owner's and an admin's stand", () => {
    const st = status(valid(S1, 'ob'), 'ob');
    const spec = valid(S1, 'ob');
    const theirs = authorize(view(spec, st, cancelBy('ollie')), AUTH);
    expect(theirs.input.control).toEqual({ kind: 'none' });
    expect(theirs.events[0]).toMatchObject({ reason: 'Forbidden', actor: 'ollie' });
    expect(theirs.events[0].message).toMatch(/ollie may not cancel ob's job train/);
    expect(authorize(view(spec, st, cancelBy('ob')), AUTH).input.control).toMatchObject({ kind: 'valid' });
    expect(authorize(view(spec, st, cancelBy('master')), AUTH).input.control).toMatchObject({ kind: 'valid' });
  });

  it("GitOps: a signed head's principal owns the job; an unsigned one belongs to the configured account", () => {
    const fromGit = (signer?: string): JobSourceInfo =>
      ({
        fromGit: true,
        commit: { revision: 'a'.repeat(40), subject: 's', author: 'Ob <ob@lab>', authorTime: '2026-03-01T10:00:00Z' },
        ...(signer ? { signer } : {}),
      }) as JobSourceInfo;
    const spec = valid(S1, 'root');
    expect(authorize(view(spec, undefined, undefined, fromGit('ob')), AUTH).owner).toEqual({
      owner: 'ob',
      by: `signed commit ${'a'.repeat(12)}`,
    });
    const unsigned = authorize(view(spec, undefined, undefined, fromGit()), AUTH).owner;
    expect(unsigned?.owner).toBe('master');
    expect(unsigned?.by).toMatch(/unsigned commit .* by Ob <ob@lab> \(unverified\)/);
  });
});

describe('parsePasswd', () => {
  it('names uids by the first entry; bad lines are skipped', () => {
    const m = parsePasswd(
      'root:x:0:0::/root:/bin/sh\nob:x:1002:1002::/home/ob:/bin/sh\nBAD NAME:x:5:5::/:/\nob2:x:1002:0::/:/\n',
    );
    expect([...m]).toEqual([
      [0, 'root'],
      [1002, 'ob'],
    ]);
  });
});

// ---------------------------------------------------------------- the loop
const UIDS: Record<number, string> = { 0: 'root', 61001: 'ob', 61002: 'ollie', 61003: 'master' };
const UID = { ob: 61001, ollie: 61002, master: 61003 };
const accounts: Accounts = { nameOf: async (uid) => UIDS[uid] ?? `uid ${uid}` };
const T0 = Date.parse('2026-03-01T10:00:00.000Z');

const ctls: Controller[] = [];
afterEach(async () => {
  for (const c of ctls.splice(0)) await c.stop();
});

async function loop(users: Record<string, unknown> = {}) {
  const clock = { ms: T0 };
  const fake = new FakeHosts(HOSTS, { now: () => clock.ms, cluster: CLUSTER });
  const jobs = mkdtempSync(join(tmpdir(), 'ugro-auth-'));
  const scripts = mkdtempSync(join(tmpdir(), 'ugro-scripts-'));
  writeFileSync(join(scripts, 'train.py'), 'print("hi")\n');
  const raw = { admins: ['master'], logs: 'open', defaults: {}, quotas: {}, ...users };
  const cluster = { ...CLUSTER, raw: { ...CLUSTER.raw, users: raw } } as typeof CLUSTER;
  const ctl = new Controller({
    cluster,
    jobsDir: jobs,
    runtime: new SshBackend(fake),
    log: memoryLogger(),
    now: () => new Date(clock.ms),
    scriptsDir: scripts,
    owner: 'test-controller',
    accounts,
    user: 'root',
    ...inertLoop,
  });
  ctls.push(ctl);
  await ctl.start();
  const as = (who: keyof typeof UID, file: string, text: string) => {
    writeFileSync(join(jobs, file), text);
    chownSync(join(jobs, file), UID[who], UID[who]);
  };
  const st = (name: string) => {
    const f = join(jobs, `${name}.status.yaml`);
    return existsSync(f) ? (parse(readFileSync(f, 'utf8')) as JobStatus) : undefined;
  };
  const pass = async (name: string) => {
    ctl.enqueue(name);
    await ctl.idle();
  };
  return { ctl, fake, jobs, as, st, pass, clock };
}

const launches = (f: FakeHosts) => f.calls.filter((c) => c.op === 'run' && c.script === 'launch').length;

describe.skipIf(process.getuid?.() !== 0)('the loop enforces it on what is in jobs/ (real file owners)', () => {
  it("ob's job is ob's; ollie's replaced spec and cancel change nothing; ob's cancel does, by ob", async () => {
    const t = await loop();
    t.as('ob', 'train.yaml', jobYaml('train', { script: 'train.py', nodes: 1 }));
    await t.pass('train');
    const first = t.st('train');
    expect(first).toMatchObject({ owner: 'ob', ownerBy: 'file owner' });
    const hash = first?.specHash;
    expect(launches(t.fake)).toBe(1);
    expect(existsSync(join(t.jobs, '.ugro/accepted/train.yaml'))).toBe(true);
    // The pass that acted on ob's new job names him in its events.
    const firstEvents = await t.ctl.store.readEvents('train');
    expect(firstEvents.length).toBeGreaterThan(0);
    expect(firstEvents.every((e) => e.actor === 'ob')).toBe(true);

    // ollie replaces the file (a jobs dir that is not sticky lets him): nothing stops, nothing relaunches.
    t.as('ollie', 'train.yaml', jobYaml('train', { script: 'evil.py', nodes: 2 }));
    await t.pass('train');
    const after = t.st('train');
    expect(after?.specHash).toBe(hash);
    expect(after?.owner).toBe('ob');
    expect(after?.conditions.find((c) => c.type === 'Authorized')).toMatchObject({
      status: 'False',
      reason: 'Forbidden',
    });
    expect(t.fake.calls.filter((c) => c.op === 'run' && c.script === 'stop')).toEqual([]);
    expect(launches(t.fake)).toBe(1);
    const events = await t.ctl.store.readEvents('train');
    expect(events.filter((e) => e.reason === 'Forbidden')).toMatchObject([{ actor: 'ollie', type: 'Warning' }]);

    // ollie's cancel is ignored; the job keeps running.
    const cancel = stringify({ cancel: { specHash: hash, requestedAt: new Date(T0).toISOString() } });
    t.as('ollie', 'train.control.yaml', cancel);
    await t.pass('train');
    expect(t.st('train')?.phase).not.toBe('Cancelled');
    expect((await t.ctl.store.readEvents('train')).filter((e) => e.reason === 'Forbidden')).toHaveLength(2);
    // ... and removed: ob's own cancel (written over it) is not kept out by ollie's file.
    expect(existsSync(join(t.jobs, 'train.control.yaml'))).toBe(false);

    // ob puts his own spec back and cancels: both count, and the event says who.
    t.as('ob', 'train.yaml', jobYaml('train', { script: 'train.py', nodes: 1 }));
    t.as('ob', 'train.control.yaml', cancel);
    await t.pass('train');
    const done = t.st('train');
    expect(done?.phase).toBe('Cancelled');
    expect(done?.message).toMatch(/^cancelled by ob at /);
    expect((await t.ctl.store.readEvents('train')).find((e) => e.reason === 'Cancelled')).toMatchObject({
      actor: 'ob',
    });
  });

  it("an annotation does not make ollie's job ob's; an admin may cancel anyone's", async () => {
    const t = await loop();
    t.as(
      'ollie',
      'mine.yaml',
      jobYaml('mine', { script: 'train.py' }).replace(
        'name: mine',
        'name: mine\n  annotations:\n    ugro.dev/owner: ob',
      ),
    );
    await t.pass('mine');
    expect(t.st('mine')).toMatchObject({ owner: 'ollie', ownerBy: 'file owner' });
    const ev = await t.ctl.store.readEvents('mine');
    expect(ev.find((e) => e.reason === 'OwnerAnnotationIgnored')).toMatchObject({ actor: 'ollie' });
    const hash = t.st('mine')?.specHash;
    t.as(
      'master',
      'mine.control.yaml',
      stringify({ cancel: { specHash: hash, requestedAt: new Date(T0).toISOString() } }),
    );
    await t.pass('mine');
    expect(t.st('mine')).toMatchObject({ phase: 'Cancelled', message: expect.stringMatching(/cancelled by master/) });
  });

  it("quotas count the owner's GPUs: ollie's 2nd job waits QuotaExceeded until his 1st ends", async () => {
    const t = await loop({ quotas: { ollie: { gpus: 1 } } });
    t.as('ollie', 'a.yaml', jobYaml('a', { script: 'train.py', nodes: 1 }));
    await t.pass('a');
    expect(t.st('a')).toMatchObject({ phase: 'Starting', owner: 'ollie' });
    // The annotation claims ob: it does not move ollie's GPUs off his quota.
    t.as(
      'ollie',
      'b.yaml',
      jobYaml('b', { script: 'train.py', nodes: 1 }).replace(
        'name: b',
        'name: b\n  annotations:\n    ugro.dev/owner: ob',
      ),
    );
    await t.pass('b');
    const b = t.st('b');
    expect(b).toMatchObject({ phase: 'Queued', reason: 'QuotaExceeded', owner: 'ollie' });
    expect(b?.message).toMatch(/ollie: 1 of 1 GPUs in use/);
    // ob is not held by ollie's quota.
    t.as('ob', 'c.yaml', jobYaml('c', { script: 'train.py', nodes: 1 }));
    await t.pass('c');
    expect(t.st('c')).toMatchObject({ phase: 'Starting', owner: 'ob' });
    // a ends: b starts.
    const a = t.st('a')!;
    const host = a.nodes[0].host;
    const dir = a.runId!.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2');
    t.fake.endRun(host, dir, 0);
    await t.pass('a');
    expect(t.st('a')?.phase).toBe('Succeeded');
    await t.pass('b');
    expect(t.st('b')).toMatchObject({ phase: 'Starting', owner: 'ollie' });
  });
});

describe.skipIf(process.getuid?.() !== 0)('a status another account wrote', () => {
  it('is not read: the controller rebuilds it and writes its own', async () => {
    const t = await loop();
    t.as('ob', 'train.yaml', jobYaml('train', { script: 'train.py', nodes: 1 }));
    await t.pass('train');
    const real = t.st('train')!;
    // ollie forges a Succeeded status owned by him (a jobs dir he can write to).
    t.as(
      'ollie',
      'train.status.yaml',
      stringify({ ...real, phase: 'Succeeded', owner: 'ollie', ownerBy: 'file owner' }),
    );
    expect(await t.ctl.store.readStatus('train')).toBeUndefined();
    await t.pass('train');
    const back = t.st('train')!;
    expect(back.owner).toBe('ob');
    expect(back.phase).not.toBe('Succeeded');
  });
});

describe('sharedJobsDirAdvice', () => {
  it('a private jobs dir in a shared lab gets the commands that share it; a shared one nothing', () => {
    expect(sharedJobsDirAdvice('/srv/jobs', 0o40755, ['master', 'ob'])).toMatch(
      /other users \(master, ob\) cannot add jobs.*chgrp LABGROUP '?\/srv\/jobs'? && chmod 1775 '?\/srv\/jobs'?/,
    );
    expect(sharedJobsDirAdvice('/srv/jobs', 0o41775, ['ob'])).toBeUndefined();
  });
});
