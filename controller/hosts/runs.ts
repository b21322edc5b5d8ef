/**
 * Runs on hosts: the controller's side of scripts/runtime/*.sh. Launch, observe, stop and wait
 * each take one exec per host; the scripts are sent inline (`sh -c SCRIPT name ARGS…`, every
 * word quoted), so hosts need nothing installed for the controller to work.
 */
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import type { Host } from '../../config/cluster.ts';
import type { ExecOptions, ExecResult, RemoteExecutor } from './ssh.ts';

const runtimeDir = new URL('../../scripts/runtime/', import.meta.url);
let cache: Record<string, string> | undefined;
export function runtimeScripts(): Record<'launch' | 'observe' | 'stop' | 'wait' | 'rank', string> {
  cache ??= Object.fromEntries(
    ['launch', 'observe', 'stop', 'wait', 'rank'].map((n) => [n, readFileSync(new URL(`${n}.sh`, runtimeDir), 'utf8')]),
  );
  return cache as Record<'launch' | 'observe' | 'stop' | 'wait' | 'rank', string>;
}

/** Written to each run directory; lets a restarted controller recover the whole assignment. */
export interface RunMeta {
  job: string;
  runId: string;
  specHash: string;
  attempt: number;
  host: string;
  nodeRank: number;
  nnodes: number;
  nprocPerNode: number;
  hosts: string[];
  rdzvEndpoint: string;
  masterPort: number;
  createdAt: string;
}

export interface RankObservation {
  rank: number;
  localRank: number;
  pid: number;
  exitCode?: number;
  exitedAt?: number;
  logTail?: string[];
}

/** One host's part of one run, as observed there. */
export interface RunPart {
  dir: string;
  host: string;
  meta: RunMeta;
  pid?: number;
  alive: boolean;
  exitCode?: number;
  cancelled?: string;
  launchedAtMs?: number;
  finishedAtMs?: number;
  ranks: RankObservation[];
  agentLogTail: string[];
  metrics?: Record<string, unknown>;
}

/** `<job>.<specHash>.<attempt>`: "." never occurs in a DNS-1123 label, so this splits cleanly. */
export function runDirName(job: string, hash: string, attempt: number): string {
  return `${job}.${hash}.${attempt}`;
}
export function runIdOf(job: string, hash: string, attempt: number): string {
  return `${job}-${hash}-a${attempt}`;
}

const nsToMs = (s: string | undefined) => (s && /^\d+$/.test(s) ? Number(BigInt(s) / 1_000_000n) : undefined);

/** Pure parser of observe.sh output. */
export function parseObserve(host: string, out: string): RunPart[] {
  const parts: RunPart[] = [];
  let cur: (RunPart & { rankMap: Map<number, RankObservation> }) | undefined;
  const flush = () => {
    if (cur) {
      cur.ranks = [...cur.rankMap.values()].sort((a, b) => a.rank - b.rank);
      const { rankMap: _r, ...p } = cur;
      if (p.meta) parts.push(p);
    }
    cur = undefined;
  };
  for (const line of out.split('\n')) {
    if (line.startsWith('@@run ')) {
      flush();
      cur = {
        dir: line.slice(6),
        host,
        meta: undefined as unknown as RunMeta,
        alive: false,
        ranks: [],
        agentLogTail: [],
        rankMap: new Map(),
      };
      continue;
    }
    if (line === '@@end' || line === '@@none') {
      flush();
      continue;
    }
    if (!cur) continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const k = line.slice(0, eq);
    const v = line.slice(eq + 1);
    switch (k) {
      case 'pid':
        cur.pid = v ? Number(v) : undefined;
        break;
      case 'alive':
        cur.alive = v === '1';
        break;
      case 'exit':
        cur.exitCode = v !== '' ? Number(v) : undefined;
        break;
      case 'cancelled':
        cur.cancelled = v || undefined;
        break;
      case 'launched_at':
        cur.launchedAtMs = nsToMs(v);
        break;
      case 'finished_at':
        cur.finishedAtMs = nsToMs(v);
        break;
      case 'meta':
        try {
          cur.meta = JSON.parse(v) as RunMeta;
        } catch {
          /* a half-written meta.json: skip this run dir */
        }
        break;
      case 'rank': {
        const [r, lr, , pid] = v.split(' ');
        const rank = Number(r);
        cur.rankMap.set(rank, {
          ...(cur.rankMap.get(rank) ?? { rank }),
          rank,
          localRank: Number(lr),
          pid: Number(pid),
        });
        break;
      }
      case 'rankexit': {
        const [r, code, at] = v.split(' ');
        const rank = Number(r);
        const o = cur.rankMap.get(rank) ?? { rank, localRank: -1, pid: 0 };
        cur.rankMap.set(rank, { ...o, exitCode: Number(code), exitedAt: Number(at) * 1000 });
        break;
      }
      case 'ranklog': {
        const sp = v.indexOf(' ');
        const rank = Number(sp < 0 ? v : v.slice(0, sp));
        const o = cur.rankMap.get(rank) ?? { rank, localRank: -1, pid: 0 };
        o.logTail = [...(o.logTail ?? []), sp < 0 ? '' : v.slice(sp + 1)];
        cur.rankMap.set(rank, o);
        break;
      }
      case 'agentlog':
        cur.agentLogTail.push(v);
        break;
      case 'metrics':
        try {
          cur.metrics = JSON.parse(v) as Record<string, unknown>;
        } catch {
          /* partial line */
        }
        break;
    }
  }
  flush();
  return parts;
}

