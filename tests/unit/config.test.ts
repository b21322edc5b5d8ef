import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseCluster, redactedClusterFile } from '../../config/cluster.ts';
import { buildCommand } from '../../config/quote.ts';
import { limitsFor, unsignedOwnerOf, usersSettings } from '../../config/users.ts';

const ctx = { env: { USER: 'ollie' }, home: '/home/ollie', user: 'ollie' };
const seed = readFileSync(new URL('../../config/cluster.yaml', import.meta.url), 'utf8');

describe('cluster inventory', () => {
  it("reads the seed's config/cluster.yaml", () => {
    const r = parseCluster(seed, 'config/cluster.yaml', ctx);
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    expect(r.value.hosts.map((h) => [h.name, h.user, h.rank, h.address])).toEqual([
      ['gpu-master', 'ollie', 0, '192.168.1.100'],
      ['gpu1', 'ob', 1, '192.168.1.101'],
      ['gpu2', 'ollie', 2, '192.168.1.102'],
    ]);
    expect(r.value.hosts[1].paths.project).toBe('/home/ob/Development/Tools/ugro');
    expect(r.value.hosts[2].gpus).toEqual([{ model: 'RTX 3070 Ti', vramGb: 8 }]);
    expect(r.value.master.ssh.knownHosts).toBe('/home/ollie/.ssh/known_hosts');
  });

  // Each broken variant of the seed must name the field and the line it is on.
  // The last line holding the needle: for duplicates, the error points at the second occurrence.
  const lineOf = (needle: string, text = seed) =>
    text
      .split('\n')
      .findLastIndex((l: string) => (needle.startsWith('=') ? l.trim() === needle.slice(1) : l.includes(needle))) + 1;
  const cases: [string, (s: string) => string, string, string][] = [
    ['duplicate worker name', (s) => s.replace('name: "gpu2"', 'name: "gpu1"'), 'workers[1].name', 'name: "gpu1"'],
    [
      'duplicate ip',
      (s) => s.replace('ip: "192.168.1.102"', 'ip: "192.168.1.101"'),
      'workers[1].ip',
      'ip: "192.168.1.101"',
    ],
    ['duplicate rank', (s) => s.replace('rank: 2', 'rank: 1'), 'workers[1].rank', '=rank: 1'],
    ['worker rank 0', (s) => s.replace('rank: 1\n', 'rank: 0\n'), 'workers[0].rank', '=rank: 0'],
    ['missing user', (s) => s.replace('    user: "ob"\n', ''), 'workers[0].user', '- name: "gpu1"'],
    [
      'port out of range',
      (s) => s.replace('ssh_port: 22\n    rank: 2', 'ssh_port: 70000\n    rank: 2'),
      'workers[1].ssh_port',
      'ssh_port: 70000',
    ],
    [
      'port not a number',
      (s) => s.replace('port: 22\n    user', 'port: "22a"\n    user'),
      'cluster.master.port',
      'port: "22a"',
    ],
    [
      'unknown field',
      (s) => s.replace('ssh_port: 22\n    rank: 1', 'ssh_prot: 22\n    rank: 1'),
      'workers[0].ssh_prot',
      'ssh_prot: 22',
    ],
    [
      'bad ip',
      (s) => s.replace('ip: "192.168.1.101"', 'ip: "192.168.1.1 01"'),
      'workers[0].ip',
      'ip: "192.168.1.1 01"',
    ],
    ['name not DNS-1123', (s) => s.replace('name: "gpu1"', 'name: "GPU_1"'), 'workers[0].name', 'name: "GPU_1"'],
    ['bad manager', (s) => s.replace('manager: pixi', 'manager: conda'), 'environment.manager', 'manager: conda'],
    [
      'a half-life of zero',
      (s) => `${s}\nscheduling:\n  fair_share_half_life_hours: 0\n`,
      'scheduling.fair_share_half_life_hours',
      'fair_share_half_life_hours: 0',
    ],
    [
      'vram not a number',
      (s) => s.replace('vram_gb: 8\n      cpu_cores: 22', 'vram_gb: eight\n      cpu_cores: 22'),
      'workers[0].hardware.vram_gb',
      'vram_gb: eight',
    ],
    [
      'unset variable',
      (s) => s.replace('user: "ob"', 'user: "${UGRO_NO_SUCH_VAR}"'),
      'workers[0].user',
      'UGRO_NO_SUCH_VAR',
    ],
  ];
  for (const [what, mutate, path, lineNeedle] of cases) {
    it(`rejects ${what} with field path and line`, () => {
      const text = mutate(seed);
      expect(text).not.toBe(seed);
      const r = parseCluster(text, 'c.yaml', ctx);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      const issue = r.issues.find((i) => i.path === path);
      expect(issue, JSON.stringify(r.issues)).toBeDefined();
      expect(issue!.line).toBe(lineOf(lineNeedle, text));
    });
  }

  it('scheduling.fair_share_half_life_hours is read (default 24)', () => {
    const r = parseCluster(`${seed}\nscheduling:\n  fair_share_half_life_hours: 6\n`, 'c.yaml', ctx);
    expect(r.ok && r.value.scheduling).toEqual({ fairShareHalfLifeHours: 6 });
  });

  it('reports YAML syntax errors with their line', () => {
    const r = parseCluster('cluster:\n  name: x\n  master: {hostname: a\n    ip: [\n', 'c.yaml', ctx);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues[0].message).toMatch(/^YAML syntax/);
    if (!r.ok) expect(r.issues[0].line).toBeGreaterThanOrEqual(3);
  });

  it('expands ~ and ${VAR:-default}', () => {
    const text = seed.replace('identity_file: "~/.ssh/id_ed25519"', 'identity_file: "${UGRO_KEY:-~/.ssh/other}"');
    const r = parseCluster(text, '/x/c.yaml', ctx);
    expect(r.ok && r.value.master.ssh.identityFile).toBe('/home/ollie/.ssh/other');
  });
});

