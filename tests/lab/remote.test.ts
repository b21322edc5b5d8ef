/**
 * UGRO from your own machine (issue 17, item 4), on the lab with real sshd and the real ssh client:
 * from gpu1's network namespace, as ob, every command runs on gpu-master (the controller host)
 * over SSH, as ob. apply sends a local file that does not exist on the controller host (it is on
 * a tmpfs mounted in the client's own mount namespace), get/logs -f/cancel work, exit codes are
 * the remote ones, Ctrl-C leaves no remote command behind, and a changed host key is refused.
 *
 * The controller runs here as root on a sticky, world-writable jobs dir (like /tmp), with a copy
 * of the lab's cluster file whose key ob can read (the remote `logs` reads rank logs over SSH).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cacheFileFor } from '../../controller/cli/job-list.ts';
import {
  CLUSTER_FILE,
  job,
  labCluster,
  ROOT,
  readStatus,
  startController,
  stopController,
  waitFor,
  waitPhase,
} from './controller-harness.ts';

const cluster = labCluster();
const master = cluster.hosts.find((h) => h.name === 'gpu-master')!;
const ob = { uid: Number(run('id', ['-u', 'ob']).trim()), gid: Number(run('id', ['-g', 'ob']).trim()) };
const UGRO = `node ${join(ROOT, 'bin/ugro.mjs')}`;

let dir: string; // ob's, 0711: key, pins, contexts, sockets
let jobs: string; // root's, 1777
let ctl: ReturnType<typeof startController> | undefined;
const children: ChildProcess[] = [];

function run(cmd: string, args: string[]): string {
  return spawnSync(cmd, args, { encoding: 'utf8' }).stdout;
}

/** The client side: `ip netns exec gpu1 runuser -u ob -- env … node bin/ugro.mjs …`, with ob's config dirs. */
function clientArgv(args: string[]): string[] {
  return [
    'netns',
    'exec',
    'gpu1',
    'runuser',
    '-u',
    'ob',
    '--',
    'env',
    '-i',
    `PATH=/usr/local/bin:/usr/bin:/bin`,
    'HOME=/home/ob',
    `XDG_CONFIG_HOME=${dir}/cfg`,
    `XDG_RUNTIME_DIR=${dir}`,
    // Never sent to the controller host: if it were, the remote ugro would look there.
    `UGRO_JOBS=/nonexistent`,
    'node',
    join(ROOT, 'bin/ugro.mjs'),
    ...args,
  ];
}

