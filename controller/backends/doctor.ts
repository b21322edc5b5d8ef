/**
 * `ugro doctor`, the pure half: reads what the hosts answered (ssh/doctor.ts gathers it raw: the
 * health probe, doctor.sh, the listeners' and connects' records, the all-reduce ranks') and judges
 * the lab as a whole: version skew, each host's collective interface, every ordered pair's
 * reachability on the rendezvous ports, clock offsets, an all-reduce figure per pair, free disk where
 * checkpoints go and the GPUs' health (gpu-health.ts). A failed check makes its host NotReady with the
 * reason; `ok` is false when any check failed. Host output is not trusted: numbers are checked.
 */
import type { Cluster } from '../../config/cluster.ts';
import { type GpuHealth, judgeGpuHealth, parseGpuHealthCsv, type XidEvent } from './gpu-health.ts';
import type { NodeHealth } from './health.ts';
import { field, fieldsOf, parseRecords, type RecordBlock } from './records.ts';

/** What ssh/doctor.ts hands over (its DoctorRaw, structurally: this file sees no backend folder). */
export interface DoctorInput {
  rdzvHost: string;
  basePort: number;
  hosts: { name: string; health: NodeHealth; doctor: Exec }[];
  listen: Record<string, Exec>;
  connect: Record<string, Exec>;
  targets: Record<string, { address: string; port: number; listening: boolean }>;
  allreduce?: {
    backend: 'gloo' | 'nccl';
    ranks: string[];
    pairs: [number, number][];
    outputs: { host: string; exec: Exec }[];
  };
  allreduceSkipped?: string;
  ms: number;
}
interface Exec {
  stdout: string;
  stderr?: string;
  code: number | null;
  error?: string;
}

export type Level = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  check: 'ssh' | 'health' | 'versions' | 'network' | 'clock' | 'allreduce' | 'disk' | 'gpu';
  level: Exclude<Level, 'ok'>;
  /** The host it is held against (NotReady when level is fail). */
  hosts: string[];
  message: string;
}

export interface DoctorHost {
  name: string;
  status: 'Ready' | 'NotReady';
  /** Why NotReady: the health probe's reasons and the doctor's failed checks. */
  reasons: string[];
  versions: { driver?: string; cuda?: string; torch?: string; torchCuda?: string; nccl?: string; python?: string };
  /** The interface gloo/NCCL use to reach the rendezvous host. */
  iface?: string;
  clockOffsetMs?: number;
  rttMs?: number;
  checkpointDisk?: { path: string; freeGiB: number; totalGiB: number };
  gpus: GpuHealth[];
  xids: XidEvent[];
}

export interface DoctorPair {
  from: string;
  to: string;
  port: number;
  result: 'ok' | 'refused' | 'timeout' | 'unreachable' | 'wrong-answer' | 'error' | 'not-tested';
  connectMs?: number;
  message?: string;
}

export interface DoctorAllReduce {
  a: string;
  b: string;
  latencyUs?: number;
  busbwGBps?: number;
  timeMs?: number;
  bytes?: number;
  error?: string;
}

export interface DoctorReport {
  ok: boolean;
  rendezvous: { host: string; basePort: number };
  hosts: DoctorHost[];
  pairs: DoctorPair[];
  allreduce: { backend?: 'gloo' | 'nccl'; skipped?: string; pairs: DoctorAllReduce[] };
  /** Versions that differ between hosts: field -> host -> value. */
  skew: { field: keyof DoctorHost['versions']; values: Record<string, string> }[];
  checks: DoctorCheck[];
  ms: number;
}

const num = (s: string | undefined, max = 1e12): number | undefined => {
  if (s === undefined || !/^\d{1,15}(\.\d{1,9})?$/.test(s)) return undefined;
  const n = Number(s);
  return n <= max ? n : undefined;
};
const text = (s: string | undefined, max = 200) => s?.replace(/[^\x20-\x7e]/g, '?').slice(0, max);
const blocks = (e: Exec | undefined, kind: string): RecordBlock[] =>
  parseRecords(e?.stdout ?? '').filter((b) => b.kind === kind);
const why = (e: Exec | undefined): string => {
  if (!e) return 'no answer';
  const b = blocks(e, 'error')[0];
  return text(e.error ?? (b && field(b, 'why')) ?? e.stderr?.split('\n').slice(-1)[0] ?? `exit ${e.code}`, 300)!;
};

/** Versions that must match for collectives to work at all: a skew there fails, elsewhere it warns. */
const MUST_MATCH: (keyof DoctorHost['versions'])[] = ['torch', 'nccl'];
const SHOWN: (keyof DoctorHost['versions'])[] = ['driver', 'cuda', 'torch', 'torchCuda', 'nccl', 'python'];

