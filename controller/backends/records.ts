/**
 * PURE: the one reader of what UGRO's host scripts print (scripts/runtime/lib.sh describes the
 * format): blocks of `@@KIND [ID]`, then `key=value` lines, each closed by `@@end`
 * (record-format.ts). Every SshBackend method parses its answer here, whatever the transport, and
 * the typed readers below (observe.sh's in observe-records.ts) turn blocks into results. Host
 * output is written by jobs as much as by UGRO (a job can write any file in its run dir), so
 * nothing is trusted: numbers are checked integers in range, metrics go through metricsOfLine,
 * log lines are capped.
 */
import { type Metrics, metricsOfLine, parseRunDirName } from '../api/run.ts';
import type { LeaseResult, ProgressRead } from './api.ts';
import { OBSERVE_LIMITS } from './observe-records.ts';
import { blockOf, errorOf, field, fieldsOf, intIn, PID_MAX, parseRecords } from './record-format.ts';

export { OBSERVE_LIMITS, observeResultOf } from './observe-records.ts';
export { blockOf, errorOf, field, fieldsOf, parseRecords, type RecordBlock } from './record-format.ts';

export type LaunchAnswer =
  | { result: 'launched' | 'exists'; pid: number }
  | { result: 'port-busy'; port: number }
  | { result: 'error'; why: string };

export function launchAnswerOf(text: string): LaunchAnswer {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) return { result: 'error', why: err };
  const b = blockOf(blocks, 'launch');
  const result = b && field(b, 'result');
  if (b && result === 'port-busy') {
    const port = intIn(field(b, 'port'), 1, 65_535);
    if (port !== undefined) return { result, port };
  }
  if (b && (result === 'launched' || result === 'exists')) {
    const pid = intIn(field(b, 'pid'), 1, PID_MAX);
    if (pid !== undefined) return { result, pid };
    return { result: 'error', why: `launch.sh answered ${result} without a valid pid` };
  }
  return { result: 'error', why: 'launch.sh gave no answer' };
}

export function stopAnswerOf(text: string): { remaining: number; killed: boolean } | { error: string } {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) return { error: err };
  const b = blockOf(blocks, 'stop');
  const remaining = b && intIn(field(b, 'remaining'), 0, PID_MAX);
  if (!b || remaining === undefined) return { error: 'stop.sh gave no answer' };
  return { remaining, killed: field(b, 'killed') === '1' };
}

export function waitAnswerOf(text: string): { state: 'done' | 'missing'; exitCode?: number } | undefined {
  const b = blockOf(parseRecords(text), 'wait');
  const state = b && field(b, 'state');
  if (!b || (state !== 'done' && state !== 'missing')) return undefined;
  const exitCode = intIn(field(b, 'exit_code'), 0, 255);
  return { state, ...(exitCode !== undefined ? { exitCode } : {}) };
}

export function archiveAnswerOf(text: string): { moved: boolean; pruned: number } | { error: string } {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) return { error: err };
  const b = blockOf(blocks, 'archive');
  if (!b) return { error: 'archive.sh gave no answer' };
  return { moved: field(b, 'moved') === '1', pruned: intIn(field(b, 'pruned'), 0, 1e9) ?? 0 };
}

export function leaseAnswerOf(text: string): LeaseResult | { error: string } {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) return { error: err };
  const b = blockOf(blocks, 'lease');
  const state = b && field(b, 'state');
  if (!b || !state || !['held', 'taken', 'released', 'free'].includes(state))
    return { error: 'lease.sh gave no answer' };
  const owner = field(b, 'owner') || undefined;
  const left = intIn(field(b, 'expires_in'), 0, 1e9);
  return {
    held: state === 'held',
    ...(owner !== undefined && (state === 'held' || state === 'taken') ? { owner } : {}),
    ...(left !== undefined && (state === 'held' || state === 'taken') ? { expiresInSeconds: left } : {}),
  };
}

export function portsOf(text: string): Set<number> | undefined {
  const b = blockOf(parseRecords(text), 'ports');
  if (!b) return undefined;
  const ports = new Set<number>();
  for (const v of fieldsOf(b, 'port')) {
    const p = intIn(v, 1, 65_535);
    if (p !== undefined) ports.add(p);
  }
  return ports;
}

export function scriptsHashOf(text: string): { hash: string } | { error: string } {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) return { error: err };
  const b = blockOf(blocks, 'scripts-hash');
  if (!b) return { error: 'scripts-hash.sh gave no answer' };
  return { hash: (field(b, 'hash') ?? '').trim() };
}

/** read-log.sh: the text (lines joined, each ended by a newline) and the byte size it covers. */
export function logOf(text: string): { text: string; offset: number } | { error: string } {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) return { error: err };
  const b = blockOf(blocks, 'log');
  const size = b && intIn(field(b, 'size'), 0, Number.MAX_SAFE_INTEGER);
  if (!b || size === undefined) return { error: 'read-log.sh gave no answer' };
  const lines = fieldsOf(b, 'line');
  return { text: lines.map((l) => `${l}\n`).join(''), offset: size };
}

/** checksum.sh: a file's size and SHA-256. */
export function checksumOf(text: string): { size: number; sha256: string } | { error: string } {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) return { error: err };
  const b = blockOf(blocks, 'checksum');
  const size = b && intIn(field(b, 'size')?.trim(), 0, Number.MAX_SAFE_INTEGER);
  const sha256 = b && field(b, 'sha256');
  if (size === undefined || !sha256 || !/^[0-9a-f]{64}$/.test(sha256)) return { error: 'checksum.sh gave no answer' };
  return { size, sha256 };
}

/** metrics.sh: whole metrics lines from an offset, the offset after them, and the file's size. */
export function metricsChunkOf(text: string): { size: number; next: number; lines: string[] } | { error: string } {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) return { error: err };
  const b = blockOf(blocks, 'metrics');
  const size = b && intIn(field(b, 'size'), 0, Number.MAX_SAFE_INTEGER);
  const next = b && intIn(field(b, 'next'), 0, Number.MAX_SAFE_INTEGER);
  if (!b || size === undefined || next === undefined || next > size) return { error: 'metrics.sh gave no answer' };
  return { size, next, lines: fieldsOf(b, 'line') };
}

/** progress.sh's signature of a metrics file: inode.size.mtime (decimal). */
const PROGRESS_SIG = /^\d{1,20}\.\d{1,20}\.\d{1,20}$/;

/**
 * progress.sh: the run dirs whose metrics file changed, with its signature and last line
 * (sanitized; none for a line that is not a JSON object). Blocks cut off, or naming something
 * that is not a run dir, are left out; an answer without its closing @@progress-read is an error.
 */
export function progressAnswerOf(text: string): ProgressRead[] | { error: string } {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) return { error: err };
  if (!blockOf(blocks, 'progress-read')) return { error: 'progress.sh gave no answer (cut short)' };
  const out: ProgressRead[] = [];
  for (const b of blocks) {
    if (b.kind !== 'progress' || !b.complete) continue;
    const dir = b.id ?? '';
    const sig = field(b, 'sig') ?? '';
    if (!parseRunDirName(dir) || !PROGRESS_SIG.test(sig)) continue;
    let metrics: Metrics | undefined;
    const mt = field(b, 'metrics');
    if (mt && mt.length <= OBSERVE_LIMITS.metricsChars) {
      metrics = metricsOfLine(mt); // half written, or not JSON: no metrics this time
    }
    out.push({ dir, sig, ...(metrics ? { metrics } : {}) });
  }
  return out;
}
