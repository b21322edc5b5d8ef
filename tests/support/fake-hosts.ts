/**
 * Test stand-in for hosts: FakeHosts is an in-memory model of UGRO's hosts behind the
 * HostTransport interface, for unit tests of the controller without SSH or processes. It keeps
 * what the scripts keep, the way they keep it: run dirs as files (meta.json, pid, starttime,
 * launched_at, finished_at, exit_code, cancelled, ranks, rank-N.exit, rank-N.log,
 * metrics.jsonl, torchrun.log), a process table (the runner's pid and start time, ranks, the
 * UGRO_RUN_ID marker), leases, listening ports and the scripts marker. It answers
 * `run(host, script, args)` in the scripts' exact output format, with their argument checks and
 * exit codes, so SshBackend's real parsing is exercised. tests/unit/fake-agrees.test.ts runs the
 * same scenarios over this and over the real scripts (LocalTransport) and compares.
 *
 * Time comes from the injected clock (`now`, ms); a stop never waits (a run that ignores TERM is
 * killed at once, as after its grace). Every call is recorded in `calls`.
 *
 * Test controls (HOST is a host name, DIR a run dir name under that host's paths.runs):
 *   setReachable(HOST, false|true)   unreachable: run/upload reject with HostError 'timeout' (and
 *                                    so do pending waits and follows), probe answers NotReady
 *   setHealth(HOST, FakeHealth)      what probe finds (GPUs, nvidia-smi absent/failing, torch,
 *                                    free disk); judged by health's real `judge`
 *   listen(HOST, port) / unlisten    a TCP port something listens on (ports.sh, launch's check)
 *   failNextLaunches(HOST, n, msg)   the next n launches there fail (exit 1) with msg
 *   startRanks(HOST, DIR, ranks)     rank.sh started these ranks (a count, or {rank, localRank})
 *   endRank(HOST, DIR, rank, code, log?)  one rank exited (its log lines, if given, written first)
 *   endRun(HOST, DIR, code, rankCodes?)   torchrun exited with code; ranks still running exit
 *                                    with rankCodes[rank] ?? code; the runner records it and ends
 *   vanish(HOST, DIR)                the runner dies without recording an exit code
 *   onTerm(HOST, DIR, {ignore?, exitCode?})  what a stop's SIGTERM does: by default the run exits
 *                                    143 (ranks too); ignore: it is SIGKILLed after the grace and
 *                                    nothing is recorded (stop then writes 137)
 *   writeRunDir(HOST, DIR, files)    raw files in a run dir (hostile ones too); any name
 *   writeMetrics(HOST, DIR, m)       append a metrics.jsonl line (an object, or a raw string)
 *   appendLog(HOST, DIR, rank, text) append to rank-N.log (a follow-log streams it)
 *   beat(HOST, DIR, rank)            the rank touched its heartbeat file (rank.sh creates it at start)
 *   stopRank(HOST, DIR, rank)        the rank's process is stopped (SIGSTOP): its state letter is T
 *   writeCheckpoint(HOST, CKPT_DIR, name, bytes)  a complete checkpoint: NAME.pt, then `latest`
 * lastHeard(HOST) is the clock while reachable, frozen at the moment it became unreachable;
 * reach() and copyFile() fail for an unreachable host.
 * Inspection: readFile(HOST, path), files(HOST, prefix), launchOf(HOST, DIR) (argv and env a
 * launch got), isAlive(HOST, DIR), calls.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { Cluster, Host } from '../../config/cluster.ts';
import { STOP_REASONS } from '../../controller/api/run.ts';
import { HostError } from '../../controller/backends/errors.ts';
import { type GpuInfo, judge, type NodeHealth, type ProbeFacts } from '../../controller/backends/health.ts';
import type { ExecResult } from '../../controller/backends/ssh/pool.ts';
import type { HostTransport, RunScriptOptions, RuntimeScript } from '../../controller/backends/ssh/transport.ts';

export interface FakeCall {
  host: string;
  op: 'run' | 'upload' | 'probe' | 'reach' | 'copy';
  script?: RuntimeScript;
  args?: string[];
  atMs: number;
}

export interface FakeHealth {
  gpus?: GpuInfo[] | 'absent' | { failing: string };
  torch?: { version: string; cuda: string } | null;
  diskFreeGiB?: number;
  clockOffsetMs?: number;
}

export interface FakeLaunch {
  dir: string;
  rdzvAddr: string;
  checkPort?: number;
  ugroEnv: Record<string, string>;
  jobEnv: Record<string, string>;
  argv: string[];
}

interface FakeFile {
  data: Buffer;
  mtimeMs: number;
}

interface FakeProc {
  pid: number;
  starttime: number;
  alive: boolean;
  /** UGRO_RUN_ID in its environment. */
  marker?: string;
  /** Its state letter in /proc/PID/stat. */
  state?: string;
}

interface FakeRun {
  runDir: string;
  runner: FakeProc;
  ranks: Map<number, FakeProc>;
  term: { ignore: boolean; exitCode: number };
  launch: FakeLaunch;
}

interface Pending {
  /** Settles the call when its run's runner is gone. */
  onRunEnd?: (runDir: string) => void;
  /** A log file grew. */
  onAppend?: (path: string) => void;
  /** The host became unreachable. */
  onCut: (e: HostError) => void;
}

class FakeHost {
  readonly files = new Map<string, FakeFile>();
  readonly dirs = new Set<string>(['/']);
  readonly procs = new Map<number, FakeProc>();
  readonly runs = new Map<string, FakeRun>();
  readonly ports = new Set<number>();
  readonly pending = new Set<Pending>();
  reachable = true;
  /** When it last answered (while reachable: now). */
  lastHeard?: number;
  health: FakeHealth = {};
  failLaunches = { n: 0, message: '' };
  nextPid = 4000;
  nextStart = 100_000;

