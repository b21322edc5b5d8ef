/** `ugro events` and the events part of `ugro describe job`. */
import type { JobEvent } from '../../store/store.ts';
import { firstLine, table } from '../output.ts';

/** All jobs' events with a JOB column; `indent` for a section inside describe. */
export function eventsTable(events: JobEvent[], opts: { job?: boolean; indent?: string } = {}): string {
  const pad = opts.indent ?? '';
  if (!events.length) return `${pad}${opts.indent ? '<none>' : 'No events.'}`;
  const header = ['TIME', ...(opts.job ? ['JOB'] : []), 'TYPE', 'REASON', 'MESSAGE'];
  return table(
    [`${pad}${header[0]}`, ...header.slice(1)],
    events.map((e) => [`${pad}${e.time}`, ...(opts.job ? [e.job] : []), e.type, e.reason, firstLine(e.message)]),
  );
}
