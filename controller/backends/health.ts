/**
 * Node health, the backend-neutral half: a pure parser of the probe's output (scripts/runtime/probe.sh)
 * and a pure judge that turns facts into Ready/NotReady with a reason a person can act on. Running the
 * probe is a backend's job (ssh/probe.ts).
 * Nothing here ever reports a node healthy that was not actually probed.
 */
import type { Cluster, Host } from '../../config/cluster.ts';
import { HostOutputError } from './errors.ts';
import { HARDWARE_XIDS, parseXidLines, recentXids, type XidEvent, type XidScan, xidMessage } from './gpu-health.ts';

export interface GpuInfo {
  index: number;
  name: string;
  memoryTotalMiB: number;
  memoryUsedMiB: number;
  utilizationPct: number;
  driver: string;
  /** Degrees Celsius (`temperature.gpu`), when the board reports it. */
  temperatureC?: number;
  /** Watts (`power.draw`), when the board reports it ("[N/A]" on some). */
  powerW?: number;
  /** `pci.bus_id` (00000000:01:00.0): how the kernel log's XID lines name the GPU. */
  busId?: string;
  /** PCIe link width now and at most (`pcie.link.width.current`, `.max`): narrower is a degraded link. */
  linkWidth?: number;
  linkWidthMax?: number;
}

export interface ProbeFacts {
  remoteClockNs?: bigint;
  hostname?: string;
  os?: string;
  kernel?: string;
  python?: { version?: string; executable?: string; error?: string };
  torch?: { version: string; cuda: string } | null;
  gpu:
    | { state: 'ok'; gpus: GpuInfo[] }
    | { state: 'notfound' }
    | { state: 'failed'; exitCode: string; message: string };
  disk?: { path: string; freeGiB: number; totalGiB: number };
  /** The kernel log's XID lines of this boot (GPU hosts only). */
  xid?: XidScan;
}

function sections(out: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  let cur = '';
  for (const line of out.split('\n')) {
    const hdr = /^@@(\w+)$/.exec(line);
    if (hdr) {
      cur = hdr[1];
      m.set(cur, []);
    } else if (cur) m.get(cur)!.push(line);
  }
  return m;
}

/**
 * Parse `nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,driver_version
 * [,temperature.gpu,power.draw[,pci.bus_id,pcie.link.width.current,pcie.link.width.max]]
 * --format=csv,noheader,nounits` (the optional fields are missing in older captures; a board without
 * a sensor says "[N/A]", which is left out).
 */
export function parseNvidiaSmiCsv(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const f = line.split(',').map((s) => s.trim());
    if (f.length < 6 || !/^\d+$/.test(f[0]))
      throw new HostOutputError(`unexpected nvidia-smi line: ${JSON.stringify(line)}`);
    const num = (s: string) => (/^\d+(\.\d+)?$/.test(s) ? Number(s) : NaN); // "[N/A]" on some boards
    const temperatureC = f.length > 6 ? num(f[6]) : NaN;
    const powerW = f.length > 7 ? num(f[7]) : NaN;
    const busId = f.length > 8 && /^[0-9A-Fa-f:.]{1,20}$/.test(f[8]) ? f[8] : undefined;
    const linkWidth = f.length > 10 ? num(f[9]) : NaN;
    const linkWidthMax = f.length > 10 ? num(f[10]) : NaN;
    gpus.push({
      index: Number(f[0]),
      name: f[1],
      memoryTotalMiB: num(f[2]),
      memoryUsedMiB: num(f[3]),
      utilizationPct: num(f[4]),
      driver: f[5],
      ...(Number.isNaN(temperatureC) ? {} : { temperatureC }),
      ...(Number.isNaN(powerW) ? {} : { powerW }),
      ...(busId ? { busId } : {}),
      ...(Number.isNaN(linkWidth) || Number.isNaN(linkWidthMax) ? {} : { linkWidth, linkWidthMax }),
    });
  }
  return gpus;
}

