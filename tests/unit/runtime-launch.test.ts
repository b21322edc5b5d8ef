/**
 * launch.sh, the real script on this machine (LocalTransport): the job's env reaches only the
 * training process (a job's PATH or LD_PRELOAD cannot swap the tools launch.sh runs), a busy
 * rendezvous port refuses the launch before anything exists (ss, or /proc/net/tcp without it),
 * launches are idempotent, the lock is handed to the runner, and SshBackend refuses requests
 * observe would later reject.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { LaunchRequest } from '../../controller/backends/api.ts';
import { HostError } from '../../controller/backends/errors.ts';
import { SshBackend } from '../../controller/backends/ssh/backend.ts';
import { LocalTransport, localHost } from '../support/local-transport.ts';
import { runOf } from '../support/run-fixtures.ts';

const tmp = () => mkdtempSync(join(tmpdir(), 'ugro-launch-'));
const which = (tool: string) => execFileSync('sh', ['-c', 'command -v "$1"', 'x', tool], { encoding: 'utf8' }).trim();
const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});
function listen(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    servers.push(srv);
    srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port));
  });
}
function request(
  host: string,
  job: string,
  argv: string[],
  over: Partial<LaunchRequest> = {},
  attempt = 1,
): LaunchRequest {
  const r = runOf(host, job, 'abcd1234', attempt);
  return {
    dir: r.dir,
    rdzvAddr: '127.0.0.1',
    meta: r.meta,
    argv,
    ugroEnv: { UGRO_RUN_ID: r.runId },
    jobEnv: {},
    ...over,
  };
}

describe.skipIf(process.platform !== 'linux')('the job env reaches the training process only', () => {
  /** A PATH dir whose flock, setsid, ip, date, … note each call in `calls`, then run the real tool. */
  function fakeTools(root: string): { bin: string; calls: string } {
    const bin = join(root, 'fakebin');
    const calls = join(root, 'calls');
    mkdirSync(bin);
    for (const t of ['flock', 'setsid', 'ip', 'date', 'mkdir', 'mv', 'chmod', 'awk', 'env', 'ss', 'sort', 'grep']) {
      writeFileSync(join(bin, t), `#!/bin/sh\necho "${t}" >>'${calls}'\nexec '${which(t)}' "$@"\n`);
      chmodSync(join(bin, t), 0o755);
    }
    return { bin, calls };
  }

  it("a job's PATH and LD_PRELOAD change nothing launch.sh runs, and its training process gets them", async () => {
    const root = tmp();
    const host = localHost(join(root, 'host'));
    const { bin, calls } = fakeTools(root);
    const path = `${bin}:${process.env.PATH}`;
    // The stand-ins are live: with that PATH in launch.sh's own environment (as the old launch
    // ran with the job's env), every one of them is called.
    const old = new SshBackend(new LocalTransport({ env: { ...process.env, PATH: path } }));
    const o = request(host.name, 'old', ['true']);
    await old.launch(host, { ...o, checkPort: 1 });
    await old.wait(host, o.dir, new AbortController().signal);
    expect(readFileSync(calls, 'utf8').split('\n')).toEqual(expect.arrayContaining(['flock', 'setsid', 'ip', 'date']));
    execFileSync('rm', ['-f', calls]);

    const rt = new SshBackend(new LocalTransport());
    const req = request(
      host.name,
      'job',
      ['sh', '-c', 'printf "%s\\n" "$PATH" "$LD_PRELOAD" "$GREETING" "$UGRO_RUN_ID" >"$UGRO_RUN_DIR/seen"'],
      {
        jobEnv: {
          PATH: path,
          LD_PRELOAD: '/nonexistent/ugro-preload.so',
          GREETING: 'hello world',
          UGRO_RUN_ID: 'forged',
        },
        checkPort: 1,
      },
    );
    await rt.launch(host, req);
    await rt.wait(host, req.dir, new AbortController().signal);
    expect(existsSync(calls)).toBe(false);
    const seen = readFileSync(join(host.paths.runs, req.dir, 'seen'), 'utf8').split('\n');
    expect(seen.slice(0, 4)).toEqual([path, '/nonexistent/ugro-preload.so', 'hello world', req.meta.runId]);
    expect((await rt.observe(host, 'job')).parts[0]).toMatchObject({ alive: false, exitCode: 0 });
  });

  it("UGRO's variables are in the runner's environment (the stop marker), the job's are not", async () => {
    const host = localHost(tmp());
    const rt = new SshBackend(new LocalTransport());
    const req = request(host.name, 'envs', ['sleep', '30'], { jobEnv: { JOB_ONLY: '1' } });
    const { pid } = await rt.launch(host, req);
    // The runner's pid is written by the shell that is about to exec it: until that exec is done,
    // /proc/PID/environ can read empty (seen once under load). Read until it is not, 5 s at most.
    let env: string[] = [];
    for (const until = Date.now() + 5000; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
      env = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
      if (env.some((e) => e.startsWith('UGRO_RUN_ID='))) break;
    }
    expect(env).toContain(`UGRO_RUN_ID=${req.meta.runId}`);
    expect(env).toContain(`UGRO_RUN_DIR=${join(host.paths.runs, req.dir)}`);
    expect(env.some((e) => e.startsWith('JOB_ONLY='))).toBe(false);
    await rt.stop(host, { dir: req.dir, runId: req.meta.runId, graceSeconds: 5, reason: 'cancelled' });
  });
});

