/** Stack config of the Pulumi program: parse (pure, errors by key), then resolve against the cluster. */
import { describe, expect, it } from 'vitest';
import { parseStackConfig, resolveSettings, STACK_KEYS } from '../../infra/config.ts';

const ctx = { cwd: '/repo', home: '/home/ollie' };
const env = { manager: 'pixi' as const, min_driver_version: '525.60.13', cuda_version: '12.1' };

describe('stack config', () => {
  it('defaults: cluster file, scripts, pixi next to the project; driver/CUDA/manager from the cluster file', () => {
    const p = parseStackConfig({});
    if (!p.ok) throw new Error(JSON.stringify(p.issues));
    expect(resolveSettings(p.value, env, ctx)).toEqual({
      clusterFile: '/repo/config/cluster.yaml',
      sshKeyPath: undefined,
      knownHostsPath: undefined,
      minDriverVersion: '525.60.13',
      requireCuda: true,
      cudaMajor: '12',
      manager: 'pixi',
      python: undefined,
      pixi: { manifest: '/repo/pixi.toml', lock: '/repo/pixi.lock', environment: 'default' },
      venv: { requirements: undefined, systemSitePackages: false },
      scriptsDir: '/repo/scripts',
      runtimeDir: '/repo/scripts/runtime',
      reachabilityTimeoutSeconds: 300,
      checkEpoch: '1',
    });
  });

  it('stack values win over the cluster file; ~ and relative paths resolve; other namespaces are ignored', () => {
    const p = parseStackConfig({
      'ugro:clusterFile': '~/lab/cluster.yaml',
      'ugro:sshKeyPath': '~/.ssh/id_ed25519',
      'ugro:minDriverVersion': '570.133.07',
      'ugro:requireCuda': 'false',
      'ugro:cudaMajor': '11',
      'ugro:environmentManager': 'venv',
      'ugro:venvRequirements': 'env/requirements.txt',
      'ugro:venvSystemSitePackages': 'true',
      'ugro:pixiManifest': 'env/pixi.toml',
      'ugro:runtimeDir': '/opt/ugro/runtime',
      'ugro:reachabilityTimeoutSeconds': '30',
      'ugro:sshKeyPassphrase': 'secret-value',
      'aws:region': 'eu-north-1',
    });
    if (!p.ok) throw new Error(JSON.stringify(p.issues));
    expect(p.value.sshKeyPassphrase).toBe(true); // only its presence; the value is read as a secret
    expect(JSON.stringify(p.value)).not.toContain('secret-value');
    expect(resolveSettings(p.value, env, ctx)).toMatchObject({
      clusterFile: '/home/ollie/lab/cluster.yaml',
      sshKeyPath: '/home/ollie/.ssh/id_ed25519',
      minDriverVersion: '570.133.07',
      requireCuda: false,
      cudaMajor: '11',
      manager: 'venv',
      venv: { requirements: '/repo/env/requirements.txt', systemSitePackages: true },
      pixi: { manifest: '/repo/env/pixi.toml', lock: '/repo/env/pixi.lock' },
      runtimeDir: '/opt/ugro/runtime',
      reachabilityTimeoutSeconds: 30,
    });
  });

  it('CUDA major falls back to 12 when the cluster file names no CUDA version', () => {
    const p = parseStackConfig({});
    if (!p.ok) throw new Error('parse');
    expect(resolveSettings(p.value, { manager: 'system', min_driver_version: '550' }, ctx).cudaMajor).toBe('12');
  });

  it('every problem, each with its key', () => {
    const p = parseStackConfig({
      'ugro:minDriverVersion': '550.x',
      'ugro:requireCuda': 'yes',
      'ugro:cudaMajor': '12.1',
      'ugro:environmentManager': 'conda',
      'ugro:reachabilityTimeoutSeconds': '0',
      'ugro:pixiEnvironment': 'Default Env',
      'ugro:sshKeyPth': '~/.ssh/id',
    });
    expect(p.ok).toBe(false);
    if (p.ok) return;
    expect(p.issues).toEqual(
      expect.arrayContaining([
        { path: 'ugro:minDriverVersion', message: 'must look like "550" or "550.54.14"' },
        { path: 'ugro:requireCuda', message: 'must be true or false' },
        { path: 'ugro:cudaMajor', message: 'must be a CUDA major version such as "12"' },
        { path: 'ugro:environmentManager', message: 'must be one of system, venv, pixi' },
        { path: 'ugro:reachabilityTimeoutSeconds', message: 'must be between 1 and 3600' },
        { path: 'ugro:pixiEnvironment', message: 'must be a pixi environment name (lowercase letters, digits, "-")' },
        { path: '', message: `unknown key ugro:sshKeyPth (known: ${STACK_KEYS.map((k) => `ugro:${k}`).join(', ')})` },
      ]),
    );
    expect(p.issues).toHaveLength(7);
  });
});

describe('reachability dial policy', () => {
  it('dials of at most 5 s, as many as fit the timeout (a host that drops packets cannot stretch it)', async () => {
    const { dialPolicy } = await import('../../infra/connection.ts');
    expect(dialPolicy(300)).toEqual({ perDialTimeout: 5, dialErrorLimit: 60 });
    expect(dialPolicy(12)).toEqual({ perDialTimeout: 5, dialErrorLimit: 3 });
    expect(dialPolicy(2)).toEqual({ perDialTimeout: 2, dialErrorLimit: 1 });
    const p = dialPolicy(300);
    expect(p.perDialTimeout * p.dialErrorLimit).toBeLessThanOrEqual(300);
  });
});
