/**
 * The Pulumi program under Pulumi's mock runtime (pulumi.runtime.setMocks): what the engine would
 * receive for the seed cluster and for a lab-shaped cluster. Names, types, parents,
 * dependencies (reachability first), pinned connections, triggers that change when a script or
 * the lock file changes and only then, stack outputs, and the entry point with stack config.
 * The Pulumi engine and the command provider are not run here (see docs/pulumi.md).
 */
import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type Cluster, parseCluster } from '../../config/cluster.ts';
import { UgroError } from '../../config/errors.ts';
import { parseKnownHosts } from '../../config/known-hosts.ts';
import { type InfraSettings, parseStackConfig, resolveSettings } from '../../infra/config.ts';
import { pinnedHostKey } from '../../infra/connection.ts';
import { GPU_HOST_TYPE } from '../../infra/gpu-host.ts';
import main from '../../infra/index.ts';
import { collectPlan, type DeclaredResource, type MockState, transitiveDependencies } from '../../infra/plan.ts';
import { type DeclaredCluster, declareCluster } from '../../infra/program.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const tmpRoot = mkdtempSync(join(tmpdir(), 'ugro-infra-graph-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let n = 0;

/** An ed25519 public key as known_hosts writes it. */
function hostKey(): string {
  const der = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' });
  const raw = der.subarray(der.length - 32);
  const str = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  return `ssh-ed25519 ${Buffer.concat([str(Buffer.from('ssh-ed25519')), str(raw)]).toString('base64')}`;
}

/** A project checkout: scripts/ (with runtime/), pixi files, an SSH key and known_hosts. */
function project(addresses: string[]) {
  const d = join(tmpRoot, `p${n++}`);
  mkdirSync(join(d, 'scripts/runtime'), { recursive: true });
  writeFileSync(join(d, 'scripts/train.py'), 'print("train")\n');
  writeFileSync(join(d, 'scripts/runtime/rank.sh'), '#!/bin/sh\nexec "$@"\n');
  chmodSync(join(d, 'scripts/runtime/rank.sh'), 0o755);
  writeFileSync(join(d, 'pixi.toml'), '[project]\nname = "ugro"\n');
  writeFileSync(join(d, 'pixi.lock'), 'version: 6\npackages: []\n');
  writeFileSync(
    join(d, 'id_ed25519'),
    '-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n',
  );
  const keys = Object.fromEntries(addresses.map((a) => [a, hostKey()]));
  writeFileSync(
    join(d, 'known_hosts'),
    Object.entries(keys)
      .map(([a, k]) => `${a} ${k}\n`)
      .join(''),
  );
  return { dir: d, keys };
}

const ctx = { env: { USER: 'ollie' }, home: '/home/ollie', user: 'ollie' };
function seedCluster(): Cluster {
  const r = parseCluster(
    readFileSync(join(ROOT, 'config/cluster.yaml'), 'utf8'),
    join(ROOT, 'config/cluster.yaml'),
    ctx,
  );
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.value;
}

/** The shape `lab.sh up` writes to .lab/cluster.yaml (manager system, Debian's python3). */
function labCluster(): Cluster {
  const host = (i: number, _name: string, user: string) =>
    `    ip: "10.250.77.${10 + i}"\n    user: "${user}"\n    hardware: { gpu_model: "RTX 4070", vram_gb: 8 }\n` +
    `    paths: { home: "/home/${user}", project: "/home/${user}/ugro", scripts: "/home/${user}/ugro/scripts" }\n`;
  const text =
    'cluster:\n  name: "ugro-lab"\n' +
    `  master:\n    hostname: "gpu-master"\n    port: 22\n${host(0, 'gpu-master', 'master')}` +
    'workers:\n' +
    '  - name: "gpu1"\n    hostname: "gpu1"\n    ssh_port: 22\n    rank: 1\n' +
    host(1, 'gpu1', 'ob').replace(/^ {4}/gm, '    ') +
    `  - name: "gpu2"\n    hostname: "gpu2"\n    ssh_port: 22\n    rank: 2\n${host(2, 'gpu2', 'ollie')}` +
    'environment:\n  manager: system\n  python: /usr/bin/python3\n' +
    'ssh:\n  identity_file: "/lab/id_ed25519"\n  known_hosts: "/lab/known_hosts"\n  use_agent: false\n';
  const r = parseCluster(text, '/lab/cluster.yaml', ctx);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.value;
}

