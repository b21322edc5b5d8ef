/**
 * One controller per jobs directory: two would launch the same jobs twice. The lock is a real
 * flock(2) held by a small `flock` child whose stdin is a pipe from this process: the kernel drops
 * the lock the moment the holder exits, and the holder exits when the controller dies in any way
 * (kill -9 closes the pipe, `cat` sees EOF). No pid file to go stale, no take-over race.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UgroError } from '../../config/errors.ts';
import { kindOf, notRegular, writeFileAtomic } from './files.ts';
import { checkStateDir } from './private.ts';

/** flock(1) exits with this when the lock is held elsewhere (-E). */
const HELD = 75;

export interface DirLock {
  release(): Promise<void>;
}

export class LockHeldError extends UgroError {}

interface Holder {
  pid: number;
  host: string;
  startedAt: string;
}

/**
 * Take the jobs directory's controller lock, or fail naming the controller that holds it. The
 * state dir is checked first (private.ts): the lock is the first thing a controller does there.
 */
export async function lockJobsDir(dir: string, now: () => Date = () => new Date()): Promise<DirLock> {
  const own = join(dir, '.ugro');
  await checkStateDir(dir);
  const file = join(own, 'controller.lock');
  await ensureLockFile(file);
  // Fixed program text; the lock file is an argument.
  const child = spawn('flock', ['-n', '-E', String(HELD), file, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const got = await new Promise<{ ok: true } | { ok: false; code: number | null; err: string }>((resolve) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b;
      if (out.includes('locked\n')) resolve({ ok: true });
    });
    child.stderr!.on('data', (b: Buffer) => {
      err += b;
    });
    child.on('error', (e) => resolve({ ok: false, code: null, err: e.message }));
    child.on('exit', (code) => resolve({ ok: false, code, err }));
  });
  if (!got.ok) {
    if (got.code === HELD) {
      const h = await readHolder(own);
      throw new LockHeldError(
        `another controller${h ? ` (pid ${h.pid} on ${h.host}, started ${h.startedAt})` : ''} is running on ${dir}: ` +
          'stop it first (two would launch the same jobs twice)',
      );
    }
    throw new UgroError(
      `cannot lock ${file}: ${got.err.trim() || `flock exited ${got.code}`} (is util-linux installed?)`,
    );
  }
  // Who holds it, for the message a second controller prints. Information only: the flock is the lock.
  const holder: Holder = { pid: process.pid, host: hostname(), startedAt: now().toISOString() };
  await writeFileAtomic(join(own, 'controller.json'), `${JSON.stringify(holder)}\n`);
  child.stdout!.removeAllListeners('data');
  return { release: () => releaseHolder(child) };
}

/**
 * The lock file as a regular file (created if missing), checked without blocking: flock(1) opens
 * it plainly, and a FIFO there would hang the start for good, a symlink would lock its target.
 */
async function ensureLockFile(file: string): Promise<void> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP') throw notRegular(file, 'a symbolic link', 'lock');
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notRegular(file, kindOf(st), 'lock');
  } finally {
    await fh.close();
  }
}

async function readHolder(own: string): Promise<Holder | undefined> {
  try {
    const h = JSON.parse(await readFile(join(own, 'controller.json'), 'utf8')) as Partial<Holder>;
    if (Number.isInteger(h.pid) && typeof h.host === 'string' && typeof h.startedAt === 'string') {
      return { pid: h.pid!, host: h.host.slice(0, 100), startedAt: h.startedAt.slice(0, 40) };
    }
  } catch {
    /* absent or torn: the message just names no pid */
  }
  return undefined;
}

function releaseHolder(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.stdin!.end();
  });
}
