/**
 * The lab's knobs on real hosts: `speed H FACTOR` (a cgroup CPU quota: a real slowdown) and
 * `mem H MiB` (a cgroup memory limit: a real OOM kill by the kernel), both undone; then the
 * stand-in GPU's health answers (nvidia-smi fields, the kernel log's XID) over ssh, equal to the
 * fixtures in tests/fixtures/nvidia-smi that unit tests parse. Every knob is undone in afterAll.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB_SH, lab, labNominal, ROOT } from './helpers.ts';

const CG = '/sys/fs/cgroup';
const FIXTURES = join(ROOT, 'tests/fixtures/nvidia-smi');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');

/** A command on a lab host over ssh (as its user, lab key): its exit code and output. */
function onHost(host: string, command: string): Promise<{ code: number; out: string; err: string }> {
  return new Promise((done) => {
    execFile('bash', [LAB_SH, 'ssh', host, command], { cwd: ROOT, timeout: 60_000 }, (e, out, err) => {
      const code = e ? (typeof e.code === 'number' ? e.code : -1) : 0;
      done({ code, out: String(out), err: String(err) });
    });
  });
}

const cpuStat = (host: string) =>
  Object.fromEntries(
    readFileSync(`${CG}/cpu/ugro-lab/${host}/cpu.stat`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' ') as [string, string])
      .map(([k, v]) => [k, Number(v)]),
  ) as Record<string, number>;
const oomKills = (host: string) =>
  Number(/oom_kill (\d+)/.exec(readFileSync(`${CG}/memory/ugro-lab/${host}/memory.oom_control`, 'utf8'))![1]);

// A fixed amount of CPU-bound work (~1 s on one free core here: 20 CFS periods at half a core): its wall and CPU
// seconds, and the cpu cgroup it ran in (started over ssh after the knob: it inherits the host's cgroup).
const LOOP =
  'grep ":cpu:" /proc/self/cgroup; python3 -c "import time\n' +
  't = time.perf_counter(); c = time.process_time(); i = 0\n' +
  'while i < 30000000: i += 1\n' +
  'print(time.perf_counter() - t, time.process_time() - c)"';
async function loop(host: string): Promise<{ cgroup: string; wall: number; cpu: number }> {
  const r = await onHost(host, LOOP);
  expect(r.code, r.err).toBe(0);
  const [cgroup, times] = r.out.trim().split('\n');
  const [wall, cpu] = times.split(' ').map(Number);
  return { cgroup, wall, cpu };
}

/**
 * The least slowdown a half-core cap must show against a run that got `share` of a core: share /
 * 0.5, less 15% for noise, and never below 0.85 (the machine's other load can hold the free run
 * under half a core too; then only the cap's ceiling and the throttle counter tell).
 */
const expectedSlowdown = (free: { wall: number; cpu: number }) => 0.85 * Math.max(1, free.cpu / free.wall / 0.5);

// Allocates (and writes: really charged) 200 MiB; its pid first, its exit status and the host's
// memory cgroup's OOM record after, read on the host as a controller would.
const ALLOC =
  'python3 -c "import os; print(os.getpid(), flush=True); b = b\\"x\\" * (200 << 20); print(\\"allocated\\")"; ' +
  'echo "rc=$?"; cat "/sys/fs/cgroup/memory$(sed -n "s/^[0-9]*:memory://p" /proc/self/cgroup)/memory.oom_control"';

const HOSTS = ['gpu-master', 'gpu1', 'gpu2'];
beforeAll(() => {
  labNominal();
  for (const h of HOSTS) lab('gpu', h, 'ok');
});
afterAll(() => {
  // whatever a failed test left behind
  for (const h of HOSTS) {
    lab('speed', h, '1');
    lab('mem', h, 'off');
    lab('gpu', h, 'ok');
  }
});

