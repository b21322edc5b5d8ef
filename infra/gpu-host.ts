/**
 * `ugro:infra:GpuHost`: everything one host needs before the controller can run training there
 * (docs/conventions.md, "Pulumi components"). Children are named `<host>-<step>`, have `parent: this`, and run in this
 * order, each step only when every step before it succeeded:
 *
 *   reachable -> driver -> dirs -> [env copies] -> env -> torch -> scripts-copy -> scripts
 *                                                              \-> runtime-copy -> runtime
 *
 * Every step also `dependsOn` reachable directly. Scripts come from the pure builders in
 * scripts.ts; `triggers` carry content hashes (lock file, scripts tree), so a step re-runs when
 * what it installs changed, and only then.
 */

import { posix } from 'node:path';
import { remote } from '@pulumi/command';
import * as pulumi from '@pulumi/pulumi';
import type { Host } from '../config/cluster.ts';
import { InternalError } from '../config/errors.ts';
import type { TreeManifest } from '../config/hash.ts';
import type { InfraSettings, Manager } from './config.ts';
import type { ConnectionArgs } from './connection.ts';
import { deployTreeScript, removeTreeScript } from './deploy-scripts.ts';
import {
  asRemoteCommand,
  type DirectorySpec,
  directoriesScript,
  driverCheckScript,
  parseFacts,
  pixiEnvDir,
  pixiEnvScript,
  reachabilityScript,
  systemEnvScript,
  torchCheckScript,
  venvEnvScript,
} from './scripts.ts';

export const GPU_HOST_TYPE = 'ugro:infra:GpuHost';

/** What the program read on this machine, once for all hosts. */
export interface LocalInputs {
  scripts: TreeManifest;
  runtime: TreeManifest;
  pixi?: { manifest: string; manifestSha256: string; lock: string; lockSha256: string };
  venvRequirements?: { path: string; sha256: string };
}

export interface GpuHostArgs {
  host: Host;
  settings: InfraSettings;
  connection: ConnectionArgs;
  inputs: LocalInputs;
}

/** Per-host stack outputs. */
export interface HostFacts {
  address: string;
  user: string;
  gpus: { index: number; name: string; memoryMiB: number }[];
  gpuModel: string;
  gpuMemoryMiB: number;
  driver: string;
  /** CUDA version torch was built for ("none" for a CPU build). */
  cuda: string;
  cudaAvailable: boolean;
  torch: string;
  manager: Manager;
  python: string;
  envPath: string;
}

/** Pure: the facts the steps printed -> the host's outputs. */
export function hostFacts(h: Pick<Host, 'address' | 'user'>, manager: Manager, f: Record<string, string>): HostFacts {
  const gpus = Object.keys(f)
    .map((k) => /^gpu\.(\d+)\.name$/.exec(k)?.[1])
    .filter((x): x is string => x !== undefined)
    .map((i) => ({ index: Number(i), name: f[`gpu.${i}.name`], memoryMiB: Number(f[`gpu.${i}.memory_mib`] ?? 0) }))
    .sort((a, b) => a.index - b.index);
  return {
    address: h.address,
    user: h.user,
    gpus,
    gpuModel: gpus[0]?.name ?? 'none',
    gpuMemoryMiB: gpus[0]?.memoryMiB ?? 0,
    driver: f.driver ?? 'none',
    cuda: f.torch_cuda ?? 'unknown',
    cudaAvailable: f.cuda_available === 'true',
    torch: f.torch ?? 'unknown',
    manager,
    python: f.python ?? 'unknown',
    envPath: f.env_path ?? 'unknown',
  };
}

