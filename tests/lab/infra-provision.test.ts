/**
 * The Pulumi program against the lab hosts, for real. The program is declared under Pulumi's
 * mock runtime (no engine, no provider here); every remote.Command it declares is then run over
 * SSH on its host and every remote.CopyToRemote copied, in dependency order, as the engine and
 * the command provider would (a resource whose dependency failed is not created). On a re-run only
 * resources whose inputs changed run, as `pulumi up` does.
 *
 * Each scenario provisions its own project directory (~/ugro-infra-<name>) on the lab hosts, so it
 * never touches what the controller tests use. Needs `npm run lab -- up`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, posix } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, type Host, loadCluster } from '../../config/cluster.ts';
import { readTree, sha256 } from '../../config/hash.ts';
import { readKnownHosts } from '../../config/known-hosts.ts';
import { shQuote } from '../../config/quote.ts';
import { type InfraSettings, parseStackConfig, resolveSettings } from '../../infra/config.ts';
import { makeConnection, pinnedHostKey } from '../../infra/connection.ts';
import { GPU_HOST_TYPE, hostFacts } from '../../infra/gpu-host.ts';
import { collectPlan, type DeclaredResource, orderPlan } from '../../infra/plan.ts';
import { declareCluster } from '../../infra/program.ts';
import { parseFacts, stepOutcome } from '../../infra/scripts.ts';

const ROOT = new URL('../..', import.meta.url).pathname;
const CLUSTER_FILE = join(ROOT, '.lab/cluster.yaml');
const LAB = (...args: string[]) => {
  const r = spawnSync('bash', [join(ROOT, 'tests/lab/lab.sh'), ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`lab ${args.join(' ')}: ${r.stderr}`);
};
const tmp = mkdtempSync(join(tmpdir(), 'ugro-infra-lab-'));
const SCENARIOS = ['lab', 'fail', 'pixi', 'venv'];

/** The lab cluster with every host's paths moved to ~/ugro-infra-<name>. */
function labCluster(name: string): Cluster {
  if (!existsSync(CLUSTER_FILE)) throw new Error(`${CLUSTER_FILE} missing: run \`npm run lab -- up\` first`);
  const c = loadCluster(CLUSTER_FILE);
  for (const h of c.hosts) {
    const p = posix.join(h.paths.home, `ugro-infra-${name}`);
    h.paths = {
      home: h.paths.home,
      project: p,
      scripts: `${p}/scripts`,
      runs: `${p}/runs`,
      checkpoints: `${p}/checkpoints`,
      checkpointRoots: [],
      logs: `${p}/logs`,
      experiments: `${p}/experiments`,
    };
  }
  return c;
}

function settings(c: Cluster, extra: Record<string, string> = {}): InfraSettings {
  const p = parseStackConfig({
    'ugro:requireCuda': 'false',
    'ugro:minDriverVersion': '550',
    'ugro:scriptsDir': join(tmp, 'scripts'),
    ...extra,
  });
  if (!p.ok) throw new Error(JSON.stringify(p.issues));
  return resolveSettings(p.value, c.environment, { cwd: tmp, home: '/root' });
}

async function plan(c: Cluster, s: InfraSettings): Promise<DeclaredResource[]> {
  return collectPlan(() => {
    const d = declareCluster(c, s);
    return Object.values(d.hosts).flatMap((h) => [h, ...h.children()]);
  });
}

/** A declared connection, as the provider gets it. */
interface Conn {
  host: string;
  port: number;
  user: string;
  hostKey: string;
  privateKey: string;
  perDialTimeout: number;
  dialErrorLimit: number;
}

/**
 * OpenSSH client options that use exactly a declared connection: its private key, and a
 * known_hosts holding only its `hostKey`, with strict checking. A wrong or missing hostKey in the
 * program would make every step fail here.
 */
