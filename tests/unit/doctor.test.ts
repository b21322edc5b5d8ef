/**
 * `ugro doctor`, the pure parts: the GPU health parser and judge on the stand-in's fixtures (NVIDIA's
 * formats, tests/fixtures/nvidia-smi/), XID lines from the kernel log, the health judge that now holds
 * an XID or a degraded PCIe link against its host, and the doctor's report over answers as the hosts
 * give them (a healthy lab, a host cut off, a version skew).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type Cluster, type Host, parseCluster } from '../../config/cluster.ts';
import { blame, type DoctorInput, doctorReport } from '../../controller/backends/doctor.ts';
import {
  judgeGpuHealth,
  parseGpuHealthCsv,
  parseXidLines,
  recentXids,
  throttleReasons,
} from '../../controller/backends/gpu-health.ts';
import { judge, type NodeHealth, parseProbe } from '../../controller/backends/health.ts';
import { reachableGroup } from '../../controller/backends/ssh/doctor.ts';

const fixture = (name: string) =>
  readFileSync(new URL(`../fixtures/nvidia-smi/${name}`, import.meta.url), 'utf8').replace(/\n$/, '');

describe('GPU health (nvidia-smi health query, the stand-in fixtures)', () => {
  it('an idle card at gen 1 of 4, x16 of x16, [N/A] ECC: healthy (idle drops the generation by design)', () => {
    const [g] = parseGpuHealthCsv(fixture('health-ok.noheader.csv'));
    expect(g).toMatchObject({
      index: 0,
      busId: '00000000:01:00.0',
      temperatureC: 34,
      throttle: [],
      link: { gen: 1, genMax: 4, width: 16, widthMax: 16 },
      driver: '570.133.07',
    });
    expect(g.ecc).toBeUndefined();
    expect(judgeGpuHealth(g)).toEqual([]);
  });

  it('the header line (csv without noheader) is not a GPU', () => {
    expect(parseGpuHealthCsv(fixture('health-ok.csv'))).toHaveLength(1);
  });

  it('a degraded link (x4 of x16) fails and says what to do', () => {
    const [g] = parseGpuHealthCsv(fixture('health-pcie-degraded.noheader.csv'));
    expect(judgeGpuHealth(g)).toEqual([
      { level: 'fail', message: 'GPU 0 PCIe link x4 of x16 (degraded): reseat the card, check its riser and slot' },
    ]);
  });

  it('thermal slowdown at 93 C warns with the reasons by name (idle and power cap are masked out)', () => {
    const [g] = parseGpuHealthCsv(fixture('health-throttled.noheader.csv'));
    expect(g.throttle).toEqual(['hw_slowdown', 'sw_thermal_slowdown', 'hw_thermal_slowdown']);
    expect(judgeGpuHealth(g).map((f) => f.level)).toEqual(['warn', 'warn']);
    expect(throttleReasons(0x1 | 0x4)).toEqual([]);
  });

  it("an old driver's refusal is no GPU line; a lower generation counts only under load; ECC errors fail", () => {
    expect(parseGpuHealthCsv(fixture('health-old-driver.txt'))).toEqual([]);
    const busy = parseGpuHealthCsv(`${fixture('health-ok.noheader.csv')}, 97`)[0];
    expect(busy.utilizationPct).toBe(97);
    expect(judgeGpuHealth(busy)).toEqual([{ level: 'warn', message: 'GPU 0 PCIe gen 1 of 4 under load' }]);
    const a100 = '0, 00000000:01:00.0, 40, 0x0000000000000000, Not Active, Not Active, Not Active, 4, 4, 16, 16, ';
    const [e] = parseGpuHealthCsv(`${a100}Enabled, 3, 570.133.07, 50`);
    expect(e.ecc).toEqual({ mode: 'Enabled', uncorrected: 3 });
    expect(judgeGpuHealth(e)).toEqual([{ level: 'fail', message: 'GPU 0 has 3 uncorrected ECC errors: reset it' }]);
  });
});

describe('XID lines', () => {
  it('journalctl -k -o short-unix: the XID 79 of the fixture, by bus, code and text; the load lines are not', () => {
    expect(parseXidLines(fixture('journalctl-k-ok.txt').split('\n'))).toEqual([]);
    const ev = parseXidLines(fixture('journalctl-k-xid.txt').split('\n'));
    expect(ev).toEqual([
      {
        timeS: 1796628887.937742,
        bus: '0000:01:00',
        code: 79,
        text: "pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
      },
    ]);
  });

  it('dmesg lines are placed on the clock by the boot time; without it they are skipped', () => {
    const line = '[ 1234.500000] NVRM: Xid (PCI:0000:02:00): 13, pid=4242, name=python3, Graphics Exception';
    expect(parseXidLines([line])).toEqual([]);
    expect(parseXidLines([line], 1_000_000)[0]).toMatchObject({ timeS: 1_001_234.5, bus: '0000:02:00', code: 13 });
  });

  it('only the last 24 hours count', () => {
    const e = { timeS: 1000, bus: 'b', code: 79, text: '' };
    expect(recentXids([e], 1000 + 23 * 3600)).toHaveLength(1);
    expect(recentXids([e], 1000 + 25 * 3600)).toHaveLength(0);
  });
});

const CLUSTER_TEXT = `
cluster:
  name: t
  master: { hostname: gpu-master, ip: 10.0.0.10, user: master, hardware: { gpu_model: "RTX 5070 Ti", vram_gb: 12 } }
workers:
  - { name: gpu1, hostname: gpu1, ip: 10.0.0.11, user: ob, rank: 1, hardware: { gpu_model: "RTX 4070", vram_gb: 8 } }
  - { name: gpu2, hostname: gpu2, ip: 10.0.0.12, user: ollie, rank: 2, hardware: { gpu_model: "RTX 3070", vram_gb: 8 } }
`;
function cluster(): Cluster {
  const r = parseCluster(CLUSTER_TEXT, '/x/c.yaml', { env: {}, home: '/root', user: 'root' });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.value;
}
const C = cluster();
const host = (name: string): Host => C.hosts.find((h) => h.name === name)!;

/** A probe answer as probe.sh prints it on gpu1 (stand-in nvidia-smi), with this GPU line and @@xid section. */
const probeOut = (clockS: number, gpuLine: string, xid: string) =>
  `@@clock\n${clockS}000000000\n@@hostname\ngpu1\n@@os\nDebian GNU/Linux 12 (bookworm)\n@@kernel\n6.1\n` +
  '@@python\nversion=3.11.2\nexecutable=/usr/bin/python3\ntorch=1.13.0a0\ntorch_cuda=none\npython_rc=0\n' +
  `@@gpu\n${gpuLine}\ngpu_rc=0\n@@xid\n${xid}` +
  '@@disk\n/dev/vda         264212084 23992092  82398820      23% /\n@@end\n';