describe.skipIf(process.platform !== 'linux')('a busy rendezvous port refuses the launch', () => {
  it('port-busy (HostError kind) and nothing created; a free port launches', async () => {
    const host = localHost(tmp());
    const rt = new SshBackend(new LocalTransport());
    const port = await listen();
    const req = request(host.name, 'busy', ['true'], { checkPort: port });
    const err = await rt.launch(host, req).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HostError);
    expect((err as HostError).kind).toBe('port-busy');
    expect((err as HostError).message).toContain(`port ${port} is already listening`);
    expect(existsSync(join(host.paths.runs, req.dir))).toBe(false);
    for (const s of servers.splice(0)) s.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(await rt.launch(host, req)).toMatchObject({ existed: false });
  });

  it('without ss, /proc/net/tcp and tcp6 tell the same', async () => {
    const root = tmp();
    const host = localHost(join(root, 'host'));
    const bin = join(root, 'bin');
    mkdirSync(bin);
    const tools = ['sh', 'awk', 'cat', 'sort', 'grep', 'sed', 'tr', 'date', 'mkdir', 'mv', 'chmod', 'flock', 'setsid'];
    for (const t of [...tools, 'ip', 'head', 'tail', 'wc', 'env', 'sleep', 'rm', 'true'])
      symlinkSync(which(t), join(bin, t));
    const port = await listen();
    const noSs = new SshBackend(new LocalTransport({ env: { PATH: bin } }));
    const withSs = new SshBackend(new LocalTransport());
    const ports = await noSs.listeningPorts(host);
    expect(ports.has(port)).toBe(true);
    expect(ports).toEqual(await withSs.listeningPorts(host));
    const err = await noSs.launch(host, request(host.name, 'busy', ['true'], { checkPort: port })).catch((e) => e);
    expect((err as HostError).kind).toBe('port-busy');
  });
});

