/**
 * `ugro get jobs` as a table. Rows are built from the status and spec as parsed from YAML, not
 * from the schema-checked objects: the table needs a handful of fields, and loading the schema
 * library costs more than the whole listing. So each shown field is type-checked here, and
 * anything of the wrong shape shows as '-' (or, for a status without a phase, as no status).
 * projectStatus/projectSpec keep only what the table reads (what job-list.ts caches).
 */
import { etaNow, formatDuration, formatRate, progressBar } from '../../format/progress.ts';
import { age, firstLine, table } from '../output.ts';

export interface JobRowInput {
  name: string;
  /** The parsed status file, of any shape; undefined when there is none. */
  status?: unknown;
  /** The parsed spec file, of any shape; only read when there is no status. */
  spec?: unknown;
}

type Rec = Record<string, unknown>;
const isRec = (v: unknown): v is Rec => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown, max = 256): string | undefined => (typeof v === 'string' ? v.slice(0, max) : undefined);
const int = (v: unknown): number | undefined => (Number.isSafeInteger(v) ? (v as number) : undefined);
/** Numbers to 4 significant digits (a loss of 0.16666666666666666 shows as 0.1667). */
const scalar = (v: unknown): string | undefined => {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  return typeof v === 'boolean' ? String(v) : str(v, 64);
};

/** The part of a parsed status file the table reads (the rest is dropped, types are not checked here). */
export function projectStatus(raw: unknown): unknown {
  if (!isRec(raw)) return raw;
  const p = isRec(raw.progress)
    ? {
        epoch: raw.progress.epoch,
        loss: raw.progress.loss,
        step: raw.progress.step,
        total_steps: raw.progress.total_steps,
        samples_per_s: raw.progress.samples_per_s,
      }
    : raw.progress;
  return {
    phase: raw.phase,
    attempt: raw.attempt,
    nodes: Array.isArray(raw.nodes)
      ? raw.nodes.map((n) => (isRec(n) ? { host: n.host, state: n.state } : n))
      : raw.nodes,
    progress: p,
    restarts: isRec(raw.restarts) ? { infra: raw.restarts.infra, training: raw.restarts.training } : raw.restarts,
    createdAt: raw.createdAt,
    runId: raw.runId,
    message: typeof raw.message === 'string' ? raw.message.split('\n', 1)[0].slice(0, 4096) : raw.message,
    estimate: isRec(raw.estimate)
      ? { percent: raw.estimate.percent, etaSeconds: raw.estimate.etaSeconds, at: raw.estimate.at }
      : raw.estimate,
    revision: raw.revision,
    owner: raw.owner,
    source: isRec(raw.source) ? { sync: raw.source.sync } : raw.source,
  };
}

/** The part of a parsed spec file the table reads: spec.nodes. */
export function projectSpec(raw: unknown): unknown {
  // A Sweep file is no job (`ugro get sweeps` lists it): marked so the listing leaves it out.
  if (isRec(raw) && raw.kind === 'Sweep') return { sweep: true };
  return isRec(raw) && isRec(raw.spec) ? { spec: { nodes: raw.spec.nodes } } : undefined;
}

const JOB_COLUMNS = ['NAME', 'PHASE', 'ATTEMPT', 'RESTARTS', 'NODES', 'PROGRESS', 'AGE'];
const WIDE_COLUMNS = ['HOSTS', 'RUN', 'MESSAGE'];
/** With -o wide, when some job follows git (status.revision): before MESSAGE. */
const GIT_COLUMNS = ['REVISION', 'SYNC'];

/**
 * When some job has an owner (the controller records the authenticated one in status.owner): after
 * AGE, in the default table and in wide alike (issue 17: who runs what is seen without asking).
 */
const OWNER_COLUMN = 'OWNER';

/** A job that follows git: its revision as 8 hex digits, and Synced/OutOfSync. */
function gitCells(st: Rec | undefined): string[] {
  const rev = str(st?.revision, 64);
  const sync = isRec(st?.source) ? str(st.source.sync, 16) : undefined;
  return [rev && /^[0-9a-f]{8,}$/.test(rev) ? rev.slice(0, 8) : '-', sync ?? '-'];
}

function followsGit(r: JobRowInput): boolean {
  return isRec(r.status) && (r.status.revision !== undefined || isRec(r.status.source));
}

/** Nodes: "ready/total" from the status, else the count the spec asks for, else '-'. */
function nodesCell(st: Rec | undefined, spec: unknown): string {
  const nodes = Array.isArray(st?.nodes) ? st.nodes.filter(isRec) : [];
  if (nodes.length) {
    const up = nodes.filter((n) => n.state === 'Running' || n.state === 'Succeeded').length;
    return `${up}/${nodes.length}`;
  }
  const want = isRec(spec) && isRec(spec.spec) ? spec.spec.nodes : undefined;
  if (int(want) !== undefined) return String(want);
  if (isRec(want) && int(want.min) !== undefined && int(want.max) !== undefined) return `${want.min}-${want.max}`;
  return '-';
}

/** Restarts after failures: the total, with the infrastructure ones named when there are any ("3 (2 infra)"). */
function restartsCell(r: unknown): string {
  if (!isRec(r)) return '0';
  const infra = int(r.infra) ?? 0;
  const training = int(r.training) ?? 0;
  return infra ? `${infra + training} (${infra} infra)` : String(training);
}

