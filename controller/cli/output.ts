/**
 * Output helpers shared by the renderers: aligned tables, ages, output formats, and JSON/YAML.
 * Light on purpose (no yaml until YAML is asked for): every command's startup imports this.
 */
import { UsageError } from '../../config/errors.ts';

export type OutputFormat = 'table' | 'wide' | 'json' | 'yaml';

/** `-o` checked against what the command offers; a usage error (exit 2) names the choices. */
export function parseFormat<F extends OutputFormat>(v: string | undefined, allowed: readonly F[]): F {
  const f = (v ?? allowed[0]) as F;
  if (!allowed.includes(f)) throw new UsageError(`-o must be one of ${allowed.join(', ')} (got ${JSON.stringify(v)})`);
  return f;
}

/**
 * Terminal control characters (C0, DEL, C1) become '?': cells and lines show text read from files
 * and hosts (status messages, log tails), which must not move the cursor or retitle the terminal.
 */
export function clean(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

/** The first line of a message, cleaned: what fits in a table cell. */
export function firstLine(s: string | undefined): string {
  return s === undefined ? '-' : clean(s.split('\n')[0]);
}

/** Plain aligned columns, like kubectl: header in caps, two spaces between columns. */
export function table(header: string[], rows: string[][]): string {
  const cells = rows.map((r) => r.map((c) => clean(c ?? '')));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...cells.map(line)].join('\n');
}

export async function serialize(value: unknown, format: 'json' | 'yaml'): Promise<string> {
  if (format === 'json') return JSON.stringify(value, null, 2);
  const { stringify } = await import('./yaml.ts');
  return stringify(value, { lineWidth: 0 }).trimEnd();
}

/** "3m12s" style ages; '-' when the time is missing or not a time. */
export function age(fromIso: string | undefined, now: Date): string {
  const from = fromIso ? Date.parse(fromIso) : Number.NaN;
  if (Number.isNaN(from)) return '-';
  const s = Math.max(0, Math.floor((now.getTime() - from) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}
