/**
 * The job verbs against a real jobs directory, in-process (main(argv, io, env)): names checked
 * before any path is built, flags checked before anything happens, cancel scoped to a spec
 * version, files on the command line read safely, and `get jobs` reading what the store reads.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseControl } from '../../controller/api/control.ts';
import type { JobStatus } from '../../controller/api/status.ts';
import { cacheFileFor, listJobNames, readJobRows } from '../../controller/cli/job-list.ts';
import { main } from '../../controller/cli/main.ts';
import { projectStatus } from '../../controller/cli/render/jobs.ts';
import { JobStore } from '../../controller/store/store.ts';

const CLUSTER = new URL('../fixtures/cluster/valid.yaml', import.meta.url).pathname;

let root: string;
let jobs: string;
let store: JobStore;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'ugro-cli-jobs-'));
  jobs = join(root, 'jobs');
  mkdirSync(jobs);
  store = new JobStore(jobs);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

async function ugro(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    ['node', 'ugro', '--cluster', CLUSTER, '--jobs', jobs, ...args],
    { out: (s) => out.push(s), err: (s) => err.push(s) },
    { USER: 'alice', HOME: '/home/alice', XDG_CACHE_HOME: join(root, 'cache') },
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function specText(name: string, extra = ''): string {
  return (
    `apiVersion: ugro.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: ${name}\n` +
    `spec:\n  script: train.py\n  nodes: 2\n${extra}`
  );
}

function writeSpec(name: string, extra = ''): string {
  const file = join(jobs, `${name}.yaml`);
  writeFileSync(file, specText(name, extra));
  return file;
}

function status(over: Partial<JobStatus> = {}): JobStatus {
  return {
    phase: 'Running',
    observedGeneration: 1,
    specHash: 'deadbeef',
    attempt: 1,
    runId: 'x.deadbeef.1',
    nodes: [{ host: 'gpu1', nodeRank: 0, globalRanks: [0], pid: 10, state: 'Running' }],
    createdAt: '2025-03-01T11:00:00Z',
    conditions: [],
    ...over,
  };
}

const controlFile = (name: string) => join(jobs, `${name}.control.yaml`);

describe('job names are checked before any path is built (exit 2)', () => {
  const message = 'error: not a job name: "../victim" (a DNS-1123 label: lowercase letters, digits and "-")';

  it('regression: `delete job ../victim` no longer deletes jobs/../victim.yaml', async () => {
    const victim = join(root, 'victim.yaml');
    writeFileSync(victim, specText('victim'));
    const r = await ugro('delete', 'job', '../victim');
    expect(r.code).toBe(2);
    expect(r.err).toBe(message);
    expect(existsSync(victim)).toBe(true);
  });

  it.each([
    [['cancel', '../victim']],
    [['resume', '../victim', '--checkpoint', 'step-1']],
    [['logs', '../victim']],
    [['describe', 'job', '../victim']],
    [['results', '../victim']],
    [['get', 'jobs', 'ok', '../victim']],
    [['events', '../victim']],
  ])('%j', async (args) => {
    writeFileSync(join(root, 'victim.yaml'), specText('victim'));
    writeFileSync(join(root, 'victim.status.yaml'), 'phase: Running\n');
    const r = await ugro(...args);
    expect(r.code).toBe(2);
    expect(r.err).toBe(message);
    expect(existsSync(join(root, 'victim.control.yaml'))).toBe(false);
    expect(readFileSync(join(root, 'victim.yaml'), 'utf8')).toBe(specText('victim'));
  });

  it('launch --name', async () => {
    const r = await ugro('launch', '--name', '../victim', '--nodes', '1');
    expect(r.code).toBe(2);
    expect(r.err).toBe(`error: --name: ${message.slice('error: '.length)}`);
    expect(existsSync(join(root, 'victim.yaml'))).toBe(false);
  });

  it('too long', async () => {
    const r = await ugro('describe', 'job', 'a'.repeat(64));
    expect(r.code).toBe(2);
    expect(r.err).toBe(`error: not a job name: "${'a'.repeat(64)}" (at most 63 characters)`);
  });
});

describe('numeric flags are checked (exit 2, the flag named), before anything is done', () => {
  it.each([
    [['cancel', 'x', '--grace', 'abc'], '--grace must be a number of seconds 0..3600 (got "abc")'],
    [['cancel', 'x', '--grace', '3601'], '--grace must be a number of seconds 0..3600 (got "3601")'],
    [['cancel', 'x', '--grace=-1'], '--grace must be a number of seconds 0..3600 (got "-1")'],
    [['logs', 'x', '--rank', 'one'], '--rank must be an integer 0..65535 (got "one")'],
    [['logs', 'x', '--rank=-1'], '--rank must be an integer 0..65535 (got "-1")'],
    [['logs', 'x', '--tail', '1e3'], '--tail must be an integer 0..1000000 (got "1e3")'],
    [['events', '--limit', '0'], '--limit must be an integer 1..10000 (got "0")'],
    [['launch', '--name', 'a', '--epochs', '0'], '--epochs must be an integer 1..1000000 (got "0")'],
    [['launch', '--name', 'a', '--nodes', 'all'], '--nodes must be an integer 1..1024 (got "all")'],
    [['launch', '--name', 'a', '--nproc-per-node', '65'], '--nproc-per-node must be an integer 1..64 (got "65")'],
    [['launch', '--name', 'a', '--lr', 'fast'], '--lr must be a number > 0 (got "fast")'],
    [['launch', '--name', 'a', '--priority', 'urgent'], '--priority must be high, normal, low or an integer'],
    [['controller', '--resync', '0'], '--resync must be an integer 1..86400 (got "0")'],
    [['controller', '--grace', 'NaN'], '--grace must be a number of seconds 0..3600 (got "NaN")'],
  ])('%j', async (args, message) => {
    writeSpec('x');
    const r = await ugro(...args);
    expect(r.code).toBe(2);
    expect(r.err.startsWith(`error: ${message}`)).toBe(true);
    expect(existsSync(controlFile('x'))).toBe(false);
    expect(existsSync(join(jobs, 'a.yaml'))).toBe(false);
  });
});

describe('cancel is scoped to the spec version it is for', () => {
  it('a valid spec: the control carries its hash and the grace asked for', async () => {
    writeSpec('x');
    const r = await ugro('cancel', 'x', '--grace', '2.5');
    expect(r.code).toBe(0);
    const spec = await store.readSpec('x');
    if (spec.kind !== 'valid') throw new Error('spec should be valid');
    const c = parseControl(readFileSync(controlFile('x'), 'utf8'));
    expect(c.ok && c.value.cancel).toMatchObject({ specHash: spec.hash, graceSeconds: 2.5 });
    expect(r.out).toBe(`trainingjob/x cancel requested (spec ${spec.hash})`);
  });

  it('regression: the spec invalid right now: the hash of the version running, never an empty one', async () => {
    writeSpec('x', '  nodes: 0\n  bogus: 1\n');
    expect((await store.readSpec('x')).kind).toBe('invalid');
    await store.writeStatus('x', status({ specHash: 'deadbeef' }));
    const r = await ugro('cancel', 'x');
    expect(r.code).toBe(0);
    const c = parseControl(readFileSync(controlFile('x'), 'utf8'));
    expect(c.ok).toBe(true);
    expect(c.ok && c.value.cancel?.specHash).toBe('deadbeef');
  });

  it('the spec invalid and no run: nothing to cancel, nothing written (exit 0)', async () => {
    writeSpec('x', '  nodes: 0\n');
    const r = await ugro('cancel', 'x');
    expect(r.code).toBe(0);
    expect(r.out).toBe('trainingjob/x has no valid spec and no run: nothing to cancel');
    expect(existsSync(controlFile('x'))).toBe(false);
  });

  it('a finished job: nothing to cancel; an unknown job: exit 3', async () => {
    writeSpec('x');
    await store.writeStatus('x', status({ phase: 'Succeeded', nodes: [] }));
    expect((await ugro('cancel', 'x')).out).toBe('trainingjob/x is already Succeeded: nothing to cancel');
    expect(existsSync(controlFile('x'))).toBe(false);
    const r = await ugro('cancel', 'nosuch');
    expect(r.code).toBe(3);
    expect(r.err).toBe(`error: job nosuch not found in ${jobs}`);
  });
});

describe('resume --checkpoint', () => {
  it('is checked like spec.checkpoint.resumeFrom (exit 2, the spec untouched)', async () => {
    const file = writeSpec('x');
    const r = await ugro('resume', 'x', '--checkpoint', '../../etc/passwd');
    expect(r.code).toBe(2);
    expect(r.err).toBe('error: --checkpoint must be a checkpoint name like "step-400" (got "../../etc/passwd")');
    expect(readFileSync(file, 'utf8')).toBe(specText('x'));
  });

  it('a good name lands in the spec file, and a pending cancel is dropped', async () => {
    const file = writeSpec('x');
    await ugro('cancel', 'x');
    const r = await ugro('resume', 'x', '--checkpoint', 'step-400');
    expect(r.code).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain('resumeFrom: step-400');
    expect(existsSync(controlFile('x'))).toBe(false);
  });
});

describe('files named on the command line: regular files of at most 1 MiB', () => {
  it('a FIFO is refused at once (it used to block the CLI forever)', async () => {
    const fifo = join(root, 'job.yaml');
    execFileSync('mkfifo', [fifo]);
    const v = await ugro('validate', fifo);
    expect(v.code).toBe(1);
    expect(v.err).toBe(`${fifo}: invalid\n  ${fifo}: is a FIFO; UGRO reads only regular files`);
    const a = await ugro('apply', '-f', fifo);
    expect(a.code).toBe(1);
    expect(a.err).toBe(`error: ${fifo}: is a FIFO; UGRO reads only regular files`);
  });

  it('a file over 1 MiB is refused; a symlink to a good file is followed', async () => {
    const big = join(root, 'big.yaml');
    writeFileSync(big, `${specText('big')}# ${'x'.repeat(1024 * 1024)}\n`);
    const r = await ugro('apply', '-f', big);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^error: .*big\.yaml: file is \d+ bytes; the limit is 1 MiB$/);
    expect(existsSync(join(jobs, 'big.yaml'))).toBe(false);
    const good = join(root, 'good.yaml');
    writeFileSync(good, specText('good'));
    execFileSync('ln', ['-s', good, join(root, 'link.yaml')]);
    const ok = await ugro('apply', '-f', join(root, 'link.yaml'));
    expect(ok.code).toBe(0);
    expect(ok.out).toBe('trainingjob/good created');
    // As written: no owner is added (the job is the account's that wrote the file).
    expect(readFileSync(join(jobs, 'good.yaml'), 'utf8')).toBe(specText('good'));
  });
});

describe("owners: the account writing a job owns it; naming another owner is an admin's to do", () => {
  it('apply names no owner of its own ($USER is not an identity), keeps comments and a named owner', async () => {
    const f = join(root, 'a.yaml');
    writeFileSync(f, `# my run\n${specText('a')}  args: [--lr, "0.1"] # tuned\n`);
    expect((await ugro('apply', '-f', f)).code).toBe(0);
    const text = readFileSync(join(jobs, 'a.yaml'), 'utf8');
    expect(text).toContain('# my run');
    expect(text).toContain('# tuned');
    expect(text).not.toContain('ugro.dev/owner');
    const g = join(root, 'b.yaml');
    const named = specText('b').replace('  name: b\n', '  name: b\n  annotations:\n    ugro.dev/owner: bob\n');
    writeFileSync(g, named);
    expect((await ugro('apply', '-f', g)).code).toBe(0);
    expect(readFileSync(join(jobs, 'b.yaml'), 'utf8')).toBe(named);
  });

  it('--owner (run as root here: an admin) names the owner; one that is not a user name is a usage error', async () => {
    expect((await ugro('launch', '--name', 'c', '--nodes', '1', '--owner', 'carol')).code).toBe(0);
    expect(readFileSync(join(jobs, 'c.yaml'), 'utf8')).toContain('ugro.dev/owner: carol');
    const bad = await ugro('launch', '--name', 'd', '--nodes', '1', '--owner', 'x; rm -rf /');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--owner must be a user name');
    expect(existsSync(join(jobs, 'd.yaml'))).toBe(false);
  });

  it('validate: each file judged, exit 1 if any is invalid or missing', async () => {
    const good = join(root, 'good.yaml');
    writeFileSync(good, specText('good'));
    const r = await ugro('validate', good, join(root, 'missing.yaml'));
    expect(r.code).toBe(1);
    expect(r.out).toBe(`${good}: valid (good)`);
    expect(r.err).toContain('missing.yaml: cannot read: ENOENT');
  });
});

describe('delete, launch', () => {
  it('delete job: the spec file goes, exit 0; again: exit 3', async () => {
    writeSpec('x');
    expect((await ugro('delete', 'job', 'x')).out).toBe('trainingjob/x deleted (the controller stops its run)');
    expect(existsSync(join(jobs, 'x.yaml'))).toBe(false);
    expect((await ugro('delete', 'job', 'x')).code).toBe(3);
  });

  it('launch writes a valid TrainingJob; a second launch of the same name is refused', async () => {
    const r = await ugro('launch', '--name', 'demo', '--epochs', '3', '--lr', '0.01', '--priority', '5');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const spec = await store.readSpec('demo');
    expect(spec.kind).toBe('valid');
    if (spec.kind !== 'valid') return;
    expect(spec.job.spec.args).toEqual([
      '--model',
      'tiny-mlp',
      '--dataset',
      'synthetic',
      '--epochs',
      '3',
      '--lr',
      '0.01',
    ]);
    expect(spec.job.spec.nodes).toBe(3); // every host of the cluster file
    expect(spec.job.spec.priority).toBe(5);
    const again = await ugro('launch', '--name', 'demo');
    expect(again.code).toBe(1);
    expect(again.err).toContain('trainingjob/demo already exists');
  });
});

describe('get jobs', () => {
  it('lists the same names as the store, whatever else is in the directory', async () => {
    for (const f of ['a.yaml', 'b.yml', 'c.status.yaml', 'd.control.yaml', 'e.status.yml', 'f.control.yml']) {
      writeFileSync(join(jobs, f), 'x: 1\n');
    }
    for (const f of [
      'Bad_Name.yaml',
      '.hidden.yaml',
      'g.txt',
      'h.b.yaml',
      'a.status.yaml',
      '-x.yaml',
      'y-.status.yaml',
    ]) {
      writeFileSync(join(jobs, f), 'x: 1\n');
    }
    const { specs, statuses } = await store.listNames();
    expect(await listJobNames(jobs)).toEqual([...new Set([...specs, ...statuses])].sort());
    expect(await listJobNames(jobs)).toEqual(['a', 'b', 'c']);
  });

  it('table: status when there is one, the spec otherwise; a status of the wrong shape is no status', async () => {
    writeSpec('aa');
    writeSpec('bb');
    await store.writeStatus('bb', status({ attempt: 3 }));
    writeSpec('cc');
    writeFileSync(join(jobs, 'cc.status.yaml'), '[not, a, status]\n');
    const r = await ugro('get', 'jobs');
    expect(r.code).toBe(0);
    expect(r.out.split('\n').map((l) => l.split(/\s+/).slice(0, 5).join(' '))).toEqual([
      'NAME PHASE ATTEMPT RESTARTS NODES',
      'aa Pending 0 0 2',
      'bb Running 3 0 1/1',
      'cc Pending 0 0 2',
    ]);
    const rows = await readJobRows(jobs, ['bb']);
    expect(rows.rows[0].status).toEqual(projectStatus(await store.readStatus('bb')));
  });

  it('names: the rows asked for; one that does not exist: exit 3 after the others', async () => {
    writeSpec('aa');
    const r = await ugro('get', 'jobs', 'aa', 'zz');
    expect(r.code).toBe(3);
    expect(r.out.split('\n')).toHaveLength(2);
    expect(r.err).toBe(`error: job zz not found in ${jobs}`);
  });

  it('-o json: spec and status as the store reads them (an invalid status is left out)', async () => {
    writeSpec('aa');
    await store.writeStatus('aa', status());
    writeSpec('bb');
    writeFileSync(join(jobs, 'bb.status.yaml'), 'phase: Bogus\n');
    const r = await ugro('get', 'jobs', '-o', 'json');
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.out);
    expect(rows.map((x: { name: string }) => x.name)).toEqual(['aa', 'bb']);
    expect(rows[0].status).toEqual(await store.readStatus('aa'));
    expect(rows[0].spec.nodes).toBe(2);
    expect(rows[1].status).toBeUndefined();
  });

  it('the per-user cache: a second listing reads no file that did not change, and sees one that did', async () => {
    writeSpec('aa');
    await store.writeStatus('aa', status({ attempt: 1 }));
    writeSpec('bb');
    const first = await ugro('get', 'jobs');
    const cache = cacheFileFor({ XDG_CACHE_HOME: join(root, 'cache') }, jobs)!;
    const saved = JSON.parse(readFileSync(cache, 'utf8'));
    expect(saved.dir).toBe(jobs);
    expect(Object.keys(saved.entries).sort()).toEqual(['aa.status.yaml', 'bb.yaml']);
    expect((await ugro('get', 'jobs')).out).toBe(first.out);
    await store.writeStatus('aa', status({ attempt: 2 }));
    expect((await ugro('get', 'jobs')).out).toMatch(/^aa\s+Running\s+2\s/m);
  });

  it('a damaged or edited cache can show wrong values but never breaks the listing', async () => {
    writeSpec('aa');
    await store.writeStatus('aa', status());
    await ugro('get', 'jobs');
    const cache = cacheFileFor({ XDG_CACHE_HOME: join(root, 'cache') }, jobs)!;
    const saved = JSON.parse(readFileSync(cache, 'utf8'));
    saved.entries['aa.status.yaml'].value = { phase: 'Running\u001b[2J', nodes: 'junk', attempt: { x: 1 } };
    writeFileSync(cache, JSON.stringify(saved));
    const r = await ugro('get', 'jobs', '-o', 'wide');
    expect(r.code).toBe(0);
    expect(r.out.split('\n')[1]).toMatch(/^aa\s+Running\?\[2J\s+0\s+0\s+-\s/);
    writeFileSync(cache, '{not json');
    expect((await ugro('get', 'jobs')).out).toMatch(/^aa\s+Running\s+1\s+0\s+1\/1\s/m);
  });
});
