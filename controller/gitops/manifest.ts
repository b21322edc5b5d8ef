/**
 * The git source's own files, read back as hostile input: applied.json (what git wrote into jobs/,
 * checked field by field), and the raw bytes of a job file in jobs/ (a blob id is over bytes).
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { lstatOrUndefined, MAX_FILE_BYTES } from '../store/files.ts';
import { isJobName } from '../store/store.ts';
import { isPrincipal } from './signer.ts';
import type { AppliedJob } from './sync-plan.ts';

const HEX = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

export interface Manifest {
  head?: string;
  /** The applied head's subject (for `ugro sync` and state.json). */
  headSubject?: string;
  rewrittenFrom?: string;
  rewrittenJobs: string[];
  jobs: Map<string, AppliedJob>;
}

/** applied.json back, checked field by field (it sits in a directory other users may write to). */
export function parseManifest(raw: unknown, o: { url: string; branch: string; path: string }): Manifest {
  const m: Manifest = { jobs: new Map(), rewrittenJobs: [] };
  if (typeof raw !== 'object' || raw === null) return m;
  const r = raw as Record<string, unknown>;
  const str = (v: unknown, max = 1024) => (typeof v === 'string' && v.length <= max ? v : undefined);
  // Another repository, branch or path: what was applied from it is still ours (it can be pruned),
  // but its head says nothing about this branch's history.
  const same = r.url === o.url && r.branch === o.branch && r.path === o.path;
  const head = str(r.head, 64);
  if (head && HEX.test(head)) m.head = same ? head : undefined;
  if (m.head && str(r.headSubject)) m.headSubject = str(r.headSubject);
  const rf = str(r.rewrittenFrom, 64);
  if (same && rf && HEX.test(rf)) m.rewrittenFrom = rf;
  if (Array.isArray(r.rewrittenJobs)) m.rewrittenJobs = r.rewrittenJobs.filter((n) => typeof n === 'string');
  const jobs = typeof r.jobs === 'object' && r.jobs !== null ? (r.jobs as Record<string, unknown>) : {};
  for (const [name, v] of Object.entries(jobs)) {
    if (!isJobName(name) || typeof v !== 'object' || v === null) continue;
    const j = v as Record<string, unknown>;
    const c = (typeof j.commit === 'object' && j.commit !== null ? j.commit : {}) as Record<string, unknown>;
    const file = str(j.file, 80);
    const oid = str(j.oid, 64);
    const revision = str(c.revision, 64);
    if (!file || (file !== `${name}.yaml` && file !== `${name}.yml`) || !oid || !HEX.test(oid)) continue;
    if (!revision || !HEX.test(revision)) continue;
    m.jobs.set(name, {
      file,
      repoFile: str(j.repoFile) ?? file,
      oid,
      commit: {
        revision,
        subject: str(c.subject) ?? '',
        author: str(c.author, 512) ?? '',
        authorTime: str(c.authorTime, 64) ?? '',
      },
      ...(str(j.removedAt, 64) && HEX.test(str(j.removedAt, 64)!) ? { removedAt: str(j.removedAt, 64) } : {}),
      // A signer that is not a principal is dropped: the job then reads as unsigned (never as someone else's).
      ...(isPrincipal(j.signer) ? { signer: j.signer } : {}),
    });
  }
  return m;
}

type RawRead = 'missing' | 'unchanged' | { bytes: Buffer; key: string } | { error: string };

/**
 * A regular file's bytes, at most `limit` (job files: 1 MiB), never through a symlink and without
 * blocking on a FIFO (as store/files.ts reads jobs/, but the bytes themselves: a blob id is over
 * bytes, not over text). `known`: the key of the last read; 'unchanged' when it still matches.
 */
export async function readRawFile(path: string, known?: string, limit = MAX_FILE_BYTES): Promise<RawRead> {
  const st0 = await lstatOrUndefined(path);
  if (!st0) return 'missing';
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'missing' : { error: code ?? 'open failed' };
  }
  try {
    const st = await fh.stat({ bigint: true });
    if (!st.isFile()) return { error: 'not a regular file' };
    const key = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    if (known === key) return 'unchanged';
    if (st.size > BigInt(limit)) return { error: 'too big' };
    const buf = Buffer.alloc(Number(st.size) + 1);
    let n = 0;
    for (;;) {
      const r = await fh.read(buf, n, buf.length - n, n);
      if (r.bytesRead === 0) break;
      n += r.bytesRead;
      if (n > limit) return { error: 'too big' };
      if (n === buf.length) return { error: 'changed while read' };
    }
    return { bytes: buf.subarray(0, n), key };
  } finally {
    await fh.close();
  }
}