export function parseProbe(stdout: string): ProbeFacts {
  const s = sections(stdout);
  const first = (k: string) =>
    s
      .get(k)
      ?.find((l) => l.trim() !== '')
      ?.trim();
  const facts: ProbeFacts = { gpu: { state: 'notfound' } };
  const clock = first('clock');
  if (clock && /^\d+$/.test(clock)) facts.remoteClockNs = BigInt(clock);
  facts.hostname = first('hostname');
  facts.os = first('os');
  facts.kernel = first('kernel');
  const py = s.get('python') ?? [];
  const kv = new Map(
    py.filter((l) => /^\w+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
  );
  if (kv.get('python_rc') === '0' && kv.has('version')) {
    facts.python = { version: kv.get('version'), executable: kv.get('executable') };
    const t = kv.get('torch');
    facts.torch = !t || t === 'none' ? null : { version: t, cuda: kv.get('torch_cuda') ?? 'none' };
  } else {
    facts.python = {
      error:
        py
          .filter((l) => !l.startsWith('python_rc=') && l.trim())
          .slice(-2)
          .join(' ')
          .trim() || `exit ${kv.get('python_rc')}`,
    };
  }
  const gpuLines = s.get('gpu') ?? [];
  const rcLine = gpuLines.find((l) => l.startsWith('gpu_rc='));
  const rc = rcLine?.slice('gpu_rc='.length) ?? 'notfound';
  const body = gpuLines.filter((l) => !l.startsWith('gpu_rc=') && l.trim()).join('\n');
  if (rc === 'notfound') facts.gpu = { state: 'notfound' };
  else if (rc !== '0') facts.gpu = { state: 'failed', exitCode: rc, message: body.split('\n')[0]?.trim() ?? '' };
  else {
    try {
      facts.gpu = { state: 'ok', gpus: parseNvidiaSmiCsv(body) };
    } catch (e) {
      facts.gpu = { state: 'failed', exitCode: '0', message: (e as Error).message };
    }
  }
  const df = first('disk');
  const m = df && /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+(.+)$/.exec(df);
  if (m) facts.disk = { path: m[5], totalGiB: Number(m[2]) / 1048576, freeGiB: Number(m[4]) / 1048576 };
  if (s.has('xid')) facts.xid = parseXidSection(s.get('xid') ?? [], facts.remoteClockNs);
  return facts;
}

/** The probe's @@xid section: `source=`, `lines=` (kernel lines readable), `uptime=` (dmesg), `xid=LINE`. */
function parseXidSection(lines: string[], clockNs?: bigint): XidScan {
  const kv = (k: string) => lines.find((l) => l.startsWith(`${k}=`))?.slice(k.length + 1);
  const src = kv('source');
  const source = src === 'journalctl' || src === 'dmesg' ? src : 'none';
  const up = Number(kv('uptime'));
  const bootS = clockNs !== undefined && Number.isFinite(up) ? Number(clockNs / 1_000_000n) / 1000 - up : undefined;
  const xids = lines.filter((l) => l.startsWith('xid=')).map((l) => l.slice(4));
  return {
    source,
    readable: source !== 'none' && /^[1-9]\d*$/.test(kv('lines') ?? ''),
    events: parseXidLines(xids, bootS),
  };
}

/** Compare dotted versions numerically: -1, 0, 1. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => parseInt(x, 10) || 0);
  const pb = b.split('.').map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d < 0 ? -1 : 1;
  }
  return 0;
}

export interface NodeHealth {
  name: string;
  address: string;
  user: string;
  role: 'master' | 'worker';
  status: 'Ready' | 'NotReady';
  /** Why NotReady (first is the most important); empty when Ready. */
  reasons: string[];
  warnings: string[];
  connectMs?: number;
  rttMs?: number;
  clockOffsetMs?: number;
  os?: string;
  hostname?: string;
  python?: string;
  torch?: { version: string; cuda: string } | null;
  gpus: GpuInfo[];
  disk?: { path: string; freeGiB: number; totalGiB: number };
  /** XID errors of the last XID_WINDOW_HOURS (gpu-health.ts), when there are any. */
  xids?: XidEvent[];
  checkedAt: string;
}

