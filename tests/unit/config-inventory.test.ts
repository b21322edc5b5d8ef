/**
 * The cluster inventory: the seed's config/cluster.yaml reads unchanged, and every broken file
 * under tests/fixtures/cluster/ is rejected with the exact field path and the exact line.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type ExpandEnv, loadCluster, parseCluster, redactedClusterFile } from '../../config/cluster.ts';
import { ValidationError } from '../../config/errors.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const FIXTURES = `${ROOT}tests/fixtures/cluster/`;
const seed = readFileSync(`${ROOT}config/cluster.yaml`, 'utf8');
const fixture = (name: string) => readFileSync(`${FIXTURES}${name}`, 'utf8');

/** No USER in env: `${USER}` must come from the account (ctx.user), as under cron. */
const alice: ExpandEnv = { env: {}, home: '/home/alice', user: 'alice' };

function ok(text: string, file = '/etc/ugro/cluster.yaml', ctx: ExpandEnv = alice) {
  const r = parseCluster(text, file, ctx);
  if (!r.ok) throw new Error(`expected a valid file, got: ${JSON.stringify(r.issues, null, 1)}`);
  return r.value;
}

describe("the seed's config/cluster.yaml", () => {
  const c = ok(seed, `${ROOT}config/cluster.yaml`);

  it('has the three hosts, master first, with names, users, ranks, roles and addresses', () => {
    expect(c.name).toBe('Home AI Lab');
    expect(c.location).toBe('Trondheim, Norway');
    expect(
      c.hosts.map((h) => ({
        name: h.name,
        hostname: h.hostname,
        user: h.user,
        rank: h.rank,
        role: h.role,
        address: h.address,
        port: h.port,
      })),
    ).toEqual([
      {
        name: 'gpu-master',
        hostname: 'gpu-master',
        user: 'alice',
        rank: 0,
        role: 'master',
        address: '192.168.1.100',
        port: 22,
      },
      { name: 'gpu1', hostname: 'gpu1', user: 'ob', rank: 1, role: 'worker', address: '192.168.1.101', port: 22 },
      { name: 'gpu2', hostname: 'gpu2', user: 'ollie', rank: 2, role: 'worker', address: '192.168.1.102', port: 22 },
    ]);
    expect(c.master).toBe(c.hosts[0]);
  });

  it('expands ${USER} from the environment first, then from the account', () => {
    expect(ok(seed, '/x/c.yaml', { env: { USER: 'bob' }, home: '/home/bob', user: 'alice' }).master.user).toBe('bob');
    expect(c.master.user).toBe('alice');
    expect(c.master.paths.home).toBe('/home/alice');
  });

  it('keeps the GPU each host is expected to have', () => {
    expect(c.hosts.map((h) => h.gpus)).toEqual([
      [{ model: 'RTX 5070 Ti', vramGb: 12 }],
      [{ model: 'RTX 4070', vramGb: 8 }],
      [{ model: 'RTX 3070 Ti', vramGb: 8 }],
    ]);
    expect(c.hosts[1].hardware).toEqual({ gpuModel: 'RTX 4070', vramGb: 8, cpuCores: 22, ramGb: 16 });
  });

  it('normalizes remote paths: trailing "/" dropped, runs/checkpoints/logs default under the project', () => {
    expect(c.hosts[1].paths).toEqual({
      home: '/home/ob',
      project: '/home/ob/Development/Tools/ugro',
      scripts: '/home/ob/Development/Tools/ugro/scripts',
      runs: '/home/ob/Development/Tools/ugro/runs',
      checkpoints: '/home/ob/Development/Tools/ugro/checkpoints',
      checkpointRoots: [],
      logs: '/home/ob/Development/Tools/ugro/logs',
      experiments: '/home/ob/Development/Tools/ugro/experiments',
    });
    expect(c.hosts[2].paths.project).toBe('/home/ollie/Tools/ugro');
    // The master's paths are the seed's top-level `paths`.
    expect(c.master.paths.project).toBe('/home/ollie/Development/Tools/ugro');
    expect(c.master.paths.logs).toBe('/home/ollie/Development/Tools/ugro/logs');
    expect(c.master.paths.experiments).toBe('/home/ollie/Development/Tools/ugro/data/experiments');
  });

  it('reads communication, environment, ssh and training settings', () => {
    expect(c.communication).toEqual({ backend: 'c10d', masterPort: 29500, timeoutSeconds: 300 });
    expect(c.environment.manager).toBe('pixi');
    expect(c.environment.min_driver_version).toBe('550');
    expect(c.master.ssh).toEqual({
      identityFile: '/home/alice/.ssh/id_ed25519',
      knownHosts: '/home/alice/.ssh/known_hosts',
      useAgent: true,
      connectTimeoutMs: 5000,
      keepaliveMs: 1000,
      passphraseEnv: undefined,
    });
    expect(c.health).toEqual({ maxClockOffsetMs: 2000, minFreeDiskGb: 5 });
    expect(c.scheduling).toEqual({ fairShareHalfLifeHours: 24 });
    expect((c.training.lora as { rank: number }).rank).toBe(16);
    expect(c.hosts.every((h) => h.python === 'python3')).toBe(true);
  });
});