/** Where things live on the host, derived from the cluster file's paths. */
function remoteLayout(h: Host, s: InfraSettings) {
  const project = h.paths.project;
  const state = posix.join(project, '.ugro');
  const stageRoot = posix.join(state, 'stage');
  const pixiManifest = posix.join(project, 'pixi.toml');
  const venvDir = posix.join(project, '.venv');
  const python =
    s.manager === 'pixi'
      ? posix.join(pixiEnvDir(pixiManifest, s.pixi.environment), 'bin/python')
      : s.manager === 'venv'
        ? posix.join(venvDir, 'bin/python')
        : (s.python ?? h.python);
  const dirs: DirectorySpec[] = [
    { path: project, mode: '755', what: 'project' },
    { path: h.paths.scripts, mode: '755', what: 'scripts' },
    { path: h.paths.runs, mode: '750', what: 'runs' },
    { path: h.paths.checkpoints, mode: '750', what: 'checkpoints' },
    { path: h.paths.logs, mode: '750', what: 'logs' },
    { path: h.paths.experiments, mode: '750', what: 'experiments' },
    { path: state, mode: '700', what: 'UGRO state' },
    { path: stageRoot, mode: '700', what: 'UGRO staging' },
  ];
  return {
    project,
    state,
    stageRoot,
    dirs: dirs.filter((d, i) => dirs.findIndex((x) => x.path === d.path) === i),
    pixiManifest,
    pixiLock: posix.join(project, 'pixi.lock'),
    venvDir,
    venvRequirements: posix.join(state, 'requirements.txt'),
    python,
    scriptsDest: h.paths.scripts,
    runtimeDest: posix.join(h.paths.scripts, 'runtime'),
  };
}

export class GpuHost extends pulumi.ComponentResource {
  readonly reachable: remote.Command;
  readonly driver: remote.Command;
  readonly dirs: remote.Command;
  readonly envCopies: remote.CopyToRemote[];
  readonly env: remote.Command;
  readonly torch: remote.Command;
  readonly scriptsCopy?: remote.CopyToRemote;
  readonly scripts: remote.Command;
  readonly runtimeCopy?: remote.CopyToRemote;
  readonly runtime: remote.Command;
  readonly facts: pulumi.Output<HostFacts>;

