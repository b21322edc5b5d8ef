/**
 * `ugro get jobs` as a table. Rows are built from the status and spec as parsed from YAML, not
 * from the schema-checked objects: the table needs a handful of fields, and loading the schema
 * library costs more than the whole listing. So each shown field is type-checked here, and
 * anything of the wrong shape shows as '-' (or, for a status without a phase, as no status).
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
const scalar = (v: unknown): string | undefined =>
  typeof v === 'number' || typeof v === 'boolean' ? String(v) : str(v, 64);

export const JOB_COLUMNS = ['NAME', 'PHASE', 'ATTEMPT', 'NODES', 'PROGRESS', 'AGE'];
export const WIDE_COLUMNS = ['HOSTS', 'RUN', 'MESSAGE'];

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

function progressCell(p: unknown): string {
  if (!isRec(p)) return '-';
  return `epoch ${scalar(p.epoch) ?? '?'} loss ${scalar(p.loss) ?? '?'}`;
}

export function jobRow({ name, status, spec }: JobRowInput, wide: boolean, now: Date): string[] {
  const st = isRec(status) && typeof status.phase === 'string' ? status : undefined;
  const nodes = Array.isArray(st?.nodes) ? st.nodes.filter(isRec) : [];
  const row = [
    name,
    str(st?.phase, 32) ?? 'Pending',
    String(int(st?.attempt) ?? 0),
    nodesCell(st, spec),
    progressCell(st?.progress),
    age(str(st?.createdAt, 64), now),
  ];
  if (!wide) return row;
  return [
    ...row,
    nodes.map((n) => str(n.host, 63) ?? '?').join(',') || '-',
    str(st?.runId, 100) ?? '-',
    firstLine(str(st?.message, 4096)),
  ];
}

export function jobsTable(rows: JobRowInput[], wide: boolean, now: Date): string {
  return table(
    wide ? [...JOB_COLUMNS, ...WIDE_COLUMNS] : JOB_COLUMNS,
    rows.map((r) => jobRow(r, wide, now)),
  );
}
