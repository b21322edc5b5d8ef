/**
 * PURE: a job's checkpoints as `ugro checkpoints`, retention and promote see them: every host's
 * listing (checkpoints.sh) merged into one row per checkpoint (the same name and content on several
 * hosts is one row with several holders), each with the attempt that wrote it and the metrics at its
 * step. The writer is the run part on the holder's host that was running when the file got its
 * mtime (rank 0 writes the checkpoint and the metrics lines in its own run dir, on the same host); a
 * copy (a restart's, a replica's) has the copy's mtime and takes its writer from a holder that has one.
 */
import { type Metrics, parseRunDirName } from '../api/run.ts';

/** One file as a host lists it (backends/api.ts CheckpointFile). */
export interface ListedFile {
  name: string;
  step?: number;
  sizeBytes: number;
  mtimeMs: number;
  sha256?: string;
}

/** One run dir of the job on that host (backends/api.ts CheckpointRun). */
export interface ListedRun {
  dir: string;
  launchedAtMs?: number;
  finishedAtMs?: number;
  metrics: { step: number; metrics: Metrics }[];
}

export interface HostListing {
  host: string;
  dir: string;
  latest?: string;
  files: ListedFile[];
  runs: ListedRun[];
}

export interface CheckpointRow {
  name: string;
  step?: number;
  sizeBytes: number;
  sha256?: string;
  /** Newest mtime among the copies. */
  mtimeMs: number;
  /** Hosts holding a copy, and the dir there. */
  copies: { host: string; dir: string; latest: boolean }[];
  /** The run part that wrote it, when it can be told. */
  writer?: { dir: string; host: string; specHash: string; attempt: number };
  /** The metrics line at its step, or the nearest before, of the writer's run. */
  metrics?: Metrics;
  /** GitOps: the commit its spec was applied from (known for the job's current spec only). */
  revision?: string;
}

/**
 * launched_at, finished_at and the file's mtime are all the holder's own clock: the run that
 * contains the mtime wrote it. A little slack only when none does (a timestamp file written late).
 */
const SLACK_MS = 2000;

function writerOn(l: HostListing, f: ListedFile): CheckpointRow['writer'] {
  const within = (slack: number) => {
    let best: ListedRun | undefined;
    for (const r of l.runs) {
      const at = r.launchedAtMs;
      if (at === undefined || at > f.mtimeMs + slack) continue;
      if (r.finishedAtMs !== undefined && f.mtimeMs > r.finishedAtMs + slack) continue;
      if (!best || at > (best.launchedAtMs ?? 0)) best = r;
    }
    return best;
  };
  const run = within(0) ?? within(SLACK_MS);
  const n = run && parseRunDirName(run.dir);
  return run && n ? { dir: run.dir, host: l.host, specHash: n.hash, attempt: n.attempt } : undefined;
}

function metricsOf(l: HostListing, dir: string, step: number | undefined): Metrics | undefined {
  if (step === undefined) return undefined;
  return l.runs.find((r) => r.dir === dir)?.metrics.find((m) => m.step === step)?.metrics;
}

/**
 * One row per checkpoint, newest step first (then newest mtime). `current`: the job's current spec
 * hash and the revision it was applied from, to name the revision of its attempts.
 */
export function checkpointRows(
  listings: readonly HostListing[],
  current?: { specHash?: string; revision?: string },
): CheckpointRow[] {
  const rows = new Map<string, CheckpointRow>();
  /** The mtime of the copy the writer was found on: the earliest copy is the original. */
  const origin = new Map<string, number>();
  for (const l of listings) {
    for (const f of l.files) {
      const key = `${f.name}\0${f.sha256 ?? `size:${f.sizeBytes}`}`;
      let row = rows.get(key);
      if (!row) {
        row = {
          name: f.name,
          ...(f.step !== undefined ? { step: f.step } : {}),
          sizeBytes: f.sizeBytes,
          ...(f.sha256 ? { sha256: f.sha256 } : {}),
          mtimeMs: f.mtimeMs,
          copies: [],
        };
        rows.set(key, row);
      }
      row.mtimeMs = Math.max(row.mtimeMs, f.mtimeMs);
      row.copies.push({ host: l.host, dir: l.dir, latest: l.latest === f.name });
      const w = writerOn(l, f);
      if (w && f.mtimeMs <= (origin.get(key) ?? Number.POSITIVE_INFINITY)) {
        row.writer = w;
        origin.set(key, f.mtimeMs);
        const m = metricsOf(l, w.dir, f.step);
        if (m) row.metrics = m;
        else delete row.metrics;
      }
    }
  }
  const out = [...rows.values()].map((row) => {
    if (row.writer && current?.revision && row.writer.specHash === current.specHash) row.revision = current.revision;
    row.copies.sort((a, b) => a.host.localeCompare(b.host));
    return row;
  });
  return out.sort((a, b) => (b.step ?? -1) - (a.step ?? -1) || b.mtimeMs - a.mtimeMs);
}

/** A metrics value as a number, for ordering by it (undefined: absent or not numeric). */
export function metricValue(m: Metrics | undefined, key: string): number | undefined {
  const v = m?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
