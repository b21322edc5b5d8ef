/**
 * `ugro doctor` over SSH: runs the checks on the hosts and hands back what they answered, raw; the
 * pure ../doctor.ts reads and judges it. In order: the health probe (probe.ts) and doctor.sh on every
 * host at once; a listener on every host that answered (doctor-listen.sh, on the first free port of
 * the rendezvous range) and, from every host, a connect to every other one (doctor-connect.sh): each
 * ordered pair over the real network. Then one torch.distributed group over the hosts that all reach
 * each other (doctor-allreduce.sh), timing an all-reduce per pair. Everything is bounded: the
 * listeners and ranks end when their SSH channel closes (aborted here on time-out), and by their own
 * deadline on the host.
 */
import { randomBytes } from 'node:crypto';
import type { Cluster, Host } from '../../../config/cluster.ts';
import { InternalError } from '../../../config/errors.ts';
import type { NodeHealth } from '../health.ts';
import { field, parseRecords } from '../records.ts';
import type { HostConnection } from './pool.ts';
import { probeHost } from './probe.ts';
import { type RuntimeScripts, runtimeScripts } from './scripts.ts';

export interface DoctorDeps {
  connection: (host: string) => HostConnection;
  scripts?: RuntimeScripts;
  now?: () => number;
}

export interface DoctorOptions {
  /** Run the all-reduce test (default true). */
  allreduce?: boolean;
  /** Default: nccl when every host of the group has a GPU and a CUDA build of torch, else gloo. */
  backend?: 'gloo' | 'nccl';
  /** How many ports above the base the listeners and rank 0 may take (default 16). */
  portSpan?: number;
  /** One connect's limit (default 3000 ms). */
  connectTimeoutMs?: number;
  /** The all-reduce's payload (default 4 MiB on gloo, 64 MiB on NCCL) and repetitions (default 5). */
  allreduceBytes?: number;
  iterations?: number;
  /** The all-reduce group's whole limit, torch's import included (default 30 s). */
  allreduceTimeoutS?: number;
}

/** What one exec answered (`error`: it did not run to the end: ssh failed, or it was cut off). */
export interface RawExec {
  stdout: string;
  /** Its last lines (a python traceback's end says what went wrong). */
  stderr?: string;
  code: number | null;
  ms: number;
  error?: string;
}

export interface DoctorRaw {
  /** The rendezvous host (the master if chosen, else the first host) and the base of its port range. */
  rdzvHost: string;
  basePort: number;
  hosts: { name: string; health: NodeHealth; doctor: RawExec }[];
  /** Per host that answered: its listener's first answer (@@listen port=P, or @@error). */
  listen: Record<string, RawExec>;
  /** Per host that answered: its connects to every other host. */
  connect: Record<string, RawExec>;
  /** The address and port each host was tried at (its listener's, or the base port where it has none). */
  targets: Record<string, { address: string; port: number; listening: boolean }>;
  allreduce?: {
    backend: 'gloo' | 'nccl';
    /** Host names by rank. */
    ranks: string[];
    /** Pairs of ranks timed. */
    pairs: [number, number][];
    outputs: { host: string; exec: RawExec }[];
    ms: number;
  };
  /** Why no all-reduce ran (fewer than two hosts reach each other, or --no-allreduce). */
  allreduceSkipped?: string;
  ms: number;
}

