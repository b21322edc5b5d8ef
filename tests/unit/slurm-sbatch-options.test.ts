/**
 * Extra #SBATCH lines (`slurm.sbatch` in the cluster file) cannot set an option UGRO owns in any
 * spelling sbatch accepts: full name, a unique or ambiguous prefix (getopt_long), sbatch's other
 * name for it, a short option (clustered or not), the value after `=` or as the next word. The
 * refusal names the line, the option it resolves to and what to write instead; the cluster file
 * refuses it at load time (with the field), the batch script generator again. Options UGRO does
 * not own, spelled out or abbreviated, still pass. How these spellings resolve is what sbatch
 * 22.05 answers (`sbatch -v`); tests/lab/slurm.test.ts asks the real sbatch.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseCluster } from '../../config/cluster.ts';
import { formatIssue } from '../../config/errors.ts';
import { SBATCH_OWN_OPTIONS, sbatchLineProblem, sbatchOwnedOption } from '../../config/sbatch-options.ts';
import { sbatchHeader } from '../../controller/backends/slurm/batch.ts';
import { slurmPlan } from '../../controller/backends/slurm/sbatch-plan.ts';
import { job } from './job-fixtures.ts';
import { slurmCluster } from './slurm-fixtures.ts';

const resolves = (line: string) => sbatchOwnedOption(line)?.option;

describe('an extra #SBATCH line that sets an option UGRO owns', () => {
  it('is found in every spelling of the long option: full, abbreviated, other name, = or a space', () => {
    const cases: [string, string][] = [
      ['--output=/tmp/x', 'output'],
      ['--out=/tmp/x', 'output'],
      ['--outp=x', 'output'],
      ['--output /tmp/x', 'output'],
      ['--out /tmp/x', 'output'],
      ['--chd=/tmp', 'chdir'],
      ['--sig=USR1@5', 'signal'],
      ['--job=other', 'job-name'],
      ['--part=debug', 'partition'],
      ['--acco=x', 'account'],
      ['--ni=5', 'nice'],
      ['--tim=5', 'time'],
      ['--gpus-per-n=1', 'gpus-per-node'],
      ['--req', 'requeue'],
      ['--no-r', 'no-requeue'],
      ['--kill=yes', 'kill-on-invalid-dep'],
      ['--pars', 'parsable'],
      ['--wr=true', 'wrap'],
      ['--exp=ALL', 'export'],
      ['--ntasks-per-n=1', 'ntasks-per-node'],
      ['--tasks-per-node=2', 'ntasks-per-node'],
      ['--tasks=2', 'ntasks-per-node'],
      ['--arr=1-4', 'array'],
      ['--test', 'test-only'],
      ['--qu', 'quiet'],
      ['--clusters=other', 'clusters'],
      ['  --out=x', 'output'],
    ];
    for (const [line, option] of cases) expect([line, resolves(line)]).toEqual([line, option]);
    for (const o of SBATCH_OWN_OPTIONS) expect(resolves(`--${o}=1`)).toBe(o);
  });

  it('is found in its short form, alone, with the value glued on, or after flags in one word', () => {
    const cases: [string, string][] = [
      ['-o x', 'output'],
      ['-ox', 'output'],
      ['-o/tmp/x', 'output'],
      ['-Ho x', 'output'],
      ['-vsJ name', 'job-name'],
      ['-e err', 'error'],
      ['-D /tmp', 'chdir'],
      ['-N 2', 'nodes'],
      ['-n 2', 'ntasks'],
      ['-t 5', 'time'],
      ['-p gpu', 'partition'],
      ['-A acct', 'account'],
      ['-q q', 'qos'],
      ['-W', 'wait'],
      ['-Q', 'quiet'],
      ['-M other', 'clusters'],
      ['-a 1-3', 'array'],
    ];
    for (const [line, option] of cases) expect([line, resolves(line)]).toEqual([line, option]);
    // a value, not options: -C's "Jo", -k's optional "o"
    expect(resolves('-CJo')).toBeUndefined();
    expect(resolves('-ko')).toBeUndefined();
  });

  it('the message names the line, the option it resolves to, and the fix', () => {
    expect(sbatchLineProblem('--out=/tmp/x')).toBe(
      '"--out=/tmp/x" sets --output (--out abbreviates --output), which UGRO sets itself: UGRO reads the batch ' +
        "output from the run dir (each rank's log: ugro logs --rank N): remove the line",
    );
    expect(sbatchLineProblem('--part=debug')).toMatch(/^"--part=debug" sets --partition .*: set slurm\.partition$/);
    expect(sbatchLineProblem('--tim=5')).toMatch(
      /"--tim=5" sets --time \(--tim abbreviates --time \(or --time-min\)\).*spec\.activeDeadlineSeconds/,
    );
    expect(sbatchLineProblem('-o x')).toMatch(/^"-o x" sets --output \(-o is --output\), which UGRO sets itself/);
    expect(sbatchLineProblem('--tasks-per-node=2')).toMatch(
      /sets --ntasks-per-node \(--tasks-per-node is sbatch's other name for --ntasks-per-node\).*nprocPerNode/,
    );
    expect(sbatchLineProblem('--nice=5')).toMatch(/^"--nice=5" sets --nice, which UGRO sets itself: .*spec\.priority/);
  });
});

describe('extra #SBATCH lines UGRO does not own', () => {
  it('pass, spelled out or abbreviated, even where their name begins like an owned one', () => {
    for (const line of [
      '--mem=0',
      '--constraint=a100',
      '--gpus=2',
      '--gres=gpu:1',
      '--nodelist=gpu1',
      '--export-file=/etc/env',
      '--time-min=5',
      '--hold',
      '--exclusive',
      '--mem-per-cpu=1G',
      '--cpus-per-task=4',
      '--tmp=10G',
      '--open-mode=append',
      '--wait-all-nodes=1',
      '--const=a100',
      '--reserv=maint',
    ])
      expect([line, sbatchLineProblem(line)]).toEqual([line, undefined]);
  });

  it('must still be one plain --option[=value]: a space or a short form is refused, saying how to write it', () => {
    expect(sbatchLineProblem('--mem 0')).toBe('"--mem 0": write it as --mem=0 (one word: no spaces)');
    expect(sbatchLineProblem('-C a100')).toMatch(/must be one sbatch option like "--mem=0"/);
    expect(sbatchLineProblem('--mem=1G\n#SBATCH --x')).toMatch(/must be one sbatch option/);
    expect(sbatchLineProblem("--comment='x y'")).toMatch(/must be one sbatch option/);
  });
});

describe('where the lines are checked', () => {
  it('the cluster file refuses an abbreviated owned option at load time, naming file, line, field and option', () => {
    const fixture = readFileSync(new URL('../fixtures/cluster/valid.yaml', import.meta.url), 'utf8');
    /** What `ugro` would print for the cluster file with these lines, or the lines it accepted. */
    const load = (lines: string) => {
      const text = `${fixture}\nslurm:\n  login: { hostname: l, ip: 10.0.0.5, user: a }\n  sbatch: ${lines}\n`;
      const r = parseCluster(text, 'cluster.yaml', { env: {}, home: '/home/a', user: 'a' });
      return r.ok ? r.value.slurm?.slurm.sbatch : r.issues.map((i) => formatIssue('cluster.yaml', i)).join('\n');
    };
    expect(load('["--mem=0", "--out=/tmp/x"]')).toMatch(
      /^cluster\.yaml:\d+:\d+: slurm\.sbatch\[1\]: "--out=\/tmp\/x" sets --output .*: remove the line$/,
    );
    expect(load('["--chd=/tmp"]')).toMatch(/slurm\.sbatch\[0\]: "--chd=\/tmp" sets --chdir .*: set slurm\.paths$/);
    expect(load('["--sig=USR1@5"]')).toMatch(/slurm\.sbatch\[0\]: "--sig=USR1@5" sets --signal .*graceSeconds/);
    expect(load('["-o /tmp/x"]')).toMatch(/slurm\.sbatch\[0\]: "-o \/tmp\/x" sets --output \(-o is --output\)/);
    expect(load('["--mem=0", "--gpus=2"]')).toEqual(['--mem=0', '--gpus=2']);
  });

  it('the batch script generator refuses it too (a plan that got past the schema)', () => {
    const p = slurmPlan(job('t', { script: 'train.py', nodes: 2 }), slurmCluster().slurm!.slurm, {
      rdzvTimeoutSeconds: 120,
    });
    for (const x of ['--out=x', '--chd=/tmp', '--sig=USR1@5', '-J other'])
      expect(() => sbatchHeader('r', { ...p, extra: [x] })).toThrow(
        /slurm batch: extra line .* which UGRO sets itself/,
      );
    expect(sbatchHeader('r', { ...p, extra: ['--gpus=2'] })).toContain('#SBATCH --gpus=2');
  });
});