  constructor(readonly host: Host) {}
}

const ok = (stdout: string, code: number | null = 0, stderr = ''): ExecResult => ({
  code,
  signal: null,
  stdout,
  stderr,
  durationMs: 0,
});
const isUint = (s: string | undefined): s is string => !!s && /^\d{1,18}$/.test(s);
const ENV_WORD = /^[A-Za-z_][A-Za-z0-9_]*=/;
const REJECTED_WHY = 'directory name has bytes outside [a-z0-9.-] or starts with -';

/** `@@error` as ugro_fail prints it (one line), with the message on stderr. */
function fail(code: number, message: string): ExecResult {
  const m = message.replace(/[\n\r]/g, ' ');
  return ok(`@@error\nwhy=${m}\n@@end\n`, code, `ugro: ${m}\n`);
}

/** Lines as awk sees them: a last line without a newline still counts. */
function linesOf(b: Buffer): string[] {
  const t = b.toString('utf8');
  if (!t) return [];
  const ls = t.split('\n');
  if (ls[ls.length - 1] === '') ls.pop();
  return ls;
}
/** ugro_lines PREFIX MAX */
const prefixed = (lines: string[], prefix: string, max = 0) =>
  lines.map((l) => `${prefix}${max > 0 ? l.slice(0, max) : l}\n`).join('');
/** `tail -c BYTES | tail -n N` */
const tailLines = (b: Buffer, bytes: number, n: number) => linesOf(b.subarray(Math.max(0, b.length - bytes))).slice(-n);

export class FakeHosts implements HostTransport {
  readonly calls: FakeCall[] = [];
  private readonly hosts = new Map<string, FakeHost>();
  private readonly now: () => number;
  private readonly cluster: Pick<Cluster, 'environment' | 'health'>;

  constructor(hosts: Host[], opts: { now?: () => number; cluster?: Pick<Cluster, 'environment' | 'health'> } = {}) {
    for (const h of hosts) this.hosts.set(h.name, new FakeHost(h));
    this.now = opts.now ?? (() => Date.now());
    this.cluster = opts.cluster ?? {
      environment: { min_driver_version: '525.60.13' } as Cluster['environment'],
      health: { maxClockOffsetMs: 2000, minFreeDiskGb: 5 },
    };
  }

  // ---- HostTransport -------------------------------------------------------------------------

  async run(
    host: Host,
    script: RuntimeScript,
    args: readonly string[],
    opts: RunScriptOptions = {},
  ): Promise<ExecResult> {
    const h = this.hostOf(host.name);
    this.calls.push({ host: host.name, op: 'run', script, args: [...args], atMs: this.now() });
    if (!h.reachable) throw this.unreachable(h);
    const a = [...args];
    switch (script) {
      case 'launch':
        return this.launchSh(h, a);
      case 'observe':
        return this.observeSh(h, a);
      case 'stop':
        return this.stopSh(h, a);
      case 'wait':
        return this.waitSh(h, a, opts);
      case 'archive':
        return this.archiveSh(h, a);
      case 'lease':
        return this.leaseSh(h, a);
      case 'ports':
        return ok(
          `@@ports\n${[...h.ports]
            .sort((x, y) => x - y)
            .map((p) => `port=${p}\n`)
            .join('')}@@end\n`,
        );
      case 'scripts-hash':
        return this.scriptsHashSh(h, a);
      case 'read-log':
        return this.readLogSh(h, a);
      case 'follow-log':
        return this.followLogSh(h, a, opts);
      case 'checksum':
        return this.checksumSh(h, a);
      case 'metrics':
        return this.metricsSh(h, a);
      case 'progress':
        return this.progressSh(h, a);
      case 'checkpoints':
        return this.checkpointsSh(h, a);
    }
  }

  lastHeard(host: Host): number | undefined {
    const h = this.hostOf(host.name);
    return h.reachable ? this.now() : h.lastHeard;
  }

  async reach(host: Host): Promise<void> {
    const h = this.hostOf(host.name);
    this.calls.push({ host: host.name, op: 'reach', atMs: this.now() });
    if (!h.reachable) throw this.unreachable(h);
  }

  async copyFile(
    from: Host,
    fromPath: string,
    to: Host,
    toPath: string,
    onProgress?: (bytes: number) => void,
  ): Promise<{ bytes: number; sha256: string }> {
    const src = this.hostOf(from.name);
    const dst = this.hostOf(to.name);
    this.calls.push({ host: to.name, op: 'copy', args: [from.name, fromPath, toPath], atMs: this.now() });
    if (!src.reachable) throw this.unreachable(src);
    if (!dst.reachable) throw this.unreachable(dst);
    const f = src.files.get(fromPath);
    if (!f) throw new HostError(from.name, 'other', `sftp: no such file ${fromPath}`);
    this.mkdir(dst, posix.dirname(toPath));
    this.write(dst, toPath, Buffer.from(f.data));
    onProgress?.(f.data.length);
    return { bytes: f.data.length, sha256: createHash('sha256').update(f.data).digest('hex') };
  }

  async upload(host: Host, localDir: string, remoteDir: string): Promise<void> {
    const h = this.hostOf(host.name);
    this.calls.push({ host: host.name, op: 'upload', args: [localDir, remoteDir], atMs: this.now() });
    if (!h.reachable) throw this.unreachable(h);
    const walk = (l: string, r: string) => {
      this.mkdir(h, r);
      for (const name of readdirSync(l)) {
        const lp = join(l, name);
        if (statSync(lp).isDirectory()) walk(lp, posix.join(r, name));
        else this.write(h, posix.join(r, name), readFileSync(lp));
      }
    };
    walk(localDir, remoteDir);
  }