/** archive: $1 runs dir, $2 run dir name, $3 now (ms), $4 prune entries archived before this (ms). */
const ARCHIVE = `
if [ -d "$1/$2" ]; then mkdir -p "$1/.deleted" && mv -- "$1/$2" "$1/.deleted/$2.$3" || exit 1; fi
for d in "$1"/.deleted/*; do
  [ -d "$d" ] || continue
  ts=\${d##*.}
  case $ts in '' | *[!0-9]*) continue ;; esac
  [ "$ts" -lt "$4" ] && rm -rf -- "$d"
done
exit 0
`;

export class HostRuntime {
  constructor(private readonly exec: RemoteExecutor) {}

  private run(
    host: string,
    script: keyof ReturnType<typeof runtimeScripts>,
    args: string[],
    opts?: ExecOptions & { env?: Record<string, string> },
  ): Promise<ExecResult> {
    return this.exec.exec(host, ['sh', '-c', runtimeScripts()[script], `ugro-${script}`, ...args], opts);
  }

  async observe(host: Host, job?: string): Promise<RunPart[]> {
    const res = await this.run(host.name, 'observe', [host.paths.runs, ...(job ? [job] : [])], { timeoutMs: 20_000 });
    if (res.code !== 0) throw new Error(`${host.name}: observe failed (exit ${res.code}): ${res.stderr.trim()}`);
    return parseObserve(host.name, res.stdout);
  }

  async launch(
    host: Host,
    args: { dir: string; rdzvAddr: string; meta: RunMeta; argv: string[]; env: Record<string, string> },
  ): Promise<{ pid: number; existed: boolean }> {
    const runDir = posix.join(host.paths.runs, args.dir);
    const res = await this.run(
      host.name,
      'launch',
      [runDir, args.rdzvAddr, runtimeScripts().rank, JSON.stringify(args.meta), '--', ...args.argv],
      { env: args.env, timeoutMs: 30_000 },
    );
    const m = /^(launched|exists) pid=(\d+)/m.exec(res.stdout);
    if (res.code !== 0 || !m)
      throw new Error(
        `${host.name}: launch failed (exit ${res.code}): ${(res.stderr || res.stdout).trim().split('\n').slice(-3).join(' | ')}`,
      );
    return { pid: Number(m[2]), existed: m[1] === 'exists' };
  }

  async stop(
    host: Host,
    dir: string,
    runId: string,
    graceSeconds: number,
    reason: string,
  ): Promise<{ remaining: number; killed: boolean }> {
    const res = await this.run(
      host.name,
      'stop',
      [posix.join(host.paths.runs, dir), runId, String(graceSeconds), reason],
      { timeoutMs: (graceSeconds + 20) * 1000 },
    );
    const m = /stopped(?: none=1)?(?: killed=(\d) remaining=(\d+))?/.exec(res.stdout);
    if (!m) throw new Error(`${host.name}: stop failed (exit ${res.code}): ${res.stderr.trim()}`);
    return { killed: m[1] === '1', remaining: Number(m[2] ?? 0) };
  }

  /** Move a finished run directory to RUNS/.deleted/DIR.<epoch ms> (observe skips dot-dirs; logs stay readable). */
  /**
   * Moves a deleted job's run dir to `<runs>/.deleted/<dir>.<ms>` (its logs stay readable there),
   * and prunes entries moved there more than `keepDays` ago, so the folder does not grow forever.
   */
  async archive(host: Host, dir: string, keepDays = 7): Promise<void> {
    const now = Date.now();
    const res = await this.exec.exec(
      host.name,
      ['sh', '-c', ARCHIVE, 'ugro-archive', host.paths.runs, dir, String(now), String(now - keepDays * 86_400_000)],
      { timeoutMs: 20_000 },
    );
    if (res.code !== 0)
      throw new Error(`${host.name}: cannot move run ${dir} aside (exit ${res.code}): ${res.stderr.trim()}`);
  }

  /** Resolves when the run's runner on this host has exited (or the connection dropped). */
  wait(host: Host, dir: string, signal: AbortSignal): Promise<ExecResult> {
    return this.run(host.name, 'wait', [posix.join(host.paths.runs, dir)], { signal });
  }
}
