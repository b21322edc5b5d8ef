/**
 * One real Controller over in-memory hosts (tests/support/fake-hosts.ts) in a temporary jobs dir,
 * driven only by the test (inertLoop: no watch, lock, timers or delayed requeues), with a clock
 * the test moves. The loop tests share it instead of each building its own. `stopLoopRigs()` in
 * an afterEach stops every rig made.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { JobStatus } from '../../controller/api/status.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { Controller, type ControllerOptions } from '../../controller/loop/controller.ts';
import { CLUSTER, HOSTS } from '../unit/job-fixtures.ts';
import { FakeHosts } from './fake-hosts.ts';
import { inertLoop } from './inert-loop.ts';
import { memoryLogger } from './memory-logger.ts';

export const RIG_T0 = Date.parse('2026-03-01T10:00:00.000Z');

export interface LoopRig {
  ctl: Controller;
  fake: FakeHosts;
  jobs: string;
  clock: { ms: number };
  /** A file of the jobs dir, parsed as YAML; undefined when absent. */
  read<T>(file: string): T | undefined;
  status(name: string): JobStatus | undefined;
  /** Writes `<name>.yaml` (a document's text). */
  write(name: string, text: string): void;
  /** Reconcile these jobs, then wait until the loop is quiet. */
  pass(...names: string[]): Promise<void>;
}

const made: Controller[] = [];

/** Stops every controller a rig started (an afterEach). */
export async function stopLoopRigs(): Promise<void> {
  for (const c of made.splice(0)) await c.stop();
}

/** A started controller; `options` override the rig's (cluster, preflight, accounts ...). */
export async function loopRig(
  o: { prefix?: string; fake?: FakeHosts; jobs?: string; options?: Partial<ControllerOptions> } = {},
): Promise<LoopRig> {
  const clock = { ms: RIG_T0 };
  const fake = o.fake ?? new FakeHosts(HOSTS, { now: () => clock.ms, cluster: CLUSTER });
  const jobs = o.jobs ?? mkdtempSync(join(tmpdir(), `ugro-${o.prefix ?? 'loop'}-`));
  const ctl = new Controller({
    cluster: CLUSTER,
    jobsDir: jobs,
    runtime: new SshBackend(fake),
    log: memoryLogger(),
    now: () => new Date(clock.ms),
    owner: 'test-controller',
    ...inertLoop,
    ...o.options,
  });
  made.push(ctl);
  await ctl.start();
  const read = <T>(file: string) =>
    existsSync(join(jobs, file)) ? (parse(readFileSync(join(jobs, file), 'utf8')) as T) : undefined;
  return {
    ctl,
    fake,
    jobs,
    clock,
    read,
    status: (name) => read<JobStatus>(`${name}.status.yaml`),
    write: (name, text) => writeFileSync(join(jobs, `${name}.yaml`), text),
    async pass(...names) {
      for (const n of names) ctl.enqueue(n);
      await ctl.idle();
    },
  };
}

/** The run dir of a status's run (`<job>.<hash>.<attempt>`). */
export const runDirOfStatus = (s: JobStatus | undefined): string =>
  `${s?.runId?.replace(/-([0-9a-f]{8})-a(\d+)$/, '.$1.$2')}`;
