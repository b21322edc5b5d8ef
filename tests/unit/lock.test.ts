/**
 * One controller per jobs dir (issue 7, defect 11): a real flock held by a child of the
 * controller. Concurrent starters: exactly one wins; a holder killed with -9 frees it at once.
 * Taking it is the controller's first step in its state dir, so the state dir's checks (issue 15,
 * item 2: jobs/.ugro private to the controller's user, holding only what UGRO puts there) are
 * proved here too, down to `ugro controller` refusing to start with the command that fixes it.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../../controller/cli/main.ts';
import { LockHeldError, lockJobsDir } from '../../controller/store/lock.ts';
import { StateDirError } from '../../controller/store/private.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

describe('lockJobsDir', () => {
  it('a second lock on the same dir is refused, naming the holder; after release it is free', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-lock-'));
    const a = await lockJobsDir(dir);
    const err = await lockJobsDir(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockHeldError);
    expect((err as Error).message).toMatch(
      new RegExp(`another controller \\(pid ${process.pid} on .+, started .+\\) is running on ${dir}`),
    );
    await a.release();
    const b = await lockJobsDir(dir);
    await b.release();
  });

  // Regression: the old pid-file lock had a take-over race; with flock exactly one starter wins.
  it('ten concurrent starters: exactly one gets the lock', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-lock-'));
    const res = await Promise.allSettled(Array.from({ length: 10 }, () => lockJobsDir(dir)));
    const won = res.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    expect(
      res
        .filter((r) => r.status === 'rejected')
        .every((r) => (r as PromiseRejectedResult).reason instanceof LockHeldError),
    ).toBe(true);
    await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof lockJobsDir>>>).value.release();
  });

  it('a holder killed with -9 releases the lock at once (no stale pid file to time out)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-lock-'));
    const script = join(dir, 'hold.mts');
    writeFileSync(
      script,
      `import { lockJobsDir } from ${JSON.stringify(join(ROOT, 'controller/store/lock.ts'))};\n` +
        `await lockJobsDir(${JSON.stringify(join(dir, 'jobs'))});\n` +
        `console.log('held');\nsetInterval(() => {}, 1000);\n`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) =>
      child.stdout!.on('data', (b: Buffer) => b.toString().includes('held') && resolve()),
    );
    await expect(lockJobsDir(join(dir, 'jobs'))).rejects.toBeInstanceOf(LockHeldError);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // The flock child sees EOF on its stdin and exits; give the kernel a moment.
    let got: Awaited<ReturnType<typeof lockJobsDir>> | undefined;
    for (let i = 0; i < 50 && !got; i++) {
      got = await lockJobsDir(join(dir, 'jobs')).catch(() => undefined);
      if (!got) await new Promise((r) => setTimeout(r, 20));
    }
    expect(got).toBeDefined();
    await got!.release();
  });
});

/** A jobs dir whose .ugro exists (as a controller leaves it), with a git dir inside. */
function stateDir(): { jobs: string; own: string } {
  const jobs = mkdtempSync(join(tmpdir(), 'ugro-private-'));
  const own = join(jobs, '.ugro');
  mkdirSync(join(own, 'git', 'repo.git'), { recursive: true, mode: 0o755 });
  writeFileSync(join(own, 'git', 'repo.git', 'config'), '[core]\n', { mode: 0o644 });
  writeFileSync(join(own, 'events.jsonl'), '', { mode: 0o644 });
  return { jobs, own };
}

/** The promise's error, or a failure after `ms` (a start that hangs must fail, not block the suite). */
async function refusal(p: Promise<unknown>, ms = 5000): Promise<Error> {
  const hung = new Promise<Error>((r) => setTimeout(() => r(new Error(`still waiting after ${ms} ms`)), ms));
  return Promise.race([
    p.then(
      () => new Error('resolved: not refused'),
      (e: Error) => e,
    ),
    hung,
  ]);
}

const asRoot = process.geteuid?.() === 0;