  async probe(host: Host): Promise<NodeHealth> {
    const h = this.hostOf(host.name);
    this.calls.push({ host: host.name, op: 'probe', atMs: this.now() });
    const checkedAt = new Date(this.now()).toISOString();
    if (!h.reachable) {
      return {
        name: host.name,
        address: `${host.address}:${host.port}`,
        user: host.user,
        role: host.role,
        status: 'NotReady',
        reasons: [this.unreachable(h).message.replace(`${host.name}: `, '')],
        warnings: [],
        gpus: [],
        checkedAt,
      };
    }
    const hv = h.health;
    const gpus =
      hv.gpus ??
      host.gpus.map((g, i) => ({
        index: i,
        name: `NVIDIA ${g.model}`,
        memoryTotalMiB: Math.round((g.vramGb ?? 8) * 1024),
        memoryUsedMiB: 0,
        utilizationPct: 0,
        driver: '550.54.14',
      }));
    const facts: ProbeFacts = {
      hostname: host.hostname,
      os: 'Fake Linux',
      kernel: '6.1.0-fake',
      python: { version: '3.11.2', executable: '/usr/bin/python3' },
      torch: hv.torch === undefined ? { version: '2.4.0', cuda: '12.1' } : hv.torch,
      gpu:
        gpus === 'absent'
          ? { state: 'notfound' }
          : 'failing' in gpus
            ? { state: 'failed', exitCode: '9', message: gpus.failing }
            : { state: 'ok', gpus },
      disk: { path: '/', freeGiB: hv.diskFreeGiB ?? 100, totalGiB: 500 },
    };
    return judge(host, this.cluster, facts, { rttMs: 1, clockOffsetMs: hv.clockOffsetMs ?? 0 }, checkedAt);
  }

  // ---- test controls -------------------------------------------------------------------------

  setReachable(host: string, reachable: boolean): void {
    const h = this.hostOf(host);
    if (h.reachable && !reachable) h.lastHeard = this.now();
    h.reachable = reachable;
    if (!reachable) for (const p of [...h.pending]) p.onCut(this.unreachable(h));
  }

  setHealth(host: string, health: FakeHealth): void {
    this.hostOf(host).health = health;
  }

  listen(host: string, port: number): void {
    this.hostOf(host).ports.add(port);
  }

  unlisten(host: string, port: number): void {
    this.hostOf(host).ports.delete(port);
  }

  failNextLaunches(host: string, n: number, message: string): void {
    this.hostOf(host).failLaunches = { n, message };
  }

  startRanks(host: string, dir: string, ranks: number | { rank: number; localRank?: number }[]): void {
    const h = this.hostOf(host);
    const run = this.liveRun(h, dir);
    const list: { rank: number; localRank?: number }[] =
      typeof ranks === 'number' ? Array.from({ length: ranks }, (_, i) => ({ rank: i })) : ranks;
    for (const [i, r] of list.entries()) {
      const p = this.spawn(h, run.runner.marker);
      run.ranks.set(r.rank, p);
      this.append(h, posix.join(run.runDir, 'ranks'), `${r.rank} ${r.localRank ?? i} 0 ${p.pid} ${this.ns()}\n`);
      this.write(h, posix.join(run.runDir, `rank-${r.rank}.log`), '', true);
      this.write(h, posix.join(run.runDir, `heartbeat-${r.rank}`), '');
    }
  }

  endRank(host: string, dir: string, rank: number, code: number, log?: string[]): void {
    const h = this.hostOf(host);
    const run = this.runOf(h, dir);
    if (log?.length) this.append(h, posix.join(run.runDir, `rank-${rank}.log`), log.map((l) => `${l}\n`).join(''));
    this.rankExit(h, run, rank, code);
  }

  endRun(host: string, dir: string, code: number, rankCodes: Record<number, number> = {}): void {
    const h = this.hostOf(host);
    const run = this.liveRun(h, dir);
    for (const [rank, p] of run.ranks) if (p.alive) this.rankExit(h, run, rank, rankCodes[rank] ?? code);
    this.runnerExit(h, run, code);
  }

  vanish(host: string, dir: string): void {
    const h = this.hostOf(host);
    const run = this.liveRun(h, dir);
    run.runner.alive = false;
    this.runEnded(h, run);
  }

  onTerm(host: string, dir: string, how: { ignore?: boolean; exitCode?: number }): void {
    const run = this.runOf(this.hostOf(host), dir);
    run.term = { ignore: how.ignore ?? false, exitCode: how.exitCode ?? 143 };
  }

  writeRunDir(host: string, dir: string, files: Record<string, string>): void {
    const h = this.hostOf(host);
    const runDir = posix.join(h.host.paths.runs, dir);
    this.mkdir(h, runDir);
    for (const [name, text] of Object.entries(files)) this.write(h, posix.join(runDir, name), text);
  }

  writeMetrics(host: string, dir: string, metrics: unknown): void {
    const h = this.hostOf(host);
    const line = typeof metrics === 'string' ? metrics : JSON.stringify(metrics);
    this.append(h, posix.join(h.host.paths.runs, dir, 'metrics.jsonl'), `${line}\n`);
  }

  stopRank(host: string, dir: string, rank: number): void {
    const p = this.runOf(this.hostOf(host), dir).ranks.get(rank);
    if (p) p.state = 'T';
  }

  beat(host: string, dir: string, rank: number): void {
    const h = this.hostOf(host);
    const run = this.runOf(h, dir);
    this.write(h, posix.join(run.runDir, `heartbeat-${rank}`), '');
  }

  writeCheckpoint(host: string, ckptDir: string, name: string, bytes: Buffer | string): void {
    const h = this.hostOf(host);
    this.mkdir(h, ckptDir);
    this.write(h, posix.join(ckptDir, `${name}.pt`), Buffer.from(bytes));
    this.write(h, posix.join(ckptDir, 'latest'), `${name}\n`);
  }

