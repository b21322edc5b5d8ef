/**
 * The progress bench's cheap running jobs (tests/bench/progress.ts): real run dirs made by
 * launch.sh through SshBackend (the runner, rank.sh and a `sleep`) with their job files, metrics
 * lines appended to them from this process (the lab shares this file system), the hosts' CPU,
 * and the controller as `ugro controller` wires it, in this process, over a pool of its own.
 */
import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type RunMeta, runDirName, runIdOf } from '../../controller/api/run.ts';
import { parseTrainingJob, specHash } from '../../controller/api/trainingjob.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import { SshTransport } from '../../controller/backends/ssh/transport.ts';
import type { Logger } from '../../controller/base/log.ts';
import { Controller } from '../../controller/loop/controller.ts';
import { Observability } from '../../controller/observability/wire.ts';
import { job, readStatus } from '../lab/controller-harness.ts';
import { freePort } from '../support/net.ts';
import { type Lab, onCleanup, PREFIX, pad, sh } from './context.ts';
import { poll, readText } from './lib.ts';

export const OWNER = `${PREFIX}progress`;
export const QUIET: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined };
export const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

export const clockTicks = () => Number(sh('getconf', ['CLK_TCK']).out.trim()) || 100;

export interface BenchRun {
  name: string;
  host: string;
  metrics: string;
  step: number;
  /** step -> when it was appended (ms). */
  at: Map<number, number>;
}

/** n cheap running jobs: run dirs launched by launch.sh (a sleep under rank.sh) and their job files. */
export async function makeRuns(lab: Lab, rt: SshBackend, jobsDir: string, n: number): Promise<BenchRun[]> {
  onCleanup(`remove ${jobsDir}`, () => rmSync(jobsDir, { recursive: true, force: true }));
  const runs: BenchRun[] = [];
  const now = new Date().toISOString();
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const h = lab.hosts[i % lab.hosts.length];
      const name = `${PREFIX}p${pad(i, 3)}`;
      const text = job(name, { command: ['sleep', '100000'], nodes: 1, hosts: [h.name] });
      const parsed = parseTrainingJob(text, `${name}.yaml`);
      if (!parsed.ok) throw new Error(`bench job ${name} is invalid: ${JSON.stringify(parsed.issues)}`);
      const hash = specHash(parsed.value.spec);
      const dir = runDirName(name, hash, 1);
      const runId = runIdOf(name, hash, 1);
      const meta: RunMeta = {
        job: name,
        runId,
        specHash: hash,
        attempt: 1,
        host: h.name,
        nodeRank: 0,
        nnodes: 1,
        nprocPerNode: 1,
        hosts: [h.name],
        rdzvEndpoint: `${h.address}:${30000 + i}`,
        masterPort: 30000 + i,
        createdAt: now,
        owner: OWNER,
      };
      await rt.launch(h, {
        dir,
        rdzvAddr: h.address,
        meta,
        argv: ['sh', '-c', 'RANK=0 LOCAL_RANK=0 GROUP_RANK=0 exec "$UGRO_RUN_DIR/rank.sh" sleep 100000'],
        ugroEnv: { UGRO_RUN_ID: runId },
        jobEnv: {},
      });
      writeFileSync(join(jobsDir, `${name}.yaml`), text);
      runs.push({ name, host: h.name, metrics: join(h.paths.runs, dir, 'metrics.jsonl'), step: 0, at: new Map() });
    }),
  );
  return runs.sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** One metrics line per run, now; returns the CPU ms it took (taken out of the controller's). */
export function appendAll(runs: BenchRun[]): number {
  const c0 = cpuMs();
  for (const r of runs) {
    r.step++;
    const t = Date.now();
    appendFileSync(r.metrics, `${JSON.stringify({ step: r.step, loss: 1 / r.step, time: t / 1000 })}\n`);
    r.at.set(r.step, t);
  }
  return cpuMs() - c0;
}

/**
 * Every run appends a line once a second, each at its own moment of the second (as independent
 * jobs do, not in step with the watcher's tick). Returns the stop and the appends' CPU so far.
 */
export function appendEverySecond(runs: BenchRun[]): { stop: () => void; cpuMs: () => number } {
  let cpu = 0;
  const timers: NodeJS.Timeout[] = [];
  for (const r of runs) {
    timers.push(
      setTimeout(() => {
        cpu += appendAll([r]);
        timers.push(setInterval(() => (cpu += appendAll([r])), 1000));
      }, Math.random() * 1000),
    );
  }
  return {
    stop: () => {
      for (const t of timers) clearInterval(t);
    },
    cpuMs: () => cpu,
  };
}

/** CPU ticks of the lab users' sshd processes, the scripts they ran and reaped included. */
export function hostsTicks(lab: Lab): Map<number, number> {
  const users = new Set(lab.hosts.map((h) => h.user));
  const out = new Map<number, number>();
  for (const line of sh('ps', ['-eo', 'pid=,user=,comm=']).out.split('\n')) {
    const [pid, user, comm] = line.trim().split(/\s+/);
    if (comm !== 'sshd' || !users.has(user)) continue;
    const s = readText(`/proc/${pid}/stat`);
    if (!s) continue;
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    out.set(Number(pid), Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
  }
  return out;
}

export const ticksDelta = (a: Map<number, number>, b: Map<number, number>) =>
  [...b].reduce((s, [pid, t]) => s + (a.has(pid) ? t - (a.get(pid) ?? 0) : 0), 0);

/** A host runtime over a pool of this process's own, 64 channels a host (see the header). */
export function labRuntime(lab: Lab) {
  const pool = new SshPool(lab.cluster.hosts, { maxChannels: 64 });
  onCleanup('close a progress bench pool', () => pool.close());
  return { pool, runtime: new SshBackend(new SshTransport(pool, lab.cluster)) };
}

/** The controller as `ugro controller` wires it, in this process; it adopts the runs there are at its start. */
export async function controllerFor(lab: Lab, jobsDir: string, { pool, runtime }: ReturnType<typeof labRuntime>) {
  onCleanup(`remove ${jobsDir}`, () => rmSync(jobsDir, { recursive: true, force: true }));
  const port = await freePort();
  const obs = new Observability({
    cluster: lab.cluster,
    runtime,
    log: QUIET,
    http: `127.0.0.1:${port}`,
    healthEveryMs: 30_000,
  });
  const ctl = new Controller({ cluster: lab.cluster, jobsDir, runtime, log: QUIET, observer: obs.view, owner: OWNER });
  obs.attach(ctl);
  await ctl.start();
  await obs.start(ctl);
  let writes = 0;
  const persisted = obs.view.persisted.bind(obs.view);
  obs.view.persisted = (...a) => {
    writes++;
    persisted(...a);
  };
  const stop = async () => {
    await obs.stop();
    await ctl.stop();
    pool.close();
  };
  onCleanup('stop the progress bench controller', stop);
  return { ctl, obs, stop, writes: () => writes, metricsUrl: `http://127.0.0.1:${port}/metrics` };
}

export async function allRunning(jobsDir: string, runs: BenchRun[]): Promise<void> {
  await poll(
    `${runs.length} jobs Running`,
    () => runs.every((r) => readStatus(jobsDir, r.name)?.phase === 'Running'),
    120_000,
    500,
  );
}
