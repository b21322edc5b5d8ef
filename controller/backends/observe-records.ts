/**
 * PURE: observe.sh's answer -> run parts (records.ts re-exports it). Host output is written by jobs
 * as much as by UGRO (a job can write any file in its run dir), so nothing is trusted: numbers are
 * checked integers in range, meta.json goes through parseRunMeta, stop reasons through
 * parseStopReason, metrics through metricsOfLine, out-of-memory records word by word, log lines
 * are capped.
 */
import {
  type CheckpointInfo,
  type Metrics,
  metricsOfLine,
  parseRunMeta,
  parseStopReason,
  type RankObservation,
  type RankOom,
  type RunPart,
} from '../api/run.ts';
import type { ObserveResult } from './api.ts';
import { HostError } from './errors.ts';
import { blockOf, errorOf, field, fieldsOf, intIn, PID_MAX, parseRecords, type RecordBlock } from './record-format.ts';

/** Limits on what one observed run part may carry, whatever its files hold. */
export const OBSERVE_LIMITS = {
  logLines: 20,
  logLineChars: 2000,
  ranks: 4096,
  metaChars: 16_384,
  metricsChars: 65_536,
} as const;

const MAX_RANK = 1_048_575;

/** Nanoseconds since the epoch (date +%s%N) -> ms. */
function nsToMs(s: string | undefined): number | undefined {
  return s !== undefined && /^\d{1,19}$/.test(s) ? Number(BigInt(s) / 1_000_000n) : undefined;
}

/** `SECONDS[.FRACTION]` (date -r FILE +%s.%N) -> ms. */
function secondsToMs(s: string | undefined): number | undefined {
  const m = s === undefined ? null : /^(\d{1,12})(?:\.(\d{1,9}))?$/.exec(s);
  if (!m) return undefined;
  return Number(m[1]) * 1000 + Math.floor(Number(`0.${m[2] ?? '0'}`) * 1000);
}

const cap = (line: string) => line.slice(0, OBSERVE_LIMITS.logLineChars);
/** Keep the last `logLines` lines. */
const pushCapped = (list: string[], line: string) => {
  list.push(cap(line));
  if (list.length > OBSERVE_LIMITS.logLines) list.shift();
};

/** rank-N.oom's words after the rank: KIND BATCH MICRO ACCUM EVIDENCE…, checked (a job can write the file). */
function rankOomOf(w: string[]): RankOom | undefined {
  const kind = w[0];
  if (kind !== 'kernel' && kind !== 'cuda') return undefined;
  const num = (s: string | undefined) => intIn(s, 1, 1_000_000);
  const [batch, micro, accum] = [num(w[1]), num(w[2]), num(w[3])];
  const evidence = w.slice(4).join(' ').slice(0, 500);
  // The three come together (rank.sh has all or none of them); a partial record has none.
  const sizes = batch !== undefined && micro !== undefined && accum !== undefined ? { batch, micro, accum } : {};
  return { kind, evidence, ...sizes };
}

/**
 * One `@@run DIR` block -> a RunPart, or why it cannot be one. meta.json must pass parseRunMeta
 * (against the directory name and the host it was found on): a job can write a run dir whose
 * meta claims another job, host or path (`"job": "../../x"`).
 */
