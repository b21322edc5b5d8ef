/** `ugro config validate|show` through the real CLI entry, in-process (main(argv, io, env)). */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { main } from '../../controller/cli/main.ts';

const FIXTURES = new URL('../fixtures/cluster/', import.meta.url).pathname;

async function ugro(args: string[], env: Record<string, string | undefined> = { ...process.env, USER: 'alice' }) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(['node', 'ugro', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) }, env);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('ugro config validate FILE', () => {
  it('a valid file: exit 0 and a one-line summary', async () => {
    const r = await ugro(['config', 'validate', `${FIXTURES}valid.yaml`]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toBe(`${FIXTURES}valid.yaml: valid: cluster "fixture", 3 hosts (gpu-master, gpu1, gpu2)`);
  });

  it('an invalid file: exit 1, every problem listed as file:line:column: path: message', async () => {
    const file = `${FIXTURES}broken-several.yaml`;
    const r = await ugro(['config', 'validate', file]);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    const lines = r.err.split('\n');
    expect(lines[0]).toBe(`${file}: invalid (3 problems)`);
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^  ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:11:11: workers\\[0\\]\\.name: must be a DNS-1123 label`,
        ),
      ),
      expect.stringContaining(`${file}:16:11: workers[0].rank: must be >= 1 (rank 0 is the master)`),
      expect.stringContaining(`${file}:27:12: environment.manager: Invalid option`),
    ]);
  });

  it('a YAML syntax error is reported with its line, exit 1', async () => {
    const file = `${FIXTURES}broken-yaml-syntax.yaml`;
    const r = await ugro(['config', 'validate', file]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${file}:18:27: YAML syntax`);
  });

  it('the file given on the command line wins over --cluster and UGRO_CLUSTER', async () => {
    const r = await ugro(
      ['--cluster', `${FIXTURES}broken-bad-ip.yaml`, 'config', 'validate', `${FIXTURES}valid.yaml`],
      { ...process.env, USER: 'alice', UGRO_CLUSTER: `${FIXTURES}broken-vram-type.yaml` },
    );
    expect(r.code).toBe(0);
  });

  it('without a file argument it validates UGRO_CLUSTER', async () => {
    const r = await ugro(['config', 'validate'], {
      ...process.env,
      USER: 'alice',
      UGRO_CLUSTER: `${FIXTURES}broken-port-out-of-range.yaml`,
    });
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      `${FIXTURES}broken-port-out-of-range.yaml:15:15: workers[0].ssh_port: must be between 1 and 65535`,
    );
  });

  it('a missing file: exit 1 and says it cannot read it', async () => {
    const r = await ugro(['config', 'validate', `${FIXTURES}does-not-exist.yaml`]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/does-not-exist\.yaml.*cannot read: ENOENT/);
  });
});

describe('ugro config show', () => {
  it('-o json: the file as read, defaults filled, webhook.secret redacted', async () => {
    const r = await ugro(['--cluster', `${FIXTURES}valid.yaml`, 'config', 'show', '-o', 'json']);
    expect(r.code).toBe(0);
    expect(r.out).not.toContain('fixture-webhook-secret-3f9a');
    const shown = JSON.parse(r.out);
    expect(shown.webhook.secret).toBe('<redacted>');
    expect(shown.workers.map((w: { name: string }) => w.name)).toEqual(['gpu1', 'gpu2']);
    expect(shown.ssh.connect_timeout_seconds).toBe(5); // a default, filled in
  });

  it('yaml (the default): secret redacted too', async () => {
    const r = await ugro(['--cluster', `${FIXTURES}valid.yaml`, 'config', 'show']);
    expect(r.code).toBe(0);
    expect(r.out).not.toContain('fixture-webhook-secret-3f9a');
    expect((parse(r.out) as { webhook: { secret: string } }).webhook.secret).toBe('<redacted>');
  });

  it('an invalid cluster file: exit 1 with file:line in the error', async () => {
    const file = `${FIXTURES}broken-duplicate-name.yaml`;
    const r = await ugro(['--cluster', file, 'config', 'show']);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toContain(`${file}:20:11: workers[1].name: duplicate host name "gpu1"`);
  });

  it('regression: ${VAR} in the cluster file is expanded from the env passed to main(), not process.env', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ugro-cli-'));
    const file = join(dir, 'cluster.yaml');
    const name = 'UGRO_TEST_ONLY_IN_INJECTED_ENV';
    expect(process.env[name]).toBeUndefined();
    writeFileSync(file, `cluster:\n  name: c\n  master: { hostname: m, ip: 10.0.0.1, user: "\${${name}}" }\n`);
    const r = await ugro(['--cluster', file, 'config', 'show', '-o', 'json'], { [name]: 'carol' });
    rmSync(dir, { recursive: true, force: true });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).cluster.master.user).toBe('carol');
  });
});
