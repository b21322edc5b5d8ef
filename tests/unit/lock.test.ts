/**
 * One controller per jobs dir (issue 7, defect 11): a real flock held by a child of the
 * controller. Concurrent starters: exactly one wins; a holder killed with -9 frees it at once.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LockHeldError, lockJobsDir } from '../../controller/store/lock.ts';

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
