/**
 * Watching jobs/ with 1000 jobs (1000 job files and 1000 status files): UGRO's fs.watch
 * (controller/loop/watch.ts) against chokidar 4 (depth 0), the watcher the design card names.
 * Each runs in its own process: time to ready, inotify instances, job file write -> event (p50,
 * p99 of 200 writes, each with a status write beside it, as the controller makes), CPU for those
 * 200 writes, RSS. No lab needed.
 *
 *   npm run bench:watch
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import chokidar from 'chokidar';
import { fsWatch } from '../../controller/loop/watch.ts';

const JOBS = 1000;
const WRITES = 200;

async function measure(which: 'fs.watch' | 'chokidar'): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'ugro-bench-watch-'));
  for (let i = 0; i < JOBS; i++) {
    writeFileSync(join(dir, `job-${i}.yaml`), 'x: 1\n');
    writeFileSync(join(dir, `job-${i}.status.yaml`), 'phase: Running\n');
  }
  let seen: ((name: string) => void) | undefined;
  const onJob = (name: string) => seen?.(name);
  const t0 = performance.now();
  let close: () => Promise<void>;
  if (which === 'chokidar') {
    const w = chokidar.watch(dir, { depth: 0, ignoreInitial: true });
    w.on('change', onJob).on('add', onJob);
    await new Promise<void>((r) => w.once('ready', () => r()));
    close = () => w.close();
  } else {
    const w = await fsWatch(dir, onJob);
    close = w.close;
  }
  const readyMs = performance.now() - t0;
  const inotify = readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`).includes('inotify');
    } catch {
      return false;
    }
  }).length;
  const cpu0 = process.cpuUsage();
  const lat: number[] = [];
  for (let i = 0; i < WRITES; i++) {
    const got = new Promise<string>((r) => {
      seen = r;
    });
    const s = performance.now();
    writeFileSync(join(dir, `job-${i % JOBS}.yaml`), `x: ${i}\n`);
    writeFileSync(join(dir, `job-${(i + 1) % JOBS}.status.yaml`), `phase: ${i}\n`);
    await got;
    lat.push(performance.now() - s);
    await new Promise((r) => setTimeout(r, 5));
  }
  const cpu = process.cpuUsage(cpu0);
  await close();
  rmSync(dir, { recursive: true, force: true });
  lat.sort((a, b) => a - b);
  const at = (q: number) => lat[Math.min(lat.length - 1, Math.ceil(q * lat.length) - 1)].toFixed(2);
  return (
    `${which.padEnd(9)} ready ${readyMs.toFixed(0).padStart(4)} ms  inotify instances ${inotify}  ` +
    `write -> event p50 ${at(0.5)} ms, p99 ${at(0.99)} ms  CPU for ${WRITES} writes ` +
    `${((cpu.user + cpu.system) / 1000).toFixed(0)} ms  RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB`
  );
}

const which = process.argv[2];
if (which === 'fs.watch' || which === 'chokidar') {
  console.log(await measure(which));
  process.exit(0);
}
console.log(`Watching a jobs dir of ${JOBS} jobs (${2 * JOBS} files), ${WRITES} job file writes:`);
for (const w of ['fs.watch', 'chokidar']) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), w], { encoding: 'utf8' });
  process.stdout.write(r.status === 0 ? `  ${r.stdout}` : `  ${w}: failed: ${r.stderr.slice(-500)}\n`);
}