const GPU_OK = '0, NVIDIA GeForce RTX 4070, 8188, 550, 0, 570.133.07, 34, 13.00, 00000000:01:00.0, 16, 16';
const XID_LINE = fixture('journalctl-k-xid.txt').split('\n')[4];
const XID_AT = 1796628887;
const AT = '2026-12-07T07:00:00.000Z';
const healthOf = (out: string) => judge(host('gpu1'), C, parseProbe(out), {}, AT);

describe('the health judge takes the GPU health findings (every health round)', () => {
  it('an XID 79 within 24 h of the host clock: NotReady, naming the XID, the GPU and the fix', () => {
    const h = healthOf(probeOut(XID_AT + 60, GPU_OK, `source=journalctl\nxid=${XID_LINE}\nlines=7\n`));
    expect(h.status).toBe('NotReady');
    expect(h.reasons).toEqual([
      'XID 79 on the GPU at PCI 0000:01:00 at 2026-12-07T07:34:47Z: GPU has fallen off the bus.; ' +
        'reboot the host (reseat the card if it comes back)',
    ]);
    expect(h.xids?.map((x) => x.code)).toEqual([79]);
  });

  it('the same XID two days old, or none: Ready', () => {
    expect(healthOf(probeOut(XID_AT + 48 * 3600, GPU_OK, `source=journalctl\nxid=${XID_LINE}\nlines=7\n`)).status).toBe(
      'Ready',
    );
    const h = healthOf(probeOut(XID_AT, GPU_OK, 'source=journalctl\nlines=3\n'));
    expect([h.status, h.reasons, h.warnings, h.xids]).toEqual(['Ready', [], [], undefined]);
  });

  it("an application's XID (13) warns only; an unreadable kernel log warns that it cannot tell", () => {
    const x13 = `${XID_AT} gpu1 kernel: NVRM: Xid (PCI:0000:01:00): 13, pid=77, name=python3, Graphics Exception`;
    const h = healthOf(probeOut(XID_AT, GPU_OK, `source=journalctl\nxid=${x13}\nlines=9\n`));
    expect(h.status).toBe('Ready');
    expect(h.warnings[0]).toMatch(/^XID 13 on the GPU at PCI 0000:01:00 at .*Graphics Exception$/);
    const blind = healthOf(probeOut(XID_AT, GPU_OK, 'source=journalctl\nlines=0\n'));
    expect(blind.status).toBe('Ready');
    expect(blind.warnings).toEqual([
      'cannot read the kernel log for XID errors (journalctl): add ob to the group adm or systemd-journal',
    ]);
  });

  it('a PCIe link narrower than its maximum: NotReady', () => {
    const h = healthOf(probeOut(XID_AT, GPU_OK.replace(/16, 16$/, '4, 16'), 'source=journalctl\nlines=3\n'));
    expect(h.reasons).toEqual(['GPU 0 PCIe link x4 of x16 (degraded): reseat the card, check its riser and slot']);
    expect(h.gpus[0]).toMatchObject({ busId: '00000000:01:00.0', linkWidth: 4, linkWidthMax: 16 });
  });
});

