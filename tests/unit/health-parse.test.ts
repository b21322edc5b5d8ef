/**
 * Health, the pure parts: nvidia-smi CSV, the probe's output (captured from a lab host), the
 * judge's verdicts and reasons, and probeCluster over a recording fake connection.
 */
import { describe, expect, it } from 'vitest';
import { type Cluster, type Host, parseCluster } from '../../config/cluster.ts';
import { UgroError } from '../../config/errors.ts';
import { HostError, HostOutputError } from '../../controller/backends/errors.ts';
import {
  compareVersions,
  judge,
  type ProbeFacts,
  parseNvidiaSmiCsv,
  parseProbe,
} from '../../controller/backends/health.ts';
import type { ExecOptions, ExecResult, HostConnection } from '../../controller/backends/ssh/pool.ts';
import { probeCluster } from '../../controller/backends/ssh/probe.ts';
import { runtimeScripts } from '../../controller/backends/ssh/scripts.ts';

/** What probeHost sends: lib.sh + scripts/runtime/probe.sh. */
const PROBE_SCRIPT = runtimeScripts().text('probe');

/** Captured verbatim from `sh -c <probe script>` on lab host gpu1 (stand-in nvidia-smi, Debian's torch). */
const CAPTURED_GPU1 =
  '@@clock\n1795562573291212945\n@@hostname\ngpu1\n@@os\nDebian GNU/Linux 12 (bookworm)\n@@kernel\n6.18.44-fc-v669\n' +
  '@@python\nversion=3.11.2\nexecutable=/usr/bin/python3\ntorch=1.13.0a0\ntorch_cuda=none\npython_rc=0\n' +
  '@@gpu\n0, NVIDIA GeForce RTX 4070, 8188, 312, 0, 570.133.07\ngpu_rc=0\n' +
  '@@disk\n/dev/vda         264212084 23992092  82398820      23% /\n@@end\n';
const NVSMI_FAILED =
  "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. " +
  'Make sure that the latest NVIDIA driver is installed and running.';

/** The probe output with its @@gpu section replaced. */
const withGpu = (gpuSection: string) => CAPTURED_GPU1.replace(/@@gpu\n[\s\S]*?@@disk/, `@@gpu\n${gpuSection}@@disk`);

const CLUSTER_TEXT = `
cluster:
  name: t
  master: { hostname: gpu-master, ip: 10.0.0.10, user: master, hardware: { gpu_model: "RTX 5070 Ti", vram_gb: 12 } }
workers:
  - { name: gpu1, hostname: gpu1, ip: 10.0.0.11, user: ob, rank: 1, hardware: { gpu_model: "RTX 4070", vram_gb: 8 } }
  - { name: cpu1, hostname: cpu1, ip: 10.0.0.12, user: ci, rank: 2 }
  - name: dual
    hostname: dual
    ip: 10.0.0.13
    user: ob
    rank: 3
    gpus: [{ model: "A100" }, { model: "A100" }]
`;
function cluster(): Cluster {
  const r = parseCluster(CLUSTER_TEXT, '/x/c.yaml', { env: {}, home: '/root', user: 'root' });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.value;
}
const C = cluster();
const host = (name: string): Host => C.hosts.find((h) => h.name === name)!;
const AT = '2026-01-01T00:00:00.000Z';
const verdict = (name: string, facts: ProbeFacts, timing = {}) => judge(host(name), C, facts, timing, AT);

