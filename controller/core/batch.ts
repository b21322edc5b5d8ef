/**
 * PURE: spec.batch split over ranks (each rank's share, offset, micro batch and gradient
 * accumulation) by GPU memory, evenly, or by measured speed (spec.batch.balance; the measuring and
 * the decision to re-split are core/balance.ts's), and the micro batch caps learned from
 * out-of-memory failures (status.batchOverrides: a rank that ran out of memory gets its micro
 * batch halved and its accumulation raised, so its share, the global batch and the gradient stay
 * what they were).
 */
import { UgroError } from '../../config/errors.ts';
import type { BatchOverride, RankSpeed } from '../api/status.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import type { LaunchPart, RankBatch } from './types.ts';

export type BalanceMode = 'speed' | 'memory' | 'even';

/**
 * spec.batch.balance when unset. `memory`: see README "Balancing by measured speed" for the lab
 * figures behind keeping it (a speed split costs a restart at the first checkpoint to measure).
 */
export const DEFAULT_BALANCE: BalanceMode = 'memory';

/**
 * Split a global batch over ranks in proportion to `weights` (GPU memory, speed), by largest remainder:
 * the shares are integers >= 1 that add up to `global`. A share above `maxMicro` accumulates
 * gradients over micro batches of at most that size.
 */
export function splitBatch(global: number, weights: number[], maxMicro?: number): RankBatch[] {
  const n = weights.length;
  // The job's input, not a bug: the schema allows any global >= 1 and placement may give more ranks (a known gap:
  // it should be refused before placement, issue 16 S6).
  if (global < n)
    throw new UgroError(
      `a global batch of ${global} cannot give ${n} ranks one sample each: raise spec.batch.global to at least ${n}`,
    );
  const w = weights.map((x) => (x > 0 ? x : 1));
  const total = w.reduce((a, b) => a + b, 0);
  // Each rank gets one sample first, then the rest in proportion.
  const rest = global - n;
  const exact = w.map((x) => (rest * x) / total);
  const shares = exact.map((e) => 1 + Math.floor(e));
  let left = global - shares.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, r: e - Math.floor(e) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (let k = 0; left > 0; k++, left--) shares[order[k % n].i]++;
  let offset = 0;
  return shares.map((batch) => {
    const accum = maxMicro ? Math.ceil(batch / maxMicro) : 1;
    const r = { batch, offset, micro: Math.ceil(batch / accum), accum };
    offset += batch;
    return r;
  });
}

/**
 * A rank's batch with its micro batch at most `max`: the same share in ceil(batch / max) micro
 * batches of equal size (the last one smaller at most by one less than their number).
 */
export function capMicro(r: RankBatch, max: number): RankBatch {
  if (r.micro <= max) return r;
  const accum = Math.ceil(r.batch / Math.max(1, max));
  return { ...r, micro: Math.ceil(r.batch / accum), accum };
}

/** One rank of a placement: where it runs and on which GPU. */
export interface RankSlot {
  host: string;
  localRank: number;
  /** Its GPU's index on the host and memory (absent on a CPU host). */
  gpu?: number;
  memoryMiB?: number;
}

export function slotsOf(parts: readonly LaunchPart[]): RankSlot[] {
  return parts.flatMap((p) =>
    Array.from({ length: p.nproc }, (_, i) => {
      const g = p.gpus?.[i];
      return { host: p.host, localRank: i, ...(g ? { gpu: g.index, memoryMiB: g.memoryMiB } : {}) };
    }),
  );
}

/** The measured speed of a slot: the same host, local rank and GPU. */
export function speedOf(speeds: readonly RankSpeed[], s: RankSlot): number | undefined {
  return speeds.find((x) => x.host === s.host && x.localRank === s.localRank && x.gpu === s.gpu)?.samplesPerS;
}

/**
 * The weights of a split and what they are: `speed` needs a measured speed for every rank, else
 * the ranks are split by memory (the first run of a job measures them).
 */
