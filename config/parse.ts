/**
 * Read-then-validate helpers (docs/conventions.md, "Read, then validate"): YAML text in, a typed value or a list of
 * issues out, each issue carrying its field path and the file line it came from.
 * Pure: no file system access here; callers read the file.
 */
import { type Document, isMap, isNode, isSeq, type LineCounter } from 'yaml';
import type { z } from 'zod';
import type { FieldIssue } from './errors.ts';
import { emptyYamlDocument, parseYamlDocument, yamlToJS } from './yaml-guard.ts';

export type ParseResult<T> = { ok: true; value: T } | { ok: false; issues: FieldIssue[] };

/** Format a zod/JS path as `a.b[2].c`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out;
}

/** A parsed YAML document that can answer "which line is this field on?". */
export class YamlSource {
  private constructor(
    readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
    private readonly value: unknown,
  ) {}

  /**
   * Parse under the limits of yaml-guard.ts: a file past one (nesting, aliases, key length, documents) is one
   * issue with its line, as is a document whose aliases expand too far; syntax errors are issues too.
   */
  static parse(text: string): { source: YamlSource; issues: FieldIssue[] } {
    const r = parseYamlDocument(text);
    if (!r.ok) {
      const empty = emptyYamlDocument();
      return { source: new YamlSource(empty.doc, empty.lines, undefined), issues: [r.issue] };
    }
    const { doc, lines } = r;
    const issues: FieldIssue[] = doc.errors.map((e) => {
      // linePos is only filled with prettyErrors; derive it from the offset instead.
      const pos = e.linePos?.[0] ?? lines.linePos(e.pos[0]);
      return { path: '', message: `YAML syntax: ${e.message.split('\n')[0]}`, line: pos?.line, column: pos?.col };
    });
    if (issues.length) return { source: new YamlSource(doc, lines, undefined), issues };
    const v = yamlToJS(doc, lines);
    if (!v.ok) return { source: new YamlSource(doc, lines, undefined), issues: [v.issue] };
    return { source: new YamlSource(doc, lines, v.value), issues };
  }

  /** The document's value (built once by parse; undefined when parse gave issues). */
  toJS(): unknown {
    return this.value;
  }

  /**
   * Line of the deepest node that exists along `path`. With `key`, points at the map key
   * (useful for "unknown field" errors) rather than its value.
   */
  lineOf(path: readonly PropertyKey[], key?: string): { line?: number; column?: number } {
    let node: unknown = this.doc.contents;
    let best: unknown = node;
    const full = key === undefined ? path : [...path, key];
    for (let i = 0; i < full.length; i++) {
      const seg = full[i];
      if (isMap(node)) {
        const pair = node.items.find((p) => isNode(p.key) && (p.key as { value?: unknown }).value === seg);
        if (!pair) break;
        // For the last segment of an unknown-key lookup, point at the key itself.
        best = i === full.length - 1 && key !== undefined ? pair.key : (pair.value ?? pair.key);
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg];
        if (!item) break;
        best = item;
        node = item;
      } else break;
    }
    const range = isNode(best) ? best.range : undefined;
    if (!range) return {};
    const pos = this.lines.linePos(range[0]);
    return { line: pos.line, column: pos.col };
  }
}

/** Turn zod issues into FieldIssues located in the YAML source (if any). */
export function zodIssues(error: z.ZodError, source?: YamlSource, prefix: PropertyKey[] = []): FieldIssue[] {
  const out: FieldIssue[] = [];
  for (const issue of error.issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        out.push({
          path: formatPath([...path, k]),
          message: 'unknown field (check its spelling; remove it if it does not belong here)',
          ...(source?.lineOf(path, k) ?? {}),
        });
      }
      continue;
    }
    out.push({ path: formatPath(path), message: issue.message, ...(source?.lineOf(path) ?? {}) });
  }
  return out;
}

/** Parse YAML text and validate it against a zod schema in one pure step. */
export function parseYamlWith<S extends z.ZodType>(
  text: string,
  schema: S,
): ParseResult<z.output<S>> & { source?: YamlSource } {
  const { source, issues } = YamlSource.parse(text);
  if (issues.length) return { ok: false, issues, source };
  const raw = source.toJS();
  const res = schema.safeParse(raw);
  if (!res.success) return { ok: false, issues: zodIssues(res.error, source), source };
  return { ok: true, value: res.data, source };
}