  constructor(name: string, args: GpuHostArgs, opts?: pulumi.ComponentResourceOptions) {
    super(GPU_HOST_TYPE, name, {}, opts);
    const { host: h, settings: s, connection, inputs } = args;
    const at = remoteLayout(h, s);

    // Checks and idempotent steps have no `delete`: a replacement just runs them again.
    const command = (step: string, script: string, dependsOn: pulumi.Resource[], triggers: unknown[]) =>
      new remote.Command(
        `${name}-${step}`,
        {
          connection,
          create: asRemoteCommand(script, `ugro-${step}`),
          triggers,
          // The provider would pass the last stdout as env vars, which sshd refuses without AcceptEnv.
          addPreviousOutputInEnv: false,
        },
        { parent: this, dependsOn },
      );
    const copy = (
      step: string,
      source: pulumi.asset.Asset | pulumi.asset.Archive,
      remotePath: string,
      dependsOn: pulumi.Resource[],
      triggers: unknown[],
    ) =>
      new remote.CopyToRemote(
        `${name}-${step}`,
        { connection, source, remotePath, triggers },
        { parent: this, dependsOn },
      );

    // 1. Reachability: the provider dials until the host accepts SSH (dialErrorLimit x
    //    perDialTimeout on the connection), then this proves the login is the right user.
    this.reachable = command('reachable', reachabilityScript({ host: name, user: h.user }), [], []);
    const after = (...deps: pulumi.Resource[]) => [this.reachable, ...deps];

    // 2. NVIDIA driver; checkEpoch lets a user re-run the checks without other changes.
    this.driver = command(
      'driver',
      driverCheckScript({ host: name, minDriver: s.minDriverVersion, expectModels: h.gpus.map((g) => g.model) }),
      after(),
      [s.checkEpoch],
    );

    // 3. Directories (never removed: runs, logs and checkpoints are data).
    this.dirs = command('dirs', directoriesScript({ host: name, dirs: at.dirs }), after(this.driver), []);

    // 4. Environment.
    let envScript: string;
    let envKey: string;
    this.envCopies = [];
    if (s.manager === 'pixi') {
      const p = inputs.pixi;
      // readLocalInputs refuses a missing pixi.toml or pixi.lock with the fix; a caller's own inputs must have them.
      if (!p) throw new InternalError(`${name}: manager pixi needs pixi.toml and pixi.lock (LocalInputs.pixi)`);
      this.envCopies.push(
        copy('pixi-manifest', new pulumi.asset.FileAsset(p.manifest), at.pixiManifest, after(this.dirs), [
          p.manifestSha256,
        ]),
      );
      this.envCopies.push(
        copy('pixi-lock', new pulumi.asset.FileAsset(p.lock), at.pixiLock, after(this.dirs), [p.lockSha256]),
      );
      envScript = pixiEnvScript({
        host: name,
        manifestPath: at.pixiManifest,
        lock: { path: at.pixiLock, sha256: p.lockSha256 },
        environment: s.pixi.environment,
        stateFile: posix.join(at.state, `pixi-${s.pixi.environment}.lock.sha256`),
      });
      envKey = `pixi:${s.pixi.environment}:${p.lockSha256}`;
    } else if (s.manager === 'venv') {
      const r = inputs.venvRequirements;
      if (r)
        this.envCopies.push(
          copy('venv-requirements', new pulumi.asset.FileAsset(r.path), at.venvRequirements, after(this.dirs), [
            r.sha256,
          ]),
        );
      envScript = venvEnvScript({
        host: name,
        basePython: s.python ?? h.python,
        venvDir: at.venvDir,
        requirements: r && { path: at.venvRequirements, sha256: r.sha256 },
        systemSitePackages: s.venv.systemSitePackages,
      });
      envKey = `venv:${s.venv.systemSitePackages}:${r?.sha256 ?? 'none'}`;
    } else {
      envScript = systemEnvScript({ host: name, python: at.python });
      envKey = `system:${at.python}`;
    }
    this.env = command('env', envScript, after(this.dirs, ...this.envCopies), [envKey]);

    // 5. torch and CUDA, in the environment just synced: re-checked when it changes.
    this.torch = command(
      'torch',
      torchCheckScript({
        host: name,
        python: at.python,
        cudaMajor: s.cudaMajor,
        requireCuda: s.requireCuda,
        expectGpu: h.gpus.length > 0,
      }),
      after(this.env),
      [s.checkEpoch, envKey],
    );

    // 6. scripts/ and the controller's host runtime: copied to a stage named by their content
    //    hash (the copy's trigger), then installed byte-exact by a command whose script lists
    //    every file's hash, so a changed file is an in-place update that rewrites only that file.
    //    The install's `delete` (pulumi destroy) removes exactly the files it deployed. Its
    //    triggers are the destination only: moving it, or a new connection, replaces the
    //    install, and deleteBeforeReplace makes the old delete run before the new create
    //    (the default, create first, would let the old delete remove the new files).
    const tree = (label: 'scripts' | 'runtime', t: TreeManifest, dest: string) => {
      const stage = posix.join(at.stageRoot, `${label}-${t.hash.slice(0, 16)}`);
      const c = t.files.length
        ? copy(`${label}-copy`, new pulumi.asset.FileArchive(t.root), stage, after(this.torch), [t.hash])
        : undefined;
      const install = new remote.Command(
        `${name}-${label}`,
        {
          connection,
          create: asRemoteCommand(
            deployTreeScript({
              host: name,
              label,
              dest,
              stage,
              sourceBase: posix.basename(t.root) || label,
              stageRoot: at.stageRoot,
              files: t.files,
            }),
            `ugro-${label}`,
          ),
          delete: asRemoteCommand(removeTreeScript({ host: name, label, dest }), `ugro-${label}-delete`),
          triggers: [dest],
          addPreviousOutputInEnv: false,
        },
        { parent: this, dependsOn: after(c ?? this.torch), deleteBeforeReplace: true },
      );
      return [c, install] as const;
    };
    [this.scriptsCopy, this.scripts] = tree('scripts', inputs.scripts, at.scriptsDest);
    [this.runtimeCopy, this.runtime] = tree('runtime', inputs.runtime, at.runtimeDest);

    this.facts = pulumi
      .all([this.reachable.stdout, this.driver.stdout, this.env.stdout, this.torch.stdout])
      .apply((outs) => hostFacts(h, s.manager, Object.assign({}, ...outs.map((o) => parseFacts(o ?? '')))));
    this.registerOutputs({ facts: this.facts });
  }

  /** Every child, in declaration order. */
  children(): pulumi.CustomResource[] {
    return [
      this.reachable,
      this.driver,
      this.dirs,
      ...this.envCopies,
      this.env,
      this.torch,
      this.scriptsCopy,
      this.scripts,
      this.runtimeCopy,
      this.runtime,
    ].filter((r): r is remote.Command | remote.CopyToRemote => r !== undefined);
  }
}
