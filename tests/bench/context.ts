/**
 * What every lab section of `npm run bench` shares: the lab (3 hosts, one warm SshPool of the
 * bench's own), the preflight that checks the bench's assumptions, cleanup on exit or signal,
 * bench-owned names (all start with PREFIX, which cleanup keys on), and small helpers to write a
 * job file and explain a job that does not do what a section waits for.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Cluster, Host } from '../../config/cluster.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import { CLUSTER_FILE, job, labCluster, ROOT, readStatus, type startController } from '../lab/controller-harness.ts';
import { findRunDir, liveRunIds, markedPids, nsTextToMs, poll, readText, round, sleep } from './lib.ts';

/** Every name, run id and directory the bench creates starts with this (cleanup keys on it). */
export const PREFIX = 'ubench-';

export type Controller = ReturnType<typeof startController>;

export class LabDown extends Error {}

export const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 23)}] ${s}\n`);
export const pad = (i: number, w = 2) => String(i).padStart(w, '0');

export const intEnv = (k: string, d: number) => {
  const v = process.env[k];
  if (v === undefined || v === '') return d;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${k} must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
};

// ---------------------------------------------------------------------------------------------
// Cleanup: run in reverse order at the end, on an error and on SIGINT/SIGTERM.

const cleanups: { what: string; fn: () => unknown }[] = [];
let cleaning: Promise<void> | undefined;

export function onCleanup(what: string, fn: () => unknown): void {
  cleanups.push({ what, fn });
}

export function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c.fn();
      } catch (e) {
        log(`cleanup (${c.what}) failed: ${(e as Error).message}`);
      }
    }
  })();
  return cleaning;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void cleanupAll().then(() => process.exit(130));
  });
}

export function sh(cmd: string, args: string[], timeout = 60_000): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

export function machine() {
  const meminfo = readText('/proc/meminfo') ?? '';
  return {
    nproc: Number(sh('nproc', []).out.trim()),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memGiB: round(totalmem() / 2 ** 30, 1),
    memAvailableGiB: round(Number(/MemAvailable:\s+(\d+)/.exec(meminfo)?.[1] ?? 0) / 2 ** 20, 1),
    node: process.version,
    kernel: sh('uname', ['-r']).out.trim(),
    loadavgAtStart: (readText('/proc/loadavg') ?? '').split(' ').slice(0, 3).join(' '),
  };
}

// ---------------------------------------------------------------------------------------------
// The lab

export interface Lab {
  cluster: Cluster;
  /** The first 3 hosts of the lab. */
  hosts: Host[];
  /** The bench's own pool (the controller under test has its own, in its process). */
  pool: SshPool;
}

/** Kill (as root, here: one PID namespace) every process of a bench run, then remove bench files on the hosts. */
export async function scrubHosts(lab: Lab): Promise<void> {
  for (const pid of markedPids(PREFIX, true)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  await Promise.all(
    lab.hosts.map((h) =>
      lab.pool.exec(
        h.name,
        [
          'sh',
          '-c',
          'rm -rf -- "$1"/ubench-* "$2"/ubench-* "$3"/ubench-*',
          'ubench-scrub',
          h.paths.runs,
          h.paths.checkpoints,
          h.paths.project,
        ],
        { timeoutMs: 30_000 },
      ),
    ),
  );
}

/** Check what the bench relies on (lab up, root, one clock, one PID namespace, one file system). */
export async function preflight(): Promise<Lab> {
  if (!existsSync(CLUSTER_FILE))
    throw new LabDown(
      `the lab is not up: ${CLUSTER_FILE} is missing. ` +
        'Run `npm run lab -- up` (bash tests/lab/lab.sh up), then `npm run bench`.',
    );
  const st = sh('bash', [join(ROOT, 'tests/lab/lab.sh'), 'status']);
  if (st.code !== 0)
    throw new LabDown(
      `the lab is not up (lab.sh status exit ${st.code}). ` +
        `Run \`npm run lab -- up\`, then \`npm run bench\`.\n${st.out}`,
    );
  if (process.getuid?.() !== 0)
    throw new LabDown(
      "the bench needs root, like the lab: it reads the lab hosts' run directories and /proc/PID/environ directly",
    );
  const cluster = labCluster();
  if (cluster.hosts.length < 3)
    throw new LabDown(
      `the bench needs the 3-host lab; ${CLUSTER_FILE} has ${cluster.hosts.length} host(s). Run \`npm run lab -- up\``,
    );
  const hosts = cluster.hosts.slice(0, 3);
  const pool = new SshPool(hosts);
  onCleanup('close ssh pool', () => pool.close());
  // Shared clock, PID namespace and filesystem (see lib.ts): check rather than assume.
  const myPidNs = readlinkSync('/proc/self/ns/pid');
  for (const h of hosts) {
    const before = Date.now();
    let r: Awaited<ReturnType<typeof pool.exec>>;
    try {
      r = await pool.exec(
        h.name,
        [
          'sh',
          '-c',
          'date +%s%N; readlink /proc/self/ns/pid; mkdir -p "$1" && echo "$2" > "$1/.ubench-probe"',
          'x',
          h.paths.project,
          String(before),
        ],
        { timeoutMs: 15_000 },
      );
    } catch (e) {
      throw new LabDown(
        `the lab is not reachable over ssh (${h.name}: ${(e as Error).message}). Run \`npm run lab -- up\`.`,
      );
    }
    const after = Date.now();
    const [ts, ns] = r.stdout.split('\n');
    const at = nsTextToMs(ts ?? '');
    if (r.code !== 0 || at === undefined)
      throw new LabDown(`${h.name}: probe failed (exit ${r.code}): ${r.stderr.trim()}`);
    if (at < before - 5 || at > after + 5)
      throw new Error(
        `${h.name}: its clock (${at}) is not this machine's (${before}..${after}); host timestamps would not compare`,
      );
    if (ns !== myPidNs)
      throw new Error(
        `${h.name}: not in this machine's PID namespace (${ns} vs ${myPidNs}); the bench reads /proc here`,
      );
    const probe = join(h.paths.project, '.ubench-probe');
    if (readText(probe)?.trim() !== String(before))
      throw new Error(`${h.name}: ${probe} written there is not visible here; the bench reads run directories here`);
    rmSync(probe, { force: true });
  }
  const others = sh('pgrep', ['-af', 'ugro.mjs.* controller']).out.trim();
  if (others) log(`warning: other ugro controller processes are running and may compete for the hosts:\n${others}`);
  const lab = { cluster, hosts, pool };
  await scrubHosts(lab);
  await labQuiet('preflight');
  onCleanup('scrub hosts', () => scrubHosts(lab));
  return lab;
}