describe('the state dir (jobs/.ugro) at start: private, and only what UGRO keeps there', () => {
  it('a private state dir is accepted (and a new one is made 0755, not group-writable)', async () => {
    const { jobs } = stateDir();
    const l = await lockJobsDir(jobs);
    await l.release();
    const fresh = join(mkdtempSync(join(tmpdir(), 'ugro-private-')), 'jobs');
    const l2 = await lockJobsDir(fresh);
    await l2.release();
    expect(execFileSync('stat', ['-c', '%a', join(fresh, '.ugro')], { encoding: 'utf8' }).trim()).toMatch(
      /^7[0-5][0-5]$/,
    );
  });

  it('group- or world-writable: refused, naming the paths and `chmod -R go-w`', async () => {
    const a = stateDir();
    chmodSync(a.own, 0o775);
    const e1 = await refusal(lockJobsDir(a.jobs));
    expect(e1).toBeInstanceOf(StateDirError);
    expect(e1.message).toContain(`must not be writable by group or others; it is: ${a.own}`);
    expect(e1.message).toContain(`chmod -R go-w ${a.own}`);
    const b = stateDir();
    chmodSync(join(b.own, 'git', 'repo.git', 'config'), 0o666);
    const e2 = await refusal(lockJobsDir(b.jobs));
    expect(e2.message).toContain(join(b.own, 'git', 'repo.git', 'config'));
    expect(e2.message).toContain('chmod -R go-w');
  });

  it.skipIf(!asRoot)('owned by another user (anywhere under it): refused with `chown -R`', async () => {
    const a = stateDir();
    chownSync(join(a.own, 'git', 'repo.git', 'config'), 65534, 65534);
    const e = await refusal(lockJobsDir(a.jobs));
    expect(e).toBeInstanceOf(StateDirError);
    expect(e.message).toContain(
      `must belong to the controller's user (root); not: ${join(a.own, 'git', 'repo.git', 'config')}`,
    );
    expect(e.message).toContain(`chown -R root ${a.own}`);
  });

  it.skipIf(!asRoot)('a jobs dir another user owns (who could swap .ugro): refused', async () => {
    const a = stateDir();
    chownSync(a.jobs, 65534, 65534);
    const e = await refusal(lockJobsDir(a.jobs));
    expect(e.message).toMatch(/belongs to uid 65534, but the controller runs as root/);
  });

  it('a jobs dir others may write to: refused unless sticky (like /tmp)', async () => {
    const a = stateDir();
    chmodSync(a.jobs, 0o777);
    const e = await refusal(lockJobsDir(a.jobs));
    expect(e.message).toContain(`${a.jobs} is writable by everyone without the sticky bit`);
    expect(e.message).toContain(`chmod +t ${a.jobs}`);
    chmodSync(a.jobs, 0o1777);
    const l = await lockJobsDir(a.jobs);
    await l.release();
  });

  it('a FIFO at controller.lock: a clear error at once, not a start that hangs', async () => {
    const a = stateDir();
    execFileSync('mkfifo', [join(a.own, 'controller.lock')]);
    const e = await refusal(lockJobsDir(a.jobs));
    expect(e.message).toContain(`${join(a.own, 'controller.lock')} is a FIFO`);
    expect(e.message).toMatch(/remove it/i);
  });

  it('a directory at events.jsonl, a symlink: each refused, naming it and the rm that clears it', async () => {
    const a = stateDir();
    const ev = join(a.own, 'events.jsonl');
    execFileSync('rm', [ev]);
    mkdirSync(ev, { mode: 0o755 });
    const e = await refusal(lockJobsDir(a.jobs));
    expect(e.message).toContain(`${ev} is a directory`);
    expect(e.message).toContain(`rm -r -- ${ev}`);
    const b = stateDir();
    symlinkSync('/etc/passwd', join(b.own, 'usage.json'));
    expect((await refusal(lockJobsDir(b.jobs))).message).toContain(`${join(b.own, 'usage.json')} is a symbolic link`);
  });

  it('`ugro controller` on a group-writable state dir exits 1 saying how to fix it', async () => {
    const a = stateDir();
    chmodSync(a.own, 0o770);
    const err: string[] = [];
    const code = await main(
      ['node', 'ugro', '--cluster', join(ROOT, 'tests/fixtures/cluster/valid.yaml'), '--jobs', a.jobs, 'controller'],
      { out: () => undefined, err: (s) => err.push(s) },
    );
    expect(code).toBe(1);
    expect(err.join('\n')).toContain(`chmod -R go-w ${a.own}`);
  });
});