// ---- the doctor's report over raw answers

const names = ['gpu-master', 'gpu1', 'gpu2'];
const node = (name: string, over: Partial<NodeHealth> = {}): NodeHealth => ({
  name,
  address: `${host(name).address}:22`,
  user: host(name).user,
  role: host(name).role,
  status: 'Ready',
  reasons: [],
  warnings: [],
  clockOffsetMs: 2,
  python: '3.11.2',
  torch: { version: '1.13.0a0', cuda: 'none' },
  gpus: [],
  checkedAt: AT,
  ...over,
});
const ok = (stdout: string) => ({ stdout, code: 0 });
const doctorSh = (name: string) =>
  ok(
    `@@doctor\niface=eth0\ncuda_driver=12.8\ndisk_path=/home/${name}/ugro\ndisk_total_kb=264212084\n` +
      `disk_free_kb=78336100\n@@end\n@@gpu-health\nline=${fixture('health-ok.noheader.csv')}, 0\nrc=0\n@@end\n`,
  );
const connects = (from: string, result: (to: string) => string) =>
  ok(
    names
      .filter((n) => n !== from)
      .map((to) => `@@connect\npeer=${to}\nresult=${result(to)}\nms=0.2\nerror=\n@@end\n`)
      .join(''),
  );
const rank = (torch = '1.13.0a0') => `@@rank\ntorch=${torch}\nnccl=none\nimport_s=0.9\n@@end\n`;
const figure = (id: string) =>
  `@@allreduce ${id}\nlat_us=150.5\ntime_ms=4.2\nbytes=4194304\nbusbw_gbps=0.9987\n@@end\n`;

