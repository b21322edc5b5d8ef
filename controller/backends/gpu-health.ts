/**
 * Consumer-GPU health, pure: what datacenter tools (DCGM) leave out on GeForce cards. XID errors from
 * the kernel log, the clock event (throttle) reasons, the PCIe link against its maximum, temperature
 * and ECC where the card has it. The formats are NVIDIA's (tests/lab/README.md, "GPU health formats";
 * samples in tests/fixtures/nvidia-smi/). health.ts's judge uses the cheap part (XID, link width) on
 * every health round; `ugro doctor` (doctor.ts) all of it.
 */

/** One `NVRM: Xid (PCI:BUS): N, TEXT` line of the kernel log. */
export interface XidEvent {
  /** Seconds since the epoch, on the host's clock. */
  timeS: number;
  /** The GPU's PCI address as the driver names it (`0000:01:00`). */
  bus: string;
  code: number;
  /** What the driver wrote after the number (pid/name and the message), at most 200 characters. */
  text: string;
}

/** What the probe read of the kernel log: `readable` false means "cannot tell", not "no XID". */
export interface XidScan {
  source: 'journalctl' | 'dmesg' | 'none';
  readable: boolean;
  events: XidEvent[];
}

/**
 * XIDs that need a GPU reset or a reboot by NVIDIA's XID catalogue (a hardware, bus, memory or
 * firmware fault). The others (13, 31, 43, 45, ...) are mostly an application's own error: reported,
 * not held against the host.
 */
export const HARDWARE_XIDS: ReadonlySet<number> = new Set([48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120]);

/** How long an XID of this boot keeps its host NotReady (a reboot clears it sooner: `-b 0`). */
export const XID_WINDOW_HOURS = 24;

const XID = /NVRM: Xid \(PCI:([0-9A-Fa-f:.]{1,20})\): (\d{1,4}), (.*)$/;

/**
 * The XID lines of `journalctl -k -o short-unix` (`EPOCH.USEC HOST kernel: NVRM: Xid ...`) or of
 * `dmesg` (`[UPTIME] NVRM: Xid ...`, placed on the clock by `bootS`, the host's boot time in epoch
 * seconds). Lines that match neither are skipped: the host's log is not trusted.
 */
export function parseXidLines(lines: string[], bootS?: number): XidEvent[] {
  const out: XidEvent[] = [];
  for (const line of lines) {
    const m = XID.exec(line);
    if (!m) continue;
    let timeS: number | undefined;
    const unix = /^(\d{9,11}(?:\.\d{1,9})?) /.exec(line);
    const rel = /^\[\s*(\d{1,10}(?:\.\d{1,9})?)\]/.exec(line);
    if (unix) timeS = Number(unix[1]);
    else if (rel && bootS !== undefined) timeS = bootS + Number(rel[1]);
    if (timeS === undefined || !Number.isFinite(timeS)) continue;
    out.push({ timeS, bus: m[1].toLowerCase(), code: Number(m[2]), text: m[3].slice(0, 200) });
  }
  return out;
}

/** The XIDs within `windowHours` before `nowS` (the host's clock), newest last. */
export function recentXids(events: XidEvent[], nowS: number, windowHours = XID_WINDOW_HOURS): XidEvent[] {
  return events.filter((e) => e.timeS >= nowS - windowHours * 3600 && e.timeS <= nowS + 300);
}

/** NVML's clock event reason bits (`clocks_event_reasons.active`, `0x%016X`). */
export const CLOCK_REASONS: readonly [bit: number, name: string][] = [
  [0x1, 'gpu_idle'],
  [0x2, 'applications_clocks_setting'],
  [0x4, 'sw_power_cap'],
  [0x8, 'hw_slowdown'],
  [0x10, 'sync_boost'],
  [0x20, 'sw_thermal_slowdown'],
  [0x40, 'hw_thermal_slowdown'],
  [0x80, 'hw_power_brake_slowdown'],
  [0x100, 'display_clock_setting'],
];
/** Reasons that mean a card runs slower than it should: idle and the power cap at full load are normal. */
const SLOWDOWN_BITS = 0x8 | 0x20 | 0x40 | 0x80;

/** The names of the slowdown reasons in an active mask (gpu_idle and sw_power_cap masked out). */
export function throttleReasons(mask: number): string[] {
  return CLOCK_REASONS.filter(([bit]) => bit & SLOWDOWN_BITS & mask).map(([, n]) => n);
}

/**
 * The doctor's query: tests/lab/README.md's (one line per GPU, in this order) and utilization.gpu
 * last (the link generation is judged under load only). Drivers before the rename (R535, to our
 * knowledge) know the clock reasons only as `clocks_throttle_reasons.*`: the same values, asked again.
 */