/**
 * Wait until no training of anyone else runs on the lab (a process with a UGRO_RUN_ID that is not
 * the bench's): a run left behind by another test (its controller stopped, its training going on,
 * as UGRO means it to) holds its hosts' GPUs, and a job of the bench then waits for them, up to
 * the controller's 60 s resync after they are free. Waits up to `timeoutMs`, then goes on with a
 * warning (the figures of that section may then include such a wait).
 */
export async function labQuiet(what: string, timeoutMs = 120_000): Promise<void> {
  const foreign = () => [...liveRunIds().keys()].filter((id) => !id.startsWith(PREFIX));
  let runs = foreign();
  if (!runs.length) return;
  log(`${what}: waiting for runs of others on the lab to end: ${runs.join(', ')}`);
  const end = Date.now() + timeoutMs;
  while (runs.length && Date.now() < end) {
    await sleep(500);
    runs = foreign();
  }
  if (runs.length) log(`warning: ${what}: runs of others still on the lab, measuring anyway: ${runs.join(', ')}`);
  else await sleep(1000);
}

/** Wait for the controller's "controller started" log line; throws if it exits first. */
export async function controllerStarted(ctl: Controller, timeoutMs = 60_000): Promise<number> {
  const at = await poll(
    'controller started',
    () => (/"controller started"/.test(ctl.logText()) ? Date.now() : ctl.exitCode !== null ? -1 : undefined),
    timeoutMs,
    20,
  );
  if (at < 0) throw new Error(`controller exited: ${ctl.logText()}`);
  return at;
}

/**
 * Like `ugro apply`: write a dot-file (ignored by the watcher), rename it into place. The rename
 * is the moment the job appears in the watched dir; returns the time taken right before it.
 */
export function writeJobAtomic(jobsDir: string, name: string, spec: Record<string, unknown>): number {
  const tmp = join(jobsDir, `.${name}.bench-tmp`);
  writeFileSync(tmp, job(name, spec));
  const t0 = Date.now();
  renameSync(tmp, join(jobsDir, `${name}.yaml`));
  return t0;
}

/** What to show when a controller job does not do what the bench waits for. */
export function diag(lab: Lab, jobsDir: string, ctl: Controller, name: string, attempt = 1): string {
  const parts = [`status: ${JSON.stringify(readStatus(jobsDir, name))}`];
  for (const h of lab.hosts) {
    const dir = findRunDir(h.paths.runs, name, attempt);
    if (!dir) continue;
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.log') || x === 'exit_code' || x.endsWith('.exit')))
      parts.push(`--- ${h.name} ${f}:\n${(readText(join(dir, f)) ?? '').split('\n').slice(-8).join('\n')}`);
  }
  parts.push(`--- controller log tail:\n${ctl.logText().split('\n').slice(-20).join('\n')}`);
  return parts.join('\n');
}
