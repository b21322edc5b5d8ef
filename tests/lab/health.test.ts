/**
 * `ugro health` against the lab, through the real CLI entry in-process: three Ready nodes with
 * the stand-in GPUs, then each fault (sshd stopped, link cut, nvidia-smi absent / old driver /
 * failing) gives NotReady with the reason a person can act on, and exit 1. Then host-key
 * pinning with `ugro hosts trust`. Every fault is undone in `finally`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeHealth } from '../../controller/backends/health.ts';
import { SshPool } from '../../controller/backends/ssh/pool.ts';
import { probeCluster } from '../../controller/backends/ssh/probe.ts';
import { main } from '../../controller/cli/main.ts';
import {
  captureIo,
  hostPubKeyFile,
  LAB_CLUSTER_FILE,
  lab,
  labAvailable,
  labCluster,
  labNominal,
  newEd25519Key,
  sshKeygenFingerprint,
  tempLabCluster,
} from './helpers.ts';

labAvailable();

async function ugro(args: string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
  const cap = captureIo();
  const t0 = performance.now();
  const code = await main(['node', 'ugro', ...args], cap.io, process.env);
  return { code, out: cap.out(), err: cap.err(), ms: performance.now() - t0 };
}

async function health(
  opts: { cluster?: string; hosts?: string[] } = {},
): Promise<{ code: number; nodes: NodeHealth[]; ms: number; err: string }> {
  const r = await ugro(['--cluster', opts.cluster ?? LAB_CLUSTER_FILE, 'health', ...(opts.hosts ?? []), '-o', 'json']);
  expect(r.err).toBe('');
  return { code: r.code, nodes: JSON.parse(r.out) as NodeHealth[], ms: r.ms, err: r.err };
}
const node = (nodes: NodeHealth[], name: string) => nodes.find((n) => n.name === name)!;

beforeAll(() => {
  labNominal(); // every host running and linked
  for (const h of ['gpu-master', 'gpu1', 'gpu2']) lab('gpu', h, 'ok');
});
afterAll(() => {
  // Belt and braces: whatever a failed test left behind.
  for (const h of ['gpu-master', 'gpu1', 'gpu2']) lab('gpu', h, 'ok');
});

describe('ugro health on the nominal lab', () => {
  it('three Ready nodes with the stand-in GPUs, exit 0', async () => {
    const { code, nodes } = await health();
    expect(nodes.map((n) => [n.name, n.status, n.reasons])).toEqual([
      ['gpu-master', 'Ready', []],
      ['gpu1', 'Ready', []],
      ['gpu2', 'Ready', []],
    ]);
    expect(code).toBe(0);
    expect(nodes.map((n) => n.gpus.map((g) => [g.index, g.name, g.memoryTotalMiB, g.driver]))).toEqual([
      [[0, 'NVIDIA GeForce RTX 5070 Ti', 12227, '570.133.07']],
      [[0, 'NVIDIA GeForce RTX 4070', 8188, '570.133.07']],
      [[0, 'NVIDIA GeForce RTX 3070 Ti', 8192, '570.133.07']],
    ]);
    // Facts that come from each host itself, not from the cluster file.
    expect(nodes.map((n) => [n.hostname, n.user, n.address])).toEqual([
      ['gpu-master', 'master', '10.250.77.10:22'],
      ['gpu1', 'ob', '10.250.77.11:22'],
      ['gpu2', 'ollie', '10.250.77.12:22'],
    ]);
    for (const n of nodes) {
      expect(n.python).toMatch(/^3\.\d+\.\d+$/);
      expect(n.torch?.version).toMatch(/^\d+\.\d+/);
      expect(n.disk!.freeGiB).toBeGreaterThan(0);
      expect(n.warnings).toEqual([]);
      expect(Math.abs(n.clockOffsetMs!)).toBeLessThan(1000); // same machine, same clock
    }
  });

  it('the table lists every node with status, GPU and driver', async () => {
    const r = await ugro(['--cluster', LAB_CLUSTER_FILE, 'health']);
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/^NODE\s+STATUS\s+ADDRESS\s+GPU\s+DRIVER/);
    expect(lines.slice(1).map((l) => l.split(/\s{2,}/).slice(0, 2))).toEqual([
      ['gpu-master', 'Ready'],
      ['gpu1', 'Ready'],
      ['gpu2', 'Ready'],
    ]);
    expect(r.out).toContain('RTX 4070 8GiB');
    expect(r.out).toContain('570.133.07');
  });

  it('latency: three hosts probed cold (new pool) and warm (same pool again)', async () => {
    const cluster = labCluster();
    const pool = new SshPool(cluster.hosts);
    try {
      const deps = { connection: (h: string) => pool.host(h) };
      let t0 = performance.now();
      const cold = await probeCluster(cluster, deps);
      const coldMs = performance.now() - t0;
      t0 = performance.now();
      const warm = await probeCluster(cluster, deps);
      const warmMs = performance.now() - t0;
      expect(cold.every((n) => n.status === 'Ready')).toBe(true);
      expect(warm.every((n) => n.status === 'Ready')).toBe(true);
      expect(cluster.hosts.map((h) => pool.host(h.name).connectCount)).toEqual([1, 1, 1]);
      const per = (ns: NodeHealth[]) =>
        ns
          .map(
            (n) =>
              `${n.name} rtt ${n.rttMs?.toFixed(1)} ms` +
              (n.connectMs !== undefined ? `, connect ${n.connectMs.toFixed(1)} ms` : ''),
          )
          .join('; ');
      console.log(
        `[health latency] 3 hosts cold (new pool, includes ssh connect): ${coldMs.toFixed(0)} ms (${per(cold)})`,
      );
      console.log(`[health latency] 3 hosts warm (same pool, second probe): ${warmMs.toFixed(0)} ms (${per(warm)})`);
      // The warm probe skips the three handshakes.
      expect(warm.every((n) => n.connectMs === undefined)).toBe(true);
      expect(cold.every((n) => n.connectMs! > 0)).toBe(true);
      expect(warmMs).toBeLessThan(coldMs);
    } finally {
      pool.close();
    }
  });
});

describe('each fault gives NotReady with an actionable reason and exit 1', () => {
  it('sshd stopped on gpu2: "connection refused", the others stay Ready', async () => {
    try {
      lab('stop-host', 'gpu2');
      const { code, nodes, ms } = await health();
      expect(code).toBe(1);
      expect(node(nodes, 'gpu2').status).toBe('NotReady');
      expect(node(nodes, 'gpu2').reasons.join('; ')).toContain('connection refused');
      expect(node(nodes, 'gpu1').status).toBe('Ready');
      expect(node(nodes, 'gpu-master').status).toBe('Ready');
      expect(ms).toBeLessThan(3000);
    } finally {
      lab('start-host', 'gpu2');
    }
    expect((await health({ hosts: ['gpu2'] })).code).toBe(0);
  });

  it('gpu1 cut off the network: "no answer", and the whole command returns within ~5 s', async () => {
    const timeoutMs = labCluster().hosts[1].ssh.connectTimeoutMs;
    try {
      lab('cut', 'gpu1');
      const { code, nodes, ms } = await health();
      console.log(
        `[health] cut gpu1: ugro health returned in ${ms.toFixed(0)} ms (connect timeout ${timeoutMs} ms): ` +
          node(nodes, 'gpu1').reasons[0],
      );
      expect(code).toBe(1);
      expect(node(nodes, 'gpu1').status).toBe('NotReady');
      expect(node(nodes, 'gpu1').reasons[0]).toContain('no answer');
      expect(node(nodes, 'gpu1').reasons[0]).toContain('10.250.77.11:22');
      expect(node(nodes, 'gpu2').status).toBe('Ready');
      expect(ms).toBeLessThan(6000);
    } finally {
      lab('heal', 'gpu1');
    }
    expect((await health({ hosts: ['gpu1'] })).code).toBe(0);
  });

  it('nvidia-smi absent on gpu1: "nvidia-smi not found: no NVIDIA driver"', async () => {
    try {
      lab('gpu', 'gpu1', 'absent');
      const { code, nodes } = await health();
      expect(code).toBe(1);
      expect(node(nodes, 'gpu1')).toMatchObject({
        status: 'NotReady',
        reasons: ['nvidia-smi not found: no NVIDIA driver'],
        gpus: [],
      });
      expect(node(nodes, 'gpu2').status).toBe('Ready');
    } finally {
      lab('gpu', 'gpu1', 'ok');
    }
  });

  it('old driver on gpu1: "NVIDIA driver 470.82.01 < required …"', async () => {
    try {
      lab('gpu', 'gpu1', 'old-driver');
      const { code, nodes } = await health();
      expect(code).toBe(1);
      const n = node(nodes, 'gpu1');
      expect(n.status).toBe('NotReady');
      expect(n.reasons).toEqual(['NVIDIA driver 470.82.01 < required 525.60.13: upgrade the driver']);
      expect(n.gpus[0].driver).toBe('470.82.01');
    } finally {
      lab('gpu', 'gpu1', 'ok');
    }
  });

  it('nvidia-smi failing on gpu1: "nvidia-smi failed (exit 9)" with NVIDIA\'s message', async () => {
    try {
      lab('gpu', 'gpu1', 'failing');
      const { code, nodes } = await health();
      expect(code).toBe(1);
      const n = node(nodes, 'gpu1');
      expect(n.status).toBe('NotReady');
      expect(n.reasons).toHaveLength(1);
      expect(n.reasons[0]).toMatch(
        /^nvidia-smi failed \(exit 9\): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/,
      );
    } finally {
      lab('gpu', 'gpu1', 'ok');
    }
    expect((await health({ hosts: ['gpu1'] })).code).toBe(0);
  });
});

describe('host keys: ugro hosts trust', () => {
  const hostPub = readFileSync(hostPubKeyFile('gpu1'), 'utf8').trim().split(' ');
  const hostFp = sshKeygenFingerprint(hostPubKeyFile('gpu1'));
  const ecPub = readFileSync(hostPubKeyFile('gpu1', 'ecdsa'), 'utf8').trim().split(' ');
  const ecFp = sshKeygenFingerprint(hostPubKeyFile('gpu1', 'ecdsa'));

  it(
    'unpinned host: health says so and names `ugro hosts trust`; ' +
      'trust pins both keys ssh-keygen shows; then Ready',
    async () => {
      const { clusterFile, knownHosts } = tempLabCluster('');
      const before = await health({ cluster: clusterFile, hosts: ['gpu1'] });
      expect(before.code).toBe(1);
      const reason = node(before.nodes, 'gpu1').reasons[0];
      expect(reason).toMatch(/host key of 10\.250\.77\.11:22 is not (pinned )?in /);
      expect(reason).toContain(knownHosts);
      expect(reason).toContain('ugro hosts trust gpu1');

      const t = await ugro(['--cluster', clusterFile, 'hosts', 'trust', 'gpu1']);
      expect(t.err).toBe('');
      expect(t.code).toBe(0);
      expect(t.out).toContain(`gpu1: pinned in ${knownHosts}:\n  ssh-ed25519 ${hostFp}`);
      expect(t.out).toContain(`  ecdsa-sha2-nistp256 ${ecFp}`);
      expect(readFileSync(knownHosts, 'utf8')).toBe(
        `gpu1,10.250.77.11 ${hostPub[0]} ${hostPub[1]}\ngpu1,10.250.77.11 ${ecPub[0]} ${ecPub[1]}\n`,
      );

      const after = await health({ cluster: clusterFile, hosts: ['gpu1'] });
      expect(after.code).toBe(0);
      expect(node(after.nodes, 'gpu1').status).toBe('Ready');

      const again = await ugro(['--cluster', clusterFile, 'hosts', 'trust', 'gpu1']);
      expect(again.code).toBe(0);
      expect(again.out).toContain(`gpu1: ssh-ed25519 ${hostFp} already pinned`);
      expect(readFileSync(knownHosts, 'utf8').split('\n').filter(Boolean)).toHaveLength(2);
    },
  );

  it('trust --fingerprint refuses a key that does not match and pins nothing', async () => {
    const { clusterFile, knownHosts } = tempLabCluster('');
    const wrongFp = sshKeygenFingerprint(newEd25519Key().pubFile);
    const t = await ugro(['--cluster', clusterFile, 'hosts', 'trust', 'gpu1', '--fingerprint', wrongFp]);
    expect(t.code).toBe(1);
    expect(t.err).toContain(
      `REFUSING: the host presents ssh-ed25519 ${hostFp}, ecdsa-sha2-nistp256 ${ecFp}; ` +
        `none has the fingerprint ${wrongFp}`,
    );
    expect(readFileSync(knownHosts, 'utf8')).toBe('');
    const ok = await ugro(['--cluster', clusterFile, 'hosts', 'trust', 'gpu1', '--fingerprint', hostFp]);
    expect(ok.code).toBe(0);
    expect(readFileSync(knownHosts, 'utf8')).toBe(`gpu1,10.250.77.11 ${hostPub[0]} ${hostPub[1]}\n`);
    expect(ok.out).toContain(`not pinned (no --fingerprint given for them): ecdsa-sha2-nistp256 ${ecFp}`);
  });

  it(
    'changed key: health reports "host key changed" with both fingerprints ' +
      '(exit 1); trust refuses and leaves known_hosts alone',
    async () => {
      const wrong = newEd25519Key();
      const wrongFp = sshKeygenFingerprint(wrong.pubFile);
      const [type, b64] = wrong.pubLine.split(' ');
      const text = `gpu1,10.250.77.11 ${type} ${b64}\n`;
      const { clusterFile, knownHosts } = tempLabCluster(text);
      writeFileSync(knownHosts, text);

      const h = await health({ cluster: clusterFile, hosts: ['gpu1'] });
      expect(h.code).toBe(1);
      const reason = node(h.nodes, 'gpu1').reasons[0];
      expect(reason).toContain('host key changed');
      expect(reason).toContain(wrongFp);
      expect(reason).toContain(hostFp);

      const t = await ugro(['--cluster', clusterFile, 'hosts', 'trust', 'gpu1']);
      expect(t.code).toBe(1);
      expect(t.err).toContain('REFUSING');
      expect(t.err).toContain(wrongFp);
      expect(t.err).toContain(hostFp);
      expect(readFileSync(knownHosts, 'utf8')).toBe(text);
    },
  );
});
