/**
 * Cluster inventory: pure parse + normalize (parseCluster) and the file-reading wrapper
 * (loadCluster). The normalized `Cluster` is what infra/ and controller/ consume.
 */
import { readFileSync } from 'node:fs';
import { homedir, userInfo } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { type FieldIssue, ValidationError } from './errors.ts';
import { formatPath, type ParseResult, YamlSource, zodIssues } from './parse.ts';
import { type ClusterFile, clusterFileSchema } from './schema.ts';
import { isSlurmRemotePath, type SlurmSettings, slurmHostFields, slurmIssues, slurmSettings } from './slurm.ts';

export interface GpuExpectation {
  index?: number;
  model: string;
  vramGb?: number;
}

export interface HostPaths {
  home: string;
  project: string;
  scripts: string;
  /** Controller-owned run directories, one per attempt. */
  runs: string;
  checkpoints: string;
  /** Absolute places a job's checkpoint.dir may also name (paths.checkpoint_roots). */
  checkpointRoots: string[];
  logs: string;
  experiments: string;
}

export interface Host {
  name: string;
  hostname: string;
  address: string;
  port: number;
  user: string;
  rank: number;
  role: 'master' | 'worker';
  hardware?: { gpuModel?: string; vramGb?: number; cpuCores?: number; ramGb?: number };
  /** GPUs we expect on this host (from `gpus`, else from `hardware.gpu_model`). */
  gpus: GpuExpectation[];
  paths: HostPaths;
  ssh: {
    identityFile?: string;
    knownHosts: string;
    useAgent: boolean;
    connectTimeoutMs: number;
    keepaliveMs: number;
    passphraseEnv?: string;
  };
  python: string;
  labels: Record<string, string>;
  /** Set on a Slurm cluster's login host (the cluster file's `slurm:`): jobs are submitted there. */
  slurm?: SlurmSettings;
}

export interface Cluster {
  /** Absolute path of the file this came from (or "<inline>"). */
  file: string;
  name: string;
  location?: string;
  description?: string;
  /** All hosts, master first, then workers by rank. */
  hosts: Host[];
  master: Host;
  communication: { backend: string; masterPort: number; timeoutSeconds: number };
  environment: ClusterFile['environment'];
  health: { maxClockOffsetMs: number; minFreeDiskGb: number };
  scheduling: { fairShareHalfLifeHours: number };
  /** Paths on the machine running UGRO (the seed's top-level `paths`). */
  local: { projectRoot?: string; scripts?: string; logs?: string; experiments?: string };
  training: Record<string, unknown>;
  /** The validated file as written (after ${VAR} and ~ expansion). Secrets inside are not redacted. */
  raw: ClusterFile;
  /**
   * The Slurm cluster of the `slurm:` section, as the host jobs are placed on: its login host
   * (reached over SSH like the others), carrying the section's settings. Not in `hosts`.
   */
  slurm?: Host & { slurm: SlurmSettings };
}

/** Every host the controller talks to: the inventory's, then a Slurm cluster's login host. */
export function allHosts(c: Pick<Cluster, 'hosts' | 'slurm'>): Host[] {
  return c.slurm ? [...c.hosts, c.slurm] : c.hosts;
}

export interface ExpandEnv {
  env: Record<string, string | undefined>;
  home: string;
  user: string;
}

export function defaultExpandEnv(env: Record<string, string | undefined> = process.env): ExpandEnv {
  let user = env.USER ?? '';
  if (!user) {
    try {
      user = userInfo().username;
    } catch {
      user = '';
    }
  }
  return { env, home: env.HOME || homedir(), user };
}

/**
 * Fields that name places on a remote host: their `~` is that host user's home (resolved later
 * from paths.home), never the controller's.
 */
