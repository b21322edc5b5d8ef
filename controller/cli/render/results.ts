/** `ugro results NAME`: how a job ended, its last metrics, where its checkpoints and logs are. */
import type { JobStatus } from '../../api/status.ts';
import { clean, firstLine } from '../output.ts';

export interface ResultsInput {
  name: string;
  status: JobStatus;
  /** Where rank 0 keeps checkpoints: its host and directory ('?' / '-' when unknown). */
  checkpoints: { host: string; dir: string };
}

function duration(st: JobStatus): string {
  const from = st.startTime ? Date.parse(st.startTime) : Number.NaN;
  const to = st.completionTime ? Date.parse(st.completionTime) : Number.NaN;
  return Number.isNaN(from) || Number.isNaN(to) ? '-' : `${((to - from) / 1000).toFixed(1)} s`;
}

export function resultsText({ name, status: st, checkpoints }: ResultsInput): string {
  return [
    `Job:           ${name}`,
    `Phase:         ${st.phase}${st.message ? ` (${firstLine(st.message)})` : ''}`,
    `Attempts:      ${st.attempt}`,
    `Duration:      ${duration(st)}`,
    `Final metrics: ${st.progress ? clean(JSON.stringify(st.progress)) : '(none reported)'}`,
    `Checkpoints:   ${clean(`${checkpoints.host}:${checkpoints.dir}`)}`,
    `Logs:          ugro logs ${name} --rank N`,
  ].join('\n');
}