describe('parseNvidiaSmiCsv (--format=csv,noheader,nounits)', () => {
  it('one GPU', () => {
    expect(parseNvidiaSmiCsv('0, NVIDIA GeForce RTX 4070, 8188, 312, 0, 570.133.07\n')).toEqual([
      {
        index: 0,
        name: 'NVIDIA GeForce RTX 4070',
        memoryTotalMiB: 8188,
        memoryUsedMiB: 312,
        utilizationPct: 0,
        driver: '570.133.07',
      },
    ]);
  });

  it('several GPUs, blank lines ignored', () => {
    const text =
      '0, NVIDIA A100-SXM4-80GB, 81920, 4, 0, 550.54.15\n1, NVIDIA A100-SXM4-80GB, 81920, 40536, 97, 550.54.15\n\n';
    const g = parseNvidiaSmiCsv(text);
    expect(g.map((x) => [x.index, x.memoryTotalMiB, x.memoryUsedMiB, x.utilizationPct])).toEqual([
      [0, 81920, 4, 0],
      [1, 81920, 40536, 97],
    ]);
  });

  it('"[N/A]" and "[Not Supported]" become NaN, not 0 and not an error', () => {
    const [g] = parseNvidiaSmiCsv('0, NVIDIA GeForce GTX 1650, 4096, [N/A], [Not Supported], 535.183.01');
    expect(g.memoryTotalMiB).toBe(4096);
    expect(g.memoryUsedMiB).toBeNaN();
    expect(g.utilizationPct).toBeNaN();
    expect(g.driver).toBe('535.183.01');
  });

  it('rejects what is not a query line (e.g. the driver-failure message) instead of inventing a GPU', () => {
    expect(() => parseNvidiaSmiCsv(NVSMI_FAILED)).toThrow(/unexpected nvidia-smi line/);
    expect(() => parseNvidiaSmiCsv('index, name, memory.total [MiB]')).toThrow(/unexpected nvidia-smi line/);
    expect(() => parseNvidiaSmiCsv(NVSMI_FAILED)).toThrow(HostOutputError); // the host's output, not a bug
    expect(() => parseNvidiaSmiCsv(NVSMI_FAILED)).toThrow(UgroError);
  });
});

describe('parseProbe on captured output', () => {
  it('reads every section of a real probe', () => {
    const f = parseProbe(CAPTURED_GPU1);
    expect(f).toEqual({
      remoteClockNs: 1795562573291212945n,
      hostname: 'gpu1',
      os: 'Debian GNU/Linux 12 (bookworm)',
      kernel: '6.18.44-fc-v669',
      python: { version: '3.11.2', executable: '/usr/bin/python3' },
      torch: { version: '1.13.0a0', cuda: 'none' },
      gpu: {
        state: 'ok',
        gpus: [
          {
            index: 0,
            name: 'NVIDIA GeForce RTX 4070',
            memoryTotalMiB: 8188,
            memoryUsedMiB: 312,
            utilizationPct: 0,
            driver: '570.133.07',
          },
        ],
      },
      disk: { path: '/', totalGiB: 264212084 / 1048576, freeGiB: 82398820 / 1048576 },
    });
  });

  it('nvidia-smi not on PATH, failing (exit 9), and no torch', () => {
    expect(parseProbe(withGpu('gpu_rc=notfound\n')).gpu).toEqual({ state: 'notfound' });
    expect(parseProbe(withGpu(`${NVSMI_FAILED}\ngpu_rc=9\n`)).gpu).toEqual({
      state: 'failed',
      exitCode: '9',
      message: NVSMI_FAILED,
    });
    const noTorch = parseProbe(CAPTURED_GPU1.replace('torch=1.13.0a0\ntorch_cuda=none\n', 'torch=none\n'));
    expect(noTorch.torch).toBeNull();
    expect(noTorch.python).toEqual({ version: '3.11.2', executable: '/usr/bin/python3' });
  });

  it('python missing: the shell error is kept as the reason', () => {
    const f = parseProbe(
      CAPTURED_GPU1.replace(
        /@@python\n[\s\S]*?@@gpu/,
        '@@python\nugro-probe: 1: /opt/py/bin/python: not found\npython_rc=127\n@@gpu',
      ),
    );
    expect(f.python).toEqual({ error: 'ugro-probe: 1: /opt/py/bin/python: not found' });
    expect(f.torch).toBeUndefined();
  });

  it('the probe script asks nvidia-smi for exactly the fields the parser reads', () => {
    expect(PROBE_SCRIPT).toContain(
      'nvidia-smi --query-gpu=index,name,memory.total,memory.used,utilization.gpu,driver_version,' +
        'temperature.gpu,power.draw,pci.bus_id,pcie.link.width.current,pcie.link.width.max \\\n' +
        '    --format=csv,noheader,nounits',
    );
  });
});

