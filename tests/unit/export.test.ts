/**
 * `ugro export job`: the manifests are checked against the upstream CRDs' own OpenAPI schemas
 * (tests/fixtures/crds/, SOURCE.md says where each came from), closed the way the API server's
 * pruning would treat them (a field the schema does not know is an error here, not a silent
 * drop there), plus the facts the schemas leave to their descriptions; the pod template, env and
 * resources are checked with Kubernetes' own types (kubernetes-models). What UGRO does that the
 * target cannot is listed at the top, never dropped silently. The sbatch export is the script
 * the Slurm backend submits.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { EnvVar } from 'kubernetes-models/v1/EnvVar';
import { PodTemplateSpec } from 'kubernetes-models/v1/PodTemplateSpec';
import { ResourceRequirements } from 'kubernetes-models/v1/ResourceRequirements';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { sbatchHeader } from '../../controller/backends/slurm/batch.ts';
import { slurmPlan } from '../../controller/backends/slurm/sbatch-plan.ts';
import { main } from '../../controller/cli/main.ts';
import { notMapped } from '../../controller/export/common.ts';
import { exportJob } from '../../controller/export/export.ts';
import { CLUSTER, job } from './job-fixtures.ts';
import { slurmCluster } from './slurm-fixtures.ts';

const CRDS = new URL('../fixtures/crds/', import.meta.url).pathname;
const crd = (file: string) => parse(readFileSync(join(CRDS, file), 'utf8')) as Record<string, unknown>;

/**
 * The CRD schema as a validator: upstream's facts (types, formats, required, patterns) as they
 * are; objects with `properties` and no `additionalProperties` closed (the API server would
 * prune an unknown field: for an export that is a field lost), UGRO's own x-ugro-* notes out.
 */
function validator(schema: Record<string, unknown>) {
  const close = (s: unknown): unknown => {
    if (Array.isArray(s)) return s.map(close);
    if (!s || typeof s !== 'object') return s;
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(s)) if (!k.startsWith('x-')) o[k] = close(v);
    if (o.properties && o.additionalProperties === undefined) o.additionalProperties = false;
    return o;
  };
  const ajv = new Ajv({ strict: false, allErrors: true });
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && Math.abs(n) < 2 ** 31 });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isSafeInteger(n) });
  const v = ajv.compile(close(schema) as object);
  return (doc: unknown) => {
    const ok = v(doc);
    return ok ? [] : (v.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  };
}

const PYTORCH = crd('kubeflow.org_pytorchjobs.v1.yaml');
const TRAIN = crd('trainer.kubeflow.org_trainjobs.v1alpha1.yaml');
const RUNTIME = crd('torch-distributed.runtime.yaml');
const checkPyTorchJob = validator(PYTORCH);
const checkTrainJob = validator(TRAIN);
const facts = (c: Record<string, unknown>) => c['x-ugro-facts'] as Record<string, unknown>;

/** Export and read back: the leading comment lines, and the manifest. */
function exported(j: ReturnType<typeof job>, to: 'pytorchjob' | 'trainjob', image?: string) {
  const text = exportJob(j, CLUSTER, to, image ? { image } : {});
  const comments = text.split('\n').filter((l) => l.startsWith('#'));
  // biome-ignore lint/suspicious/noExplicitAny: a manifest read back, walked by the assertions
  return { text, comments, doc: parse(text) as Record<string, any> };
}

const HOSTILE_ARGS = ["it's", 'two words', '$(id)', 'a\nb', '--lr=3e-4', ''];

