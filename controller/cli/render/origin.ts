/** `ugro describe job`'s lines about where a job came from (GitOps): commit, subject, author, sync state. */
import type { JobStatus } from '../../api/status.ts';
import { firstLine } from '../output.ts';

export function sourceLines(st: JobStatus, field: (label: string, value: string) => string): string[] {
  const s = st.source;
  const lines: string[] = [];
  if (s) {
    const synced = st.conditions.find((c) => c.type === 'Synced');
    const ready = st.conditions.find((c) => c.type === 'SourceReady');
    lines.push(field('Source', `${s.url}@${s.branch}${s.file ? ` ${s.file}` : ''}`));
    if (s.revision) lines.push(field('Revision', `${s.revision} "${firstLine(s.subject)}"`));
    if (s.author) lines.push(field('Author', `${s.author}${s.authorTime ? ` (${s.authorTime})` : ''}`));
    lines.push(field('Sync', `${s.sync}${s.reason !== s.sync ? ` (${s.reason})` : ''}: ${firstLine(synced?.message)}`));
    if (ready?.status === 'False')
      lines.push(field('Source ready', `False (${ready.reason}): ${firstLine(ready.message)}`));
  }
  if (st.owner) lines.push(field('Owner', st.owner));
  return lines;
}
