/**
 * A sweep's files beside the jobs: its status (jobs/<name>.sweep.status.yaml, controller-owned,
 * atomic; the `.status.yaml` ending keeps it out of every job listing and watch event) and its
 * trials' job files, which the controller writes whole (atomic) and deletes. The sweep's own spec
 * is a jobs/<name>.yaml that JobStore.readSweep reads by its `kind`.
 */
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { assert, UgroError } from '../../config/errors.ts';
import { parseYamlValue } from '../../config/yaml-guard.ts';
import { parseSweep, type Sweep, type SweepState, sweepHash } from '../api/sweep.ts';
import { parseSweepStatus, type SweepStatus } from '../api/sweep-status.ts';
import type { TrainingJob } from '../api/trainingjob.ts';
import { ensureOwnDir, readRegularFile, writeFileAtomic } from './files.ts';
import { isJobName } from './store.ts';

const STATUS_SUFFIX = '.sweep.status.yaml';
/** A sweep's status lists up to 1000 trials per generation, with older generations': more than a job's. */
const MAX_STATUS_BYTES = 8 * 1024 * 1024;

export class SweepFiles {
  constructor(readonly dir: string) {}

  statusFile(name: string): string {
    assert(isJobName(name), () => `not a sweep name: ${JSON.stringify(name)}`);
    return join(this.dir, name + STATUS_SUFFIX);
  }

  /** Names with a sweep status file (a deleted sweep's trials are cleaned up from it). */
  async statusNames(): Promise<string[]> {
    const entries = await readdir(this.dir).catch(() => [] as string[]);
    return entries
      .filter((e) => e.endsWith(STATUS_SUFFIX))
      .map((e) => e.slice(0, -STATUS_SUFFIX.length))
      .filter(isJobName);
  }

  /** Every job-file stem in the dir (the trials are looked for among them by name). */
  async stems(): Promise<string[]> {
    const entries = await readdir(this.dir).catch(() => [] as string[]);
    const out: string[] = [];
    for (const e of entries) {
      const m = /^([a-z0-9-]+)\.ya?ml$/.exec(e);
      if (m && isJobName(m[1])) out.push(m[1]);
    }
    return out;
  }

  /** The status; undefined when absent, unreadable or not what the schema says (it is then rebuilt). */
  async readStatus(name: string): Promise<SweepStatus | undefined> {
    const r = await readRegularFile(this.statusFile(name), MAX_STATUS_BYTES);
    if (!r.ok) return undefined;
    try {
      return parseSweepStatus(parseYamlValue(r.text));
    } catch {
      return undefined;
    }
  }

  /** Returns true when the file changed (identical writes are skipped). */
  async writeStatus(name: string, status: SweepStatus): Promise<boolean> {
    const clean = JSON.parse(JSON.stringify(status)) as SweepStatus;
    if (!parseSweepStatus(clean))
      throw new UgroError(`refusing to write ${name}${STATUS_SUFFIX}: it fails its schema (a bug in UGRO)`);
    const head = `# Written by the UGRO controller; do not edit (the sweep is ${name}.yaml).\n`;
    const text = head + stringify(clean, { lineWidth: 0 });
    const path = this.statusFile(name);
    const cur = await readRegularFile(path, MAX_STATUS_BYTES);
    if (cur.ok && cur.text === text) return false;
    await writeFileAtomic(path, text);
    return true;
  }

  private acceptedFile(name: string): string {
    assert(isJobName(name), () => `not a sweep name: ${JSON.stringify(name)}`);
    return join(this.dir, '.ugro', 'accepted', `${name}.sweep.yaml`);
  }

  /** The sweep spec its owner (or an admin) last applied: what it goes on with when someone else edits it. */
  async readAccepted(name: string): Promise<Extract<SweepState, { kind: 'valid' }> | undefined> {
    const file = this.acceptedFile(name);
    const r = await readRegularFile(file);
    if (!r.ok) return undefined;
    const res = parseSweep(r.text);
    if (!res.ok || res.value.metadata.name !== name) return undefined;
    return { kind: 'valid', sweep: res.value, hash: sweepHash(res.value.spec), file };
  }

  /** Keep the accepted spec (private to the controller, like everything in .ugro/). */
  async writeAccepted(name: string, sweep: Sweep): Promise<void> {
    await ensureOwnDir(join(this.dir, '.ugro'));
    await ensureOwnDir(join(this.dir, '.ugro', 'accepted'));
    await writeFileAtomic(this.acceptedFile(name), stringify(sweep), 0o600);
  }

  async deleteAccepted(name: string): Promise<void> {
    await unlink(this.acceptedFile(name)).catch(() => undefined);
  }

  async deleteStatus(name: string): Promise<void> {
    await unlink(this.statusFile(name)).catch(() => undefined);
  }

  /** Write a trial's job file whole (atomic: the watch never sees half a file). */
  async writeTrial(job: TrainingJob, sweep: string): Promise<void> {
    const name = job.metadata.name;
    assert(isJobName(name), () => `not a trial name: ${JSON.stringify(name)}`);
    const head = `# Trial of sweep ${sweep}, written by the UGRO controller: edit ${sweep}.yaml instead.\n`;
    await writeFileAtomic(join(this.dir, `${name}.yaml`), head + stringify(job, { lineWidth: 0 }));
  }

  async deleteTrial(name: string): Promise<void> {
    assert(isJobName(name), () => `not a trial name: ${JSON.stringify(name)}`);
    for (const ext of ['.yaml', '.yml']) await unlink(join(this.dir, name + ext)).catch(() => undefined);
  }
}