  appendLog(host: string, dir: string, rank: number, text: string): void {
    const h = this.hostOf(host);
    this.append(h, posix.join(h.host.paths.runs, dir, `rank-${rank}.log`), text);
  }

  // ---- inspection ----------------------------------------------------------------------------

  readFile(host: string, path: string): string | undefined {
    return this.hostOf(host).files.get(path)?.data.toString('utf8');
  }

  /** Paths of the files under `prefix`, sorted. */
  files(host: string, prefix = '/'): string[] {
    return [...this.hostOf(host).files.keys()].filter((p) => p.startsWith(prefix)).sort();
  }

  launchOf(host: string, dir: string): FakeLaunch | undefined {
    const h = this.hostOf(host);
    return h.runs.get(posix.join(h.host.paths.runs, dir))?.launch;
  }

  isAlive(host: string, dir: string): boolean {
    const h = this.hostOf(host);
    return h.runs.get(posix.join(h.host.paths.runs, dir))?.runner.alive ?? false;
  }

  // ---- the scripts ---------------------------------------------------------------------------

  private launchSh(h: FakeHost, a: string[]): ExecResult {
    if (a.length < 7)
      return fail(2, 'usage: launch.sh RUN_DIR RDZV_ADDR CHECK_PORT RANK_SH META_JSON [K=V…] -- [K=V…] ARGV…');
    const [runDir, rdzvAddr, checkPort, rankSh, meta] = a;
    const rest = a.slice(5);
    if (checkPort !== '' && !(isUint(checkPort) && Number(checkPort) >= 1 && Number(checkPort) <= 65535))
      return fail(2, 'CHECK_PORT must be a TCP port number or empty');
    const ugroEnv: Record<string, string> = {};
    for (;;) {
      if (!rest.length) return fail(2, "no -- after UGRO's variables");
      const w = rest.shift()!;
      if (w === '--') break;
      if (!/^[A-Za-z_].*=/.test(w)) return fail(2, `not NAME=VALUE: ${w}`);
      const k = w.slice(0, w.indexOf('='));
      if (!/^[A-Za-z0-9_]+$/.test(k)) return fail(2, `not a variable name: ${k}`);
      ugroEnv[k] = w.slice(k.length + 1);
    }
    if (!rest.length) return fail(2, 'no command to run');
    const jobEnv: Record<string, string> = {};
    while (rest.length && ENV_WORD.test(rest[0])) {
      const w = rest.shift()!;
      jobEnv[w.slice(0, w.indexOf('='))] = w.slice(w.indexOf('=') + 1);
    }
    const exists = () => {
      const pid = this.firstLine(h, posix.join(runDir, 'pid'));
      const st = this.firstLine(h, posix.join(runDir, 'starttime'));
      return ok(`@@launch\nresult=exists\npid=${pid}\nstarttime=${st || '0'}\n@@end\n`);
    };
    if (this.nonEmpty(h, posix.join(runDir, 'pid'))) return exists();
    if (checkPort !== '' && h.ports.has(Number(checkPort))) {
      return ok(`@@launch\nresult=port-busy\nport=${checkPort}\n@@end\n`, 3);
    }
    if (h.failLaunches.n > 0) {
      h.failLaunches.n--;
      return fail(1, h.failLaunches.message);
    }
    this.mkdir(h, runDir);
    this.write(h, posix.join(runDir, 'lock'), '', true);
    this.write(h, posix.join(runDir, 'meta.json'), `${meta}\n`);
    this.write(h, posix.join(runDir, 'rank.sh'), `${rankSh}\n`);
    this.write(h, posix.join(runDir, 'launched_at'), `${this.ns()}\n`);
    const runner = this.spawn(h, ugroEnv.UGRO_RUN_ID);
    this.write(h, posix.join(runDir, 'starttime'), `${runner.starttime}\n`);
    this.write(h, posix.join(runDir, 'pid'), `${runner.pid}\n`);
    h.runs.set(runDir, {
      runDir,
      runner,
      ranks: new Map(),
      term: { ignore: false, exitCode: 143 },
      launch: {
        dir: posix.basename(runDir),
        rdzvAddr,
        ...(checkPort ? { checkPort: Number(checkPort) } : {}),
        ugroEnv,
        jobEnv,
        argv: rest,
      },
    });
    return ok(`@@launch\nresult=launched\npid=${runner.pid}\nstarttime=${runner.starttime}\n@@end\n`);
  }

