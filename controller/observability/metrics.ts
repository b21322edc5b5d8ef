/**
 * Prometheus metrics of the controller (prom-client), read from the dashboard's view at scrape
 * time: nothing is counted twice and nothing is kept that the view does not hold. Labels are few
 * and bounded: job (a job name), phase (one of PHASES), reason (a failure reason), host, gpu (an
 * index); never run ids, args or messages.
 *
 * The label `job` names the TrainingJob. Prometheus also sets `job` on every target (the scrape
 * job): scrape UGRO with `honor_labels: true` to keep ours (else it shows as `exported_job`).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { PHASES } from '../api/status.ts';
import type { DashboardView } from './view.ts';

export interface MetricsExtra {
  /** Notifications delivered, failed, retried (the notifier's counters), when notifications are on. */
  notifications?: () => { sent: number; failed: number; retried: number; dropped: number };
}

export class ControllerMetrics {
  readonly registry = new Registry();
  readonly contentType = this.registry.contentType;

  constructor(view: DashboardView, extra: MetricsExtra = {}) {
    const r = this.registry;
    const jobs = () => view.jobNames();
    // Per job: read straight from the view at scrape time (no label-set maps to fill and clear:
    // with 1000 jobs that is most of a scrape's cost).
    const perJob = (
      name: string,
      help: string,
      type: 'gauge' | 'counter',
      values: (job: string, out: MetricValue[]) => void,
    ) => {
      const get = async () => {
        const out: MetricValue[] = [];
        for (const j of jobs()) values(j, out);
        return { name, help, type, aggregator: 'sum' as const, values: out };
      };
      r.registerMetric({ name, help, type, aggregator: 'sum', get, reset: () => undefined } as never);
    };
    perJob(
      'ugro_job_phase',
      'The phase of each job: 1 for the phase it is in, 0 for the others',
      'gauge',
      (job, out) => {
        const phase = view.status(job)?.phase;
        for (const p of PHASES) out.push({ labels: { job, phase: p }, value: p === phase ? 1 : 0 });
      },
    );
    const fromProgress = (key: 'step' | 'loss') => (job: string, out: MetricValue[]) => {
      const v = view.status(job)?.progress?.[key];
      if (typeof v === 'number' && Number.isFinite(v)) out.push({ labels: { job }, value: v });
    };
    perJob('ugro_job_step', 'The last step the job reported (its metrics file)', 'gauge', fromProgress('step'));
    perJob('ugro_job_loss', 'The last loss the job reported (its metrics file)', 'gauge', fromProgress('loss'));
    perJob(
      'ugro_job_last_progress_timestamp_seconds',
      'When the job last reported a new step, as this controller saw it (Unix time)',
      'gauge',
      (job, out) => {
        const ms = view.lastProgressMs(job);
        if (ms !== undefined) out.push({ labels: { job }, value: ms / 1000 });
      },
    );
    perJob(
      'ugro_job_restarts_total',
      'Failures of the job that UGRO restarted it after (or gave up on), by reason, since the controller started',
      'counter',
      (job, out) => {
        for (const [reason, n] of view.restartsByReason(job)) out.push({ labels: { job, reason }, value: n });
      },
    );
    perJob(
      'ugro_job_progress_ratio',
      'Steps done over total steps (0..1), when the job reports total_steps',
      'gauge',
      (job, out) => {
        const p = view.status(job)?.estimate?.percent;
        if (p !== undefined) out.push({ labels: { job }, value: p / 100 });
      },
    );
    new Gauge({
      name: 'ugro_node_ready',
      help: '1 when the host was Ready at its last health probe, else 0',
      labelNames: ['host'],
      registers: [r],
      collect() {
        this.reset();
        for (const n of view.nodeHealth()) this.set({ host: n.name }, n.status === 'Ready' ? 1 : 0);
      },
    });
    new Gauge({
      name: 'ugro_ssh_rtt_seconds',
      help: 'Round trip of a tiny SSH exec to the host at its last health probe',
      labelNames: ['host'],
      registers: [r],
      collect() {
        this.reset();
        for (const n of view.nodeHealth()) if (n.rttMs !== undefined) this.set({ host: n.name }, n.rttMs / 1000);
      },
    });
    const gpuGauge = (name: string, help: string, pick: (l: NonNullable<GpuLatest>) => number | undefined) =>
      new Gauge({
        name,
        help,
        labelNames: ['host', 'gpu'],
        registers: [r],
        collect() {
          this.reset();
          for (const g of view.telemetry.gpus()) {
            if (!g.latest || view.telemetry.isReady(g.host) === false) continue;
            const v = pick(g.latest);
            if (v !== undefined && Number.isFinite(v)) this.set({ host: g.host, gpu: String(g.index) }, v);
          }
        },
      });
    gpuGauge('ugro_gpu_utilization_ratio', 'GPU utilization (0..1), from nvidia-smi', (l) => l.utilizationPct / 100);
    gpuGauge('ugro_gpu_memory_used_bytes', 'GPU memory used, from nvidia-smi', (l) => l.memoryUsedMiB * 1048576);
    gpuGauge('ugro_gpu_temperature_celsius', 'GPU temperature, from nvidia-smi', (l) => l.temperatureC);
    gpuGauge('ugro_gpu_power_watts', 'GPU power draw, from nvidia-smi', (l) => l.powerW);
    const hist = new Histogram({
      name: 'ugro_reconcile_duration_seconds',
      help: 'How long one reconcile of a job took (host I/O included)',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [r],
      collect() {
        for (const s of view.takeTimings()) this.observe(s);
      },
    });
    void hist;
    new Gauge({
      name: 'ugro_queue_depth',
      help: 'Jobs waiting to be reconciled (now or on a timer)',
      registers: [r],
      collect() {
        this.set(view.queueDepth().waiting);
      },
    });
    new Gauge({
      name: 'ugro_reconciles_in_flight',
      help: 'Reconciles running now',
      registers: [r],
      collect() {
        this.set(view.queueDepth().running);
      },
    });
    if (extra.notifications) {
      const stats = extra.notifications;
      new Counter({
        name: 'ugro_notifications_total',
        help: 'Webhook notifications by result (sent, failed after every retry, dropped from a full queue)',
        labelNames: ['result'],
        registers: [r],
        collect() {
          this.reset();
          const s = stats();
          this.inc({ result: 'sent' }, s.sent);
          this.inc({ result: 'failed' }, s.failed);
          this.inc({ result: 'dropped' }, s.dropped);
        },
      });
    }
  }

  /** The text exposition format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}

interface MetricValue {
  labels: Record<string, string>;
  value: number;
}

type GpuLatest = ReturnType<DashboardView['telemetry']['gpus']>[number]['latest'];
