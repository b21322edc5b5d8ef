/**
 * `ugro get jobs` as a table. Rows are built from the status and spec as parsed from YAML, not
 * from the schema-checked objects: the table needs a handful of fields, and loading the schema
 * library costs more than the whole listing. So each shown field is type-checked here, and
 * anything of the wrong shape shows as '-' (or, for a status without a phase, as no status).
 * projectStatus/projectSpec keep only what the table reads (what job-list.ts caches).
 */
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
  const p = isRec(raw.progress) ? { epoch: raw.progress.epoch, loss: raw.progress.loss } : raw.progress;
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
    revision: raw.revision,
    source: isRec(raw.source) ? { sync: raw.source.sync } : raw.source,
  };
}

/** The part of a parsed spec file the table reads: spec.nodes. */
export function projectSpec(raw: unknown): unknown {
  return isRec(raw) && isRec(raw.spec) ? { spec: { nodes: raw.spec.nodes } } : undefined;
}

export const JOB_COLUMNS = ['NAME', 'PHASE', 'ATTEMPT', 'RESTARTS', 'NODES', 'PROGRESS', 'AGE'];
export const WIDE_COLUMNS = ['HOSTS', 'RUN', 'MESSAGE'];
/** With -o wide, when some job follows git (status.revision): before MESSAGE. */
export const GIT_COLUMNS = ['REVISION', 'SYNC'];

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

function progressCell(p: unknown): string {
  if (!isRec(p)) return '-';
  return `epoch ${scalar(p.epoch) ?? '?'} loss ${scalar(p.loss) ?? '?'}`;
}

export function jobRow({ name, status, spec }: JobRowInput, wide: boolean, now: Date, git = false): string[] {
  const st = isRec(status) && typeof status.phase === 'string' ? status : undefined;
  const nodes = Array.isArray(st?.nodes) ? st.nodes.filter(isRec) : [];
  const row = [
    name,
    str(st?.phase, 32) ?? 'Pending',
    String(int(st?.attempt) ?? 0),
    restartsCell(st?.restarts),
    nodesCell(st, spec),
    progressCell(st?.progress),
    age(str(st?.createdAt, 64), now),
  ];
  if (!wide) return row;
  return [
    ...row,
    nodes.map((n) => str(n.host, 63) ?? '?').join(',') || '-',
    str(st?.runId, 100) ?? '-',
    ...(git ? gitCells(st) : []),
    firstLine(str(st?.message, 4096)),
  ];
}

export function jobsTable(rows: JobRowInput[], wide: boolean, now: Date): string {
  const git = wide && rows.some(followsGit);
  const wideColumns = git ? [...WIDE_COLUMNS.slice(0, -1), ...GIT_COLUMNS, 'MESSAGE'] : WIDE_COLUMNS;
  return table(
    wide ? [...JOB_COLUMNS, ...wideColumns] : JOB_COLUMNS,
    rows.map((r) => jobRow(r, wide, now, git)),
  );
}
