/**
 * PURE: a TrainingJob as Kubeflow resources. A `kubeflow.org/v1` PyTorchJob (training-operator):
 * a Master and nodes-1 Workers (an elastic job: Workers between min and max, elasticPolicy with
 * c10d), nvidia.com/gpu limits, the job's command, args and env, the restart policy mapped.
 * A `trainer.kubeflow.org/v1alpha1` TrainJob (Kubeflow Trainer) for the `torch-distributed`
 * runtime: numNodes, numProcPerNode, resourcesPerNode, command, args, env. Both print torchrun
 * as the command: the operator and the runtime give it nnodes, node rank and the master in
 * PET_* variables.
 */
import { UsageError } from '../../config/errors.ts';
import { nodeRange, type TrainingJob } from '../api/trainingjob.ts';
import { containerCommand, containerEnv, DEFAULT_IMAGE, gpusPerNode } from './common.ts';

/** The training container's name the training-operator looks for. */
const PYTORCH_CONTAINER = 'pytorch';
const TORCH_RUNTIME = 'torch-distributed';

function restartPolicy(job: TrainingJob): 'OnFailure' | 'Never' {
  const r = job.spec.restartPolicy;
  return r.maxRestarts + r.maxInfraRestarts > 0 ? 'OnFailure' : 'Never';
}

function labels(job: TrainingJob): Record<string, string> {
  return { ...job.metadata.labels, 'app.kubernetes.io/managed-by': 'ugro-export' };
}

export function pytorchJob(job: TrainingJob, o: { image?: string } = {}): Record<string, unknown> {
  const s = job.spec;
  const { min, max } = nodeRange(s);
  const elastic = min !== max;
  const { command, args } = containerCommand(job);
  const gpus = gpusPerNode(job);
  const template = {
    metadata: { labels: labels(job) },
    spec: {
      containers: [
        {
          name: PYTORCH_CONTAINER,
          image: o.image ?? DEFAULT_IMAGE,
          command,
          ...(args.length ? { args } : {}),
          env: containerEnv(job),
          resources: { limits: { 'nvidia.com/gpu': gpus } },
        },
      ],
    },
  };
  const replica = (replicas: number) => ({ replicas, restartPolicy: restartPolicy(job), template });
  // An elastic job is Workers only (the operator's own rule); a fixed one has one Master.
  const specs = elastic
    ? { Worker: replica(max) }
    : { Master: replica(1), ...(max > 1 ? { Worker: replica(max - 1) } : {}) };
  const r = s.restartPolicy;
  return {
    apiVersion: 'kubeflow.org/v1',
    kind: 'PyTorchJob',
    metadata: {
      name: job.metadata.name,
      labels: labels(job),
      ...(job.metadata.annotations ? { annotations: { ...job.metadata.annotations } } : {}),
    },
    spec: {
      nprocPerNode: String(s.nprocPerNode),
      ...(elastic
        ? { elasticPolicy: { minReplicas: min, maxReplicas: max, rdzvBackend: 'c10d', maxRestarts: r.maxRestarts } }
        : {}),
      runPolicy: {
        backoffLimit: r.maxRestarts + r.maxInfraRestarts,
        cleanPodPolicy: 'None',
        ...(s.activeDeadlineSeconds ? { activeDeadlineSeconds: s.activeDeadlineSeconds } : {}),
        ...(s.suspend ? { suspend: true } : {}),
      },
      pytorchReplicaSpecs: specs,
    },
  };
}

export function trainJob(job: TrainingJob, o: { image?: string } = {}): Record<string, unknown> {
  const s = job.spec;
  // The CRD's own rule (RFC 1035): a TrainJob's name starts with a letter.
  if (!/^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(job.metadata.name))
    throw new UsageError(
      `a TrainJob's name must start with a letter (RFC 1035): ${job.metadata.name} cannot be one; ` +
        'export it as a pytorchjob, or rename the job',
    );
  const { command, args } = containerCommand(job);
  return {
    apiVersion: 'trainer.kubeflow.org/v1alpha1',
    kind: 'TrainJob',
    metadata: {
      name: job.metadata.name,
      labels: labels(job),
      ...(job.metadata.annotations ? { annotations: { ...job.metadata.annotations } } : {}),
    },
    spec: {
      runtimeRef: { name: TORCH_RUNTIME, apiGroup: 'trainer.kubeflow.org', kind: 'ClusterTrainingRuntime' },
      ...(s.suspend ? { suspend: true } : {}),
      trainer: {
        ...(o.image ? { image: o.image } : {}),
        command,
        ...(args.length ? { args } : {}),
        env: containerEnv(job),
        numNodes: nodeRange(s).max,
        numProcPerNode: s.nprocPerNode,
        resourcesPerNode: { limits: { 'nvidia.com/gpu': gpusPerNode(job) } },
      },
    },
  };
}
