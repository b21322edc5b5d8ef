/**
 * PURE: the loss curve of a job as a standalone SVG (steps on x, loss on y, one line per attempt,
 * each restart marked where its attempt begins). `ugro results --plot` writes it; the dashboard
 * shows it where JavaScript is off. Text is escaped; numbers are finite or left out. However many
 * points there are, each line is drawn through at most 4 per pixel column (thin.ts).
 */
import { escapeHtml } from './escape.ts';
import { thinIndices } from './thin.ts';

export interface PlotSeries {
  attempt: number;
  /** `n`: the point's index among all the attempt's points (the history may hold fewer). */
  points: readonly { step: number; loss: number; n?: number }[];
  /** How many points the attempt has had (the history keeps fewer of a very long run); else points.length. */
  total?: number;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

/** Round numbers for axis ticks: about `n` of them between lo and hi. */
export function ticks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : String(v));

export function lossSvg(
  series: readonly PlotSeries[],
  o: { title?: string; width?: number; height?: number } = {},
): string {
  const W = o.width ?? 720;
  const H = o.height ?? 360;
  const m = { l: 64, r: 16, t: 32, b: 44 };
  const finite = series.map((s) => s.points.filter((p) => Number.isFinite(p.step) && Number.isFinite(p.loss)));
  const title = escapeHtml(o.title ?? 'loss');
  const head =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="sans-serif" font-size="12" role="img" aria-label="${title}">` +
    `<rect width="${W}" height="${H}" fill="#fff"/><text x="${m.l}" y="20" font-size="14">${title}</text>`;
  // Loops, not Math.min(...points): a spread of ~125k points overflows the stack.
  let [x0, y0] = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
  let [x1, y1] = [Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY];
  for (const ps of finite)
    for (const p of ps) {
      if (p.step < x0) x0 = p.step;
      if (p.step > x1) x1 = p.step;
      if (p.loss < y0) y0 = p.loss;
      if (p.loss > y1) y1 = p.loss;
    }
  if (!(x0 <= x1)) return `${head}<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no metrics yet</text></svg>\n`;
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) {
    y0 -= Math.abs(y0) * 0.1 || 1;
    y1 += Math.abs(y1) * 0.1 || 1;
  }
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  if (x0 > 0 && x0 < (x1 - x0) * 0.2) x0 = 0;
  const X = (v: number) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (v: number) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  const f = (v: number) => v.toFixed(1);
  const parts: string[] = [head];
  parts.push(`<g stroke="#ddd">`);
  for (const t of ticks(y0, y1)) parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${f(Y(t))}" y2="${f(Y(t))}"/>`);
  parts.push('</g><g fill="#444">');
  for (const t of ticks(y0, y1))
    parts.push(`<text x="${m.l - 6}" y="${f(Y(t) + 4)}" text-anchor="end">${escapeHtml(fmt(t))}</text>`);
  for (const t of ticks(x0, x1))
    parts.push(`<text x="${f(X(t))}" y="${H - m.b + 16}" text-anchor="middle">${escapeHtml(fmt(t))}</text>`);
  parts.push(
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 8}" text-anchor="middle">step</text>` +
      `<text transform="translate(14 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">loss</text></g>`,
  );
  parts.push(
    `<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#888"/>`,
  );
  const sorted = series.map((s, k) => ({ attempt: s.attempt, ps: finite[k] })).sort((a, b) => a.attempt - b.attempt);
  const columns = W - m.l - m.r;
  sorted.forEach(({ attempt, ps }, i) => {
    if (!ps.length) return;
    const color = COLORS[i % COLORS.length];
    if (i > 0) {
      // A restart: where this attempt's curve begins.
      const x = f(X(ps[0].step));
      parts.push(
        `<g class="restart"><line x1="${x}" x2="${x}" y1="${m.t}" y2="${H - m.b}" stroke="${color}" ` +
          `stroke-dasharray="4 3"/><text x="${x}" y="${m.t + 12}" fill="${color}" dx="3">` +
          `restart: attempt ${escapeHtml(attempt)}</text></g>`,
      );
    }
    const keep = thinIndices(
      ps.map((p) => p.step),
      ps.map((p) => p.loss),
      columns,
    );
    const d = keep.map((k) => `${f(X(ps[k].step))},${f(Y(ps[k].loss))}`).join(' ');
    parts.push(
      `<polyline class="attempt" data-attempt="${escapeHtml(attempt)}" data-points="${ps.length}" ` +
        `data-drawn="${keep.length}" fill="none" stroke="${color}" stroke-width="1.5" points="${d}"/>`,
    );
    const ly = m.t + 14 + i * 14;
    parts.push(
      `<text x="${W - m.r - 6}" y="${ly}" text-anchor="end" fill="${color}">attempt ${escapeHtml(attempt)}` +
        ` (${ps.length} points)</text>`,
    );
  });
  parts.push('</svg>\n');
  return parts.join('');
}