describe('lab speed: a cgroup CPU quota on every process of a host', () => {
  it('speed 0.5 caps a host at half a core (throttled, slower than an unlimited host); speed 1 lifts it', async () => {
    // a process of the host started before the knob is moved too
    const before = await onHost('gpu1', 'sleep 60 >/dev/null 2>&1 & echo $!');
    const sleeper = Number(before.out.trim());
    try {
      lab('speed', 'gpu1', '0.5');
      lab('speed', 'gpu1', '0.5'); // idempotent
      expect(lab('status')).toMatch(/^gpu1 .* 0\.5x1cpu +off\s*$/m);
      // Half of a 10 ms period (knobs.sh: a short period so a step's time follows the factor).
      expect(readFileSync(`${CG}/cpu/ugro-lab/gpu1/cpu.cfs_period_us`, 'utf8').trim()).toBe('10000');
      expect(readFileSync(`${CG}/cpu/ugro-lab/gpu1/cpu.cfs_quota_us`, 'utf8').trim()).toBe('5000');
      expect(readFileSync(`/proc/${sleeper}/cgroup`, 'utf8')).toMatch(/^\d+:cpu:\/ugro-lab\/gpu1$/m);

      const t0 = cpuStat('gpu1').nr_throttled;
      const [slow, free] = await Promise.all([loop('gpu1'), loop('gpu2')]); // same contention for both
      expect(slow.cgroup).toMatch(/:cpu:\/ugro-lab\/gpu1$/);
      // The quota is a ceiling: never more than half a core (load elsewhere only lowers it).
      expect(slow.cpu / slow.wall).toBeLessThan(0.6);
      expect(cpuStat('gpu1').nr_throttled).toBeGreaterThan(t0);
      // Slower by what the cap takes away: the free host's CPU share over the cap's half core
      // (~2x on an idle machine; on a busy one the free host gets less and the gap shrinks).
      expect(slow.wall / free.wall).toBeGreaterThan(expectedSlowdown(free));

      lab('speed', 'gpu1', '1');
      expect(lab('status')).toMatch(/^gpu1 .* 1 +off\s*$/m);
      const t1 = cpuStat('gpu1').nr_throttled;
      const restored = await loop('gpu1');
      expect(cpuStat('gpu1').nr_throttled).toBe(t1); // no quota, no throttling
      expect(slow.wall / restored.wall).toBeGreaterThan(expectedSlowdown(restored));
    } finally {
      await onHost('gpu1', `kill ${sleeper} 2>/dev/null; true`);
      lab('speed', 'gpu1', '1');
    }
  });

  it('rejects bad arguments with the usage', () => {
    for (const args of [
      ['gpu1', '0'],
      ['gpu1', '1.5'],
      ['gpu1', 'fast'],
      ['gpu1', '0.5', '--cores', '99'],
    ])
      expect(() => lab('speed', ...args)).toThrow(/speed: .*(FACTOR|--cores) '.*' is not a number/);
    expect(() => lab('speed', 'gpu9', '0.5')).toThrow(/unknown host 'gpu9'/);
  });
});

describe('lab mem: a cgroup memory limit, a real OOM kill', () => {
  it('mem 64: 200 MiB is OOM-killed (SIGKILL, 137) and the cgroup records it; mem off: it succeeds', async () => {
    try {
      lab('mem', 'gpu2', '64');
      lab('mem', 'gpu2', '64'); // idempotent
      expect(lab('status')).toMatch(/^gpu2 .* 1 +64MiB\s*$/m);
      const kills = oomKills('gpu2');
      const r = await onHost('gpu2', ALLOC);
      const pid = r.out.split('\n')[0];
      expect(r.out).not.toContain('allocated');
      expect(r.out).toContain('rc=137'); // 128 + SIGKILL
      // the record, from the host itself (as a controller over ssh) and from the root
      expect(Number(/oom_kill (\d+)/.exec(r.out)?.[1])).toBe(kills + 1);
      expect(oomKills('gpu2')).toBe(kills + 1);
      // the kernel's own line names the pid and the memory cgroup
      const dmesg = await new Promise<string>((done) => execFile('dmesg', (_e, out) => done(String(out))));
      expect(dmesg).toContain(`Memory cgroup out of memory: Killed process ${pid} (python3)`);
      expect(dmesg).toMatch(new RegExp(`oom_memcg=/ugro-lab/gpu2,task_memcg=/ugro-lab/gpu2,task=python3,pid=${pid},`));

      lab('mem', 'gpu2', 'off');
      expect(lab('status')).toMatch(/^gpu2 .* 1 +off\s*$/m);
      const ok = await onHost('gpu2', ALLOC);
      expect(ok.out).toContain('allocated');
      expect(ok.out).toContain('rc=0');
    } finally {
      lab('mem', 'gpu2', 'off');
    }
  });

  it('rejects bad arguments with the usage', () => {
    for (const mib of ['8', '64M', '-1', 'none'])
      expect(() => lab('mem', 'gpu2', mib)).toThrow(/mem: '.*' is not a whole number of MiB in 16\.\.\d+, or 'off'/);
  });
});