function healthy(): DoctorInput {
  return {
    rdzvHost: 'gpu-master',
    basePort: 29500,
    hosts: names.map((n) => ({ name: n, health: node(n), doctor: doctorSh(n) })),
    listen: Object.fromEntries(names.map((n) => [n, ok('@@listen\nport=29500\n@@end\n')])),
    connect: Object.fromEntries(names.map((n) => [n, connects(n, () => 'ok')])),
    targets: Object.fromEntries(names.map((n) => [n, { address: host(n).address, port: 29500, listening: true }])),
    allreduce: {
      backend: 'gloo',
      ranks: names,
      pairs: [
        [0, 1],
        [0, 2],
        [1, 2],
      ],
      outputs: [
        {
          host: 'gpu-master',
          exec: ok(`@@port\nport=29501\n@@end\n${rank()}${figure('0-1')}${figure('0-2')}@@done\n@@end\n`),
        },
        { host: 'gpu1', exec: ok(`${rank()}${figure('1-2')}@@done\n@@end\n`) },
        { host: 'gpu2', exec: ok(`${rank()}@@done\n@@end\n`) },
      ],
    },
    ms: 2500,
  };
}

describe('doctorReport', () => {
  it('a healthy lab: ok, six ordered pairs, an all-reduce figure per pair, versions side by side', () => {
    const r = doctorReport(C, healthy());
    expect(r.ok).toBe(true);
    expect(r.checks).toEqual([]);
    expect(r.pairs.map((p) => `${p.from}>${p.to} ${p.result}`)).toEqual([
      'gpu-master>gpu1 ok',
      'gpu-master>gpu2 ok',
      'gpu1>gpu-master ok',
      'gpu1>gpu2 ok',
      'gpu2>gpu-master ok',
      'gpu2>gpu1 ok',
    ]);
    expect(r.allreduce.pairs).toEqual(
      [
        ['gpu-master', 'gpu1'],
        ['gpu-master', 'gpu2'],
        ['gpu1', 'gpu2'],
      ].map(([a, b]) => ({ a, b, latencyUs: 150.5, busbwGBps: 0.9987, timeMs: 4.2, bytes: 4194304 })),
    );
    expect(r.hosts[1]).toMatchObject({
      status: 'Ready',
      iface: 'eth0',
      versions: { driver: '570.133.07', cuda: '12.8', torch: '1.13.0a0', nccl: 'none', python: '3.11.2' },
      checkpointDisk: { path: '/home/gpu1/ugro' },
    });
    expect(r.skew).toEqual([]);
  });

  it('a host cut off: every pair with it fails by name, it is NotReady, its peers stay Ready', () => {
    const raw = healthy();
    const cut = 'ssh: connect to 10.0.0.12:22 timed out after 3000 ms';
    raw.hosts[2] = {
      name: 'gpu2',
      health: node('gpu2', { status: 'NotReady', reasons: [cut] }),
      doctor: { stdout: '', code: null, error: cut } as never,
    };
    delete raw.listen.gpu2;
    delete raw.connect.gpu2;
    raw.targets.gpu2.listening = false;
    raw.connect['gpu-master'] = connects('gpu-master', (to) => (to === 'gpu2' ? 'timeout' : 'ok'));
    raw.connect.gpu1 = connects('gpu1', (to) => (to === 'gpu2' ? 'timeout' : 'ok'));
    raw.allreduce = {
      backend: 'gloo',
      ranks: ['gpu-master', 'gpu1'],
      pairs: [[0, 1]],
      outputs: [
        { host: 'gpu-master', exec: ok(`${rank()}${figure('0-1')}@@done\n@@end\n`) },
        { host: 'gpu1', exec: ok(`${rank()}@@done\n@@end\n`) },
      ],
    };
    const r = doctorReport(C, raw);
    expect(r.ok).toBe(false);
    expect(r.hosts.map((h) => [h.name, h.status])).toEqual([
      ['gpu-master', 'Ready'],
      ['gpu1', 'Ready'],
      ['gpu2', 'NotReady'],
    ]);
    const net = r.checks.filter((c) => c.check === 'network').map((c) => c.message.split(':')[0]);
    expect(net).toEqual(['gpu-master -> gpu2', 'gpu1 -> gpu2', 'gpu2 -> gpu-master', 'gpu2 -> gpu1']);
    expect(r.checks.filter((c) => c.check === 'network').every((c) => c.hosts.join() === 'gpu2')).toBe(true);
    expect(r.hosts[2].reasons[0]).toBe(cut);
    const ar = r.allreduce.pairs.map((p) => [p.a, p.b, p.busbwGBps ?? p.error]);
    expect(ar).toEqual([
      ['gpu-master', 'gpu1', 0.9987],
      ['gpu-master', 'gpu2', 'not run: the two hosts do not both reach the group'],
      ['gpu1', 'gpu2', 'not run: the two hosts do not both reach the group'],
    ]);
  });

  it('a torch skew fails, a python skew warns; a rank that died fails its pairs with its error', () => {
    const raw = healthy();
    raw.allreduce!.outputs[2] = { host: 'gpu2', exec: { stdout: rank('2.1.0'), code: 1, stderr: 'RuntimeError: x' } };
    raw.allreduce!.outputs[1] = { host: 'gpu1', exec: ok(rank()) };
    raw.allreduce!.outputs[0] = { host: 'gpu-master', exec: ok(`${rank()}${figure('0-1')}`) };
    raw.hosts[1].health = node('gpu1', { python: '3.12.1' });
    const r = doctorReport(C, raw);
    expect(r.skew.map((s) => [s.field, s.values])).toEqual([
      ['torch', { 'gpu-master': '1.13.0a0', gpu1: '1.13.0a0', gpu2: '2.1.0' }],
      ['python', { 'gpu-master': '3.11.2', gpu1: '3.12.1', gpu2: '3.11.2' }],
    ]);
    const byCheck = r.checks.map((c) => `${c.level} ${c.check}`);
    expect(byCheck).toContain('fail versions');
    expect(byCheck).toContain('warn versions');
    expect(r.allreduce.pairs.filter((p) => p.error).map((p) => p.error)).toEqual([
      'gpu2: RuntimeError: x',
      'gpu2: RuntimeError: x',
    ]);
  });

  it('a GPU with a degraded link or an XID makes its host NotReady with the reason; low checkpoint disk too', () => {
    const raw = healthy();
    const xid = parseXidLines([XID_LINE]);
    raw.hosts[1].health = node('gpu1', { status: 'NotReady', reasons: ['XID 79 ...'], xids: xid });
    raw.hosts[2].doctor = ok(
      raw.hosts[2].doctor.stdout
        .replace(/line=.*/, `line=${fixture('health-pcie-degraded.noheader.csv')}, 0`)
        .replace(/disk_free_kb=\d+/, 'disk_free_kb=1048576'),
    );
    const r = doctorReport(C, raw);
    expect(r.hosts.map((h) => h.status)).toEqual(['Ready', 'NotReady', 'NotReady']);
    expect(r.hosts[1].xids[0].code).toBe(79);
    expect(r.hosts[2].reasons).toEqual([
      'GPU 0 PCIe link x4 of x16 (degraded): reseat the card, check its riser and slot',
      'only 1.0 GiB free for checkpoints at /home/gpu2/ugro (< 5 GiB)',
    ]);
  });
});

describe('who to blame, and who takes part in the all-reduce', () => {
  it('the end in more failed pairs; both when even', () => {
    const failed: [string, string][] = [
      ['a', 'c'],
      ['b', 'c'],
      ['c', 'a'],
    ];
    expect(blame(failed, ['a', 'c'])).toEqual(['c']);
    expect(blame([['a', 'b']], ['a', 'b'])).toEqual(['a', 'b']);
  });

  it('the largest group whose every ordered pair connected, dropping the worst host first', () => {
    const bad = new Set(['a>c', 'c>b']);
    expect(reachableGroup(['a', 'b', 'c'], (x, y) => !bad.has(`${x}>${y}`))).toEqual(['a', 'b']);
    expect(reachableGroup(['a', 'b'], () => true)).toEqual(['a', 'b']);
  });
});