describe('broken cluster files: every problem with its field path and line', () => {
  // [fixture, field path ('' = the YAML document), line, message pattern, token on that line]
  const cases: [string, string, number, RegExp, string][] = [
    [
      'broken-duplicate-name.yaml',
      'workers[1].name',
      20,
      /duplicate host name "gpu1" \(also at workers\[0\]\.name\)/,
      'name: "gpu1"',
    ],
    [
      'broken-duplicate-ip.yaml',
      'workers[1].ip',
      22,
      /duplicate address 10\.0\.0\.11:22 \(also at workers\[0\]\.ip\)/,
      'ip: "10.0.0.11"',
    ],
    [
      'broken-master-address-clash.yaml',
      'workers[1].ip',
      22,
      /duplicate address 10\.0\.0\.10:22 \(also at cluster\.master\.ip\)/,
      'ip: "10.0.0.10"',
    ],
    ['broken-duplicate-rank.yaml', 'workers[1].rank', 25, /duplicate rank 1 \(also at workers\[0\]\.rank\)/, 'rank: 1'],
    ['broken-worker-rank-0.yaml', 'workers[0].rank', 16, /must be >= 1 \(rank 0 is the master\)/, 'rank: 0'],
    // The key is missing, so the line is the worker's own (its first line).
    ['broken-missing-user.yaml', 'workers[0].user', 11, /is required: the login user/, '- name: "gpu1"'],
    ['broken-port-out-of-range.yaml', 'workers[0].ssh_port', 15, /must be between 1 and 65535/, 'ssh_port: 70000'],
    ['broken-port-not-a-number.yaml', 'cluster.master.port', 7, /must be a number/, 'port: "22a"'],
    ['broken-unknown-field.yaml', 'workers[0].ssh_prot', 15, /unknown field/, 'ssh_prot: 22'],
    ['broken-bad-ip.yaml', 'workers[0].ip', 13, /must be an IPv4\/IPv6 address or a DNS name/, 'ip: "10.0.0.1 1"'],
    ['broken-name-not-dns.yaml', 'workers[0].name', 11, /must be a DNS-1123 label/, 'name: "GPU_1"'],
    ['broken-yaml-syntax.yaml', '', 18, /^YAML syntax: .*quote/i, 'gpu_model: "RTX 4070'],
    ['broken-duplicate-key.yaml', '', 14, /^YAML syntax: Map keys must be unique/, 'ip: "10.0.0.13"'],
    [
      'broken-unset-var.yaml',
      'workers[0].paths.project',
      13,
      /environment variable UGRO_FIXTURE_UNSET_VAR is not set/,
      '${UGRO_FIXTURE_UNSET_VAR}',
    ],
    [
      'broken-bad-manager.yaml',
      'environment.manager',
      27,
      /expected one of "system"\|"venv"\|"pixi"/,
      'manager: conda',
    ],
    ['broken-vram-type.yaml', 'workers[0].hardware.vram_gb', 19, /expected number, received string/, 'vram_gb: "8GB"'],
  ];

  it('the base fixture itself is valid (so each broken file has exactly its one defect)', () => {
    const c = ok(fixture('valid.yaml'));
    expect(c.hosts.map((h) => h.name)).toEqual(['gpu-master', 'gpu1', 'gpu2']);
  });

  for (const [file, path, line, message, token] of cases) {
    it(`${file}: ${path || '(YAML)'} at line ${line}`, () => {
      const text = fixture(file);
      // The fixture really has the defect on the line we claim.
      expect(text.split('\n')[line - 1]).toContain(token);
      const r = parseCluster(text, file, alice);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      expect(r.issues[0]).toMatchObject({ path, line });
      expect(r.issues[0].message).toMatch(message);
      expect(r.issues[0].column).toBeGreaterThan(0);
      // One defect, one issue: nothing spurious, nothing about unrelated fields.
      if (path) expect(r.issues.map((i) => `${i.path}@${i.line}`)).toEqual([`${path}@${line}`]);
      else expect(r.issues.every((i) => i.path === '' && i.message.startsWith('YAML syntax'))).toBe(true);
    });
  }

  it('lists every problem of a file at once, each on its own line', () => {
    const r = parseCluster(fixture('broken-several.yaml'), 'c.yaml', alice);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => [i.path, i.line])).toEqual([
      ['workers[0].name', 11],
      ['workers[0].rank', 16],
      ['environment.manager', 27],
    ]);
  });

  it('inline text: a port of "22a" unquoted and 0 are rejected at their lines', () => {
    const text = fixture('valid.yaml')
      .replace('ssh_port: 22\n    rank: 2', 'ssh_port: 22a\n    rank: 2')
      .replace('    port: 22\n', '    port: 0\n');
    const r = parseCluster(text, 'c.yaml', alice);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => [i.path, i.line, i.message])).toEqual([
      ['cluster.master.port', 7, 'must be between 1 and 65535'],
      ['workers[1].ssh_port', 24, 'must be a number'],
    ]);
  });

  it('an empty file says what is expected', () => {
    const r = parseCluster('# nothing yet\n', 'c.yaml', alice);
    expect(r).toMatchObject({ ok: false, issues: [{ path: '', line: 1 }] });
    if (!r.ok) expect(r.issues[0].message).toMatch(/empty.*cluster:.*workers:/);
  });

  it('loadCluster throws a ValidationError whose message carries file:line: path', () => {
    const file = `${FIXTURES}broken-duplicate-rank.yaml`;
    let err: unknown;
    try {
      loadCluster(file, alice);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).message).toContain(`${file}:25:11: workers[1].rank: duplicate rank 1`);
    expect(() => loadCluster(`${FIXTURES}no-such-file.yaml`, alice)).toThrow(
      /file not found \(pass --cluster FILE or set UGRO_CLUSTER\)/,
    );
  });
});