describe.skipIf(process.platform !== 'linux')('idempotence and the lock handoff', () => {
  it('a relaunch answers existed with the same pid; concurrent launches start one runner', async () => {
    const host = localHost(tmp());
    const rt = new SshBackend(new LocalTransport());
    const req = request(host.name, 'idem', ['sleep', '30']);
    const all = await Promise.all([1, 2, 3, 4].map(() => rt.launch(host, req)));
    expect(new Set(all.map((r) => r.pid)).size).toBe(1);
    expect(all.filter((r) => !r.existed)).toHaveLength(1);
    expect(await rt.launch(host, req)).toEqual({ pid: all[0].pid, existed: true });
    await rt.stop(host, { dir: req.dir, runId: req.meta.runId, graceSeconds: 5, reason: 'cancelled' });
  });

  it('wait right after launch blocks until the run ends (5 launches)', async () => {
    const host = localHost(tmp());
    const rt = new SshBackend(new LocalTransport());
    for (let i = 1; i <= 5; i++) {
      const r = request(host.name, 'lock', ['sh', '-c', 'sleep 0.4; exit 7'], {}, i);
      const t0 = Date.now();
      await rt.launch(host, r);
      await rt.wait(host, r.dir, new AbortController().signal);
      expect(Date.now() - t0, `launch ${i}`).toBeGreaterThanOrEqual(350);
      expect((await rt.observe(host, 'lock')).parts.find((p) => p.dir === r.dir)?.exitCode).toBe(7);
    }
  });

  it('a run dir whose lock a pid-less runner holds is refused, and nothing is written to it', async () => {
    const host = localHost(tmp());
    const rt = new SshBackend(new LocalTransport());
    const req = request(host.name, 'held', ['true']);
    const runDir = join(host.paths.runs, req.dir);
    mkdirSync(runDir, { recursive: true });
    const holder = spawn('flock', [join(runDir, 'lock'), 'sleep', '5'], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 200));
      await expect(rt.launch(host, req)).rejects.toThrow(/holds its lock but wrote no pid/);
      expect(readdirSync(runDir)).toEqual(['lock']);
    } finally {
      holder.kill();
    }
  });
});

describe.skipIf(process.platform !== 'linux')('requests observe would reject are never launched', () => {
  it('meta for another dir, host or job; argv[0] with "="; bad env names; a non-port: config errors', async () => {
    const host = localHost(tmp());
    const tr = new LocalTransport();
    const rt = new SshBackend(tr);
    const base = request(host.name, 'ok', ['true']);
    for (const req of [
      { ...base, dir: 'other.abcd1234.1' },
      { ...base, meta: { ...base.meta, host: 'elsewhere', hosts: ['elsewhere'] } },
      { ...base, meta: { ...base.meta, job: '../../x' } },
      { ...base, dir: '../x.abcd1234.1' },
      { ...base, argv: ['A=1', 'true'] },
      { ...base, argv: [] },
      { ...base, jobEnv: { 'BAD NAME': '1' } },
      { ...base, ugroEnv: { '1X': '1' } },
      { ...base, checkPort: 70000 },
      { ...base, argv: ['echo', 'nul\0byte'] },
    ]) {
      const err = await rt.launch(host, req).catch((e: unknown) => e);
      expect(err, JSON.stringify(req).slice(0, 200)).toBeInstanceOf(HostError);
      expect((err as HostError).kind).toBe('config');
    }
    expect(tr.calls).toEqual([]);
  });

  it('launch.sh itself refuses malformed arguments with exit 2', async () => {
    const host = localHost(tmp());
    const tr = new LocalTransport();
    const dir = join(host.paths.runs, 'x.abcd1234.1');
    for (const args of [
      [dir, '127.0.0.1', '', 'RANK', '{}', 'notanassignment', '--', 'true'],
      [dir, '127.0.0.1', '', 'RANK', '{}', 'A-B=1', '--', 'true'],
      [dir, '127.0.0.1', '', 'RANK', '{}', 'A=1', 'true'],
      [dir, '127.0.0.1', 'x', 'RANK', '{}', '--', 'true'],
      [dir, '127.0.0.1', '', 'RANK', '{}', '--'],
    ]) {
      const res = await tr.sh(host, 'launch', args);
      expect(res.code, args.join(' ')).toBe(2);
      expect(res.stdout).toMatch(/^@@error\nwhy=/);
    }
    expect(existsSync(dir)).toBe(false);
  });
});
