/** Harness for controller lab tests: a real `ugro controller` process per test, temp jobs dir. */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { loadCluster } from '../../config/cluster.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import type { SshPool } from '../../controller/backends/ssh/pool.ts';

export const ROOT = resolve(new URL('../..', import.meta.url).pathname);
export const CLUSTER_FILE = join(ROOT, '.lab/cluster.yaml');

export function requireLab(): void {
  if (!existsSync(CLUSTER_FILE)) throw new Error(`${CLUSTER_FILE} missing: run \`npm run lab -- up\` first`);
}

export function labCluster() {
  requireLab();
  return loadCluster(CLUSTER_FILE);
}

export function newJobsDir(): string {
  return mkdtempSync(join(tmpdir(), 'ugro-jobs-'));
}

export type Ctl = ChildProcess & { logText: () => string };

/** A controller in its own process group (stopController ends the group, its ssh and git too). */
export function startController(jobsDir: string, extra: string[] = [], clusterFile = CLUSTER_FILE): Ctl {
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin/ugro.mjs'), '--cluster', clusterFile, '--jobs', jobsDir, 'controller', '--grace', '5', ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  let log = '';
  child.stdout!.on('data', (b) => (log += b));
  child.stderr!.on('data', (b) => (log += b));
  const c = Object.assign(child, { logText: () => log });
  lastController = c;
  return c;
}

/** The controller started last: its log goes into timeout errors, so a hang says why. */
let lastController: { logText: () => string } | undefined;

/**
 * SIGTERM (the controller's own shutdown, up to 30 s), or SIGKILL at once (a crash), then
 * SIGKILL to its process group: nothing it started outlives the test.
 */
export async function stopController(c: ChildProcess, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
  if (c.exitCode === null && c.signalCode === null) {
    const gone = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await Promise.race([gone, new Promise((r) => setTimeout(r, 30_000))]);
  }
  try {
    process.kill(-c.pid!, 'SIGKILL');
  } catch {
    /* the group is gone */
  }
}

