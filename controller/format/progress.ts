/**
 * PURE display formatters for progress, shared by the CLI's tables (cli/render/) and the dashboard
 * (observability/web/): durations, rates, a bar, an ETA as of now. The estimate itself is core/progress.ts.
 */

/** An ETA computed at `atMs`, as of `nowMs` (never below zero). */
export function etaNow(etaSeconds: number | undefined, atMs: number, nowMs: number): number | undefined {
  if (etaSeconds === undefined || !Number.isFinite(etaSeconds)) return undefined;
  return Math.max(0, etaSeconds - Math.max(0, nowMs - atMs) / 1000);
}

/** `45s`, `3m12s`, `1h02m`, `2d03h`: two units at most. */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}

/** A rate for people: 1234.5 -> "1.2k", 87.3 -> "87.3", 0.25 -> "0.25". */
export function formatRate(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  if (v >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(0)}k`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)}k`;
  return String(Number(v.toPrecision(3)));
}

/** `[#######.............]` for a percentage. */
export function progressBar(percent: number | undefined, width = 20): string {
  if (percent === undefined || !Number.isFinite(percent)) return `[${' '.repeat(width)}]`;
  const full = Math.round((Math.max(0, Math.min(100, percent)) / 100) * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}