/** With ETA columns (some job reports total_steps or samples_per_s): after PROGRESS. */
const ETA_COLUMNS = ['ETA', 'SAMPLES/S'];

const finite = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Percent done: the controller's estimate, else step / total_steps of the last metrics line. */
function percentOf(st: Rec | undefined): number | undefined {
  const e = isRec(st?.estimate) ? finite(st.estimate.percent) : undefined;
  if (e !== undefined) return Math.max(0, Math.min(100, e));
  const p = isRec(st?.progress) ? st.progress : undefined;
  const step = finite(p?.step);
  const total = finite(p?.total_steps);
  return step !== undefined && total ? Math.max(0, Math.min(100, (step / total) * 100)) : undefined;
}

/** "45% loss 0.25" when the total is known, else "epoch 3 loss 0.25"; with `bar`, a bar in front. */
function progressCell(st: Rec | undefined, bar: boolean): string {
  const p = st?.progress;
  const pct = percentOf(st);
  if (!isRec(p)) return bar && pct !== undefined ? `${progressBar(pct)} ${pct.toFixed(0)}%` : '-';
  const text =
    pct !== undefined
      ? `${pct.toFixed(pct < 10 ? 1 : 0)}% loss ${scalar(p.loss) ?? '?'}`
      : `epoch ${scalar(p.epoch) ?? '?'} loss ${scalar(p.loss) ?? '?'}`;
  return bar && pct !== undefined ? `${progressBar(pct)} ${text}` : text;
}

/** ETA (as of now, while running) and samples/s. */
function etaCells(st: Rec | undefined, now: Date): string[] {
  const e = isRec(st?.estimate) ? st.estimate : undefined;
  const at = typeof e?.at === 'string' ? Date.parse(e.at) : Number.NaN;
  const running = st?.phase === 'Running' || st?.phase === 'Starting';
  const eta = running ? etaNow(finite(e?.etaSeconds), Number.isNaN(at) ? now.getTime() : at, now.getTime()) : undefined;
  const sps = isRec(st?.progress) ? finite(st.progress.samples_per_s) : undefined;
  return [eta !== undefined ? formatDuration(eta) : '-', running && sps !== undefined ? formatRate(sps) : '-'];
}

function reportsProgress(r: JobRowInput): boolean {
  const st = isRec(r.status) ? r.status : undefined;
  return (
    isRec(st?.estimate) ||
    (isRec(st?.progress) && (st.progress.total_steps !== undefined || st.progress.samples_per_s !== undefined))
  );
}

function hasOwner(r: JobRowInput): boolean {
  return isRec(r.status) && typeof r.status.owner === 'string';
}

export function jobRow(
  { name, status, spec }: JobRowInput,
  wide: boolean,
  now: Date,
  o: { git?: boolean; owner?: boolean } = {},
): string[] {
  const st = isRec(status) && typeof status.phase === 'string' ? status : undefined;
  const nodes = Array.isArray(st?.nodes) ? st.nodes.filter(isRec) : [];
  const row = [
    name,
    str(st?.phase, 32) ?? 'Pending',
    String(int(st?.attempt) ?? 0),
    restartsCell(st?.restarts),
    nodesCell(st, spec),
    progressCell(st, false),
    age(str(st?.createdAt, 64), now),
    ...(o.owner ? [str(st?.owner, 64) ?? '-'] : []),
  ];
  if (!wide) return row;
  return [
    ...row,
    nodes.map((n) => str(n.host, 63) ?? '?').join(',') || '-',
    str(st?.runId, 100) ?? '-',
    ...(o.git ? gitCells(st) : []),
    firstLine(str(st?.message, 4096)),
  ];
}

export function jobsTable(rows: JobRowInput[], wide: boolean, now: Date, opts: { bars?: boolean } = {}): string {
  const git = wide && rows.some(followsGit);
  const owner = rows.some(hasOwner);
  const columns = owner ? [...JOB_COLUMNS, OWNER_COLUMN] : JOB_COLUMNS;
  const wideColumns = [...WIDE_COLUMNS.slice(0, -1), ...(git ? GIT_COLUMNS : []), 'MESSAGE'];
  return withProgress(
    rows,
    wide ? [...columns, ...wideColumns] : columns,
    rows.map((r) => jobRow(r, wide, now, { git, owner })),
    now,
    opts.bars ?? false,
  );
}

/**
 * The table with, when some job reports them, ETA and SAMPLES/S after PROGRESS; with `bars` (get
 * jobs -w), a progress bar in front of each PROGRESS cell.
 */
function withProgress(rows: JobRowInput[], header: string[], cells: string[][], now: Date, bars: boolean): string {
  const at = header.indexOf('PROGRESS');
  const eta = rows.some(reportsProgress);
  const sts = rows.map((r) => (isRec(r.status) && typeof r.status.phase === 'string' ? r.status : undefined));
  const out = cells.map((c, i) => {
    const row = [...c];
    if (bars) row[at] = progressCell(sts[i], true);
    if (eta) row.splice(at + 1, 0, ...etaCells(sts[i], now));
    return row;
  });
  return table(eta ? [...header.slice(0, at + 1), ...ETA_COLUMNS, ...header.slice(at + 1)] : header, out);
}