function sshOptions(c: Conn): string[] {
  const dir = join(tmp, 'conn', sha256(JSON.stringify([c.host, c.port, c.user, c.hostKey, c.privateKey])).slice(0, 16));
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'key'), c.privateKey, { mode: 0o600 });
    writeFileSync(join(dir, 'known_hosts'), `${c.port === 22 ? c.host : `[${c.host}]:${c.port}`} ${c.hostKey}\n`);
  }
  return [
    '-i',
    join(dir, 'key'),
    '-o',
    `UserKnownHostsFile=${join(dir, 'known_hosts')}`,
    '-o',
    'GlobalKnownHostsFile=/dev/null',
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    `HostKeyAlgorithms=${c.hostKey.split(' ')[0]}`,
    '-o',
    'BatchMode=yes',
    '-o',
    'IdentitiesOnly=yes',
    '-o',
    `ConnectTimeout=${c.perDialTimeout}`,
    '-o',
    'LogLevel=ERROR',
  ];
}

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b) => (stdout += b));
    p.stderr.on('data', (b) => (stderr += b));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** What the provider does with `create`/`delete`: the string is the SSH exec request, run by the login shell. */
const remote = (c: Conn, command: string) =>
  run('ssh', [...sshOptions(c), '-p', String(c.port), `${c.user}@${c.host}`, '--', command]);

/** The provider's CopyToRemote (sftp): a directory lands in REMOTE/<its name>, a file at REMOTE. */
async function copyToRemote(c: Conn, src: { kind: string; path: string }, remotePath: string): Promise<Result> {
  const to = src.kind === 'FileArchive' ? posix.join(remotePath, basename(src.path)) : remotePath;
  const mk = await remote(c, `mkdir -p ${shQuote(posix.dirname(to))}`);
  if (mk.code !== 0) return mk;
  return run('scp', [...sshOptions(c), '-q', '-r', '-P', String(c.port), src.path, `${c.user}@${c.host}:${to}`]);
}

interface StepRun {
  name: string;
  host: string;
  step: string;
  status: 'ok' | 'failed' | 'skipped';
  stdout: string;
  stderr: string;
  ms: number;
}

const hostOf = (r: DeclaredResource) => r.parent.split('::').pop()!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * What the engine and the command provider do with the declared resources: hosts in parallel,
 * each host's resources in dependency order, each with its own declared connection; a resource
 * whose dependency failed or was skipped is skipped. `only`: resources to run (the ones
 * `pulumi up` would update); `destroy`: `delete` commands, in reverse order.
 */
async function apply(
  rs: DeclaredResource[],
  o: { hosts?: string[]; only?: Set<string>; destroy?: boolean } = {},
): Promise<StepRun[]> {
  let ordered = orderPlan(rs).filter((r) => r.custom && (!o.hosts || o.hosts.includes(hostOf(r))));
  if (o.destroy) ordered = ordered.reverse();
  const byHost = new Map<string, DeclaredResource[]>();
  for (const r of ordered) byHost.set(hostOf(r), [...(byHost.get(hostOf(r)) ?? []), r]);
  const runs: StepRun[] = [];
  const bad = new Set<string>();
  await Promise.all(
    [...byHost].map(async ([host, list]) => {
      for (const r of list) {
        const step = r.name.slice(host.length + 1);
        const conn = r.inputs.connection as Conn;
        const t0 = Date.now();
        const rec = (status: StepRun['status'], res?: Result) => {
          if (status !== 'ok') bad.add(r.urn);
          runs.push({
            name: r.name,
            host,
            step,
            status,
            stdout: res?.stdout ?? '',
            stderr: res?.stderr ?? '',
            ms: Date.now() - t0,
          });
        };
        if (o.only && !o.only.has(r.name)) continue;
        if (!o.destroy && r.dependencies.some((d) => bad.has(d))) {
          rec('skipped');
          continue;
        }
        if (r.type === 'command:remote:Command') {
          const script = (o.destroy ? r.inputs.delete : r.inputs.create) as string | undefined;
          if (!script) continue;
          const res = await dialing(conn, () => remote(conn, script));
          rec(res.code === 0 ? 'ok' : 'failed', res);
        } else if (!o.destroy) {
          const res = await dialing(conn, () =>
            copyToRemote(conn, r.inputs.source as { kind: string; path: string }, r.inputs.remotePath as string),
          );
          rec(res.code === 0 ? 'ok' : 'failed', res);
        }
      }
    }),
  );
  return runs;
}