  private observeSh(h: FakeHost, a: string[]): ExecResult {
    const [runs, job = '', ckpt = ''] = a;
    if (/[^a-z0-9-]/.test(job)) return fail(2, 'JOB must be a DNS label');
    let out = '';
    if (ckpt) {
      const name = this.firstLine(h, posix.join(ckpt, 'latest'));
      const f = h.files.get(posix.join(ckpt, `${name}.pt`));
      if (name && !name.startsWith('.') && /^[A-Za-z0-9._-]+$/.test(name) && f) {
        out +=
          `@@checkpoint\nname=${name}\nsize=${f.data.length}\n` +
          `mtime_ns=${BigInt(Math.round(f.mtimeMs)) * 1_000_000n}\n@@end\n`;
      }
    }
    if (!h.dirs.has(runs)) return ok(`${out}@@observe\nruns_dir=absent\nruns=0\n@@end\n`);
    let n = 0;
    for (const d of this.children(h, runs, 'dir')) {
      if (d.startsWith('.')) continue;
      const dir = posix.join(runs, d);
      if (!h.files.has(posix.join(dir, 'meta.json'))) continue;
      if (job && !d.startsWith(`${job}.`)) continue;
      if (/[^a-z0-9.-]/.test(d) || d.startsWith('-')) {
        const shown = [...Buffer.from(d)]
          .map((c) => (/[a-z0-9.-]/.test(String.fromCharCode(c)) ? String.fromCharCode(c) : '?'))
          .join('');
        out += `@@rejected ${shown}\nwhy=${REJECTED_WHY}\n@@end\n`;
        continue;
      }
      n++;
      const f = (name: string) => posix.join(dir, name);
      const pid = this.firstLine(h, f('pid'));
      const st = this.firstLine(h, f('starttime'));
      const code = this.firstLine(h, f('exit_code'));
      out += `@@run ${d}\npid=${pid}\nstarttime=${st}\n`;
      out += `alive=${this.alive(h, pid, st) ? 1 : 0}\n`;
      out += `exit_code=${code}\ncancelled=${this.firstLine(h, f('cancelled'))}\n`;
      out += `launched_at=${this.firstLine(h, f('launched_at'))}\nfinished_at=${this.firstLine(h, f('finished_at'))}\n`;
      out += `meta=${h.files.get(f('meta.json'))!.data.subarray(0, 16384).toString('utf8').replace(/\n/g, '')}\n`;
      const ranks = h.files.get(f('ranks'));
      if (ranks) out += prefixed(linesOf(ranks.data).slice(-4096), 'rank=', 200);
      for (const name of this.children(h, dir, 'file')) {
        const m = /^rank-(.*)\.exit$/.exec(name);
        if (!m || !isUint(m[1])) continue;
        const file = h.files.get(f(name))!;
        const rc = linesOf(file.data)[0] ?? '';
        const sec = Math.floor(file.mtimeMs / 1000);
        const nanos = String(Math.round((file.mtimeMs % 1000) * 1e6)).padStart(9, '0');
        out += `rankexit=${m[1]} ${rc} ${sec}.${nanos}\n`;
        const log = h.files.get(f(`rank-${m[1]}.log`));
        if (rc !== '0' && log) out += prefixed(tailLines(log.data, 1048576, 20), `ranklog=${m[1]} `, 2000);
      }
      for (const name of this.children(h, dir, 'file')) {
        const m = /^heartbeat-(.*)$/.exec(name);
        if (!m || !isUint(m[1]) || h.files.has(f(`rank-${m[1]}.exit`))) continue;
        out += `rankbeat=${m[1]} ${Math.floor(this.now() - h.files.get(f(name))!.mtimeMs)}\n`;
        const proc = h.runs.get(dir)?.ranks.get(Number(m[1]));
        if (proc?.alive) out += `rankproc=${m[1]} ${proc.state ?? 'S'}\n`;
      }
      const agent = h.files.get(f('torchrun.log'));
      if (code !== '' && code !== '0' && agent) out += prefixed(tailLines(agent.data, 1048576, 20), 'agentlog=', 2000);
      const metrics = h.files.get(f('metrics.jsonl'));
      if (metrics) out += prefixed(tailLines(metrics.data, 65536, 1), 'metrics=');
      out += '@@end\n';
    }
    return ok(`${out}@@observe\nruns_dir=present\nruns=${n}\n@@end\n`);
  }

  private checksumSh(h: FakeHost, a: string[]): ExecResult {
    if (a.length !== 1) return fail(2, 'usage: checksum.sh FILE');
    const f = h.files.get(a[0]);
    if (!f) return fail(1, `${a[0]} is not a regular file`);
    const sum = createHash('sha256').update(f.data).digest('hex');
    return ok(`@@checksum\nsize=${f.data.length}\nsha256=${sum}\n@@end\n`);
  }

  /** checkpoints.sh list|delete, over the files (no run dirs' metrics: the loop's retention asks for none). */
  private checkpointsSh(h: FakeHost, a: string[]): ExecResult {
    const [mode, dir, ...rest] = a;
    const name = (p: string) => posix.basename(p).slice(0, -3);
    const pts = [...h.files.keys()].filter(
      (p) => posix.dirname(p) === dir && p.endsWith('.pt') && /^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(name(p)),
    );
    const latestFile = h.files.get(posix.join(dir ?? '/', 'latest'));
    const latest = latestFile?.data.toString('utf8').split('\n')[0] ?? '';
    if (mode === 'list') {
      if (!h.dirs.has(dir)) return ok('@@checkpoints\ndir=absent\ncount=0\n@@end\n');
      let out = `@@latest\nname=${latest}\n@@end\n`;
      for (const p of pts.sort()) {
        const f = h.files.get(p)!;
        const sum = rest[0] === '1' ? `sha256=${createHash('sha256').update(f.data).digest('hex')}\n` : '';
        out += `@@checkpoint ${name(p)}\nsize=${f.data.length}\nmtime_ns=${Math.round(f.mtimeMs) * 1e6}\n${sum}@@end\n`;
      }
      return ok(`${out}@@checkpoints\ndir=present\ncount=${pts.length}\n@@end\n`);
    }
    if (mode !== 'delete') return fail(2, 'usage: checkpoints.sh list|delete CHECKPOINT_DIR …');
    let out = '';
    let n = 0;
    for (const want of rest) {
      const p = posix.join(dir, `${want}.pt`);
      const f = h.files.get(p);
      if (want === latest || !f) continue;
      h.files.delete(p);
      n++;
      out += `@@deleted ${want}\nsize=${f.data.length}\n@@end\n`;
    }
    return ok(`${out}@@checkpoints\ndeleted=${n}\n@@end\n`);
  }

