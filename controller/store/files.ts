/**
 * File access for the jobs directory, which people and git write to: treat every entry as hostile.
 * Only regular files are read (a FIFO named `x.yaml` would block a read forever, a symlink could
 * point anywhere), never more than a limit, and never through a symlink; writes never follow one.
 */
import { type BigIntStats, constants, type Stats } from 'node:fs';
import { lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { UgroError } from '../../config/errors.ts';
import { shQuote } from '../../config/quote.ts';

/** Largest job, status or control file UGRO reads. */
export const MAX_FILE_BYTES = 1024 * 1024;

export type ReadResult =
  /** `uid`: the file's owner as the OS reports it (who wrote it, in a sticky jobs dir). */
  | { ok: true; text: string; key: string; uid: number }
  | { ok: false; missing: true }
  | { ok: false; missing: false; message: string };

export function kindOf(st: Stats | BigIntStats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/**
 * Read a regular file of at most `limit` bytes without blocking: O_NOFOLLOW refuses a symlink,
 * O_NONBLOCK makes opening a FIFO return at once, and fstat on the open descriptor (not a
 * separate lstat, which a swap could race) decides. `known` is the key of a cached read: when the
 * file is unchanged (inode, size, mtime) nothing is read and `text` is ''.
 */
export async function readRegularFile(path: string, limit = MAX_FILE_BYTES, known?: string): Promise<ReadResult> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { ok: false, missing: true };
    if (code === 'ELOOP')
      return { ok: false, missing: false, message: 'is a symbolic link; UGRO reads only regular files' };
    return { ok: false, missing: false, message: `cannot open: ${(e as Error).message}` };
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) return { ok: false, missing: false, message: `is ${kindOf(st)}; UGRO reads only regular files` };
    // The owner is part of the key: a chown (or a file replaced by another user) is a new read.
    const key = `${st.ino}:${st.size}:${st.mtimeNs}:${st.uid}`;
    const uid = Number(st.uid);
    const size = Number(st.size);
    if (size > limit) return { ok: false, missing: false, message: tooBig(size, limit) };
    if (known === key) return { ok: true, text: '', key, uid };
    // Read at most limit + 1 bytes: a file growing while we read is caught too.
    const buf = Buffer.alloc(Math.min(size, limit) + 1);
    let n = 0;
    for (;;) {
      const r = await fh.read(buf, n, buf.length - n, n);
      if (r.bytesRead === 0) break;
      n += r.bytesRead;
      if (n > limit) return { ok: false, missing: false, message: tooBig(n, limit) };
      if (n === buf.length) break;
    }
    return { ok: true, text: buf.subarray(0, n).toString('utf8'), key, uid };
  } catch (e) {
    return { ok: false, missing: false, message: `cannot read: ${(e as Error).message}` };
  } finally {
    await fh.close();
  }
}

function tooBig(n: number, limit: number): string {
  return `file is ${n} bytes; the limit is ${limit === MAX_FILE_BYTES ? '1 MiB' : `${limit} bytes`}`;
}

/**
 * Write via a temp file + rename, so readers never see half a file. The temp file is created
 * exclusively (never through an existing name or symlink) and the rename replaces whatever the
 * target name was (a symlink is replaced, never followed).
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    await fh.writeFile(data);
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (e) {
    await fh?.close().catch(() => undefined);
    // Full disk or a failed rename: leave nothing behind (each retry uses a new name).
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/**
 * Append to a regular file, creating it; refuses a symlink or anything but a regular file with an
 * error that names the file and the fix (a directory there would otherwise fail every append with
 * a bare EISDIR).
 */
export async function appendRegularFile(path: string, data: string): Promise<void> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(
      path,
      constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK,
      0o644,
    );
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // EISDIR: a directory; ELOOP: a symlink; ENXIO: a FIFO nobody reads.
    const what =
      code === 'EISDIR' ? 'a directory' : code === 'ELOOP' ? 'a symbolic link' : code === 'ENXIO' ? 'a FIFO' : '';
    if (what) throw notRegular(path, what, 'append to');
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notRegular(path, kindOf(st), 'append to');
    await fh.write(data);
  } finally {
    await fh.close();
  }
}

/** `path` is not the regular file UGRO keeps there: say what it is and how to clear it. */
export function notRegular(path: string, what: string, verb: string): UgroError {
  return new UgroError(
    `${path} is ${what}; UGRO keeps a regular file there and will not ${verb} it: ` +
      `remove it (rm -r -- ${shQuote(path)}) and UGRO makes a new one`,
  );
}

/**
 * Make `dir` (a directory UGRO owns) if missing, writable by its owner only (0755: the CLI of other
 * users may read it); refuse it if it is a symlink or not a directory.
 */
export async function ensureOwnDir(dir: string): Promise<void> {
  try {
    const st = await lstat(dir);
    if (st.isSymbolicLink())
      throw new UgroError(
        `${dir} is a symbolic link; UGRO keeps its own files there and refuses to follow it: remove the link`,
      );
    if (!st.isDirectory())
      throw new UgroError(`${dir} is ${kindOf(st)}; UGRO keeps a directory there: remove it (rm -- ${shQuote(dir)})`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await mkdir(dir, { recursive: true, mode: 0o755 });
  }
}

/** lstat that answers undefined for a missing file. */
export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}
