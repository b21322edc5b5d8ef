/**
 * PURE: every trial of a sweep on one chart (steps on x, the objective on y, one line per trial,
 * the best one thicker), its rungs marked as dashed vertical lines. `ugro results sweep --plot`
 * writes it and the dashboard's sweep page shows it. Text is escaped; each line is drawn through
 * at most 4 points per pixel column (thin.ts).
 */
import { escapeHtml } from './escape.ts';
import { ticks } from './svg.ts';
import { thinIndices } from './thin.ts';

export interface TrialCurve {
  name: string;
  points: readonly { step: number; value: number }[];
  best?: boolean;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const fmt = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(1) : String(v));

export function sweepSvg(
  curves: readonly TrialCurve[],
  rungs: readonly number[],
  o: { title: string; metric: string; width?: number; height?: number },
): string {
  const W = o.width ?? 760;
  const H = o.height ?? 380;
  const m = { l: 64, r: 150, t: 32, b: 44 };
  const title = escapeHtml(o.title);
  const head =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
    `font-family="sans-serif" font-size="12" role="img" aria-label="${title}">` +
    `<rect width="${W}" height="${H}" fill="#fff"/><text x="${m.l}" y="20" font-size="14">${title}</text>`;
  const finite = curves.map((c) => c.points.filter((p) => Number.isFinite(p.step) && Number.isFinite(p.value)));
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const ps of finite)
    for (const p of ps) {
      x0 = Math.min(x0, p.step);
      x1 = Math.max(x1, p.step);
      y0 = Math.min(y0, p.value);
      y1 = Math.max(y1, p.value);
    }
  if (!(x0 <= x1)) return `${head}<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no metrics yet</text></svg>\n`;
  for (const r of rungs) x1 = Math.max(x1, r);
  if (x0 > 0) x0 = 0;
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) [y0, y1] = [y0 - (Math.abs(y0) * 0.1 || 1), y1 + (Math.abs(y1) * 0.1 || 1)];
  const pad = (y1 - y0) * 0.05;
  [y0, y1] = [y0 - pad, y1 + pad];
  const X = (v: number) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const Y = (v: number) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  const f = (v: number) => v.toFixed(1);
  const out: string[] = [head, '<g stroke="#ddd">'];
  for (const t of ticks(y0, y1)) out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${f(Y(t))}" y2="${f(Y(t))}"/>`);
  out.push('</g><g fill="#444">');
  for (const t of ticks(y0, y1))
    out.push(`<text x="${m.l - 6}" y="${f(Y(t) + 4)}" text-anchor="end">${escapeHtml(fmt(t))}</text>`);
  for (const t of ticks(x0, x1))
    out.push(`<text x="${f(X(t))}" y="${H - m.b + 16}" text-anchor="middle">${escapeHtml(fmt(t))}</text>`);
  out.push(
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 8}" text-anchor="middle">step</text>` +
      `<text transform="translate(14 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">` +
      `${escapeHtml(o.metric)}</text></g>`,
    `<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#888"/>`,
  );
  rungs.forEach((r, k) => {
    const x = f(X(r));
    out.push(
      `<g class="rung" data-step="${r}"><line x1="${x}" x2="${x}" y1="${m.t}" y2="${H - m.b}" stroke="#999" ` +
        `stroke-dasharray="5 4"/><text x="${x}" y="${m.t + 12}" dx="3" fill="#666">rung ${k + 1}</text></g>`,
    );
  });
  curves.forEach((c, i) => {
    const ps = finite[i];
    if (!ps.length) return;
    const color = COLORS[i % COLORS.length];
    const keep = thinIndices(
      ps.map((p) => p.step),
      ps.map((p) => p.value),
      W - m.l - m.r,
    );
    const d = keep.map((k) => `${f(X(ps[k].step))},${f(Y(ps[k].value))}`).join(' ');
    out.push(
      `<polyline class="trial" data-trial="${escapeHtml(c.name)}" data-points="${ps.length}" fill="none" ` +
        `stroke="${color}" stroke-width="${c.best ? 3 : 1.5}" points="${d}"/>`,
      `<text x="${W - m.r + 8}" y="${m.t + 12 + i * 14}" fill="${color}">` +
        `${escapeHtml(c.name)}${c.best ? ' (best)' : ''}</text>`,
    );
  });
  out.push('</svg>\n');
  return out.join('');
}
