/**
 * Shared builders for the Slurm backend's unit tests (not a test file itself): the fixture
 * cluster with a `slurm:` section, and stand-ins for Slurm's commands that record how they were
 * called (sbatch, squeue, sacct, scancel, srun, scontrol, sinfo) for running UGRO's real scripts
 * on this machine. The stand-ins model nothing of Slurm but what a test writes into their state
 * directory: which jobs squeue lists, in which state.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Cluster, type Host, parseCluster } from '../../config/cluster.ts';
import type { SlurmTransport } from '../../controller/backends/slurm/transport.ts';
import type { ExecResult } from '../../controller/backends/ssh/pool.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

export const SLURM_SECTION = `
slurm:
  name: hpc
  login: { hostname: login1, ip: 10.0.0.50, user: alice }
  partition: gpu
  account: ml-team
  python: /usr/bin/python3
  sbatch: ["--mem=0", "--constraint=a100"]
  priority: { nice: true, qos: { high: urgent } }
  poll_seconds: 1
`;

/** tests/fixtures/cluster/valid.yaml plus a slurm: section (`extra` replaces it when given). */
export function slurmCluster(section = SLURM_SECTION): Cluster {
  const text = readFileSync(`${ROOT}tests/fixtures/cluster/valid.yaml`, 'utf8') + section;
  const r = parseCluster(text, '/etc/ugro/cluster.yaml', { env: {}, home: '/home/alice', user: 'alice' });
  if (!r.ok) throw new Error(`slurm fixture cluster is invalid: ${JSON.stringify(r.issues)}`);
  return r.value;
}

/**
 * A directory of stand-in Slurm commands, first on PATH for scripts run by the tests. Every call
 * is appended to `calls` (one line: the command and its arguments, NUL-separated words turned
 * into ' | '). squeue prints `state/squeue` as it is (rows `ID|STATE|REASON|NODES|NAME`); sbatch
 * answers the next id from `state/next-id` (default 100) and records the script it got; srun
 * runs its command once per node of SLURM_JOB_NUM_NODES with SLURM_NODEID set, in order.
 */
export function fakeSlurm(): { bin: string; state: string; calls: () => string[]; setQueue: (rows: string[]) => void } {
  const dir = mkdtempSync(join(tmpdir(), 'ugro-fake-slurm-'));
  const bin = join(dir, 'bin');
  const state = join(dir, 'state');
  mkdirSync(bin);
  mkdirSync(state);
  writeFileSync(join(state, 'squeue'), '');
  const log = [
    `printf '%s' "$(basename "$0")" >>"${state}/calls"`,
    `for a in "$@"; do printf ' | %s' "$a" >>"${state}/calls"; done`,
    `echo >>"${state}/calls"`,
  ].join('\n');
  const cmds: Record<string, string> = {
    // Answers the three questions UGRO's scripts ask: all rows, one job's state, a name's id.
    squeue: [
      log,
      `[ -f "${state}/squeue-fails" ] && { cat "${state}/squeue-fails" >&2; exit 1; }`,
      'fmt= jobs= name=',
      'for a in "$@"; do case $a in',
      '  --format=*) fmt=${a#--format=} ;; --jobs=*) jobs=${a#--jobs=} ;; --name=*) name=${a#--name=} ;;',
      'esac; done',
      'case $fmt in',
      `'%T') awk -F'|' -v j="$jobs" '$1 == j { print $2 }' "${state}/squeue" ;;`,
      `'%i') awk -F'|' -v n="$name" '$5 == n { print $1 }' "${state}/squeue" ;;`,
      `*) cat "${state}/squeue" ;;`,
      'esac',
    ].join('\n'),
    sacct: `${log}\n[ -f "${state}/sacct" ] && cat "${state}/sacct"; exit 0`,
    // What Slurm does about a cancel is the test's to say: state/on-scancel replaces the queue.
    scancel: `${log}\n[ -f "${state}/on-scancel" ] && cp "${state}/on-scancel" "${state}/squeue"; exit 0`,
    sinfo: `${log}\necho 'gpu* up 3 idle'`,
    sbatch: [
      log,
      '[ "$1" = --version ] && { echo "slurm 22.05.8"; exit 0; }',
      `id=$(cat "${state}/next-id" 2>/dev/null || echo 100)`,
      `echo $((id + 1)) >"${state}/next-id"`,
      `for a in "$@"; do f=$a; done`,
      `cp "$f" "${state}/sbatch-$id.sh"`,
      `[ -f "${state}/sbatch-fails" ] && { cat "${state}/sbatch-fails" >&2; exit 1; }`,
      'echo "$id"',
    ].join('\n'),
    scontrol: `${log}\n[ "$1 $2" = "show hostnames" ] && printf '%s\\n' $(echo "$3" | tr ',' ' ')`,
    srun: [
      log,
      // Skip srun's own options; run the command once per node.
      'while [ $# -gt 0 ]; do case $1 in --*) shift ;; *) break ;; esac; done',
      'n=${SLURM_JOB_NUM_NODES:-1}; i=0; rc=0',
      'while [ "$i" -lt "$n" ]; do SLURM_NODEID=$i "$@" || rc=$?; i=$((i + 1)); done',
      'exit $rc',
    ].join('\n'),
  };
  for (const [name, body] of Object.entries(cmds)) {
    writeFileSync(join(bin, name), `#!/bin/sh\n${body}\n`);
    chmodSync(join(bin, name), 0o755);
  }
  return {
    bin,
    state,
    calls: () => {
      try {
        return readFileSync(join(state, 'calls'), 'utf8').split('\n').filter(Boolean);
      } catch {
        return [];
      }
    },
    setQueue: (rows) => writeFileSync(join(state, 'squeue'), rows.map((r) => `${r}\n`).join('')),
  };
}

/** `sh -c TEXT NAME ARGS…` here, with the stand-in Slurm first on PATH; files written atomically. */
export class LocalSlurmTransport implements SlurmTransport {
  readonly calls: string[] = [];
  constructor(private readonly bin: string) {}
  exec(_h: Host, text: string, name: string, args: readonly string[]): Promise<ExecResult> {
    this.calls.push(name);
    const t0 = performance.now();
    return new Promise((resolve) => {
      const p = spawn('sh', ['-c', text, name, ...args], {
        env: { ...process.env, PATH: `${this.bin}:${process.env.PATH}` },
      });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (b) => {
        stdout += b;
      });
      p.stderr.on('data', (b) => {
        stderr += b;
      });
      p.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, durationMs: performance.now() - t0 }));
    });
  }
  async writeFile(_h: Host, path: string, data: string): Promise<void> {
    writeFileSync(`${path}.tmp`, data);
    renameSync(`${path}.tmp`, path);
  }
}