// The doctor's queries: what the stand-in answers over ssh is what the fixtures hold.
const HEALTH =
  'index,pci.bus_id,temperature.gpu,clocks_event_reasons.active,clocks_event_reasons.hw_slowdown,' +
  'clocks_event_reasons.sw_thermal_slowdown,clocks_event_reasons.hw_thermal_slowdown,pcie.link.gen.current,' +
  'pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max,ecc.mode.current,' +
  'ecc.errors.uncorrected.volatile.total,driver_version';
const smi = (format: string) => `nvidia-smi --query-gpu=${HEALTH} --format=${format}`;
const KERNEL_LOG = 'journalctl -k -b 0 --no-pager -q -o short-unix';
const noTimes = (s: string) => s.replace(/^\d+\.\d{6} /gm, 'T ');

describe('stand-in GPU health: nvidia-smi fields and the kernel log, per gpu mode', () => {
  it('ok, pcie-degraded, throttled, old-driver: the fixtures, line for line', async () => {
    try {
      expect((await onHost('gpu1', smi('csv'))).out).toBe(fixture('health-ok.csv'));
      expect((await onHost('gpu1', smi('csv,noheader,nounits'))).out).toBe(fixture('health-ok.noheader.csv'));
      for (const mode of ['pcie-degraded', 'throttled']) {
        lab('gpu', 'gpu1', mode);
        expect(lab('status')).toMatch(new RegExp(`^gpu1 .* ${mode} `, 'm'));
        expect((await onHost('gpu1', smi('csv,noheader,nounits'))).out).toBe(fixture(`health-${mode}.noheader.csv`));
      }
      lab('gpu', 'gpu1', 'old-driver');
      const old = await onHost('gpu1', `${smi('csv,noheader,nounits')}; echo exit=$?`);
      expect(old.out).toBe(fixture('health-old-driver.txt'));
      const alias = await onHost('gpu1', 'nvidia-smi --query-gpu=clocks_throttle_reasons.active --format=csv');
      expect(alias.out).toBe('clocks_throttle_reasons.active\n0x0000000000000001\n'); // the old name works
    } finally {
      lab('gpu', 'gpu1', 'ok');
    }
  });

  it('xid: an XID 79 in the kernel log (journalctl -k); ok clears it', async () => {
    try {
      expect(noTimes((await onHost('gpu1', KERNEL_LOG)).out)).toBe(noTimes(fixture('journalctl-k-ok.txt')));
      const t0 = Math.floor(Date.now() / 1000);
      lab('gpu', 'gpu1', 'xid');
      const log = await onHost('gpu1', KERNEL_LOG);
      expect(noTimes(log.out)).toBe(noTimes(fixture('journalctl-k-xid.txt')));
      const xid = /^(\d+)\.\d{6} gpu1 kernel: NVRM: Xid \(PCI:0000:01:00\): 79, /m.exec(log.out);
      expect(Number(xid?.[1])).toBeGreaterThanOrEqual(t0);
      // the filters a doctor may use: --grep, --since
      const grep = await onHost('gpu1', `journalctl -k -b 0 --no-pager -q -o cat --grep 'NVRM: Xid' --since @${t0}`);
      expect(grep.out).toBe(
        "NVRM: Xid (PCI:0000:01:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n",
      );
      // nvidia-smi still answers (the XID is history in the log)
      expect((await onHost('gpu1', smi('csv,noheader,nounits'))).out).toBe(fixture('health-ok.noheader.csv'));
      lab('gpu', 'gpu1', 'ok');
      expect(await onHost('gpu1', `journalctl -k --no-pager -q --grep 'NVRM: Xid'`)).toMatchObject({
        code: 0,
        out: '',
      });
      expect((await onHost('gpu2', KERNEL_LOG)).out).not.toContain('Xid');
    } finally {
      lab('gpu', 'gpu1', 'ok');
    }
  });
});
