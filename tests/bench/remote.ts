/**
 * What running a command from your own machine costs (issue 17, item 4): `ugro get jobs` on a
 * jobs dir of 20 jobs, run (a) locally on the controller host, (b) remotely over a cold SSH
 * connection (a new one each time: `--persist 0`), (c) remotely over a warm one (the shared
 * connection, ControlMaster, already up). A benchmark: it prints numbers and never fails on them.
 *
 *   npm run bench:remote      (builds dist/, takes the lab lock; BENCH_REMOTE_RUNS=N, default 20)
 *
 * On the lab: the client is ob in gpu1's network namespace, the controller host gpu-master; every
 * run, local ones included, goes through the same `ip netns exec … runuser -u ob` wrapper, so the
 * differences are ssh's. The three kinds alternate run by run (round-robin), after one warm-up each.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { loadCluster } from '../../config/cluster.ts';
import { cacheFileFor } from '../../controller/cli/job-list.ts';
import { round, summarize } from './lib.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const RUNS = Math.max(3, Number(process.env.BENCH_REMOTE_RUNS ?? 20));
const cluster = loadCluster(join(ROOT, '.lab/cluster.yaml'));
const master = cluster.hosts.find((h) => h.name === 'gpu-master');
if (!master) throw new Error('the lab has no gpu-master: run `npm run lab -- up`');
const id = (flag: string) => Number(spawnSync('id', [flag, 'ob'], { encoding: 'utf8' }).stdout.trim());
const ob = { uid: id('-u'), gid: id('-g') };

const dir = mkdtempSync('/tmp/ugro-bench-remote-');
const jobs = join(dir, 'jobs');

/** `ugro ARGS` as ob in a lab host's namespace, with ob's config and socket dirs in `dir`. */
function ugro(ns: string, args: string[]): { ms: number; code: number | null; err: string } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(
    'ip',
    [
      ...['netns', 'exec', ns, 'runuser', '-u', 'ob', '--', 'env', '-i', 'PATH=/usr/local/bin:/usr/bin:/bin'],
      ...['HOME=/home/ob', `XDG_CONFIG_HOME=${dir}/cfg`, `XDG_RUNTIME_DIR=${dir}`],
      ...['node', join(ROOT, 'bin/ugro.mjs'), ...args],
    ],
    { encoding: 'utf8' },
  );
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, code: r.status, err: r.stderr };
}

function setup(): void {
  chownSync(dir, ob.uid, ob.gid);
  chmodSync(dir, 0o711);
  copyFileSync(join(ROOT, '.lab/id_ed25519'), join(dir, 'key'));
  chownSync(join(dir, 'key'), ob.uid, ob.gid);
  chmodSync(join(dir, 'key'), 0o600);
  copyFileSync(join(ROOT, '.lab/known_hosts'), join(dir, 'known_hosts'));
  mkdirSync(jobs, { mode: 0o755 });
  for (let i = 0; i < 20; i++)
    writeFileSync(
      join(jobs, `job-${i}.yaml`),
      `apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: job-${i}}\nspec: {script: train.py}\n`,
    );
  for (const [name, persist] of [
    ['warm', '60'],
    ['cold', '0'],
  ]) {
    const r = ugro('gpu1', [
      ...['context', 'add', name, '--host', `ssh://ob@${master!.address}:${master!.port}`],
      ...['--identity', join(dir, 'key'), '--known-hosts', join(dir, 'known_hosts'), '--persist', persist],
      ...['--ugro', `node ${join(ROOT, 'bin/ugro.mjs')}`, '--jobs', jobs],
    ]);
    if (r.code !== 0) throw new Error(`context add ${name}: ${r.err}`);
  }
}

function cleanup(): void {
  const socks = join(dir, 'ugro-ssh');
  let names: string[] = [];
  try {
    names = readdirSync(socks);
  } catch {
    /* none */
  }
  for (const s of names)
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
  const cache = cacheFileFor({ HOME: '/home/ob' }, jobs);
  if (cache) rmSync(cache, { force: true });
  rmSync(dir, { recursive: true, force: true });
}

const KINDS = {
  local: () => ugro('gpu-master', ['--jobs', jobs, 'get', 'jobs']),
  'remote, cold': () => ugro('gpu1', ['--context', 'cold', 'get', 'jobs']),
  'remote, warm': () => ugro('gpu1', ['--context', 'warm', 'get', 'jobs']),
};

try {
  setup();
  const times: Record<string, number[]> = Object.fromEntries(Object.keys(KINDS).map((k) => [k, []]));
  for (const [k, f] of Object.entries(KINDS)) {
    const r = f(); // warm-up: dist/ in the page cache, the warm context's master up
    if (r.code !== 0) throw new Error(`${k}: exit ${r.code}: ${r.err}`);
  }
  for (let i = 0; i < RUNS; i++)
    for (const [k, f] of Object.entries(KINDS)) {
      const r = f();
      if (r.code !== 0) throw new Error(`${k}: exit ${r.code}: ${r.err}`);
      times[k].push(r.ms);
    }
  const base = summarize(times.local).p50;
  console.log(`ugro get jobs (20 jobs), ${RUNS} runs each, wall ms (ip netns exec + runuser included in all):`);
  console.log('kind            p50     p95     min     max   added p50');
  for (const [k, xs] of Object.entries(times)) {
    const s = summarize(xs);
    const p95 = [...xs].sort((a, b) => a - b)[Math.ceil(0.95 * xs.length) - 1];
    const cells = [s.p50, p95, s.min, s.max].map((x) => String(round(x)).padStart(7)).join(' ');
    console.log(`${k.padEnd(14)} ${cells}   ${k === 'local' ? '-' : `+${round(s.p50 - base)}`}`);
  }
} finally {
  cleanup();
}
