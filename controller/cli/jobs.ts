/**
 * Shared by the job verbs (loaded with them, never at startup): the store, files named on the
 * command line, and waiting for the controller to act on a request.
 */
import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import { NotFoundError, UgroError } from '../../config/errors.ts';
import type { JobStatus } from '../api/status.ts';
import { MAX_FILE_BYTES, readRegularFile } from '../store/files.ts';
import { JobStore } from '../store/store.ts';
import type { CliContext } from './context.ts';

export function openStore(ctx: CliContext): JobStore {
  return new JobStore(ctx.jobsDir);
}

/** The job must have a spec or a status file (names checked with requireJobName first). */
export async function requireJob(store: JobStore, name: string): Promise<{ specFile?: string; status?: JobStatus }> {
  const [specFile, status] = await Promise.all([store.specFile(name), store.readStatus(name)]);
  if (!specFile && !status) throw new NotFoundError(`job ${name} not found in ${store.dir}`);
  return { specFile, status };
}

export type InputFile = { ok: true; path: string; text: string } | { ok: false; message: string };

/**
 * A file named on the command line. A symlink is followed (the person named it), but only a
 * regular file of at most 1 MiB is read: a FIFO or a device would block the CLI, a huge file
 * would fill its memory.
 */
export async function readInputFile(file: string): Promise<InputFile> {
  let path: string;
  try {
    path = await realpath(resolve(file));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      ok: false,
      message: code === 'ENOENT' ? 'cannot read: ENOENT: file not found' : `cannot read: ${(e as Error).message}`,
    };
  }
  const r = await readRegularFile(path);
  if (r.ok) return { ok: true, path, text: r.text };
  return { ok: false, message: r.missing ? 'cannot read: ENOENT: file not found' : r.message };
}

/** `-f -`: stdin, with a file's limit (at most 1 MiB; more is refused, not cut). */
export async function readStdin(ctx: CliContext): Promise<InputFile> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of ctx.stdin()) {
    const b = Buffer.from(c);
    n += b.length;
    if (n > MAX_FILE_BYTES) return { ok: false, message: `input is over ${MAX_FILE_BYTES} bytes; the limit is 1 MiB` };
    chunks.push(b);
  }
  return { ok: true, path: '-', text: Buffer.concat(chunks).toString('utf8') };
}

/** Write a file the CLI owns the name of (atomic); an I/O failure becomes a message, not a stack. */
export async function writeJobFile(path: string, text: string): Promise<void> {
  const { writeFileAtomic } = await import('../store/files.ts');
  try {
    await writeFileAtomic(path, text);
  } catch (e) {
    throw new UgroError(`cannot write ${path}: ${(e as Error).message}`, { cause: e });
  }
}

export interface WaitOptions {
  timeoutMs: number;
  pollMs?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/** Poll the job's status until `done` holds; a UgroError (exit 1) when the controller does not act in time. */
export async function waitForStatus(
  store: JobStore,
  name: string,
  done: (st: JobStatus | undefined) => boolean,
  o: WaitOptions,
): Promise<void> {
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const deadline = now() + o.timeoutMs;
  for (;;) {
    if (done(await store.readStatus(name))) return;
    if (now() >= deadline) break;
    await sleep(o.pollMs ?? 300);
  }
  throw new UgroError(
    `timed out after ${Math.round(o.timeoutMs / 1000)} s waiting for the controller (is \`ugro controller\` running?)`,
  );
}
