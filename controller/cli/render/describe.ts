/** `ugro describe job NAME`: spec, status, conditions, per-host ranks, failures, recent events. */
import { stringify } from 'yaml';
import { formatIssue } from '../../../config/errors.ts';
import type { SpecState } from '../../api/job-state.ts';
import type { JobStatus } from '../../api/status.ts';
import type { JobEvent } from '../../store/store.ts';
import { clean, firstLine, table } from '../output.ts';
import { eventsTable } from './events.ts';
import { sourceLines } from './origin.ts';

export interface DescribeInput {
  name: string;
  spec: SpecState;
  status?: JobStatus;
  events: JobEvent[];
}

const field = (label: string, value: string) => `${`${label}:`.padEnd(14)}${clean(value)}`;

function statusLines(st: JobStatus): string[] {
  const lines = [
    field('Phase', `${st.phase}${st.reason ? ` (${st.reason})` : ''}`),
    field('Message', firstLine(st.message)),
    field('Attempt', String(st.attempt)),
    field('Run', st.runId ?? '-'),
    field('Rendezvous', st.rdzvEndpoint ?? '-'),
    field('Started', st.startTime ?? '-'),
    field('Completed', st.completionTime ?? '-'),
  ];
  if (st.restarts) lines.push(field('Restarts', `infra ${st.restarts.infra}, training ${st.restarts.training}`));
  if (st.nextRetryAt) lines.push(field('Next retry', st.nextRetryAt));
  if (st.exitCode !== undefined)
    lines.push(field('Exit code', `${st.exitCode} (rank ${st.failedRank ?? '?'} on ${st.failedHost ?? '?'})`));
  if (st.progress) lines.push(field('Progress', JSON.stringify(st.progress)));
  if (st.owner) lines.push(field('Owner', st.ownerBy ? `${st.owner} (${st.ownerBy})` : st.owner));
  if (st.scaleUp)
    lines.push(
      field(
        'Scale up',
        `to ${st.scaleUp.nodes} nodes (GPUs free since ${st.scaleUp.since}), ` +
          `at the first checkpoint after ${st.scaleUp.after ?? 'the start'}`,
      ),
    );
  lines.push(...balanceLines(st), ...oomCapLines(st));
  if (st.slurm) {
    const s = st.slurm;
    const why = s.reason ? ` (${s.reason})` : '';
    lines.push(field('Slurm', `job ${s.jobId} ${s.state}${why}${s.nodes ? ` on ${s.nodes}` : ''}`));
  }
  lines.push(...sourceLines(st, field));
  // The GPUs each node was given (placement by GPU), when any was: "0 RTX 4070 8G".
  const withGpus = st.nodes.some((n) => n.gpus?.length);
  const gpus = (g: { index: number; name: string; memoryMiB: number }[] = []) =>
    g
      .map((x) => `${x.index} ${x.name.replace(/^NVIDIA (GeForce )?/, '')} ${Math.round(x.memoryMiB / 1024)}G`)
      .join(', ') || '-';
  lines.push(
    'Nodes:',
    st.nodes.length
      ? table(
          ['  HOST', 'NODE RANK', 'GLOBAL RANKS', 'PID', 'STATE', 'EXIT', ...(withGpus ? ['GPUS'] : [])],
          st.nodes.map((n) => [
            `  ${n.host}`,
            String(n.nodeRank),
            n.globalRanks.join(',') || '-',
            String(n.pid ?? '-'),
            n.state,
            String(n.exitCode ?? '-'),
            ...(withGpus ? [gpus(n.gpus)] : []),
          ]),
        )
      : '  <none>',
    'Conditions:',
    st.conditions.length
      ? table(
          ['  TYPE', 'STATUS', 'REASON', 'SINCE', 'MESSAGE'],
          st.conditions.map((x) => [`  ${x.type}`, x.status, x.reason, x.lastTransitionTime, firstLine(x.message)]),
        )
      : '  <none>',
  );
  if (st.failures?.length)
    lines.push(
      'Failures:',
      table(
        ['  TIME', 'ATTEMPT', 'CLASS', 'REASON', 'WHERE', 'MESSAGE'],
        st.failures.map((f) => [
          `  ${f.time}`,
          String(f.attempt),
          f.class,
          f.reason,
          [
            f.host,
            f.rank !== undefined ? `rank ${f.rank}` : undefined,
            f.exitCode !== undefined ? `exit ${f.exitCode}` : '',
          ]
            .filter(Boolean)
            .join(' ') || '-',
          firstLine(f.message),
        ]),
      ),
    );
  if (st.logTail?.length) lines.push('Last log lines of the failing rank:', ...st.logTail.map((l) => `  ${clean(l)}`));
  return lines;
}