export function doctorReport(cluster: Pick<Cluster, 'health'>, raw: DoctorInput): DoctorReport {
  const checks: DoctorCheck[] = [];
  const fail = (check: DoctorCheck['check'], hosts: string[], message: string) =>
    checks.push({ check, level: 'fail', hosts, message });
  const warn = (check: DoctorCheck['check'], hosts: string[], message: string) =>
    checks.push({ check, level: 'warn', hosts, message });

  // Per host: the health probe's verdict, doctor.sh's facts, the GPUs' health.
  const rankInfo = new Map<string, RecordBlock>();
  for (const o of raw.allreduce?.outputs ?? []) {
    const b = blocks(o.exec, 'rank')[0];
    if (b) rankInfo.set(o.host, b);
  }
  const hosts: DoctorHost[] = raw.hosts.map(({ name, health, doctor }) => {
    const d = blocks(doctor, 'doctor')[0];
    const g = blocks(doctor, 'gpu-health')[0];
    const r = rankInfo.get(name);
    const gpus = g && field(g, 'rc') === '0' ? parseGpuHealthCsv(fieldsOf(g, 'line').join('\n')) : [];
    for (const reason of health.reasons) fail('health', [name], reason);
    for (const w of health.warnings) warn('health', [name], w);
    if (!d && !health.reasons.length) fail('ssh', [name], `doctor.sh failed: ${why(doctor)}`);
    const gRc = g && field(g, 'rc');
    if (g && gRc !== '0' && gRc !== 'notfound')
      warn('gpu', [name], `nvidia-smi's health query failed (exit ${text(gRc, 20)}): ${text(fieldsOf(g, 'line')[0])}`);
    for (const gpu of gpus)
      for (const f of judgeGpuHealth(gpu)) {
        // A degraded link width is the health probe's reason too: say it once.
        if (f.level === 'fail' && health.reasons.some((x) => x.startsWith(`GPU ${gpu.index} PCIe link`))) continue;
        (f.level === 'fail' ? fail : warn)('gpu', [name], f.message);
      }
    const freeKb = num(d && field(d, 'disk_free_kb'));
    const totalKb = num(d && field(d, 'disk_total_kb'));
    const diskPath = text(d && field(d, 'disk_path'), 300);
    const checkpointDisk =
      freeKb !== undefined && totalKb !== undefined && diskPath
        ? { path: diskPath, freeGiB: freeKb / 1048576, totalGiB: totalKb / 1048576 }
        : undefined;
    if (checkpointDisk && checkpointDisk.freeGiB < cluster.health.minFreeDiskGb)
      fail(
        'disk',
        [name],
        `only ${checkpointDisk.freeGiB.toFixed(1)} GiB free for checkpoints at ${checkpointDisk.path} ` +
          `(< ${cluster.health.minFreeDiskGb} GiB)`,
      );
    const iface = text(d && field(d, 'iface'), 40) || undefined;
    if (d && !iface) warn('network', [name], `no interface routes to the rendezvous host ${raw.rdzvHost}`);
    return {
      name,
      status: 'Ready',
      reasons: [],
      versions: {
        driver: text(gpus[0]?.driver ?? health.gpus[0]?.driver, 40),
        cuda: text(d && field(d, 'cuda_driver'), 20),
        torch: text(r ? field(r, 'torch') : health.torch?.version, 40),
        torchCuda: health.torch ? text(health.torch.cuda, 20) : undefined,
        nccl: text(r && field(r, 'nccl'), 20),
        python: text(health.python, 20),
      },
      ...(iface ? { iface } : {}),
      ...(health.clockOffsetMs !== undefined ? { clockOffsetMs: health.clockOffsetMs } : {}),
      ...(health.rttMs !== undefined ? { rttMs: health.rttMs } : {}),
      ...(checkpointDisk ? { checkpointDisk } : {}),
      gpus,
      xids: health.xids ?? [],
    };
  });

  // Skew: a version two hosts report differently ('none' for nccl on CPU builds counts as a value).
  const skew: DoctorReport['skew'] = [];
  for (const f of SHOWN) {
    const values: Record<string, string> = {};
    for (const h of hosts) if (h.versions[f] !== undefined) values[h.name] = h.versions[f]!;
    if (new Set(Object.values(values)).size < 2) continue;
    skew.push({ field: f, values });
    const list = Object.entries(values)
      .map(([h, v]) => `${h} ${v}`)
      .join(', ');
    if (MUST_MATCH.includes(f)) fail('versions', Object.keys(values), `${f} differs between hosts: ${list}`);
    else warn('versions', Object.keys(values), `${f} differs between hosts: ${list}`);
  }

  // Clock offsets beyond the cluster's limit (health's judge words it; the doctor counts it as failed).
  for (const h of hosts)
    if (h.clockOffsetMs !== undefined && Math.abs(h.clockOffsetMs) > cluster.health.maxClockOffsetMs)
      fail('clock', [h.name], `clock is ${Math.round(h.clockOffsetMs)} ms off the controller's (enable NTP/chrony)`);

  // Every ordered pair: did `from` reach `to`'s listener on the rendezvous range?
  const names = raw.hosts.map((h) => h.name);
  const pairs = judgePairs(names, raw);
  const failedPairs = pairs.filter((p) => p.result !== 'ok');
  for (const p of failedPairs)
    checks.push({
      check: 'network',
      level: 'fail',
      hosts: blame(
        failedPairs.map((x) => [x.from, x.to]),
        [p.from, p.to],
      ),
      message: `${p.from} -> ${p.to}:${p.port}: ${p.result}${p.message ? ` (${p.message})` : ''}`,
    });

  // The all-reduce: one figure per pair of the group; a rank's failure fails every pair.
  const ar: DoctorReport['allreduce'] = { pairs: [] };
  if (raw.allreduceSkipped) ar.skipped = raw.allreduceSkipped;
  if (raw.allreduce) {
    const a = raw.allreduce;
    ar.backend = a.backend;
    const figures = new Map<string, RecordBlock>();
    for (const o of a.outputs) for (const b of blocks(o.exec, 'allreduce')) if (b.id) figures.set(b.id, b);
    // The rank that failed says why (the others only saw their peer go); else one that never finished.
    const failed =
      a.outputs.find((o) => o.exec.error || o.exec.code !== 0) ?? a.outputs.find((o) => !blocks(o.exec, 'done').length);
    for (const [i, j] of a.pairs) {
      const b = figures.get(`${i}-${j}`);
      const pair = { a: a.ranks[i], b: a.ranks[j] };
      if (b)
        ar.pairs.push({
          ...pair,
          latencyUs: num(field(b, 'lat_us'), 1e9),
          busbwGBps: num(field(b, 'busbw_gbps'), 1e6),
          timeMs: num(field(b, 'time_ms'), 1e9),
          bytes: num(field(b, 'bytes')),
        });
      else {
        const error = failed ? `${failed.host}: ${why(failed.exec)}` : 'no figure';
        ar.pairs.push({ ...pair, error });
      }
    }
    const bad = ar.pairs.filter((p) => p.error);
    for (const p of bad)
      checks.push({
        check: 'allreduce',
        level: 'fail',
        hosts: blame(
          bad.map((x) => [x.a, x.b]),
          [p.a, p.b],
        ),
        message: `all-reduce ${p.a} <-> ${p.b} (${a.backend}) failed: ${p.error}`,
      });
  }
  // Pairs left out of the group (a host that does not reach the others) get no figure: say so.
  const inGroup = new Set(raw.allreduce?.ranks ?? []);
  for (let i = 0; i < names.length; i++)
    for (let j = i + 1; j < names.length; j++)
      if (!(inGroup.has(names[i]) && inGroup.has(names[j])) && !raw.allreduceSkipped?.startsWith('not run'))
        ar.pairs.push({ a: names[i], b: names[j], error: 'not run: the two hosts do not both reach the group' });

  for (const h of hosts) {
    h.reasons = checks.filter((c) => c.level === 'fail' && c.hosts.includes(h.name)).map((c) => c.message);
    if (h.reasons.length) h.status = 'NotReady';
  }
  return {
    ok: !checks.some((c) => c.level === 'fail'),
    rendezvous: { host: raw.rdzvHost, basePort: raw.basePort },
    hosts,
    pairs,
    allreduce: ar,
    skew,
    checks,
    ms: raw.ms,
  };
}

