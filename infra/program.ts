/**
 * The program without the Pulumi entry point: read the local inputs, build one connection per
 * host, declare one GpuHost per host. The entry (index.ts) calls declareCluster with the stack
 * config; tests call it directly under Pulumi's mock runtime.
 */
import { existsSync, statSync } from 'node:fs';
import { relative, sep } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import type { Cluster } from '../config/cluster.ts';
import { UgroError } from '../config/errors.ts';
import { fileSha256, readTree } from '../config/hash.ts';
import type { InfraSettings } from './config.ts';
import { type ConnectionFactory, makeConnection } from './connection.ts';
import { GpuHost, type HostFacts, type LocalInputs } from './gpu-host.ts';

/** Reads and hashes what gets copied to the hosts. Throws UgroError naming the missing file. */
function readLocalInputs(s: InfraSettings): LocalInputs {
  if (existsSync(s.scriptsDir) && !statSync(s.scriptsDir).isDirectory())
    throw new UgroError(`ugro:scriptsDir ${s.scriptsDir} is not a directory`);
  // runtime/ inside scripts/ is its own step (own trigger), so the scripts step leaves it out.
  const rel = relative(s.scriptsDir, s.runtimeDir).split(sep).join('/');
  const inside = rel !== '' && !rel.startsWith('..') && !rel.startsWith('/');
  const scripts = readTree(s.scriptsDir, (p) => inside && (p === rel || p.startsWith(`${rel}/`)));
  const runtime = readTree(s.runtimeDir);
  const out: LocalInputs = { scripts, runtime };
  if (s.manager === 'pixi') {
    const manifestSha256 = fileSha256(s.pixi.manifest);
    const lockSha256 = fileSha256(s.pixi.lock);
    if (!manifestSha256)
      throw new UgroError(
        `environment manager pixi: ${s.pixi.manifest} not found: ` +
          'run `pixi init` there (or set ugro:pixiManifest), or set ugro:environmentManager to venv or system',
      );
    if (!lockSha256)
      throw new UgroError(
        `environment manager pixi: ${s.pixi.lock} not found: ` +
          `run \`pixi install\` next to ${s.pixi.manifest} to write the lock file, and keep it with the project`,
      );
    out.pixi = { manifest: s.pixi.manifest, manifestSha256, lock: s.pixi.lock, lockSha256 };
  }
  if (s.manager === 'venv' && s.venv.requirements) {
    const sha256 = fileSha256(s.venv.requirements);
    if (!sha256) throw new UgroError(`ugro:venvRequirements: ${s.venv.requirements} not found`);
    out.venvRequirements = { path: s.venv.requirements, sha256 };
  }
  return out;
}

export interface DeclareOptions {
  /** Default: makeConnection with the stack's key, known_hosts and passphrase. */
  connection?: ConnectionFactory;
  /** Key passphrase, a Pulumi secret. */
  passphrase?: pulumi.Input<string>;
  env?: Record<string, string | undefined>;
  /** Default: readLocalInputs(settings). */
  inputs?: LocalInputs;
  /** Options for every GpuHost (e.g. a provider). */
  resourceOptions?: pulumi.ComponentResourceOptions;
}

export interface DeclaredCluster {
  hosts: Record<string, GpuHost>;
  /** Stack output: per host, GPU, driver, CUDA, torch, environment. */
  outputs: pulumi.Output<Record<string, HostFacts>>;
}

/** One GpuHost per host of the cluster, named by the host. */
export function declareCluster(cluster: Cluster, settings: InfraSettings, o: DeclareOptions = {}): DeclaredCluster {
  const inputs = o.inputs ?? readLocalInputs(settings);
  const factory: ConnectionFactory =
    o.connection ??
    ((h) =>
      makeConnection(h, {
        keyPath: settings.sshKeyPath,
        knownHostsPath: settings.knownHostsPath,
        passphrase: o.passphrase,
        reachabilityTimeoutSeconds: settings.reachabilityTimeoutSeconds,
        env: o.env,
      }));
  // Every host's connection first, so all missing host keys are reported at once and no
  // resource is declared for a cluster that cannot be reached safely.
  const problems: string[] = [];
  const connections = cluster.hosts.map((h) => {
    try {
      return factory(h);
    } catch (e) {
      problems.push((e as Error).message);
      return undefined;
    }
  });
  if (problems.length) throw new UgroError(problems.join('\n'));
  const hosts: Record<string, GpuHost> = {};
  cluster.hosts.forEach((h, i) => {
    hosts[h.name] = new GpuHost(h.name, { host: h, settings, connection: connections[i]!, inputs }, o.resourceOptions);
  });
  const outputs = pulumi.all(Object.fromEntries(Object.entries(hosts).map(([n, g]) => [n, g.facts]))) as pulumi.Output<
    Record<string, HostFacts>
  >;
  return { hosts, outputs };
}