export const GPU_HEALTH_FIELDS = [
  'index',
  'pci.bus_id',
  'temperature.gpu',
  'clocks_event_reasons.active',
  'clocks_event_reasons.hw_slowdown',
  'clocks_event_reasons.sw_thermal_slowdown',
  'clocks_event_reasons.hw_thermal_slowdown',
  'pcie.link.gen.current',
  'pcie.link.gen.max',
  'pcie.link.width.current',
  'pcie.link.width.max',
  'ecc.mode.current',
  'ecc.errors.uncorrected.volatile.total',
  'driver_version',
  'utilization.gpu',
] as const;
export const GPU_HEALTH_FIELDS_OLD = GPU_HEALTH_FIELDS.map((f) =>
  f.replace('clocks_event_reasons.', 'clocks_throttle_reasons.'),
);

export interface GpuHealth {
  index: number;
  busId: string;
  temperatureC?: number;
  /** The active slowdown reasons (empty: none). */
  throttle: string[];
  utilizationPct?: number;
  link: { gen?: number; genMax?: number; width?: number; widthMax?: number };
  /** undefined: the card has no ECC ([N/A] on GeForce). */
  ecc?: { mode: string; uncorrected?: number };
  driver?: string;
}

const numOf = (s: string | undefined): number | undefined =>
  s !== undefined && /^\d{1,9}(\.\d{1,6})?$/.test(s) ? Number(s) : undefined;

/**
 * Parse the answer to `--query-gpu=GPU_HEALTH_FIELDS --format=csv,noheader,nounits` (also without the
 * last field, as the README's samples are). A line that is not one GPU's row (an error text, a header)
 * is skipped: the caller reports a missing answer.
 */
export function parseGpuHealthCsv(text: string): GpuHealth[] {
  const out: GpuHealth[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(',').map((s) => s.trim());
    if (f.length < GPU_HEALTH_FIELDS.length - 1 || f.length > GPU_HEALTH_FIELDS.length || !/^\d{1,3}$/.test(f[0]))
      continue;
    let mask = /^0x[0-9A-Fa-f]{1,16}$/.test(f[3]) ? Number.parseInt(f[3].slice(2), 16) : 0;
    // The per-reason answers too, in case a driver leaves the mask out.
    if (f[4] === 'Active') mask |= 0x8;
    if (f[5] === 'Active') mask |= 0x20;
    if (f[6] === 'Active') mask |= 0x40;
    const uncorrected = numOf(f[12]);
    const utilizationPct = numOf(f[14]);
    out.push({
      index: Number(f[0]),
      busId: f[1].slice(0, 40),
      temperatureC: numOf(f[2]),
      throttle: throttleReasons(mask),
      ...(utilizationPct !== undefined ? { utilizationPct } : {}),
      link: { gen: numOf(f[7]), genMax: numOf(f[8]), width: numOf(f[9]), widthMax: numOf(f[10]) },
      ...(/^(Enabled|Disabled)$/.test(f[11]) ? { ecc: { mode: f[11], uncorrected } } : {}),
      ...(/^[\d.]{1,20}$/.test(f[13]) ? { driver: f[13] } : {}),
    });
  }
  return out;
}

/** Above this a GeForce card is near its slowdown point (most throttle at 83-93 C). */
export const HOT_C = 85;

export interface GpuFinding {
  level: 'fail' | 'warn';
  message: string;
}

/**
 * What is wrong with one GPU: a link narrower than its maximum fails (reseat it); a link below its
 * generation under load, active slowdown reasons and heat warn; uncorrected ECC errors fail. An idle
 * card drops to gen 1 by design, so the generation is only judged while the card is busy.
 */
export function judgeGpuHealth(g: GpuHealth): GpuFinding[] {
  const out: GpuFinding[] = [];
  const l = g.link;
  if (l.width !== undefined && l.widthMax !== undefined && l.width < l.widthMax)
    out.push({
      level: 'fail',
      message:
        `GPU ${g.index} PCIe link x${l.width} of x${l.widthMax} (degraded): ` +
        'reseat the card, check its riser and slot',
    });
  if (l.gen !== undefined && l.genMax !== undefined && l.gen < l.genMax && (g.utilizationPct ?? 0) > 0)
    out.push({ level: 'warn', message: `GPU ${g.index} PCIe gen ${l.gen} of ${l.genMax} under load` });
  if (g.throttle.length) out.push({ level: 'warn', message: `GPU ${g.index} slowed down: ${g.throttle.join(', ')}` });
  if (g.temperatureC !== undefined && g.temperatureC >= HOT_C)
    out.push({ level: 'warn', message: `GPU ${g.index} at ${g.temperatureC} C: check its cooling` });
  if (g.ecc?.uncorrected)
    out.push({ level: 'fail', message: `GPU ${g.index} has ${g.ecc.uncorrected} uncorrected ECC errors: reset it` });
  return out;
}

/** One line for an XID, naming the GPU by its bus and saying what to do. */
export function xidMessage(e: XidEvent): string {
  const at = new Date(e.timeS * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  const what = e.text.replace(/^pid=('[^']*'|\S+), name=\S+, /, '').trim();
  return HARDWARE_XIDS.has(e.code)
    ? `XID ${e.code} on the GPU at PCI ${e.bus} at ${at}: ${what || 'a hardware fault'}; reboot the host ` +
        '(reseat the card if it comes back)'
    : `XID ${e.code} on the GPU at PCI ${e.bus} at ${at}: ${what}`;
}
