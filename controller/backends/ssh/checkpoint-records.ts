/**
 * PURE: checkpoints.sh's answers (list, delete) read with the one record parser (records.ts). The
 * checkpoint dir and the run dirs are written by jobs as much as by UGRO: names are checked against
 * what train.py and resumeFrom accept, numbers are integers in range, a sha256 is 64 hex digits,
 * metrics lines go through metricsOfLine, and a listing without its closing block is refused.
 */
import { metricsOfLine, parseRunDirName } from '../../api/run.ts';
import type { CheckpointFile, CheckpointListing, CheckpointRun } from '../api.ts';
import { HostError } from '../errors.ts';
import { blockOf, errorOf, field, fieldsOf, parseRecords } from '../records.ts';

/** A checkpoint name as checkpoints.sh accepts it (and train.py writes, and resumeFrom takes). */
export const CHECKPOINT_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** The step of a `step-N` name. */
export function stepOf(name: string): number | undefined {
  const m = /^step-(\d{1,15})$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

const nsToMs = (s: string | undefined) => (s && /^\d{1,19}$/.test(s) ? Number(BigInt(s) / 1_000_000n) : undefined);
const bytes = (s: string | undefined) => (s && /^\d{1,16}$/.test(s) ? Number(s) : undefined);

/** The most metrics lines kept per run dir (one per checkpoint step). */
const MAX_METRICS = 100_000;

export function checkpointListingOf(host: string, text: string): CheckpointListing {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) throw new HostError(host, 'other', `listing checkpoints failed: ${err}`);
  const end = blockOf(blocks, 'checkpoints');
  if (!end) throw new HostError(host, 'other', 'the checkpoint listing is incomplete (no @@checkpoints block)');
  const latestBlock = blockOf(blocks, 'latest');
  const latest = latestBlock && field(latestBlock, 'name');
  const out: CheckpointListing = {
    present: field(end, 'dir') === 'present',
    ...(latest && CHECKPOINT_NAME.test(latest) ? { latest } : {}),
    files: [],
    runs: [],
  };
  for (const b of blocks) {
    if (!b.complete) continue;
    if (b.kind === 'checkpoint') {
      const name = b.id ?? '';
      const sizeBytes = bytes(field(b, 'size'));
      const mtimeMs = nsToMs(field(b, 'mtime_ns'));
      if (!CHECKPOINT_NAME.test(name) || sizeBytes === undefined || mtimeMs === undefined) continue;
      const sha = field(b, 'sha256');
      const step = stepOf(name);
      const f: CheckpointFile = {
        name,
        sizeBytes,
        mtimeMs,
        ...(step !== undefined ? { step } : {}),
        ...(sha && /^[0-9a-f]{64}$/.test(sha) ? { sha256: sha } : {}),
      };
      out.files.push(f);
    } else if (b.kind === 'run') {
      const dir = b.id ?? '';
      if (!parseRunDirName(dir)) continue;
      const launchedAtMs = nsToMs(field(b, 'launched_at'));
      const finishedAtMs = nsToMs(field(b, 'finished_at'));
      const run: CheckpointRun = {
        dir,
        ...(launchedAtMs !== undefined ? { launchedAtMs } : {}),
        ...(finishedAtMs !== undefined ? { finishedAtMs } : {}),
        metrics: [],
      };
      for (const v of fieldsOf(b, 'metric').slice(0, MAX_METRICS)) {
        const sp = v.indexOf(' ');
        const step = sp > 0 ? bytes(v.slice(0, sp)) : undefined;
        if (step === undefined) continue;
        const m = metricsOfLine(v.slice(sp + 1));
        if (m) run.metrics.push({ step, metrics: m });
      }
      out.runs.push(run);
    }
  }
  return out;
}

export function deletedCheckpointsOf(host: string, text: string): { name: string; sizeBytes: number }[] {
  const blocks = parseRecords(text);
  const err = errorOf(blocks);
  if (err) throw new HostError(host, 'other', `deleting checkpoints failed: ${err}`);
  if (!blockOf(blocks, 'checkpoints'))
    throw new HostError(host, 'other', 'the checkpoint delete gave no answer (no @@checkpoints block)');
  const out: { name: string; sizeBytes: number }[] = [];
  for (const b of blocks) {
    if (b.kind !== 'deleted' || !b.complete) continue;
    const name = b.id ?? '';
    const sizeBytes = bytes(field(b, 'size'));
    if (CHECKPOINT_NAME.test(name) && sizeBytes !== undefined) out.push({ name, sizeBytes });
  }
  return out;
}
