/**
 * Watch the jobs directory (chokidar, depth 0). An event only names a job to reconcile; our own
 * writes (status files, temp files, .ugro/) are ignored so they never loop back.
 */
import chokidar from 'chokidar';
import { isJobFileName, jobNameFromFile } from '../api/trainingjob.ts';
import { isJobName } from '../store/store.ts';

export interface Watcher {
  close(): Promise<void>;
}

export type WatchFn = (dir: string, onJob: (name: string) => void) => Promise<Watcher>;

/** The job a changed file in jobs/ belongs to, if any. */
export function jobOfFile(base: string): string | undefined {
  let name: string | undefined;
  if (isJobFileName(base)) name = jobNameFromFile(base);
  else if (base.endsWith('.control.yaml')) name = base.slice(0, -'.control.yaml'.length);
  return name && isJobName(name) ? name : undefined;
}

export const chokidarWatch: WatchFn = async (dir, onJob) => {
  const w = chokidar.watch(dir, {
    depth: 0,
    ignoreInitial: true,
    // chokidar's default `atomic` holds an unlink back 100 ms so that an editor's
    // rename-then-write save is not seen as a delete (which would stop the run): keep it.
    ignored: (p: string) => {
      const base = p.slice(p.lastIndexOf('/') + 1);
      return p !== dir && (base.startsWith('.') || base.includes('.tmp-') || base.endsWith('.status.yaml'));
    },
  });
  const onFile = (p: string) => {
    const name = jobOfFile(p.slice(p.lastIndexOf('/') + 1));
    if (name) onJob(name);
  };
  w.on('add', onFile).on('change', onFile).on('unlink', onFile);
  await new Promise<void>((r) => w.once('ready', () => r()));
  return { close: () => w.close() };
};