describe('${VAR}, ${VAR:-default} and ~ expansion', () => {
  const base = fixture('valid.yaml');
  const withSsh = (ssh: string) => `${base}ssh:\n${ssh}`;

  it('~ is the home directory for local paths (identity file, known_hosts)', () => {
    const c = ok(withSsh('  identity_file: "~/keys/id_ed25519"\n  known_hosts: "~"\n'));
    expect(c.master.ssh.identityFile).toBe('/home/alice/keys/id_ed25519');
    expect(c.master.ssh.knownHosts).toBe('/home/alice');
  });

  it('~ elsewhere than at the start is left alone; relative local paths are relative to the cluster file', () => {
    const c = ok(withSsh('  identity_file: "keys/a~b"\n'), '/srv/ugro/cluster.yaml');
    expect(c.master.ssh.identityFile).toBe('/srv/ugro/keys/a~b');
  });

  it('${VAR:-default}: default when unset or empty, the value when set; the default may use ~', () => {
    const text = withSsh(
      '  identity_file: "${UGRO_KEY:-~/.ssh/other}"\n  known_hosts: "/kh/${UGRO_KH_NAME:-known_hosts}.txt"\n',
    );
    const unset = ok(text);
    expect(unset.master.ssh.identityFile).toBe('/home/alice/.ssh/other');
    expect(unset.master.ssh.knownHosts).toBe('/kh/known_hosts.txt');
    const empty = ok(text, '/x/c.yaml', { ...alice, env: { UGRO_KEY: '' } });
    expect(empty.master.ssh.identityFile).toBe('/home/alice/.ssh/other');
    const set = ok(text, '/x/c.yaml', { ...alice, env: { UGRO_KEY: '/keys/k', UGRO_KH_NAME: 'lab' } });
    expect(set.master.ssh.identityFile).toBe('/keys/k');
    expect(set.master.ssh.knownHosts).toBe('/kh/lab.txt');
  });

  it('${HOME} falls back to the account home; an unset variable names itself and its line', () => {
    expect(ok(withSsh('  known_hosts: "${HOME}/kh"\n')).master.ssh.knownHosts).toBe('/home/alice/kh');
    const r = parseCluster(withSsh('  known_hosts: "${UGRO_NOPE}/kh"\n'), 'c.yaml', alice);
    expect(r).toMatchObject({ ok: false, issues: [{ path: 'ssh.known_hosts', line: 31 }] });
  });

  it('config show material: redactedClusterFile hides webhook.secret and leaves the parsed cluster untouched', () => {
    const c = ok(base);
    const red = redactedClusterFile(c);
    expect(red.webhook?.secret).toBe('<redacted>');
    expect(JSON.stringify(red)).not.toContain('fixture-webhook-secret-3f9a');
    expect(c.raw.webhook?.secret).toBe('fixture-webhook-secret-3f9a');
  });
});