function runPartOf(host: string, b: RecordBlock): { ok: true; part: RunPart } | { ok: false; why: string } {
  const dir = b.id ?? '';
  if (!b.complete) return { ok: false, why: 'observe output was cut off inside this run' };
  const metaText = field(b, 'meta') ?? '';
  if (!metaText) return { ok: false, why: 'meta.json is empty' };
  if (metaText.length > OBSERVE_LIMITS.metaChars) return { ok: false, why: 'meta.json is too large' };
  let raw: unknown;
  try {
    raw = JSON.parse(metaText);
  } catch {
    return { ok: false, why: 'meta.json is not JSON (half written?)' };
  }
  const meta = parseRunMeta(dir, host, raw);
  if (!meta.ok) return { ok: false, why: meta.why };

  const pid = intIn(field(b, 'pid'), 1, PID_MAX);
  const ranks = new Map<number, RankObservation>();
  const rankOf = (r: number): RankObservation | undefined => {
    let o = ranks.get(r);
    if (!o && ranks.size < OBSERVE_LIMITS.ranks) {
      o = { rank: r, localRank: -1, pid: 0 };
      ranks.set(r, o);
    }
    return o;
  };
  for (const v of fieldsOf(b, 'rank')) {
    // RANK LOCAL_RANK GROUP_RANK PID NS (GROUP_RANK may be empty: two spaces)
    const w = v.split(' ');
    const rank = intIn(w[0], 0, MAX_RANK);
    const localRank = intIn(w[1], 0, 65_535);
    const rpid = intIn(w[3], 1, PID_MAX);
    if (rank === undefined || localRank === undefined || rpid === undefined) continue;
    const o = rankOf(rank);
    if (o) Object.assign(o, { localRank, pid: rpid });
  }
  for (const v of fieldsOf(b, 'rankexit')) {
    // RANK CODE SECONDS.NANOS
    const w = v.split(' ');
    const rank = intIn(w[0], 0, MAX_RANK);
    const code = intIn(w[1], 0, 255);
    if (rank === undefined || code === undefined) continue;
    const o = rankOf(rank);
    if (!o) continue;
    o.exitCode = code;
    const at = secondsToMs(w[2]);
    if (at !== undefined) o.exitedAt = at;
  }
  for (const v of fieldsOf(b, 'ranklog')) {
    const sp = v.indexOf(' ');
    const rank = intIn(sp < 0 ? v : v.slice(0, sp), 0, MAX_RANK);
    if (rank === undefined) continue;
    const o = rankOf(rank);
    if (!o) continue;
    o.logTail ??= [];
    pushCapped(o.logTail, sp < 0 ? '' : v.slice(sp + 1));
  }
  for (const v of fieldsOf(b, 'rankoom')) {
    // RANK KIND BATCH MICRO ACCUM EVIDENCE (rank.sh; `-` for a value it was not given)
    const w = v.split(' ');
    const rank = intIn(w[0], 0, MAX_RANK);
    const o = rank === undefined ? undefined : ranks.get(rank);
    const oom = rankOomOf(w.slice(1));
    if (o && oom && o.exitCode !== undefined && o.exitCode !== 0) o.oom = oom;
  }
  for (const v of fieldsOf(b, 'rankbeat')) {
    // RANK MS (milliseconds since the rank last touched its heartbeat file, by the host's clock)
    const w = v.split(' ');
    const rank = intIn(w[0], 0, MAX_RANK);
    const ms = intIn(w[1], 0, 10 * 365 * 86_400_000);
    if (rank === undefined || ms === undefined) continue;
    const o = ranks.get(rank);
    if (o && o.exitCode === undefined) o.heartbeatAgeS = ms / 1000;
  }
  for (const v of fieldsOf(b, 'rankproc')) {
    // RANK STATE (one letter of /proc/PID/stat: R, S, D, T, Z, …)
    const w = v.split(' ');
    const rank = intIn(w[0], 0, MAX_RANK);
    const o = rank === undefined ? undefined : ranks.get(rank);
    if (o && o.exitCode === undefined && /^[A-Za-z]$/.test(w[1] ?? '')) o.procState = w[1];
  }
  const agentLogTail: string[] = [];
  for (const v of fieldsOf(b, 'agentlog')) pushCapped(agentLogTail, v);

  let metrics: Metrics | undefined;
  const mt = field(b, 'metrics');
  if (mt && mt.length <= OBSERVE_LIMITS.metricsChars) {
    metrics = metricsOfLine(mt); // a partial line: no metrics this time
  }
  const exitCode = intIn(field(b, 'exit_code'), 0, 255);
  const stopReason = parseStopReason(field(b, 'cancelled')?.trim());
  const launchedAtMs = nsToMs(field(b, 'launched_at'));
  const finishedAtMs = nsToMs(field(b, 'finished_at'));
  const part: RunPart = {
    dir,
    host,
    meta: meta.meta,
    alive: pid !== undefined && field(b, 'alive') === '1',
    ranks: [...ranks.values()].sort((a, b) => a.rank - b.rank),
    agentLogTail,
    ...(pid !== undefined ? { pid } : {}),
    ...(exitCode !== undefined ? { exitCode } : {}),
    ...(stopReason ? { stopReason } : {}),
    ...(launchedAtMs !== undefined ? { launchedAtMs } : {}),
    ...(finishedAtMs !== undefined ? { finishedAtMs } : {}),
    ...(metrics ? { metrics } : {}),
  };
  return { ok: true, part };
}

/** observe.sh's whole answer. A HostError when it reports an error or was cut short (no closing `@@observe` block). */
export function observeResultOf(host: string, text: string): ObserveResult {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) throw new HostError(host, 'other', `observe failed: ${err}`);
  if (!blockOf(blocks, 'observe'))
    throw new HostError(host, 'other', 'observe output is incomplete (no @@observe block)');
  const out: ObserveResult = { parts: [], rejected: [] };
  const ck = blockOf(blocks, 'checkpoint');
  const checkpoint = ck && checkpointOf(host, ck);
  if (checkpoint) out.checkpoint = checkpoint;
  for (const b of blocks) {
    if (b.kind === 'rejected') out.rejected.push({ dir: b.id ?? '', why: field(b, 'why') ?? 'rejected by observe.sh' });
    if (b.kind !== 'run') continue;
    const r = runPartOf(host, b);
    if (r.ok) out.parts.push(r.part);
    else out.rejected.push({ dir: b.id ?? '', why: r.why });
  }
  return out;
}

/** CHECKPOINT_NAME: what train.py names them (`step-N`), and never a path. */
const CHECKPOINT_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/** observe.sh's @@checkpoint block: the job's newest complete checkpoint on this host. */
function checkpointOf(host: string, b: RecordBlock): CheckpointInfo | undefined {
  const name = field(b, 'name') ?? '';
  const size = intIn(field(b, 'size')?.trim(), 0, Number.MAX_SAFE_INTEGER);
  const mtimeMs = nsToMs(field(b, 'mtime_ns'));
  if (!CHECKPOINT_NAME.test(name) || size === undefined || mtimeMs === undefined) return undefined;
  const step = /^step-(\d{1,15})$/.exec(name);
  return { host, name, sizeBytes: size, mtimeMs, ...(step ? { step: Number(step[1]) } : {}) };
}
