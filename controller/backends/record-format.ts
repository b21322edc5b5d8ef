/**
 * PURE: the record format of UGRO's host scripts (scripts/runtime/lib.sh describes it): blocks of
 * `@@KIND [ID]`, then `key=value` lines, each closed by `@@end`; and the checked integer every
 * reader uses. records.ts re-exports it with the readers.
 */
export interface RecordBlock {
  kind: string;
  /** The rest of the header line after `@@KIND ` (a run dir's name), if any. */
  id?: string;
  /** In order; a key may repeat (rank=, line=, port=). */
  fields: [key: string, value: string][];
  /** Closed by `@@end`: false when the output was cut off inside it. */
  complete: boolean;
}

const HEADER = /^@@([a-z][a-z0-9-]*)(?: (.*))?$/;
const KEY = /^[a-z_][a-z0-9_-]*$/;

/** Split script output into blocks. Lines outside a block, and lines that are not `key=value`, are ignored. */
export function parseRecords(text: string): RecordBlock[] {
  const blocks: RecordBlock[] = [];
  let cur: RecordBlock | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('@@')) {
      if (line === '@@end') {
        if (cur) cur.complete = true;
        cur = undefined;
        continue;
      }
      const m = HEADER.exec(line);
      if (m) {
        cur = { kind: m[1], ...(m[2] !== undefined ? { id: m[2] } : {}), fields: [], complete: false };
        blocks.push(cur);
        continue;
      }
    }
    if (!cur) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq);
    if (KEY.test(key)) cur.fields.push([key, line.slice(eq + 1)]);
  }
  return blocks;
}

/** The first value of `key` in a block. */
export function field(b: RecordBlock, key: string): string | undefined {
  return b.fields.find(([k]) => k === key)?.[1];
}

/** Every value of `key` in a block, in order. */
export function fieldsOf(b: RecordBlock, key: string): string[] {
  return b.fields.filter(([k]) => k === key).map(([, v]) => v);
}

/** A decimal integer in [min, max], or undefined (no signs, no exponents, no NaN). */
export function intIn(s: string | undefined, min: number, max: number): number | undefined {
  if (s === undefined || !/^\d{1,15}$/.test(s)) return undefined;
  const n = Number(s);
  return n >= min && n <= max ? n : undefined;
}

/** The first `@@error` block's `why`, if the script reported one. */
export function errorOf(blocks: RecordBlock[]): string | undefined {
  const e = blocks.find((b) => b.kind === 'error');
  return e ? (field(e, 'why') ?? 'failed') : undefined;
}

/** The first complete block of `kind`. */
export function blockOf(blocks: RecordBlock[], kind: string): RecordBlock | undefined {
  return blocks.find((b) => b.kind === kind && b.complete);
}

/** Linux's largest pid_max. */
export const PID_MAX = 4_194_304;
