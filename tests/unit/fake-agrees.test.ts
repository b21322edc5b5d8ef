/**
 * FakeHosts agrees with the real scripts. The host runtime's core scenarios
 * (tests/support/runtime-scenarios.ts: launch, observe while alive, a rank exits 3, metrics,
 * relaunch answers existed, gang stop, read and follow a log, a run ignoring SIGTERM killed
 * with exit 137, a waiter released when a run ends, a runner that vanished, archive, a forged
 * run dir rejected, a busy port refusing a launch, leases, script sync) run through SshBackend
 * over FakeHosts and over LocalTransport (the real scripts with sh on this machine); the two
 * transcripts, pids and times reduced to their type, must be equal. The same scenarios run over
 * SSH on the lab in tests/lab/runtime.test.ts.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { FakeHosts } from '../support/fake-hosts.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';
import { coreScenario, fakeWorld, shellWorld } from '../support/runtime-scenarios.ts';

function scriptsDir(root: string): string {
  const dir = join(root, 'deploy');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'train.py'), 'print("hi")\n');
  return dir;
}

describe.skipIf(process.platform !== 'linux')('FakeHosts agrees with the real scripts', () => {
  it('the core scenarios give the same transcript', { timeout: 60_000 }, async () => {
    const root = mkdtempSync(join(tmpdir(), 'ugro-agree-'));
    const host = localHost(join(root, 'host'), 'gpu1');
    const local = shellWorld({
      name: 'LocalTransport',
      rt: new SshBackend(new LocalTransport()),
      host,
      ctlRoot: join(root, 'ctl'),
      scriptsDir: scriptsDir(root),
      exec: (argv) =>
        new Promise((resolve) =>
          execFile(argv[0], argv.slice(1), (err, stdout, stderr) =>
            resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
          ),
        ),
      listen: () =>
        new Promise((resolve) => {
          const srv = createServer();
          srv.listen(0, '127.0.0.1', () => {
            const port = (srv.address() as { port: number }).port;
            resolve({ port, close: () => new Promise<void>((r) => srv.close(() => r())) });
          });
        }),
    });
    const fake = new FakeHosts([host]);
    const fw = fakeWorld(fake, new SshBackend(fake), host, scriptsDir(root));

    const real = await coreScenario(local);
    const modelled = await coreScenario(fw);
    // Step by step, so a difference names its step.
    expect(modelled.map(([s]) => s)).toEqual(real.map(([s]) => s));
    for (const [i, [name, result]] of real.entries()) expect(modelled[i][1], name).toEqual(result);
  });
});
