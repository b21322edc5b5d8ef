/**
 * `npm run demo` (scripts/dev/demo.sh) leaves nothing of its own behind: after it ends, after a
 * Ctrl-C (SIGINT to its process group, as a terminal sends it) and after `kill PID` (SIGTERM to
 * the script alone) mid-run, there is no process it started (every one inherits the marker this
 * test puts in the demo's environment, setsid or not), no process in any group one of them led,
 * no process of its job's run on the hosts, no lease of its controller on a host, and the
 * dashboard port is free again. Runs on the lab as it is (UGRO_DEMO_LAB=keep: no `lab up`).
 * UGRO_DEMO_SCRIPT=FILE runs another demo.sh instead (how the old one was shown to leak).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { labCluster, ROOT, readStatus, runProcesses, waitFor } from './controller-harness.ts';

const DEMO = process.env.UGRO_DEMO_SCRIPT ?? join(ROOT, 'scripts/dev/demo.sh');
const JOBS = join(ROOT, '.lab/demo-jobs');
const DASHBOARD_PORT = 8686;
const cluster = labCluster();

interface Proc {
  pid: number;
  pgid: number;
  args: string;
}

/** Processes on this machine whose environment holds `UGRO_DEMO_MARK=mark`. */
function marked(mark: string): Proc[] {
  const out: Proc[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (!readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(`UGRO_DEMO_MARK=${mark}`)) continue;
      const pgid = statOf(d)?.pgid ?? 0;
      const args = readFileSync(`/proc/${d}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      out.push({ pid: Number(d), pgid, args });
    } catch {
      /* gone */
    }
  }
  return out;
}

/** "pid (comm) state ppid pgrp ...": comm may hold spaces and ')', so count from the last ')'. */
function statOf(pid: string): { state: string; pgid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const [state, , pgid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state, pgid: Number(pgid) };
  } catch {
    return undefined; // gone
  }
}

/**
 * Whether a live process is in group `pgid`. A zombie is not: it has ended, and only its reaping
 * is pending (by pid 1 once its parent is gone; this machine's init reaps with a delay).
 */
function groupAlive(pgid: number): boolean {
  return readdirSync('/proc').some((d) => {
    if (!/^\d+$/.test(d)) return false;
    const st = statOf(d);
    return st?.pgid === pgid && st.state !== 'Z';
  });
}

/** The processes of a group, for the failure message (state Z: not reaped yet). */
function inGroup(pgid: number): string {
  const r = spawnSync('ps', ['-eo', 'pgid=,pid=,stat=,args='], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter((l) => l.trim().split(/\s+/)[0] === String(pgid))
    .map((l) => l.trim().slice(0, 160))
    .join(' | ');
}

/** Whether 127.0.0.1:port can be listened on now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

/** The demo controller's lease file on each host that names it (`owner=HOST:JOBS_DIR`). */
function demoLeases(): string[] {
  const owner = `owner=${hostname()}:${realpathSync(JOBS)}`;
  return cluster.hosts
    .map((h) => join(h.paths.runs, '.ugro-lease'))
    .filter((f) => {
      try {
        return readFileSync(f, 'utf8').split('\n').includes(owner);
      } catch {
        return false;
      }
    });
}

interface Demo {
  pid: number;
  mark: string;
  /** Every process group a marked process was seen in while the demo ran. */
  groups: Set<number>;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let current: Demo | undefined;

function startDemo(epochs?: number): Demo {
  const mark = randomBytes(8).toString('hex');
  const child = spawn('bash', [DEMO], {
    cwd: ROOT,
    // An interrupted demo trains long enough to be interrupted (3 epochs end about a second after Running).
    env: {
      ...process.env,
      UGRO_DEMO_LAB: 'keep',
      UGRO_DEMO_MARK: mark,
      ...(epochs ? { UGRO_DEMO_EPOCHS: String(epochs) } : {}),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // a group of its own, as a terminal's foreground job
  });
  let out = '';
  child.stdout!.on('data', (b) => (out += b));
  child.stderr!.on('data', (b) => (out += b));
  const groups = new Set<number>([child.pid!]);
  const sample = setInterval(() => {
    for (const p of marked(mark)) groups.add(p.pgid);
  }, 100);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.on('exit', (code, signal) => {
      clearInterval(sample);
      res({ code, signal });
    }),
  );
  // Its output, then its controller's log: what a failure message shows.
  const output = () => {
    let log = '';
    try {
      log = readFileSync(join(ROOT, '.lab/controller.log'), 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      /* none yet */
    }
    return `${out}\n--- .lab/controller.log (last 30 lines):\n${log}`;
  };
  current = { pid: child.pid!, mark, groups, output, exited };
  return current;
}

/** What the demo left: marked processes, live groups, the run's processes, leases. */
function leftovers(d: Demo, runId?: string) {
  return {
    processes: marked(d.mark).map((p) => `${p.pid} (group ${p.pgid}): ${p.args.slice(0, 160)}`),
    groups: [...d.groups].filter(groupAlive).map((g) => `${g}: ${inGroup(g)}`),
    runProcesses: runId ? runProcesses(runId) : [],
    leases: demoLeases(),
  };
}

const NOTHING = { processes: [], groups: [], runProcesses: [], leases: [] };

afterEach(async () => {
  // Whatever a failing demo left: SIGTERM first (a controller's own stop hands its leases back).
  const d = current;
  current = undefined;
  if (!d) return;
  const groups = new Set([...d.groups, ...marked(d.mark).map((p) => p.pgid)]);
  for (const g of groups) {
    try {
      process.kill(-g, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  await waitFor('the leftovers to stop', () => [...groups].every((g) => !groupAlive(g)), 30_000).catch(() => {
    for (const g of groups) {
      try {
        process.kill(-g, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  });
  for (const f of demoLeases()) rmSync(f, { force: true });
}, 60_000);

describe('npm run demo', () => {
  it('run to the end: Succeeded, and nothing of it is left', async () => {
    const free = await portFree(DASHBOARD_PORT);
    const d = startDemo();
    const { code } = await d.exited;
    expect(code, d.output()).toBe(0);
    expect(d.output()).toMatch(/demo +Succeeded/);
    expect(leftovers(d), d.output()).toEqual(NOTHING);
    if (free) expect(await portFree(DASHBOARD_PORT)).toBe(true);
  });

  for (const how of ['SIGINT to its group (Ctrl-C)', 'SIGTERM to the script']) {
    it(`interrupted mid-run by ${how}: the job is cancelled and nothing of it is left`, async () => {
      const free = await portFree(DASHBOARD_PORT);
      const d = startDemo(300);
      const running = await waitFor(
        'the demo job Running',
        () => {
          const s = readStatus(JOBS, 'demo');
          return s?.phase === 'Running' && s.runId ? s : undefined;
        },
        90_000,
        100,
      );
      if (how.startsWith('SIGINT')) process.kill(-d.pid, 'SIGINT');
      else process.kill(d.pid, 'SIGTERM');
      const { code } = await d.exited;
      expect(code, d.output()).toBe(how.startsWith('SIGINT') ? 130 : 143);
      expect(readStatus(JOBS, 'demo')?.phase, d.output()).toBe('Cancelled');
      expect(leftovers(d, running.runId), d.output()).toEqual(NOTHING);
      if (free) expect(await portFree(DASHBOARD_PORT)).toBe(true);
    });
  }
});
