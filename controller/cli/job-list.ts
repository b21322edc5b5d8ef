/**
 * The jobs directory as `ugro get jobs` and `ugro status` read it: the job names, and each job's
 * status (its spec only when it has no status yet) parsed from YAML but not schema-checked. The
 * table shows a few fields and render/jobs.ts type-checks each of them; loading the schema
 * library (zod) would cost more than listing a hundred jobs. `-o json|yaml` goes through the
 * store and its schemas instead.
 *
 * File naming follows controller/store/store.ts (listNames, specFile, statusFile);
 * tests/unit/cli-get.test.ts checks that both list the same names for the same directory.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readRegularFile } from '../store/files.ts';
import { isJobName } from './args.ts';
import type { JobRowInput } from './render/jobs.ts';

/** Every job with a spec or a status file, sorted. Files whose stem is not a job name are skipped. */
export async function listJobNames(dir: string): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return [];
  }
  const names = new Set<string>();
  for (const e of entries) {
    if (e.startsWith('.') || e.endsWith('.control.yaml')) continue;
    const m = /^(.*?)(\.status)?\.(yaml|yml)$/.exec(e);
    if (!m || (m[2] && m[3] !== 'yaml') || /\.control\.ya?ml$/.test(e)) continue;
    if (isJobName(m[1])) names.add(m[1]);
  }
  return [...names].sort();
}

type Parse = (text: string) => unknown;

const hasPhase = (v: unknown) =>
  typeof v === 'object' && v !== null && typeof (v as { phase?: unknown }).phase === 'string';

async function readYaml(path: string, parse: Parse): Promise<{ found: boolean; value?: unknown }> {
  const r = await readRegularFile(path);
  if (!r.ok) return { found: !r.missing };
  try {
    return { found: true, value: parse(r.text) };
  } catch {
    return { found: true };
  }
}

/** One job's row input: its status; its spec (a `.yaml` wins over a `.yml`) only without a status. */
async function readRow(dir: string, name: string, parse: Parse): Promise<JobRowInput & { exists: boolean }> {
  const status = await readYaml(join(dir, `${name}.status.yaml`), parse);
  if (hasPhase(status.value)) return { name, status: status.value, exists: true };
  for (const ext of ['.yaml', '.yml']) {
    const spec = await readYaml(join(dir, name + ext), parse);
    if (spec.found) return { name, spec: spec.value, exists: true };
  }
  return { name, exists: status.found };
}

/**
 * Rows for `names` (every job when empty), in name order, and the names asked for that have no
 * file at all. Names must have been checked with requireJobName.
 */
export async function readJobRows(
  dir: string,
  names: string[] = [],
): Promise<{ rows: JobRowInput[]; missing: string[] }> {
  const { parse } = await import('yaml');
  const wanted = names.length ? [...new Set(names)].sort() : await listJobNames(dir);
  const read = await Promise.all(wanted.map((n) => readRow(dir, n, parse)));
  return {
    rows: read.filter((r) => r.exists).map(({ exists: _, ...row }) => row),
    missing: read.filter((r) => !r.exists).map((r) => r.name),
  };
}
