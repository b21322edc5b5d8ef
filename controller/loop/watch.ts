/**
 * Watch the jobs directory (fs.watch: inotify on Linux, depth 0). An event only names a job to
 * reconcile; our own writes (status files, temp files, .ugro/) name no job, so they never loop
 * back. A job file that vanished is looked at 100 ms later (an editor's rename-then-write save
 * must not read as a delete, which would stop the run), as chokidar's `atomic` option did.
 *
 * Not chokidar: on every event in the directory it lists the whole directory again and stats
 * every entry (2000 entries for 1000 jobs), and keeps a watch per file, before it reports the one
 * file that changed; fs.watch names the file in the event itself.
 */
import { lstatSync, readdirSync, watch } from 'node:fs';
import { join } from 'node:path';
import { isJobFileName, jobNameFromFile } from '../api/trainingjob.ts';
import { isJobName } from '../store/store.ts';

export interface Watcher {
  close(): Promise<void>;
}

export type WatchFn = (dir: string, onJob: (name: string) => void) => Promise<Watcher>;

/** How long a vanished job file is given to come back before its job is reconciled. */
const VANISHED_SETTLE_MS = 100;

/** The job a changed file in jobs/ belongs to, if any. */
function jobOfFile(base: string): string | undefined {
  let name: string | undefined;
  if (isJobFileName(base)) name = jobNameFromFile(base);
  else if (base.endsWith('.control.yaml')) name = base.slice(0, -'.control.yaml'.length);
  return name && isJobName(name) ? name : undefined;
}

export const fsWatch: WatchFn = async (dir, onJob) => {
  const held = new Map<string, NodeJS.Timeout>();
  const onFile = (base: string) => {
    const name = jobOfFile(base);
    if (!name) return;
    let present = true;
    try {
      present = lstatSync(join(dir, base), { throwIfNoEntry: false }) !== undefined;
    } catch {
      /* cannot tell: treat it as there */
    }
    if (present) {
      onJob(name);
      return;
    }
    if (held.has(base)) return;
    const t = setTimeout(() => {
      held.delete(base);
      onJob(name);
    }, VANISHED_SETTLE_MS);
    held.set(base, t);
  };
  const w = watch(dir, { persistent: true }, (_event, file) => {
    if (file) return onFile(file.toString());
    // No name (the kernel's event queue overflowed): look at every file.
    let all: string[] = [];
    try {
      all = readdirSync(dir);
    } catch {
      /* the periodic resync still reconciles every job */
    }
    for (const f of all) onFile(f);
  });
  // A watch that fails (the directory removed or replaced) stops reporting; the periodic resync
  // still reconciles every job, so an error here must not end the controller.
  w.on('error', () => undefined);
  return {
    close: async () => {
      w.close();
      for (const t of held.values()) clearTimeout(t);
      held.clear();
    },
  };
};