/** Pure: facts + expectations -> verdict. */
export function judge(
  host: Host,
  cluster: Pick<Cluster, 'environment' | 'health'>,
  facts: ProbeFacts,
  timing: { connectMs?: number; rttMs?: number; clockOffsetMs?: number },
  checkedAt: string,
): NodeHealth {
  const reasons: string[] = [];
  const warnings: string[] = [];
  let gpus: GpuInfo[] = [];
  if (facts.python?.error !== undefined || !facts.python)
    reasons.push(
      `python not usable (${host.python}): ${facts.python?.error ?? 'no answer'}; ` +
        'set python in the cluster file or run pulumi up',
    );
  else if (facts.torch === null)
    reasons.push(`torch not installed for ${facts.python.executable ?? host.python}: sync the environment (pulumi up)`);
  const wantGpu = host.gpus.length > 0;
  if (facts.gpu.state === 'notfound') {
    if (wantGpu) reasons.push('nvidia-smi not found: no NVIDIA driver');
  } else if (facts.gpu.state === 'failed') {
    reasons.push(`nvidia-smi failed (exit ${facts.gpu.exitCode}): ${facts.gpu.message || 'no output'}`);
  } else {
    gpus = facts.gpu.gpus;
    const min = cluster.environment.min_driver_version;
    const old = gpus.find((g) => compareVersions(g.driver, min) < 0);
    if (old) reasons.push(`NVIDIA driver ${old.driver} < required ${min}: upgrade the driver`);
    if (gpus.length < host.gpus.length)
      reasons.push(`expected ${host.gpus.length} GPU(s), nvidia-smi shows ${gpus.length}`);
    if (
      wantGpu &&
      gpus.length &&
      host.gpus[0]?.model &&
      !gpus.some((g) => g.name.toLowerCase().includes(host.gpus[0].model.toLowerCase()))
    ) {
      warnings.push(`GPU is "${gpus[0].name}", cluster file says "${host.gpus[0].model}"`);
    }
    for (const g of gpus)
      if (g.linkWidth !== undefined && g.linkWidthMax !== undefined && g.linkWidth < g.linkWidthMax)
        reasons.push(
          `GPU ${g.index} PCIe link x${g.linkWidth} of x${g.linkWidthMax} (degraded): ` +
            'reseat the card, check its riser and slot',
        );
  }
  // XIDs of the last hours on the host's own clock (the log's timestamps are the host's).
  const nowS = facts.remoteClockNs !== undefined ? Number(facts.remoteClockNs / 1_000_000n) / 1000 : undefined;
  const xids = facts.xid ? recentXids(facts.xid.events, nowS ?? Date.parse(checkedAt) / 1000) : [];
  const hard = xids.filter((e) => HARDWARE_XIDS.has(e.code));
  if (hard.length) reasons.push(xidMessage(hard[hard.length - 1]));
  const soft = xids.filter((e) => !HARDWARE_XIDS.has(e.code));
  if (soft.length) warnings.push(xidMessage(soft[soft.length - 1]));
  if (facts.xid && !facts.xid.readable && wantGpu)
    warnings.push(
      `cannot read the kernel log for XID errors (${facts.xid.source}): ` +
        `add ${host.user} to the group adm or systemd-journal`,
    );
  if (facts.disk && facts.disk.freeGiB < cluster.health.minFreeDiskGb)
    reasons.push(
      `only ${facts.disk.freeGiB.toFixed(1)} GiB free at ${facts.disk.path} (< ${cluster.health.minFreeDiskGb} GiB)`,
    );
  if (timing.clockOffsetMs !== undefined && Math.abs(timing.clockOffsetMs) > cluster.health.maxClockOffsetMs) {
    warnings.push(`clock is ${Math.round(timing.clockOffsetMs)} ms off the controller's (enable NTP/chrony)`);
  }
  return {
    name: host.name,
    address: `${host.address}:${host.port}`,
    user: host.user,
    role: host.role,
    status: reasons.length ? 'NotReady' : 'Ready',
    reasons,
    warnings,
    ...timing,
    os: facts.os,
    hostname: facts.hostname,
    python: facts.python?.version,
    torch: facts.torch,
    gpus,
    disk: facts.disk,
    ...(xids.length ? { xids } : {}),
    checkedAt,
  };
}