  private stopSh(h: FakeHost, a: string[]): ExecResult {
    if (a.length !== 4) return fail(2, 'usage: stop.sh RUN_DIR RUN_ID GRACE_MS REASON');
    const [runDir, runId, graceMs, reason] = a;
    if (!isUint(graceMs) || graceMs.length > 9) return fail(2, 'GRACE_MS must be a decimal integer of milliseconds');
    if (!(STOP_REASONS as readonly string[]).includes(reason))
      return fail(2, "REASON is not one of UGRO's stop reasons");
    if (!/^[A-Za-z0-9._-]+$/.test(runId)) return fail(2, 'RUN_ID must be [A-Za-z0-9._-]+');
    if (!h.dirs.has(runDir)) return ok('@@stop\nnone=1\nkilled=0\nremaining=0\nwaited_ms=0\n@@end\n');
    if (!this.nonEmpty(h, posix.join(runDir, 'cancelled')))
      this.write(h, posix.join(runDir, 'cancelled'), `${reason}\n`);
    const marked = () => [...h.procs.values()].filter((p) => p.alive && p.marker === runId);
    const run = h.runs.get(runDir);
    let killed = 0;
    let waited = 0;
    if (marked().length) {
      waited = 200;
      if (run?.term.ignore) {
        // SIGTERM ignored: SIGKILL after the grace, and nobody records anything.
        waited = Math.ceil(Number(graceMs) / 200) * 200;
        for (const p of marked()) p.alive = false;
        killed = 1;
        if (run) this.runEnded(h, run);
      } else if (run) {
        for (const [rank, p] of run.ranks) if (p.alive) this.rankExit(h, run, rank, run.term.exitCode);
        if (run.runner.alive) this.runnerExit(h, run, run.term.exitCode);
      }
      for (const p of marked()) p.alive = false;
    }
    if (!this.nonEmpty(h, posix.join(runDir, 'exit_code'))) {
      this.write(h, posix.join(runDir, 'exit_code'), '137\n');
      this.write(h, posix.join(runDir, 'finished_at'), `${this.ns()}\n`);
    }
    return ok(`@@stop\nkilled=${killed}\nremaining=0\nwaited_ms=${waited}\n@@end\n`);
  }

  private waitSh(h: FakeHost, a: string[], opts: RunScriptOptions): Promise<ExecResult> | ExecResult {
    if (a.length !== 1) return fail(2, 'usage: wait.sh RUN_DIR');
    const [runDir] = a;
    if (!h.dirs.has(runDir)) return ok('@@wait\nstate=missing\nexit_code=\n@@end\n');
    if (!h.files.has(posix.join(runDir, 'lock'))) this.write(h, posix.join(runDir, 'lock'), '', true);
    const done = () =>
      ok(`@@wait\nstate=done\nexit_code=${this.firstLine(h, posix.join(runDir, 'exit_code'))}\n@@end\n`);
    if (!h.runs.get(runDir)?.runner.alive) return done();
    return this.pend(h, opts, (settle) => ({
      onRunEnd: (d) => {
        if (d === runDir) settle(done());
      },
    }));
  }

  private archiveSh(h: FakeHost, a: string[]): ExecResult {
    if (a.length !== 4) return fail(2, 'usage: archive.sh RUNS_DIR DIR NOW_MS CUTOFF_MS');
    const [runs, dir, now, cutoff] = a;
    if (dir === '' || dir.includes('/') || dir.startsWith('.')) return fail(2, 'DIR must be a plain run dir name');
    if (!isUint(now) || !isUint(cutoff)) return fail(2, 'NOW_MS and CUTOFF_MS must be decimal integers');
    let moved = 0;
    const from = posix.join(runs, dir);
    if (h.dirs.has(from)) {
      this.mkdir(h, posix.join(runs, '.deleted'));
      this.rename(h, from, posix.join(runs, '.deleted', `${dir}.${now}`));
      moved = 1;
    }
    let pruned = 0;
    const deleted = posix.join(runs, '.deleted');
    for (const d of this.children(h, deleted, 'dir')) {
      const ts = d.slice(d.lastIndexOf('.') + 1);
      if (!isUint(ts) || !d.includes('.')) continue;
      if (Number(ts) < Number(cutoff)) {
        this.remove(h, posix.join(deleted, d));
        pruned++;
      }
    }
    return ok(`@@archive\nmoved=${moved}\npruned=${pruned}\n@@end\n`);
  }

  private leaseSh(h: FakeHost, a: string[]): ExecResult {
    if (a.length !== 4) return fail(2, 'usage: lease.sh LEASE_FILE OWNER TTL_SECONDS acquire|release');
    const [file, owner, ttl, mode] = a;
    if (mode !== 'acquire' && mode !== 'release') return fail(2, 'MODE must be acquire or release');
    if (!isUint(ttl) || ttl.length > 9 || Number(ttl) < 1) return fail(2, 'TTL_SECONDS must be a positive integer');
    if (!owner || owner.length > 300) return fail(2, 'OWNER must be 1 to 300 characters');
    if (/[\n\r]/.test(owner)) return fail(2, 'OWNER must be one line');
    this.mkdir(h, posix.dirname(file));
    this.write(h, `${file}.lock`, '', true);
    const now = Math.floor(this.now() / 1000);
    let cur = '';
    let exp = '0';
    for (const line of linesOf(h.files.get(file)?.data ?? Buffer.alloc(0))) {
      if (line.startsWith('owner=')) cur = line.slice(6);
      else if (line.startsWith('expires=')) exp = line.slice(8);
    }
    if (!isUint(exp)) {
      cur = '';
      exp = '0';
    }
    const e = Number(exp);
    const answer = (state: string, o: string, left: number) =>
      ok(`@@lease\nstate=${state}\nowner=${o}\nexpires_in=${left}\n@@end\n`);
    if (mode === 'release') {
      if (cur === owner) {
        h.files.delete(file);
        return answer('released', '', 0);
      }
      if (cur && e > now) return answer('taken', cur, e - now);
      return answer('free', '', 0);
    }
    if (!cur || e <= now || cur === owner) {
      this.write(h, file, `owner=${owner}\nexpires=${now + Number(ttl)}\n`);
      return answer('held', owner, Number(ttl));
    }
    return answer('taken', cur, e - now);
  }

