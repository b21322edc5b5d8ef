/**
 * The controller's state directory, jobs/.ugro, is private to the controller's user: the git clone
 * and git's helpers live there, and whoever can write into it can choose the programs git runs
 * (a planted repo.git/config with core.sshCommand ran `id` as root). So at start every entry under
 * it must belong to that user and be writable by nobody else, and be what UGRO keeps there (a
 * directory, a regular file, ssh's control sockets in git/mux/); jobs/ itself may be shared (a
 * future lab may make it sticky and group-writable, like /tmp), but then it must be sticky, or
 * anyone could swap jobs/.ugro for their own. Anything else stops the controller with a message
 * that says how to fix it. People's job files in jobs/ are not checked here: they are input.
 */
import type { Stats } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { UgroError } from '../../config/errors.ts';
import { shQuote } from '../../config/quote.ts';
import { ensureOwnDir, kindOf } from './files.ts';

/** The controller's state is unsafe to use: the message says why and how to fix it. */
export class StateDirError extends UgroError {}

/** Files UGRO keeps at the top of jobs/.ugro: each must be a regular file when it exists. */
const OWN_FILES = ['controller.lock', 'controller.json', 'events.jsonl', 'events.1.jsonl', 'usage.json'];

/** Where ssh's control sockets live (gitops/git.ts): the only place a socket is expected. */
const MUX_DIR = join('git', 'mux');

const SHOWN = 3;

export interface StateDirOptions {
  /** The controller's user id (default: this process's effective uid). */
  uid?: number;
}

/** The user a fix command names: the name when known, else the number. */
function userName(uid: number): string {
  try {
    const u = userInfo();
    if (u.uid === uid && u.username) return u.username;
  } catch {
    /* no passwd entry: the number does */
  }
  return String(uid);
}

/**
 * Create jobs/.ugro if missing, then check it and everything under it (see the header). Throws a
 * StateDirError naming up to three offending paths and the command that fixes them.
 */
export async function checkStateDir(jobsDir: string, o: StateDirOptions = {}): Promise<void> {
  const uid = o.uid ?? process.geteuid?.() ?? 0;
  const user = userName(uid);
  const own = join(jobsDir, '.ugro');
  await ensureOwnDir(own);
  // jobs/ itself (followed: --jobs may name a link the operator made).
  const top = await stat(jobsDir);
  if (top.uid !== uid && top.uid !== 0)
    throw new StateDirError(
      `${jobsDir} belongs to uid ${top.uid}, but the controller runs as ${user}: that user could replace ` +
        `${own} (the controller's private state, where git runs) at any time. Run the controller as that ` +
        `user, or: chown ${user} ${shQuote(jobsDir)}`,
    );
  if (top.mode & 0o022 && !(top.mode & 0o1000))
    throw new StateDirError(
      `${jobsDir} is writable by ${writers(top)} without the sticky bit: anyone who can write there can ` +
        `replace ${own} (the controller's private state). Make it sticky like /tmp (chmod +t ${shQuote(jobsDir)}) ` +
        `or private (chmod go-w ${shQuote(jobsDir)})`,
    );
  const foreign: string[] = [];
  const writable: string[] = [];
  const odd: { path: string; what: string }[] = [];
  const stack: string[] = [own];
  while (stack.length) {
    const path = stack.pop()!;
    const st = await lstat(path);
    const rel = relative(own, path);
    if (st.uid !== uid) foreign.push(path);
    else if (!st.isSymbolicLink() && st.mode & 0o022) writable.push(path);
    if (st.isDirectory()) {
      if (OWN_FILES.includes(rel)) odd.push({ path, what: 'a directory' });
      for (const e of await readdir(path)) stack.push(join(path, e));
    } else if (st.isSocket() && dirname(rel) === MUX_DIR) {
      // ssh's ControlMaster socket (0600, in a 0700 dir): expected.
    } else if (!st.isFile()) {
      odd.push({ path, what: st.isSymbolicLink() ? 'a symbolic link' : kindOf(st) });
    }
  }
  if (foreign.length)
    throw new StateDirError(
      `${own} must belong to the controller's user (${user}); not: ${list(foreign)}. Whoever owns a file ` +
        `there can make git run a program of theirs as ${user}. Check nobody planted anything, then: ` +
        `chown -R ${user} ${shQuote(own)}`,
    );
  if (writable.length)
    throw new StateDirError(
      `${own} must not be writable by group or others; it is: ${list(writable)}. Whoever can write there ` +
        `can make git run a program of theirs as ${user}. Check nobody planted anything, then: ` +
        `chmod -R go-w ${shQuote(own)}`,
    );
  if (odd.length)
    throw new StateDirError(
      `${own} holds what UGRO never puts there: ` +
        `${odd
          .slice(0, SHOWN)
          .map((x) => `${x.path} is ${x.what}`)
          .join(', ')}${odd.length > SHOWN ? ` (and ${odd.length - SHOWN} more)` : ''}. ` +
        `Remove it (rm -r -- ${odd
          .slice(0, SHOWN)
          .map((x) => shQuote(x.path))
          .join(' ')}); UGRO makes what it needs again`,
    );
}

function writers(st: Stats): string {
  return st.mode & 0o002 ? 'everyone' : 'its group';
}

function list(paths: string[]): string {
  const shown = paths.slice(0, SHOWN).join(', ');
  return paths.length > SHOWN ? `${shown} (and ${paths.length - SHOWN} more)` : shown;
}

/**
 * A jobs dir for a lab shared by several accounts (the cluster file has a users: section): others
 * can add jobs only if it is group- or world-writable, and it must then be sticky (like /tmp: each
 * account can replace and delete only its own files, so the OS refuses a change to another's job
 * before the controller has to). Undefined when it is set up so; else what to run.
 */
export function sharedJobsDirAdvice(jobsDir: string, mode: number, users: readonly string[]): string | undefined {
  const d = shQuote(jobsDir);
  const others = users.length ? ` (${users.slice(0, 3).join(', ')}${users.length > 3 ? ', …' : ''})` : '';
  if (!(mode & 0o022))
    return (
      `${jobsDir} is writable by its owner only: other users${others} cannot add jobs. To share it, make ` +
      `it group-writable and sticky for the lab's group: chgrp LABGROUP ${d} && chmod 1775 ${d} (or chmod 1777 ${d})`
    );
  return undefined;
}
