/**
 * PURE: what the dashboard shows of a job and of a node, from the status and health the
 * controller holds (the same objects the status files are written from). Strings are left as
 * they are here; escaping is the renderer's job (html.ts) and the browser's (textContent).
 */
import type { JobStatus } from '../../api/status.ts';
import type { NodeHealth } from '../../backends/health.ts';
import { etaNow } from '../../format/progress.ts';
import type { GpuView } from '../telemetry.ts';

export interface JobRow {
  name: string;
  phase: string;
  reason?: string;
  /** First line of the message, at most 300 characters. */
  message?: string;
  attempt: number;
  restarts: number;
  infraRestarts: number;
  /** "ready/total" nodes, or the count asked for. */
  nodes: string;
  hosts: string[];
  owner?: string;
  revision?: string;
  percent?: number;
  etaSeconds?: number;
  samplesPerS?: number;
  step?: number;
  totalSteps?: number;
  loss?: number;
  epoch?: number;
  createdAt?: string;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown, max = 256): string | undefined => (typeof v === 'string' && v ? v.slice(0, max) : undefined);

/** The row of a job. `spec` (when known): what the spec file asks, for a job without a status yet. */
export function jobRowOf(
  name: string,
  status: JobStatus | undefined,
  nowMs: number,
  spec?: { nodes?: unknown; owner?: string },
): JobRow {
  const nodes = status?.nodes ?? [];
  const up = nodes.filter((n) => n.state === 'Running' || n.state === 'Succeeded').length;
  const want = spec?.nodes;
  const nodesCell = nodes.length
    ? `${up}/${nodes.length}`
    : typeof want === 'number'
      ? String(want)
      : want && typeof want === 'object' && 'min' in want && 'max' in want
        ? `${(want as { min: unknown }).min}-${(want as { max: unknown }).max}`
        : '-';
  const p = status?.progress;
  const e = status?.estimate;
  const loose = (status ?? {}) as Record<string, unknown>;
  const at = e?.at ? Date.parse(e.at) : Number.NaN;
  const row: JobRow = {
    name,
    phase: status?.phase ?? 'Pending',
    attempt: status?.attempt ?? 0,
    restarts: (status?.restarts?.infra ?? 0) + (status?.restarts?.training ?? 0),
    infraRestarts: status?.restarts?.infra ?? 0,
    nodes: nodesCell,
    hosts: nodes.map((n) => n.host),
  };
  const reason = str(status?.reason, 128);
  if (reason) row.reason = reason;
  const msg = str(status?.message?.split('\n', 1)[0], 300);
  if (msg) row.message = msg;
  const owner = str(loose.owner, 128) ?? spec?.owner;
  if (owner) row.owner = owner;
  const rev = str(loose.revision, 64);
  if (rev) row.revision = rev.slice(0, 12);
  if (e?.percent !== undefined) row.percent = e.percent;
  else if (num(p?.step) !== undefined && num(p?.total_steps))
    row.percent = Math.min(100, ((p!.step as number) / (p!.total_steps as number)) * 100);
  const eta = etaNow(e?.etaSeconds, Number.isNaN(at) ? nowMs : at, nowMs);
  if (eta !== undefined && (status?.phase === 'Running' || status?.phase === 'Starting')) row.etaSeconds = eta;
  const sps = e?.samplesPerS ?? num(p?.samples_per_s);
  if (sps !== undefined) row.samplesPerS = sps;
  for (const [k, f] of [
    ['step', 'step'],
    ['totalSteps', 'total_steps'],
    ['loss', 'loss'],
    ['epoch', 'epoch'],
  ] as const) {
    const v = num(p?.[f]);
    if (v !== undefined) row[k] = v;
  }
  if (status?.createdAt) row.createdAt = status.createdAt;
  return row;
}

export interface GpuCard {
  index: number;
  name: string;
  memoryTotalMiB: number;
  utilizationPct?: number;
  memoryUsedMiB?: number;
  temperatureC?: number;
  powerW?: number;
  /** Utilization over the last hour, oldest first: [ms, percent] (NaN: no sample). */
  spark: [number, number][];
}

export interface NodeCard {
  name: string;
  status: 'Ready' | 'NotReady' | 'Unknown';
  reason?: string;
  rttMs?: number;
  checkedAt?: string;
  gpus: GpuCard[];
}

const finite = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? v : undefined);

export function nodeCardOf(
  name: string,
  health: NodeHealth | undefined,
  gpus: readonly GpuView[],
  spark: (index: number) => { t: number[]; v: number[][] } | undefined,
): NodeCard {
  const card: NodeCard = { name, status: health?.status ?? 'Unknown', gpus: [] };
  if (health?.reasons[0]) card.reason = health.reasons[0].slice(0, 300);
  if (health?.rttMs !== undefined) card.rttMs = health.rttMs;
  if (health?.checkedAt) card.checkedAt = health.checkedAt;
  for (const g of gpus) {
    const s = spark(g.index);
    const c: GpuCard = {
      index: g.index,
      name: g.name.slice(0, 100),
      memoryTotalMiB: g.memoryTotalMiB,
      spark: s ? s.t.map((t, i) => [t, s.v[0][i]]) : [],
    };
    const l = g.latest;
    if (l) {
      const u = finite(l.utilizationPct);
      const m = finite(l.memoryUsedMiB);
      const t = finite(l.temperatureC);
      const w = finite(l.powerW);
      if (u !== undefined) c.utilizationPct = u;
      if (m !== undefined) c.memoryUsedMiB = m;
      if (t !== undefined) c.temperatureC = t;
      if (w !== undefined) c.powerW = w;
    }
    card.gpus.push(c);
  }
  return card;
}