describe('the users: section (issue 17)', () => {
  const USERS = `
users:
  admins: [master]
  logs: private
  defaults: { gpus: 2, running_jobs: 4, queued_jobs: 20, gpu_hours_per_week: 200, max_priority: normal }
  quotas:
    ollie: { gpus: 1 }
    master: { gpus: unlimited, max_priority: high }
`;
  const parsed = (text: string) => {
    const r = parseCluster(text, 'c.yaml', ctx);
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    return r.value;
  };

  it('is optional: the seed has none, and then there are no admins and no limits', () => {
    const c = parsed(seed);
    expect(c.raw.users).toBeUndefined();
    expect(usersSettings(c.raw.users)).toBeUndefined();
    expect(limitsFor(usersSettings(c.raw.users), 'ollie').limits).toEqual({});
    expect(unsignedOwnerOf(usersSettings(c.raw.users), 'ugro')).toBe('ugro');
  });

  it('is read: admins, logs, defaults, and per-user entries over the defaults field by field', () => {
    const u = usersSettings(parsed(seed + USERS).raw.users)!;
    expect(u).toEqual({
      admins: ['master'],
      logs: 'private',
      defaults: { gpus: 2, runningJobs: 4, queuedJobs: 20, gpuHoursPerWeek: 200, maxPriority: 'normal' },
      quotas: { ollie: { gpus: 1 }, master: { gpus: 'unlimited', maxPriority: 'high' } },
    });
    expect(limitsFor(u, 'ollie').limits).toEqual({
      gpus: 1,
      runningJobs: 4,
      queuedJobs: 20,
      gpuHoursPerWeek: 200,
      maxPriority: 'normal',
    });
    expect(limitsFor(u, 'master').limits).toEqual({
      runningJobs: 4,
      queuedJobs: 20,
      gpuHoursPerWeek: 200,
      maxPriority: 'high',
    });
    expect(unsignedOwnerOf(u, 'ugro')).toBe('master');
  });

  it('`config show` prints it (the raw file, defaults filled)', () => {
    const shown = redactedClusterFile(parsed(`${seed}\nusers:\n  admins: [master]\n`));
    expect(shown.users).toEqual({ admins: ['master'], logs: 'open', defaults: {}, quotas: {} });
  });

  const bad: [string, string, string, string, RegExp][] = [
    [
      'an unknown limit',
      'users:\n  quotas:\n    ollie: { gpu: 1 }\n',
      'users.quotas.ollie.gpu',
      'gpu: 1',
      /unknown field/,
    ],
    [
      'a user that is not a login name',
      'users:\n  quotas:\n    "Ollie Smith": { gpus: 1 }\n',
      'users.quotas.Ollie Smith',
      'Ollie Smith',
      /"Ollie Smith" is not a login name: must be a valid login name/,
    ],
    ['an admin that is not a name', 'users:\n  admins: [42]\n', 'users.admins[0]', 'admins: [42]', /login name/],
    [
      'a negative GPU limit',
      'users:\n  defaults: { gpus: -1 }\n',
      'users.defaults.gpus',
      'gpus: -1',
      /must be at least 0, or "unlimited"/,
    ],
    [
      'half a GPU',
      'users:\n  quotas:\n    ollie: { gpus: 1.5 }\n',
      'users.quotas.ollie.gpus',
      'gpus: 1.5',
      /whole number/,
    ],
    [
      'a priority that is not one',
      'users:\n  defaults: { max_priority: urgent }\n',
      'users.defaults.max_priority',
      'max_priority: urgent',
      /high, normal, low, an integer -1000..1000, or "unlimited"/,
    ],
    ['a logs switch that is not one', 'users:\n  logs: closed\n', 'users.logs', 'logs: closed', /open or private/],
  ];
  for (const [what, section, path, needle, message] of bad) {
    it(`rejects ${what}, naming the field and its line`, () => {
      const text = `${seed}\n${section}`;
      const r = parseCluster(text, 'c.yaml', ctx);
      expect(r.ok).toBe(false);
      if (r.ok) return;
      const issue = r.issues.find((i) => i.path === path);
      expect(issue, JSON.stringify(r.issues)).toBeDefined();
      expect(issue!.message).toMatch(message);
      expect(issue!.line).toBe(text.split('\n').findLastIndex((l) => l.includes(needle)) + 1);
    });
  }
});

describe('argv quoting', () => {
  it('round-trips nasty arguments through a real sh byte-exact', () => {
    const nasty = [
      'two words',
      "it's",
      'say "hi"',
      '$(id)',
      '`id`',
      'a;b && c',
      'l1\nl2',
      '-n',
      '*',
      '~',
      'ünïcødé ✓',
      '',
      'A=b',
      "'",
    ];
    const out = execFileSync('sh', ['-c', buildCommand(['printf', '%s\\0', ...nasty])]);
    expect(out.toString('utf8').split('\0').slice(0, -1)).toEqual(nasty);
  });
  it('does not let the first word become an assignment', () => {
    expect(() => execFileSync('sh', ['-c', buildCommand(['A=b', 'true'])], { stdio: 'pipe' })).toThrow();
  });
});
