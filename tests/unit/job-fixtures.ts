/**
 * Shared builders for the pure-core unit tests (not a test file itself): the fixture cluster's
 * hosts, TrainingJobs parsed from YAML (so every default applies exactly as in a job file), a
 * cluster view, and run parts as observe.sh would report them.
 */
import { readFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { type Host, parseCluster } from '../../config/cluster.ts';
import type { SpecState } from '../../controller/api/job-state.ts';
import {
  parseStopReason,
  type RankObservation,
  type RunMeta,
  type RunPart,
  runDirName,
  runIdOf,
} from '../../controller/api/run.ts';
import { parseTrainingJob, specHash, type TrainingJob } from '../../controller/api/trainingjob.ts';
import type { ClusterView } from '../../controller/core/types.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

/** tests/fixtures/cluster/valid.yaml: gpu-master (10.0.0.10), gpu1 (10.0.0.11), gpu2 (10.0.0.12). */
export const CLUSTER = (() => {
  const r = parseCluster(readFileSync(`${ROOT}tests/fixtures/cluster/valid.yaml`, 'utf8'), '/etc/ugro/cluster.yaml', {
    env: {},
    home: '/home/alice',
    user: 'alice',
  });
  if (!r.ok) throw new Error(`fixture cluster is invalid: ${JSON.stringify(r.issues)}`);
  return r.value;
})();
export const HOSTS: Host[] = CLUSTER.hosts;
export const host = (name: string): Host => {
  const h = HOSTS.find((x) => x.name === name);
  if (!h) throw new Error(`no host ${name} in the fixture cluster`);
  return h;
};

/** A job file's YAML text for `spec` (a plain object, written as a person would). */
export function jobYaml(name: string, spec: Record<string, unknown>): string {
  return stringify({ apiVersion: 'ugro.dev/v1alpha1', kind: 'TrainingJob', metadata: { name }, spec });
}

/** Parse a job as the store does (defaults applied); throws on an invalid one. */
export function job(name: string, spec: Record<string, unknown> = { script: 'train.py' }): TrainingJob {
  const r = parseTrainingJob(jobYaml(name, spec), `/jobs/${name}.yaml`);
  if (!r.ok) throw new Error(`expected a valid job, got ${JSON.stringify(r.issues)}`);
  return r.value;
}

export function validSpec(
  name: string,
  spec: Record<string, unknown> = { script: 'train.py' },
): Extract<SpecState, { kind: 'valid' }> {
  const j = job(name, spec);
  return { kind: 'valid', job: j, hash: specHash(j.spec), file: `/jobs/${name}.yaml` };
}

/** Every host Ready and free, one 8 GiB GPU each, master port 29500. */
export function view(over: Partial<ClusterView> = {}): ClusterView {
  return {
    hosts: HOSTS,
    ready: new Set(HOSTS.map((h) => h.name)),
    notReady: new Map(),
    busy: new Map(),
    foreign: new Map(),
    lastHeard: new Map(),
    down: new Map(),
    usedPorts: new Set(),
    basePort: 29500,
    gpus: new Map(HOSTS.map((h) => [h.name, [{ memoryTotalMiB: 8188 }]])),
    ahead: [],
    rdzvTimeoutSeconds: 300,
    defaultGraceSeconds: 30,
    ...over,
  };
}

export interface PartOpts {
  alive?: boolean;
  exit?: number;
  cancelled?: string;
  pid?: number;
  ranks?: RankObservation[];
  launchedAtMs?: number;
  finishedAtMs?: number;
  agentLogTail?: string[];
  metrics?: Record<string, number | string | boolean>;
}

/** One attempt of a job spread over `hosts` (node rank = index), as its run directories describe it. */
export function run(
  jobName: string,
  hash: string,
  attempt: number,
  hosts: string[],
  o: { createdAt: string; port?: number; nproc?: number },
) {
  const dir = runDirName(jobName, hash, attempt);
  const runId = runIdOf(jobName, hash, attempt);
  const port = o.port ?? 29500;
  const meta = (h: string): RunMeta => ({
    job: jobName,
    runId,
    specHash: hash,
    attempt,
    host: h,
    nodeRank: hosts.indexOf(h),
    nnodes: hosts.length,
    nprocPerNode: o.nproc ?? 1,
    hosts,
    rdzvEndpoint: `${host(hosts[0]).address}:${port}`,
    masterPort: port,
    createdAt: o.createdAt,
  });
  const part = (h: string, p: PartOpts = {}): RunPart => ({
    dir,
    host: h,
    meta: meta(h),
    pid: p.pid ?? 1000 + hosts.indexOf(h),
    alive: p.alive ?? p.exit === undefined,
    ...(p.exit !== undefined ? { exitCode: p.exit } : {}),
    ...(p.cancelled !== undefined ? { stopReason: parseStopReason(p.cancelled) } : {}),
    ...(p.launchedAtMs !== undefined ? { launchedAtMs: p.launchedAtMs } : {}),
    ...(p.finishedAtMs !== undefined ? { finishedAtMs: p.finishedAtMs } : {}),
    ranks: p.ranks ?? [],
    agentLogTail: p.agentLogTail ?? [],
    ...(p.metrics ? { metrics: p.metrics } : {}),
  });
  return { dir, runId, port, hosts, meta, part };
}

/** A running rank (global `rank`, local `localRank`). */
export const rank = (r: number, localRank = 0, extra: Partial<RankObservation> = {}): RankObservation => ({
  rank: r,
  localRank,
  pid: 2000 + r,
  ...extra,
});