const errText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** Run a sent script; never throws (an SSH failure is the answer's `error`). */
async function run(
  conn: HostConnection,
  text: string,
  name: string,
  args: string[],
  o: { timeoutMs: number; signal?: AbortSignal; keepStdinOpen?: boolean; onStdout?: (b: Buffer) => void },
  now: () => number,
): Promise<RawExec> {
  const t0 = now();
  try {
    const r = await conn.exec(['sh', '-c', text, `ugro-${name}`, ...args], o);
    const stderr = r.stderr.trim().split('\n').slice(-3).join('\n').slice(-600);
    return { stdout: r.stdout, code: r.code, ms: now() - t0, ...(stderr ? { stderr } : {}) };
  } catch (e) {
    return { stdout: '', code: null, ms: now() - t0, error: errText(e) };
  }
}

/**
 * Start a script that answers once and then keeps running (a listener, rank 0 of the group): resolves
 * with its output so far when `ready` says so, or when it ends; `done` is the whole exec.
 */
function startLong(
  conn: HostConnection,
  text: string,
  name: string,
  args: string[],
  ready: (out: string) => boolean,
  timeoutMs: number,
  signal: AbortSignal,
  now: () => number,
): { first: Promise<string>; done: Promise<RawExec> } {
  let out = '';
  let answer!: (s: string) => void;
  const first = new Promise<string>((r) => {
    answer = r;
  });
  const done = run(
    conn,
    text,
    name,
    args,
    {
      timeoutMs,
      signal,
      keepStdinOpen: true,
      onStdout: (b) => {
        out += b.toString('utf8');
        if (ready(out)) answer(out);
      },
    },
    now,
  );
  void done.then((r) => answer(r.error ? '' : r.stdout));
  return { first, done };
}

/** The largest set of hosts (in order) in which every ordered pair connected: drop the worst first. */
export function reachableGroup(names: string[], ok: (a: string, b: string) => boolean): string[] {
  const group = [...names];
  for (;;) {
    const bad = new Map<string, number>();
    for (const a of group)
      for (const b of group)
        if (a !== b && !ok(a, b)) {
          bad.set(a, (bad.get(a) ?? 0) + 1);
          bad.set(b, (bad.get(b) ?? 0) + 1);
        }
    if (!bad.size) return group;
    const worst = [...bad].sort((x, y) => y[1] - x[1])[0][0];
    group.splice(group.indexOf(worst), 1);
  }
}

export interface PairRoundOptions {
  /** The listeners take the first free port of [basePort, basePort + span). */
  basePort: number;
  span: number;
  /** One connect's limit. */
  connectTimeoutMs: number;
  /** A listener's own deadline on its host (s), and its exec's limit here (ms). */
  deadlineS: number;
  listenTimeoutMs: number;
  /** Each listener ends by itself once every other host of `up` reached it (a job's preflight). */
  expectPeers?: boolean;
}

/**
 * One round of the reachability test: a listener on every host of `up`, then from each of them a
 * connect to every other host of `hosts` (a host not in `up` is tried at the base port with no
 * listener). Every listener has ended, or its channel is closed, when this resolves.
 */
export async function pairRounds(
  hosts: Host[],
  up: Host[],
  deps: DoctorDeps,
  o: PairRoundOptions,
): Promise<Pick<DoctorRaw, 'listen' | 'connect' | 'targets'>> {
  const now = deps.now ?? (() => performance.now());
  const scripts = deps.scripts ?? runtimeScripts();
  const conn = (h: Host) => deps.connection(h.name);
  const token = randomBytes(12).toString('hex');
  const stopListeners = new AbortController();
  const expect = (h: Host) => (o.expectPeers ? [String(up.filter((p) => p.name !== h.name).length)] : []);
  const listeners = up.map((h) => ({
    h,
    ...startLong(
      conn(h),
      scripts.text('doctor-listen'),
      'doctor-listen',
      [h.python, String(o.basePort), String(o.span), token, String(o.deadlineS), ...expect(h)],
      (s) => /@@(listen|error)\n[\s\S]*@@end/.test(s),
      o.listenTimeoutMs,
      stopListeners.signal,
      now,
    ),
  }));
  const listen: Record<string, RawExec> = {};
  const targets: DoctorRaw['targets'] = {};
  for (const h of hosts) targets[h.name] = { address: h.address, port: o.basePort, listening: false };
  const connect: Record<string, RawExec> = {};
  try {
    await Promise.all(
      listeners.map(async (l) => {
        const out = await l.first;
        listen[l.h.name] = { stdout: out, code: 0, ms: 0 };
        const b = parseRecords(out).find((x) => x.kind === 'listen');
        const p = b && Number(field(b, 'port'));
        if (p && Number.isInteger(p)) targets[l.h.name] = { address: l.h.address, port: p, listening: true };
      }),
    );
    await Promise.all(
      up.map(async (h) => {
        const peers = hosts
          .filter((p) => p.name !== h.name)
          .flatMap((p) => [p.name, targets[p.name].address, String(targets[p.name].port)]);
        if (!peers.length) return;
        connect[h.name] = await run(
          conn(h),
          scripts.text('doctor-connect'),
          'doctor-connect',
          [h.python, String(o.connectTimeoutMs), token, ...peers],
          { timeoutMs: o.connectTimeoutMs + 15_000 },
          now,
        );
      }),
    );
    if (o.expectPeers) {
      // A listener every peer reached ends by itself: wait for that (its port is then free for the
      // launch), rather than close its channel while it may still hold the port.
      const reached = (h: Host) =>
        up.every(
          (p) =>
            p.name === h.name ||
            parseRecords(connect[p.name]?.stdout ?? '').some(
              (b) => b.kind === 'connect' && field(b, 'peer') === h.name && field(b, 'result') === 'ok',
            ),
        );
      await Promise.all(listeners.filter((l) => reached(l.h)).map((l) => l.done));
    }
  } finally {
    // The others end when their channel closes (or by their own deadline on the host).
    stopListeners.abort();
    await Promise.all(listeners.map((l) => l.done));
  }
  return { listen, connect, targets };
}

export async function runDoctor(cluster: Cluster, hosts: Host[], deps: DoctorDeps, o: DoctorOptions = {}) {
  const now = deps.now ?? (() => performance.now());
  const scripts = deps.scripts ?? runtimeScripts();
  const t0 = now();
  if (!hosts.length) throw new InternalError('doctor: no hosts');
  const rdzv = hosts.find((h) => h.name === cluster.master.name) ?? hosts[0];
  const basePort = cluster.communication.masterPort;
  const span = o.portSpan ?? 16;
  const conn = (h: Host) => deps.connection(h.name);

  // 1. Every host at once: the health probe and doctor.sh (side by side on one connection).
  const hostsOut = await Promise.all(
    hosts.map(async (h) => {
      const [health, doctor] = await Promise.all([
        probeHost(cluster, h, { connection: deps.connection, scripts }),
        run(
          conn(h),
          scripts.text('doctor'),
          'doctor',
          [rdzv.address, h.paths.checkpoints],
          { timeoutMs: h.ssh.connectTimeoutMs + 20_000 },
          now,
        ),
      ]);
      return { name: h.name, health, doctor };
    }),
  );
  const up = hosts.filter((h) => {
    const d = hostsOut.find((x) => x.name === h.name)!.doctor;
    return !d.error && d.code === 0;
  });

  // 2. A listener on every host that answered, then every host's connects to all the others.
  const { listen, connect, targets } = await pairRounds(hosts, up, deps, {
    basePort,
    span,
    connectTimeoutMs: o.connectTimeoutMs ?? 3000,
    deadlineS: 30,
    listenTimeoutMs: 40_000,
  });

  const raw: DoctorRaw = { rdzvHost: rdzv.name, basePort, hosts: hostsOut, listen, connect, targets, ms: 0 };

  // 3. One group over the hosts that all reach each other: an all-reduce per pair.
  const okPair = (a: string, b: string) => {
    const blocks = parseRecords(connect[a]?.stdout ?? '').filter((x) => x.kind === 'connect');
    return blocks.some((x) => field(x, 'peer') === b && field(x, 'result') === 'ok') && targets[b].listening;
  };
  const group = reachableGroup(
    up.map((h) => h.name),
    okPair,
  );
  if (o.allreduce === false) raw.allreduceSkipped = 'not run (--no-allreduce)';
  else if (group.length < 2) raw.allreduceSkipped = 'fewer than two hosts reach each other';
  else raw.allreduce = await allReduce(hosts, group, raw, deps, o, scripts, now);
  raw.ms = now() - t0;
  return raw;
}

async function allReduce(
  hosts: Host[],
  group: string[],
  raw: DoctorRaw,
  deps: DoctorDeps,
  o: DoctorOptions,
  scripts: RuntimeScripts,
  now: () => number,
): Promise<NonNullable<DoctorRaw['allreduce']>> {
  const t0 = now();
  // Rank 0 on the rendezvous host when it takes part (its address is the one the group meets at).
  const ranks = [...group].sort((a, b) => Number(b === raw.rdzvHost) - Number(a === raw.rdzvHost));
  const hostOf = (n: string) => hosts.find((h) => h.name === n)!;
  const health = (n: string) => raw.hosts.find((h) => h.name === n)!.health;
  const gpuReady = ranks.every((n) => health(n).gpus.length > 0 && (health(n).torch?.cuda ?? 'none') !== 'none');
  const backend = o.backend ?? (gpuReady ? 'nccl' : 'gloo');
  const bytes = o.allreduceBytes ?? (backend === 'nccl' ? 64 << 20 : 4 << 20);
  const iters = o.iterations ?? 5;
  const tmo = o.allreduceTimeoutS ?? 30;
  const pairs: [number, number][] = [];
  for (let i = 0; i < ranks.length; i++) for (let j = i + 1; j < ranks.length; j++) pairs.push([i, j]);
  const pairsArg = pairs.map(([i, j]) => `${i}-${j}`).join(',');
  const master = hostOf(ranks[0]);
  const stop = new AbortController();
  const args = (n: string, port: number, spanArg: number, rank: number) => [
    hostOf(n).python,
    backend,
    master.address,
    String(port),
    String(spanArg),
    String(rank),
    String(ranks.length),
    String(bytes),
    String(iters),
    String(tmo),
    pairsArg,
  ];
  const text = scripts.text('doctor-allreduce');
  const limitMs = (tmo + 10) * 1000;
  // A rank that fails ends the others at once: they would only wait for it until their deadline.
  const watch = (p: Promise<RawExec>) =>
    p.then((r) => {
      if (r.error || r.code !== 0) stop.abort();
      return r;
    });
  const r0 = startLong(
    deps.connection(master.name),
    text,
    'doctor-allreduce',
    args(master.name, raw.basePort, o.portSpan ?? 16, 0),
    (s) => /@@(port|error)\n[\s\S]*?@@end/.test(s),
    limitMs,
    stop.signal,
    now,
  );
  const done0 = watch(r0.done);
  const first = await r0.first;
  const pb = parseRecords(first).find((b) => b.kind === 'port');
  const port = pb ? Number(field(pb, 'port')) : Number.NaN;
  const rest = Number.isInteger(port)
    ? ranks
        .slice(1)
        .map((n, i) =>
          watch(
            run(
              deps.connection(n),
              text,
              'doctor-allreduce',
              args(n, port, 0, i + 1),
              { timeoutMs: limitMs, signal: stop.signal, keepStdinOpen: true },
              now,
            ),
          ),
        )
    : [];
  if (!rest.length) stop.abort();
  const outs = await Promise.all([done0, ...rest]);
  return {
    backend,
    ranks,
    pairs,
    outputs: outs.map((exec, i) => ({ host: ranks[i], exec })),
    ms: now() - t0,
  };
}