  private scriptsHashSh(h: FakeHost, a: string[]): ExecResult {
    if (a.length !== 1 && a.length !== 2) return fail(2, 'usage: scripts-hash.sh SCRIPTS_DIR [HASH]');
    const marker = posix.join(a[0], '.ugro-scripts-hash');
    if (a.length === 2) {
      if (!/^[0-9a-f]+$/.test(a[1])) return fail(2, 'HASH must be lower-case hex');
      if (a[1].length > 128) return fail(2, 'HASH is too long');
      this.mkdir(h, a[0]);
      this.write(h, marker, `${a[1]}\n`);
    }
    return ok(`@@scripts-hash\nhash=${this.firstLine(h, marker)}\n@@end\n`);
  }

  /** metrics.sh RUN_DIR OFFSET MAX_BYTES: whole lines from OFFSET (at most MAX_BYTES), and where to go on. */
  private metricsSh(h: FakeHost, a: string[]): ExecResult {
    if (a.length !== 3) return fail(2, 'usage: metrics.sh RUN_DIR OFFSET MAX_BYTES');
    if (!isUint(a[1])) return fail(2, 'OFFSET must be a decimal integer');
    if (!isUint(a[2])) return fail(2, 'MAX_BYTES must be a decimal integer');
    if (!h.dirs.has(a[0])) return fail(3, `no run dir ${a[0]}`);
    const data = h.files.get(posix.join(a[0], 'metrics.jsonl'))?.data;
    if (!data) return ok('@@metrics\nsize=0\nnext=0\n@@end\n');
    const off = Number(a[1]) <= data.length ? Number(a[1]) : 0;
    const chunk = data.subarray(off, off + Math.min(Number(a[2]), data.length - off));
    const end = chunk.lastIndexOf(10) + 1;
    const text = chunk.subarray(0, Math.max(0, end - 1)).toString('utf8');
    const body = prefixed(end ? text.split('\n') : [], 'line=', 4096);
    return ok(`@@metrics\nsize=${data.length}\n${body}next=${off + end}\n@@end\n`);
  }

  /**
   * progress.sh RUNS_DIR [DIR SIG]…: the last metrics line of each DIR whose metrics file's
   * signature is not SIG (no inodes here: 0.SIZE.MTIME_SECONDS), then @@progress-read.
   */
  private progressSh(h: FakeHost, a: string[]): ExecResult {
    if (a.length < 1 || (a.length - 1) % 2) return fail(2, 'usage: progress.sh RUNS_DIR [DIR SIG]…');
    const [runs, ...pairs] = a;
    let out = '';
    for (let i = 0; i < pairs.length; i += 2) {
      const [d, sig] = [pairs[i], pairs[i + 1]];
      if (!d || d.startsWith('-') || /[^a-z0-9.-]/.test(d))
        return fail(2, 'DIR must be a run dir name ([a-z0-9.-], no leading -)');
      if (/[^0-9.]/.test(sig)) return fail(2, 'SIG must be digits and dots');
      const f = h.files.get(posix.join(runs, d, 'metrics.jsonl'));
      if (!f) continue;
      const now = `0.${f.data.length}.${Math.floor(f.mtimeMs / 1000)}`;
      if (now === sig) continue;
      out += `@@progress ${d}\nsig=${now}\nmetrics=${tailLines(f.data, 65536, 1)[0] ?? ''}\n@@end\n`;
    }
    return ok(`${out}@@progress-read\nasked=${pairs.length / 2}\n@@end\n`);
  }

  private readLogSh(h: FakeHost, a: string[]): ExecResult {
    if (a.length !== 2 && a.length !== 3) return fail(2, 'usage: read-log.sh RUN_DIR RANK [TAIL]');
    if (!isUint(a[1])) return fail(2, 'RANK must be a decimal integer');
    if (a[2] && !isUint(a[2])) return fail(2, 'TAIL must be a decimal integer');
    const log = h.files.get(posix.join(a[0], `rank-${a[1]}.log`));
    if (!log) return fail(3, `no log for rank ${a[1]} in ${a[0]}`);
    let lines = linesOf(log.data);
    if (a[2]) lines = Number(a[2]) ? lines.slice(-Number(a[2])) : [];
    return ok(`@@log\nsize=${log.data.length}\n${prefixed(lines, 'line=')}@@end\n`);
  }

  private followLogSh(h: FakeHost, a: string[], opts: RunScriptOptions): Promise<ExecResult> | ExecResult {
    if (a.length !== 3) return ok('', 2, 'usage: follow-log.sh RUN_DIR RANK OFFSET\n');
    if (!isUint(a[1]) || !isUint(a[2])) return ok('', 2, 'ugro: RANK and OFFSET must be decimal integers\n');
    const [runDir, rank] = a;
    if (!h.dirs.has(runDir)) return ok('', 3, `ugro: no run dir ${runDir}\n`);
    const path = posix.join(runDir, `rank-${rank}.log`);
    let off = Number(a[2]);
    let sent = '';
    const flush = () => {
      const data = h.files.get(path)?.data;
      if (!data || data.length <= off) return;
      const chunk = data.subarray(off);
      off = data.length;
      sent += chunk.toString('utf8');
      opts.onStdout?.(Buffer.from(chunk));
    };
    flush();
    const done = () => {
      flush();
      return ok(sent);
    };
    if (!h.files.has(posix.join(runDir, 'lock')) || !h.runs.get(runDir)?.runner.alive) return done();
    return this.pend(h, opts, (settle) => ({
      onAppend: (p) => {
        if (p === path) flush();
      },
      onRunEnd: (d) => {
        if (d === runDir) settle(done());
      },
    }));
  }

  // ---- the model -----------------------------------------------------------------------------