function isRemotePath(path: PropertyKey[]): boolean {
  const p = path.map(String);
  const host = p[0] === 'workers' ? p.slice(2) : p[0] === 'cluster' && p[1] === 'master' ? p.slice(2) : undefined;
  const roots = (q: string[]) => q[0] === 'paths' && q[1] === 'checkpoint_roots' && q.length === 3;
  if (host)
    return (host[0] === 'paths' && host.length === 2) || (host[0] === 'python' && host.length === 1) || roots(host);
  if (roots(p)) return true;
  if (isSlurmRemotePath(p)) return true;
  // Top-level paths.* are both the controller machine's paths and the master's fallback paths:
  // their `~` is resolved per use in normalize (controller home, resp. master user's home).
  if (p.length === 2 && p[0] === 'paths') return true;
  return p.length === 2 && p[0] === 'environment' && p[1] === 'python';
}

const VAR_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Expand `${VAR}`, `${VAR:-default}` and a leading `~` in every string. USER and HOME fall
 * back to the current account so the seed file (which uses `${USER}`) works under cron/CI.
 */
function expandValue(
  value: unknown,
  ctx: ExpandEnv,
  path: PropertyKey[] = [],
  issues: FieldIssue[] = [],
  source?: YamlSource,
): unknown {
  if (typeof value === 'string') {
    let out = value.replace(VAR_RE, (whole, name: string, def: string | undefined) => {
      // Empty counts as unset (as in sh's ${VAR:-…}), so USER="" still falls back to the account.
      const set = ctx.env[name];
      const v =
        set !== undefined && set !== '' ? set : name === 'USER' ? ctx.user : name === 'HOME' ? ctx.home : undefined;
      if (v !== undefined && v !== '') return v;
      if (def !== undefined) return def;
      issues.push({
        path: formatPath(path),
        message: `environment variable ${name} is not set (set it, or write \${${name}:-default})`,
        ...(source?.lineOf(path) ?? {}),
      });
      return whole;
    });
    if ((out === '~' || out.startsWith('~/')) && !isRemotePath(path)) out = ctx.home + out.slice(1);
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => expandValue(v, ctx, [...path, i], issues, source));
  if (value && typeof value === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) o[k] = expandValue(v, ctx, [...path, k], issues, source);
    return o;
  }
  return value;
}

/** Remote paths: `~` means the remote user's home, which we know from paths.home. */
function remoteHome(p: string, home: string): string {
  if (p === '~') return home;
  if (p.startsWith('~/')) return join(home, p.slice(2));
  return p;
}

