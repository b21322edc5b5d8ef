/**
 * Stack configuration (Pulumi.<stack>.yaml, namespace `ugro`): read, then validate, as two
 * steps (docs/conventions.md, "Read, then validate"). parseStackConfig is pure over the raw
 * `ugro:*` strings; resolveSettings
 * is pure over the parsed config, the cluster inventory and the working directory, and yields the
 * InfraSettings that declareCluster takes. Defaults come from the cluster file's `environment`
 * section where it has them, so a stack only sets what differs.
 */
import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import type { Cluster } from '../config/cluster.ts';
import type { FieldIssue } from '../config/errors.ts';
import type { ParseResult } from '../config/parse.ts';

export const CONFIG_NAMESPACE = 'ugro';

export type Manager = 'system' | 'venv' | 'pixi';

// Pulumi hands every config value over as a string ("true", "300"); YAML scalars in
// Pulumi.<stack>.yaml arrive the same way.
const boolString = z
  .union([z.boolean(), z.enum(['true', 'false'])], { error: 'must be true or false' })
  .transform((v) => v === true || v === 'true');
const intString = (min: number, max: number) =>
  z
    .union([z.number(), z.string().regex(/^\d+$/, 'must be a whole number')])
    .transform((v) => Number(v))
    .pipe(z.number().int().min(min, `must be between ${min} and ${max}`).max(max, `must be between ${min} and ${max}`));
const path = z.string().min(1, 'must not be empty');

const stackConfigSchema = z.strictObject({
  /** Cluster inventory to provision (the same file the controller reads). */
  clusterFile: path.default('config/cluster.yaml'),
  /** SSH private key for every host; default: each host's ssh_key / ssh.identity_file. */
  sshKeyPath: path.optional(),
  /** known_hosts holding the pinned host keys; default: the cluster file's ssh.known_hosts. */
  knownHostsPath: path.optional(),
  /**
   * Passphrase of the key: a Pulumi secret (`pulumi config set --secret`). Only its presence is
   * kept here; the program reads the value with config.requireSecret, so it stays a secret.
   */
  sshKeyPassphrase: z
    .string()
    .optional()
    .transform((v) => v !== undefined),
  /** Lowest accepted NVIDIA driver; default: environment.min_driver_version. */
  minDriverVersion: z
    .string()
    .regex(/^\d+(\.\d+)*$/, 'must look like "550" or "550.54.14"')
    .optional(),
  /** false: accept a CPU build of torch and only report CUDA (hosts without GPUs, the lab). */
  requireCuda: boolString.default(true),
  /** CUDA major torch must be built for; default: the major of environment.cuda_version, else 12. */
  cudaMajor: z.string().regex(/^\d+$/, 'must be a CUDA major version such as "12"').optional(),
  /** How the Python environment is made; default: environment.manager. */
  environmentManager: z.enum(['system', 'venv', 'pixi'], { error: 'must be one of system, venv, pixi' }).optional(),
  /** Interpreter for manager system (and the base of a venv); default: the host's python. */
  python: z.string().min(1).optional(),
  /** pixi.toml to sync (pixi.lock must sit next to it). */
  pixiManifest: path.default('pixi.toml'),
  pixiEnvironment: z
    .string()
    .regex(/^[a-z0-9-]+$/, 'must be a pixi environment name (lowercase letters, digits, "-")')
    .default('default'),
  /** requirements file installed into the venv (manager venv). */
  venvRequirements: path.optional(),
  venvSystemSitePackages: boolString.default(false),
  /** Local scripts/ to deploy to each host's scripts path. */
  scriptsDir: path.default('scripts'),
  /** Host-side runtime of the controller; default: <scriptsDir>/runtime. */
  runtimeDir: path.optional(),
  /** How long the reachability poll waits for SSH before the update fails. */
  reachabilityTimeoutSeconds: intString(1, 3600).default(300),
  /** Change it (e.g. 1 -> 2) to re-run the driver and torch checks on the next `pulumi up`. */
  checkEpoch: z.string().min(1).default('1'),
});

export type StackConfig = z.output<typeof stackConfigSchema>;

/** Keys of the `ugro` namespace we know. */
export const STACK_KEYS = Object.keys(stackConfigSchema.shape) as (keyof StackConfig)[];