describe('PyTorchJob (kubeflow.org/v1)', () => {
  const J = job('llama-lora', {
    script: 'train.py',
    args: HOSTILE_ARGS,
    env: { NCCL_DEBUG: 'INFO' },
    nodes: 3,
    nprocPerNode: 2,
    restartPolicy: { maxRestarts: 2 },
    activeDeadlineSeconds: 86400,
    checkpoint: { resumeFrom: 'step-400' },
  });

  it('Master + 2 Workers, GPU limits, torchrun with the args as given, env; valid against the CRD schema', () => {
    const { doc } = exported(J, 'pytorchjob', 'ghcr.io/me/train:1');
    expect(checkPyTorchJob(doc)).toEqual([]);
    expect(doc).toMatchObject({ apiVersion: 'kubeflow.org/v1', kind: 'PyTorchJob', metadata: { name: 'llama-lora' } });
    const specs = doc.spec.pytorchReplicaSpecs;
    expect(Object.keys(specs)).toEqual(['Master', 'Worker']);
    expect([specs.Master.replicas, specs.Worker.replicas]).toEqual([1, 2]);
    expect(doc.spec.nprocPerNode).toBe('2');
    expect(doc.spec.runPolicy).toEqual({ backoffLimit: 12, cleanPodPolicy: 'None', activeDeadlineSeconds: 86400 });
    // biome-ignore lint/suspicious/noExplicitAny: a replica spec read back
    for (const r of Object.values(specs) as any[]) {
      expect(facts(PYTORCH).restartPolicy).toContain(r.restartPolicy);
      expect(r.restartPolicy).toBe('OnFailure');
      expect(Object.keys(specs).every((k) => (facts(PYTORCH).replicaTypes as string[]).includes(k))).toBe(true);
      const c = r.template.spec.containers[0];
      expect(c).toMatchObject({
        name: facts(PYTORCH).containerName,
        image: 'ghcr.io/me/train:1',
        command: ['torchrun', '/workspace/scripts/train.py'],
        args: HOSTILE_ARGS,
        resources: { limits: { 'nvidia.com/gpu': 2 } },
      });
      expect(c.env).toEqual(
        expect.arrayContaining([
          { name: 'NCCL_DEBUG', value: 'INFO' },
          { name: 'UGRO_RESUME_FROM', value: 'step-400' },
          { name: 'UGRO_CHECKPOINT_DIR', value: '/workspace/checkpoints/llama-lora' },
        ]),
      );
      // Kubernetes' own types: the pod template as the API server would read it.
      expect(() => new PodTemplateSpec(r.template).validate()).not.toThrow();
    }
  });

  it('nodes {min, max}: Workers only, elasticPolicy with c10d and the range', () => {
    const { doc } = exported(job('elastic', { script: 'train.py', nodes: { min: 2, max: 4 } }), 'pytorchjob');
    expect(checkPyTorchJob(doc)).toEqual([]);
    expect(Object.keys(doc.spec.pytorchReplicaSpecs)).toEqual(['Worker']);
    expect(doc.spec.pytorchReplicaSpecs.Worker.replicas).toBe(4);
    expect(doc.spec.elasticPolicy).toEqual({ minReplicas: 2, maxReplicas: 4, rdzvBackend: 'c10d', maxRestarts: 0 });
  });

  it('no restarts allowed: restartPolicy Never, backoffLimit 0; a command job runs torchrun --no_python', () => {
    const j = job('once', {
      command: ['python3', '/opt/t.py'],
      nodes: 1,
      restartPolicy: { maxInfraRestarts: 0 },
      suspend: true,
    });
    const { doc } = exported(j, 'pytorchjob');
    expect(checkPyTorchJob(doc)).toEqual([]);
    expect(Object.keys(doc.spec.pytorchReplicaSpecs)).toEqual(['Master']);
    expect(doc.spec.pytorchReplicaSpecs.Master.restartPolicy).toBe('Never');
    expect(doc.spec.runPolicy).toMatchObject({ backoffLimit: 0, suspend: true });
    expect(doc.spec.pytorchReplicaSpecs.Master.template.spec.containers[0].command).toEqual([
      'torchrun',
      '--no_python',
      'python3',
      '/opt/t.py',
    ]);
  });

  it('the schema check can fail: a misspelt field, a wrong type, a missing required one', () => {
    const { doc } = exported(J, 'pytorchjob');
    const bad = structuredClone(doc);
    bad.spec.pytorchReplicaSpec = bad.spec.pytorchReplicaSpecs;
    delete bad.spec.pytorchReplicaSpecs;
    expect(checkPyTorchJob(bad).join('\n')).toMatch(/pytorchReplicaSpecs|additional properties/);
    const typed = structuredClone(doc);
    typed.spec.pytorchReplicaSpecs.Worker.replicas = '2';
    expect(checkPyTorchJob(typed).join('\n')).toMatch(/Worker\/replicas must be integer/);
    const pod = structuredClone(doc.spec.pytorchReplicaSpecs.Master.template);
    pod.spec.containers[0].image = 7;
    expect(() => new PodTemplateSpec(pod).validate()).toThrow(/image/);
  });

  it('what has no equivalent is listed at the top, never dropped silently', () => {
    const j = job('full', {
      script: 'train.py',
      resources: { minGpuMemoryGiB: 10 },
      failurePolicy: { progressDeadlineSeconds: 600 },
      restartPolicy: { exitCodes: { fatal: [2] } },
      hosts: ['gpu1'],
    });
    const { comments, text } = exported(j, 'pytorchjob');
    const top = comments.join('\n');
    expect(text.startsWith('# Written by `ugro export job full --to pytorchjob`')).toBe(true);
    for (const phrase of [
      'VRAM-aware placement',
      'minGpuMemoryGiB (10)',
      'hang detection (UGRO_HEARTBEAT_FILE, failurePolicy.progressDeadlineSeconds: 600 s)',
      'checkpoint copying between hosts',
      'restartPolicy.exitCodes (fatal 2, retry -)',
      'spec.hosts (gpu1)',
      'priority (normal)',
    ])
      expect(top).toContain(phrase);
    expect(comments.length).toBe(notMapped(j, 'pytorchjob').length + 2);
  });
});