function localPath(p: string | undefined, baseDir: string, home?: string): string | undefined {
  if (!p) return undefined;
  if (home !== undefined && (p === '~' || p.startsWith('~/'))) p = home + p.slice(1);
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

/** Cross-field checks zod cannot express per field: duplicates, rank clashes. */
function semanticIssues(f: ClusterFile, source?: YamlSource): FieldIssue[] {
  const issues: FieldIssue[] = [];
  const at = (path: PropertyKey[], message: string) =>
    issues.push({ path: formatPath(path), message, ...(source?.lineOf(path) ?? {}) });
  const masterName = f.cluster.master.name ?? f.cluster.master.hostname;
  const names = new Map<string, PropertyKey[]>([
    [masterName, ['cluster', 'master', f.cluster.master.name ? 'name' : 'hostname']],
  ]);
  const addrs = new Map<string, PropertyKey[]>([
    [`${f.cluster.master.ip}:${f.cluster.master.port}`, ['cluster', 'master', 'ip']],
  ]);
  const ranks = new Map<number, PropertyKey[]>([[0, ['cluster', 'master']]]);
  f.workers.forEach((w, i) => {
    const prev = names.get(w.name);
    if (prev)
      at(
        ['workers', i, 'name'],
        `duplicate host name "${w.name}" (also at ${formatPath(prev)}): every host needs its own name`,
      );
    else names.set(w.name, ['workers', i, 'name']);
    const key = `${w.ip}:${w.ssh_port}`;
    const prevA = addrs.get(key);
    if (prevA)
      at(
        ['workers', i, 'ip'],
        `duplicate address ${key} (also at ${formatPath(prevA)}): two hosts cannot share an ip and ssh_port`,
      );
    else addrs.set(key, ['workers', i, 'ip']);
    const prevR = ranks.get(w.rank);
    if (prevR)
      at(
        ['workers', i, 'rank'],
        `duplicate rank ${w.rank} (also at ${formatPath(prevR)}): ranks must be unique; the master is rank 0`,
      );
    else ranks.set(w.rank, ['workers', i, 'rank']);
  });
  return issues;
}

function normalize(f: ClusterFile, file: string, localHome: string): Cluster {
  const baseDir = file === '<inline>' ? process.cwd() : dirname(file);
  const ssh = f.ssh;
  const env = f.environment;
  const mkHost = (
    h: {
      name: string;
      hostname: string;
      ip: string;
      port: number;
      user: string;
      rank: number;
      hardware?: ClusterFile['workers'][number]['hardware'];
      paths?: ClusterFile['workers'][number]['paths'];
      ssh_key?: string;
      known_hosts?: string;
      python?: string;
      gpus?: ClusterFile['workers'][number]['gpus'];
      labels?: Record<string, string>;
    },
    role: 'master' | 'worker',
    fallbackPaths: {
      project?: string;
      scripts?: string;
      logs?: string;
      experiments?: string;
      checkpointRoots?: string[];
    },
  ): Host => {
    const home = h.paths?.home ?? (h.user === 'root' ? '/root' : `/home/${h.user}`);
    const rp = (p: string | undefined) => (p ? remoteHome(p, home).replace(/\/+$/, '') || '/' : undefined);
    const homeN = rp(home)!;
    const project = rp(h.paths?.project ?? fallbackPaths.project) ?? join(homeN, 'ugro');
    const gpus: GpuExpectation[] =
      h.gpus?.map((g) => ({ index: g.index, model: g.model, vramGb: g.vram_gb })) ??
      (h.hardware?.gpu_model ? [{ model: h.hardware.gpu_model, vramGb: h.hardware.vram_gb }] : []);
    return {
      name: h.name,
      hostname: h.hostname,
      address: h.ip,
      port: h.port,
      user: h.user,
      rank: h.rank,
      role,
      hardware: h.hardware && {
        gpuModel: h.hardware.gpu_model,
        vramGb: h.hardware.vram_gb,
        cpuCores: h.hardware.cpu_cores,
        ramGb: h.hardware.ram_gb,
      },
      gpus,
      paths: {
        home: homeN,
        project,
        scripts: rp(h.paths?.scripts ?? fallbackPaths.scripts) ?? join(project, 'scripts'),
        runs: rp(h.paths?.runs) ?? join(project, 'runs'),
        checkpoints: rp(h.paths?.checkpoints) ?? join(project, 'checkpoints'),
        checkpointRoots: (h.paths?.checkpoint_roots ?? fallbackPaths.checkpointRoots ?? []).map((r) => rp(r)!),
        logs: rp(h.paths?.logs ?? fallbackPaths.logs) ?? join(project, 'logs'),
        experiments: rp(h.paths?.experiments ?? fallbackPaths.experiments) ?? join(project, 'experiments'),
      },
      ssh: {
        identityFile: localPath(h.ssh_key ?? ssh.identity_file, baseDir),
        knownHosts: localPath(h.known_hosts ?? ssh.known_hosts, baseDir)!,
        useAgent: ssh.use_agent,
        connectTimeoutMs: Math.round(ssh.connect_timeout_seconds * 1000),
        keepaliveMs: Math.round(ssh.keepalive_seconds * 1000),
        passphraseEnv: ssh.passphrase_env,
      },
      python: rp(h.python ?? env.python) ?? 'python3',
      labels: h.labels ?? {},
    };
  };
  const m = f.cluster.master;
  // The seed keeps the master's paths at top level (`paths.project_root`, `paths.scripts`).
  const master = mkHost({ ...m, name: m.name ?? m.hostname, rank: 0 }, 'master', {
    project: f.paths?.project_root,
    scripts: f.paths?.scripts,
    logs: f.paths?.logs,
    experiments: f.paths?.experiments,
    checkpointRoots: f.paths?.checkpoint_roots,
  });
  const workers = [...f.workers]
    .sort((a, b) => a.rank - b.rank)
    .map((w) => mkHost({ ...w, port: w.ssh_port }, 'worker', { checkpointRoots: f.paths?.checkpoint_roots }));
  return {
    file,
    name: f.cluster.name,
    location: f.cluster.location,
    description: f.cluster.description,
    hosts: [master, ...workers],
    master,
    communication: {
      backend: f.cluster.communication.backend,
      masterPort: f.cluster.communication.master_port,
      timeoutSeconds: f.cluster.communication.timeout_seconds,
    },
    environment: env,
    health: { maxClockOffsetMs: f.health.max_clock_offset_ms, minFreeDiskGb: f.health.min_free_disk_gb },
    scheduling: { fairShareHalfLifeHours: f.scheduling.fair_share_half_life_hours },
    local: {
      projectRoot: localPath(f.paths?.project_root, baseDir, localHome),
      scripts: localPath(f.paths?.scripts, baseDir, localHome),
      logs: localPath(f.paths?.logs, baseDir, localHome),
      experiments: localPath(f.paths?.experiments, baseDir, localHome),
    },
    training: (f.training as Record<string, unknown>) ?? {},
    raw: f,
    ...(f.slurm
      ? {
          slurm: {
            ...mkHost(slurmHostFields(f.slurm), 'worker', { checkpointRoots: f.paths?.checkpoint_roots }),
            slurm: slurmSettings(f.slurm),
          },
        }
      : {}),
  };
}

/** Pure: YAML text -> Cluster, or every problem found with its field path and line. */
export function parseCluster(
  text: string,
  file = '<inline>',
  ctx: ExpandEnv = defaultExpandEnv(),
): ParseResult<Cluster> {
  const { source, issues } = YamlSource.parse(text);
  if (issues.length) return { ok: false, issues };
  const raw = source.toJS();
  if (raw === null || raw === undefined)
    return {
      ok: false,
      issues: [
        { path: '', message: 'file is empty: expected a cluster inventory with `cluster:` and `workers:`', line: 1 },
      ],
    };
  const expandIssues: FieldIssue[] = [];
  const expanded = expandValue(raw, ctx, [], expandIssues, source);
  const res = clusterFileSchema.safeParse(expanded);
  if (!res.success) return { ok: false, issues: [...expandIssues, ...zodIssues(res.error, source)] };
  const sem = [
    ...expandIssues,
    ...semanticIssues(res.data, source),
    ...slurmIssues(res.data, (path, message) => ({ path: formatPath(path), message, ...(source.lineOf(path) ?? {}) })),
  ];
  if (sem.length) return { ok: false, issues: sem };
  return { ok: true, value: normalize(res.data, file, ctx.home) };
}

const DEFAULT_CLUSTER_FILE = 'config/cluster.yaml';

/** Which cluster file to use: explicit flag, then UGRO_CLUSTER, then config/cluster.yaml. */
export function resolveClusterFile(
  flag: string | undefined,
  env: Record<string, string | undefined> = process.env,
): string {
  return resolve(flag ?? env.UGRO_CLUSTER ?? DEFAULT_CLUSTER_FILE);
}

/** Read + validate; throws ValidationError listing every issue. */
export function loadCluster(file: string, ctx?: ExpandEnv): Cluster {
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ValidationError(abs, [
      {
        path: '',
        message:
          err.code === 'ENOENT'
            ? 'file not found (pass --cluster FILE or set UGRO_CLUSTER)'
            : `cannot read: ${err.message}`,
      },
    ]);
  }
  const res = parseCluster(text, abs, ctx);
  if (!res.ok) throw new ValidationError(abs, res.issues);
  return res.value;
}

/** A copy of the raw file safe to print: secrets replaced. */
export function redactedClusterFile(c: Cluster): ClusterFile {
  const copy = structuredClone(c.raw);
  if (copy.webhook?.secret) copy.webhook.secret = '<redacted>';
  // The notification URL is a secret too (a Slack or Discord webhook URL is its own credential).
  if (copy.webhook?.url) copy.webhook.url = '<redacted>';
  return copy;
}