// Bugs these tests found in config/; kept so they stay fixed.
describe('regressions (bugs found by these tests, now fixed)', () => {
  it('regression: USER set but empty must fall back to the account, as unset USER does', () => {
    // `${VAR}` treats an empty value as unset; USER="" (some containers, `env USER=`) then
    // skips the account fallback and the seed file is rejected.
    const c = ok(seed, '/x/c.yaml', { env: { USER: '' }, home: '/home/alice', user: 'alice' });
    expect(c.master.user).toBe('alice');
  });

  it("regression: ~ in a worker's paths is the worker user's home, not the controller's", () => {
    const text = fixture('valid.yaml').replace('    rank: 1\n', '    rank: 1\n    paths: { project: "~/ugro" }\n');
    const c = ok(text);
    expect(c.hosts[1].user).toBe('ob');
    expect(c.hosts[1].paths.project).toBe('/home/ob/ugro');
  });

  it(
    "regression: ~ in top-level paths is the master user's home for the master, " + "the controller's for local use",
    () => {
      const text =
        fixture('valid.yaml').replace('    user: "${USER}"\n', '    user: "master"\n') +
        'paths:\n  project_root: "~/ugro"\n  scripts: "~/ugro/scripts"\n';
      const c = ok(text);
      expect(c.master.paths.project).toBe('/home/master/ugro');
      expect(c.master.paths.scripts).toBe('/home/master/ugro/scripts');
      expect(c.local.projectRoot).toBe('/home/alice/ugro');
      expect(c.local.scripts).toBe('/home/alice/ugro/scripts');
    },
  );

  it('regression: 10.0.0.300 is neither an IPv4 address nor a DNS name', () => {
    const text = fixture('broken-ip-octet.yaml');
    expect(text.split('\n')[12]).toContain('ip: "10.0.0.300"');
    const r = parseCluster(text, 'c.yaml', alice);
    expect(r).toMatchObject({ ok: false, issues: [{ path: 'workers[0].ip', line: 13 }] });
  });
});