/** ssh/scp could not connect at all (the command never ran). */
const DIAL_FAILED = new RegExp(
  '^(ssh: connect to host .*: (Connection refused|Connection timed out|No route to host)|' +
    'kex_exchange_identification: .*|Connection closed by .* port \\d+)\\s*$',
  'm',
);

/**
 * The provider dials every resource's connection the same way: failed dials are retried up to
 * dialErrorLimit times. For H-reachable this is the reachability poll; for the other steps it
 * rides out a host that restarts its sshd (other lab tests stop and start hosts).
 */
async function dialing(c: Conn, attempt: () => Promise<Result>): Promise<Result> {
  for (let i = 1; ; i++) {
    const r = await attempt();
    if (r.code === 0 || !DIAL_FAILED.test(r.stderr) || i >= c.dialErrorLimit) return r;
    await sleep(1000);
  }
}

const outcomes = (runs: StepRun[]) =>
  Object.fromEntries(runs.filter((r) => r.stdout).map((r) => [r.name, stepOutcome(r.stdout)]));
/** A command on a lab host, over the connection the program declares for it. */
const conns = new Map<string, Conn>();
const connOf = (h: Host): Conn => {
  if (!conns.has(h.name)) conns.set(h.name, makeConnection(h, { reachabilityTimeoutSeconds: 30 }) as unknown as Conn);
  return conns.get(h.name)!;
};
const sh = async (h: Host, script: string) => {
  const c = connOf(h);
  const r = await remote({ ...c, privateKey: readFileSync(h.ssh.identityFile!, 'utf8') }, script);
  if (r.code !== 0) throw new Error(`${h.name}: ${script}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
};
/** Names of resources whose inputs differ between two declarations: what `pulumi up` would update. */
const diff = (a: DeclaredResource[], b: DeclaredResource[]) => {
  const before = new Map(a.map((r) => [r.name, JSON.stringify(r.inputs)]));
  return new Set(b.filter((r) => r.custom && before.get(r.name) !== JSON.stringify(r.inputs)).map((r) => r.name));
};

let cluster: Cluster;
const timings: string[] = [];

beforeAll(async () => {
  cluster = labCluster('lab');
  spawnSync('cp', ['-a', join(ROOT, 'scripts'), join(tmp, 'scripts')]);
  for (const h of cluster.hosts) await sh(h, `rm -rf ${SCENARIOS.map((s) => `"$HOME/ugro-infra-${s}"`).join(' ')}`);
});

afterAll(async () => {
  for (const h of cluster?.hosts ?? [])
    await sh(h, `rm -rf ${SCENARIOS.map((s) => `"$HOME/ugro-infra-${s}"`).join(' ')}`).catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
  if (timings.length) console.log(`infra lab timings:\n  ${timings.join('\n  ')}`);
});

describe('pulumi program on the lab hosts (system python, CUDA not required)', () => {
  let first: DeclaredResource[];

  it('declares a pinned, reachability-first graph for the lab cluster', async () => {
    first = await plan(cluster, settings(cluster));
    const known = readKnownHosts(join(ROOT, '.lab/known_hosts'));
    expect(first.filter((r) => r.type === GPU_HOST_TYPE).map((r) => r.name)).toEqual(cluster.hosts.map((h) => h.name));
    for (const h of cluster.hosts) {
      const mine = first.filter((r) => hostOf(r) === h.name);
      expect(mine).toHaveLength(9);
      const reach = mine.find((r) => r.name === `${h.name}-reachable`)!;
      for (const r of mine) {
        expect(r.inputs.connection).toMatchObject({
          host: h.address,
          user: h.user,
          port: 22,
          hostKey: pinnedHostKey(known, h),
          privateKey: readFileSync(join(ROOT, '.lab/id_ed25519'), 'utf8'),
        });
        if (r !== reach) expect(r.dependencies).toContain(reach.urn);
      }
    }
  });

  it("the declared hostKey is what the host presents: another host's key is refused before anything runs", async () => {
    const gpu1 = first.find((r) => r.name === 'gpu1-reachable')!.inputs.connection as Conn;
    const gpu2 = first.find((r) => r.name === 'gpu2-reachable')!.inputs.connection as Conn;
    const ok = await remote(gpu1, 'echo ran');
    expect(ok).toMatchObject({ code: 0, stdout: 'ran\n' });
    const wrong = await remote({ ...gpu1, hostKey: gpu2.hostKey, port: 22, host: gpu1.host }, 'echo ran');
    expect(wrong.code).toBe(255);
    expect(wrong.stdout).toBe('');
    expect(wrong.stderr).toMatch(/host key .*(changed|verification failed)|Host key verification failed/i);
  });

  it('first run provisions every host: directories, scripts byte-exact, environment, checks', async () => {
    const t0 = Date.now();
    const runs = await apply(first);
    timings.push(`first run (3 hosts, ${runs.length} resources): ${Date.now() - t0} ms`);
    for (const r of runs)
      expect({ name: r.name, status: r.status, stderr: r.stderr }).toEqual({ name: r.name, status: 'ok', stderr: '' });
    const out = outcomes(runs);
    for (const h of cluster.hosts) {
      expect(out[`${h.name}-dirs`]).toBe('changed');
      expect(out[`${h.name}-scripts`]).toBe('changed');
      expect(out[`${h.name}-runtime`]).toBe('changed');
      for (const check of ['reachable', 'driver', 'env', 'torch']) expect(out[`${h.name}-${check}`]).toBe('unchanged');
      // directories and modes
      const p = h.paths.project;
      expect(
        (
          await sh(
            h,
            `stat -c '%a %n' ${p} ${p}/scripts ${p}/runs ${p}/checkpoints ${p}/logs ${p}/experiments ${p}/.ugro`,
          )
        )
          .trim()
          .split('\n'),
      ).toEqual([
        `755 ${p}`,
        `755 ${p}/scripts`,
        `750 ${p}/runs`,
        `750 ${p}/checkpoints`,
        `750 ${p}/logs`,
        `750 ${p}/experiments`,
        `700 ${p}/.ugro`,
      ]);
      // every file of scripts/ (runtime/ included) byte-exact, with its mode
      const local = readTree(join(tmp, 'scripts'));
      const remote = await sh(
        h,
        `cd ${h.paths.scripts} && for f in ${local.files.map((f) => f.path).join(' ')}; ` +
          `do printf '%s %s %s\\n' "$(sha256sum < "$f" | cut -d' ' -f1)" "$(stat -c %a "$f")" "$f"; done`,
      );
      expect(remote.trim().split('\n')).toEqual(local.files.map((f) => `${f.sha256} ${f.mode} ${f.path}`));
      // what the stack outputs would say
      const facts = hostFacts(
        h,
        'system',
        Object.assign({}, ...runs.filter((r) => r.host === h.name).map((r) => parseFacts(r.stdout))),
      );
      expect(facts).toMatchObject({
        driver: '570.133.07',
        gpuModel: `NVIDIA GeForce ${h.gpus[0].model}`,
        cuda: 'none',
        cudaAvailable: false,
        manager: 'system',
        python: '/usr/bin/python3',
        envPath: '/usr',
      });
      expect(facts.torch).toMatch(/^1\.13/);
      expect(facts.gpuMemoryMiB).toBeGreaterThan(8000);
    }
  });

  it('a second run changes nothing and says so', async () => {
    const again = await plan(cluster, settings(cluster));
    expect(diff(first, again)).toEqual(new Set());
    const t0 = Date.now();
    // Even running every step again (what `pulumi up --replace` would do) changes nothing.
    const runs = await apply(again);
    timings.push(`second run (3 hosts, ${runs.length} resources): ${Date.now() - t0} ms`);
    expect(runs.every((r) => r.status === 'ok')).toBe(true);
    const out = outcomes(runs);
    expect(Object.keys(out)).toHaveLength(cluster.hosts.length * 7);
    for (const [name, o] of Object.entries(out)) expect({ name, o }).toEqual({ name, o: 'unchanged' });
    for (const r of runs) expect(r.stdout).not.toMatch(/: (created|updated|removed) /);
  });

  it('a changed script re-runs only the scripts step, and lands byte-exact', async () => {
    writeFileSync(
      join(tmp, 'scripts/train.py'),
      `${readFileSync(join(tmp, 'scripts/train.py'), 'utf8')}# changed by the infra lab test\n`,
    );
    const next = await plan(cluster, settings(cluster));
    const changed = diff(first, next);
    expect([...changed].sort()).toEqual(
      cluster.hosts.flatMap((h) => [`${h.name}-scripts`, `${h.name}-scripts-copy`]).sort(),
    );
    const runs = await apply(next, { only: changed });
    expect(runs.map((r) => [r.name, r.status]).sort()).toEqual([...changed].sort().map((n) => [n, 'ok']));
    for (const h of cluster.hosts) {
      const r = runs.find((x) => x.name === `${h.name}-scripts`)!;
      expect(r.stdout).toContain(`ugro: ${h.name}: scripts: updated train.py`);
      expect(stepOutcome(r.stdout)).toBe('changed');
      expect(await sh(h, `cat ${h.paths.scripts}/train.py`)).toBe(readFileSync(join(tmp, 'scripts/train.py'), 'utf8'));
      // the old stage is pruned: one stage per tree
      expect(
        (await sh(h, `ls ${h.paths.project}/.ugro/stage`))
          .trim()
          .split('\n')
          .map((s) => s.replace(/-.*/, '')),
      ).toEqual(['runtime', 'scripts']);
    }
    first = next;
  });

  it(
    'destroy removes the deployed scripts and runtime, ' + 'and leaves directories, checkpoints and the environment',
    async () => {
      for (const h of cluster.hosts)
        await sh(h, `echo weights > ${h.paths.checkpoints}/step-100.pt && echo mine > ${h.paths.scripts}/notes.txt`);
      const runs = await apply(first, { destroy: true });
      expect(runs.map((r) => r.step).sort()).toEqual(cluster.hosts.flatMap(() => ['runtime', 'scripts']).sort());
      for (const r of runs) expect(stepOutcome(r.stdout)).toBe('changed');
      for (const h of cluster.hosts) {
        const p = h.paths.project;
        const left = (await sh(h, `cd ${p} && find . | LC_ALL=C sort`)).trim().split('\n');
        expect(left.filter((f) => !f.startsWith('./.ugro/stage/'))).toEqual([
          '.',
          './.ugro',
          './.ugro/stage',
          './checkpoints',
          './checkpoints/step-100.pt',
          './experiments',
          './logs',
          './runs',
          './scripts',
          './scripts/notes.txt',
        ]);
        expect(await sh(h, `cat ${h.paths.checkpoints}/step-100.pt`)).toBe('weights\n');
        // the last staged copy of each tree stays (UGRO's bookkeeping, see docs/pulumi.md)
        expect(
          (await sh(h, `ls ${p}/.ugro/stage`))
            .trim()
            .split('\n')
            .map((x) => x.replace(/-.*/, '')),
        ).toEqual(['runtime', 'scripts']);
      }
      const again = await apply(first, { destroy: true });
      for (const r of again) expect(stepOutcome(r.stdout)).toBe('unchanged');
    },
  );

  it(
    'a replaced install (new connection, or `pulumi up --replace`) ' + 'deletes first, then redeploys from its stage',
    async () => {
      // deleteBeforeReplace: the old delete (already ran above, as in a destroy), then the new create alone.
      const installs = new Set(cluster.hosts.flatMap((h) => [`${h.name}-scripts`, `${h.name}-runtime`]));
      const runs = await apply(first, { only: installs });
      for (const r of runs)
        expect({ name: r.name, status: r.status, outcome: stepOutcome(r.stdout) }).toEqual({
          name: r.name,
          status: 'ok',
          outcome: 'changed',
        });
      const local = readTree(join(tmp, 'scripts'));
      for (const h of cluster.hosts) {
        const remote = await sh(h, `cd ${h.paths.scripts} && sha256sum ${local.files.map((f) => f.path).join(' ')}`);
        expect(remote.trim().split('\n')).toEqual(local.files.map((f) => `${f.sha256}  ${f.path}`));
      }
    },
  );
});

