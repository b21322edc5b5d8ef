/** PURE: `ugro get sweeps` and `ugro describe sweep NAME` as text, and the rows `-o json` prints. */
import type { SweepState } from '../../api/sweep.ts';
import type { SweepStatus, TrialRecord } from '../../api/sweep-status.ts';
import type { JobEvent } from '../../store/store.ts';
import { age, clean, table } from '../output.ts';
import { eventsTable } from './events.ts';

export interface SweepRow {
  name: string;
  status?: SweepStatus;
  /** What the sweep's file says (absent: deleted, its trials being removed). */
  spec: SweepState;
}

const num = (v: number | undefined) => (v === undefined ? '-' : String(Number(v.toPrecision(5))));

/** One sweep as `get sweeps -o json` prints it. */
export function sweepJson(r: SweepRow): Record<string, unknown> {
  const s = r.status;
  return {
    name: r.name,
    phase: s?.phase ?? (r.spec.kind === 'invalid' ? 'Invalid' : 'Pending'),
    ...(s?.message ? { message: s.message } : {}),
    generation: s?.generation ?? 0,
    ...(s?.objective ? { objective: s.objective } : {}),
    trials: s?.counts ?? null,
    best: s?.best ?? null,
    ...(s?.owner ? { owner: s.owner } : {}),
  };
}

export function sweepsTable(rows: readonly SweepRow[], now: Date): string {
  if (!rows.length) return 'No sweeps.';
  return table(
    ['NAME', 'PHASE', 'GEN', 'DONE', 'RUNNING', 'PAUSED', 'STOPPED', 'FAILED', 'BEST', 'OBJECTIVE', 'AGE'],
    rows.map((r) => {
      const s = r.status;
      const c = s?.counts;
      const j = sweepJson(r);
      return [
        r.name,
        String(j.phase),
        String(s?.generation ?? '-'),
        c ? `${c.succeeded}/${c.total}` : '-',
        String(c?.running ?? '-'),
        String(c?.paused ?? '-'),
        String(c?.stopped ?? '-'),
        String(c?.failed ?? '-'),
        s?.best?.trial ?? '-',
        s?.best ? `${s.objective?.metric ?? ''} ${num(s.best.objective)}`.trim() : '-',
        age(s?.createdAt, now),
      ];
    }),
  );
}

/** Trials best first (by their objective, for the goal), those without one last. */
export function byObjective(trials: readonly TrialRecord[], goal: 'minimize' | 'maximize'): TrialRecord[] {
  const sign = goal === 'minimize' ? 1 : -1;
  return [...trials].sort((a, b) => {
    if (a.objective === undefined || b.objective === undefined)
      return (a.objective === undefined ? 1 : 0) - (b.objective === undefined ? 1 : 0) || a.index - b.index;
    return sign * (a.objective - b.objective) || a.index - b.index;
  });
}

export function describeSweep(r: SweepRow, events: readonly JobEvent[]): string {
  const s = r.status;
  const lines: string[] = [];
  const field = (k: string, v: string) => lines.push(`${`${k}:`.padEnd(16)}${clean(v)}`);
  field('Name', r.name);
  field('Phase', `${sweepJson(r).phase}${s?.message ? ` (${s.message.split('\n')[0]})` : ''}`);
  if (r.spec.kind === 'invalid')
    for (const i of r.spec.issues) lines.push(`  ${r.spec.file}${i.line ? `:${i.line}` : ''}: ${i.path}: ${i.message}`);
  if (s?.owner) field('Owner', s.owner);
  if (s) field('Generation', String(s.generation));
  const spec = r.spec.kind === 'valid' ? r.spec.sweep.spec : undefined;
  const goal = spec?.objective.goal ?? s?.objective?.goal ?? 'minimize';
  if (spec || s?.objective) field('Objective', `${spec?.objective.metric ?? s?.objective?.metric} (${goal})`);
  const es = spec?.earlyStopping;
  if (es)
    field(
      'Early stopping',
      es.type === 'asha'
        ? `asha, rungs at steps ${es.rungs.join(', ')}, eta ${es.eta}`
        : `median at steps ${es.steps.join(', ')}, minTrials ${es.minTrials}`,
    );
  if (spec) field('Max parallel', String(spec.maxParallel));
  if (s?.best) field('Best', `${s.best.trial}: ${num(s.best.objective)}`);
  if (s) {
    const c = s.counts;
    field(
      'Trials',
      `${c.total} (${c.succeeded} ran to the end, ${c.running} running, ${c.paused} paused, ` +
        `${c.stopped} stopped, ${c.failed} failed, ${c.pending} pending)`,
    );
    const cur = byObjective(
      s.trials.filter((t) => t.generation === s.generation),
      goal,
    );
    lines.push('', table(['TRIAL', 'STATE', 'STEP', 'OBJECTIVE', 'RUNGS', 'PARAMS', 'WHY'], cur.map(trialCells)));
    const old = s.trials.filter((t) => t.generation !== s.generation);
    if (old.length)
      lines.push('', `Earlier generations: ${old.length} trial(s) (${old.map((t) => t.name).join(', ')})`);
  }
  lines.push('', 'Events:', events.length ? eventsTable([...events], { indent: '  ' }) : '  <none>');
  return lines.join('\n');
}

function trialCells(t: TrialRecord): string[] {
  return [
    t.name,
    t.state,
    t.step === undefined ? '-' : String(t.step),
    t.diverged ? 'NaN (diverged)' : num(t.objective),
    t.rungs.map((x) => (x.value === null ? 'NaN' : num(x.value))).join(' ') || '-',
    Object.entries(t.params)
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
    t.why ?? '',
  ];
}
