/**
 * GPU telemetry: what each Ready host's nvidia-smi said at every health probe (utilization,
 * memory used, temperature, power), kept in memory for the dashboard's charts and /metrics. One
 * fixed-size ring per GPU, allocated once: memory is bounded by hosts x GPUs x capacity whatever
 * runs for how long. Nothing here is invented: a host that is not Ready, or a field its board
 * does not report, leaves a gap (NaN).
 */
import { assert } from '../../config/errors.ts';
import type { GpuInfo, NodeHealth } from '../backends/health.ts';

/** The values of one sample, in this order in the ring. */
const GPU_FIELDS = ['utilizationPct', 'memoryUsedMiB', 'temperatureC', 'powerW'] as const;
export type GpuField = (typeof GPU_FIELDS)[number];
const F = GPU_FIELDS.length;

/** A fixed-capacity ring of (time, values) samples: a Float64Array of times, a Float32Array of values. */
export class SampleRing {
  readonly capacity: number;
  private readonly times: Float64Array;
  private readonly values: Float32Array;
  private start = 0;
  private count = 0;

  constructor(capacity: number) {
    assert(Number.isInteger(capacity) && capacity >= 2, () => `ring capacity ${capacity} must be an integer >= 2`);
    this.capacity = capacity;
    this.times = new Float64Array(capacity);
    this.values = new Float32Array(capacity * F).fill(Number.NaN);
  }

  get length(): number {
    return this.count;
  }

  /** Bytes held by the samples (fixed from construction). */
  get byteLength(): number {
    return this.times.byteLength + this.values.byteLength;
  }

  push(atMs: number, v: readonly number[]): void {
    const i = (this.start + this.count) % this.capacity;
    this.times[i] = atMs;
    for (let f = 0; f < F; f++) this.values[i * F + f] = v[f] ?? Number.NaN;
    if (this.count < this.capacity) this.count++;
    else this.start = (this.start + 1) % this.capacity;
  }

  /** Oldest first: [times, one array per field], only samples at or after `sinceMs`. */
  series(sinceMs = -Infinity): { t: number[]; v: number[][] } {
    const t: number[] = [];
    const v: number[][] = GPU_FIELDS.map(() => []);
    for (let k = 0; k < this.count; k++) {
      const i = (this.start + k) % this.capacity;
      if (this.times[i] < sinceMs) continue;
      t.push(this.times[i]);
      for (let f = 0; f < F; f++) v[f].push(this.values[i * F + f]);
    }
    return { t, v };
  }

  latest(): { atMs: number; values: number[] } | undefined {
    if (!this.count) return undefined;
    const i = (this.start + this.count - 1) % this.capacity;
    return { atMs: this.times[i], values: GPU_FIELDS.map((_, f) => this.values[i * F + f]) };
  }
}

export interface GpuView {
  host: string;
  index: number;
  name: string;
  memoryTotalMiB: number;
  latest?: { atMs: number; utilizationPct: number; memoryUsedMiB: number; temperatureC: number; powerW: number };
}

export interface TelemetryOptions {
  /** How much history to keep (default one hour). */
  historyMs?: number;
  /** How often samples come (the health cadence): sizes the rings. */
  everyMs?: number;
  /** At most this many samples per GPU, whatever the cadence (default 3600). */
  maxSamples?: number;
  /** At most this many GPUs per host are kept (a host's answer is not trusted to be small). */
  maxGpusPerHost?: number;
}

export class Telemetry {
  readonly capacity: number;
  private readonly maxGpus: number;
  private readonly rings = new Map<string, { ring: SampleRing; gpu: GpuInfo; host: string }>();
  private readonly ready = new Map<string, boolean>();

  constructor(o: TelemetryOptions = {}) {
    const history = o.historyMs ?? 3_600_000;
    const every = Math.max(1, o.everyMs ?? 30_000);
    this.capacity = Math.max(2, Math.min(o.maxSamples ?? 3600, Math.ceil(history / every) + 1));
    this.maxGpus = o.maxGpusPerHost ?? 64;
  }

  /** One health round: a sample per GPU of each Ready host; NotReady hosts get none. */
  record(nodes: readonly NodeHealth[], atMs: number): void {
    for (const n of nodes) {
      this.ready.set(n.name, n.status === 'Ready');
      if (n.status !== 'Ready') continue;
      for (const g of n.gpus.slice(0, this.maxGpus)) {
        if (!Number.isInteger(g.index) || g.index < 0 || g.index > 1023) continue;
        const key = `${n.name}/${g.index}`;
        let e = this.rings.get(key);
        if (!e) {
          e = { ring: new SampleRing(this.capacity), gpu: g, host: n.name };
          this.rings.set(key, e);
        }
        e.gpu = g;
        e.ring.push(atMs, [g.utilizationPct, g.memoryUsedMiB, g.temperatureC ?? Number.NaN, g.powerW ?? Number.NaN]);
      }
    }
  }

  isReady(host: string): boolean | undefined {
    return this.ready.get(host);
  }

  gpus(host?: string): GpuView[] {
    const out: GpuView[] = [];
    for (const { ring, gpu, host: h } of this.rings.values()) {
      if (host !== undefined && h !== host) continue;
      const l = ring.latest();
      out.push({
        host: h,
        index: gpu.index,
        name: gpu.name,
        memoryTotalMiB: gpu.memoryTotalMiB,
        ...(l
          ? {
              latest: {
                atMs: l.atMs,
                utilizationPct: l.values[0],
                memoryUsedMiB: l.values[1],
                temperatureC: l.values[2],
                powerW: l.values[3],
              },
            }
          : {}),
      });
    }
    return out.sort((a, b) => a.host.localeCompare(b.host) || a.index - b.index);
  }

  series(host: string, index: number, sinceMs?: number): { t: number[]; v: number[][] } | undefined {
    return this.rings.get(`${host}/${index}`)?.ring.series(sinceMs);
  }

  /** Bytes held by every ring's samples. */
  bytes(): number {
    let n = 0;
    for (const { ring } of this.rings.values()) n += ring.byteLength;
    return n;
  }
}