export function splitWeights(
  mode: BalanceMode,
  slots: readonly RankSlot[],
  speeds: readonly RankSpeed[] = [],
): { weights: number[]; basis: BalanceMode } {
  if (mode === 'even') return { weights: slots.map(() => 1), basis: 'even' };
  if (mode === 'speed') {
    const w = slots.map((s) => speedOf(speeds, s));
    if (w.every((x): x is number => x !== undefined)) return { weights: w, basis: 'speed' };
  }
  return { weights: slots.map((s) => s.memoryMiB ?? 1), basis: 'memory' };
}

/**
 * With spec.batch: each node's ranks get their share of the global batch (spec.batch.balance).
 * No rank runs a micro batch larger than the memory split would give it: that split is what a
 * GPU's memory was sized for, so a faster GPU's larger share accumulates gradients instead. A
 * rank with an override (host, local rank: it ran out of memory) runs micro batches of at most
 * its cap.
 */
export function batchSplit(
  job: TrainingJob,
  parts: LaunchPart[],
  overrides: readonly BatchOverride[] = [],
  speeds: readonly RankSpeed[] = [],
): { parts: LaunchPart[]; basis?: BalanceMode } {
  const b = job.spec.batch;
  if (!b) return { parts };
  const slots = slotsOf(parts);
  const { weights, basis } = splitWeights(b.balance ?? DEFAULT_BALANCE, slots, speeds);
  const byMemory = splitBatch(b.global, splitWeights('memory', slots).weights);
  const split = splitBatch(b.global, weights, b.maxMicroBatch).map((r, i) => capMicro(r, byMemory[i].batch));
  let k = 0;
  const out = parts.map((p) => {
    const batches = split.slice(k, k + p.nproc).map((r, local) => {
      const o = overrides.find((x) => x.host === p.host && x.localRank === local);
      return o ? capMicro(r, o.maxMicro) : r;
    });
    k += p.nproc;
    return { ...p, batches };
  });
  return { parts: out, basis };
}

/** batchSplit's parts. */
export function withBatches(
  job: TrainingJob,
  parts: LaunchPart[],
  overrides: readonly BatchOverride[] = [],
  speeds: readonly RankSpeed[] = [],
): LaunchPart[] {
  return batchSplit(job, parts, overrides, speeds).parts;
}

/** What an out-of-memory rank ran with, as its rank.sh recorded it (the values UGRO gave it). */
export interface OomRank {
  host: string;
  localRank: number;
  batch: number;
  micro: number;
  accum: number;
}

/**
 * The next micro batch of a rank that ran out of memory: half of what it ran (rounded up), its
 * accumulation what the same share then needs. Undefined when it ran micro batches of 1: nothing
 * left to halve (a plain failure).
 */
export function halvedMicro(r: Pick<OomRank, 'batch' | 'micro'>): { micro: number; accum: number } | undefined {
  if (r.micro <= 1) return undefined;
  const max = Math.ceil(r.micro / 2);
  const next = capMicro({ batch: r.batch, offset: 0, micro: r.micro, accum: 1 }, max);
  return { micro: next.micro, accum: next.accum };
}

/**
 * Record the halved micro batch of an out-of-memory rank (once per failed attempt): the override
 * list with that rank's cap replaced, and the event's text ("gpu2 out of memory: micro batch 28 ->
 * 14, accumulation 1 -> 2"). Undefined when there is nothing to halve or the attempt is recorded.
 */
export function oomOverride(
  overrides: readonly BatchOverride[] | undefined,
  r: OomRank,
  attempt: number,
  nprocOnHost = 1,
): { overrides: BatchOverride[]; message: string } | undefined {
  const list = overrides ?? [];
  if (list.some((o) => o.attempt === attempt)) return undefined;
  const next = halvedMicro(r);
  if (!next) return undefined;
  const o: BatchOverride = { host: r.host, localRank: r.localRank, maxMicro: next.micro, attempt };
  const where = nprocOnHost > 1 ? `${r.host} (local rank ${r.localRank})` : r.host;
  return {
    overrides: [...list.filter((x) => x.host !== r.host || x.localRank !== r.localRank), o].slice(-MAX_OVERRIDES),
    message:
      `${where} out of memory: micro batch ${r.micro} -> ${next.micro}, ` + `accumulation ${r.accum} -> ${next.accum}`,
  };
}

/** Most overrides kept in status (one per rank that ever ran out of memory). */
export const MAX_OVERRIDES = 64;
