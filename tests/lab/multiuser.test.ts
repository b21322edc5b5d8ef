/**
 * A lab shared by three people (issue 17), with the lab's real accounts and real SSH: the controller
 * runs as `master` (not root, as the seed runs it on gpu-master) on a sticky, world-writable jobs
 * dir like /tmp; ob and ollie use the CLI as themselves (processes with their uids). Shown: ob owns
 * what he applies; ollie's cancel, delete, apply of the same name, a control file he writes
 * directly and a spec file he tries to replace are all refused (exit 4 where a CLI is involved, the
 * OS's EACCES/EPERM where it is a file), the job keeps running and an event names ollie; ob cancels
 * his own job; an annotation naming ob on ollie's file does not make it ob's; with a 1-GPU quota,
 * ollie's second job waits QuotaExceeded and starts when master (admin) cancels his first; a
 * priority above ollie's max_priority is capped, visibly. One controller for the whole file.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import {
  CLUSTER_FILE,
  job,
  ROOT,
  readStatus,
  stopController,
  trainArgs,
  waitFor,
  waitPhase,
} from './controller-harness.ts';

interface Account {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function account(name: string): Account {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`no account ${name}: run npm run lab -- up (it creates the lab's accounts)`);
  const f = line.split(':');
  return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5] };
}

const KEY = '.ssh/ugro-multiuser-key';
let base: string;
let jobs: string;
let clusterFile: string;
let ctl: ChildProcess | undefined;
let ctlLog = '';
const people: Record<'master' | 'ob' | 'ollie', Account> = {} as never;

/** Options that make a child process this account: its uid, gid, home and name. */
const as = (a: Account) => ({
  uid: a.uid,
  gid: a.gid,
  env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: a.home, USER: a.name, LOGNAME: a.name },
});

/** `ugro ARGS…` as `who`, with this test's cluster file and jobs dir. */
function ugro(who: Account, ...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'bin/ugro.mjs'), '--cluster', clusterFile, '--jobs', jobs, ...args],
    { ...as(who), cwd: base, encoding: 'utf8', timeout: 60_000 },
  );
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** A shell command as `who` (fixed program text; paths are arguments). */
function sh(who: Account, script: string, ...args: string[]): { code: number; err: string } {
  const r = spawnSync('sh', ['-c', script, 'sh', ...args], { ...as(who), encoding: 'utf8', timeout: 30_000 });
  return { code: r.status ?? -1, err: r.stderr };
}

/** A job file written by `who` in their own private dir (what they would apply). */
function draft(who: Account, name: string, spec: Record<string, unknown>, meta: Record<string, unknown> = {}): string {
  const dir = join(base, who.name);
  const f = join(dir, `${name}.yaml`);
  writeFileSync(f, job(name, spec, meta));
  chownSync(f, who.uid, who.gid);
  return f;
}

