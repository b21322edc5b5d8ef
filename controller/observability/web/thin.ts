/**
 * PURE: fewer points to draw, the same picture. A loss curve can hold hundreds of thousands of
 * points; a chart is a few hundred pixels wide. Per column of x (a bucket), the first, last,
 * lowest and highest point are kept (M4): a line through them covers the same pixels as one through
 * all of them. Loops only: spreading a big array into Math.min/max overflows the stack (~125k).
 */

/** The lowest and highest finite value (undefined when there is none). */
export function extent(values: ArrayLike<number>): { lo: number; hi: number } | undefined {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? { lo, hi } : undefined;
}

/**
 * Indices (ascending) of the points to draw: at most 4 per bucket of x, plus the first point with
 * no finite y in a bucket (a gap stays a gap). Points without a finite x are left out. With no
 * more than 4 x `buckets` points, all of them.
 */
export function thinIndices(xs: ArrayLike<number>, ys: ArrayLike<number | null>, buckets: number): number[] {
  const n = xs.length;
  const b = Math.max(1, Math.floor(buckets));
  if (n <= 4 * b) {
    const all: number[] = [];
    for (let i = 0; i < n; i++) if (Number.isFinite(xs[i])) all.push(i);
    return all;
  }
  const r = extent(xs);
  if (!r) return [];
  const span = r.hi - r.lo;
  const first = new Int32Array(b).fill(-1);
  const last = new Int32Array(b).fill(-1);
  const low = new Int32Array(b).fill(-1);
  const high = new Int32Array(b).fill(-1);
  const gap = new Int32Array(b).fill(-1);
  for (let i = 0; i < n; i++) {
    const x = xs[i];
    if (!Number.isFinite(x)) continue;
    const k = span > 0 ? Math.min(b - 1, Math.max(0, Math.floor(((x - r.lo) / span) * b))) : 0;
    const y = ys[i];
    if (y === null || !Number.isFinite(y)) {
      if (gap[k] < 0) gap[k] = i;
      continue;
    }
    if (first[k] < 0) {
      first[k] = i;
      low[k] = i;
      high[k] = i;
    }
    last[k] = i;
    if (y < (ys[low[k]] as number)) low[k] = i;
    if (y > (ys[high[k]] as number)) high[k] = i;
  }
  const keep = new Uint8Array(n);
  for (const a of [first, last, low, high, gap]) for (let k = 0; k < b; k++) if (a[k] >= 0) keep[a[k]] = 1;
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (keep[i]) out.push(i);
  return out;
}

/** A series' points as the chart's arrays, thinned to `buckets` columns; `idx`: each point's index. */
export function thinSeries(
  points: readonly { step: number; loss: number; n?: number }[],
  buckets: number,
): { steps: number[]; loss: (number | null)[]; idx: number[] } {
  const xs = new Float64Array(points.length);
  const ys = new Float64Array(points.length);
  for (let i = 0; i < points.length; i++) {
    xs[i] = points[i].step;
    ys[i] = points[i].loss;
  }
  const keep = thinIndices(xs, ys, buckets);
  return {
    steps: keep.map((i) => points[i].step),
    loss: keep.map((i) => (Number.isFinite(points[i].loss) ? points[i].loss : null)),
    idx: keep.map((i) => points[i].n ?? i),
  };
}
