/**
 * `ugro doctor [--hosts a,b] [-o table|json|yaml] [--no-allreduce]`: check the lab as a whole before a
 * long run (backends/ssh/doctor.ts runs it, backends/doctor.ts judges it); exit 1 if any check failed.
 */
import type { Command } from 'commander';
import type { DoctorReport } from '../../backends/doctor.ts';
import type { CliContext } from '../context.ts';
import { clean, parseFormat, table } from '../output.ts';

export const DOCTOR_FORMATS = ['table', 'json', 'yaml'] as const;

export function register(program: Command, ctx: CliContext): void {
  program
    .command('doctor')
    .description(
      'check the hosts together before a long run: versions and skew, network pairs, clocks, an all-reduce ' +
        'per host pair, checkpoint disk, GPU health (XID, throttling, PCIe link); exit 1 if any check failed',
    )
    .option('--hosts <names>', 'only these hosts (comma-separated)')
    .option('-o, --output <format>', DOCTOR_FORMATS.join('|'), 'table')
    .option('--no-allreduce', 'skip the all-reduce test (torch is not imported on the hosts)')
    .action(async (o: { hosts?: string; output: string; allreduce: boolean }) => {
      const format = parseFormat(o.output, DOCTOR_FORMATS);
      const [{ NotFoundError }, { runDoctor }, { doctorReport }, { serialize }] = await Promise.all([
        import('../../../config/errors.ts'),
        import('../../backends/ssh/doctor.ts'),
        import('../../backends/doctor.ts'),
        import('../output.ts'),
      ]);
      const cluster = await ctx.loadCluster();
      const names = (o.hosts ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const unknown = names.filter((h) => !cluster.hosts.some((x) => x.name === h));
      if (unknown.length)
        throw new NotFoundError(
          `host ${unknown.join(', ')} not in ${cluster.file} (hosts: ${cluster.hosts.map((h) => h.name).join(', ')})`,
        );
      const hosts = names.length ? cluster.hosts.filter((h) => names.includes(h.name)) : cluster.hosts;
      const pool = await ctx.ssh();
      const raw = await runDoctor(cluster, hosts, { connection: (h) => pool.host(h) }, { allreduce: o.allreduce });
      const report = doctorReport(cluster, raw);
      ctx.io.out(format === 'table' ? doctorTable(report) : await serialize(report, format));
      if (!report.ok) ctx.fail();
    });
}

/** Torch's build: ' (cpu)', ' (cuda 12.8)' or nothing when unknown. */
const build = (cuda: string | undefined) => (!cuda ? '' : cuda === 'none' ? ' (cpu)' : ` (cuda ${cuda})`);
const ms = (v: number | undefined) => (v === undefined ? '-' : `${v >= 0 ? '+' : ''}${Math.round(v)}ms`);

/** Hosts side by side, the pairs, then what failed or warns. */
export function doctorTable(r: DoctorReport): string {
  const skewed = new Set(r.skew.map((s) => s.field));
  const v = (f: keyof DoctorReport['hosts'][number]['versions'], s: string | undefined) =>
    s === undefined ? '-' : skewed.has(f) ? `${s}!` : s;
  const hosts = table(
    ['HOST', 'STATUS', 'DRIVER', 'CUDA', 'TORCH', 'NCCL', 'PYTHON', 'IFACE', 'CLOCK', 'CKPT DISK FREE', 'GPU HEALTH'],
    r.hosts.map((h) => [
      h.name,
      h.status,
      v('driver', h.versions.driver),
      v('cuda', h.versions.cuda),
      v('torch', h.versions.torch && `${h.versions.torch}${build(h.versions.torchCuda)}`),
      v('nccl', h.versions.nccl),
      v('python', h.versions.python),
      h.iface ?? '-',
      ms(h.clockOffsetMs),
      h.checkpointDisk ? `${h.checkpointDisk.freeGiB.toFixed(0)}GiB ${h.checkpointDisk.path}` : '-',
      h.gpus
        .map(
          (g) =>
            `${g.index}: ${g.temperatureC ?? '?'}C x${g.link.width ?? '?'}/${g.link.widthMax ?? '?'} ` +
            `gen${g.link.gen ?? '?'}/${g.link.genMax ?? '?'}${g.throttle.length ? ' throttled' : ''}` +
            `${g.ecc ? ` ecc ${g.ecc.uncorrected ?? '?'}` : ''}`,
        )
        .join(', ') + (h.xids.length ? ` XID ${h.xids.map((x) => x.code).join(',')}` : '') || '-',
    ]),
  );
  const ar = new Map(r.allreduce.pairs.map((p) => [`${p.a} ${p.b}`, p]));
  const figure = (a: string, b: string) => {
    const p = ar.get(`${a} ${b}`) ?? ar.get(`${b} ${a}`);
    if (!p) return r.allreduce.skipped ?? '-';
    if (p.error) return `failed: ${p.error}`;
    const lat = p.latencyUs !== undefined ? `${(p.latencyUs / 1000).toFixed(2)} ms` : '?';
    const bw = p.busbwGBps !== undefined ? `${p.busbwGBps.toFixed(2)} GB/s` : '?';
    return `${lat}, ${bw}`;
  };
  const order = (n: string) => r.hosts.findIndex((h) => h.name === n);
  const pairs = table(
    ['FROM', 'TO', 'PORT', 'TCP', `ALL-REDUCE ${r.allreduce.backend ?? ''} (latency, bus bandwidth)`.trim()],
    r.pairs.map((p) => [
      p.from,
      p.to,
      String(p.port),
      p.result === 'ok' ? `ok ${p.connectMs?.toFixed(1) ?? '?'}ms` : p.result,
      order(p.from) < order(p.to) ? figure(p.from, p.to) : '',
    ]),
  );
  const problems = r.checks.map((c) => clean(`${c.level === 'fail' ? 'FAIL' : 'warn'} [${c.check}] ${c.message}`));
  const verdict = r.ok
    ? `all checks passed (${(r.ms / 1000).toFixed(1)} s)`
    : `${r.checks.filter((c) => c.level === 'fail').length} check(s) failed (${(r.ms / 1000).toFixed(1)} s)`;
  return [hosts, '', pairs, '', ...problems, ...(problems.length ? [''] : []), verdict].join('\n');
}