describe('judge', () => {
  const okFacts = parseProbe(CAPTURED_GPU1);

  it('Ready: everything fine, no reasons, GPUs reported', () => {
    const n = verdict('gpu1', okFacts, { rttMs: 3, clockOffsetMs: 12 });
    expect(n.status).toBe('Ready');
    expect(n.reasons).toEqual([]);
    expect(n.warnings).toEqual([]);
    expect(n.gpus.map((g) => g.name)).toEqual(['NVIDIA GeForce RTX 4070']);
    expect(n).toMatchObject({
      name: 'gpu1',
      address: '10.0.0.11:22',
      user: 'ob',
      role: 'worker',
      python: '3.11.2',
      checkedAt: AT,
      rttMs: 3,
    });
  });

  it('nvidia-smi not found on a GPU host: NotReady, "nvidia-smi not found: no NVIDIA driver"', () => {
    const n = verdict('gpu1', parseProbe(withGpu('gpu_rc=notfound\n')));
    expect(n.status).toBe('NotReady');
    expect(n.reasons).toEqual(['nvidia-smi not found: no NVIDIA driver']);
  });

  it('nvidia-smi failing: NotReady with its exit code and message', () => {
    const n = verdict('gpu1', parseProbe(withGpu(`${NVSMI_FAILED}\ngpu_rc=9\n`)));
    expect(n.status).toBe('NotReady');
    expect(n.reasons).toHaveLength(1);
    expect(n.reasons[0]).toContain('nvidia-smi failed (exit 9)');
    expect(n.reasons[0]).toContain('NVIDIA-SMI has failed');
  });

  it('old driver: NotReady, "NVIDIA driver 470.82.01 < required <min>"', () => {
    const n = verdict('gpu1', parseProbe(withGpu('0, NVIDIA GeForce RTX 4070, 8188, 312, 0, 470.82.01\ngpu_rc=0\n')));
    expect(n.status).toBe('NotReady');
    expect(C.environment.min_driver_version).toBe('525.60.13');
    expect(n.reasons).toEqual(['NVIDIA driver 470.82.01 < required 525.60.13: upgrade the driver']);
  });

  it('the driver check compares versions numerically, not as text', () => {
    expect(compareVersions('570.133.07', '525.60.13')).toBe(1);
    expect(compareVersions('525.60.13', '525.60.13')).toBe(0);
    expect(compareVersions('525.60.9', '525.60.13')).toBe(-1); // "9" > "13" as text
    expect(compareVersions('550', '550.54.14')).toBe(-1);
    expect(compareVersions('1000.1', '999.99')).toBe(1);
  });

  it('no torch: NotReady and says how to fix it', () => {
    const n = verdict('gpu1', parseProbe(CAPTURED_GPU1.replace('torch=1.13.0a0\ntorch_cuda=none\n', 'torch=none\n')));
    expect(n.status).toBe('NotReady');
    expect(n.reasons).toEqual(['torch not installed for /usr/bin/python3: sync the environment (pulumi up)']);
  });

  it('python unusable: NotReady, names the interpreter and the error', () => {
    const n = verdict('gpu1', { ...okFacts, python: { error: 'python3: not found' }, torch: undefined });
    expect(n.reasons[0]).toMatch(/^python not usable \(python3\): python3: not found/);
  });

  it('low disk: NotReady with free space, path and the threshold', () => {
    const n = verdict('gpu1', { ...okFacts, disk: { path: '/home', freeGiB: 1.24, totalGiB: 100 } });
    expect(n.status).toBe('NotReady');
    expect(n.reasons).toEqual(['only 1.2 GiB free at /home (< 5 GiB)']);
    expect(verdict('gpu1', { ...okFacts, disk: { path: '/home', freeGiB: 5, totalGiB: 100 } }).status).toBe('Ready');
  });

  it('CPU-only host (no GPUs expected): Ready without nvidia-smi', () => {
    expect(host('cpu1').gpus).toEqual([]);
    const n = verdict('cpu1', parseProbe(withGpu('gpu_rc=notfound\n')));
    expect(n.status).toBe('Ready');
    expect(n.reasons).toEqual([]);
    expect(n.gpus).toEqual([]);
    // The same facts on a GPU host are NotReady: the expectation decides, not the facts alone.
    expect(verdict('gpu1', parseProbe(withGpu('gpu_rc=notfound\n'))).status).toBe('NotReady');
  });

  it('fewer GPUs than the cluster file lists: NotReady', () => {
    const n = verdict('dual', parseProbe(withGpu('0, NVIDIA A100-SXM4-80GB, 81920, 4, 0, 550.54.15\ngpu_rc=0\n')));
    expect(n.status).toBe('NotReady');
    expect(n.reasons).toEqual(['expected 2 GPU(s), nvidia-smi shows 1']);
  });

  it('a different GPU model or a drifting clock only warns', () => {
    const n = verdict('gpu-master', okFacts, { clockOffsetMs: -2500 });
    expect(n.status).toBe('Ready');
    expect(n.warnings).toEqual([
      'GPU is "NVIDIA GeForce RTX 4070", cluster file says "RTX 5070 Ti"',
      "clock is -2500 ms off the controller's (enable NTP/chrony)",
    ]);
  });

  it('several problems: all reasons, in a stable order', () => {
    const facts: ProbeFacts = {
      ...parseProbe(withGpu('0, NVIDIA GeForce RTX 4070, 8188, 312, 0, 470.82.01\ngpu_rc=0\n')),
      torch: null,
      disk: { path: '/', freeGiB: 0.5, totalGiB: 10 },
    };
    expect(verdict('gpu1', facts).reasons.map((r) => r.split(' ').slice(0, 2).join(' '))).toEqual([
      'torch not',
      'NVIDIA driver',
      'only 0.5',
    ]);
  });
});

