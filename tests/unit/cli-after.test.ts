/**
 * spec.after in the CLI (issue 18): `ugro validate` of a set of files finds a cycle among them;
 * `ugro describe job` says what a job waits for.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { setCondition } from '../../controller/api/status.ts';
import { main } from '../../controller/cli/main.ts';
import { describeJob } from '../../controller/cli/render/describe.ts';
import { jobYaml, validSpec } from './job-fixtures.ts';

async function ugro(args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const env = { ...process.env, USER: 'alice' };
  const code = await main(['node', 'ugro', ...args], { out: (s) => out.push(s), err: (s) => err.push(s) }, env);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('ugro validate FILE… with spec.after', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ugro-after-cli-'));
  const file = (name: string, after: string[]) => {
    const f = join(dir, `${name}.yaml`);
    writeFileSync(f, jobYaml(name, { script: 't.py', after: after.map((job) => ({ job })) }));
    return f;
  };

  it('a cycle among the files: each file in it is invalid, naming the cycle and the other files; exit 1', async () => {
    const [a, b, c, d] = [file('a', ['b']), file('b', ['c']), file('c', ['a']), file('d', ['a'])];
    const r = await ugro(['validate', a, b, c, d]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${a}: invalid\n  ${a}: spec.after: cycle a -> b -> c -> a (with ${b}, ${c})`);
    expect(r.err).toContain(`  ${c}: spec.after: cycle c -> a -> b -> c`);
    // d waits for the cycle but is not in it: valid on its own.
    expect(r.out).toBe(`${d}: valid (d)`);
  });

  it('a producer not among the files is not an error (it may exist in jobs/ or come later)', async () => {
    const r = await ugro(['validate', file('eval', ['train'])]);
    expect(r.code).toBe(0);
  });
});

describe('ugro describe job with spec.after', () => {
  it('an After line: the producers with their phases, and what it waits for now', () => {
    const spec = validSpec('train', { script: 't.py', after: [{ job: 'prep' }, { job: 'data', phase: 'Completed' }] });
    const conditions = setCondition(
      [],
      {
        type: 'DependenciesMet',
        status: 'False',
        reason: 'WaitingForDependency',
        message: 'waits for job prep (Running)',
      },
      '2026-03-01T10:00:00.000Z',
    );
    const status = {
      phase: 'Queued' as const,
      reason: 'WaitingForDependency',
      message: 'waits for job prep (Running)',
      observedGeneration: 1,
      attempt: 0,
      nodes: [],
      createdAt: '2026-03-01T10:00:00.000Z',
      conditions,
    };
    const text = describeJob({ name: 'train', spec, status, events: [] });
    expect(text).toContain('After:        prep (Succeeded), data (Completed): waits for job prep (Running)');
    const met = describeJob({
      name: 'train',
      spec,
      status: { ...status, conditions: [{ ...conditions[0], status: 'True' }] },
      events: [],
    });
    expect(met).toContain('After:        prep (Succeeded), data (Completed): met');
  });
});