function client(args: string[], stdin?: string) {
  const r = spawnSync('ip', clientArgv(args), { encoding: 'utf8', input: stdin, timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A streaming client in its own process group (a terminal's foreground job): output as it arrives. */
function clientStream(args: string[]) {
  const child = spawn('ip', clientArgv(args), { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (b) => (out += b));
  child.stderr!.on('data', (b) => (err += b));
  const done = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  return { child, out: () => out, err: () => err, done };
}

/** ob's processes on this machine (the lab shares /proc) running a remote ugro command with these words. */
function remoteUgro(...words: string[]): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (statSync(`/proc/${d}`).uid !== ob.uid) continue;
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (argv.includes('--context') && argv.includes('local') && words.every((w) => argv.includes(w)))
        out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

function spec(name: string, args: string[]): string {
  return job(name, { script: 'train.py', args, nodes: 1, hosts: ['gpu1'] });
}

const gpu1Runs = cluster.hosts.find((h) => h.name === 'gpu1')!.paths.runs;
const JOBS = ['remote-a', 'remote-b'];

/** This test's runs on gpu1 (the lab shares this filesystem and /proc): their processes ended, their dirs gone. */
function removeRuns(): void {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const env = readFileSync(`/proc/${d}/environ`, 'utf8').split('\0');
      if (env.some((v) => JOBS.some((j) => v.startsWith(`UGRO_RUN_ID=${j}-`)))) process.kill(Number(d), 'SIGKILL');
    } catch {
      /* gone, or not ours */
    }
  }
  for (const d of existsSync(gpu1Runs) ? readdirSync(gpu1Runs) : [])
    if (JOBS.some((j) => d.startsWith(`${j}.`))) rmSync(join(gpu1Runs, d), { recursive: true, force: true });
}

beforeAll(() => {
  removeRuns();
  dir = mkdtempSync('/tmp/ugro-remote-');
  chownSync(dir, ob.uid, ob.gid);
  chmodSync(dir, 0o711);
  copyFileSync(join(ROOT, '.lab/id_ed25519'), join(dir, 'key'));
  chownSync(join(dir, 'key'), ob.uid, ob.gid);
  chmodSync(join(dir, 'key'), 0o600);
  copyFileSync(join(ROOT, '.lab/known_hosts'), join(dir, 'known_hosts'));
  // A pin for gpu-master's address with another host's key: a changed host key.
  const pins = readFileSync(join(dir, 'known_hosts'), 'utf8').split('\n');
  const other = pins
    .find((l) => l.startsWith('gpu1,'))!
    .split(' ')
    .slice(1)
    .join(' ');
  writeFileSync(join(dir, 'wrong_known_hosts'), `${master.address} ${other}\n`);
  writeFileSync(
    join(dir, 'cluster.yaml'),
    readFileSync(CLUSTER_FILE, 'utf8').replace(/identity_file: .*/, `identity_file: "${join(dir, 'key')}"`),
  );
  jobs = join(dir, 'jobs');
  mkdirSync(jobs);
  chmodSync(jobs, 0o1777); // sticky + world-writable, like /tmp (store/private.ts allows it only sticky)
  const host = `ssh://ob@${master.address}:${master.port}`;
  for (const [name, pins] of [
    ['lab', 'known_hosts'],
    ['changed', 'wrong_known_hosts'],
  ]) {
    const r = client([
      'context',
      'add',
      name,
      '--host',
      host,
      '--identity',
      join(dir, 'key'),
      '--known-hosts',
      join(dir, pins),
      '--ugro',
      UGRO,
      '--cluster',
      join(dir, 'cluster.yaml'),
      '--jobs',
      jobs,
    ]);
    expect(r.code, r.err).toBe(0);
  }
  ctl = startController(jobs, [], join(dir, 'cluster.yaml'));
});

afterAll(async () => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  // A run still going is cancelled first: a stopped controller leaves training running (it re-adopts it).
  for (const name of JOBS) {
    const st = jobs ? readStatus(jobs, name) : undefined;
    if (st && !['Succeeded', 'Failed', 'Cancelled'].includes(st.phase))
      spawnSync(process.execPath, [
        ...[join(ROOT, 'bin/ugro.mjs'), '--cluster', join(dir, 'cluster.yaml'), '--jobs', jobs],
        ...['cancel', name, '--grace', '1', '--wait'],
      ]);
  }
  if (ctl) await stopController(ctl);
  removeRuns();
  // The shared connections: `ssh -O exit` on each control socket, as ob.
  const socks = join(dir, 'ugro-ssh');
  for (const s of existsSync(socks) ? readdirSync(socks) : [])
    spawnSync('runuser', [
      '-u',
      'ob',
      '--',
      'ssh',
      '-F',
      '/dev/null',
      '-o',
      `ControlPath=${join(socks, s)}`,
      '-O',
      'exit',
      'x',
    ]);
  const cache = jobs && cacheFileFor({ HOME: '/home/ob' }, jobs);
  if (cache) rmSync(cache, { force: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('ugro from gpu1 as ob, on gpu-master over ssh', () => {
  it('the lab lets ob log into gpu-master (tests/lab/lab.sh AllowUsers)', () => {
    const conf = readFileSync(join(ROOT, '.lab/hosts/gpu-master/sshd_config'), 'utf8');
    expect(conf, 'the lab predates remote use: `npm run lab -- down && npm run lab -- up`').toMatch(
      /^AllowUsers .*\bob\b/m,
    );
  });

  it("apply -f sends a local file the controller host cannot see; the spec file there is ob's", () => {
    const local = join(dir, 'only-here');
    // The file lives on a tmpfs in the client's own mount namespace: the controller host sees an empty dir.
    mkdirSync(local);
    const r = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        'gpu1',
        'unshare',
        '--mount',
        'sh',
        '-c',
        'mount -t tmpfs -o mode=0755 none "$1" && cat >"$1/job.yaml" && chown ob "$1/job.yaml" && shift && exec "$@"',
        'sh',
        local,
        ...clientArgv(['--context', 'lab', 'apply', '-f', join(local, 'job.yaml')]).slice(3),
      ],
      { encoding: 'utf8', input: spec('remote-a', ['--epochs', '1', '--steps-per-epoch', '10', '--sleep', '0.2']) },
    );
    expect(r.stderr).not.toMatch(/error/);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('trainingjob/remote-a created');
    expect(readdirSync(local)).toEqual([]); // not on this side's filesystem: it came over stdin
    const st = statSync(join(jobs, 'remote-a.yaml'));
    expect(st.uid).toBe(ob.uid);
    expect(readFileSync(join(jobs, 'remote-a.yaml'), 'utf8')).toContain('name: remote-a');
  });

  it('get jobs shows it; --mine too; a job that does not exist is exit 3 there and here', async () => {
    await waitPhase(jobs, 'remote-a', ['Running', 'Succeeded']);
    const get = client(['--context', 'lab', 'get', 'jobs']);
    expect(get.code, get.err).toBe(0);
    expect(get.out).toMatch(/^remote-a\s+(Running|Succeeded)/m);
    expect(client(['--context', 'lab', 'get', 'jobs', '--mine']).out).toMatch(/^remote-a\s/m);
    const who = client(['--context', 'lab', 'whoami', '-o', 'json']);
    expect(JSON.parse(who.out)).toMatchObject({ user: 'ob', uid: ob.uid });
    const nope = client(['--context', 'lab', 'get', 'jobs', 'nope']);
    expect(nope.code).toBe(3);
    expect(nope.err).toContain(`job nope not found in ${jobs}`);
  });

  it('logs -f streams until the job ends, exit 0', async () => {
    const logs = clientStream(['--context', 'lab', 'logs', 'remote-a', '-f']);
    expect(await logs.done, logs.err()).toBe(0);
    expect(logs.out()).toMatch(/^rank 0\/1 on gpu1/m);
    expect((await waitPhase(jobs, 'remote-a', ['Succeeded', 'Failed'])).phase).toBe('Succeeded');
  });

  it('Ctrl-C of a local logs -f (or the local ugro killed) leaves no remote command; cancel works', async () => {
    const a = client(['--context', 'lab', 'apply', '-f', '-'], spec('remote-b', ['--epochs', '100', '--sleep', '0.2']));
    expect(a.code, a.err).toBe(0);
    await waitPhase(jobs, 'remote-b', ['Running']);
    // Ctrl-C: SIGINT to the foreground process group (the local ugro and its ssh).
    const f = clientStream(['--context', 'lab', 'logs', 'remote-b', '-f']);
    await waitFor('log lines', () => /rank 0/.test(f.out()), 30_000, 50);
    await waitFor('the remote logs -f', () => remoteUgro('logs', 'remote-b').length > 0, 10_000, 50);
    process.kill(-f.child.pid!, 'SIGINT');
    await f.done;
    await waitFor('no remote logs -f left', () => remoteUgro('logs', 'remote-b').length === 0, 10_000, 50);
    // The local ugro alone killed (-9): its ssh sees stdin close, and so does the remote side.
    const w = clientStream(['--context', 'lab', 'get', 'jobs', '-w']);
    await waitFor('a watch row', () => /remote-b/.test(w.out()), 30_000, 50);
    await waitFor('the remote get -w', () => remoteUgro('get', '-w').length > 0, 10_000, 50);
    const node = run('pgrep', ['-g', String(w.child.pid), '-f', '^node .*bin/ugro.mjs'])
      .trim()
      .split('\n')[0];
    process.kill(Number(node), 'SIGKILL');
    await waitFor('no remote get -w left', () => remoteUgro('get', '-w').length === 0, 10_000, 50);
    const c = client(['--context', 'lab', 'cancel', 'remote-b', '--wait']);
    expect(c.code, c.err).toBe(0);
    expect((await waitPhase(jobs, 'remote-b', ['Cancelled'])).phase).toBe('Cancelled');
  });

  it('a changed host key is refused loudly, naming the pins and what to compare (exit 1)', () => {
    const r = client(['--context', 'changed', 'get', 'jobs']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    expect(r.err).toContain(`error: ssh to ssh://ob@${master.address} (context changed) failed`);
    expect(r.err).toContain(`is not the one pinned in ${join(dir, 'wrong_known_hosts')}`);
  });
});