function settingsFor(cluster: Cluster, dir: string, extra: Record<string, string> = {}): InfraSettings {
  const p = parseStackConfig({ 'ugro:sshKeyPath': 'id_ed25519', 'ugro:knownHostsPath': 'known_hosts', ...extra });
  if (!p.ok) throw new Error(JSON.stringify(p.issues));
  return resolveSettings(p.value, cluster.environment, { cwd: dir, home: '/home/ollie' });
}

async function declare(cluster: Cluster, s: InfraSettings, state?: MockState) {
  let declared!: DeclaredCluster;
  const plan = await collectPlan(() => {
    declared = declareCluster(cluster, s, { env: {} });
    return [...Object.values(declared.hosts).flatMap((h) => [h, ...h.children()]), declared.outputs];
  }, state);
  return { plan, declared };
}

const promiseOf = <T>(o: pulumi.Output<T>) => new Promise<T>((r) => o.apply(r));
const short = (urn: string) => urn.split('::').pop()!;
// Registration order is asynchronous; the order that matters is in the dependencies.
const steps = (plan: DeclaredResource[], host: string) =>
  plan
    .filter((r) => short(r.parent) === host)
    .map((r) => r.name.slice(host.length + 1))
    .sort();

const PIXI_STEPS = [
  'reachable',
  'driver',
  'dirs',
  'pixi-manifest',
  'pixi-lock',
  'env',
  'torch',
  'scripts-copy',
  'scripts',
  'runtime-copy',
  'runtime',
];
const SYSTEM_STEPS = [
  'reachable',
  'driver',
  'dirs',
  'env',
  'torch',
  'scripts-copy',
  'scripts',
  'runtime-copy',
  'runtime',
];