/**
 * Pure: `{"ugro:clusterFile": "…", "aws:region": "…"}` (what pulumi.runtime.allConfig() returns)
 * -> StackConfig, or every problem with its key (`ugro:cudaMajor: must be …`). Keys of other
 * namespaces are ignored; an unknown `ugro:` key is an error (a typo would otherwise be silent).
 */
export function parseStackConfig(all: Record<string, string | undefined>): ParseResult<StackConfig> {
  const raw: Record<string, string> = {};
  for (const [k, v] of Object.entries(all)) {
    if (v === undefined || !k.startsWith(`${CONFIG_NAMESPACE}:`)) continue;
    raw[k.slice(CONFIG_NAMESPACE.length + 1)] = v;
  }
  const res = stackConfigSchema.safeParse(raw);
  if (res.success) return { ok: true, value: res.data };
  const issues: FieldIssue[] = res.error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') {
      return {
        path: '',
        message:
          `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `${CONFIG_NAMESPACE}:${k}`).join(', ')} ` +
          `(known: ${STACK_KEYS.map((k) => `${CONFIG_NAMESPACE}:${k}`).join(', ')})`,
      };
    }
    return { path: `${CONFIG_NAMESPACE}:${i.path.map(String).join('.')}`, message: i.message };
  });
  return { ok: false, issues };
}

/** Everything declareCluster needs, resolved: absolute local paths, no optional policy. */
export interface InfraSettings {
  clusterFile: string;
  /** Overrides every host's identity file when set. */
  sshKeyPath?: string;
  /** Overrides every host's known_hosts when set. */
  knownHostsPath?: string;
  minDriverVersion: string;
  requireCuda: boolean;
  cudaMajor: string;
  manager: Manager;
  /** Interpreter for manager system / venv base; undefined: each host's own `python`. */
  python?: string;
  pixi: { manifest: string; lock: string; environment: string };
  venv: { requirements?: string; systemSitePackages: boolean };
  scriptsDir: string;
  runtimeDir: string;
  reachabilityTimeoutSeconds: number;
  checkEpoch: string;
}

export interface ResolveContext {
  /** Directory relative paths are taken from (Pulumi runs the program in the project root). */
  cwd: string;
  /** Home directory for a leading `~`. */
  home: string;
}

function localPath(p: string, ctx: ResolveContext): string {
  const expanded = p === '~' ? ctx.home : p.startsWith('~/') ? ctx.home + p.slice(1) : p;
  return isAbsolute(expanded) ? expanded : resolve(ctx.cwd, expanded);
}

/** The cluster file's `environment` section, as far as infra uses it. */
export type ClusterEnvironment = Pick<Cluster['environment'], 'manager' | 'min_driver_version' | 'cuda_version'>;

/** Path of the cluster file a stack config points at (to load it before resolveSettings). */
export function clusterFileOf(c: StackConfig, ctx: ResolveContext): string {
  return localPath(c.clusterFile, ctx);
}

/** Pure: stack config + the cluster's environment defaults -> InfraSettings. */
export function resolveSettings(c: StackConfig, env: ClusterEnvironment, ctx: ResolveContext): InfraSettings {
  const manifest = localPath(c.pixiManifest, ctx);
  const scriptsDir = localPath(c.scriptsDir, ctx);
  const cudaFromCluster = env.cuda_version?.match(/^(\d+)/)?.[1];
  return {
    clusterFile: localPath(c.clusterFile, ctx),
    sshKeyPath: c.sshKeyPath ? localPath(c.sshKeyPath, ctx) : undefined,
    knownHostsPath: c.knownHostsPath ? localPath(c.knownHostsPath, ctx) : undefined,
    minDriverVersion: c.minDriverVersion ?? env.min_driver_version,
    requireCuda: c.requireCuda,
    cudaMajor: c.cudaMajor ?? cudaFromCluster ?? '12',
    manager: c.environmentManager ?? env.manager,
    python: c.python,
    pixi: { manifest, lock: manifest.replace(/[^/]*$/, 'pixi.lock'), environment: c.pixiEnvironment },
    venv: {
      requirements: c.venvRequirements ? localPath(c.venvRequirements, ctx) : undefined,
      systemSitePackages: c.venvSystemSitePackages,
    },
    scriptsDir,
    runtimeDir: c.runtimeDir ? localPath(c.runtimeDir, ctx) : resolve(scriptsDir, 'runtime'),
    reachabilityTimeoutSeconds: c.reachabilityTimeoutSeconds,
    checkEpoch: c.checkEpoch,
  };
}