/**
 * Every ordered pair of `names`: did `from` reach `to`'s listener (the doctor's, and a job's
 * preflight, which runs the same round on the gang's hosts)?
 */
export function judgePairs(names: string[], raw: Pick<DoctorInput, 'basePort' | 'connect' | 'targets'>): DoctorPair[] {
  const pairs: DoctorPair[] = [];
  for (const from of names)
    for (const to of names) {
      if (from === to) continue;
      const t = raw.targets[to];
      const port = t?.port ?? raw.basePort;
      const c = raw.connect[from];
      if (!c) {
        pairs.push({ from, to, port, result: 'not-tested', message: `${from} did not answer over ssh` });
        continue;
      }
      const b = blocks(c, 'connect').find((x) => field(x, 'peer') === to);
      if (!b) {
        pairs.push({ from, to, port, result: 'error', message: `no answer from the connect test: ${why(c)}` });
        continue;
      }
      const res = field(b, 'result');
      const result: DoctorPair['result'] =
        res === 'ok' || res === 'refused' || res === 'timeout' || res === 'unreachable' || res === 'wrong-answer'
          ? res
          : 'error';
      const connectMs = num(field(b, 'ms'), 1e7);
      const listening = t?.listening ?? false;
      // Without a listener (the host did not answer over ssh) a connect can only be refused or time out.
      const message = [text(field(b, 'error')), listening ? '' : `no test listener: ${to} did not answer over ssh`]
        .filter(Boolean)
        .join('; ');
      pairs.push({
        from,
        to,
        port,
        result: result === 'ok' && !listening ? 'error' : result,
        ...(connectMs !== undefined ? { connectMs } : {}),
        ...(message ? { message } : {}),
      });
    }
  return pairs;
}

/**
 * Which end of a failed pair to hold it against: the one in more failed pairs (a host cut off fails
 * every pair it is in; its peers only the one with it); both when they are even.
 */
export function blame(failed: [string, string][], pair: [string, string]): string[] {
  const count = (h: string) => failed.filter(([a, b]) => a === h || b === h).length;
  const [x, y] = pair.map(count);
  return x === y ? pair : [x > y ? pair[0] : pair[1]];
}