/** What every cluster's graph must satisfy. */
function checkGraph(
  plan: DeclaredResource[],
  cluster: Cluster,
  keys: Record<string, string>,
  keyText: string,
  expectSteps: string[],
) {
  const comps = plan.filter((r) => r.type === GPU_HOST_TYPE);
  expect(comps.map((c) => c.name)).toEqual(cluster.hosts.map((h) => h.name));
  for (const c of comps)
    expect(c).toMatchObject({ parent: '', custom: false, urn: `urn:pulumi:plan::ugro::${GPU_HOST_TYPE}::${c.name}` });
  for (const h of cluster.hosts) {
    const comp = comps.find((c) => c.name === h.name)!;
    const children = plan.filter((r) => r.parent === comp.urn);
    // named by host, never by index; every child is a custom resource under the component
    expect(steps(plan, h.name)).toEqual([...expectSteps].sort());
    for (const r of children) {
      expect(r.name.startsWith(`${h.name}-`)).toBe(true);
      expect(r.type).toBe(
        r.name.endsWith('-copy') || r.name.includes('pixi-') ? 'command:remote:CopyToRemote' : 'command:remote:Command',
      );
      expect(r.urn).toBe(`urn:pulumi:plan::ugro::${GPU_HOST_TYPE}$${r.type}::${r.name}`);
      // the connection: this host, its user and port, its pinned key, the key file; a secret
      const c = r.inputs.connection as Record<string, unknown>;
      expect(c).toMatchObject({
        host: h.address,
        user: h.user,
        port: h.port,
        hostKey: keys[h.address],
        privateKey: keyText,
      });
      expect(r.secretInputs).toContain('connection');
    }
    const reach = children.find((r) => r.name === `${h.name}-reachable`)!;
    const driver = children.find((r) => r.name === `${h.name}-driver`)!;
    expect(reach.dependencies).toEqual([]);
    expect(driver.dependencies).toEqual([reach.urn]);
    for (const r of children.filter((x) => x !== reach)) {
      // reachability first, directly; everything after the driver check waits for it
      expect(r.dependencies).toContain(reach.urn);
      if (r !== driver) expect(transitiveDependencies(plan, r).has(driver.urn)).toBe(true);
    }
    // a linear chain of checks before anything is installed
    const child = (step: string) => children.find((r) => r.name === `${h.name}-${step}`)!;
    const dep = (a: string, b: string) => expect(child(a).dependencies).toContain(child(b).urn);
    dep('dirs', 'driver');
    dep('env', 'dirs');
    dep('torch', 'env');
    dep('scripts-copy', 'torch');
    dep('scripts', 'scripts-copy');
    dep('runtime', 'runtime-copy');
    for (const r of children.filter((x) => x.type === 'command:remote:Command')) {
      expect(r.inputs.create).toMatch(/^sh -c 'set -eu\n/);
      expect(r.inputs.addPreviousOutputInEnv).toBe(false);
      // only the deployed trees are removed by destroy; dirs (checkpoints!) and envs stay.
      // A replaced install must delete before it creates, or its old delete would remove the new files.
      if (r.name.endsWith('-scripts') || r.name.endsWith('-runtime')) {
        expect(r.inputs.delete).toMatch(/^sh -c 'set -eu\n/);
        expect(r.deleteBeforeReplace).toBe(true);
        expect(r.inputs.triggers).toEqual([
          r.name.endsWith('-scripts') ? h.paths.scripts : `${h.paths.scripts}/runtime`,
        ]);
      } else {
        expect(r.inputs.delete).toBeUndefined();
        expect(r.deleteBeforeReplace).toBe(false);
      }
    }
    const dirs = children.find((r) => r.name === `${h.name}-dirs`)!.inputs.create as string;
    for (const p of [
      h.paths.project,
      h.paths.scripts,
      h.paths.runs,
      h.paths.checkpoints,
      h.paths.logs,
      h.paths.experiments,
    ])
      expect(dirs).toContain(`ensure_dir ${p} `);
    const copies = children.filter((r) => r.type === 'command:remote:CopyToRemote');
    for (const c of copies) expect(c.inputs.remotePath).toMatch(new RegExp(`^${h.paths.project}/`));
  }
}

describe('resource graph under mocks', () => {
  it(
    'seed cluster (pixi): one GpuHost per host, children named by host, ' + 'reachability first, pinned connections',
    async () => {
      const cluster = seedCluster();
      const p = project(cluster.hosts.map((h) => h.address));
      const { plan } = await declare(cluster, settingsFor(cluster, p.dir));
      checkGraph(plan, cluster, p.keys, readFileSync(join(p.dir, 'id_ed25519'), 'utf8'), PIXI_STEPS);
      const gpu1 = (step: string) => plan.find((r) => r.name === `gpu1-${step}`)!;
      expect(gpu1('pixi-lock').inputs).toMatchObject({
        remotePath: '/home/ob/Development/Tools/ugro/pixi.lock',
        source: { kind: 'FileAsset', path: join(p.dir, 'pixi.lock') },
      });
      expect(gpu1('scripts-copy').inputs.source).toEqual({ kind: 'FileArchive', path: join(p.dir, 'scripts') });
      expect(gpu1('runtime-copy').inputs.source).toEqual({ kind: 'FileArchive', path: join(p.dir, 'scripts/runtime') });
      expect(gpu1('env').inputs.create).toContain('"$pixi" install --manifest-path "$manifest" --locked');
      expect(gpu1('env').inputs.create).toContain('manifest=/home/ob/Development/Tools/ugro/pixi.toml');
      expect(gpu1('driver').inputs.create).toContain('min=550');
      expect(gpu1('torch').inputs.create).toContain('exec "$py" -c');
      expect(gpu1('torch').inputs.create).toMatch(/' gpu1 12 1 1\n'/);
      expect(gpu1('torch').inputs.create).toContain('py=/home/ob/Development/Tools/ugro/.pixi/envs/default/bin/python');
      // scripts/ without runtime/ (that is its own step), runtime/ on its own
      expect(gpu1('scripts').inputs.create).toContain('put train.py ');
      expect(gpu1('scripts').inputs.create).not.toContain('rank.sh');
      expect(gpu1('runtime').inputs.create).toContain('put rank.sh ');
      expect(gpu1('runtime').inputs.create).toContain('dest=/home/ob/Development/Tools/ugro/scripts/runtime\n');
    },
  );

  it('lab-shaped cluster (system python, CUDA not required)', async () => {
    const cluster = labCluster();
    const p = project(cluster.hosts.map((h) => h.address));
    const { plan } = await declare(cluster, settingsFor(cluster, p.dir, { 'ugro:requireCuda': 'false' }));
    checkGraph(plan, cluster, p.keys, readFileSync(join(p.dir, 'id_ed25519'), 'utf8'), SYSTEM_STEPS);
    const env = plan.find((r) => r.name === 'gpu2-env')!;
    expect(env.inputs.create).toContain('py=/usr/bin/python3\n');
    expect(plan.find((r) => r.name === 'gpu2-torch')!.inputs.create).toMatch(/' gpu2 12 0 1\n'/);
  });

  it('venv manager: a venv in the project, requirements copied and hashed', async () => {
    const cluster = labCluster();
    const p = project(cluster.hosts.map((h) => h.address));
    writeFileSync(join(p.dir, 'requirements.txt'), 'torch==2.4.*\n');
    const { plan } = await declare(
      cluster,
      settingsFor(cluster, p.dir, { 'ugro:environmentManager': 'venv', 'ugro:venvRequirements': 'requirements.txt' }),
    );
    expect(steps(plan, 'gpu1')).toEqual(
      [
        'reachable',
        'driver',
        'dirs',
        'venv-requirements',
        'env',
        'torch',
        'scripts-copy',
        'scripts',
        'runtime-copy',
        'runtime',
      ].sort(),
    );
    expect(plan.find((r) => r.name === 'gpu1-venv-requirements')!.inputs.remotePath).toBe(
      '/home/ob/ugro/.ugro/requirements.txt',
    );
    expect(plan.find((r) => r.name === 'gpu1-torch')!.inputs.create).toContain('py=/home/ob/ugro/.venv/bin/python');
  });

  it('an empty or missing scripts/ declares no copy and an install that deploys nothing', async () => {
    const cluster = labCluster();
    const p = project(cluster.hosts.map((h) => h.address));
    rmSync(join(p.dir, 'scripts'), { recursive: true });
    const { plan } = await declare(cluster, settingsFor(cluster, p.dir));
    expect(steps(plan, 'gpu1')).toEqual(['reachable', 'driver', 'dirs', 'env', 'torch', 'scripts', 'runtime'].sort());
    expect(plan.find((r) => r.name === 'gpu1-scripts')!.dependencies.map(short)).toEqual([
      'gpu1-reachable',
      'gpu1-torch',
    ]);
  });
});

describe('triggers', () => {
  /** name -> triggers, and name -> all inputs, of one declaration. */
  const snapshot = async (cluster: Cluster, dir: string) => {
    const { plan } = await declare(cluster, settingsFor(cluster, dir));
    return {
      triggers: Object.fromEntries(
        plan.filter((r) => r.custom).map((r) => [r.name, JSON.stringify(r.inputs.triggers)]),
      ),
      inputs: Object.fromEntries(plan.filter((r) => r.custom).map((r) => [r.name, r.inputs])),
    };
  };
  const changed = (a: Record<string, string>, b: Record<string, string>) =>
    Object.keys(a)
      .filter((k) => a[k] !== b[k])
      .sort();
  const forAll = (cluster: Cluster, suffixes: string[]) =>
    cluster.hosts.flatMap((h) => suffixes.map((s) => `${h.name}-${s}`)).sort();

  it('change when a script, the runtime or the lock changes, and only then (and so do the inputs)', async () => {
    const cluster = seedCluster();
    const p = project(cluster.hosts.map((h) => h.address));
    const base = await snapshot(cluster, p.dir);
    // nothing changed: every input is the same (no timestamps, no random names)
    const again = await snapshot(cluster, p.dir);
    expect(again.inputs).toEqual(base.inputs);

    const inputsOf = (x: typeof base) =>
      Object.fromEntries(Object.entries(x.inputs).map(([k, v]) => [k, JSON.stringify(v)]));
    writeFileSync(join(p.dir, 'scripts/train.py'), 'print("train v2")\n');
    const s1 = await snapshot(cluster, p.dir);
    // the copy's trigger (a new stage); the install runs again because its script lists the new hash
    expect(changed(base.triggers, s1.triggers)).toEqual(forAll(cluster, ['scripts-copy']));
    expect(changed(inputsOf(base), inputsOf(s1))).toEqual(forAll(cluster, ['scripts', 'scripts-copy']));

    chmodSync(join(p.dir, 'scripts/train.py'), 0o755); // a mode change is a change too
    const s2 = await snapshot(cluster, p.dir);
    expect(changed(s1.triggers, s2.triggers)).toEqual(forAll(cluster, ['scripts-copy']));
    expect(changed(inputsOf(s1), inputsOf(s2))).toEqual(forAll(cluster, ['scripts', 'scripts-copy']));

    writeFileSync(join(p.dir, 'scripts/runtime/rank.sh'), '#!/bin/sh\nexec "$@" # v2\n');
    const s3 = await snapshot(cluster, p.dir);
    expect(changed(s2.triggers, s3.triggers)).toEqual(forAll(cluster, ['runtime-copy']));
    expect(changed(inputsOf(s2), inputsOf(s3))).toEqual(forAll(cluster, ['runtime', 'runtime-copy']));

    writeFileSync(join(p.dir, 'pixi.lock'), 'version: 6\npackages: [torch]\n');
    const s4 = await snapshot(cluster, p.dir);
    expect(changed(s3.triggers, s4.triggers)).toEqual(forAll(cluster, ['env', 'pixi-lock', 'torch']));
    expect(changed(inputsOf(s3), inputsOf(s4))).toEqual(forAll(cluster, ['env', 'pixi-lock', 'torch']));

    // pixi.toml alone: only its copy (the environment follows the lock)
    writeFileSync(join(p.dir, 'pixi.toml'), '[project]\nname = "ugro"\n# comment\n');
    const s5 = await snapshot(cluster, p.dir);
    expect(changed(s4.triggers, s5.triggers)).toEqual(forAll(cluster, ['pixi-manifest']));
    expect(changed(inputsOf(s4), inputsOf(s5))).toEqual(forAll(cluster, ['pixi-manifest']));
  });

  it('checkEpoch re-runs the checks only', async () => {
    const cluster = labCluster();
    const p = project(cluster.hosts.map((h) => h.address));
    const a = await declare(cluster, settingsFor(cluster, p.dir));
    const b = await declare(cluster, settingsFor(cluster, p.dir, { 'ugro:checkEpoch': '2' }));
    const t = (plan: DeclaredResource[]) =>
      Object.fromEntries(plan.filter((r) => r.custom).map((r) => [r.name, JSON.stringify(r.inputs)]));
    expect(changed(t(a.plan), t(b.plan))).toEqual(forAll(cluster, ['driver', 'torch']));
  });
});

describe('connections', () => {
  it('a host without a pinned key stops the program before anything is declared, naming every such host', async () => {
    const cluster = seedCluster();
    const p = project(['192.168.1.100']);
    writeFileSync(
      join(p.dir, 'known_hosts'),
      `192.168.1.100 ${p.keys['192.168.1.100']}\n@revoked 192.168.1.101 ${p.keys['192.168.1.100']}\n`,
    );
    let err: unknown;
    const plan = await collectPlan(() => {
      try {
        declareCluster(cluster, settingsFor(cluster, p.dir), { env: {} });
      } catch (e) {
        err = e;
      }
      return [];
    });
    expect(plan).toEqual([]);
    expect(err).toBeInstanceOf(UgroError);
    expect((err as Error).message).toBe(
      [1, 2]
        .map(
          (i) =>
            `gpu${i}: no host key for 192.168.1.10${i}:22 is pinned in ${p.dir}/known_hosts: ` +
            `run \`ugro hosts trust gpu${i}\` (check the fingerprint it shows), then pulumi up again`,
        )
        .join('\n'),
    );
  });

  it('pins the type Go negotiates first (ecdsa, rsa, ed25519) when known_hosts has several', () => {
    const ed = hostKey();
    const ec = 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBA==';
    const entries = parseKnownHosts(
      `gpu1 ${ed}\ngpu1 ${ec}\ngpu1 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n` +
        `gpu2 ${ed}\ngpu2 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n`,
    );
    expect(pinnedHostKey(entries, { address: '10.0.0.1', hostname: 'gpu1', name: 'gpu1', port: 22 })).toBe(ec);
    expect(pinnedHostKey(entries, { address: '10.0.0.2', hostname: 'gpu2', name: 'gpu2', port: 22 })).toBe(
      'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==',
    );
  });

  it('revoked keys never count; names and [host]:port match', () => {
    const ed = hostKey();
    const entries = parseKnownHosts(
      `gpu1 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==\n[10.0.0.5]:2222 ${ed}\n@revoked gpu9 ${ed}\ngpu9 ${ed}\n`,
    );
    expect(pinnedHostKey(entries, { address: '10.0.0.5', hostname: 'gpu1', name: 'gpu1', port: 2222 })).toBe(ed);
    expect(pinnedHostKey(entries, { address: '10.0.0.6', hostname: 'gpu1', name: 'gpu1', port: 22 })).toBe(
      'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ==',
    );
    expect(pinnedHostKey(entries, { address: '10.0.0.9', hostname: 'gpu9', name: 'gpu9', port: 22 })).toBeUndefined();
  });

  it(
    'no readable key and no agent: a clear error; ' +
      'with an agent: no privateKey, and no socket path pinned in the connection',
    async () => {
      const cluster = labCluster();
      const p = project(cluster.hosts.map((h) => h.address));
      const s = { ...settingsFor(cluster, p.dir), sshKeyPath: join(p.dir, 'nope') };
      expect(() => declareCluster(cluster, s, { env: {} })).toThrow(
        `gpu-master: cannot read the SSH key ${p.dir}/nope: ENOENT`,
      );
      const agentCluster = {
        ...cluster,
        hosts: cluster.hosts.map((h) => ({ ...h, ssh: { ...h.ssh, useAgent: true } })),
      };
      let declared!: DeclaredCluster;
      const plan = await collectPlan(() => {
        declared = declareCluster(agentCluster, s, { env: { SSH_AUTH_SOCK: '/run/agent.sock' } });
        return Object.values(declared.hosts).flatMap((h) => [h, ...h.children()]);
      });
      const c = plan.find((r) => r.name === 'gpu1-driver')!.inputs.connection as Record<string, unknown>;
      expect(c.privateKey).toBeUndefined();
      // the provider reads its own SSH_AUTH_SOCK; a per-login path must not replace resources
      expect(c.agentSocketPath).toBeUndefined();
      expect(c.hostKey).toMatch(/^ssh-ed25519 /);
    },
  );
});

describe('stack outputs', () => {
  it('GPU, driver, CUDA, torch and environment per host, from what the steps printed', async () => {
    const cluster = labCluster();
    const p = project(cluster.hosts.map((h) => h.address));
    const stdout: Record<string, string> = {
      driver:
        'ugro-fact driver=570.133.07\nugro-fact gpu_count=1\n' +
        'ugro-fact gpu.0.name=NVIDIA GeForce RTX 4070\nugro-fact gpu.0.memory_mib=8188\n' +
        'ugro: x: driver: unchanged: ok\n',
      env: 'ugro-fact python=/usr/bin/python3\nugro-fact env_path=/usr\n',
      torch: 'ugro-fact torch=2.4.1\nugro-fact torch_cuda=12.4\nugro-fact cuda_available=true\n',
    };
    const { declared } = await declare(cluster, settingsFor(cluster, p.dir), ({ name }) => {
      const step = name.replace(/^(gpu-master|gpu\d)-/, '');
      return stdout[step] !== undefined ? { stdout: stdout[step] } : {};
    });
    const out = await promiseOf(declared.outputs);
    expect(Object.keys(out)).toEqual(['gpu-master', 'gpu1', 'gpu2']);
    expect(out.gpu1).toEqual({
      address: '10.250.77.11',
      user: 'ob',
      gpus: [{ index: 0, name: 'NVIDIA GeForce RTX 4070', memoryMiB: 8188 }],
      gpuModel: 'NVIDIA GeForce RTX 4070',
      gpuMemoryMiB: 8188,
      driver: '570.133.07',
      cuda: '12.4',
      cudaAvailable: true,
      torch: '2.4.1',
      manager: 'system',
      python: '/usr/bin/python3',
      envPath: '/usr',
    });
  });
});

describe('entry point (infra/index.ts) with stack config', () => {
  it('reads ugro:* config, loads the cluster file, declares every host; the passphrase stays a secret', async () => {
    const cluster = seedCluster();
    const p = project(cluster.hosts.map((h) => h.address));
    pulumi.runtime.setAllConfig(
      {
        'ugro:clusterFile': join(ROOT, 'config/cluster.yaml'),
        'ugro:sshKeyPath': join(p.dir, 'id_ed25519'),
        'ugro:knownHostsPath': join(p.dir, 'known_hosts'),
        'ugro:pixiManifest': join(p.dir, 'pixi.toml'),
        'ugro:scriptsDir': join(p.dir, 'scripts'),
        'ugro:sshKeyPassphrase': 'hunter2',
        'aws:region': 'ignored',
      },
      ['ugro:sshKeyPassphrase'],
    );
    let result!: ReturnType<typeof main>;
    const plan = await collectPlan(() => {
      result = main();
      return [result.hosts];
    });
    expect(result).toMatchObject({
      environmentManager: 'pixi',
      minDriverVersion: '550',
      cudaMajor: '12',
      cluster: 'Home AI Lab',
    });
    expect(plan.filter((r) => r.type === GPU_HOST_TYPE).map((r) => r.name)).toEqual(['gpu-master', 'gpu1', 'gpu2']);
    expect(plan.filter((r) => r.custom)).toHaveLength(3 * PIXI_STEPS.length);
    const c = plan.find((r) => r.name === 'gpu2-torch')!;
    expect(c.secretInputs).toContain('connection');
    expect((c.inputs.connection as Record<string, unknown>).privateKeyPassword).toBe('hunter2');
    expect(JSON.stringify(result.clusterFile)).not.toContain('hunter2');
  });

  it('a typo in the stack config is a clean error (RunError) naming the key', async () => {
    pulumi.runtime.setAllConfig({ 'ugro:cudaMajr': '12', 'ugro:minDriverVersion': 'new' }, []);
    let err: unknown;
    await collectPlan(() => {
      try {
        main();
      } catch (e) {
        err = e;
      }
      return [];
    });
    expect(err).toBeInstanceOf(pulumi.RunError);
    const msg = (err as Error).message;
    expect(msg).toContain('Pulumi.plan.yaml: 2 problems');
    expect(msg).toContain('unknown key ugro:cudaMajr (known: ugro:clusterFile,');
    expect(msg).toContain('ugro:minDriverVersion: must look like "550" or "550.54.14"');
  });
});

describe('Pulumi.dev.yaml', () => {
  it('is a valid stack config for the seed cluster', () => {
    const stack = parse(readFileSync(join(ROOT, 'Pulumi.dev.yaml'), 'utf8')) as { config: Record<string, unknown> };
    const p = parseStackConfig(Object.fromEntries(Object.entries(stack.config).map(([k, v]) => [k, String(v)])));
    if (!p.ok) throw new Error(JSON.stringify(p.issues));
    const s = resolveSettings(p.value, seedCluster().environment, { cwd: ROOT, home: '/home/ollie' });
    expect(s).toMatchObject({
      clusterFile: join(ROOT, 'config/cluster.yaml'),
      sshKeyPath: '/home/ollie/.ssh/id_ed25519',
      knownHostsPath: '/home/ollie/.ssh/known_hosts',
      minDriverVersion: '550',
      requireCuda: true,
      cudaMajor: '12',
      manager: 'pixi',
      pixi: { manifest: join(ROOT, 'pixi.toml'), lock: join(ROOT, 'pixi.lock'), environment: 'default' },
      scriptsDir: join(ROOT, 'scripts'),
      runtimeDir: join(ROOT, 'scripts/runtime'),
    });
  });

  it('Pulumi.yaml runs the compiled ES module with the nodejs runtime', () => {
    const proj = parse(readFileSync(join(ROOT, 'Pulumi.yaml'), 'utf8')) as Record<string, unknown>;
    expect(proj).toMatchObject({
      name: 'ugro',
      runtime: { name: 'nodejs', options: { typescript: false } },
      main: 'infra/dist/infra/index.js',
    });
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).type).toBe('module');
  });
});