const events = (name: string) =>
  readFileSync(join(jobs, '.ugro/events.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { job: string; reason: string; message: string; actor?: string })
    .filter((e) => e.job === name);

const long = (host: string) => ({ script: 'train.py', args: trainArgs(300), nodes: 1, hosts: [host] });

beforeAll(() => {
  for (const n of ['master', 'ob', 'ollie'] as const) people[n] = account(n);
  base = mkdtempSync(join(tmpdir(), 'ugro-multiuser-'));
  chmodSync(base, 0o755);
  // Each person's own dir (their drafts) and their own copy of the lab key, as each would have.
  for (const a of Object.values(people)) {
    mkdirSync(join(base, a.name), { mode: 0o700 });
    chownSync(join(base, a.name), a.uid, a.gid);
    mkdirSync(join(a.home, '.ssh'), { recursive: true, mode: 0o700 });
    copyFileSync(join(ROOT, '.lab/id_ed25519'), join(a.home, KEY));
    chmodSync(join(a.home, KEY), 0o600);
    chownSync(join(a.home, KEY), a.uid, a.gid);
  }
  // The lab's cluster file with a per-person key (~ is each reader's home) and the users: section.
  const c = parse(readFileSync(CLUSTER_FILE, 'utf8')) as Record<string, Record<string, unknown>>;
  c.ssh.identity_file = `~/${KEY}`;
  c.users = { admins: ['master'], quotas: { ollie: { gpus: 1, max_priority: 'normal' } } };
  clusterFile = join(base, 'cluster.yaml');
  writeFileSync(clusterFile, stringify(c));
  // The jobs dir: the controller's account owns it; sticky and writable by all, like /tmp.
  jobs = join(base, 'jobs');
  mkdirSync(jobs);
  chownSync(jobs, people.master.uid, people.master.gid);
  chmodSync(jobs, 0o1777);
  ctl = spawn(
    process.execPath,
    [join(ROOT, 'bin/ugro.mjs'), '--cluster', clusterFile, '--jobs', jobs, 'controller', '--grace', '5'],
    { ...as(people.master), cwd: base, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  ctl.stdout!.on('data', (b) => (ctlLog += b));
  ctl.stderr!.on('data', (b) => (ctlLog += b));
});

afterAll(async () => {
  // Nothing of this file keeps training: every job is stopped by an admin before the controller goes.
  if (ctl && jobs) {
    for (const f of spawnSync('ls', [jobs], { encoding: 'utf8' }).stdout.split('\n')) {
      const m = /^([a-z0-9-]+)\.yaml$/.exec(f);
      if (m) ugro(people.master, 'cancel', m[1]);
    }
    await waitFor(
      'every job stopped',
      () =>
        spawnSync('ls', [jobs], { encoding: 'utf8' })
          .stdout.split('\n')
          .filter((f) => f.endsWith('.status.yaml'))
          .every((f) => {
            const s = readStatus(jobs, f.slice(0, -12));
            return !s?.nodes.some((n) => n.state === 'Running');
          }),
      60_000,
    ).catch(() => undefined);
  }
  if (ctl) await stopController(ctl);
  for (const a of Object.values(people)) rmSync(join(a.home, KEY), { force: true });
  if (base) rmSync(base, { recursive: true, force: true });
});

describe('a lab shared by master (admin), ob and ollie', () => {
  let obJob: JobStatus;

  it('the controller runs as master and says nothing about the jobs dir (shared correctly)', async () => {
    await waitFor('the controller up', () => ctlLog.includes('controller started'), 60_000);
    const ps = spawnSync('ps', ['-o', 'user=', '-p', String(ctl!.pid)], { encoding: 'utf8' }).stdout.trim();
    expect(ps).toBe('master');
    expect(ctlLog).not.toMatch(/cannot add jobs/);
  });

  it('ob applies a job: it is his (the file is his), it runs', async () => {
    const r = ugro(people.ob, 'apply', '-f', draft(people.ob, 'ob-train', long('gpu1')));
    expect(r.code, r.err).toBe(0);
    obJob = await waitPhase(jobs, 'ob-train', ['Running'], 120_000);
    expect(obJob).toMatchObject({ owner: 'ob', ownerBy: 'file owner' });
    const get = ugro(people.ollie, 'get', 'jobs');
    expect(get.out).toMatch(/ob-train\s.*\bob\b/);
  });

  it("ollie's cancel, delete and apply of the same name: exit 4, nothing written, the job runs on", () => {
    const cancel = ugro(people.ollie, 'cancel', 'ob-train');
    expect(cancel.code, cancel.err).toBe(4);
    expect(cancel.err).toMatch(/ollie may not cancel ob's job ob-train: only ob or an admin \(master/);
    const del = ugro(people.ollie, 'delete', 'job', 'ob-train');
    expect(del.code, del.err).toBe(4);
    const apply = ugro(people.ollie, 'apply', '-f', draft(people.ollie, 'ob-train', long('gpu2')));
    expect(apply.code, apply.err).toBe(4);
    expect(apply.err).toMatch(/ollie may not change the spec of ob's job ob-train/);
    expect(readFileSync(join(jobs, 'ob-train.yaml'), 'utf8')).toContain('gpu1');
    expect(readStatus(jobs, 'ob-train')).toMatchObject({ phase: 'Running', runId: obJob.runId });
  });

  it('past the CLI: the OS refuses a replaced spec file; a control file is ignored by the controller', async () => {
    const mine = draft(people.ollie, 'evil', long('gpu2'));
    // ob's file is ob's (0644): ollie cannot write into it, and the sticky dir keeps him from renaming over it.
    expect(sh(people.ollie, 'cat "$1" > "$2"', mine, join(jobs, 'ob-train.yaml')).code).not.toBe(0);
    expect(sh(people.ollie, 'mv -f "$1" "$2"', mine, join(jobs, 'ob-train.yaml')).code).not.toBe(0);
    expect(readFileSync(join(jobs, 'ob-train.yaml'), 'utf8')).not.toContain('gpu2');
    // A cancel request written directly (no control file there yet, so the OS lets him create it).
    const control = stringify({ cancel: { specHash: obJob.specHash, requestedAt: new Date().toISOString() } });
    writeFileSync(join(base, 'ollie', 'c.yaml'), control);
    chownSync(join(base, 'ollie', 'c.yaml'), people.ollie.uid, people.ollie.gid);
    expect(
      sh(people.ollie, 'cp "$1" "$2"', join(base, 'ollie', 'c.yaml'), join(jobs, 'ob-train.control.yaml')).code,
    ).toBe(0);
    const refused = await waitFor('a Forbidden event naming ollie', () =>
      events('ob-train').find((e) => e.reason === 'Forbidden' && e.actor === 'ollie'),
    );
    expect(refused.message).toMatch(/ollie may not cancel ob's job ob-train/);
    // Removed by the controller (it owns the dir), and the run is the same one.
    await waitFor('the control file removed', () => !existsSync(join(jobs, 'ob-train.control.yaml')));
    expect(readStatus(jobs, 'ob-train')).toMatchObject({ phase: 'Running', runId: obJob.runId, owner: 'ob' });
  });

  it('ob cancels his own job; the event says it was ob', async () => {
    const r = ugro(people.ob, 'cancel', 'ob-train');
    expect(r.code, r.err).toBe(0);
    const s = await waitPhase(jobs, 'ob-train', ['Cancelled'], 60_000);
    expect(s.message).toMatch(/^cancelled by ob at /);
    expect(events('ob-train').find((e) => e.reason === 'Cancelled')?.actor).toBe('ob');
  });

  it('ollie: an annotation naming ob is ignored; a 1-GPU quota holds his 2nd job until the 1st is gone', async () => {
    // Written straight into jobs/ (the CLI would refuse the annotation with exit 4): the controller decides.
    const a = draft(people.ollie, 'ollie-a', long('gpu2'), { annotations: { 'ugro.dev/owner': 'ob' } });
    expect(ugro(people.ollie, 'apply', '-f', a).code).toBe(4);
    expect(sh(people.ollie, 'cp "$1" "$2"', a, join(jobs, 'ollie-a.yaml')).code).toBe(0);
    const first = await waitPhase(jobs, 'ollie-a', ['Running'], 120_000);
    expect(first).toMatchObject({ owner: 'ollie', ownerBy: 'file owner' });
    expect(events('ollie-a').find((e) => e.reason === 'OwnerAnnotationIgnored')?.actor).toBe('ollie');
    // The second asks for another host (gpu1 is free) and priority high: the quota holds it, the cap shows.
    const b = ugro(people.ollie, 'apply', '-f', draft(people.ollie, 'ollie-b', { ...long('gpu1'), priority: 'high' }));
    expect(b.code, b.err).toBe(0);
    const waiting = await waitFor('ollie-b held by the quota', () => {
      const s = readStatus(jobs, 'ollie-b');
      return s?.reason === 'QuotaExceeded' ? s : undefined;
    });
    expect(waiting.phase).toBe('Queued');
    expect(waiting.message).toMatch(/ollie: 1 of 1 GPUs? in use/);
    expect(waiting.conditions.find((c) => c.type === 'PriorityCapped')).toMatchObject({ status: 'True' });
    // master (admin) cancels ollie's first job: the second starts.
    const c = ugro(people.master, 'cancel', 'ollie-a');
    expect(c.code, c.err).toBe(0);
    expect((await waitPhase(jobs, 'ollie-a', ['Cancelled'], 60_000)).message).toMatch(/cancelled by master/);
    await waitPhase(jobs, 'ollie-b', ['Running'], 120_000);
  });
});