  private hostOf(name: string): FakeHost {
    const h = this.hosts.get(name);
    if (!h) throw new HostError(name, 'config', `unknown host "${name}" (not in the cluster file)`);
    return h;
  }

  private unreachable(h: FakeHost): HostError {
    return new HostError(
      h.host.name,
      'timeout',
      `ssh: no answer from ${h.host.address}:${h.host.port} within 5 s (host down, asleep, or network cut?)`,
    );
  }

  /** A call that settles later: when `make`'s handlers say so, on abort (what was gathered), or on a cut. */
  private pend(
    h: FakeHost,
    opts: RunScriptOptions,
    make: (settle: (r: ExecResult) => void) => Omit<Pending, 'onCut'>,
  ): Promise<ExecResult> {
    return new Promise((resolve, reject) => {
      const p: Pending = { onCut: () => undefined };
      const end = () => {
        h.pending.delete(p);
        opts.signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        end();
        resolve(ok('', null));
      };
      const settle = (r: ExecResult) => {
        end();
        resolve(r);
      };
      Object.assign(p, make(settle), {
        onCut: (e: HostError) => {
          end();
          reject(e);
        },
      });
      h.pending.add(p);
      if (opts.signal?.aborted) onAbort();
      else opts.signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private ns(): string {
    return String(BigInt(Math.round(this.now())) * 1_000_000n);
  }

  private spawn(h: FakeHost, marker?: string): FakeProc {
    h.nextStart += 13;
    const p = { pid: h.nextPid++, starttime: h.nextStart, alive: true, marker };
    h.procs.set(p.pid, p);
    return p;
  }

  /** ugro_alive */
  private alive(h: FakeHost, pid: string, st: string): boolean {
    if (!isUint(pid) || !isUint(st)) return false;
    const p = h.procs.get(Number(pid));
    return !!p && p.alive && String(p.starttime) === st;
  }

  private runOf(h: FakeHost, dir: string): FakeRun {
    const run = h.runs.get(posix.join(h.host.paths.runs, dir));
    if (!run) throw new Error(`fake host ${h.host.name}: no launched run ${dir}`);
    return run;
  }

  private liveRun(h: FakeHost, dir: string): FakeRun {
    const run = this.runOf(h, dir);
    if (!run.runner.alive) throw new Error(`fake host ${h.host.name}: the runner of ${dir} is not alive`);
    return run;
  }

  /** rank.sh: the rank's exit code, once. */
  private rankExit(h: FakeHost, run: FakeRun, rank: number, code: number): void {
    const p = run.ranks.get(rank);
    if (p) p.alive = false;
    this.write(h, posix.join(run.runDir, `rank-${rank}.exit`), `${code}\n`);
  }

  /** The runner: torchrun's exit code, then finished_at; the lock is free. */
  private runnerExit(h: FakeHost, run: FakeRun, code: number): void {
    this.write(h, posix.join(run.runDir, 'exit_code'), `${code}\n`);
    this.write(h, posix.join(run.runDir, 'finished_at'), `${this.ns()}\n`);
    run.runner.alive = false;
    this.runEnded(h, run);
  }

  private runEnded(h: FakeHost, run: FakeRun): void {
    for (const p of [...h.pending]) p.onRunEnd?.(run.runDir);
  }

  // A file system of absolute posix paths; directories are explicit, parents made on write.
  private mkdir(h: FakeHost, dir: string): void {
    for (let d = dir; !h.dirs.has(d); d = posix.dirname(d)) h.dirs.add(d);
  }

  private write(h: FakeHost, path: string, data: string | Buffer, keepIfExists = false): void {
    if (keepIfExists && h.files.has(path)) return;
    this.mkdir(h, posix.dirname(path));
    h.files.set(path, { data: Buffer.from(data), mtimeMs: this.now() });
  }

  private append(h: FakeHost, path: string, text: string): void {
    const cur = h.files.get(path)?.data ?? Buffer.alloc(0);
    this.write(h, path, Buffer.concat([cur, Buffer.from(text)]));
    for (const p of [...h.pending]) p.onAppend?.(path);
  }

  private firstLine(h: FakeHost, path: string): string {
    return linesOf(h.files.get(path)?.data ?? Buffer.alloc(0))[0] ?? '';
  }

  private nonEmpty(h: FakeHost, path: string): boolean {
    return (h.files.get(path)?.data.length ?? 0) > 0;
  }

  /** Names directly in `dir`, sorted by bytes (the glob's order in the C locale). */
  private children(h: FakeHost, dir: string, kind: 'dir' | 'file'): string[] {
    const prefix = dir.endsWith('/') ? dir : `${dir}/`;
    const from = kind === 'dir' ? [...h.dirs] : [...h.files.keys()];
    return from
      .filter((p) => p.startsWith(prefix) && p.length > prefix.length && !p.slice(prefix.length).includes('/'))
      .map((p) => p.slice(prefix.length))
      .sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
  }

  private rename(h: FakeHost, from: string, to: string): void {
    const move = (p: string) => (p === from ? to : p.startsWith(`${from}/`) ? to + p.slice(from.length) : p);
    for (const d of [...h.dirs])
      if (move(d) !== d) {
        h.dirs.delete(d);
        h.dirs.add(move(d));
      }
    for (const [p, f] of [...h.files])
      if (move(p) !== p) {
        h.files.delete(p);
        h.files.set(move(p), f);
      }
    for (const [p, r] of [...h.runs])
      if (move(p) !== p) {
        h.runs.delete(p);
        r.runDir = move(p);
        h.runs.set(r.runDir, r);
      }
  }

  private remove(h: FakeHost, path: string): void {
    for (const d of [...h.dirs]) if (d === path || d.startsWith(`${path}/`)) h.dirs.delete(d);
    for (const p of [...h.files.keys()]) if (p.startsWith(`${path}/`)) h.files.delete(p);
  }
}