/**
 * spec.batch: how the batch is split, each rank's share, its busy time a step and the time it
 * idles at the all-reduce waiting for the slowest (as of the step measured), a planned re-split.
 */
function balanceLines(st: JobStatus): string[] {
  const b = st.balance;
  if (!b) return [];
  const basis = b.basis === b.mode ? '' : ` (split by ${b.basis} until measured)`;
  const at = b.step !== undefined ? `, measured at step ${b.step}${b.stepMs ? `: ${b.stepMs} ms a step` : ''}` : '';
  const ms = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));
  return [
    field('Batch split', `${b.mode}${basis}${at}`),
    table(
      ['  HOST', 'LOCAL', 'RANK', 'SHARE', 'MICRO x ACCUM', 'STEP MS', 'IDLE MS'],
      b.ranks.map((r) => [
        `  ${r.host}`,
        String(r.localRank),
        String(r.rank ?? '-'),
        String(r.batch),
        `${r.micro} x ${r.accum}`,
        ms(r.stepMs),
        ms(r.idleMs),
      ]),
    ),
    ...(b.planned ? [field('Re-split', `planned: ${firstLine(b.planned.why)}`)] : []),
  ];
}

/** Micro batches capped after an out-of-memory restart (they hold for every later attempt). */
function oomCapLines(st: JobStatus): string[] {
  const o = st.batchOverrides ?? [];
  if (!o.length) return [];
  return [
    field(
      'OOM caps',
      o
        .map((x) => `${x.host} local rank ${x.localRank}: micro batch <= ${x.maxMicro} (since attempt ${x.attempt})`)
        .join('; '),
    ),
  ];
}

function specLines(spec: SpecState): string[] {
  if (spec.kind === 'valid')
    return [
      'Spec:',
      ...stringify(spec.job.spec, { lineWidth: 0 })
        .trimEnd()
        .split('\n')
        .map((l) => `  ${clean(l)}`),
    ];
  if (spec.kind === 'invalid')
    return ['Spec: INVALID', ...spec.issues.map((i) => `  ${clean(formatIssue(spec.file, i))}`)];
  return [];
}

/** spec.after: what the job waits for, and whether that is met (its DependenciesMet condition). */
function afterLines(spec: SpecState, st: JobStatus | undefined): string[] {
  const after = spec.kind === 'valid' ? spec.job.spec.after : undefined;
  if (!after?.length) return [];
  const met = st?.conditions.find((c) => c.type === 'DependenciesMet');
  const list = after.map((a) => `${a.sweep ? `sweep ${a.sweep}` : a.job} (${a.phase})`).join(', ');
  return [field('After', `${list}${met ? `: ${met.status === 'True' ? 'met' : firstLine(met.message)}` : ''}`)];
}

export function describeJob({ name, spec, status, events }: DescribeInput): string {
  return [
    field('Name', name),
    field('File', spec.kind === 'deleted' ? '(deleted)' : spec.file),
    ...(status ? statusLines(status) : [field('Phase', 'Pending (no status yet: is `ugro controller` running?)')]),
    ...afterLines(spec, status),
    ...specLines(spec),
    'Events:',
    eventsTable(events, { indent: '  ' }),
  ].join('\n');
}