describe('driver check failures stop the host before anything is changed', () => {
  for (const mode of ['old-driver', 'absent'] as const) {
    it(`gpu2 with ${mode}: the driver step fails with the message, nothing after it runs`, async () => {
      const c = labCluster('fail');
      const rs = await plan(c, settings(c));
      LAB('gpu', 'gpu2', mode);
      let runs: StepRun[];
      try {
        runs = await apply(rs, { hosts: ['gpu2'] });
      } finally {
        LAB('gpu', 'gpu2', 'ok');
      }
      expect(runs.map((r) => [r.step, r.status])).toEqual(
        [
          ['reachable', 'ok'],
          ['driver', 'failed'],
          ...['dirs', 'env', 'torch', 'scripts-copy', 'runtime-copy', 'scripts', 'runtime'].map((s) => [s, 'skipped']),
        ].sort((a, b) => orderOf(rs, a[0]) - orderOf(rs, b[0])),
      );
      const driver = runs.find((r) => r.step === 'driver')!;
      expect(driver.stderr.trim()).toBe(
        mode === 'old-driver'
          ? 'gpu2: NVIDIA driver 470.82.01 < required 550: upgrade the driver'
          : 'gpu2: nvidia-smi not found: no NVIDIA driver installed (install the NVIDIA driver >= 550)',
      );
      expect(await sh(c.hosts[2], `test -e ${c.hosts[2].paths.project} && echo exists || echo absent`)).toBe(
        'absent\n',
      );
    });
  }
});