/** A fake connection that records what it was asked and answers from a script. */
function fakeConnection(answer: (argv: readonly string[]) => ExecResult | Error, opts: { connectMs?: number } = {}) {
  const calls: (readonly string[])[] = [];
  const conn = {
    connected: false,
    lastConnectMs: undefined as number | undefined,
    async exec(argv: readonly string[], eo: ExecOptions = {}): Promise<ExecResult> {
      calls.push(argv);
      const a = answer(argv);
      if (a instanceof Error) throw a;
      conn.connected = true;
      conn.lastConnectMs = opts.connectMs;
      if (a.stdout) eo.onStdout?.(Buffer.from(a.stdout));
      return a;
    },
  };
  return { conn: conn as unknown as HostConnection, calls };
}
const result = (stdout: string, code = 0, stderr = ''): ExecResult => ({
  code,
  signal: null,
  stdout,
  stderr,
  durationMs: 1,
});

describe('probeCluster over a recording fake', () => {
  it('probes each host with argv only (script, project, python as separate words) and judges each', async () => {
    const good = fakeConnection(
      (argv) =>
        argv[0] === 'true' ? result('') : argv[0] === 'date' ? result('1795562573291212945\n') : result(CAPTURED_GPU1),
      { connectMs: 42 },
    );
    const refused = fakeConnection(
      () => new HostError('gpu-master', 'refused', 'ssh: connection refused by 10.0.0.10:22 (is sshd running there?)'),
    );
    const noProbe = fakeConnection((argv) =>
      argv[0] === 'true'
        ? result('')
        : argv[0] === 'date'
          ? result('1795562573291212945\n')
          : result('', 127, 'sh: 1: exec: sh: not found'),
    );
    const byName: Record<string, HostConnection> = { 'gpu-master': refused.conn, gpu1: good.conn, cpu1: noProbe.conn };
    let t = 1000;
    const nodes = await probeCluster(
      C,
      {
        connection: (h) => byName[h],
        now: () => (t += 5),
        clock: () => new Date(AT),
        wallClockNs: () => 1795562573291212945n - 40_000_000n,
      },
      ['gpu-master', 'gpu1', 'cpu1'],
    );

    expect(nodes.map((n) => [n.name, n.status])).toEqual([
      ['gpu-master', 'NotReady'],
      ['gpu1', 'Ready'],
      ['cpu1', 'NotReady'],
    ]);
    // The host name is not repeated inside its own reason.
    expect(nodes[0].reasons).toEqual(['ssh: connection refused by 10.0.0.10:22 (is sshd running there?)']);
    expect(nodes[2].reasons).toEqual(['probe failed (exit 127): sh: 1: exec: sh: not found']);
    // Connect, then the clock on a tiny exec of its own (an unbiased midpoint), then the probe.
    expect(good.calls).toEqual([
      ['true'],
      ['date', '+%s%N'],
      ['sh', '-c', PROBE_SCRIPT, 'ugro-probe', '/home/ob/ugro', 'python3'],
    ]);
    expect(nodes[1]).toMatchObject({ connectMs: 42, checkedAt: AT });
    // The fake clock is shared by three parallel probes, so only its sign and step are certain.
    expect(nodes[1].rttMs! % 5).toBe(0);
    expect(nodes[1].rttMs).toBeGreaterThan(0);
    // Remote clock 40 ms ahead of the (injected) local wall clock.
    expect(nodes[1].clockOffsetMs).toBeCloseTo(40, 6);
  });
});
