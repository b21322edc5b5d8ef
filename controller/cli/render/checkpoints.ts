/** `ugro checkpoints` and `ugro models` as tables. */
import type { ModelVersion } from '../../api/model.ts';
import type { Metrics } from '../../api/run.ts';
import type { CheckpointRow } from '../../core/checkpoints.ts';
import { bytesText } from '../../core/retention.ts';
import { age, table } from '../output.ts';

/** The metrics worth a column: loss first, then the rest in `wide`. */
function metricsText(m: Metrics | undefined, wide: boolean): string {
  if (!m) return '-';
  const num = (v: Metrics[string]) => (typeof v === 'number' ? Number(v.toPrecision(6)).toString() : String(v));
  if (!wide) return m.loss !== undefined ? `loss=${num(m.loss)}` : '-';
  const skip = new Set(['time', 'world', 'total_steps']);
  return Object.entries(m)
    .filter(([k]) => !skip.has(k))
    .map(([k, v]) => `${k}=${num(v)}`)
    .join(' ');
}

export function checkpointsTable(
  rows: readonly CheckpointRow[],
  promoted: readonly ModelVersion[],
  o: { wide: boolean; now: Date },
): string {
  return table(
    ['STEP', 'NAME', 'HOSTS', 'SIZE', 'SHA256', 'ATTEMPT', 'SPEC', 'REVISION', 'METRICS', 'AGE', 'MODELS'],
    rows.map((r) => [
      r.step !== undefined ? String(r.step) : '-',
      r.name,
      r.copies.map((c) => c.host + (c.latest ? '*' : '')).join(','),
      bytesText(r.sizeBytes),
      r.sha256 ? (o.wide ? r.sha256 : r.sha256.slice(0, 12)) : '-',
      r.writer ? String(r.writer.attempt) : '-',
      r.writer?.specHash ?? '-',
      r.revision ? (o.wide ? r.revision : r.revision.slice(0, 8)) : '-',
      metricsText(r.metrics, o.wide),
      age(new Date(r.mtimeMs).toISOString(), o.now),
      promoted
        .filter((v) => v.checkpoint === r.name && v.sha256 === r.sha256)
        .map((v) => `${v.model}:v${v.version}`)
        .join(',') || '-',
    ]),
  );
}

export function modelsTable(versions: readonly ModelVersion[], now: Date): string {
  if (!versions.length) return 'No models.';
  return table(
    ['MODEL', 'JOB', 'CHECKPOINT', 'ATTEMPT', 'SPEC', 'METRICS', 'SHA256', 'COPIES', 'BY', 'AGE'],
    versions.map((v) => [
      `${v.model}:v${v.version}`,
      v.job,
      v.checkpoint,
      v.attempt !== undefined ? String(v.attempt) : '-',
      v.specHash ?? '-',
      metricsText(v.metrics, false),
      v.sha256.slice(0, 12),
      v.copies.map((c) => c.host).join(','),
      v.by,
      age(v.createdAt, now),
    ]),
  );
}
