/**
 * Helpers for `npm run bench` (tests/bench/run.ts): statistics, /proc readers, run-directory
 * readers and table printing. Nothing here talks to the controller.
 *
 * The lab hosts are network namespaces on THIS machine: they share its kernel, so they share
 * its clock (CLOCK_REALTIME), its PID namespace (/proc here shows every host's processes) and
 * its root filesystem (/home/<user>/ugro/... is readable here as root). The bench relies on all
 * three; run.ts checks them before measuring.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

/**
 * Nearest-rank percentile (the value at rank ceil(q*n), no interpolation). With n = 20,
 * p50 is the 10th smallest and p99 is rank ceil(19.8) = 20, i.e. the max.
 */
export function percentile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  const k = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[k - 1];
}

export function summarize(xs: number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  return {
    n: s.length,
    min: s[0] ?? NaN,
    p50: percentile(s, 0.5),
    p99: percentile(s, 0.99),
    max: s[s.length - 1] ?? NaN,
    mean: s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN,
  };
}

export const round = (x: number, d = 1): number => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : x);

/** `date +%s%N` text -> epoch milliseconds with sub-ms fraction (ns precision kept as far as a double allows). */
export function nsTextToMs(s: string): number | undefined {
  const t = s.trim();
  if (!/^\d+$/.test(t)) return undefined;
  const ns = BigInt(t);
  return Number(ns / 1_000_000n) + Number(ns % 1_000_000n) / 1e6;
}

export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** One line of RUN_DIR/ranks, written by scripts/runtime/rank.sh as its first command. */
export interface RankStart {
  rank: number;
  pid: number;
  atMs: number;
}

/** `$RANK $LOCAL_RANK $GROUP_RANK $$ $(date +%s%N)` lines -> parsed starts (partial lines skipped). */
export function readRanks(runDir: string): RankStart[] {
  const text = readText(join(runDir, 'ranks')) ?? '';
  const out: RankStart[] = [];
  for (const line of text.split('\n')) {
    const w = line.trim().split(/\s+/);
    if (w.length < 5) continue;
    const atMs = nsTextToMs(w[4]);
    if (atMs === undefined) continue;
    out.push({ rank: Number(w[0]), pid: Number(w[3]), atMs });
  }
  return out;
}

/** The run directory of `job` under a host's runs path (`<job>.<hash>.<attempt>`), if it exists yet. */
export function findRunDir(runsPath: string, job: string, attempt = 1): string | undefined {
  let names: string[];
  try {
    names = readdirSync(runsPath);
  } catch {
    return undefined;
  }
  const n = names.find((x) => x.startsWith(`${job}.`) && x.endsWith(`.${attempt}`));
  return n ? join(runsPath, n) : undefined;
}

const pidDirs = (): number[] => {
  try {
    return readdirSync('/proc')
      .filter((x) => /^\d+$/.test(x))
      .map(Number);
  } catch {
    return [];
  }
};

/**
 * PIDs (on this machine = on every lab host, one PID namespace) whose environment carries
 * UGRO_RUN_ID equal to `runId`, or starting with `prefix` when `prefix` is true. The same marker
 * scripts/runtime/stop.sh looks for. Zombies have an empty environ and do not count (as in stop.sh).
 */
export function markedPids(runId: string, prefix = false): number[] {
  const want = `UGRO_RUN_ID=${runId}`;
  const out: number[] = [];
  for (const pid of pidDirs()) {
    if (pid === process.pid) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue;
    }
    for (const e of env.split('\0')) {
      if (prefix ? e.startsWith(want) : e === want) {
        out.push(pid);
        break;
      }
    }
  }
  return out;
}

/** Every UGRO_RUN_ID of a live process (on this machine = on every lab host), with its PIDs. */
export function liveRunIds(): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const pid of pidDirs()) {
    if (pid === process.pid) continue;
    let env: string;
    try {
      env = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue;
    }
    const e = env.split('\0').find((x) => x.startsWith('UGRO_RUN_ID='));
    if (e) out.set(e.slice(12), [...(out.get(e.slice(12)) ?? []), pid]);
  }
  return out;
}

/** utime+stime (clock ticks) and ppid from /proc/PID/stat; undefined if gone. */
export function procStat(pid: number): { ticks: number; ppid: number; state: string } | undefined {
  const s = readText(`/proc/${pid}/stat`);
  if (!s) return undefined;
  // Fields after "(comm) ": state is field 3, ppid 4, utime 14, stime 15 (1-based).
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0], ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
}

/** kB value of a /proc/PID/status line (VmRSS, VmHWM). */
export function procStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  const s = readText(`/proc/${pid}/status`);
  const m = s && new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s);
  return m ? Number(m[1]) : undefined;
}

/** pid and all its live descendants. */
export function procTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const p of pidDirs()) {
    const st = procStat(p);
    if (!st) continue;
    const l = children.get(st.ppid) ?? [];
    l.push(p);
    children.set(st.ppid, l);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** CPU ticks and RSS of a process tree (the controller is one node process; children counted if any). */
export function treeUsage(pid: number): { pids: number[]; ticks: number; rssKiB: number } {
  const pids = procTree(pid);
  let ticks = 0;
  let rssKiB = 0;
  for (const p of pids) {
    ticks += procStat(p)?.ticks ?? 0;
    rssKiB += procStatusKiB(p, 'VmRSS') ?? 0;
  }
  return { pids, ticks, rssKiB };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll fn every `everyMs` until it returns a truthy value; throw `what` on timeout. */
export async function poll<T>(
  what: string,
  fn: () => T | undefined | false | null,
  timeoutMs: number,
  everyMs = 10,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Plain text table, right-aligned numbers. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [
    header,
    ...rows.map((r) => r.map((c) => (typeof c === 'number' ? (Number.isFinite(c) ? String(round(c)) : '-') : c))),
  ];
  const w = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells
    .map(
      (r, ri) =>
        r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ') +
        (ri === 0 ? `\n${w.map((x) => '-'.repeat(x)).join('  ')}` : ''),
    )
    .join('\n');
}
