/**
 * `ugro sync`: ask the controller that follows git to fetch now, and wait for its answer. The
 * request is a file (jobs/.ugro/git/sync-request, an id) and the answer comes back in state.json
 * once the fetched head is applied (or refused): files as the API, like cancel.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { type FSWatcher, lstatSync, watch } from 'node:fs';
import { join } from 'node:path';
import { UgroError } from '../../config/errors.ts';
import { kindOf, notRegular, writeFileAtomic } from '../store/files.ts';
import { type GitStateFile, readGitState, sourceName, stateDir } from './state.ts';

/** flock(1)'s exit code for "held elsewhere" (-E). */
const HELD = 75;

/** Is a controller holding the jobs dir's lock right now? */
function controllerRunning(jobsDir: string): boolean {
  const file = join(jobsDir, '.ugro', 'controller.lock');
  // flock(1) would block opening a FIFO and lock a symlink's target: only a regular file is asked.
  const st = lstatSync(file, { throwIfNoEntry: false });
  if (!st) return false;
  if (!st.isFile()) throw notRegular(file, st.isSymbolicLink() ? 'a symbolic link' : kindOf(st), 'lock');
  const r = spawnSync('flock', ['-n', '-E', String(HELD), file, 'true'], {
    stdio: 'ignore',
    timeout: 10_000,
  });
  return r.status === HELD;
}

export interface SyncAnswer {
  state: GitStateFile;
  request: NonNullable<GitStateFile['request']>;
}

export async function requestSync(
  jobsDir: string,
  timeoutMs: number,
  o: { sleep?: (ms: number) => Promise<void>; running?: (dir: string) => boolean } = {},
): Promise<SyncAnswer> {
  const s = readGitState(jobsDir);
  if (!s?.active)
    throw new UgroError(
      `${jobsDir} does not follow git: start \`ugro controller --git URL\` (or set gitops.url in the cluster file)`,
    );
  if (!(o.running ?? controllerRunning)(jobsDir))
    throw new UgroError(
      `no controller is running on ${jobsDir} (it follows ${sourceName(s)}): start \`ugro controller\``,
    );
  const id = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  // Woken by the answer itself (state.json renamed into place), with a slow poll behind it. A change
  // between a read and the wait after it is remembered (`dirty`): the wait then returns at once.
  const changed = new Set<() => void>();
  let dirty = false;
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(stateDir(jobsDir), { persistent: false }, () => {
      dirty = true;
      for (const wake of changed) wake();
    });
    watcher.on('error', () => undefined);
  } catch {
    /* no watch: the poll answers */
  }
  const sleep =
    o.sleep ??
    ((ms: number) =>
      new Promise<void>((r) => {
        if (dirty) return r();
        const done = () => {
          clearTimeout(t);
          changed.delete(done);
          r();
        };
        const t = setTimeout(done, ms);
        changed.add(done);
      }));
  try {
    await writeFileAtomic(join(stateDir(jobsDir), 'sync-request'), `${id}\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      dirty = false;
      const now = readGitState(jobsDir);
      if (now?.request?.id === id) return { state: now, request: now.request };
      if (Date.now() >= deadline) break;
      await sleep(100);
    }
  } finally {
    watcher?.close();
  }
  throw new UgroError(
    `timed out after ${Math.round(timeoutMs / 1000)} s waiting for the controller to fetch ${sourceName(s)}`,
  );
}