export function ugro(jobsDir: string, ...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(
    process.execPath,
    [join(ROOT, 'bin/ugro.mjs'), '--cluster', CLUSTER_FILE, '--jobs', jobsDir, ...args],
    { encoding: 'utf8' },
  );
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** `ugro …` as a child process, for commands that stream (logs -f): output chunks with arrival times. */
export function ugroStream(
  jobsDir: string,
  ...args: string[]
): { chunks: { at: number; text: string }[]; done: Promise<{ code: number | null; out: string; err: string }> } {
  const child = spawn(
    process.execPath,
    [join(ROOT, 'bin/ugro.mjs'), '--cluster', CLUSTER_FILE, '--jobs', jobsDir, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const chunks: { at: number; text: string }[] = [];
  let err = '';
  child.stdout!.on('data', (b: Buffer) => chunks.push({ at: Date.now(), text: b.toString('utf8') }));
  child.stderr!.on('data', (b: Buffer) => (err += b));
  const done = new Promise<{ code: number | null; out: string; err: string }>((res) =>
    child.on('close', (code) => res({ code, out: chunks.map((c) => c.text).join(''), err })),
  );
  return { chunks, done };
}

export function job(name: string, spec: Record<string, unknown>, metadata: Record<string, unknown> = {}): string {
  return stringify({ apiVersion: 'ugro.dev/v1alpha1', kind: 'TrainingJob', metadata: { name, ...metadata }, spec });
}

export function writeJob(
  jobsDir: string,
  name: string,
  spec: Record<string, unknown>,
  metadata: Record<string, unknown> = {},
): void {
  writeFileSync(join(jobsDir, `${name}.yaml`), job(name, spec, metadata));
}

export function readStatus(jobsDir: string, name: string): JobStatus | undefined {
  try {
    return parse(readFileSync(join(jobsDir, `${name}.status.yaml`), 'utf8')) as JobStatus;
  } catch {
    return undefined;
  }
}

export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 90_000,
  everyMs = 200,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: T | undefined | false;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  const tail = lastController?.logText().split('\n').slice(-40).join('\n');
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})` +
      `${tail ? `\ncontroller log (last 40 lines):\n${tail}` : ''}\n${trainingProcesses()}`,
  );
}

/**
 * The lab's hosts share this machine's process table (network namespaces only), so a hang can be
 * described from here: every torchrun/rank process with its state and kernel wait channel.
 */
function trainingProcesses(): string {
  const r = spawnSync('ps', ['-eo', 'pid,ppid,user,stat,etimes,wchan:28,args'], { encoding: 'utf8' });
  const lines = (r.stdout ?? '')
    .split('\n')
    .filter((l) => /torch\.distributed\.run|rank\.sh|train\.py|ugro-runner|ugro-wait/.test(l));
  return `training processes on the lab hosts (${lines.length}):\n${lines.map((l) => l.slice(0, 240)).join('\n')}`;
}

export function waitPhase(jobsDir: string, name: string, phases: string[], timeoutMs = 90_000): Promise<JobStatus> {
  let seen = 'no status file';
  return waitFor(
    `${name} in ${phases.join('|')}`,
    () => {
      const s = readStatus(jobsDir, name);
      if (s) seen = `${s.phase}: ${s.message ?? ''}`;
      return s && phases.includes(s.phase) ? s : undefined;
    },
    timeoutMs,
  ).catch((e: Error) => {
    e.message = e.message.replace(' (last: undefined)', ` (last seen: ${seen})`);
    throw e;
  });
}

/** PIDs on a host whose environment carries UGRO_RUN_ID=runId (the run's marker). */
export async function markedProcesses(pool: SshPool, host: string, runId: string): Promise<string[]> {
  const r = await pool.exec(host, [
    'sh',
    '-c',
    'grep -lzxF "UGRO_RUN_ID=$1" /proc/[0-9]*/environ 2>/dev/null | grep -v self || true',
    'x',
    runId,
  ]);
  return r.stdout.split('\n').filter((l) => /^\/proc\/\d+\/environ$/.test(l));
}

/** Run directories of a job on a host. */
export async function runDirs(pool: SshPool, host: string, runsPath: string, jobName: string): Promise<string[]> {
  const r = await pool.exec(host, [
    'sh',
    '-c',
    'cd "$1" 2>/dev/null && ls -d "$2".* 2>/dev/null || true',
    'x',
    runsPath,
    jobName,
  ]);
  return r.stdout.split('\n').filter(Boolean);
}

/** The run directory name of a status's run id (`JOB-HASH8-aN` -> `JOB.HASH8.N`). */
export function runDirOf(s: Pick<JobStatus, 'runId'>): string {
  return s.runId!.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2');
}

/**
 * The pid of one rank's training process (the python of train.py, not its rank.sh wrapper) of a
 * run: the lab hosts share this machine's /proc (network namespaces only).
 */
export function rankPid(runId: string, rank: number, script = 'train.py'): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const env = readFileSync(`/proc/${d}/environ`, 'utf8').split('\0');
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (
        env.includes(`UGRO_RUN_ID=${runId}`) &&
        env.includes(`RANK=${rank}`) &&
        cmd.includes(script) &&
        !cmd.includes('rank.sh')
      ) {
        return Number(d);
      }
    } catch {
      /* gone, or not ours to read */
    }
  }
  return undefined;
}

/** Processes on this machine (the lab hosts share its /proc) carrying UGRO_RUN_ID=runId. */
export function runProcesses(runId: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/environ`, 'utf8').split('\0').includes(`UGRO_RUN_ID=${runId}`)) out.push(Number(d));
    } catch {
      /* gone, or not ours to read */
    }
  }
  return out;
}

/** train.py arguments for a run of `epochs` x 10 steps of 0.2 s, a checkpoint every 5 steps. */
export function trainArgs(epochs: number): string[] {
  return ['--epochs', String(epochs), '--steps-per-epoch', '10', '--sleep', '0.2', '--checkpoint-every', '5'];
}
