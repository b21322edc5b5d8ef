/**
 * Device check, step 1 (here): record the exact shell command lines UGRO sends to a host (the
 * health probe, the run's launch/wait/observe, infra's driver and torch checks), for one GPU
 * host that is the device machine itself. tests/device/check.sh runs them there with a real
 * GPU, NCCL and nvidia-smi; tests/device/report.ts parses what came back with UGRO's own parsers.
 * Nothing here talks to a host: a recorder stands in for SSH, so the bytes are what SSH would carry.
 *
 * Usage: npx tsx tests/device/prepare.ts [OUTDIR=.device]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCluster } from '../../config/cluster.ts';
import { buildCommand } from '../../config/quote.ts';
import { runDirName, runIdOf } from '../../controller/api/run.ts';
import { parseTrainingJob } from '../../controller/api/trainingjob.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import type { ExecOptions, ExecResult, HostConnection, SshPool } from '../../controller/backends/ssh/pool.ts';
import { probeHost } from '../../controller/backends/ssh/probe.ts';
import { SshTransport } from '../../controller/backends/ssh/transport.ts';
import { checkpointDir, torchrunArgv, ugroEnv } from '../../controller/core/launch.ts';
import { driverCheckScript, torchCheckScript } from '../../infra/scripts.ts';

const out = process.argv[2] ?? '.device';
mkdirSync(out, { recursive: true });

// The device: one host, root, the image's python3 (it holds torch), everything under /tmp/ugro-dev.
export const DEVICE_CLUSTER = `cluster:
  name: device
  master:
    hostname: gpu-device
    ip: 127.0.0.1
    port: 22
    user: root
    hardware: { gpu_model: "H100", vram_gb: 80 }
    paths: { home: /tmp/ugro-dev, project: /tmp/ugro-dev/ugro, scripts: /tmp/ugro-dev/ugro/scripts }
  communication: { backend: c10d, master_port: 29500, timeout_seconds: 60 }
workers: []
environment: { manager: system, python: python3 }
`;
writeFileSync(join(out, 'cluster.yaml'), DEVICE_CLUSTER);
const parsed = parseCluster(DEVICE_CLUSTER, 'device/cluster.yaml', {
  env: { HOME: '/root' },
  home: '/root',
  user: 'root',
});
if (!parsed.ok) throw new Error(parsed.issues.map((e) => `${e.path}: ${e.message}`).join('\n'));
const cluster = parsed.value;
const host = cluster.master;

/** Records every command line instead of sending it; answers as a host would, minimally. */
const recorded: { name: string; line: string }[] = [];
let nextName = '';
function record(
  argv: readonly string[],
  opts: ExecOptions & { env?: Record<string, string> } = {},
  stdout = '',
): ExecResult {
  recorded.push({ name: nextName, line: buildCommand(argv, { env: opts.env, cwd: opts.cwd }) });
  return { code: 0, signal: undefined, stdout, stderr: '' } as unknown as ExecResult;
}
const conn = {
  connected: true,
  lastConnectMs: 0,
  exec: async (argv: readonly string[], opts?: ExecOptions) => record(argv, opts, ''),
} as unknown as HostConnection;
/** SshTransport over the recorder: the same `sh -c <lib + NAME.sh> ugro-NAME ARGS…` lines as over SSH. */
const pool = {
  exec: async (_h: string, argv: readonly string[], opts?: ExecOptions) =>
    record(argv, opts, nextName === 'launch' ? '@@launch\nresult=launched\npid=1\nstarttime=1\n@@end\n' : ''),
  host: () => conn,
} as unknown as Pick<SshPool, 'exec' | 'host'>;

// 1. Health probe (the clock exec and the probe itself).
nextName = 'probe';
await probeHost(cluster, host, { connection: () => conn });
const probe = recorded.pop()!;
recorded.length = 0;
recorded.push(probe);

// 2. A run: one node, nproc 1 (one GPU), NCCL chosen by train.py since CUDA is there. (The spec
// hash is hex, as a run dir's name must be: the 2026-11-25 capture used dev00001.)
const job = parseTrainingJob(`apiVersion: ugro.dev/v1alpha1
kind: TrainingJob
metadata: { name: gpu-check }
spec: { script: train.py, args: [--epochs, "3", --model, small-mlp], nodes: 1 }
`);
if (!job.ok) throw new Error('job');
const runId = runIdOf('gpu-check', 'dec00001', 1);
const dir = runDirName('gpu-check', 'dec00001', 1);
const n = {
  host,
  nodeRank: 0,
  nnodes: 1,
  nproc: 1,
  rdzvAddr: '127.0.0.1',
  port: 29517,
  runId,
  runDir: `${host.paths.runs}/${dir}`,
  attempt: 1,
  rdzvTimeoutSeconds: 60,
};
const rt = new SshBackend(new SshTransport(pool, cluster));
const checkpoint = checkpointDir(job.value, host);
if (!checkpoint.ok) throw new Error(checkpoint.why);
nextName = 'launch';
await rt.launch(host, {
  dir,
  rdzvAddr: '127.0.0.1',
  meta: {
    job: 'gpu-check',
    runId,
    specHash: 'dec00001',
    attempt: 1,
    host: host.name,
    nodeRank: 0,
    nnodes: 1,
    nprocPerNode: 1,
    hosts: [host.name],
    rdzvEndpoint: '127.0.0.1:29517',
    masterPort: 29517,
    createdAt: new Date().toISOString(),
  },
  argv: torchrunArgv(job.value, n),
  ugroEnv: ugroEnv(job.value, n, checkpoint.path),
  jobEnv: job.value.spec.env,
});
nextName = 'wait';
await rt.wait(host, dir, new AbortController().signal).catch(() => undefined);
nextName = 'observe';
await rt.observe(host).catch(() => undefined);

// 3. Infra's checks as `pulumi up` would run them: the real driver (>= 550), torch's CUDA build.
recorded.push({
  name: 'driver',
  line: driverCheckScript({ host: host.name, minDriver: '550', expectModels: ['H100'] }),
});
recorded.push({
  name: 'driver-too-old',
  line: driverCheckScript({ host: host.name, minDriver: '9999', expectModels: ['H100'] }),
});
recorded.push({
  name: 'torch',
  line: torchCheckScript({ host: host.name, python: 'python3', cudaMajor: '13', requireCuda: true, expectGpu: true }),
});
recorded.push({
  name: 'torch-wrong-cuda',
  line: torchCheckScript({ host: host.name, python: 'python3', cudaMajor: '11', requireCuda: true, expectGpu: true }),
});

for (const r of recorded) writeFileSync(join(out, `${r.name}.cmd`), r.line);
writeFileSync(join(out, 'run.env'), `RUN_DIR=${host.paths.runs}/${dir}\nSCRIPTS=${host.paths.scripts}\n`);
console.log(`wrote ${recorded.map((r) => r.name).join(', ')} to ${out}/`);