/** Position of gpu2's STEP in dependency order. */
function orderOf(rs: DeclaredResource[], step: string): number {
  return orderPlan(rs)
    .filter((r) => r.custom && hostOf(r) === 'gpu2')
    .findIndex((r) => r.name === `gpu2-${step}`);
}

describe('environment managers on the lab hosts', () => {
  it(
    'pixi (stand-in): copies pixi.toml + pixi.lock, ' +
      'runs `pixi install --locked` once, again only when the lock changes',
    async () => {
      const c = labCluster('pixi');
      writeFileSync(
        join(tmp, 'pixi.toml'),
        '[project]\nname = "ugro"\nchannels = ["conda-forge"]\nplatforms = ["linux-64"]\n\n' +
          '[dependencies]\npython = "3.11.*"\n',
      );
      writeFileSync(join(tmp, 'pixi.lock'), 'version: 6\nenvironments: {}\npackages: []\n');
      const s = settings(c, { 'ugro:environmentManager': 'pixi', 'ugro:pixiManifest': join(tmp, 'pixi.toml') });
      const calls = async (h: Cluster['hosts'][number]) =>
        (
          await sh(
            h,
            `grep -F -- ${h.paths.project}/pixi.toml ` +
              '"${PIXI_STANDIN_LOG:-$HOME/.pixi-standin.log}" 2>/dev/null || true',
          )
        )
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => l.split('\t')[2]);
      // The stand-in logs every call to ~/.pixi-standin.log, which outlives the test: count from here.
      const before = await Promise.all(c.hosts.map(async (h) => (await calls(h)).length));
      const newCalls = async (i: number) => (await calls(c.hosts[i])).slice(before[i]);

      const rs = await plan(c, s);
      const t0 = Date.now();
      const a = await apply(rs);
      timings.push(`pixi first run (3 hosts): ${Date.now() - t0} ms`);
      for (const r of a)
        expect({ name: r.name, status: r.status, err: r.status === 'ok' ? '' : r.stderr }).toEqual({
          name: r.name,
          status: 'ok',
          err: '',
        });
      for (const [i, h] of c.hosts.entries()) {
        expect(await newCalls(i)).toEqual([`pixi install --manifest-path ${h.paths.project}/pixi.toml --locked`]);
        expect(outcomes(a)[`${h.name}-env`]).toBe('changed');
        const torch = parseFacts(a.find((r) => r.name === `${h.name}-torch`)!.stdout);
        expect(torch.python).toBe(`${h.paths.project}/.pixi/envs/default/bin/python`);
        expect(await sh(h, `cat ${h.paths.project}/pixi.lock`)).toBe(readFileSync(join(tmp, 'pixi.lock'), 'utf8'));
      }

      const b = await apply(await plan(c, s));
      for (const [i, h] of c.hosts.entries()) {
        expect(outcomes(b)[`${h.name}-env`]).toBe('unchanged');
        expect(await newCalls(i)).toHaveLength(1);
      }

      writeFileSync(join(tmp, 'pixi.lock'), 'version: 6\nenvironments: {default: {}}\npackages: []\n');
      const next = await plan(c, s);
      const changed = diff(rs, next);
      expect([...changed].sort()).toEqual(
        c.hosts.flatMap((h) => [`${h.name}-env`, `${h.name}-pixi-lock`, `${h.name}-torch`]).sort(),
      );
      const d = await apply(next, { only: changed });
      for (const [i, h] of c.hosts.entries()) {
        expect(outcomes(d)[`${h.name}-env`]).toBe('changed');
        expect(outcomes(d)[`${h.name}-torch`]).toBe('unchanged');
        expect(await newCalls(i)).toHaveLength(2);
      }
    },
  );

  it('venv: a venv with the system torch, requirements installed once', async () => {
    const c = labCluster('venv');
    writeFileSync(join(tmp, 'requirements.txt'), 'torch\n');
    chmodSync(join(tmp, 'requirements.txt'), 0o644);
    const s = settings(c, {
      'ugro:environmentManager': 'venv',
      'ugro:venvRequirements': join(tmp, 'requirements.txt'),
      'ugro:venvSystemSitePackages': 'true',
    });
    const rs = await plan(c, s);
    const t0 = Date.now();
    const a = await apply(rs, { hosts: ['gpu1'] });
    timings.push(`venv first run (gpu1): ${Date.now() - t0} ms`);
    for (const r of a)
      expect({ name: r.name, status: r.status, err: r.status === 'ok' ? '' : r.stderr }).toEqual({
        name: r.name,
        status: 'ok',
        err: '',
      });
    const env = a.find((r) => r.step === 'env')!;
    expect(env.stderr).toMatch(/Requirement already satisfied: torch/);
    expect(env.stdout.trim().split('\n').pop()).toBe(
      `ugro: gpu1: env: changed: created venv ${c.hosts[1].paths.project}/.venv, ` +
        `installed ${c.hosts[1].paths.project}/.ugro/requirements.txt`,
    );
    expect(parseFacts(a.find((r) => r.step === 'torch')!.stdout).python).toBe(
      `${c.hosts[1].paths.project}/.venv/bin/python`,
    );
    const b = await apply(rs, { hosts: ['gpu1'] });
    expect(Object.values(outcomes(b)).every((o) => o === 'unchanged')).toBe(true);
  });
});