describe('TrainJob (trainer.kubeflow.org/v1alpha1, torch-distributed)', () => {
  it('numNodes, numProcPerNode, resourcesPerNode, command, args, env; valid against the CRD schema', () => {
    const j = job('llama-lora', {
      script: 'train.py',
      args: HOSTILE_ARGS,
      nodes: 3,
      nprocPerNode: 'gpu',
      env: { A: "x'y" },
    });
    const { doc } = exported(j, 'trainjob', 'ghcr.io/me/train:1');
    expect(checkTrainJob(doc)).toEqual([]);
    const f = facts(TRAIN);
    expect(doc.metadata.name).toMatch(new RegExp(f.nameRule as string));
    expect(doc.spec.runtimeRef).toEqual({
      name: f.torchRuntime,
      apiGroup: 'trainer.kubeflow.org',
      kind: 'ClusterTrainingRuntime',
    });
    expect((RUNTIME.metadata as { name: string }).name).toBe(f.torchRuntime);
    expect(doc.spec.trainer).toMatchObject({
      image: 'ghcr.io/me/train:1',
      command: ['torchrun', '/workspace/scripts/train.py'],
      args: HOSTILE_ARGS,
      numNodes: 3,
      numProcPerNode: 'gpu',
      resourcesPerNode: { limits: { 'nvidia.com/gpu': 1 } },
    });
    for (const e of doc.spec.trainer.env) expect(() => new EnvVar(e).validate()).not.toThrow();
    expect(doc.spec.trainer.env).toContainEqual({ name: 'A', value: "x'y" });
    expect(() => new ResourceRequirements(doc.spec.trainer.resourcesPerNode).validate()).not.toThrow();
  });

  it('without --image the runtime image is used; a name the CRD refuses is refused here', () => {
    const { doc, comments } = exported(job('plain', { script: 'train.py', activeDeadlineSeconds: 60 }), 'trainjob');
    expect(checkTrainJob(doc)).toEqual([]);
    expect(doc.spec.trainer.image).toBeUndefined();
    expect(comments.join('\n')).toContain('activeDeadlineSeconds (60): TrainJob v1alpha1 (this CRD) has no such field');
    expect(() => exportJob(job('1st-run', { script: 'train.py' }), CLUSTER, 'trainjob')).toThrow(/start with a letter/);
    const bad = { ...doc, spec: { ...doc.spec, runtimeRef: {} } };
    expect(checkTrainJob(bad).join('\n')).toMatch(/must have required property 'name'/);
  });
});

describe('sbatch', () => {
  it("is the batch script the Slurm backend submits, for the cluster's slurm: section, with the notes on top", () => {
    const cluster = slurmCluster();
    const j = job('llama-lora', { script: 'train.py', nodes: 2, args: HOSTILE_ARGS });
    const text = exportJob(j, cluster, 'sbatch');
    const lines = text.split('\n');
    expect(lines[0]).toBe('#!/bin/sh');
    expect(lines[1]).toBe('# Written by `ugro export job llama-lora --to sbatch` from the TrainingJob llama-lora.');
    const plan = slurmPlan(j, cluster.slurm!.slurm, { rdzvTimeoutSeconds: 300 });
    expect(lines.filter((l) => l.startsWith('#SBATCH'))).toEqual(
      sbatchHeader(lines.find((l) => l.startsWith('#SBATCH --job-name'))!.slice(19), plan),
    );
    expect(text).toContain('  /home/alice/ugro/scripts/train.py \\');
    expect(spawnSync('sh', ['-n', '-c', text]).status).toBe(0);
    expect(text).toContain('mkdir run && cd run && sbatch ../llama-lora.sbatch');
  });
});

describe('ugro export job (the CLI)', () => {
  let root: string;
  let jobs: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), 'ugro-export-'));
    jobs = join(root, 'jobs');
    mkdirSync(jobs);
    writeFileSync(
      join(jobs, 'train.yaml'),
      'apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: train\n' +
        'spec:\n  script: train.py\n  nodes: 2\n',
    );
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));
  const CLUSTER_FILE = new URL('../fixtures/cluster/valid.yaml', import.meta.url).pathname;
  async function ugro(...args: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    let raw = '';
    const code = await main(
      ['node', 'ugro', '--cluster', CLUSTER_FILE, '--jobs', jobs, ...args],
      { out: (s) => out.push(s), err: (s) => err.push(s), write: (c) => (raw += String(c)) },
      { USER: 'alice', HOME: '/home/alice' },
    );
    return { code, out: raw + out.join('\n'), err: err.join('\n') };
  }

  it('prints to stdout, or writes -o FILE; exit 2 for a bad --to, 3 for a job that does not exist', async () => {
    const r = await ugro('export', 'job', 'train', '--to', 'pytorchjob');
    expect(r.code, r.err).toBe(0);
    expect(checkPyTorchJob(parse(r.out))).toEqual([]);
    const file = join(root, 'train.sbatch');
    expect((await ugro('export', 'job', 'train', '--to', 'sbatch', '-o', file)).code).toBe(0);
    expect(readFileSync(file, 'utf8')).toMatch(/^#!\/bin\/sh\n# Written by `ugro export job train --to sbatch`/);
    expect((await ugro('export', 'job', 'train', '--to', 'helm')).code).toBe(2);
    expect((await ugro('export', 'job', 'nope', '--to', 'trainjob')).code).toBe(3);
    expect((await ugro('export', 'job', 'train', '--to', 'sbatch', '--image', 'x:1')).code).toBe(2);
  });
});
