/**
 * What `pulumi up` runs: the program compiled by `npm run infra:build` (tsc -p infra/tsconfig.json)
 * to infra/dist, loaded by plain node as an ES module (no tsx), its default export called with
 * stack config under Pulumi's mock runtime. Only the engine and the provider are missing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = new URL('../..', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'ugro-infra-build-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Runs inside infra/dist so bare imports resolve to the project's node_modules, like Pulumi's.
// A `\` at the end of a line is a template-literal line continuation: the driver gets one line.
const DRIVER = `
import * as pulumi from '@pulumi/pulumi';
const [,, cfg] = process.argv;
const types = [];
await pulumi.runtime.setMocks({
  newResource: (a) => { types.push(a.type + ' ' + a.name); \
return { id: a.name, state: { ...a.inputs, stdout: '', stderr: '' } }; },
  call: (a) => a.inputs,
}, 'ugro', 'dev', false);
pulumi.runtime.setAllConfig(JSON.parse(cfg), []);
const mod = await import('./infra/index.js');
const out = mod.default();
await new Promise((r) => out.hosts.apply(r));
// what Pulumi's runtime does when the program returns: wait for every registration RPC
await pulumi.runtime.disconnect();
console.log(JSON.stringify({ exports: Object.keys(mod), cluster: out.cluster, manager: out.environmentManager, \
types: types.sort() }));
`;

describe('compiled program (infra/dist)', () => {
  it('builds with tsc, imports under plain node, and declares the cluster', () => {
    const build = spawnSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(ROOT, 'infra/tsconfig.json')], {
      encoding: 'utf8',
    });
    expect(build.stdout + build.stderr).toBe('');
    expect(build.status).toBe(0);
    expect(existsSync(join(ROOT, 'infra/dist/infra/index.js'))).toBe(true);
    writeFileSync(join(ROOT, 'infra/dist/mock-run.mjs'), DRIVER);
    // A lab-shaped cluster file with its known_hosts and key, as the stack config would name them.
    writeFileSync(
      join(tmp, 'known_hosts'),
      ['10.250.77.10', '10.250.77.11']
        .map((a) => `${a} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheBuildTestOnly0000000000000000\n`)
        .join(''),
    );
    writeFileSync(join(tmp, 'id'), 'key\n');
    writeFileSync(
      join(tmp, 'cluster.yaml'),
      'cluster:\n  name: built\n  master: { hostname: gpu-master, ip: 10.250.77.10, user: master }\n' +
        'workers:\n' +
        '  - { name: gpu1, hostname: gpu1, ip: 10.250.77.11, user: ob, rank: 1, hardware: { gpu_model: RTX 4070 } }\n' +
        'environment: { manager: system }\n' +
        `ssh: { identity_file: ${tmp}/id, known_hosts: ${tmp}/known_hosts, use_agent: false }\n`,
    );
    const cfg = {
      'ugro:clusterFile': join(tmp, 'cluster.yaml'),
      'ugro:requireCuda': 'false',
      'ugro:scriptsDir': join(ROOT, 'scripts'),
    };
    const r = spawnSync(process.execPath, [join(ROOT, 'infra/dist/mock-run.mjs'), JSON.stringify(cfg)], {
      encoding: 'utf8',
      cwd: ROOT,
    });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({ exports: ['default'], cluster: 'built', manager: 'system' });
    expect(out.types).toContain('ugro:infra:GpuHost gpu1');
    expect(out.types).toContain('command:remote:Command gpu1-driver');
    expect(out.types).toContain('command:remote:CopyToRemote gpu-master-scripts-copy');
    expect(out.types.filter((t: string) => t.startsWith('command:'))).toHaveLength(2 * 9);
  }, 60_000);
});
